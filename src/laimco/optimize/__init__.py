"""The joint design: exact per-split solver, benchmark strategies, decisions (no torch)."""

from laimco.optimize.decision import Decision, OperatingPoint, Reason
from laimco.optimize.strategies import (
    STRATEGIES,
    Strategy,
    StrategyError,
    StrategyOptions,
    solve,
    strategy_named,
)

__all__ = ["STRATEGIES", "Decision", "OperatingPoint", "Reason", "Strategy", "StrategyError",
           "StrategyOptions", "solve", "strategy_named"]
