"""The distortion–sparsity laws of laimco/theory/distortion.py (docs/theory.md §3).

Every number is checked against an independent computation: Monte Carlo samples of the law
pruned by magnitude, theory.md's closed forms (3.4), (3.5) evaluated in 50-digit decimal arithmetic,
scipy.stats densities, numpy quantiles, finite differences, and brute force over masks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import special, stats

from laimco.theory.distortion import (
    EmpiricalLaw,
    GaussianLaw,
    GenNormLaw,
    LaplaceLaw,
    magnitude_pruning_distortion,
    magnitude_quantile_table,
)

RHOS = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99])
N_SAMPLES = 400_000
Sampler = Callable[[np.random.Generator, int], np.ndarray]

# (law, sampler of the law, density of W for the quantile standard error)
LAWS: dict[str, tuple[GenNormLaw, Sampler, Callable[[np.ndarray], np.ndarray]]] = {
    "laplace": (
        LaplaceLaw(0.7),
        lambda rng, n: rng.laplace(0.0, 0.7, n),
        lambda x: stats.laplace.pdf(x, scale=0.7),
    ),
    "gaussian": (
        GaussianLaw(1.3),
        lambda rng, n: rng.normal(0.0, 1.3, n),
        lambda x: stats.norm.pdf(x, scale=1.3),
    ),
    "gennorm_heavy": (
        GenNormLaw(0.5, 0.6),
        lambda rng, n: stats.gennorm.rvs(0.6, scale=0.5, size=n, random_state=rng),
        lambda x: stats.gennorm.pdf(x, 0.6, scale=0.5),
    ),
    "gennorm_light": (
        GenNormLaw(2.0, 4.0),
        lambda rng, n: stats.gennorm.rvs(4.0, scale=2.0, size=n, random_state=rng),
        lambda x: stats.gennorm.pdf(x, 4.0, scale=2.0),
    ),
}

scales = st.floats(1e-3, 1e3)
shapes = st.floats(0.3, 8.0)
ratios = st.floats(1e-3, 0.999)


def _sample(name: str, seed: int) -> np.ndarray:
    return LAWS[name][1](np.random.default_rng(seed), N_SAMPLES)


# ---------------------------------------------------------------- Monte Carlo


@pytest.mark.parametrize("name", list(LAWS))
def test_delta_matches_monte_carlo_magnitude_pruning_within_sampling_error(name: str) -> None:
    """δ(ρ) against (1/N)·Σ of the ⌊ρN⌋ smallest w² of N samples. The estimator's influence
    function is min(w², q²) − q²(1−ρ), so its standard error is √(Var min(W², q²)/N)."""
    law = LAWS[name][0]
    w = _sample(name, seed=11)
    measured = magnitude_pruning_distortion(w, RHOS)
    q_hat = np.quantile(np.abs(w), RHOS)
    stderr = np.sqrt(np.var(np.minimum(w[None, :] ** 2, q_hat[:, None] ** 2), axis=1) / w.size)
    discreteness = q_hat**2 / w.size  # one order statistic more or less
    np.testing.assert_array_less(np.abs(law.delta(RHOS) - measured), 5 * stderr + discreteness)


@pytest.mark.parametrize("name", list(LAWS))
def test_magnitude_quantile_matches_numpy_quantile_of_samples(name: str) -> None:
    """q(ρ) against the sample quantile of |w|; standard error √(ρ(1−ρ)/N) / (2·f_W(q))."""
    law, _, density = LAWS[name]
    w = _sample(name, seed=12)
    q = law.magnitude_quantile(RHOS)
    stderr = np.sqrt(RHOS * (1 - RHOS) / w.size) / (2 * density(q))
    np.testing.assert_array_less(np.abs(q - np.quantile(np.abs(w), RHOS)), 5 * stderr)


@pytest.mark.parametrize("name", list(LAWS))
def test_second_moment_matches_scipy_variance(name: str) -> None:
    law = LAWS[name][0]
    reference = {
        "laplace": stats.laplace(scale=0.7),
        "gaussian": stats.norm(scale=1.3),
        "gennorm_heavy": stats.gennorm(0.6, scale=0.5),
        "gennorm_light": stats.gennorm(4.0, scale=2.0),
    }[name]
    assert law.second_moment() == pytest.approx(reference.var(), rel=1e-12)


# ------------------------------------------------------- closed forms, theory.md (3.4)-(3.5)


def _laplace_closed_form(rho: float, b: float) -> float:
    """2b²·[1 − (1−ρ)(1 + u + u²/2)], u = −ln(1−ρ), in 50-digit decimal (the bracket cancels
    to ~u³/6 at small ρ, which float64 cannot resolve to 1e-10)."""
    with localcontext() as ctx:
        ctx.prec = 50
        r, bd = Decimal(rho), Decimal(b)
        u = -(1 - r).ln()
        return float(2 * bd * bd * (1 - (1 - r) * (1 + u + u * u / 2)))


_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")


def _erf(x: Decimal) -> Decimal:
    """erf by its Maclaurin series (enough terms for 55 digits at |x| < 3)."""
    term, total, n = x, x, 0
    while abs(term) > Decimal(10) ** -70:
        n += 1
        term *= -x * x / n
        total += term / (2 * n + 1)
    return 2 / _PI.sqrt() * total


def _gaussian_closed_form(rho: float, sigma: float) -> float:
    """σ²·[ρ − 2zφ(z)], z = Φ⁻¹((1+ρ)/2), in 60-digit decimal: z by Newton on
    erf(z/√2) = ρ from scipy's ndtri, φ(z) = e^{−z²/2}/√(2π)."""
    with localcontext() as ctx:
        ctx.prec = 60
        r = Decimal(rho)
        two = Decimal(2)
        z = Decimal(float(special.ndtri((1 + rho) / 2)))
        for _ in range(6):
            phi = (-z * z / 2).exp() / (2 * _PI).sqrt()
            z -= (_erf(z / two.sqrt()) - r) / (2 * phi)
        phi = (-z * z / 2).exp() / (2 * _PI).sqrt()
        s = Decimal(sigma)
        return float(s * s * (r - 2 * z * phi))


