"""Brute force over the shares of a small fleet (2–3 devices), the reference the fleet solver
and the baselines are tested against, and the paper-mode test fleets they use (test helper, not
shipped).

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
at the same step (at most `max_moves` times per step), otherwise h shrinks by m (`rounds`
times). The answer is the best point found: feasible, so an upper bound on the optimum.

"max-min" with 2 devices has its best points on the curve where the two weighted values meet,
a narrow valley that a lattice resolves poorly, so it is searched on its structure instead
(`max_min_pair`): V_1 does not increase and V_2 does not decrease in device 1's server fraction
y, so for each band fraction x the best y is where they cross (bisection), and x is searched by
a lattice and golden-section refinement.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laimco.config import Scenario, load_scenario
from laimco.fleet.baselines import decision_at_shares, device_value
from laimco.fleet.fleet import DeviceClass, Fleet, FleetObjective, SharedResources

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
    rows = [(*c, steps - sum(c)) for c in itertools.product(range(steps + 1),
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
    if kind == "max-min" and n == 2:
        return max_min_pair(fleet)
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


def max_min_pair(fleet: Fleet, lattice: int = 20, tol: float = 1e-10) -> BruteForce:
    """max(w_1·V_1, w_2·V_2) minimized over 2 devices' shares on its structure (module
    docstring): for a band fraction x, bisection on the server fraction y for the crossing of
    the non-increasing w_1·V_1(x, y) and the non-decreasing w_2·V_2(1 − x, 1 − y) (both ends of
    the last bracket are kept, as V may jump where the split changes); x over a lattice of
    step 1/`lattice`, then golden-section refinement within one step of the best."""
    values = _Values(fleet)
    w = fleet.weight

    def pair(x: float, y: float) -> tuple[float, float]:
        return (w[0] * values(0, x, y), w[1] * values(1, 1.0 - x, 1.0 - y))

    def best_y(x: float) -> tuple[float, float]:
        low, high = 0.0, 1.0  # g1 − g2 ≥ 0 at low side, ≤ 0 at high side when they cross
        g_low, g_high = pair(x, low), pair(x, high)
        if g_low[0] <= g_low[1]:
            return max(g_low), low
        if g_high[0] >= g_high[1]:
            return max(g_high), high
        while high - low > tol:
            mid = 0.5 * (low + high)
            g = pair(x, mid)
            low, high = (mid, high) if g[0] > g[1] else (low, mid)
        return min((max(pair(x, low)), low), (max(pair(x, high)), high))

    xs = np.linspace(0.0, 1.0, lattice + 1)
    found = [(*best_y(float(x)), float(x)) for x in xs]
    value, y, x = min(found)
    a, b = max(x - 1.0 / lattice, 0.0), min(x + 1.0 / lattice, 1.0)
    ratio = (math.sqrt(5) - 1) / 2
    while b - a > 1e-9:
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if best_y(c)[0] <= best_y(d)[0]:
            b = d
        else:
            a = c
    for x_try in (a, b):
        v_try, y_try = best_y(x_try)
        if v_try < value:
            value, y, x = v_try, y_try, x_try
    res = fleet.resources
    return BruteForce(objective=value, bandwidth_hz=np.array([x, 1.0 - x]) * res.bandwidth_hz,
                      server_cycles_per_s=np.array([y, 1.0 - y]) * res.server_cycles_per_s,
                      device_objective=np.array([values(0, x, y), values(1, 1.0 - x, 1.0 - y)]),
                      evaluations=len(values.cache))


# fleets of paper-mode scenarios for the fleet tests
SCENARIOS = Path(__file__).parents[1] / "scenarios"


def scenario(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.toml")


def paper_fleet(classes: list[tuple[str, Scenario]], class_index: list[int],
                gains: list[float], weights: list[float] | None = None,
                bandwidth_hz: float = 4e6, server_cycles_per_s: float = 4e8,
                objective: str = "sum") -> Fleet:
    n = len(class_index)
    return Fleet(name="test", resources=SharedResources(bandwidth_hz, server_cycles_per_s, 64.0),
                 classes=tuple(DeviceClass(name, sc) for name, sc in classes),
                 class_index=np.array(class_index, dtype=np.intp),
                 path_gain=np.array(gains, dtype=np.float64),
                 weight=np.array(weights or [1.0] * n, dtype=np.float64),
                 ids=tuple(f"d{u}" for u in range(n)), objective=objective)  # type: ignore[arg-type]


def twenty_devices(objective: str, bandwidth_hz: float = 50e6,
                   server_cycles_per_s: float = 5e9) -> Fleet:
    """20 phones and IoT nodes (seeded), gains 1e-9..1e-7, weights 0.5..2."""
    rng = np.random.default_rng(1)
    n = 20
    return paper_fleet([("phone", scenario("paper-minilm-phone")),
                        ("iot", scenario("paper-minilm-iot"))],
                       list(rng.integers(0, 2, n)), list(10 ** rng.uniform(-9, -7, n)),
                       list(rng.uniform(0.5, 2, n)), bandwidth_hz=bandwidth_hz,
                       server_cycles_per_s=server_cycles_per_s, objective=objective)
