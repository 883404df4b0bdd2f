"""Elementwise root finding for monotone functions, vectorized over a whole batch.

Hand-written on purpose: the solver searches over one element per split (or per split and
channel realization), and scipy.optimize.elementwise.find_root costs about 5 ms of overhead per
call (measured here). Method: Chandrupatla's (1997) bracketing method — inverse quadratic
interpolation when the last three points make it safe, bisection otherwise — the algorithm
scipy's elementwise.find_root uses too (docs/theory.md §4.4).

Small batches cost numpy's per-call overhead, not their size. So a small batch (a single
scenario) first narrows every bracket by evaluating the function on a grid of points in one
call (two rounds, the first with the bracket ends), which replaces the bisection steps a wide
bracket would need; and its
converged elements stay in the arrays (masked) instead of being sliced out. Large batches
(many channel realizations) skip the grid (both ends in one call) and drop converged elements,
so the cost follows the elements still searching.
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
    abs_tol: float = 0.0,
    max_iter: int = 200,
    side: str = "upper",
) -> FloatArray:
    """For a non-decreasing `func(x, *args)` and brackets [lo, hi], the sign change of func,
    elementwise. `args` are arrays broadcast with lo and hi; func is called with 1-D slices of
    x and of every arg (the elements still searching, possibly repeated for a grid).

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
    abs_tol: float = 0.0,
    max_iter: int = 200,
) -> tuple[FloatArray, FloatArray]:
    """Both sides of the sign change found by `increasing_root`: (lower, upper), with
    func(lower) ≤ 0 ≤ func(upper) and the two within rel_tol·|x| + abs_tol of each other.

    Only the sign pattern matters (negative, then non-negative), so func may be the max or min
    of several non-decreasing pieces; the two sides let the caller pick, per element, the side
    of whichever piece changed sign. Where func(lo) ≥ 0 both are `lo`, where func(hi) < 0
    both are `hi`."""
    arrays = np.broadcast_arrays(np.asarray(lo, dtype=np.float64),
                                 np.asarray(hi, dtype=np.float64),
                                 *(np.asarray(a) for a in args))
    shape = arrays[0].shape
    lo_f, hi_f, *flat_args = (np.ravel(a) for a in arrays)
    n = lo_f.size
    points = min(_GRID_POINTS, _GRID_BUDGET // max(n, 1))
    if points >= 8:
        # small batch: the ends and the first grid in one call
        x, fx = _grid(func, lo_f, hi_f, flat_args, points, spread=True, ends=True)
        f_lo, f_hi = fx[:, 0], fx[:, -1]
    else:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            both = _signed(func(np.concatenate([lo_f, hi_f]),
                                *(np.concatenate([a, a]) for a in flat_args)))
        f_lo, f_hi = both[:n], both[n:]
    upper = np.where(f_lo >= 0, lo_f, hi_f)
    lower = upper.copy()
    work = np.flatnonzero((f_lo < 0) & (f_hi >= 0) & (hi_f > lo_f))
    if work.size == 0:
        return lower.reshape(shape), upper.reshape(shape)
    wargs = [arg[work] for arg in flat_args]
    # a: newest point, b: the other end of the bracket, c: the previous point
    if points >= 8:
        a, fa, b, fb = _first_sign_change(x[work], fx[work])
        for _ in range(_GRID_ROUNDS - 1):
            x_next, fx_next = _grid(func, b, a, wargs, points, spread=False, ends=False)
            a, fa, b, fb = _first_sign_change(np.column_stack([b, x_next, a]),
                                              np.column_stack([fb, fx_next, fa]))
    else:
        a, fa = hi_f[work], f_hi[work]
        b, fb = lo_f[work], f_lo[work]
    c, fc = b, fb
    # first step by false position (exact for a linear function), kept off the ends
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip(np.nan_to_num(fa / (fa - fb), nan=0.5), 1e-3, 1 - 1e-3)
    active = np.ones(work.size, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(max_iter):
            x = a + t * (b - a)
            fx = _signed(func(x, *wargs))
            same = (fx < 0) == (fa < 0)
            c, fc = np.where(same, a, b), np.where(same, fa, fb)
            b, fb = np.where(same, b, a), np.where(same, fb, fa)
            a, fa = x, fx
            tol = rel_tol * np.maximum(np.abs(a), np.abs(b))
            tl = (tol + abs_tol if abs_tol else tol) / np.abs(b - a)
            done = ~(tl < 0.5) | (fa == 0)  # also NaN widths: nothing left to search
            finished = done & active
            if finished.any():
                upper[work[finished]] = np.where(fa >= 0, a, b)[finished]
                lower[work[finished]] = np.where(fa <= 0, a, b)[finished]
                active &= ~done
                if not active.any():
                    break
                if work.size > _SMALL_BATCH:  # large batch: drop the converged elements
                    keep = active
                    work = work[keep]
                    a, fa, b, fb, c, fc, tl = (v[keep] for v in (a, fa, b, fb, c, fc, tl))
                    wargs = [v[keep] for v in wargs]
                    active = np.ones(work.size, dtype=bool)
            # inverse quadratic interpolation where Chandrupatla's test says it is safe
            fab, fcb = fa - fb, fc - fb
            xi = (a - b) / (c - b)
            ph = fab / fcb
            t_iqi = (fa / fab * fc / fcb
                     + (c - a) / (b - a) * fa / (fc - fa) * fb / fcb)
            safe = (ph * ph < xi) & ((1 - ph) * (1 - ph) < 1 - xi) & np.isfinite(t_iqi)
            t = np.where(safe, t_iqi, 0.5)
            t = np.minimum(np.maximum(t, np.minimum(tl, 0.5)), np.maximum(1 - tl, 0.5))
        else:
            upper[work[active]] = np.where(fa >= 0, a, b)[active]
            lower[work[active]] = np.where(fa <= 0, a, b)[active]
    return lower.reshape(shape), upper.reshape(shape)


def _signed(values: FloatArray) -> FloatArray:
    """Function values with NaN read as +inf, so that every test of a value's sign (bracket
    updates, grids, the side returned) agrees about it."""
    return np.where(np.isnan(values), np.inf, values)


@functools.cache
def _grid_fractions(points: int, spread: bool, ends: bool) -> FloatArray:
    """Where in a bracket the grid points sit, as fractions of its width from the lower end:
    with `spread` half of them crowded geometrically toward the lower end (for roots that may
    sit orders of magnitude below the bracket's top), half evenly spaced; with `ends` the two
    ends themselves too."""
    if spread:
        half = points // 2
        inner = np.unique(np.concatenate([np.linspace(0, 1, half + 2)[1:-1],
                                          np.geomspace(1e-6, 1, half + 1)[:-1]]))
    else:
        inner = np.linspace(0, 1, points + 2)[1:-1]
    fractions = np.concatenate([[0.0], inner, [1.0]]) if ends else inner
    fractions.flags.writeable = False
    return fractions


def _grid(func: Callable[..., FloatArray], lo: FloatArray, hi: FloatArray,
          args: list[NDArray[np.generic]], points: int, spread: bool,
          ends: bool) -> tuple[FloatArray, FloatArray]:
    """func on a grid across every bracket [lo, hi], in one call: (points, values), one row
    per element (with `ends`, the first and last columns are exactly lo and hi)."""
    fractions = _grid_fractions(points, spread, ends)
    m = fractions.size
    x = lo[:, None] + fractions[None, :] * (hi - lo)[:, None]
    if ends:
        x[:, 0], x[:, -1] = lo, hi
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fx = _signed(func(x.ravel(), *(np.repeat(arg, m, axis=0) for arg in args))
                     ).reshape(x.shape)
    return x, fx


def _first_sign_change(x: FloatArray, fx: FloatArray
                       ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """For rows whose values go − … − + … + with a negative first and a non-negative last
    column: the first point at or above zero and the one before it, (a, fa, b, fb)."""
    rows = np.arange(x.shape[0])
    first = np.argmax(fx >= 0, axis=1)
    return x[rows, first], fx[rows, first], x[rows, first - 1], fx[rows, first - 1]
