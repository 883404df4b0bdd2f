"""The share plane of every device cut into boxes, with the device's value known at each box's
upper corner: the lower bound a box gives (docs/theory.md §7.3) and its refinement.

Shares are fractions of the totals: x = b/B, y = f/F ∈ [0, 1]. V_u is non-increasing in both
(more band or server never hurts), so on a box [x0, x1]×[y0, y1]

    w_u·V_u(x, y) + λx + μy ≥ w_u·V_u(x1, y1) + λx0 + μy0          (eq. 7.6)

whatever the prices λ, μ ≥ 0: the box's cost is at least its upper corner's value and it uses
at least its lower corner's resources. All devices' boxes live in flat arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
# a box touching x = 0 is cut at x1/ZERO_CUT (a geometric midpoint of [0, x1] does not exist)
ZERO_CUT = 8.0


@dataclass(frozen=True)
class Boxes:
    """Boxes of all devices: owner, corners, and the weighted value at the upper corner."""

    device: IntArray
    x0: FloatArray
    x1: FloatArray
    y0: FloatArray
    y1: FloatArray
    value_upper: FloatArray
    # where False, value_upper is only a lower bound of V at the upper corner (the device's V
    # at the whole band and server, which no share beats); None: every value is at its corner
    exact: NDArray[np.bool_] | None = None

    @property
    def size(self) -> int:
        return int(self.device.size)

    def is_exact(self) -> NDArray[np.bool_]:
        return np.ones(self.size, dtype=bool) if self.exact is None else self.exact

    def lower_cost(self, price_x: float, price_y: float) -> FloatArray:
        """The least reduced cost any point of each box can have (eq. 7.6)."""
        return self.value_upper + price_x * self.x0 + price_y * self.y0

    def take(self, keep: NDArray[np.bool_] | IntArray) -> Boxes:
        return Boxes(self.device[keep], self.x0[keep], self.x1[keep], self.y0[keep],
                     self.y1[keep], self.value_upper[keep],
                     None if self.exact is None else self.exact[keep])

    def renumbered(self, device: IntArray) -> Boxes:
        """The same boxes with new owners."""
        return Boxes(device, self.x0, self.x1, self.y0, self.y1, self.value_upper, self.exact)

    @staticmethod
    def join(parts: list[Boxes]) -> Boxes:
        exact = (None if all(p.exact is None for p in parts)
                 else np.concatenate([p.is_exact() for p in parts]))
        device, x0, x1, y0, y1, value = (np.concatenate([getattr(p, name) for p in parts])
                                         for name in ("device", "x0", "x1", "y0", "y1",
                                                      "value_upper"))
        return Boxes(device, x0, x1, y0, y1, value, exact)


def grid_boxes(n_devices: int, levels: FloatArray) -> tuple[Boxes, FloatArray, FloatArray,
                                                           IntArray]:
    """Every device's plane cut by the same levels (0 = levels[0] < … < levels[-1] = 1) in x
    and y. Returns the boxes with value_upper unset (nan) and the upper corners to evaluate
    (x, y, device), one per box, in box order."""
    lo, hi = levels[:-1], levels[1:]
    x0, y0 = (a.ravel() for a in np.meshgrid(lo, lo, indexing="ij"))
    x1, y1 = (a.ravel() for a in np.meshgrid(hi, hi, indexing="ij"))
    per = x0.size
    device = np.repeat(np.arange(n_devices), per)
    boxes = Boxes(device, np.tile(x0, n_devices), np.tile(x1, n_devices), np.tile(y0, n_devices),
                  np.tile(y1, n_devices), np.full(device.size, np.nan))
    return boxes, boxes.x1.copy(), boxes.y1.copy(), device


def _middle(lo: FloatArray, hi: FloatArray) -> FloatArray:
    """The cut of [lo, hi]: the geometric midpoint, or hi/ZERO_CUT when lo = 0."""
    return np.where(lo > 0, np.sqrt(lo * hi), hi / ZERO_CUT)


def split_boxes(boxes: Boxes, price_x: float, price_y: float
                ) -> tuple[Boxes, FloatArray, FloatArray, IntArray]:
    """Each box cut in two across the side whose price-weighted width is larger (the part of
    its bound's slack the prices make, eq. 7.6; the wider side when they tie). Returns the
    children — the lower half first, whose upper corner is new (value_upper nan), then the
    upper half, which keeps the parent's upper corner — and the new corners to evaluate, in
    the order of the lower halves."""
    width_x, width_y = boxes.x1 - boxes.x0, boxes.y1 - boxes.y0
    weighted_x, weighted_y = price_x * width_x, price_y * width_y
    # ties (zero prices: a resource to spare) go to the wider side
    along_x = (weighted_x > weighted_y) | ((weighted_x == weighted_y) & (width_x >= width_y))
    xm = np.where(along_x, _middle(boxes.x0, boxes.x1), boxes.x1)
    ym = np.where(along_x, boxes.y1, _middle(boxes.y0, boxes.y1))
    lower = Boxes(boxes.device, boxes.x0, xm, boxes.y0, ym, np.full(boxes.size, np.nan),
                  None if boxes.exact is None else np.ones(boxes.size, dtype=bool))
    upper = Boxes(boxes.device, np.where(along_x, xm, boxes.x0), boxes.x1,
                  np.where(along_x, boxes.y0, ym), boxes.y1, boxes.value_upper, boxes.exact)
    return Boxes.join([lower, upper]), xm, ym, boxes.device
