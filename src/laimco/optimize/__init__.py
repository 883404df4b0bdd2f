"""The joint design: exact per-split solver, benchmark strategies, decisions (no torch)."""

from laimco.optimize.decision import Decision
from laimco.optimize.strategies import STRATEGIES, StrategyError, StrategyOptions, solve

__all__ = ["STRATEGIES", "Decision", "StrategyError", "StrategyOptions", "solve"]
