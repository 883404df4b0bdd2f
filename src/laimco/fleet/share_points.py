"""Shares evaluated so far and the value oracle over fractions of the totals, the first grid
of boxes, and box cutting: what the weighted-sum and max-min solvers share
(docs/theory.md §7.3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.boxes import Boxes, grid_boxes, split_boxes
from laimco.fleet.fleet import Fleet
from laimco.fleet.value import ClassValue

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
# the first grid: the equal share times powers of GRID_RATIO from GRID_RATIO^-GRID_BELOW of it
GRID_RATIO = 16.0
GRID_BELOW = 1
# first-grid corners beyond this many equal shares are evaluated only when needed
LAZY_ABOVE = 256.0


@dataclass
class SharePoints:
    """Every share evaluated so far: owner, (x, y) and the weighted value w·V (inf: nothing
    fits there)."""

    device: IntArray
    x: FloatArray
    y: FloatArray
    value: FloatArray

    def add(self, device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray) -> None:
        self.device = np.concatenate([self.device, device])
        self.x = np.concatenate([self.x, x])
        self.y = np.concatenate([self.y, y])
        self.value = np.concatenate([self.value, value])

    def finite(self) -> NDArray[np.bool_]:
        return np.isfinite(self.value)


class ShareValues:
    """w_u·V_u at shares given as fractions of the totals, for devices of the served subset."""

    def __init__(self, fleet: Fleet, devices: IntArray, values: list[ClassValue]) -> None:
        self.fleet, self.devices, self.values = fleet, devices, values
        self.calls = 0

    def __call__(self, device: IntArray, x: FloatArray, y: FloatArray) -> FloatArray:
        fleet = self.fleet
        members = self.devices[device]
        out = np.empty(device.size)
        for number, value in enumerate(self.values):
            rows = np.flatnonzero(fleet.class_index[members] == number)
            if rows.size:
                u = members[rows]
                out[rows] = fleet.weight[u] * value.values(
                    fleet.path_gain[u], x[rows] * fleet.resources.bandwidth_hz,
                    y[rows] * fleet.resources.server_cycles_per_s)
        self.calls += device.size
        return out


def first_levels(n_devices: int) -> FloatArray:
    """0, then the equal share 1/N times powers of GRID_RATIO from GRID_RATIO^-GRID_BELOW up
    to 1 (the whole resource)."""
    equal = 1.0 / max(n_devices, 1)
    top = int(np.ceil(np.log(1 / equal) / np.log(GRID_RATIO) - 1e-9))
    levels = equal * GRID_RATIO ** np.arange(-GRID_BELOW, top)
    return np.concatenate([[0.0], levels[levels < 1.0], [1.0]])


def servable(fleet: Fleet, values: list[ClassValue]) -> NDArray[np.bool_]:
    """Devices that could be served if they had the whole band and server: V_u(1, 1) < ∞."""
    res = fleet.resources
    out = np.zeros(fleet.n_devices, dtype=bool)
    for number, value in enumerate(values):
        u = fleet.members(number)
        out[u] = np.isfinite(value.values(fleet.path_gain[u], np.full(u.size, res.bandwidth_hz),
                                          np.full(u.size, res.server_cycles_per_s)))
    return out


def first_grid(evaluate: ShareValues, n: int) -> tuple[Boxes, SharePoints]:
    """Every device's share plane cut by `first_levels`. Boxes whose upper corner lies within
    LAZY_ABOVE equal shares are evaluated there; the others (a share no device of a large fleet
    is likely to get) start with the device's value at the whole band and server, a lower
    bound of V anywhere (V is non-increasing), and are evaluated only when a relaxation uses
    them (`cut_boxes`)."""
    levels = first_levels(n)
    boxes, cx, cy, owner = grid_boxes(n, levels)
    inside = (cx > 0) & (cy > 0)
    near = inside & (np.maximum(cx, cy) <= LAZY_ABOVE / n * (1 + 1e-12))
    lazy = inside & ~near
    value = np.empty(cx.size)
    value[near] = evaluate(owner[near], cx[near], cy[near])
    local = evaluate(np.arange(n), np.zeros(n), np.zeros(n))
    value[~inside] = local[owner[~inside]]
    whole = np.zeros(0)
    if lazy.any():
        whole = evaluate(np.arange(n), np.ones(n), np.ones(n))
        value[lazy] = whole[owner[lazy]]
    boxes = Boxes(boxes.device, boxes.x0, boxes.x1, boxes.y0, boxes.y1, value, ~lazy)
    every = np.arange(whole.size)
    points = SharePoints(np.concatenate([owner[near], np.arange(n), every]),
                         np.concatenate([cx[near], np.zeros(n), np.ones(whole.size)]),
                         np.concatenate([cy[near], np.zeros(n), np.ones(whole.size)]),
                         np.concatenate([value[near], local, whole]))
    return boxes.take(np.isfinite(boxes.value_upper)), points


def cut_boxes(boxes: Boxes, cut: IntArray, points: SharePoints, evaluate: ShareValues,
              price_x: float, price_y: float) -> Boxes:
    """The boxes `cut` refined: a box whose value is still a bound (`first_grid`) gets its
    upper corner evaluated; the others are cut in two (split_boxes), their new corners
    evaluated and added to the points. Boxes that turn out infeasible (∞ at the upper corner)
    are dropped."""
    if cut.size == 0:
        return boxes
    bounded = cut[~boxes.is_exact()[cut]]
    if bounded.size:
        corner = evaluate(boxes.device[bounded], boxes.x1[bounded], boxes.y1[bounded])
        points.add(boxes.device[bounded], boxes.x1[bounded], boxes.y1[bounded], corner)
        value, exact = boxes.value_upper.copy(), boxes.is_exact().copy()
        value[bounded], exact[bounded] = corner, True
        boxes = Boxes(boxes.device, boxes.x0, boxes.x1, boxes.y0, boxes.y1, value, exact)
        cut = np.setdiff1d(cut, bounded)
    keep = np.ones(boxes.size, dtype=bool)
    keep[cut] = False
    children, cx, cy, owner = split_boxes(boxes.take(cut), price_x, price_y)
    new = evaluate(owner, cx, cy)
    points.add(owner, cx, cy, new)
    children.value_upper[np.isnan(children.value_upper)] = new
    joined = Boxes.join([boxes.take(keep), children])
    return joined.take(np.isfinite(joined.value_upper))
