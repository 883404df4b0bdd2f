"""Elementwise root finding for monotone functions, vectorized over a whole batch.

Hand-written on purpose: the solver searches over one element per split (or per split and
channel realization), and scipy.optimize.elementwise.find_root costs about 5 ms of overhead per
call (measured here). Method: Chandrupatla's (1997) bracketing method — inverse quadratic
interpolation when the last three points make it safe, bisection otherwise — the algorithm
scipy's elementwise.find_root uses too (docs/theory.md §4.4).

Small batches cost numpy's per-call overhead, not their size. So a small batch (a single
scenario) first narrows every bracket by evaluating the function on a grid of points in one
call (two rounds, the first with the bracket ends and any points where the caller knows the
function may jump), which replaces the bisection steps a wide bracket would need; and its
converged elements stay in the arrays (masked) instead of being sliced out. Large batches
(many channel realizations) skip the grid (both ends in one call) and drop converged elements,
so the cost follows the elements still searching. The per-element arguments travel as the
rows of one array, so slicing or repeating them is one operation however many there are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
_EPS = float(np.finfo(np.float64).eps)
# grid narrowing: points per element and round while elements × points stays within budget
_GRID_POINTS = 16
_GRID_BUDGET = 4096
_GRID_ROUNDS = 2
# batches up to this size keep converged elements (masked) rather than slicing every array
_SMALL_BATCH = 64


def increasing_root(
    func: Callable[..., FloatArray],
    lo: ArrayLike,
    hi: ArrayLike,
    args: tuple[ArrayLike, ...] = (),
    *,
    rel_tol: float = 4 * _EPS,
    abs_tol: ArrayLike = 0.0,
    max_iter: int = 200,
    side: str = "upper",
) -> FloatArray:
    """For a non-decreasing `func(x, *args)` and brackets [lo, hi], the sign change of func,
    elementwise. `args` are float arrays broadcast with lo and hi; func is called with 1-D
    float64 slices of x and of every arg (the elements still searching, possibly repeated for
    a grid).

    Returns `lo` where func(lo) ≥ 0 and `hi` where func(hi) < 0 (the caller decides what that
    means). Otherwise the returned point lies within rel_tol·|x| + abs_tol of the sign change,
    on the side `side` names: "upper" returns a point with func(x) ≥ 0, "lower" one with
    func(x) ≤ 0 — so a caller can always land on the side of a limit that is met.
    """
    if side not in ("upper", "lower"):
        raise ValueError(f"side must be 'upper' or 'lower', got {side!r}")
    lower, upper = increasing_root_bracket(func, lo, hi, args, rel_tol=rel_tol,
                                           abs_tol=abs_tol, max_iter=max_iter)
    return lower if side == "lower" else upper


def increasing_root_bracket(
    func: Callable[..., FloatArray],
    lo: ArrayLike,
    hi: ArrayLike,
    args: tuple[ArrayLike, ...] = (),
    *,
    rel_tol: float = 4 * _EPS,
    abs_tol: ArrayLike = 0.0,
    max_iter: int = 200,
    breakpoints: ArrayLike | None = None,
    grid_points: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Both sides of the sign change found by `increasing_root`: (lower, upper), with
    func(lower) ≤ 0 ≤ func(upper) and the two within rel_tol·|x| + abs_tol of each other
    (`abs_tol` may differ per element: it broadcasts with lo and hi).

    Only the sign pattern matters (negative, then non-negative), so func may be the max or min
    of several non-decreasing pieces, and it may jump; the two sides let the caller pick, per
    element, the side of whichever piece changed sign. Where func(lo) ≥ 0 both are `lo`, where
    func(hi) < 0 both are `hi`.

    `breakpoints`, shape (*lo.shape, k), are points where func may jump (known to the caller).
    A small batch evaluates each together with its neighbours at ± a quarter of the tolerance,
    so a sign change at a jump is bracketed to within the tolerance without any iteration;
    bisecting toward a jump would otherwise take ≈ 40 steps. `grid_points`, the same shape,
    are more points of the caller's own for a small batch's first grid: where in the bracket
    roots are likely to be. Large batches ignore both."""
    columns = _columns(lo, hi, abs_tol, *args)
    shape = columns.shape[1:]
    columns = columns.reshape(columns.shape[0], -1)
    lo_f, hi_f, abs_f, wargs = columns[0], columns[1], columns[2], columns[3:]
    n = lo_f.size
    points = min(_GRID_POINTS, _GRID_BUDGET // max(n, 1))
    small = points >= 8  # a grid of at least 8 points per element fits the budget
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if small:  # small batch: the ends, the caller's points and a grid in one call
            extra = _caller_points(breakpoints, grid_points, lo_f, hi_f, rel_tol, abs_f)
            x, fx = _grid(func, lo_f, hi_f, wargs, points, first=True, extra=extra)
            f_lo, f_hi = fx[:, 0], fx[:, -1]
        else:
            both = _signed(func(np.concatenate([lo_f, hi_f]), *np.tile(wargs, 2)))
            f_lo, f_hi = both[:n], both[n:]
        upper = np.where(f_lo >= 0, lo_f, hi_f)
        lower = upper.copy()
        work = np.flatnonzero((f_lo < 0) & (f_hi >= 0) & (hi_f > lo_f))
        if work.size:
            if work.size < n:
                wargs, abs_f = wargs[:, work], abs_f[work]
            # a: newest point, b: the other end of the bracket
            if small:
                if work.size < n:
                    x, fx = x[work], fx[work]
                a, fa, b, fb = _grid_narrowed(func, x, fx, wargs, points)
            else:
                a, fa, b, fb = hi_f[work], f_hi[work], lo_f[work], f_lo[work]
            _chandrupatla(func, a, fa, b, fb, wargs, abs_f, work, lower, upper,
                          rel_tol=rel_tol, max_iter=max_iter)
    return lower.reshape(shape), upper.reshape(shape)


def _caller_points(breakpoints: ArrayLike | None, grid_points: ArrayLike | None,
                   lo: FloatArray, hi: FloatArray, rel_tol: float, abs_tol: FloatArray
                   ) -> FloatArray | None:
    """The caller's points of a small batch's first grid, (n, k) inside the brackets: each
    breakpoint with its two near neighbours, then the grid points (None when there are none)."""
    n = lo.size
    own = []
    if breakpoints is not None and n:
        own.append(_near_points(_per_row(breakpoints, n), lo, hi, rel_tol, abs_tol))
    if grid_points is not None and n:
        own.append(_within(_per_row(grid_points, n), lo, hi))
    return np.concatenate(own, axis=1) if own else None


def _grid_narrowed(func: Callable[..., FloatArray], x: FloatArray, fx: FloatArray,
                   args: FloatArray, points: int
                   ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The bracket (a, fa, b, fb) around each row's sign change after the first grid (x, fx)
    and `_GRID_ROUNDS` − 1 more grids inside the bracket found."""
    a, fa, b, fb = _first_sign_change(x, fx)
    for _ in range(_GRID_ROUNDS - 1):
        x_next, fx_next = _grid(func, b, a, args, points, first=False)
        a, fa, b, fb = _first_sign_change(np.column_stack([b, x_next, a]),
                                          np.column_stack([fb, fx_next, fa]))
    return a, fa, b, fb


def _chandrupatla(func: Callable[..., FloatArray], a: FloatArray, fa: FloatArray,
                  b: FloatArray, fb: FloatArray, args: FloatArray, abs_tol: FloatArray,
                  work: NDArray[np.intp], lower: FloatArray, upper: FloatArray, *,
                  rel_tol: float, max_iter: int) -> None:
    """Chandrupatla's iteration on the brackets between a (the newest point) and b, with
    fa, fb of opposite signs (fb < 0 ≤ fa at the start), for the elements `work` of the batch:
    writes each element's two sides into lower[work] and upper[work] as it converges (and,
    after max_iter steps, where the search stopped)."""
    c, fc = b, fb  # c: the previous point
    # first step by false position (exact for a linear function), kept off the ends
    # (fmax/fmin also turn a NaN into the lower end)
    t: FloatArray | None = np.fmin(np.fmax(fa / (fa - fb), 1e-3), 1 - 1e-3)
    active = np.ones(work.size, dtype=bool)
    a_negative = fa < 0
    for _ in range(max_iter + 1):
        # converged: the bracket is within the tolerance, or a point is exactly a root
        width = b - a
        tl = (rel_tol * np.maximum(np.abs(a), np.abs(b)) + abs_tol) / np.abs(width)
        done = ~(tl < 0.5) | (fa == 0)  # also NaN widths: nothing left to search
        finished = done & active
        if np.count_nonzero(finished):
            upper[work[finished]] = np.where(fa >= 0, a, b)[finished]
            lower[work[finished]] = np.where(fa <= 0, a, b)[finished]
            active &= ~done
            if not np.count_nonzero(active):
                return
            if work.size > _SMALL_BATCH:  # large batch: drop the converged elements
                keep = active
                work = work[keep]
                a, fa, b, fb, c, fc, tl, width, abs_tol = (
                    v[keep] for v in (a, fa, b, fb, c, fc, tl, width, abs_tol))
                a_negative = a_negative[keep]
                args = args[:, keep]
                if t is not None:
                    t = t[keep]
                active = np.ones(work.size, dtype=bool)
        if t is None:
            t = _interpolation_step(a, fa, b, fb, c, fc, width, tl)
        x = a + t * width
        t = None
        fx = _signed(func(x, *args))
        negative = fx < 0
        same = negative == a_negative
        c, fc = np.where(same, a, b), np.where(same, fa, fb)
        b, fb = np.where(same, b, a), np.where(same, fb, fa)
        a, fa, a_negative = x, fx, negative
    upper[work[active]] = np.where(fa >= 0, a, b)[active]
    lower[work[active]] = np.where(fa <= 0, a, b)[active]


def _interpolation_step(a: FloatArray, fa: FloatArray, b: FloatArray, fb: FloatArray,
                        c: FloatArray, fc: FloatArray, width: FloatArray, tl: FloatArray
                        ) -> FloatArray:
    """The next point's fraction t of the way from a to b: inverse quadratic interpolation
    through a, b, c where Chandrupatla's test allows, bisection elsewhere, and at least the
    tolerance tl (as a fraction of the width) from either end."""
    fab, fcb = fa - fb, fc - fb
    xi = width / (b - c)
    ph = fab / fcb
    t_iqi = fa / fab * fc / fcb + (c - a) / width * fa / (fc - fa) * fb / fcb
    safe = (ph * ph < xi) & ((1 - ph) * (1 - ph) < 1 - xi) & np.isfinite(t_iqi)
    # converged elements, kept masked in a small batch, get t = 1/2: their x stays inside
    # their bracket
    return np.minimum(np.maximum(np.where(safe, t_iqi, 0.5), np.minimum(tl, 0.5)),
                      np.maximum(1 - tl, 0.5))


def _columns(*arrays: ArrayLike) -> FloatArray:
    """The arrays as the rows of one float64 array (broadcast only when their shapes differ:
    numpy's broadcasting costs more here than the copy)."""
    try:
        return np.array(arrays, dtype=np.float64)
    except ValueError:  # shapes differ: broadcast
        return np.array(np.broadcast_arrays(*arrays), dtype=np.float64)


def _signed(values: FloatArray) -> FloatArray:
    """Function values with NaN read as +inf, so that every test of a value's sign (bracket
    updates, grids, the side returned) agrees about it."""
    return np.where(np.isnan(values), np.inf, values)


def _near_points(points: FloatArray, lo: FloatArray, hi: FloatArray, rel_tol: float,
                 abs_tol: FloatArray) -> FloatArray:
    """Each point, clipped into its bracket, with its neighbours a quarter of the tolerance
    away on either side: shape (n, 3k)."""
    step = (rel_tol * np.abs(points) + abs_tol[:, None]) / 4
    return _within(np.concatenate([points - step, points, points + step], axis=1), lo, hi)


def _per_row(points: ArrayLike, n: int) -> FloatArray:
    """Caller points of shape (*lo.shape, k) as (n, k) float rows."""
    return np.reshape(np.asarray(points, dtype=np.float64), (n, -1))


def _within(points: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Points (n, k) moved into their rows' brackets [lo, hi] (a NaN point becomes lo)."""
    return np.fmin(np.fmax(points, lo[:, None]), hi[:, None])


@functools.cache
def _grid_fractions(points: int, first: bool) -> FloatArray:
    """Where in a bracket the grid points sit, as fractions of its width from the lower end.
    The first round crowds half of them geometrically toward the lower end (for roots that may
    sit orders of magnitude below the bracket's top), spaces half evenly, and holds the two
    ends themselves; later rounds are evenly spaced inside."""
    if first:
        half = points // 2
        inner = np.unique(np.concatenate([np.linspace(0, 1, half + 2)[1:-1],
                                          np.geomspace(1e-6, 1, half + 1)[:-1]]))
        fractions = np.concatenate([[0.0], inner, [1.0]])
    else:
        fractions = np.linspace(0, 1, points + 2)[1:-1]
    fractions.flags.writeable = False
    return fractions


def _grid(func: Callable[..., FloatArray], lo: FloatArray, hi: FloatArray, args: FloatArray,
          points: int, first: bool, extra: FloatArray | None = None
          ) -> tuple[FloatArray, FloatArray]:
    """func on a grid across every bracket [lo, hi], in one call: (points, values), one row
    per element, sorted. In the first round the first and last columns are exactly lo and hi;
    `extra` (n, k) adds points of the caller's own inside the brackets (first round only)."""
    fractions = _grid_fractions(points, first)
    x = lo[:, None] + fractions[None, :] * (hi - lo)[:, None]
    if first:
        x[:, 0], x[:, -1] = lo, hi
    if extra is not None:  # sorted in among the inner points; the ends stay first and last
        inner = np.sort(np.concatenate([x[:, 1:-1], extra], axis=1), axis=1)
        x = np.concatenate([x[:, :1], inner, x[:, -1:]], axis=1)
    fx = _signed(func(x.ravel(), *args.repeat(x.shape[1], axis=1))).reshape(x.shape)
    return x, fx


def _first_sign_change(x: FloatArray, fx: FloatArray
                       ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """For rows whose values go − … − + … + with a negative first and a non-negative last
    column: the first point at or above zero and the one before it, (a, fa, b, fb)."""
    first = np.argmax(fx >= 0, axis=1) + _row_starts(*x.shape)
    before = first - 1
    x, fx = x.ravel(), fx.ravel()
    return x[first], fx[first], x[before], fx[before]


@functools.lru_cache(maxsize=64)
def _row_starts(rows: int, columns: int) -> NDArray[np.intp]:
    """Flat index of each row's first element in a C-ordered (rows, columns) array."""
    starts = np.arange(rows) * columns
    starts.flags.writeable = False
    return starts
