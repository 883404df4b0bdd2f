"""Branch and bound over the box relaxation, for small fleets (docs/theory.md §7.3).

With few devices the relaxation's own gap — one device mixed between running alone and
offloading, say — can dominate the certificate. Branching closes it: a device the relaxation
mixes has its boxes divided in two by a threshold on one share (every point of its plane lies
in a box of one side or the other), the relaxation is solved on each side, and the least bound
over the open branches stays a proven lower bound. Each branch's evaluated points also give a
feasible answer (the relaxation over them, rounded), so the answer can improve too.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.boxes import Boxes
from laimco.fleet.menu_lp import solve_menu

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
# a branch's primal: shares (x, y) per device and their exact total, or None
Primal = Callable[[BoolArray], tuple[tuple[FloatArray, FloatArray], float] | None]


@dataclass(frozen=True)
class BranchResult:
    bound: float
    value: float
    shares: tuple[FloatArray, FloatArray] | None
    nodes: int
    # the boxes the relaxations of branches still below the target use: where cutting helps
    weak: BoolArray


def branch_and_bound(boxes: Boxes, n: int, point_x: FloatArray, point_y: FloatArray,
                     point_device: NDArray[np.intp], primal: Primal, incumbent: float,
                     gap: float, max_nodes: int) -> BranchResult:
    """The least bound over the open branches (and the best answer found) after at most
    `max_nodes` relaxations; stops once the bound is within `gap` of the best answer."""
    counter = itertools.count()
    root = np.ones(boxes.size, dtype=bool)
    root_points = np.ones(point_x.size, dtype=bool)
    heap: list[tuple[float, int, BoolArray, BoolArray]] = []
    best_value, best_shares = incumbent, None
    bound_of_leaves = np.inf
    nodes = 0
    weak = np.zeros(boxes.size, dtype=bool)
    heapq.heappush(heap, (-np.inf, next(counter), root, root_points))
    while heap and nodes < max_nodes:
        parent_bound, _, mask, point_mask = heapq.heappop(heap)
        if parent_bound >= best_value * (1 - gap):
            heapq.heappush(heap, (parent_bound, next(counter), mask, point_mask))
            break
        nodes += 1
        relaxed = solve_menu(boxes.device[mask], boxes.x0[mask], boxes.y0[mask],
                             boxes.value_upper[mask], n)
        if not relaxed.feasible:
            continue  # no allocation lies in this branch
        found = primal(point_mask)
        if found is not None and found[1] < best_value:
            best_shares, best_value = found
        weights = np.zeros(boxes.size)
        weights[mask] = relaxed.weights
        if relaxed.value < best_value * (1 - gap):
            weak |= weights > 1e-9
        split = _branching(boxes, weights)
        if split is None:  # one box per device: nothing to branch on
            bound_of_leaves = min(bound_of_leaves, relaxed.value)
            continue
        device, on_x, threshold = split
        coordinate = boxes.x0 if on_x else boxes.y0
        point_coordinate = point_x if on_x else point_y
        mine, my_points = boxes.device == device, point_device == device
        for low_side in (True, False):
            side = (coordinate <= threshold) == low_side
            heapq.heappush(heap, (relaxed.value, next(counter), mask & (~mine | side),
                                  point_mask & (~my_points | ((point_coordinate <= threshold)
                                                              == low_side))))
    open_bound = min((b for b, *_ in heap), default=np.inf)
    bound = min(open_bound, bound_of_leaves, best_value)
    return BranchResult(float(bound), float(best_value), best_shares, nodes, weak)


def promising(boxes: Boxes, price_x: float, price_y: float, incumbent: float
              ) -> BoolArray:
    """The boxes that can hold a share of an allocation cheaper than `incumbent`, by reduced
    costs at the prices (λ, μ) (docs/theory.md §7.3): with π_u the least priced lower cost
    c + λx₀ + μy₀ of u's boxes and L = Σ π_u − λ − μ the dual bound there, any allocation
    that puts u in box k costs at least L + (c_k + λx₀ₖ + μy₀ₖ − π_u), since the others'
    priced costs are at least their π and the shares sum to at most 1. Boxes whose reduced
    cost exceeds incumbent − L are dropped: the least bound over the rest, capped at the
    incumbent, is still a lower bound on the optimum."""
    n = int(boxes.device.max()) + 1
    low = boxes.lower_cost(price_x, price_y)
    least = np.full(n, np.inf)
    np.minimum.at(least, boxes.device, low)
    dual = float(least.sum()) - price_x - price_y
    reduced = low - least[boxes.device]
    return np.asarray(reduced <= (incumbent - dual) + 1e-9 * abs(incumbent), dtype=bool)


def _branching(boxes: Boxes, weights: FloatArray) -> tuple[int, bool, float] | None:
    """The device the relaxation mixes most (its largest weight is the smallest) and the
    share (x₀ or y₀, the one whose support spreads more) and threshold (the weighted mean of
    the support's) that divide its mixed boxes."""
    support = weights > 1e-9
    if not support.any():
        return None
    devices = boxes.device[support]
    counts = np.bincount(devices)
    mixed = np.flatnonzero(counts > 1)
    if mixed.size == 0:
        return None
    high, low = np.full(counts.size, -np.inf), np.full(counts.size, np.inf)
    np.maximum.at(high, devices, boxes.value_upper[support])
    np.minimum.at(low, devices, boxes.value_upper[support])
    device = int(mixed[np.argmax((high - low)[mixed])])
    items = np.flatnonzero(support & (boxes.device == device))
    w = weights[items]
    spread_x = np.ptp(boxes.x0[items])
    spread_y = np.ptp(boxes.y0[items])
    on_x = bool(spread_x >= spread_y)
    values = boxes.x0[items] if on_x else boxes.y0[items]
    if np.ptp(values) == 0:
        return None
    threshold = float(np.sum(w * values) / np.sum(w))
    if threshold >= values.max():
        threshold = float(np.nextafter(values.max(), -np.inf))
    return device, on_x, threshold