@pytest.mark.parametrize("b", [0.05, 0.7, 3.0])
def test_laplace_delta_equals_spec_closed_form_to_1e10(b: float) -> None:
    expected = np.array([_laplace_closed_form(float(r), b) for r in RHOS])
    np.testing.assert_allclose(LaplaceLaw(b).delta(RHOS), expected, rtol=1e-10, atol=0)
    u = -np.log1p(-RHOS)
    np.testing.assert_allclose(LaplaceLaw(b).magnitude_quantile(RHOS), b * u, rtol=1e-12)


@pytest.mark.parametrize("sigma", [0.02, 1.0, 4.0])
def test_gaussian_delta_equals_spec_closed_form_to_1e10(sigma: float) -> None:
    expected = np.array([_gaussian_closed_form(float(r), sigma) for r in RHOS])
    np.testing.assert_allclose(GaussianLaw(sigma).delta(RHOS), expected, rtol=1e-10, atol=0)
    z = special.ndtri((1 + RHOS) / 2)
    np.testing.assert_allclose(GaussianLaw(sigma).magnitude_quantile(RHOS), sigma * z, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.1, 1.0, 2.5])
def test_gennorm_shape_one_is_laplace_and_shape_two_is_gaussian(alpha: float) -> None:
    """GenNorm(α, β=1) is Laplace(b=α); GenNorm(α, β=2) is Gaussian(σ=α/√2) — checked against
    theory.md's closed forms, not against the subclasses (which are GenNorm by construction)."""
    laplace_ref = np.array([_laplace_closed_form(float(r), alpha) for r in RHOS])
    gauss_ref = np.array([_gaussian_closed_form(float(r), alpha / np.sqrt(2)) for r in RHOS])
    np.testing.assert_allclose(GenNormLaw(alpha, 1.0).delta(RHOS), laplace_ref, rtol=1e-10)
    np.testing.assert_allclose(GenNormLaw(alpha, 2.0).delta(RHOS), gauss_ref, rtol=1e-10)
    # and the family is continuous in β through those points
    for beta in (1.0, 2.0):
        near = GenNormLaw(alpha, beta * (1 + 1e-9)).delta(RHOS)
        np.testing.assert_allclose(near, GenNormLaw(alpha, beta).delta(RHOS), rtol=1e-7)


