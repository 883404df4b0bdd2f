"""Fairness: the least t such that every device reaches w_u·V_u ≤ t within the fleet's band
and server (docs/theory.md §7.4).

Same boxes as the weighted sum (solver.py). A level t is reachable by boxes when every device
can pick a box whose upper-corner value is ≤ t at its lower-corner shares with the shares
summing to at most 1 (the linear relaxation). If some allocation reaches t, each device's share
lies in a box whose upper corner is at least as good, so the boxes reach t: the least level the
boxes reach is a lower bound on the optimum. The same test on evaluated points, rounded to one
point per device, gives a feasible allocation.

Fleets of up to LEVEL_DEVICES devices then get the level search on frontiers
(level_frontier.py, docs/theory.md §7.5): exact frontiers and lattice fits, a proven lower
bound, and a least level found by a lattice search and local zooms. Last, efficiency: the
weighted-sum answer is kept instead when its worst device is no worse (`_spend_the_rest`).
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.answer import fleet_answer
from laimco.fleet.boxes import Boxes
from laimco.fleet.fitting import fit_everyone
from laimco.fleet.fleet import Fleet
from laimco.fleet.level_frontier import LEVEL_DEVICES, least_level_shares
from laimco.fleet.menu_lp import solve_menu
from laimco.fleet.runs import rank_within
from laimco.fleet.share_points import (
    SharePoints,
    ShareValues,
    cut_boxes,
    first_grid,
    servable,
)
from laimco.fleet.small_fleet import (
    EXHAUSTIVE_DEVICES,
    POLISH_DEVICES,
    best_combinations,
    exhaustive_bound,
    polish,
)
from laimco.fleet.solution import FleetSolution
from laimco.fleet.solver import CUTS_PER_DEVICE, Progress, _round, hand_out_leftover
from laimco.fleet.value import fleet_values

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def _reaches(device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray, level: float,
             n: int) -> tuple[bool, FloatArray]:
    """Whether every device can pick an item of value ≤ level with Σx ≤ 1, Σy ≤ 1 (relaxed),
    and the mixture that uses the least total share."""
    allowed = value <= level
    if np.bincount(device[allowed], minlength=n).min(initial=1) == 0:
        return False, np.zeros(value.size)
    weights = np.zeros(value.size)
    solution = solve_menu(device[allowed], x[allowed], y[allowed], x[allowed] + y[allowed], n)
    weights[allowed] = solution.weights
    return solution.feasible, weights


def least_level(device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray, n: int,
                integral: bool) -> tuple[float, IntArray | None]:
    """The least item value the menu reaches (binary search over the values: reachability
    changes only there); with `integral`, reached by one rounded item per device (returned)."""
    levels = np.unique(value[np.isfinite(value)])
    lo, hi, found = 0, levels.size - 1, None
    best = np.inf
    while lo <= hi:
        mid = (lo + hi) // 2
        ok, weights = _reaches(device, x, y, value, float(levels[mid]), n)
        pick = None
        if ok and integral:
            allowed = value <= levels[mid]
            pick = _round(device, x, y, np.where(allowed, value, np.inf), weights, n)
            ok = bool(x[pick].sum() <= 1 + 1e-12 and y[pick].sum() <= 1 + 1e-12
                      and np.all(value[pick] <= levels[mid]))
        if ok:
            best, found, hi = float(levels[mid]), pick, mid - 1
        else:
            lo = mid + 1
    return best, found


def solve_max_min(fleet: Fleet, *, gap: float, max_rounds: int,
                  progress: Progress | None = None) -> FleetSolution:
    started = time.perf_counter()
    values = fleet_values(fleet)
    devices = np.flatnonzero(servable(fleet, values))
    evaluate = ShareValues(fleet, devices, values)
    n = devices.size
    x, y, bound = np.zeros(fleet.n_devices), np.zeros(fleet.n_devices), 0.0
    crowded: list[int] = []
    if n:
        boxes, points = first_grid(evaluate, n)
        boxes, points, crowded = fit_everyone(boxes, points, evaluate)
        devices, n = evaluate.devices, evaluate.devices.size
    if n:
        (share_x, share_y), primal = (np.zeros(n), np.zeros(n)), np.inf
        for round_number in range(max_rounds + 1):
            bound = max(bound, least_level(boxes.device, boxes.x0, boxes.y0,
                                           boxes.value_upper, n, integral=False)[0])
            combos: list[NDArray[np.intp]] = []
            if n <= EXHAUSTIVE_DEVICES:
                exhaustive = exhaustive_bound(boxes, n, worst=True)
                if exhaustive is not None:
                    bound, combos = max(bound, exhaustive[0]), exhaustive[1]
            found, value = _primal_level(points, n, evaluate)
            if value < primal:
                (share_x, share_y), primal = found, value
            rel = (primal - bound) / max(abs(primal), 1e-300)
            if progress:
                progress(f"round {round_number}: worst {primal:.6g}, bound {bound:.6g}, "
                         f"gap {rel:.2e}, {evaluate.calls} evaluations")
            if rel <= gap or round_number == max_rounds:
                break
            boxes = _refine_level(boxes, points, primal, evaluate, combos)
        if n <= LEVEL_DEVICES:
            share_x, share_y, bound = _least_level(evaluate, share_x, share_y, bound, progress)
        elif n <= POLISH_DEVICES:
            start = evaluate(np.arange(n), share_x, share_y)
            share_x, share_y, polished = polish(share_x, share_y, start, evaluate, worst=True)
            if progress:
                progress(f"polished: worst {start.max():.9g} → {polished.max():.9g}")
        x[devices], y[devices] = share_x, share_y
        x, y = _spend_the_rest(fleet, x, y, float(evaluate(
            np.arange(n), share_x, share_y).max(initial=0.0)), n, gap, max_rounds)
    return fleet_answer(fleet, "dual-decomposition", "max-min", x, y, bound, started, crowded)


def _least_level(evaluate: ShareValues, share_x: FloatArray, share_y: FloatArray, bound: float,
                 progress: Progress | None) -> tuple[FloatArray, FloatArray, float]:
    """A small fleet's shares from the level search on frontiers (level_frontier.py), started
    from the rounds' answer and bound; its leftover handed out, its values evaluated again,
    kept only if its worst device is no worse. Returns the shares and the raised bound."""
    n = evaluate.devices.size
    start = evaluate(np.arange(n), share_x, share_y)
    if not np.isfinite(start.max()):  # the search starts from a level the shares reach
        return share_x, share_y, bound
    found = least_level_shares(evaluate, n, bound, float(start.max()), share_x, share_y)
    x, y = found.x.copy(), found.y.copy()
    idle = (x == 0) | (y == 0)  # a share of one resource alone buys nothing (§7.2)
    x[idle], y[idle] = 0.0, 0.0
    hand_out_leftover(x, y, evaluate(np.arange(n), x, y))
    final = evaluate(np.arange(n), x, y)
    bound = max(bound, found.proven_below)
    if progress:
        progress(f"level search: worst {start.max():.9g} → {final.max():.9g}, "
                 f"bound {bound:.9g}")
    if final.max() <= start.max():
        return x, y, bound
    return share_x, share_y, bound


def _spend_the_rest(fleet: Fleet, x: FloatArray, y: FloatArray, worst: float, n_served: int,
                    gap: float, max_rounds: int) -> tuple[FloatArray, FloatArray]:
    """Fairness first, then efficiency: the weighted-sum answer is taken instead when it serves
    as many devices and its worst device is no worse (the max-min optimum is often flat: only
    the worst device's value matters to it). "No worse" to 1e-12 relative: the sum answer's
    values come from `solve`, the worst from the oracle, which agree to about 1e-15."""
    from laimco.fleet.solver import solve_fleet

    efficient = solve_fleet(fleet, "sum", gap=gap, max_rounds=max_rounds)
    weighted = fleet.weight * efficient.device_objective
    served = np.isfinite(weighted)
    if served.sum() >= n_served and weighted[served].max() <= worst * (1 + 1e-12):
        return (efficient.bandwidth_hz / fleet.resources.bandwidth_hz,
                efficient.server_cycles_per_s / fleet.resources.server_cycles_per_s)
    return x, y


def _primal_level(points: SharePoints, n: int, evaluate: ShareValues
                  ) -> tuple[tuple[FloatArray, FloatArray], float]:
    ok = points.finite()
    device, x, y, value = points.device[ok], points.x[ok], points.y[ok], points.value[ok]
    _, pick = least_level(device, x, y, value, n, integral=True)
    if n <= EXHAUSTIVE_DEVICES:  # few devices: the best combination of points, exactly
        found = best_combinations(device, x, y, value, n, worst=True)
        if found is not None and found[1]:
            pick = found[1][0]
    if pick is None:  # no rounding fits: every device alone on its least-share point
        pick = np.array([np.flatnonzero(device == u)[np.argmin((x + y)[device == u])]
                         for u in range(n)])
    share_x, share_y = x[pick].copy(), y[pick].copy()
    idle = (share_x == 0) | (share_y == 0)
    share_x[idle], share_y[idle] = 0.0, 0.0
    hand_out_leftover(share_x, share_y, value[pick])
    final = evaluate(np.arange(n), share_x, share_y)
    points.add(np.arange(n), share_x, share_y, final)
    return (share_x, share_y), float(final.max(initial=0.0))


def _refine_level(boxes: Boxes, points: SharePoints, level: float, evaluate: ShareValues,
                  combos: list[NDArray[np.intp]] | None = None) -> Boxes:
    """Cut the boxes that could still reach below the current worst value: per device the
    CUTS_PER_DEVICE with the least lower-corner share among those whose upper corner is below
    it (they are what lets the relaxation reach low levels)."""
    open_ = boxes.value_upper < level * (1 - 1e-12)
    cost = boxes.x0 + boxes.y0
    order = np.lexsort((cost, boxes.device))
    ranked = order[open_[order]]
    cut = ranked[rank_within(boxes.device[ranked]) < CUTS_PER_DEVICE]
    if combos:  # the best box combinations of a small fleet: where its bound comes from
        cut = np.union1d(cut, np.concatenate(combos))
    return cut_boxes(boxes, cut, points, evaluate, 1.0, 1.0)
