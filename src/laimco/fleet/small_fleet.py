"""Small fleets (docs/theory.md §7.5): with a handful of devices the relaxation of §7.3 can be
far from one-choice-per-device (a device half alone, half offloading), so the answer is
polished by moving shares between devices, and for up to three devices the bound comes from
every combination of boxes instead of the relaxation.

- **Polish** (any N ≤ POLISH_DEVICES; max-min only above level_frontier.LEVEL_DEVICES, whose
  level search replaces it): a pattern search on the shares. Each step tries moving
  a fraction of one device's band, server share, or both to another device, or band one way
  and server share the other (every ordered pair, evaluated exactly in one vectorized call),
  takes the best move that lowers the objective, and halves the fraction when none does.
  Sums stay exactly 1; every value is the exact single-device optimum. A local method: it
  never makes the answer worse.
- **Exhaustive bound** (N ≤ EXHAUSTIVE_DEVICES): the least Σ w·V at the upper corners over all
  combinations of one box per device whose lower corners fit (Σx₀ ≤ 1, Σy₀ ≤ 1). Every
  allocation lies in such a combination, so this is a lower bound with no relaxation gap
  (*proven*, by (7.6)). Boxes dominated within their device (more share at both corners' lower
  ends and no lower value) are dropped first; they never make the minimum.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.boxes import Boxes

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
Evaluate = Callable[[IntArray, FloatArray, FloatArray], FloatArray]
POLISH_DEVICES = 8
EXHAUSTIVE_DEVICES = 3
POLISH_START = 0.25   # the first fraction of the giver's share moved
POLISH_END = 1e-9     # stop when the fraction falls below this
POLISH_STEPS = 400
# combinations enumerated at once at most (the exhaustive bound gives up beyond)
COMBINATIONS_MAX = 4_000_000


def polish(x: FloatArray, y: FloatArray, value: FloatArray, evaluate: Evaluate,
           worst: bool = False) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Pattern search over share moves between devices (module docstring); returns the
    polished shares and the devices' weighted values there. `worst`: the objective is the
    largest value (max-min), and a move that keeps it but lowers the larger of the two
    devices it touches is progress too."""
    n = x.size
    x, y, value = x.copy(), y.copy(), value.copy()
    pairs = np.array([(a, b) for a in range(n) for b in range(n) if a != b], dtype=np.intp)
    if pairs.size == 0:
        return x, y, value
    # band, server share, both, or band one way and server share the other (an exchange)
    moves = np.array([(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, -1.0)])
    step = POLISH_START
    for _ in range(POLISH_STEPS):
        if step < POLISH_END:
            break
        give, take = np.repeat(pairs[:, 0], len(moves)), np.repeat(pairs[:, 1], len(moves))
        mx, my = np.tile(moves[:, 0], len(pairs)), np.tile(moves[:, 1], len(pairs))
        # a positive move takes a fraction of the giver's share, a negative one of the taker's
        dx = step * mx * np.where(mx > 0, x[give], x[take])
        dy = step * my * np.where(my > 0, y[give], y[take])
        useful = (dx != 0) | (dy != 0)
        give, take, dx, dy = give[useful], take[useful], dx[useful], dy[useful]
        if give.size == 0:
            break
        rows_device = np.concatenate([give, take])
        rows_x = np.concatenate([x[give] - dx, x[take] + dx])
        rows_y = np.concatenate([y[give] - dy, y[take] + dy])
        new = evaluate(rows_device, np.maximum(rows_x, 0.0), np.maximum(rows_y, 0.0))
        m = give.size
        if worst:
            change = _worst_change(value, give, take, new[:m], new[m:])
        else:
            change = (new[:m] + new[m:]) - (value[give] + value[take])
        best = int(np.argmin(change))
        if not change[best] < -1e-15 * max(abs(value.sum()), 1e-300):
            step /= 2
            continue
        g, t = give[best], take[best]
        x[g], y[g] = max(rows_x[best], 0.0), max(rows_y[best], 0.0)
        x[t], y[t] = rows_x[m + best], rows_y[m + best]
        value[g], value[t] = new[best], new[m + best]
    return x, y, value


def _worst_change(value: FloatArray, give: IntArray, take: IntArray, new_give: FloatArray,
                  new_take: FloatArray) -> FloatArray:
    """Per move: the change of the largest value, or, where that stays, a small negative
    number when the larger of the two touched devices falls (progress toward lowering it)."""
    n = value.size
    others = np.array([[np.max(np.delete(value, [g, t]), initial=-np.inf)
                        for t in range(n)] for g in range(n)])
    new_max = np.maximum(others[give, take], np.maximum(new_give, new_take))
    old_max = value.max()
    pair_old = np.maximum(value[give], value[take])
    pair_new = np.maximum(new_give, new_take)
    tie = np.isclose(new_max, old_max, rtol=0, atol=1e-15 * max(abs(old_max), 1e-300))
    return np.asarray(np.where(tie, np.minimum(pair_new - pair_old, 0.0) * 1e-6,
                               new_max - old_max), dtype=np.float64)


def exhaustive_bound(boxes: Boxes, n: int, worst: bool = False
                     ) -> tuple[float, list[IntArray]] | None:
    """The least Σ (`worst`: max) value at the upper corners over combinations of one box per
    device whose lower corners fit, and the best combinations' boxes (for cutting); None when
    there are too many combinations."""
    return best_combinations(boxes.device, boxes.x0, boxes.y0, boxes.value_upper, n, worst)


def best_combinations(device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray,
                      n: int, worst: bool = False) -> tuple[float, list[IntArray]] | None:
    """The least Σ (`worst`: max) value over combinations of one item per device whose shares
    fit (Σx ≤ 1, Σy ≤ 1) and the (up to) 8 best combinations, as item indices per device;
    None when there are too many combinations to enumerate."""
    per_device = [_undominated(device, x, y, value, u) for u in range(n)]
    if any(items.size == 0 for items in per_device):
        return np.inf, []
    if np.prod([items.size for items in per_device], dtype=float) > COMBINATIONS_MAX:
        return None
    grids = np.meshgrid(*per_device, indexing="ij")
    chosen = np.stack([g.ravel() for g in grids])  # (n, combinations)
    fits = (x[chosen].sum(axis=0) <= 1 + 1e-12) & (y[chosen].sum(axis=0) <= 1 + 1e-12)
    combined = value[chosen].max(axis=0) if worst else value[chosen].sum(axis=0)
    total = np.where(fits, combined, np.inf)
    order = np.argsort(total, kind="stable")[:8]
    return float(total[order[0]]), [chosen[:, k] for k in order if np.isfinite(total[k])]


def _undominated(device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray,
                 u: int) -> IntArray:
    """The device's finite items that no other of its items beats at both shares and the
    value (a dominated item never makes the minimum); identical items kept once."""
    items = np.flatnonzero((device == u) & np.isfinite(value))
    if items.size <= 1:
        return items
    x0, y0, v = x[items], y[items], value[items]
    no_more = ((x0[None, :] <= x0[:, None]) & (y0[None, :] <= y0[:, None])
               & (v[None, :] <= v[:, None]))
    strictly = ((x0[None, :] < x0[:, None]) | (y0[None, :] < y0[:, None])
                | (v[None, :] < v[:, None]))
    dominated = (no_more & strictly).any(axis=1)
    _, first = np.unique(np.column_stack([x0, y0, v]), axis=0, return_index=True)
    keep = np.zeros(items.size, dtype=bool)
    keep[first] = True
    return items[~dominated & keep]