# ---------------------------------------------------------------- analytic properties


def _hypothesis_law(kind: str, scale: float, shape: float) -> GenNormLaw:
    return {"gennorm": GenNormLaw(scale, shape), "laplace": LaplaceLaw(scale),
            "gaussian": GaussianLaw(scale)}[kind]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["gennorm", "laplace", "gaussian"]), scales, shapes, ratios)
def test_inverse_delta_inverts_delta(kind: str, scale: float, shape: float, rho: float) -> None:
    law = _hypothesis_law(kind, scale, shape)
    assert law.inverse_delta(law.delta(rho)) == pytest.approx(rho, rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(scales, shapes)
def test_delta_of_inverse_delta_is_identity_on_zero_to_second_moment(
    scale: float, shape: float
) -> None:
    law = GenNormLaw(scale, shape)
    targets = np.linspace(0.0, 1.0, 41) * law.second_moment()
    np.testing.assert_allclose(law.delta(law.inverse_delta(targets)), targets,
                               rtol=1e-9, atol=1e-14 * float(law.second_moment()))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["gennorm", "laplace", "gaussian"]), scales, shapes,
       st.floats(0.01, 0.99))
def test_delta_derivative_matches_central_finite_difference(
    kind: str, scale: float, shape: float, rho: float
) -> None:
    law = _hypothesis_law(kind, scale, shape)
    h = 1e-5 * min(rho, 1 - rho)
    finite_difference = (law.delta(rho + h) - law.delta(rho - h)) / (2 * h)
    assert law.delta_derivative(rho) == pytest.approx(finite_difference, rel=1e-5)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["gennorm", "laplace", "gaussian"]), scales, shapes,
       st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3, unique=True))
def test_delta_is_increasing_and_convex(
    kind: str, scale: float, shape: float, three: list[float]
) -> None:
    law = _hypothesis_law(kind, scale, shape)
    a, b, c = sorted(three)
    assume(c - a > 1e-6)
    da, db, dc = (float(law.delta(x)) for x in (a, b, c))
    slack = 1e-12 * float(law.second_moment())
    assert da <= db + slack and db <= dc + slack
    chord = da + (dc - da) * (b - a) / (c - a)
    assert db <= chord + slack
    assert law.delta_derivative(a) <= law.delta_derivative(b) * (1 + 1e-12) + slack


nondecreasing_tables = st.lists(st.floats(0.0, 10.0), min_size=2, max_size=40).map(sorted)


@settings(max_examples=100, deadline=None)
@given(nondecreasing_tables, st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3, unique=True))
def test_empirical_delta_is_increasing_and_convex(table: list[float], three: list[float]) -> None:
    law = EmpiricalLaw(np.array(table))
    a, b, c = sorted(three)
    assume(c - a > 1e-6)
    da, db, dc = (float(law.delta(x)) for x in (a, b, c))
    slack = 1e-12 * (1 + float(law.second_moment()))
    assert da <= db + slack and db <= dc + slack
    assert db <= da + (dc - da) * (b - a) / (c - a) + slack


