"""laimco.system.lambert_w against mpmath's Lambert W at 40 digits (an independent,
arbitrary-precision implementation). Near the branch point x = −1/e, W is ill-conditioned
(W + 1 ≈ ±√(2(e·x + 1))): an ulp of x moves W by about 1e-16/√(e·x + 1), so the tolerance
grows there as the conditioning does; scipy.special.lambertw shows the same error on the same
inputs."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from laimco.system.lambert_w import SCIPY_BELOW, lambert_w0, lambert_w_minus1

BRANCH = -1.0 / np.e
# whole arrays take the Halley path; chunks of 7 the small-array path (scipy)
PATHS = pytest.mark.parametrize("chunk", [None, 7], ids=["halley", "small-arrays"])


def _call(function, x: np.ndarray, chunk: int | None) -> np.ndarray:  # type: ignore[no-untyped-def]
    if chunk is None:
        assert x.size >= SCIPY_BELOW
        return function(x)
    return np.concatenate([function(x[i:i + chunk]) for i in range(0, x.size, chunk)])


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


@PATHS
def test_principal_branch_matches_mpmath(chunk: int | None) -> None:
    x = np.concatenate([BRANCH + np.logspace(-15, -0.5, 160), np.linspace(-0.36, 3.5, 160),
                        np.logspace(-300, 300, 200), -np.logspace(-300, np.log10(0.36), 80)])
    x = x[x >= BRANCH]
    _check(_call(lambert_w0, x, chunk), _reference(x, 0), x)


@PATHS
def test_lower_branch_matches_mpmath(chunk: int | None) -> None:
    x = np.concatenate([BRANCH + np.logspace(-15, -0.5, 260),
                        -np.logspace(-300, np.log10(0.36), 300)])
    x = x[(x >= BRANCH) & (x < 0)]
    got = _call(lambert_w_minus1, x, chunk)
    _check(got, _reference(x, -1), x)
    assert np.all(got <= -1.0)


@PATHS
def test_special_values_and_domain(chunk: int | None) -> None:
    def w0(values: list[float]) -> np.ndarray:
        return _call(lambert_w0, np.resize(np.array(values), SCIPY_BELOW), chunk)[:len(values)]

    def wm1(values: list[float]) -> np.ndarray:
        return _call(lambert_w_minus1, np.resize(np.array(values), SCIPY_BELOW),
                     chunk)[:len(values)]

    assert w0([BRANCH])[0] == pytest.approx(-1.0, abs=1e-7)
    assert wm1([BRANCH])[0] == pytest.approx(-1.0, abs=1e-7)
    np.testing.assert_allclose(w0([0.0, np.e, 2 * np.e**2]), [0.0, 1.0, 2.0], rtol=1e-15,
                               atol=1e-300)
    assert w0([np.inf])[0] == np.inf
    assert np.isnan(w0([-0.5, np.nan])).all()
    assert np.isnan(wm1([-0.5, 0.1])).all()
    assert wm1([0.0])[0] == -np.inf


def test_solves_its_equation_on_random_arrays() -> None:
    """w·e^w = x to a few ulps of x on random inputs of both branches, in one array call."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(BRANCH + 1e-3, 50.0, 5000), 10 ** rng.uniform(-5, 200, 500)])
    w = lambert_w0(x)
    np.testing.assert_allclose(w * np.exp(w), x, rtol=1e-13)
    xm = rng.uniform(BRANCH + 1e-3, -1e-12, 5000)
    wm = lambert_w_minus1(xm)
    np.testing.assert_allclose(wm * np.exp(wm), xm, rtol=1e-12)
