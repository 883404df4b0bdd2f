"""Fading sweeps: one row per (point, strategy, realization), the strategy re-decided for one
Rayleigh gain ḡ·|h|², |h|² ~ Exp(1) (docs/theory.md §2, eq. 2.8; instantaneous CSI).

The answer is the one `laimco.optimize.solve` gives at that gain, computed for all
realizations at once: the per-split objective of every (device rule, server rule) pair the
strategy is solved for (`laimco.optimize.choices`), vectorized over the gains; the least objective
wins. Where it is unique, or the candidates tied with it (within `decision.TIE_TOL`) have the
same split and ratios (to SAME_RATIO_TOL), that is `solve`'s row. Otherwise the realization is
handed to `solve` itself, so there is one tie-break rule, `solve`'s: the least device energy
(docs/study.md, "Kinds and their rows"). Each such realization costs one scalar `solve`, about
a hundred vectorized realizations (fixed-ratio ties at most realizations: its objective is the
same at several splits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from laimco.experiments.sweep.producers.registry import Producer, register
from laimco.experiments.sweep.tables import RowBuilder

if TYPE_CHECKING:
    from laimco.config import Scenario
    from laimco.experiments.sweep.expansion import ChunkTask
    from laimco.profile import ModelProfile


# tied candidates at the same split whose ratios agree to this are the same row (in the
# calibrated mode two rule pairs often reach one decision, e.g. ρ_s = 0 and ρ_s = 1e-14)
SAME_RATIO_TOL = 1e-9


@dataclass
class FadingChoice:
    """Per realization: the chosen split, ratios and objective (NaN where infeasible)."""

    feasible: np.ndarray
    split: np.ndarray
    rho_device: np.ndarray
    rho_server: np.ndarray
    objective: np.ndarray


def per_split_solutions(scenario: Scenario, profile: ModelProfile, strategy: str,
                        options: Any, gains: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(objective, ρ_d, ρ_s), each (R, choices, splits): the strategy's ratios and objective at
    every discrete choice (rule pair, activation width) and split, for every gain, as `solve`
    computes them at one gain."""
    from laimco.optimize import STRATEGIES
    from laimco.optimize.choices import problem_variants

    spec = STRATEGIES[strategy]
    r = gains.size
    parts: list[tuple[np.ndarray, ...]] = []
    for problem in problem_variants(scenario, profile, spec.ties_ratios, gain=gains):
        solution = spec.ratios(problem, options)  # the strategy's own split restriction
        parts.append(tuple(np.asarray(a, dtype=np.float64).reshape(r, problem.n_splits)
                           for a in (solution.objective, solution.rho_device,
                                     solution.rho_server)))
    objective, rho_d, rho_s = (np.stack([p[i] for p in parts], axis=1) for i in range(3))
    return objective, rho_d, rho_s


def choose(scenario: Scenario, profile: ModelProfile, strategy: str, options: Any,
           gains: np.ndarray) -> FadingChoice:
    """The decision of `strategy` at each gain: the least objective where that decides the
    row, else `solve`'s answer at that gain (candidates tie within TIE_TOL and differ in split
    or by more than SAME_RATIO_TOL in a ratio, so only the tie-break can choose)."""
    from laimco.optimize import solve
    from laimco.optimize.tolerances import TIE_TOL

    objective, rho_d, rho_s = (a.reshape(gains.size, -1) for a in per_split_solutions(
        scenario, profile, strategy, options, gains))  # (R, choices × splits)
    split_of = np.arange(objective.shape[1]) % (profile.n_units + 1)
    rows = np.arange(gains.size)
    best_index = np.argmin(np.where(np.isfinite(objective), objective, np.inf), axis=1)
    best = objective[rows, best_index]
    feasible = np.isfinite(best)
    choice = FadingChoice(
        feasible=feasible.copy(),
        split=np.where(feasible, split_of[best_index], np.nan),
        rho_device=np.where(feasible, rho_d[rows, best_index], np.nan),
        rho_server=np.where(feasible, rho_s[rows, best_index], np.nan),
        objective=np.where(feasible, best, np.nan))
    tied = objective <= (best + TIE_TOL * np.maximum(np.abs(best), 1e-300))[:, None]
    other = ((split_of[None, :] != split_of[best_index][:, None])
             | (np.abs(rho_d - choice.rho_device[:, None]) > SAME_RATIO_TOL)
             | (np.abs(rho_s - choice.rho_server[:, None]) > SAME_RATIO_TOL))
    for i in np.flatnonzero(feasible & (tied & other).any(axis=1)):
        at_gain = scenario.replace(channel={"fading": "none", "path_gain": float(gains[i])})
        p = solve(at_gain, strategy, profile=profile, options=options).point
        choice.feasible[i] = p is not None
        choice.split[i] = p.split if p is not None else np.nan
        choice.rho_device[i] = p.rho_device if p is not None else np.nan
        choice.rho_server[i] = p.rho_server if p is not None else np.nan
        choice.objective[i] = p.objective if p is not None else np.nan
    return choice


def fading_rows(task: ChunkTask, rows: RowBuilder) -> None:
    options = task.strategy_options()
    for point in task.points:
        scenario, profile = task.scenario(point), task.profile(point)
        gains = task.rayleigh_gains(point, scenario)
        for name in task.strategies:
            c = choose(scenario, profile, name, options, gains)
            rows.add(gains.size, point=point.index, **task.coords(point), strategy=name,
                     realization=np.arange(gains.size, dtype=np.int64), gain=gains,
                     feasible=c.feasible, split=c.split, rho_device=c.rho_device,
                     rho_server=c.rho_server, objective=c.objective)


PRODUCER = register(Producer("fading", fading_rows, chunk_points=1))
