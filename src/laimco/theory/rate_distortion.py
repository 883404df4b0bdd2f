"""Rate–distortion bounds for i.i.d. weights, and the rate of a magnitude-pruned model.

Distortion is squared error per weight (units of weight²), rates are bits per weight. What is
proven and what is not (docs/theory.md §3.8):

- Shannon lower bound, docs/theory.md eq. (3.22): D(R) ≥ 2^{2(h(W)−R)}/(2πe) for every source
  with differential entropy h(W). Proven; equality for a Gaussian, asymptotically tight as
  R → ∞ for smooth densities; strict for Laplace at every rate.
- Gaussian bound, eq. (3.24): D(R) = σ²·2^{−2R} exactly for a Gaussian source, and
  D(R) ≤ σ²·2^{−2R} for every source of variance σ². Proven.
- Blahut–Arimoto, eqs. (3.25)–(3.27): the R(D) curve of a discretized law. Numerical: every
  returned point is achievable for the grid source, Blahut's gap certifies it from below, and
  the grid's distance to the law is bounded in the result.
- Pruned-model rate, eq. (3.28): mask entropy plus the bits of the kept values. A storage
  model, not a bound; it ignores the quantization error of the kept values (eq. 3.29).

All laws are taken symmetric about zero (laimco's laws describe |W|).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from laimco.theory.distortion import DistortionLaw, EmpiricalLaw, GenNormLaw

FloatArray = NDArray[np.float64]

_TWO_PI_E = 2 * np.pi * np.e


def _as_float(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------- differential entropy (3.20)


def laplace_entropy_bits(scale: ArrayLike) -> FloatArray:
    """h(W) = log₂(2e·b) bits for W ~ Laplace(0, b) (docs/theory.md eq. (3.20))."""
    return _as_float(np.log2(2 * np.e * _as_float(scale)))


def gaussian_entropy_bits(std: ArrayLike) -> FloatArray:
    """h(W) = ½·log₂(2πe·σ²) bits for W ~ Gaussian(0, σ²) (docs/theory.md eq. (3.20))."""
    return _as_float(0.5 * np.log2(_TWO_PI_E * _as_float(std) ** 2))


def gennorm_entropy_bits(scale: ArrayLike, shape: ArrayLike) -> FloatArray:
    """h(W) = [1/β + ln(2α·Γ(1/β)/β)] / ln 2 bits for density ∝ exp(−(|w|/α)^β)
    (docs/theory.md eq. (3.20)); β = 1 gives Laplace, β = 2 with α = σ√2 gives Gaussian."""
    alpha, beta = _as_float(scale), _as_float(shape)
    nats = 1 / beta + np.log(2 * alpha / beta) + special.gammaln(1 / beta)
    return _as_float(nats / np.log(2))


def empirical_entropy_bits(magnitude_quantiles: ArrayLike) -> FloatArray:
    """h(W) in bits of the symmetric law whose |W| has the piecewise-linear quantile function
    of the table (levels i/(Q−1)), i.e. a piecewise-uniform density (docs/theory.md eq. (3.21)):

        h(W) = 1 + (1/(Q−1))·Σᵢ log₂((Q−1)·(qᵢ₊₁ − qᵢ)).

    The 1 bit is the sign. Tied quantiles (a point mass) give −∞.
    """
    table = _as_float(magnitude_quantiles)
    n_seg = table.shape[-1] - 1
    with np.errstate(divide="ignore"):
        log_density_inverse = np.log2(n_seg * np.diff(table, axis=-1))
    return _as_float(1 + log_density_inverse.mean(axis=-1))


def differential_entropy_bits(law: GenNormLaw | EmpiricalLaw) -> FloatArray:
    """h(W) in bits of a law: eq. (3.20) for Laplace, Gaussian, generalized Gaussian; eq. (3.21)
    for the empirical law."""
    if isinstance(law, GenNormLaw):
        return gennorm_entropy_bits(law.scale, law.shape)
    return empirical_entropy_bits(law.magnitude_quantiles)


# ---------------------------------------------------------------- Shannon lower bound (3.22)


def shannon_lower_bound_distortion(rate_bits: ArrayLike, entropy_bits: ArrayLike) -> FloatArray:
    """D_SLB(R) = 2^{2(h − R)} / (2πe), weight² per weight (docs/theory.md eq. (3.22)).

    Proven lower bound: D(R) ≥ D_SLB(R) for every source with differential entropy h (bits),
    under squared error. Equality for a Gaussian source; for other smooth densities the gap
    closes as R → ∞.
    """
    exponent = 2 * (_as_float(entropy_bits) - _as_float(rate_bits))
    return _as_float(np.exp2(exponent) / _TWO_PI_E)


def shannon_lower_bound_rate(distortion: ArrayLike, entropy_bits: ArrayLike) -> FloatArray:
    """R_SLB(D) = max(0, h − ½·log₂(2πe·D)) bits per weight (docs/theory.md eq. (3.23)).

    The inverse of D_SLB where that is positive; a proven lower bound R(D) ≥ R_SLB(D).
    """
    with np.errstate(divide="ignore"):
        rate = _as_float(entropy_bits) - 0.5 * np.log2(_TWO_PI_E * _as_float(distortion))
    return _as_float(np.maximum(rate, 0.0))


# ---------------------------------------------------------------- Gaussian source (3.24)


def gaussian_distortion_rate(rate_bits: ArrayLike, variance: ArrayLike) -> FloatArray:
    """D(R) = σ²·2^{−2R}, weight² per weight (docs/theory.md eq. (3.24)).

    Exact for a Gaussian source; a proven upper bound on D(R) of any source of variance σ².
    """
    return _as_float(_as_float(variance) * np.exp2(-2 * _as_float(rate_bits)))


def gaussian_rate_distortion(distortion: ArrayLike, variance: ArrayLike) -> FloatArray:
    """R(D) = max(0, ½·log₂(σ²/D)) bits per weight (docs/theory.md eq. (3.24)).

    Exact for a Gaussian source; a proven upper bound on R(D) of any source of variance σ².
    """
    with np.errstate(divide="ignore"):
        rate = 0.5 * np.log2(_as_float(variance) / _as_float(distortion))
    return _as_float(np.maximum(rate, 0.0))


# ---------------------------------------------------------------- Blahut–Arimoto (3.25–3.27)


@dataclass(frozen=True)
class RateDistortionPoint:
    """One point of a discrete source's R(D) curve from Blahut–Arimoto at slope s.

    `rate_bits` = I(X;Y) and `distortion` = E d(X,Y) of the final test channel, so the point is
    achievable: R(distortion) ≤ rate_bits. Blahut's bound (eq. 3.26) certifies
    R(distortion) ≥ rate_bits − gap_bits. `output_probabilities` is the reproduction law.
    """

    rate_bits: float
    distortion: float
    slope: float
    gap_bits: float
    iterations: int
    converged: bool
    output_probabilities: FloatArray


def blahut_arimoto(
    source_probabilities: ArrayLike,
    distortion_matrix: ArrayLike,
    slope: float,
    *,
    tolerance_bits: float = 1e-5,
    max_iterations: int = 10_000,
    initial_output: ArrayLike | None = None,
) -> RateDistortionPoint:
    """Blahut–Arimoto at slope s ≤ 0 (nats per unit of distortion). With the kernel
    K(x, y) = e^{s·d(x,y)} for the (n, m) matrix d of source × reproduction symbols (any finite
    distortion measure), iterate (docs/theory.md eq. (3.25))

        Z(x) = Σ_y q(y)·K(x,y),   c(y) = Σₓ p(x)·K(x,y)/Z(x),   q ← q·c,

    until Blahut's gap max_y ln c(y) − Σ_y q(y)c(y)·ln c(y) (eq. 3.26, reported in bits) is below
    `tolerance_bits`, or for `max_iterations`. The returned point is the test channel
    Q(y|x) = q(y)K(x,y)/Z(x): rate I(X;Y) = s·D − Σₓ p ln Z − Σ_y qc·ln c, distortion E d.
    The gap falls roughly like 1/iterations once the rate and distortion have settled.
    """
    p = _as_float(source_probabilities)
    p = p / p.sum()
    d = _as_float(distortion_matrix)
    if d.shape[0] != p.size:
        raise ValueError(f"distortion_matrix has {d.shape[0]} rows for {p.size} source symbols")
    if slope > 0:
        raise ValueError(f"slope must be ≤ 0 (nats per unit of distortion), got {slope}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be ≥ 1, got {max_iterations}")
    q = np.full(d.shape[1], 1.0) if initial_output is None else _as_float(initial_output)
    q = q / q.sum()
    kernel = np.exp(slope * d)
    tiny = np.finfo(np.float64).tiny
    for iteration in range(1, max_iterations + 1):
        z = np.maximum(kernel @ q, tiny)
        c = kernel.T @ (p / z)
        r = q * c  # the output law of the channel, sums to 1
        with np.errstate(divide="ignore"):
            log_c = np.log(c)
        r_log_c = np.sum(np.where(r > 0, r * log_c, 0.0))
        gap = float(np.max(log_c) - r_log_c) / np.log(2)
        converged = gap < tolerance_bits
        if converged or iteration == max_iterations:
            break
        q = r / r.sum()
    distortion = float(p @ ((kernel * d) @ q / z))
    rate_nats = slope * distortion - p @ np.log(z) - r_log_c
    return RateDistortionPoint(
        rate_bits=max(float(rate_nats) / np.log(2), 0.0),
        distortion=distortion,
        slope=float(slope),
        gap_bits=gap,
        iterations=iteration,
        converged=bool(converged),
        output_probabilities=r / r.sum(),
    )


@dataclass(frozen=True)
class RateDistortionCurve:
    """Blahut–Arimoto points of a discretized law, one per slope (arrays of equal length).

    `rms_discretization_bound` bounds √E(W − X_Δ)² between the law W and its grid version X_Δ;
    the law's own √D(R) lies within ± that of √distortion at the same rate (eq. 3.27).
    """

    rate_bits: FloatArray
    distortion: FloatArray
    slope: FloatArray
    gap_bits: FloatArray
    iterations: NDArray[np.int64]
    converged: NDArray[np.bool_]
    grid_step: float
    rms_discretization_bound: float


def _magnitude_cdf(law: DistortionLaw, x: FloatArray) -> FloatArray:
    """P(|W| ≤ x) by bisection on the increasing quantile function (60 halvings)."""
    lo, hi = np.zeros_like(x), np.ones_like(x)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = law.magnitude_quantile(mid) <= x
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def discretize_law(
    law: DistortionLaw, grid_points: int = 401, span_std: float = 8.0
) -> tuple[FloatArray, FloatArray, float]:
    """Grid x_j = −L + jΔ on [−L, L], L = span_std·σ, with the probability of each cell
    [x_j ± Δ/2] (the two end cells reach ±∞). Returns (points, probabilities, Δ).

    With e = E(W − X_Δ)² ≤ Δ²/4 + E[W²·1{|W| > L}] (eq. 3.27), the second term from δ.
    """
    std = float(np.sqrt(law.second_moment()))
    half_span = span_std * std
    points = np.linspace(-half_span, half_span, grid_points)
    step = float(points[1] - points[0])
    edges = np.abs(points[:-1] + step / 2)
    cdf = 0.5 + 0.5 * np.sign(points[:-1] + step / 2) * _magnitude_cdf(law, edges)
    probabilities = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return points, np.maximum(probabilities, 0.0), step


def rate_distortion_curve(
    law: DistortionLaw,
    slopes: ArrayLike | None = None,
    *,
    grid_points: int = 401,
    span_std: float = 8.0,
    tolerance_bits: float = 1e-3,
    max_iterations: int = 5_000,
) -> RateDistortionCurve:
    """R(D) of one (scalar) law by Blahut–Arimoto on its discretization, squared error.

    `slopes` s < 0 in nats per weight²; by default s = −β/σ² for β from 0.55 to 40 (about
    0.07 to 3.2 bits for a Gaussian, whose point at slope s has D = −1/(2s)). Every slope starts
    from q = p, the optimal reproduction law as R → ∞. The rate and distortion settle within a
    few hundred iterations; Blahut's gap then falls slowly (about 1/iterations), hence the
    loose default tolerance.
    """
    if np.ndim(law.second_moment()) != 0:
        raise ValueError("rate_distortion_curve takes one law (scalar parameters)")
    variance = float(law.second_moment())
    if slopes is None:
        slopes = -np.geomspace(0.55, 40.0, 16) / variance
    points, probabilities, step = discretize_law(law, grid_points, span_std)
    distortion_matrix = (points[:, None] - points[None, :]) ** 2
    results = [
        blahut_arimoto(probabilities, distortion_matrix, float(s), tolerance_bits=tolerance_bits,
                       max_iterations=max_iterations, initial_output=probabilities)
        for s in np.atleast_1d(_as_float(slopes))
    ]
    half_span = points[-1]
    tail = variance - float(law.delta(_magnitude_cdf(law, np.array(half_span))))
    return RateDistortionCurve(
        rate_bits=np.array([p.rate_bits for p in results]),
        distortion=np.array([p.distortion for p in results]),
        slope=np.array([p.slope for p in results]),
        gap_bits=np.array([p.gap_bits for p in results]),
        iterations=np.array([p.iterations for p in results], dtype=np.int64),
        converged=np.array([p.converged for p in results]),
        grid_step=step,
        rms_discretization_bound=float(np.sqrt(step**2 / 4 + max(tail, 0.0))),
    )


# ---------------------------------------------------------------- pruned-model rate (3.28)


def binary_entropy_bits(p: ArrayLike) -> FloatArray:
    """H_b(p) = −p·log₂p − (1−p)·log₂(1−p) bits, with 0·log 0 = 0 (docs/theory.md eq. (3.28))."""
    p = np.clip(_as_float(p), 0.0, 1.0)
    return _as_float(special.entr(p) / np.log(2) + special.entr(1 - p) / np.log(2))


def pruned_model_rate_bits(rho: ArrayLike, bits_per_kept_value: ArrayLike) -> FloatArray:
    """R(ρ) = H_b(ρ) + (1 − ρ)·b bits per original weight (docs/theory.md eq. (3.28)).

    A storage model, not a bound: the mask at its entropy (an ideal entropy coder for an i.i.d.
    mask; a plain bitmap costs 1 bit, CSR indices (1−ρ)·log₂N), and b bits per kept value.
    """
    rho = _as_float(rho)
    return _as_float(binary_entropy_bits(rho) + (1 - rho) * _as_float(bits_per_kept_value))


def pruning_operating_point(
    law: DistortionLaw, rho: ArrayLike, bits_per_kept_value: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """(R(ρ), δ(ρ)): the rate of eq. (3.28) and the magnitude-pruning distortion of the law.

    To compare with an R(D) bound at the same rate (docs/theory.md eq. (3.29)): a pruned model
    stored this way is a code of rate R(ρ) whose distortion is δ(ρ) plus (1−ρ) times the MSE of
    a b-bit kept value, so that sum is ≥ D(R(ρ)) (proven converse). The pair drops the second
    term: it is a fair operating point for float storage (b = 16, 32), where it lies above D(R)
    by ~10⁴ at ρ = 0.5 and ~10 at ρ = 0.9 (Laplace, Gaussian), but at b = 4 and ρ ≤ 0.1 it
    falls below the Shannon lower bound, which no real code can do.
    """
    return pruned_model_rate_bits(rho, bits_per_kept_value), law.delta(rho)
