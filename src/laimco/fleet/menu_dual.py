"""The menu relaxation of menu_lp.py for large fleets, through its two-price dual instead of a
general LP (docs/theory.md §7.3): memory and time grow with the number of items only.

    D(λ, μ) = Σ_u min_k (c_k + λ·x_k + μ·y_k) − λ·X − μ·Y

is concave and, by LP duality, its maximum is the relaxation's value; every (λ, μ) ≥ 0 gives
a lower bound (weak duality), so the bound stays proven however the maximization ends. The
maximum is found by Kelley's cutting planes in the two prices (each cut: one pass over the
items; the master problem: a three-variable LP), in a price box that grows while the answer
presses on its edge. The mixture: devices whose cheapest item at the final prices is clear
take it; the few that are near a tie are mixed by a small LP over their near-tied items with
what the others leave.

Feasibility (some mixture fits) is decided exactly by a one-dimensional dual: it fits iff
Σ_u min_k (α·x_k + (1 − α)·y_k) ≤ α·X + (1 − α)·Y for every α ∈ [0, 1], a concave function of
α whose maximum a golden-section search finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linprog, minimize_scalar

from laimco.fleet.menu_lp import MenuSolution, solve_whole
from laimco.fleet.runs import run_starts

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
KELLEY_ITERATIONS = 200
KELLEY_TOL = 1e-10       # relative: stop when the cutting-plane upper bound meets the best value
NEAR_TIE = 1e-9          # relative reduced-cost margin within which a device counts as tied


@dataclass(frozen=True)
class _Sorted:
    """Items sorted by device, with each device's first index."""

    order: IntArray
    device: IntArray
    starts: IntArray
    x: FloatArray
    y: FloatArray
    cost: FloatArray


def _sorted(device: IntArray, x: FloatArray, y: FloatArray, cost: FloatArray) -> _Sorted:
    order = np.argsort(device, kind="stable")
    d = device[order]
    starts = np.flatnonzero(run_starts(d))
    return _Sorted(order, d, starts, x[order], y[order], cost[order])


def _cheapest(items: _Sorted, lam: float, mu: float) -> tuple[FloatArray, IntArray]:
    """Per device: the least reduced cost c + λx + μy and the (first) item reaching it."""
    reduced = items.cost + lam * items.x + mu * items.y
    least = np.minimum.reduceat(reduced, items.starts)
    at = np.flatnonzero(reduced <= np.repeat(least, np.diff(np.r_[items.starts,
                                                                   reduced.size])))
    return least, at[run_starts(items.device[at])]


