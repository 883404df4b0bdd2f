"""Rate–distortion bounds of laimco/theory/rate_distortion.py (docs/theory.md §3.8).

References: scipy.stats entropies, the closed-form R(D) of a Gaussian and of a binary source
under Hamming distortion, the Shannon lower bound, and the distortion laws' own Monte-Carlo
-checked δ(ρ) (tests/test_distortion_laws.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from laimco.theory.distortion import (
    EmpiricalLaw,
    GaussianLaw,
    GenNormLaw,
    LaplaceLaw,
    magnitude_quantile_table,
)
from laimco.theory.rate_distortion import (
    RateDistortionCurve,
    binary_entropy_bits,
    blahut_arimoto,
    differential_entropy_bits,
    discretize_law,
    empirical_entropy_bits,
    gaussian_distortion_rate,
    gaussian_entropy_bits,
    gaussian_rate_distortion,
    gennorm_entropy_bits,
    laplace_entropy_bits,
    pruned_model_rate_bits,
    pruning_operating_point,
    rate_distortion_curve,
    shannon_lower_bound_distortion,
    shannon_lower_bound_rate,
)

LN2 = np.log(2)
scales = st.floats(1e-3, 1e3)
shapes = st.floats(0.3, 8.0)
rates = st.floats(0.0, 12.0)
# slopes s = −β/σ² for β giving Gaussian rates ½·log₂(2β) ≈ 0.13 … 3 bits
BETAS = np.array([0.6, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])


def _curve(law: GenNormLaw) -> RateDistortionCurve:
    return rate_distortion_curve(law, -BETAS / float(law.second_moment()), grid_points=201,
                                 max_iterations=2000)


# ---------------------------------------------------------------- entropies (eqs. 3.20–3.21)


@pytest.mark.parametrize("b", [1e-3, 0.046, 1.0, 50.0])
def test_laplace_entropy_equals_scipy_in_bits(b: float) -> None:
    assert laplace_entropy_bits(b) == pytest.approx(stats.laplace(scale=b).entropy() / LN2,
                                                    rel=1e-12, abs=1e-12)
    assert differential_entropy_bits(LaplaceLaw(b)) == pytest.approx(laplace_entropy_bits(b))


@pytest.mark.parametrize("sigma", [1e-3, 0.061, 1.0, 50.0])
def test_gaussian_entropy_equals_scipy_in_bits(sigma: float) -> None:
    assert gaussian_entropy_bits(sigma) == pytest.approx(stats.norm(scale=sigma).entropy() / LN2,
                                                         rel=1e-12, abs=1e-12)
    assert differential_entropy_bits(GaussianLaw(sigma)) == pytest.approx(
        gaussian_entropy_bits(sigma), rel=1e-12, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(scales, shapes)
def test_gennorm_entropy_equals_scipy_in_bits(scale: float, shape: float) -> None:
    reference = stats.gennorm(shape, scale=scale).entropy() / LN2
    assert gennorm_entropy_bits(scale, shape) == pytest.approx(reference, rel=1e-10, abs=1e-10)


def test_entropies_broadcast_over_parameter_arrays() -> None:
    scale, shape = np.array([0.1, 1.0, 3.0]), np.array([0.5, 1.0, 2.0])
    expected = [stats.gennorm(b, scale=a).entropy() / LN2
                for a, b in zip(scale, shape, strict=True)]
    np.testing.assert_allclose(differential_entropy_bits(GenNormLaw(scale, shape)), expected)


def test_empirical_entropy_is_exact_for_a_uniform_law() -> None:
    """|W| ~ U(0, a) has a linear quantile function, so the table is exact: h = log₂(2a)."""
    a = 0.37
    table = np.linspace(0.0, a, 1001)
    assert empirical_entropy_bits(table) == pytest.approx(np.log2(2 * a), rel=1e-12)


@pytest.mark.parametrize("shape", [0.7, 1.0, 2.0])
def test_empirical_entropy_of_a_large_sample_approaches_the_law_entropy(shape: float) -> None:
    rng = np.random.default_rng(2)
    w = stats.gennorm.rvs(shape, scale=0.05, size=1_000_000, random_state=rng)
    law = EmpiricalLaw(magnitude_quantile_table(w, levels=1001))
    assert differential_entropy_bits(law) == pytest.approx(gennorm_entropy_bits(0.05, shape),
                                                           abs=0.01)


# ---------------------------------------------------------------- SLB and Gaussian (3.22–3.24)


@settings(max_examples=100, deadline=None)
@given(scales, rates)
def test_slb_equals_gaussian_distortion_rate_for_a_gaussian(sigma: float, rate: float) -> None:
    slb = shannon_lower_bound_distortion(rate, gaussian_entropy_bits(sigma))
    assert slb == pytest.approx(gaussian_distortion_rate(rate, sigma**2), rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(scales, rates)
def test_slb_is_strictly_below_gaussian_bound_for_laplace_by_e_over_pi(
    b: float, rate: float
) -> None:
    """Same variance 2b²: D_SLB / σ²2^{−2R} = 2^{2h}/(2πe·2b²) = (2eb)²/(4πe·b²) = e/π."""
    slb = shannon_lower_bound_distortion(rate, laplace_entropy_bits(b))
    upper = gaussian_distortion_rate(rate, 2 * b**2)
    assert slb < upper
    assert slb / upper == pytest.approx(np.e / np.pi, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(scales, shapes, rates)
def test_slb_never_exceeds_the_gaussian_bound_of_the_same_variance(
    scale: float, shape: float, rate: float
) -> None:
    """The Gaussian has the largest entropy at a given variance, so D_SLB ≤ σ²·2^{−2R}, with
    equality only at β = 2."""
    law = GenNormLaw(scale, shape)
    slb = shannon_lower_bound_distortion(rate, differential_entropy_bits(law))
    assert slb <= gaussian_distortion_rate(rate, law.second_moment()) * (1 + 1e-12)


@settings(max_examples=100, deadline=None)
@given(st.floats(-10.0, 10.0), rates)
def test_slb_rate_inverts_slb_distortion(entropy: float, rate: float) -> None:
    distortion = shannon_lower_bound_distortion(rate, entropy)
    assert shannon_lower_bound_rate(distortion, entropy) == pytest.approx(rate, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-6, 1e6), rates)
def test_gaussian_rate_distortion_inverts_distortion_rate(variance: float, rate: float) -> None:
    distortion = gaussian_distortion_rate(rate, variance)
    assert gaussian_rate_distortion(distortion, variance) == pytest.approx(rate, abs=1e-9)
    assert gaussian_rate_distortion(2 * variance, variance) == 0.0


# ---------------------------------------------------------------- Blahut–Arimoto (3.25–3.27)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("slope", [-0.5, -1.0, -2.0, -3.0, -5.0])
def test_blahut_arimoto_binary_hamming_matches_hb_p_minus_hb_d(p: float, slope: float) -> None:
    """Bernoulli(p) source, Hamming distortion: R(D) = H_b(p) − H_b(D) for D < min(p, 1−p),
    reached at slope s = −ln((1−D)/D), i.e. D = 1/(1 + e^{−s}); R = 0, D = min(p, 1−p) beyond."""
    result = blahut_arimoto([1 - p, p], np.array([[0.0, 1.0], [1.0, 0.0]]), slope,
                            tolerance_bits=1e-10, max_iterations=200_000)
    assert result.converged
    d_slope = 1 / (1 + np.exp(-slope))
    expected_d = min(d_slope, p, 1 - p)
    expected_r = float(binary_entropy_bits(p) - binary_entropy_bits(expected_d))
    assert result.distortion == pytest.approx(expected_d, abs=1e-6)
    assert result.rate_bits == pytest.approx(expected_r, abs=1e-6)


def test_blahut_arimoto_takes_a_non_square_distortion_matrix() -> None:
    """Ternary source {0, 1, ½} with probabilities (0.4, 0.4, 0.2), binary reproduction. As
    s → −∞, D → D_min = 0.1 (the symbol ½ costs ½ either way) and R → R(D_min): 0 and 1 map to
    themselves, ½ maps to Y with P(Y = 1) = a; I = H_b(0.4 + 0.2a) − 0.2·H_b(a) is least at
    a = ½, so R(D_min) = 1 − 0.2 = 0.8 bit. As s → 0 the rate collapses to 0."""
    d = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    steep = blahut_arimoto([0.4, 0.4, 0.2], d, -20.0, tolerance_bits=1e-9, max_iterations=50_000)
    assert steep.converged and steep.output_probabilities.shape == (2,)
    assert steep.distortion == pytest.approx(0.1, abs=1e-6)
    assert steep.rate_bits == pytest.approx(0.8, abs=1e-6)
    flat = blahut_arimoto([0.4, 0.4, 0.2], d, -1e-3, tolerance_bits=1e-9, max_iterations=50_000)
    assert flat.rate_bits == pytest.approx(0.0, abs=1e-6)


def test_blahut_arimoto_on_a_discretized_gaussian_matches_sigma2_2_pow_minus_2r() -> None:
    """Gaussian σ = 1.7 on 201 points over ±8σ. Proven sandwich: the point (R, D) is achievable
    for the grid source X_Δ and R_X(D) ≥ R − gap; moving between W and X_Δ changes √D(R) by at
    most the rms distance between them (eq. 3.27). Observed: the rate at equal distortion
    agrees with ½·log₂(σ²/D) to 4e-4 bits, held to 2e-3."""
    sigma = 1.7
    curve = _curve(GaussianLaw(sigma))
    assert curve.converged.all()
    rms = curve.rms_discretization_bound
    root_d = np.sqrt(curve.distortion)
    assert np.all(root_d >= np.sqrt(gaussian_distortion_rate(curve.rate_bits, sigma**2)) - rms)
    upper = np.sqrt(gaussian_distortion_rate(curve.rate_bits - curve.gap_bits, sigma**2)) + rms
    assert np.all(root_d <= upper)
    rate_error = curve.rate_bits - gaussian_rate_distortion(curve.distortion, sigma**2)
    np.testing.assert_array_less(np.abs(rate_error), 2e-3)
    assert curve.rate_bits.min() < 0.2 and curve.rate_bits.max() > 2.9


def test_blahut_arimoto_curve_for_laplace_lies_between_slb_and_gaussian_bound() -> None:
    """Proven: D_SLB(R) ≤ D(R) ≤ σ²·2^{−2R}. BA points are achievable for the grid source,
    so √D_BA ≥ √D_SLB(R) − rms and √D_BA ≤ √(σ²·2^{−2(R−gap)}) + rms."""
    law = LaplaceLaw(0.3)
    variance = float(law.second_moment())
    curve = _curve(law)
    rms = curve.rms_discretization_bound
    slb = shannon_lower_bound_distortion(curve.rate_bits, differential_entropy_bits(law))
    assert np.all(np.sqrt(curve.distortion) >= np.sqrt(slb) - rms)
    gaussian = gaussian_distortion_rate(curve.rate_bits - curve.gap_bits, variance)
    assert np.all(np.sqrt(curve.distortion) <= np.sqrt(gaussian) + rms)
    # and the curve is a curve: rate falls as distortion grows
    order = np.argsort(curve.distortion)
    assert np.all(np.diff(curve.rate_bits[order]) < 0)


def test_laplace_slb_is_loose_at_low_rate_and_tight_at_high_rate() -> None:
    """The Laplace R(D) curve sits ~6% above the SLB in distortion near 0.2 bit, < 0.3% above
    from 1.4 bits on (Linkov: SLB asymptotically tight for smooth densities)."""
    law = LaplaceLaw(1.0)
    curve = _curve(law)
    ratio = curve.distortion / shannon_lower_bound_distortion(
        curve.rate_bits, differential_entropy_bits(law))
    assert ratio[0] > 1.03 and curve.rate_bits[0] < 0.25
    high = curve.rate_bits > 1.3
    assert high.sum() >= 3 and np.all(ratio[high] < 1.003)


def test_discretize_law_puts_all_mass_on_a_symmetric_grid() -> None:
    law = GenNormLaw(0.8, 1.3)
    points, probabilities, step = discretize_law(law, grid_points=101, span_std=6.0)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(probabilities, probabilities[::-1], atol=1e-15)
    np.testing.assert_allclose(np.diff(points), step)
    assert points[-1] == pytest.approx(6.0 * np.sqrt(law.second_moment()))
    # the grid source has (almost) the law's variance: each cell moves W by ≤ Δ/2
    assert probabilities @ points**2 == pytest.approx(law.second_moment(), rel=2e-3)


# ---------------------------------------------------------------- pruned-model rate (3.28–3.29)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 1.0))
def test_binary_entropy_matches_scipy(p: float) -> None:
    assert binary_entropy_bits(p) == pytest.approx(stats.entropy([p, 1 - p], base=2), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 64.0))
def test_pruned_model_rate_is_mask_entropy_plus_kept_value_bits(rho: float, bits: float) -> None:
    expected = stats.entropy([rho, 1 - rho], base=2) + (1 - rho) * bits
    assert pruned_model_rate_bits(rho, bits) == pytest.approx(expected, abs=1e-9)


def test_pruned_model_rate_limits() -> None:
    assert pruned_model_rate_bits(0.0, 16) == 16.0  # dense: values only, no mask
    assert pruned_model_rate_bits(1.0, 16) == 0.0  # everything pruned
    assert pruned_model_rate_bits(0.5, 16) == pytest.approx(9.0)


LAWS_FOR_OPERATING_POINTS = [LaplaceLaw(0.046), GaussianLaw(0.061), GenNormLaw(0.02, 0.5),
                             GenNormLaw(1.0, 4.0)]


@pytest.mark.parametrize("law", LAWS_FOR_OPERATING_POINTS, ids=["laplace", "gaussian",
                                                                 "gennorm0.5", "gennorm4"])
@pytest.mark.parametrize("bits", [16, 32])
def test_pruning_operating_points_lie_above_the_gaussian_rd_upper_bound(
    law: GenNormLaw, bits: int
) -> None:
    """Float storage of the kept values (b = 16, 32): δ(ρ) ≥ σ²·2^{−2R(ρ)} ≥ D(R(ρ)) for ρ ≤ 0.95,
    so magnitude pruning sits above the RD curve of its own law at the same rate."""
    rho = np.linspace(0.01, 0.95, 95)
    rate, distortion = pruning_operating_point(law, rho, bits)
    assert np.all(distortion >= gaussian_distortion_rate(rate, law.second_moment()))


@pytest.mark.parametrize("law", [LaplaceLaw(1.0), GaussianLaw(1.0), GenNormLaw(1.0, 4.0)],
                         ids=["laplace", "gaussian", "gennorm4"])
def test_pruning_operating_points_lie_above_the_blahut_arimoto_curve_at_low_rate(
    law: GenNormLaw,
) -> None:
    """ρ from 0.95 to 0.985 at b = 16 puts R(ρ) inside the BA curve's range (0.13–3 bits). The
    BA points are achievable for the grid source, and so is their chord (time sharing); the
    law's own D(R) is at most (√chord + rms)²."""
    curve = _curve(law)
    order = np.argsort(curve.rate_bits)
    rho = np.linspace(0.95, 0.985, 15)
    rate, distortion = pruning_operating_point(law, rho, 16)
    assert rate.min() > curve.rate_bits.min() and rate.max() < curve.rate_bits.max()
    chord = np.interp(rate, curve.rate_bits[order], curve.distortion[order])
    assert np.all(distortion >= (np.sqrt(chord) + curve.rms_discretization_bound) ** 2)


