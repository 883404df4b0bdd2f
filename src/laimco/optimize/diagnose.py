"""Why a strategy finds no feasible decision: which limits, relaxed one at a time, would make
it feasible, with the numbers that show how far off the tightest one is."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from laimco.config import ENERGY_MAX_J, LATENCY_MAX_S
from laimco.optimize.decision import Reason, ReasonKind
from laimco.optimize.problem import SplitProblem, build_problem
from laimco.optimize.ratios import RatioSolution

RatioSolver = Callable[[SplitProblem], RatioSolution]
_HUGE = 1e9


def _relaxations(problem: SplitProblem) -> dict[ReasonKind, tuple[str, dict[str, object]]]:
    sc = problem.scenario
    out: dict[ReasonKind, tuple[str, dict[str, object]]] = {
        # relaxed as far as a scenario may go (config.py ranges)
        "latency": ("task", {"latency_budget_s": min(sc.task.latency_budget_s * _HUGE,
                                                     LATENCY_MAX_S)}),
        "energy": ("device", {"energy_budget_j": min(sc.device.energy_budget_j * _HUGE,
                                                     ENERGY_MAX_J)}),
    }
    if sc.device.memory_bytes is not None:
        out["memory"] = ("device", {"memory_bytes": None})
    if sc.task.min_split > 0:
        out["privacy"] = ("task", {"min_split": 0})
    return out


def infeasibility_reasons(problem: SplitProblem, ratio_solver: RatioSolver) -> list[Reason]:
    """One reason per limit that, relaxed alone, makes the strategy feasible (docs/theory.md
    §4.7); a reason of kind "several" when no single relaxation is enough."""
    sc = problem.scenario
    gain = np.ravel(problem.gain)
    reasons = []
    for name, (section, change) in _relaxations(problem).items():
        relaxed = build_problem(sc.replace(**{section: change}), problem.profile, gain,
                                problem.split_restriction, problem.rules,
                                activation_bits=problem.activation_bits)
        if np.isfinite(ratio_solver(relaxed).objective).any():
            reasons.append(Reason(name, _explain(name, problem)))
    if not reasons:
        limits = "latency, energy and memory" if "memory" in _relaxations(problem) else (
            "latency and energy")
        where = ("no split is left to this strategy (privacy, memory or its own split rule) "
                 "and relaxing one limit alone does not change that" if not problem.allowed.any()
                 else "every allowed split fails even with one of them relaxed")
        reasons.append(Reason("several", f"{limits} are jointly too tight: {where}"))
    return reasons


def _explain(name: ReasonKind, problem: SplitProblem) -> str:
    sc = problem.scenario
    if name == "latency":
        return (f"latency: task.latency_budget_s = {sc.task.latency_budget_s} s is too short "
                f"for this strategy (feasible once it alone is relaxed)")
    if name == "energy":
        return (f"energy: device.energy_budget_j = {sc.device.energy_budget_j} J is too small "
                f"for this strategy (feasible once it alone is relaxed)")
    if name == "memory":
        return (f"memory: device.memory_bytes = {sc.device.memory_bytes:.4g} B cannot hold the "
                f"device part of any split that meets the other limits")
    return (f"privacy: task.min_split = {sc.task.min_split} rules out the splits below it, "
            f"and only those would fit")
