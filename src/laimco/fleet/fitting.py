"""Devices a fleet cannot serve together are left out (docs/theory.md §7.3)."""

from __future__ import annotations

import numpy as np

from laimco.fleet.boxes import Boxes
from laimco.fleet.menu_lp import solve_menu
from laimco.fleet.share_points import SharePoints, ShareValues, cut_boxes

# rounds of cuts that try to fit every device before one is left out
FEASIBILITY_CUTS = 12


def fit_everyone(boxes: Boxes, points: SharePoints, evaluate: ShareValues
                  ) -> tuple[Boxes, SharePoints, list[int]]:
    """Leave out devices until the rest fit together. While the box relaxation has no solution
    the fleet provably cannot serve them all (§7.3): the device needing the largest least share
    (x₀ + y₀ over its boxes) goes. While the boxes fit but no evaluated points do, the boxes the
    relaxation uses are cut (their upper corners are shares that may fit), up to
    FEASIBILITY_CUTS times, before the device needing the most (over its points) goes.
    Returns boxes and points renumbered over the devices kept, and the fleet indices of those
    left out (their reason says the fleet is too small for them)."""
    left_out: list[int] = []
    cuts = 0
    while evaluate.devices.size:
        n = evaluate.devices.size
        ok = points.finite()
        relaxed = solve_menu(boxes.device, boxes.x0, boxes.y0, boxes.value_upper, n)
        if relaxed.feasible:
            if solve_menu(points.device[ok], points.x[ok], points.y[ok], points.value[ok],
                          n).feasible:
                break
            if cuts < FEASIBILITY_CUTS:
                cuts += 1
                boxes = cut_boxes(boxes, np.flatnonzero(relaxed.weights > 1e-9), points, evaluate,
                             1.0, 1.0)
                continue
            need = np.full(n, np.inf)
            np.minimum.at(need, points.device[ok], points.x[ok] + points.y[ok])
        else:
            need = np.full(n, np.inf)
            np.minimum.at(need, boxes.device, boxes.x0 + boxes.y0)
        worst = int(np.argmax(need))
        left_out.append(int(evaluate.devices[worst]))
        boxes, points = _without(boxes, points, worst, n)
        evaluate.devices = np.delete(evaluate.devices, worst)
    return boxes, points, left_out


def _without(boxes: Boxes, points: SharePoints, device: int, n: int) -> tuple[Boxes, SharePoints]:
    """Boxes and points of every device but one, renumbered."""
    renumber = np.full(n, -1)
    keep = np.delete(np.arange(n), device)
    renumber[keep] = np.arange(keep.size)
    boxes = boxes.take(boxes.device != device)
    stay = points.device != device
    return (boxes.renumbered(renumber[boxes.device]),
            SharePoints(renumber[points.device[stay]], points.x[stay], points.y[stay],
                    points.value[stay]))
