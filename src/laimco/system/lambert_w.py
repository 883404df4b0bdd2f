"""The two real branches of the Lambert W function (w·e^w = x) on numpy arrays, for the
upload-time and energy closed forms of channel.py (docs/theory.md §2.2, eq. 2.11 and 4.15).

Written by hand because scipy.special.lambertw works in complex arithmetic and costs four to
seven times as much on large real arrays; the fleet solver evaluates it on millions of
elements. Below SCIPY_BELOW elements scipy's fixed cost per call is the smaller one (about
8 µs against 130 µs for a handful), so small arrays go to scipy, with the same conventions at
the edges of the domain.
Each branch starts from a classical approximation (the branch-point series in
p = √(2(e·x + 1)), Winitzki's formula, or the asymptotic log series) and refines it by
Halley's method on f(w) = w·e^w − x (cubic convergence), or, for W₀ at x ≥ 3, by Newton's
method on w + ln w = ln x (e^w would overflow on the way for large x). Within BRANCH_POINT_P
of the branch point x = −1/e the series alone is used: its error there is below p⁵/10 ≈ 1e-21,
and Halley's step would divide by e^w·(w + 1) → 0.
Accuracy: within a few ulps of mpmath's value (tests/test_lambert_w.py).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

FloatArray = NDArray[np.float64]
SCIPY_BELOW = 512
SERIES_P = 1e-3  # scipy's path: the branch-point series within this p (error below 1e-16)
BRANCH_POINT = -1.0 / np.e
BRANCH_POINT_P = 1e-4
HALLEY_STEPS = 3
NEWTON_STEPS = 5


def lambert_w0(x: ArrayLike) -> FloatArray:
    """The principal branch W₀(x) ≥ −1 for x ≥ −1/e (nan below −1/e, inf at inf)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < SCIPY_BELOW:
        return _scipy_branch(x, 0)
    out = np.full(x.shape, np.nan)
    with np.errstate(all="ignore"):
        near = (x >= BRANCH_POINT) & (x < -0.25)
        middle = (x >= -0.25) & (x < 3.0)
        large = (x >= 3.0) & (x < np.inf)
        series, p = _branch_series(x[near], 1.0)
        out[near] = np.where(p < BRANCH_POINT_P, series, _halley(series, x[near]))
        log1 = np.log1p(x[middle])
        out[middle] = _halley(log1 * (1.0 - np.log1p(log1) / (2.0 + log1)), x[middle])
        l1 = np.log(x[large])
        l2 = np.log(l1)
        out[large] = _newton_log(l1 - l2 + l2 / l1, l1)
        out[x == np.inf] = np.inf
    return out


def lambert_w_minus1(x: ArrayLike) -> FloatArray:
    """The lower branch W₋₁(x) ≤ −1 for −1/e ≤ x < 0 (nan elsewhere, −inf at x = −0)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < SCIPY_BELOW:
        return _scipy_branch(x, -1)
    out = np.full(x.shape, np.nan)
    with np.errstate(all="ignore"):
        near = (x >= BRANCH_POINT) & (x < -0.25)
        far = (x >= -0.25) & (x < 0)
        series, p = _branch_series(x[near], -1.0)
        out[near] = np.where(p < BRANCH_POINT_P, series, _halley(series, x[near]))
        l1 = np.log(-x[far])
        l2 = np.log(-l1)
        out[far] = _halley(l1 - l2 + l2 / l1, x[far])
        out[x == 0] = -np.inf
    return out


def _scipy_branch(x: FloatArray, branch: int) -> FloatArray:
    """scipy's W on a small array, with this module's conventions: nan off the real branch,
    −1 at the branch point (where scipy gives nan), −inf for W₋₁(0). Within SERIES_P of the
    branch point the series is used (scipy's W₋₁ returns −1 there: up to 1e-4 off)."""
    with np.errstate(all="ignore"):
        w = special.lambertw(x, k=branch).real
        series, p = _branch_series(x, 1.0 if branch == 0 else -1.0)
    outside = (x < BRANCH_POINT) | ((x > 0) if branch == -1 else np.isnan(x))
    w = np.where(p < SERIES_P, series, w)
    if branch == -1:
        w = np.where(x == 0, -np.inf, w)
    return np.asarray(np.where(outside, np.nan, w), dtype=np.float64)


def _branch_series(x: FloatArray, sign: float) -> tuple[FloatArray, FloatArray]:
    """W near the branch point −1/e: −1 + s·p − p²/3 + s·11p³/72 − 43p⁴/540 with
    p = √(2(e·x + 1)) and s = +1 for W₀, −1 for W₋₁; also p."""
    p = np.sqrt(2.0 * (np.e * x + 1.0))
    q = sign * p
    return -1.0 + q * (1.0 + q * (-1.0 / 3 + q * (11.0 / 72 + q * (-43.0 / 540)))), p


def _halley(w: FloatArray, x: FloatArray) -> FloatArray:
    """Halley's iteration on w·e^w − x from w."""
    for _ in range(HALLEY_STEPS):
        ew = np.exp(w)
        f = w * ew - x
        w1 = w + 1.0
        step = f / (ew * w1 - (w + 2.0) * f / (2.0 * w1))
        w = np.where(np.isfinite(step), w - step, w)
    return w


def _newton_log(w: FloatArray, log_x: FloatArray) -> FloatArray:
    """Newton's iteration on w + ln w − ln x from w > 0 (for large x)."""
    for _ in range(NEWTON_STEPS):
        w = w - (w + np.log(w) - log_x) / (1.0 + 1.0 / w)
    return w
