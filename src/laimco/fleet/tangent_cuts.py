"""A convex, non-decreasing function of one variable per device kept in a CVXPY model as the
maximum of its tangents — an outer approximation, refined by cutting planes (a tangent at each
new solution) — for functions that are convex but not DCP, such as the distortion laws of
docs/theory.md §3 in the fleet's conic reference (fixed_split_cvxpy.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
# side(ρ, derivative): the function (or its derivative) at an array of ρ
Side = Callable[[FloatArray, bool], FloatArray]


class TangentCuts:
    """y_u ≥ max_k (a_uk + b_uk·ρ_u) for every device u: `constraint` binds the epigraph
    variable `y` to the tangents of `sides[u]` at its points, first `n_first` points evenly
    over [low_u, high_u], then one per `add`. The slots are parameters (n_first + n_extra of
    them, unused ones repeating the first tangent), so the compiled problem is re-solved."""

    def __init__(self, cp: Any, sides: Sequence[Side], rho: Any, low: FloatArray,
                 high: FloatArray, n_first: int, n_extra: int) -> None:
        n, self.slots = len(sides), n_first + n_extra
        self.sides = list(sides)
        self.y = cp.Variable(n)
        self.a, self.b = cp.Parameter((n, self.slots)), cp.Parameter((n, self.slots))
        ones = np.ones((1, self.slots))
        column = cp.reshape(rho, (n, 1), order="C") @ ones
        self.constraint = (cp.reshape(self.y, (n, 1), order="C") @ ones
                           >= self.a + cp.multiply(self.b, column))
        self.points = [list(np.linspace(lo, hi, n_first))
                       for lo, hi in zip(low, high, strict=True)]

    @property
    def full(self) -> bool:
        return len(self.points[0]) >= self.slots

    def set(self) -> None:
        """The parameters from the current points."""
        a = np.zeros((len(self.sides), self.slots))
        b = np.zeros_like(a)
        for k, side in enumerate(self.sides):
            pts = np.array(self.points[k] + [self.points[k][0]] * (self.slots
                                                                    - len(self.points[k])))
            value, slope = side(pts, False), side(pts, True)
            slope = np.where(np.isfinite(slope), slope, 0.0)
            a[k], b[k] = value - slope * pts, slope
        self.a.value, self.b.value = a, b

    def gap(self, rho: FloatArray) -> FloatArray:
        """True value minus the epigraph variable, per device (≥ 0 up to rounding)."""
        true = np.array([float(side(np.array(r), False))
                         for side, r in zip(self.sides, rho, strict=True)])
        return np.asarray(np.maximum(true - np.asarray(self.y.value, dtype=np.float64), 0.0),
                          dtype=np.float64)

    def add(self, rho: FloatArray) -> bool:
        """A tangent at each device's ρ (every device, so the slots stay aligned); whether any
        of them is new."""
        new = False
        for k, r in enumerate(rho):
            new |= min(abs(p - float(r)) for p in self.points[k]) > 1e-12
            self.points[k].append(float(r))
        return new
