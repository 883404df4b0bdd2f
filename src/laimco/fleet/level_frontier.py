"""Max-min on a small fleet by level sets and their frontiers (docs/theory.md §7.5).

The max-min problem (7.3) in share fractions is: the least level t such that every device has
w_u·V_u(x_u, y_u) ≤ t with Σx ≤ 1, Σy ≤ 1. V_u is non-increasing in both shares (§7.2), so
the set where w_u·V_u ≤ t is an up-set of the share square, and its lower frontier

    φ_u,t(x) = the least y with w_u·V_u(x, y) ≤ t     (∞ when even y = 1 is not enough)

is non-increasing in x and in t. The level t is reachable iff Σ_u φ_u,t(x_u) ≤ 1 for some x
with Σx ≤ 1. What is exact and what is a search:

- **Frontiers** (*exact to a tolerance*). φ is bracketed by a root search in y on the monotone
  w·V(x, ·) − t (regula falsi with the Illinois rule, bisection where it stalls or a value is
  infinite), to FRONTIER_TOL of the resource (coarse lattices: `_precision`): w·V > t at the
  bracket's low end and ≤ t at its high end, both evaluated by the exact oracle (value.py), so
  φ lies inside. Every evaluation at a grid point is kept and brackets φ at the next level.
- **The fit on a lattice** (*exact*). With every x_u on a lattice x₀,u + h·j, j ∈ 0..m_u, the
  least Σ φ(x_u) subject to Σ x ≤ 1 is a resource allocation over integers: a min-plus
  convolution of the devices' frontier arrays (dynamic programming, any N).
- **A proven lower bound** (*proven*). On the lattice of step h = 1/K from 0, any x_u lies in
  a cell [jh, (j+1)h] with Σ j ≤ K, and on that cell φ(x_u) ≥ φ((j + 1)h) (monotone). If even
  these least frontiers do not fit (the same dynamic programme on the brackets' low ends), no
  allocation reaches t: t is below the optimum. The highest such t on the first lattice is
  found by bisection (to PROOF_TOL) after the search.
- **The least level** (*search*). Regula falsi on the fit minus 1 (a non-increasing function
  of t) between a level not reached and a reached one, first on the lattice of step 1/K, then
  on lattices 4× finer in a window of ±2 old steps around the best shares found (zooms), down
  to a step of ZOOM_END. The zooms are local: a better basin missed by the first lattice is
  not searched again.

The answer's shares are those of the best reached level (Σx ≤ 1, Σy ≤ 1); the caller hands
out the leftover and evaluates the final shares again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
Evaluate = Callable[[IntArray, FloatArray, FloatArray], FloatArray]
LEVEL_DEVICES = 8            # fleets up to this size get the level search
FIRST_LATTICE = 64           # the first lattice: step 1/FIRST_LATTICE of the band
ZOOM = 4                     # each zoom divides the step by this ...
ZOOM_SPAN = 2 * ZOOM         # ... and spans this many new steps each side of the best shares
ZOOM_END = 1e-9              # zooms stop when the step falls below this (fraction of the band)
FRONTIER_TOL = 1e-12         # frontier brackets narrower than this fraction of the server
LEVEL_TOL = 1e-12            # levels are searched to this relative width
# coarse lattices need less: frontiers and levels to min(step·COARSE_TOL, step²) (absolute,
# relative) but no less than the tolerances above (the zooms that follow ask for more)
COARSE_TOL = 1e-4
PROOF_TOL = 1e-3             # the proven level is searched to this relative width
ROOT_STEPS = 200             # at most this many root-search steps (a safeguard, never reached)


@dataclass(frozen=True)
class LevelShares:
    """A reached level and shares reaching it (Σx ≤ 1, Σy ≤ 1); `proven_below`: a level no
    allocation reaches (a lower bound on the max-min optimum; 0 when none was proven)."""

    level: float
    x: FloatArray
    y: FloatArray
    proven_below: float


@dataclass(frozen=True)
class Lattice:
    """Device u's band shares x₀,u + step·j, j = 0..count_u, with Σ j ≤ budget (Σx ≤ 1)."""

    start: FloatArray
    step: float
    count: IntArray
    budget: int

    @staticmethod
    def whole(n: int, cells: int) -> Lattice:
        return Lattice(np.zeros(n), 1.0 / cells, np.full(n, cells, dtype=np.intp), cells)

    @staticmethod
    def around(center: FloatArray, step: float, span: int) -> Lattice:
        """±span steps around `center` (clipped to [0, 1]); the center itself is on it."""
        below = np.minimum(span, np.floor(center / step + 1e-9)).astype(np.intp)
        above = np.minimum(span, np.floor((1.0 - center) / step + 1e-9)).astype(np.intp)
        start = np.maximum(center - below * step, 0.0)
        budget = int(np.floor((1.0 - start.sum()) / step + 1e-9))
        return Lattice(start, step, below + above, max(budget, 0))

    def rows(self) -> tuple[IntArray, FloatArray]:
        """Every grid point as (device, x), device-major."""
        device = np.repeat(np.arange(self.start.size), self.count + 1)
        j = np.concatenate([np.arange(c + 1) for c in self.count])
        return device, np.minimum(self.start[device] + self.step * j, 1.0)