@pytest.mark.parametrize("law", LAWS_FOR_OPERATING_POINTS, ids=["laplace", "gaussian",
                                                                 "gennorm0.5", "gennorm4"])
def test_rate_model_without_value_quantization_error_can_beat_the_slb_at_low_bits(
    law: GenNormLaw,
) -> None:
    """A documented limitation (eq. 3.29): the pair (R(ρ), δ(ρ)) ignores the quantization error
    of the kept values, so at b = 4 and light pruning it falls below the Shannon lower bound —
    impossible for a real code. It is an operating point only when b is large."""
    rho = np.array([0.01, 0.05, 0.1])
    rate, distortion = pruning_operating_point(law, rho, 4)
    assert np.all(distortion < shannon_lower_bound_distortion(rate, differential_entropy_bits(law)))


def test_rate_distortion_curve_of_an_empirical_law_follows_the_sampled_law() -> None:
    """The curve of a 10⁶-weight Laplace sample's quantile table against the Laplace law's own
    curve, compared at equal rate: within 1% in distortion (sampling and table error)."""
    law = LaplaceLaw(1 / np.sqrt(2))
    w = np.random.default_rng(0).laplace(0.0, 1 / np.sqrt(2), 1_000_000)
    empirical = EmpiricalLaw(magnitude_quantile_table(w, levels=1001))
    slopes = -np.array([0.6, 1.0, 2.0, 8.0, 32.0])
    sampled = rate_distortion_curve(empirical, slopes, grid_points=201, max_iterations=2000)
    fitted = rate_distortion_curve(law, slopes, grid_points=201, max_iterations=2000)
    order = np.argsort(fitted.rate_bits)
    at_same_rate = np.interp(sampled.rate_bits, fitted.rate_bits[order], fitted.distortion[order])
    low, high = fitted.rate_bits.min(), fitted.rate_bits.max()
    inside = (sampled.rate_bits > low) & (sampled.rate_bits < high)
    assert inside.sum() >= 3
    np.testing.assert_allclose(sampled.distortion[inside], at_same_rate[inside], rtol=1e-2)