def _frontier(items: _Sorted, near: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The `near` items no other near item of the same device dominates (both shares no
    larger; of equal shares the first): the only ones a mixture needs, since the near items
    cost the same to within the tie margin."""
    at = np.flatnonzero(near)
    order = at[np.lexsort((items.y[at], items.x[at], items.device[at]))]
    device = items.device[order]
    # within a device, sorted by x then y: an item is kept iff its y is below every earlier
    # item's; offsetting each device's y by −2·(its rank) keeps the running minimum from
    # reaching across devices (shares are in [0, 1])
    rank = np.cumsum(run_starts(device)) - 1
    shifted = items.y[order] - 2.0 * rank
    before = np.minimum.accumulate(np.r_[np.inf, shifted[:-1]])
    keep = np.zeros(near.size, dtype=bool)
    keep[order[(shifted < before) | run_starts(device)]] = True
    return keep


def menu_feasible(device: IntArray, x: FloatArray, y: FloatArray, n_devices: int,
                  capacity_x: float = 1.0, capacity_y: float = 1.0) -> bool:
    """Whether some mixture of one item per device fits both capacities (module docstring)."""
    if np.bincount(device, minlength=n_devices).min(initial=1) == 0:
        return False
    items = _sorted(device, x, y, np.zeros(x.size))
    # enough: the items of least max(x/X, y/Y), one per device, fit both capacities together
    relative = np.maximum(items.x / capacity_x, items.y / capacity_y)
    _, pick = _cheapest(_Sorted(items.order, items.device, items.starts, items.x, items.y,
                                relative), 0.0, 0.0)
    if items.x[pick].sum() <= capacity_x and items.y[pick].sum() <= capacity_y:
        return True

    def excess(alpha: float) -> float:
        mixed = alpha * items.x + (1 - alpha) * items.y
        return float(np.minimum.reduceat(mixed, items.starts).sum()
                     - alpha * capacity_x - (1 - alpha) * capacity_y)

    found = minimize_scalar(lambda a: -excess(a), bounds=(0.0, 1.0), method="bounded",
                            options={"xatol": 1e-12})
    worst = max(-float(found.fun), excess(0.0), excess(1.0))
    return worst <= 1e-12 * max(capacity_x, capacity_y)


def solve_by_prices(device: IntArray, x: FloatArray, y: FloatArray, cost: FloatArray,
                    n_devices: int, capacity_x: float = 1.0,
                    capacity_y: float = 1.0) -> MenuSolution:
    """The relaxation through its dual (module docstring). `value` is the best dual value
    found: a proven lower bound on the relaxation's optimum, equal to it at convergence. The
    search stops only where the cutting-plane model's maximum lies inside the price box."""
    if not menu_feasible(device, x, y, n_devices, capacity_x, capacity_y):
        return MenuSolution(False, np.inf, np.zeros(cost.size), 0.0, 0.0)
    items = _sorted(device, x, y, cost)
    scale = max(float(np.abs(cost).max(initial=0.0)), 1.0)
    lam = mu = 0.0
    box = np.array([scale, scale])
    cuts: list[tuple[float, float, float, float, float]] = []  # (λ, μ, D, gλ, gμ)
    best = (-np.inf, 0.0, 0.0)
    for _ in range(KELLEY_ITERATIONS):
        least, pick = _cheapest(items, lam, mu)
        value = float(least.sum() - lam * capacity_x - mu * capacity_y)
        g_lam = float(items.x[pick].sum() - capacity_x)
        g_mu = float(items.y[pick].sum() - capacity_y)
        cuts.append((lam, mu, value, g_lam, g_mu))
        if value > best[0]:
            best = (value, lam, mu)
        upper, lam, mu = _master(cuts, box)
        pressed = False
        for i, at in enumerate((lam, mu)):
            if at >= box[i] * (1 - 1e-9):  # the answer presses on the box: widen it
                box[i] *= 16
                pressed = True
        if not pressed and upper - best[0] <= KELLEY_TOL * max(abs(best[0]), 1.0):
            break
    value, lam, mu = best
    weights = _mixture(items, lam, mu, n_devices, capacity_x, capacity_y)
    out = np.zeros(cost.size)
    out[items.order] = weights
    return MenuSolution(True, value, out, lam, mu)


def _master(cuts: list[tuple[float, float, float, float, float]], box: FloatArray
            ) -> tuple[float, float, float]:
    """max t s.t. t ≤ D_i + g_i·(p − p_i) for every cut, 0 ≤ p ≤ box: the cutting-plane
    model's maximum (an upper bound on max D) and where it is."""
    a = np.array([[1.0, -c[3], -c[4]] for c in cuts])
    b = np.array([c[2] - c[3] * c[0] - c[4] * c[1] for c in cuts])
    result = linprog([-1.0, 0.0, 0.0], A_ub=a, b_ub=b,
                     bounds=[(None, None), (0, box[0]), (0, box[1])], method="highs")
    return -float(result.fun), float(result.x[1]), float(result.x[2])


def _mixture(items: _Sorted, lam: float, mu: float, n: int, capacity_x: float,
             capacity_y: float) -> FloatArray:
    """Weights per (sorted) item: clear devices take their cheapest item; devices within
    NEAR_TIE of a tie are mixed by a small LP over their near-tied items with the capacity the
    others leave (widening the margin while that LP has no solution)."""
    reduced = items.cost + lam * items.x + mu * items.y
    least = np.minimum.reduceat(reduced, items.starts)
    per_item_least = np.repeat(least, np.diff(np.r_[items.starts, reduced.size]))
    margin = NEAR_TIE * max(float(np.abs(least).max(initial=0.0)), 1.0)
    for _ in range(12):
        near = _frontier(items, reduced <= per_item_least + margin)
        counts = np.bincount(items.device[near], minlength=n)
        tied = counts > 1
        weights = np.zeros(reduced.size)
        clear = near & ~tied[items.device]
        weights[clear] = 1.0
        if not tied.any():
            return weights
        used_x, used_y = items.x[clear].sum(), items.y[clear].sum()
        rows = near & tied[items.device]
        local = np.unique(items.device[rows], return_inverse=True)[1]
        sub = solve_whole(local, items.x[rows], items.y[rows], items.cost[rows],
                          int(local.max()) + 1, capacity_x - used_x, capacity_y - used_y)
        if sub.feasible:
            weights[rows] = sub.weights
            return weights
        margin *= 100
    # no mixing fits: the plain cheapest items (the caller's rounding handles the rest)
    weights = np.zeros(reduced.size)
    weights[_cheapest(items, lam, mu)[1]] = 1.0
    return weights