class Frontiers:
    """φ_u,t at every grid point of a lattice, for any level t, with every evaluation kept
    (module docstring)."""

    def __init__(self, evaluate: Evaluate, lattice: Lattice, local: FloatArray,
                 tol: float = FRONTIER_TOL) -> None:
        self.evaluate, self.lattice, self.tol = evaluate, lattice, tol
        self.device, self.x = lattice.rows()
        top = evaluate(self.device, self.x, np.ones(self.x.size))
        self.ys = [np.zeros(self.x.size), np.ones(self.x.size)]
        self.values = [local[self.device], top]

    def at(self, level: float) -> tuple[FloatArray, FloatArray]:
        """Brackets (low, high) of φ at `level` per grid point: w·V > level at y = low and
        ≤ level at y = high (high = 0: no share needed; low = high = ∞: not even y = 1
        reaches the level)."""
        brackets = self._known(level)
        active = np.isfinite(brackets.hi) & (brackets.hi - brackets.lo > self.tol)
        for _ in range(ROOT_STEPS):
            if not active.any():
                break
            rows = np.flatnonzero(active)
            z = brackets.inside(rows)
            column, values = np.full(self.x.size, np.nan), np.full(self.x.size, np.nan)
            column[rows] = z
            values[rows] = self.evaluate(self.device[rows], self.x[rows], z)
            self.ys.append(column)
            self.values.append(values)
            brackets.update(rows, z, values[rows] - level)
            active = np.isfinite(brackets.hi) & (brackets.hi - brackets.lo > self.tol)
        lo = np.where(np.isfinite(brackets.hi), np.minimum(brackets.lo, brackets.hi), np.inf)
        return lo, brackets.hi

    def _known(self, level: float) -> Brackets:
        """The narrowest brackets the evaluations so far give at `level`."""
        ys, vs = np.array(self.ys), np.array(self.values)
        known = ~np.isnan(ys)
        reached = known & (vs <= level)
        missed = known & ~(vs <= level)
        columns = np.arange(self.x.size)
        at_hi = np.argmin(np.where(reached, ys, np.inf), axis=0)
        at_lo = np.argmax(np.where(missed, ys, -np.inf), axis=0)
        hi = np.where(reached.any(axis=0), ys[at_hi, columns], np.inf)
        lo = np.where(missed.any(axis=0), ys[at_lo, columns], 0.0)
        f_hi = np.where(reached.any(axis=0), vs[at_hi, columns] - level, -np.inf)
        f_lo = np.where(missed.any(axis=0), vs[at_lo, columns] - level, np.inf)
        return Brackets(lo, f_lo, hi, f_hi)