@settings(max_examples=100, deadline=None)
@given(nondecreasing_tables, st.floats(0.001, 0.999))
def test_empirical_delta_derivative_and_inverse(table: list[float], rho: float) -> None:
    law = EmpiricalLaw(np.array(table))
    second_moment = float(law.second_moment())
    h = 1e-5
    finite_difference = (law.delta(rho + h) - law.delta(rho - h)) / (2 * h)
    # q is continuous (piecewise linear), so δ is C¹ with |δ''| = |2qq'| ≤ 2·q_max·(Q−1)·q_max;
    # the difference quotient errs by ≤ h·max|δ''| plus rounding of δ over 2h
    curvature = 2 * table[-1] * (len(table) - 1) * (table[-1] - table[0])
    tolerance = h * curvature + 1e-15 * (1 + second_moment) / h
    assert abs(float(law.delta_derivative(rho)) - finite_difference) <= tolerance
    slope = float(law.delta_derivative(rho))
    if slope > 1e-6:  # δ strictly increasing at ρ: the inverse is unique
        error = abs(float(law.inverse_delta(law.delta(rho))) - rho)
        assert error <= 1e-12 * (1 + second_moment) / slope


def test_empirical_law_of_a_sample_agrees_with_magnitude_pruning_that_sample() -> None:
    """δ from a 1001-level quantile table against the measured magnitude-pruning distortion of
    the same 10⁶ weights, for ρ ≤ 0.95. Inside each table segment both the chord of q² and the
    sorted squares lie between the segment's end values, so the two integrals differ by at most
    w·Σ(q²ᵢ₊₁ − q²ᵢ) ≤ w·q(ρ + w)², w = 1/1000 (first order); smooth quantiles do far better,
    so the relative error is also held to 1e-3 for ρ ≥ 0.05. At ρ = 1 the top segment runs to
    the sample maximum and only the first-order bound holds (E W² is overstated by ~6% here)."""
    rng = np.random.default_rng(5)
    w = stats.gennorm.rvs(0.7, scale=0.04, size=1_000_000, random_state=rng)  # heavy tails
    law = EmpiricalLaw(magnitude_quantile_table(w, levels=1001))
    rho = RHOS[RHOS <= 0.95]
    width = 1e-3
    measured = magnitude_pruning_distortion(w, rho)
    bound = width * law.magnitude_quantile(rho + width) ** 2 + 2 * np.max(w**2) / w.size
    np.testing.assert_array_less(np.abs(law.delta(rho) - measured), bound)
    np.testing.assert_allclose(law.delta(rho[rho >= 0.05]), measured[rho >= 0.05], rtol=1e-3)
    assert abs(law.second_moment() - np.mean(w**2)) <= width * np.max(w**2)


# ---------------------------------------------------------------- broadcasting


def test_gennorm_parameters_of_shape_l_broadcast_against_rho_of_shape_k_by_1() -> None:
    scale = np.array([0.3, 1.0, 2.0, 0.05])
    shape = np.array([0.5, 1.0, 2.0, 6.0])
    rho = RHOS[:, None]
    law = GenNormLaw(scale, shape)
    distortion = law.delta(rho)
    assert distortion.shape == (RHOS.size, scale.size)
    assert law.second_moment().shape == (scale.size,)
    # the same formulas evaluated on a (K, L) grid and on K scalars-per-law: numpy and scipy may
    # take vectorized (SIMD) kernels for one and scalar kernels for the other, which differ by
    # an ulp or two per operation (0.845054585669396 vs 0.8450545856693961 on one CPU); over
    # the ~10 operations of a law that stays below 1e-13 relative, far from any broadcasting
    # mistake (which mixes parameters of different laws: errors of order 1)
    for j in range(scale.size):
        single = GenNormLaw(float(scale[j]), float(shape[j]))
        np.testing.assert_allclose(distortion[:, j], single.delta(RHOS), rtol=1e-13, atol=0)
        np.testing.assert_allclose(law.magnitude_quantile(rho)[:, j],
                                   single.magnitude_quantile(RHOS), rtol=1e-13, atol=0)
        np.testing.assert_allclose(law.delta_derivative(rho)[:, j],
                                   single.delta_derivative(RHOS), rtol=1e-13, atol=0)
        np.testing.assert_allclose(law.inverse_delta(distortion)[:, j], RHOS, rtol=1e-9)


