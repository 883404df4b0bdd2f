"""Brute force over the shares of a small fleet (2–3 devices), the reference the fleet solver
and the baselines are tested against (test helper, not shipped).

Device u's value V_u(b, f) comes straight from the single-device optimizer (`solve` on
`fleet.device_scenario(u, b, f)`, inf when infeasible; with no usable share only the whole model
on the device is left). The fleet objective is Σ w_u·V_u ("sum") or max w_u·V_u ("max-min"),
with every device counted (an unserved device makes a grid point infeasible), over the share
fractions x_b, x_f on the simplex (b_u = x_b,u·B, f_u = x_f,u·F).

The search: every point of the simplex lattice of step 1/n (n = `steps`) for the band times
every one for the server — V_u depends only on device u's own shares, so each device is solved
once per (band lattice value, server lattice value) and the combinations are summed in numpy —
then local refinement (a pattern search): a lattice of step h (±m·h, m = `refine_points`,
h = 1/(n·m) first) around the best point; when a better point is found the search moves there
at the same step (at most `max_moves` times per step), otherwise h shrinks by m (`rounds` times). Moving
matters for "max-min", whose best points lie along a valley that a shrinking-only search
leaves too early. The answer is the best point found, an upper
bound on the optimum (it is feasible), close to it when V is well resolved by the lattice.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from laimco.fleet.baselines import decision_at_shares, device_value
from laimco.fleet.fleet import Fleet, FleetObjective

FloatArray = np.ndarray


@dataclass(frozen=True)
class BruteForce:
    """The best point found: the fleet objective, each device's shares and value."""

    objective: float
    bandwidth_hz: FloatArray
    server_cycles_per_s: FloatArray
    device_objective: FloatArray
    evaluations: int


def _compositions(n_devices: int, steps: int) -> np.ndarray:
    """Every vector of n_devices non-negative integers summing to `steps` (rows)."""
    rows = [c + (steps - sum(c),) for c in itertools.product(range(steps + 1),
                                                              repeat=n_devices - 1)
            if sum(c) <= steps]
    return np.array(rows, dtype=np.float64)


class _Values:
    """V_u at share fractions, each (u, x_b, x_f) solved once."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.cache: dict[tuple[int, float, float], float] = {}

    def __call__(self, u: int, x_b: float, x_f: float) -> float:
        key = (u, round(x_b, 15), round(x_f, 15))
        if key not in self.cache:
            res = self.fleet.resources
            self.cache[key] = device_value(decision_at_shares(
                self.fleet, u, x_b * res.bandwidth_hz, x_f * res.server_cycles_per_s))
        return self.cache[key]


def _best_of(fleet: Fleet, kind: FleetObjective, values: _Values, points_b: np.ndarray,
             points_f: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The best (band point, server point) pair: points_* are (M, N) rows of fractions."""
    n = fleet.n_devices
    total = np.zeros((len(points_b), len(points_f))) if kind == "sum" else \
        np.full((len(points_b), len(points_f)), -math.inf)
    for u in range(n):
        xb, ib = np.unique(points_b[:, u], return_inverse=True)
        xf, jf = np.unique(points_f[:, u], return_inverse=True)
        table = np.array([[fleet.weight[u] * values(u, float(b), float(f)) for f in xf]
                          for b in xb])
        term = table[ib.ravel()][:, jf.ravel()]
        total = total + term if kind == "sum" else np.maximum(total, term)
    i, j = np.unravel_index(int(np.argmin(total)), total.shape)
    per_device = np.array([values(u, float(points_b[i, u]), float(points_f[j, u]))
                           for u in range(n)])
    return float(total[i, j]), points_b[i], points_f[j], per_device


def _around(center: np.ndarray, step: float, points: int) -> np.ndarray:
    """Simplex points center + step·k (k integer in ±points, the last coordinate the rest)."""
    n = center.size
    offsets = np.array(list(itertools.product(range(-points, points + 1), repeat=n - 1)),
                       dtype=np.float64) * step
    head = center[:-1] + offsets
    tail = 1.0 - head.sum(axis=1, keepdims=True)
    rows = np.hstack([head, tail])
    keep = np.all(rows >= -1e-15, axis=1)
    return np.clip(rows[keep], 0.0, 1.0)


def brute_force_shares(fleet: Fleet, objective: FleetObjective | None = None,
                       steps: int | None = None, rounds: int = 4,
                       refine_points: int = 4, max_moves: int = 25) -> BruteForce:
    """The best shares of a 2- or 3-device fleet by lattice search and local refinement
    (module docstring). Default lattice: step 1/20 for 2 devices, 1/10 for 3."""
    kind = objective or fleet.objective
    n = fleet.n_devices
    if not 2 <= n <= 3:
        raise ValueError(f"brute force is for 2 or 3 devices, got {n}")
    steps = steps or (20 if n == 2 else 10)
    values = _Values(fleet)
    lattice = _compositions(n, steps) / steps
    best, xb, xf, per_device = _best_of(fleet, kind, values, lattice, lattice)
    h = 1.0 / steps / refine_points
    shrinks = moves = 0
    while shrinks < rounds:
        value, cb, cf, pd = _best_of(fleet, kind, values, _around(xb, h, refine_points),
                                     _around(xf, h, refine_points))
        if value < best and moves < max_moves:  # moved: search again around it, same step
            best, xb, xf, per_device = value, cb, cf, pd
            moves += 1
        else:  # the center is the best of its neighbourhood: look closer
            if value < best:
                best, xb, xf, per_device = value, cb, cf, pd
            h /= refine_points
            shrinks, moves = shrinks + 1, 0
    res = fleet.resources
    return BruteForce(objective=best, bandwidth_hz=xb * res.bandwidth_hz,
                      server_cycles_per_s=xf * res.server_cycles_per_s,
                      device_objective=per_device, evaluations=len(values.cache))