class Brackets:
    """Roots of non-increasing functions, one per row, bracketed: f(lo) > 0 ≥ f(hi). The
    next point is regula falsi with the Illinois rule (the value at an end kept twice in a
    row is halved), kept a sixteenth of the width from the ends; the midpoint where a value
    is infinite or one end has stayed three times, so the width shrinks geometrically."""

    def __init__(self, lo: FloatArray, f_lo: FloatArray, hi: FloatArray,
                 f_hi: FloatArray) -> None:
        self.lo, self.f_lo, self.hi, self.f_hi = lo, f_lo, hi, f_hi
        self.kept = np.zeros(lo.size, dtype=np.intp)  # > 0: lo kept k times; < 0: hi

    def inside(self, rows: IntArray) -> FloatArray:
        lo, hi, f_lo, f_hi = self.lo[rows], self.hi[rows], self.f_lo[rows], self.f_hi[rows]
        width = hi - lo
        secant_ok = (np.isfinite(f_lo) & np.isfinite(f_hi) & (f_lo > f_hi)
                     & (np.abs(self.kept[rows]) < 3))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            secant = hi - f_hi * width / (f_hi - f_lo)
        secant = np.clip(np.nan_to_num(secant), lo + width / 16, hi - width / 16)
        return np.where(secant_ok, secant, lo + width / 2)

    def update(self, rows: IntArray, z: FloatArray, f_z: FloatArray) -> None:
        up = f_z <= 0  # z reaches: it is the new high end
        kept = self.kept[rows]
        lo_kept = np.where(up, np.maximum(kept, 0) + 1, 0)
        hi_kept = np.where(up, 0, np.minimum(kept, 0) - 1)
        self.f_lo[rows] = np.where(up, np.where(lo_kept > 1, self.f_lo[rows] / 2,
                                                self.f_lo[rows]), f_z)
        self.f_hi[rows] = np.where(up, f_z, np.where(hi_kept < -1, self.f_hi[rows] / 2,
                                                     self.f_hi[rows]))
        self.hi[rows] = np.where(up, z, self.hi[rows])
        self.lo[rows] = np.where(up, self.lo[rows], z)
        self.kept[rows] = lo_kept + hi_kept


def min_plus_fit(costs: list[FloatArray], budget: int) -> tuple[float, IntArray]:
    """The least Σ_u costs[u][j_u] over integers j_u with Σ j_u ≤ budget, and the j_u (dynamic
    programming by min-plus convolution; +inf when nothing fits)."""
    total = np.full(budget + 1, np.inf)
    head = costs[0][: budget + 1]
    total[: head.size] = head
    choices: list[IntArray] = []
    sums = np.arange(budget + 1)
    for cost in costs[1:]:
        j = np.arange(cost.size)
        rest = sums[:, None] - j[None, :]
        table = np.where(rest >= 0, total[np.clip(rest, 0, budget)], np.inf) + cost[None, :]
        pick = np.argmin(table, axis=1)
        choices.append(pick)
        total = table[sums, pick]
    s = int(np.argmin(total))
    value = float(total[s])
    picks = [0] * len(costs)
    for u in range(len(costs) - 1, 0, -1):
        picks[u] = int(choices[u - 1][s])
        s -= picks[u]
    picks[0] = s
    return value, np.array(picks, dtype=np.intp)


class _Best:
    """The least level reached so far and its shares."""

    def __init__(self, level: float, x: FloatArray, y: FloatArray) -> None:
        self.level, self.x, self.y = level, x.copy(), y.copy()