def test_empirical_tables_of_shape_l_by_q_broadcast_against_rho_of_shape_k_by_1() -> None:
    rng = np.random.default_rng(3)
    tables = np.stack([magnitude_quantile_table(rng.laplace(0, s, 20_000), levels=101)
                       for s in (0.1, 1.0, 3.0)])
    law = EmpiricalLaw(tables)
    rho = RHOS[:, None]
    assert law.delta(rho).shape == (RHOS.size, 3)
    assert law.second_moment().shape == (3,)
    for j in range(3):
        single = EmpiricalLaw(tables[j])
        np.testing.assert_allclose(law.delta(rho)[:, j], single.delta(RHOS), rtol=1e-14)
        np.testing.assert_allclose(law.magnitude_quantile(rho)[:, j],
                                   single.magnitude_quantile(RHOS), rtol=1e-14)
        np.testing.assert_allclose(law.inverse_delta(law.delta(rho))[:, j], RHOS, atol=1e-12)


# ---------------------------------------------------------------- distortion-optimality (eq. 3.1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-10.0, 10.0), min_size=1, max_size=8))
def test_magnitude_pruning_is_least_distortion_among_all_masks_of_same_count(
    weights: list[float],
) -> None:
    """docs/theory.md §3.1: among all ŵ with at most n − k non-zeros, ‖w − ŵ‖² is least when the k
    smallest-magnitude weights are removed. Brute force over every support of size n − k (for a
    given support the best ŵ keeps the values, so the supports are all that matter)."""
    w = np.array(weights)
    n = w.size
    for k in range(n + 1):
        best = min(float(np.sum(w[list(removed)] ** 2))
                   for removed in itertools.combinations(range(n), k))
        rho = min((k + 0.5) / n, 1.0)  # ⌊ρn⌋ = k without rounding doubt
        assert float(magnitude_pruning_distortion(w, rho)) * n == pytest.approx(best, abs=1e-12)


def test_magnitude_pruning_beats_random_masks_and_random_values_on_the_kept_support() -> None:
    rng = np.random.default_rng(8)
    w = rng.laplace(size=500)
    for k in (50, 250, 450):
        optimum = float(magnitude_pruning_distortion(w, (k + 0.5) / w.size)) * w.size
        for _ in range(200):
            keep = rng.permutation(w.size)[k:]
            w_hat = np.zeros_like(w)
            w_hat[keep] = w[keep] + rng.normal(0, 0.1, keep.size) * rng.integers(0, 2)
            assert np.sum((w - w_hat) ** 2) >= optimum


# ---------------------------------------------------------------- defects of distortion.py


def test_magnitude_pruning_distortion_prunes_k_weights_at_rho_k_over_n() -> None:
    w = np.arange(1.0, 101.0)
    for k in range(101):
        expected = np.sum(w[:k] ** 2) / w.size
        assert float(magnitude_pruning_distortion(w, k / 100)) == pytest.approx(expected)


def test_magnitude_pruning_distortion_does_not_wrap_negative_ratios() -> None:
    w = np.arange(1.0, 101.0)
    try:
        value = float(magnitude_pruning_distortion(w, -0.1))
    except ValueError:
        return
    assert value == 0.0


def test_empirical_second_moment_matches_the_sample_mean_square_to_one_percent() -> None:
    w = np.random.default_rng(0).laplace(0.0, 1 / np.sqrt(2), 1_000_000)
    law = EmpiricalLaw(magnitude_quantile_table(w, levels=1001), mean_square=np.mean(w**2))
    assert law.second_moment() == pytest.approx(np.mean(w**2), rel=1e-2)
    # and δ stays continuous and increasing through the corrected top segment
    rho = np.linspace(0.99, 1.0, 201)
    assert np.all(np.diff(law.delta(rho)) >= 0)
    assert float(law.delta(1.0)) == pytest.approx(np.mean(w**2), rel=1e-12)
