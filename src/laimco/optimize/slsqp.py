"""The "what a user would do instead" reference: scipy's SLSQP on the original variables
(ρ_d, ρ_s, p, f_d, f_s) for every split, from several random starts (docs/theory.md §4.6)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from laimco.optimize.evaluate import (
    Limit,
    decision_costs,
    limit_usage,
    objective_at,
    violations,
)
from laimco.optimize.problem import SplitProblem
from laimco.optimize.ratios import RatioSolution, searched_ratios

FloatArray = NDArray[np.float64]
# SLSQP works on z = x / scale in [0, 1]^5; z is floored at _Z_FLOOR (a ratio, power or
# frequency of exactly 0 would put t = C/f or S/r(p) at a pole) and the scale of a zero ρ_max
# at _SCALE_FLOOR
_Z_FLOOR = 1e-9
_SCALE_FLOOR = 1e-12
_OPTIONS = {"maxiter": 200, "ftol": 1e-10}


def slsqp_split(problem: SplitProblem, split: int, n_starts: int,
                rng: np.random.Generator) -> tuple[float, FloatArray] | None:
    """Best feasible (objective, x) over `n_starts` SLSQP runs at one split; x = (ρ_d, ρ_s, p,
    f_d, f_s) in physical units. None when no run ends feasible."""
    return _slsqp_split_at(problem, split, float(np.ravel(problem.gain)[0]), n_starts, rng)


def _slsqp_split_at(problem: SplitProblem, split: int, gain: float, n_starts: int,
                    rng: np.random.Generator) -> tuple[float, FloatArray] | None:
    from scipy.optimize import minimize  # only this baseline needs it: keeps start-up fast

    sc = problem.scenario
    scale = np.array([max(sc.task.rho_max, _SCALE_FLOOR), max(sc.task.rho_max, _SCALE_FLOOR),
                      sc.device.tx_power_max_w, sc.device.cpu_freq_max_hz,
                      sc.server.cpu_freq_max_hz])
    rho_full = np.full(problem.n_splits, sc.task.rho_max)
    norm = float(problem.bound.device(rho_full)[split] + problem.bound.server(rho_full)[split])
    norm = norm if norm > 0 else 1.0

    def costs(z: FloatArray) -> tuple[float, dict[Limit, float]]:
        x = np.maximum(z, _Z_FLOOR) * scale
        c = decision_costs(problem, split, x[0], x[1], x[2], x[3], x[4], gain)
        return (objective_at(problem, split, x[0], x[1]),
                limit_usage(problem, split, x[0], x[1], x[2], x[3], x[4], c))

    def objective(z: FloatArray) -> float:
        return costs(z)[0] / norm

    def slack(z: FloatArray) -> FloatArray:
        usage = costs(z)[1]
        return np.array([1 - usage[k] for k in ("latency", "energy", "memory") if k in usage])

    best: tuple[float, FloatArray] | None = None
    for _ in range(n_starts):
        z0 = rng.uniform(0.05, 1.0, size=5)
        result = minimize(objective, z0, method="SLSQP", bounds=[(0.0, 1.0)] * 5,
                          constraints=[{"type": "ineq", "fun": slack}],
                          options=_OPTIONS)
        z = np.clip(result.x, 0.0, 1.0)
        x = np.maximum(z, _Z_FLOOR) * scale
        value, usage = costs(z)
        if violations(usage, x[0], x[1], x[2]):
            continue
        if best is None or value < best[0]:
            best = (value, x)
    return best


def slsqp_ratios(problem: SplitProblem, n_starts: int, seed: int) -> RatioSolution:
    """Per split and per gain of the problem: the ratios and objective SLSQP finds (one
    multi-start per element, for sweeps over channel realizations)."""
    rng = np.random.default_rng(seed)

    def search(split: int, gain: float) -> tuple[float, float, float] | None:
        found = _slsqp_split_at(problem, split, gain, n_starts, rng)
        return None if found is None else (found[0], found[1][0], found[1][1])

    return searched_ratios(problem, search)
