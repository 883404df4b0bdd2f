"""laimco.system.lambert_w against mpmath's Lambert W at 40 digits (an independent,
arbitrary-precision implementation). Near the branch point x = −1/e, W is ill-conditioned
(W + 1 ≈ ±√(2(e·x + 1))): an ulp of x moves W by about 1e-16/√(e·x + 1), so the tolerance
grows there as the conditioning does; scipy.special.lambertw shows the same error on the same
inputs."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from laimco.system.lambert_w import lambert_w0, lambert_w_minus1

BRANCH = -1.0 / np.e


def _reference(x: np.ndarray, branch: int) -> np.ndarray:
    with mpmath.workdps(40):
        return np.array([float(mpmath.re(mpmath.lambertw(mpmath.mpf(float(v)), branch)))
                         for v in x])


def _tolerance(x: np.ndarray) -> np.ndarray:
    """Relative: a few ulps where W is well conditioned, growing as 1/√(e·x + 1) near −1/e."""
    return 1e-14 + 1e-15 / np.sqrt(np.maximum(np.e * x + 1.0, 1e-300))


def _check(got: np.ndarray, want: np.ndarray, x: np.ndarray) -> None:
    rel = np.abs(got - want) / np.abs(want).clip(1e-300)
    bad = rel > _tolerance(x)
    assert not bad.any(), f"x = {x[bad][:3]}: got {got[bad][:3]}, mpmath {want[bad][:3]}"


def test_principal_branch_matches_mpmath() -> None:
    x = np.concatenate([BRANCH + np.logspace(-15, -0.5, 120), np.linspace(-0.36, 3.5, 120),
                        np.logspace(-300, 300, 200), -np.logspace(-300, np.log10(0.36), 80)])
    x = x[x >= BRANCH]
    _check(lambert_w0(x), _reference(x, 0), x)


def test_lower_branch_matches_mpmath() -> None:
    x = np.concatenate([BRANCH + np.logspace(-15, -0.5, 120),
                        -np.logspace(-300, np.log10(0.36), 200)])
    x = x[(x >= BRANCH) & (x < 0)]
    got = lambert_w_minus1(x)
    _check(got, _reference(x, -1), x)
    assert np.all(got <= -1.0)


def test_special_values_and_domain() -> None:
    assert lambert_w0(np.array([BRANCH]))[0] == pytest.approx(-1.0, abs=1e-7)
    assert lambert_w_minus1(np.array([BRANCH]))[0] == pytest.approx(-1.0, abs=1e-7)
    np.testing.assert_allclose(lambert_w0(np.array([0.0, np.e, 2 * np.e**2])), [0.0, 1.0, 2.0],
                               rtol=1e-15, atol=1e-300)
    assert lambert_w0(np.array([np.inf]))[0] == np.inf
    assert np.isnan(lambert_w0(np.array([-0.5, np.nan]))).all()
    assert np.isnan(lambert_w_minus1(np.array([-0.5, 0.1]))).all()
    assert lambert_w_minus1(np.array([0.0]))[0] == -np.inf


def test_solves_its_equation_on_random_arrays() -> None:
    """w·e^w = x to a few ulps of x on random inputs of both branches, in one array call."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(BRANCH + 1e-3, 50.0, 5000), 10 ** rng.uniform(-5, 200, 500)])
    w = lambert_w0(x)
    np.testing.assert_allclose(w * np.exp(w), x, rtol=1e-13)
    xm = rng.uniform(BRANCH + 1e-3, -1e-12, 5000)
    wm = lambert_w_minus1(xm)
    np.testing.assert_allclose(wm * np.exp(wm), xm, rtol=1e-12)