def least_level_shares(evaluate: Evaluate, n: int, low: float, high: float, x: FloatArray,
                       y: FloatArray) -> LevelShares:
    """The least level the fleet reaches, searched from a level `low` not reached (or 0) and
    shares (x, y) reaching `high` (module docstring): the lattice of step 1/FIRST_LATTICE,
    then zooms around the best shares."""
    local = evaluate(np.arange(n), np.zeros(n), np.zeros(n))
    best = _Best(high, x, y)
    lattice = Lattice.whole(n, FIRST_LATTICE)
    first = Frontiers(evaluate, lattice, local, tol=_precision(lattice.step, FRONTIER_TOL))
    proven = _search(first, best, low, prove=True)[0]
    proven = _prove(first, max(proven, low), best.level)
    step, window, idle = lattice.step, 1e-2, 0
    while step / ZOOM >= ZOOM_END and best.level > 0 and idle < 2:
        step /= ZOOM
        before = best.level
        frontiers = Frontiers(evaluate, Lattice.around(best.x, step, ZOOM_SPAN), local,
                              tol=_precision(step, FRONTIER_TOL))
        for _ in range(8):  # widen the window while its low end is reached
            floor = max(proven, low, best.level * (1 - window))
            missed = _search(frontiers, best, floor, prove=False)[1]
            if missed or floor <= max(proven, low):
                break
            window *= 16
        gain = (before - best.level) / max(before, 1e-300)
        idle = idle + 1 if gain <= LEVEL_TOL else 0  # two zooms in a row found nothing
        window = max(2 * gain, 1e-9)
    return LevelShares(best.level, best.x, best.y, proven)


def _search(frontiers: Frontiers, best: _Best, low: float, prove: bool) -> tuple[float, bool]:
    """Regula falsi on (least fit at t) − 1 for t between `low` and the best level, on one
    lattice; `best` is updated in place. Returns the highest level proven unreachable (with
    `prove`: the lattice must be `Lattice.whole`; 0 when none) and whether any level tried
    was not reached on the lattice."""
    lattice = frontiers.lattice
    proven, missed = 0.0, False
    levels = Brackets(np.array([low]), np.array([np.inf]), np.array([best.level]),
                      np.array([-np.inf]))
    one = np.array([0], dtype=np.intp)
    tol = _precision(lattice.step, LEVEL_TOL)
    for _ in range(ROOT_STEPS):
        if levels.hi[0] - levels.lo[0] <= tol * abs(levels.hi[0]):
            break
        level = float(levels.inside(one)[0])
        lo, hi = frontiers.at(level)
        ends = np.cumsum(lattice.count + 1)[:-1]
        fit, picks = min_plus_fit(np.split(hi, ends), lattice.budget)
        if prove and _proven_unreachable(np.split(lo, ends), lattice.budget):
            proven = max(proven, level)
        if fit <= 1.0:
            rows = (np.concatenate([[0], ends]) + picks).astype(np.intp)
            best.level, best.x, best.y = level, frontiers.x[rows], hi[rows]
        missed |= fit > 1.0
        levels.update(one, np.array([level]), np.array([fit - 1.0]))
    return proven, missed


def _prove(frontiers: Frontiers, low: float, high: float) -> float:
    """The highest level proven unreachable on the whole lattice of `frontiers`, by bisection
    between `low` (proven, or not at all) and `high` (reached), to PROOF_TOL relative."""
    lattice = frontiers.lattice
    ends = np.cumsum(lattice.count + 1)[:-1]
    proven = low
    for _ in range(ROOT_STEPS):
        if high - low <= PROOF_TOL * high:
            break
        level = 0.5 * (low + high)
        if _proven_unreachable(np.split(frontiers.at(level)[0], ends), lattice.budget):
            low = proven = level
        else:
            high = level
    return proven


def _precision(step: float, finest: float) -> float:
    """How precisely a lattice of this step is searched (COARSE_TOL)."""
    return max(finest, min(step * COARSE_TOL, step * step))


def _proven_unreachable(low_ends: list[FloatArray], budget: int) -> bool:
    """Whether no allocation reaches the level (module docstring: the cell [jh, (j+1)h] of
    the whole lattice costs at least the frontier's low end at (j+1)h)."""
    cell_costs = [np.append(low[1:], low[-1]) for low in low_ends]
    return min_plus_fit(cell_costs, budget)[0] > 1.0
