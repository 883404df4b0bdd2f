"""One evaluated point per device from the relaxation over the points, by diving
(docs/theory.md §7.3, "The answer").

A basic optimal mixture mixes at most two devices; rounding each to one of its own points can
cost a whole device's non-convexity (a device half running alone, half offloading, sent back
to running alone). Diving fixes instead: the mixed device is fixed to each of its mixed points
in turn, the relaxation is solved again over the others' points (they make room), and the
cheapest fix is kept; then the next mixed device, until none is mixed. Every relaxation is
over real points, so the final choice fits (Σx ≤ 1, Σy ≤ 1) and its cost is exact. The
relaxations are solved by HiGHS whole (menu_lp.solve_whole): its basic solutions mix at most
two devices.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.menu_lp import MenuSolution, solve_whole

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]
# weights below this are not part of the mixture
SUPPORT = 1e-9


def dive(device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray, n: int,
         start: MenuSolution, max_fixes: int) -> tuple[BoolArray, FloatArray]:
    """The items still allowed and the relaxation's weights over them after fixing at most
    `max_fixes` mixed devices (module docstring), starting from the relaxation `start` over
    all items. The device whose mixed items differ most in value is fixed first: rounding it
    would cost the most. Devices still mixed at the end are left to the caller's rounding."""
    active = np.ones(device.size, dtype=bool)
    weights = start.weights
    for _ in range(max_fixes):
        support = active & (weights > SUPPORT)
        counts = np.bincount(device[support], minlength=n)
        mixed = np.flatnonzero(counts > 1)
        if mixed.size == 0:
            break
        high, low = np.full(n, -np.inf), np.full(n, np.inf)
        np.maximum.at(high, device[support], value[support])
        np.minimum.at(low, device[support], value[support])
        u = int(mixed[np.argmax((high - low)[mixed])])
        fixed = _best_fix(device, x, y, value, n, active, support, u)
        if fixed is None:
            break
        active, weights = fixed
    return active, weights


def _best_fix(device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray, n: int,
              active: BoolArray, support: BoolArray, u: int
              ) -> tuple[BoolArray, FloatArray] | None:
    """Device u fixed to each of its mixed items: the cheapest relaxation that fits, as the
    active items and their weights (over all items)."""
    best: tuple[BoolArray, FloatArray] | None = None
    best_value = np.inf
    for item in np.flatnonzero(support & (device == u)):
        trial = active & ((device != u) | (np.arange(device.size) == item))
        solved = solve_whole(device[trial], x[trial], y[trial], value[trial], n, 1.0, 1.0)
        if solved.feasible and solved.value < best_value:
            weights = np.zeros(device.size)
            weights[trial] = solved.weights
            best, best_value = (trial, weights), solved.value
    return best
