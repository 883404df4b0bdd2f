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

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class MenuSolution:
    """The relaxation's value, its mixture weights per item, and the resource prices (the
    duals of Σx ≤ 1 and Σy ≤ 1, ≥ 0); `feasible` False when no mixture fits."""

    feasible: bool
    value: float
    weights: FloatArray
    price_x: float
    price_y: float


def solve_menu(device: IntArray, x: FloatArray, y: FloatArray, cost: FloatArray,
               n_devices: int, capacity_x: float = 1.0, capacity_y: float = 1.0) -> MenuSolution:
    """min Σ cost·z  s.t.  Σ_{items of u} z = 1 for every device u, Σ x·z ≤ capacity_x,
    Σ y·z ≤ capacity_y, z ≥ 0 (every device must own at least one item)."""
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
