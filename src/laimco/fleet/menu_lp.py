"""Each device picks one item of its menu — a share (x, y) of the band and the server and a
cost — so that the shares sum to at most 1: the linear relaxation, solved by HiGHS, gives the
best mixture, its value and the prices of the two resources (docs/theory.md §7.3).

Hand-written only in setting up the sparse matrices: scipy's `linprog` (HiGHS) does the solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linprog
from scipy.sparse import coo_array, vstack
from scipy.spatial import ConvexHull, QhullError

from laimco.fleet.runs import run_starts

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
# menus with at most this many items are solved whole; above PRICES_FROM_ITEMS through the
# two-price dual (menu_dual.py), whose memory and time grow with the items only
HULL_FROM_ITEMS = 5000
PRICES_FROM_ITEMS = 20_000


@dataclass(frozen=True)
class MenuSolution:
    """The relaxation's value, its mixture weights per item, and the resource prices (the
    duals of Σx ≤ 1 and Σy ≤ 1, ≥ 0); `feasible` False when no mixture fits."""

    feasible: bool
    value: float
    weights: FloatArray
    price_x: float
    price_y: float


def lower_hull_items(device: IntArray, x: FloatArray, y: FloatArray,
                     cost: FloatArray) -> IntArray:
    """The items that can carry weight in an optimal mixture: per device the vertices of the
    lower convex hull of its points (x, y, cost). Any other item lies on or above a facet, so
    a mixture of that facet's vertices uses the same shares at no more cost: dropping it
    leaves the relaxation's value unchanged (docs/theory.md §7.3). Devices whose points are
    too few or degenerate for a hull keep all their items."""
    order = np.argsort(device, kind="stable")
    starts = np.flatnonzero(run_starts(device[order]))
    kept = []
    for lo, hi in zip(starts, np.r_[starts[1:], order.size], strict=True):
        items = order[lo:hi]
        if items.size <= 4:
            kept.append(items)
            continue
        c = cost[items]
        span = c.max() - c.min()
        points = np.column_stack([x[items], y[items], (c - c.min()) / (span or 1.0)])
        try:
            hull = ConvexHull(points)
        except QhullError:  # flat or too few distinct points: keep them all
            kept.append(items)
            continue
        lower = hull.equations[:, 2] < 0
        kept.append(items[np.unique(hull.simplices[lower])])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.intp)


def solve_menu(device: IntArray, x: FloatArray, y: FloatArray, cost: FloatArray,
               n_devices: int, capacity_x: float = 1.0, capacity_y: float = 1.0) -> MenuSolution:
    """min Σ cost·z  s.t.  Σ_{items of u} z = 1 for every device u, Σ x·z ≤ capacity_x,
    Σ y·z ≤ capacity_y, z ≥ 0 (every device must own at least one item). Solved over the
    lower-hull items only (same value); the weights are returned for every item."""
    if cost.size <= HULL_FROM_ITEMS:  # small: the hulls cost more than they save
        return solve_whole(device, x, y, cost, n_devices, capacity_x, capacity_y)
    if cost.size > PRICES_FROM_ITEMS:  # large: through the two-price dual (menu_dual.py)
        from laimco.fleet.menu_dual import solve_by_prices

        return solve_by_prices(device, x, y, cost, n_devices, capacity_x, capacity_y)
    keep = lower_hull_items(device, x, y, cost)
    reduced = solve_whole(device[keep], x[keep], y[keep], cost[keep], n_devices, capacity_x,
                     capacity_y)
    weights = np.zeros(cost.size)
    weights[keep] = reduced.weights
    return MenuSolution(reduced.feasible, reduced.value, weights, reduced.price_x,
                        reduced.price_y)


def solve_whole(device: IntArray, x: FloatArray, y: FloatArray, cost: FloatArray,
           n_devices: int, capacity_x: float, capacity_y: float) -> MenuSolution:
    n_items = cost.size
    columns = np.arange(n_items)
    a_eq = coo_array((np.ones(n_items), (device, columns)), shape=(n_devices, n_items))
    a_ub = vstack([coo_array(x[None, :]), coo_array(y[None, :])])
    result = linprog(cost, A_ub=a_ub, b_ub=[capacity_x, capacity_y], A_eq=a_eq,
                     b_eq=np.ones(n_devices), bounds=(0, None), method="highs")
    if result.status != 0:
        return MenuSolution(False, np.inf, np.zeros(n_items), 0.0, 0.0)
    marginals = result.ineqlin.marginals
    return MenuSolution(True, float(result.fun), np.asarray(result.x),
                        float(max(-marginals[0], 0.0)), float(max(-marginals[1], 0.0)))
