"""The "what a user would do instead" reference: scipy's SLSQP on the original variables
(ρ_d, ρ_s, p, f_d, f_s) for every split, from several random starts (docs/theory.md §4.6)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from laimco.optimize.evaluate import decision_costs, limit_usage, violations
from laimco.optimize.problem import SplitProblem

FloatArray = NDArray[np.float64]


def slsqp_split(problem: SplitProblem, split: int, n_starts: int,
                rng: np.random.Generator) -> tuple[float, FloatArray] | None:
    """Best feasible (objective, x) over `n_starts` SLSQP runs at one split; x = (ρ_d, ρ_s, p,
    f_d, f_s) in physical units. None when no run ends feasible."""
    from scipy.optimize import minimize  # only this baseline needs it: keeps start-up fast

    sc = problem.scenario
    gain = float(np.ravel(problem.gain)[0])
    scale = np.array([max(sc.task.rho_max, 1e-12), max(sc.task.rho_max, 1e-12),
                      sc.device.tx_power_max_w, sc.device.cpu_freq_max_hz,
                      sc.server.cpu_freq_max_hz])
    rho_full = np.full(problem.n_splits, sc.task.rho_max)
    norm = float(problem.bound.device(rho_full)[split] + problem.bound.server(rho_full)[split])
    norm = norm if norm > 0 else 1.0

    def costs(z: FloatArray) -> tuple[float, dict[str, float]]:
        x = np.maximum(z, 1e-9) * scale
        c = decision_costs(problem, split, x[0], x[1], x[2], x[3], x[4], gain)
        return c.objective, limit_usage(problem, split, x[0], x[1], x[2], x[3], x[4], c)

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
                          options={"maxiter": 200, "ftol": 1e-10})
        z = np.clip(result.x, 0.0, 1.0)
        x = np.maximum(z, 1e-9) * scale
        value, usage = costs(z)
        if violations(usage, x[0], x[1], x[2]):
            continue
        if best is None or value < best[0]:
            best = (value, x)
    return best
