"""Distortion–sparsity laws: the least parameter distortion per weight at pruning ratio ρ.

For i.i.d. weights W with magnitude quantile function q(u) (the u-quantile of |W|), removing
the fraction ρ of smallest-magnitude weights (magnitude pruning, the distortion-optimal rule,
docs/theory.md eq. (3.1)) costs, per weight,

    δ(ρ) = E[W² · 1{|W| ≤ q(ρ)}] = ∫₀^ρ q(u)² du                       (eq. 3.2)

so δ is increasing and convex with δ'(ρ) = q(ρ)² (eq. 3.3). Each law below evaluates δ, δ', its
inverse and q in closed form. Parameters are numpy arrays that broadcast against ρ, so one law
object can hold the statistics of many units at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

FloatArray = NDArray[np.float64]


class DistortionLaw(Protocol):
    """A distortion–sparsity law δ(ρ) of one weight population (or a broadcast stack of them)."""

    def delta(self, rho: ArrayLike) -> FloatArray:
        """Per-weight parameter distortion at pruning ratio ρ (units of weight²)."""
        ...

    def delta_derivative(self, rho: ArrayLike) -> FloatArray:
        """dδ/dρ = q(ρ)², the squared ρ-quantile of |W| (eq. 3.3)."""
        ...

    def inverse_delta(self, distortion: ArrayLike) -> FloatArray:
        """The pruning ratio ρ with δ(ρ) = distortion (distortion in [0, E W²])."""
        ...

    def magnitude_quantile(self, rho: ArrayLike) -> FloatArray:
        """q(ρ), the ρ-quantile of |W|."""
        ...

    def second_moment(self) -> FloatArray:
        """E[W²] = δ(1), the distortion of pruning every weight."""
        ...


def _as_float(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class GenNormLaw:
    """Generalized Gaussian weights, density ∝ exp(−(|w|/α)^β), scale α ≥ 0, shape β > 0.

    |W|^β/α^β ~ Gamma(1/β, 1), so with P the regularized lower incomplete gamma function
    (eq. 3.6):  q(ρ) = α·P⁻¹(1/β, ρ)^{1/β},
                δ(ρ) = α²·Γ(3/β)/Γ(1/β) · P(3/β, P⁻¹(1/β, ρ)).
    β = 1 is the Laplace law (α = b), β = 2 the Gaussian law (α = σ√2).
    """

    scale: ArrayLike
    shape: ArrayLike

    def _params(self) -> tuple[FloatArray, FloatArray]:
        return _as_float(self.scale), _as_float(self.shape)

    def second_moment(self) -> FloatArray:
        return self._second_moment

    @functools.cached_property
    def _second_moment(self) -> FloatArray:
        alpha, beta = self._params()
        moment = _as_float(alpha**2 * np.exp(special.gammaln(3 / beta) - special.gammaln(1 / beta)))
        moment.flags.writeable = False
        return moment

    def _level(self, rho: ArrayLike) -> FloatArray:
        _, beta = self._params()
        return _as_float(special.gammaincinv(1 / beta, _as_float(rho)))

    def with_unit_scale(self) -> GenNormLaw:
        """The same shape with α = 1: δ and q² scale as α², so δ_α(ρ) = α²·δ₁(ρ)."""
        return GenNormLaw(scale=1.0, shape=self.shape)

    def unit_derivative_kernel(self) -> Callable[[FloatArray], FloatArray]:
        """q(ρ)² at unit scale as a function of a float array, for loops that evaluate it
        many times inside their own np.errstate (it sets none: ρ = 1 gives ∞)."""
        return self.with_unit_scale().delta_derivative

    def delta(self, rho: ArrayLike) -> FloatArray:
        _, beta = self._params()
        return _as_float(self.second_moment() * special.gammainc(3 / beta, self._level(rho)))

    def magnitude_quantile(self, rho: ArrayLike) -> FloatArray:
        alpha, beta = self._params()
        return alpha * self._level(rho) ** (1 / beta)

    def delta_derivative(self, rho: ArrayLike) -> FloatArray:
        return self.magnitude_quantile(rho) ** 2

    def inverse_delta(self, distortion: ArrayLike) -> FloatArray:
        _, beta = self._params()
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.clip(_as_float(distortion) / self.second_moment(), 0.0, 1.0)
        level = special.gammaincinv(3 / beta, np.nan_to_num(fraction))
        return _as_float(special.gammainc(1 / beta, level))


class LaplaceLaw(GenNormLaw):
    """Laplace(0, b) weights: the generalized Gaussian law with α = b, β = 1. With u = −ln(1−ρ)
    (eq. 3.4):  q(ρ) = b·u,  δ(ρ) = 2b²·[1 − (1−ρ)(1 + u + u²/2)] = 2b²·P(3, u).

    The incomplete-gamma form is evaluated (it keeps full precision at small ρ, where the
    bracket cancels). The maximum-likelihood b of a zero-mean Laplace sample is its mean |w|.
    """

    def __init__(self, scale: ArrayLike) -> None:
        super().__init__(scale=scale, shape=1.0)

    def _level(self, rho: ArrayLike) -> FloatArray:
        """P⁻¹(1, ρ) = −ln(1−ρ) in closed form (the optimizer evaluates it in its loops)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return _as_float(-np.log1p(-_as_float(rho)))

    def with_unit_scale(self) -> LaplaceLaw:
        return LaplaceLaw(1.0)

    def delta_derivative(self, rho: ArrayLike) -> FloatArray:
        """q(ρ)² = b²·ln(1−ρ)² in closed form."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return _as_float(_as_float(self.scale) ** 2 * _laplace_unit_q2(_as_float(rho)))

    def unit_derivative_kernel(self) -> Callable[[FloatArray], FloatArray]:
        return _laplace_unit_q2


class GaussianLaw(GenNormLaw):
    """Gaussian(0, σ²) weights: the generalized Gaussian law with α = σ√2, β = 2. With
    z = Φ⁻¹((1+ρ)/2) (eq. 3.5):  q(ρ) = σz,  δ(ρ) = σ²·[ρ − 2zφ(z)] = σ²·P(3/2, z²/2).
    """

    def __init__(self, std: ArrayLike) -> None:
        super().__init__(scale=_as_float(std) * np.sqrt(2.0), shape=2.0)

    def _level(self, rho: ArrayLike) -> FloatArray:
        """P⁻¹(1/2, ρ) = erf⁻¹(ρ)² in closed form (P(1/2, x) = erf(√x))."""
        return _as_float(special.erfinv(_as_float(rho)) ** 2)

    def with_unit_scale(self) -> GaussianLaw:
        return GaussianLaw(1 / np.sqrt(2.0))  # α = σ√2 = 1

    def delta_derivative(self, rho: ArrayLike) -> FloatArray:
        """q(ρ)² = α²·erf⁻¹(ρ)² in closed form."""
        return _as_float(_as_float(self.scale) ** 2 * _gaussian_unit_q2(_as_float(rho)))

    def unit_derivative_kernel(self) -> Callable[[FloatArray], FloatArray]:
        return _gaussian_unit_q2


def _laplace_unit_q2(rho: FloatArray) -> FloatArray:
    """q(ρ)² of Laplace(0, 1): ln(1−ρ)² (eq. 3.4)."""
    u = np.log1p(-rho)
    return u * u


def _gaussian_unit_q2(rho: FloatArray) -> FloatArray:
    """q(ρ)² of the Gaussian law with α = σ√2 = 1: erf⁻¹(ρ)² (eq. 3.5)."""
    z: FloatArray = special.erfinv(rho)
    return z * z


@dataclass(frozen=True)
class EmpiricalLaw:
    """The exact law of a measured weight population, from its magnitude quantiles.

    `magnitude_quantiles[..., i]` is q(i/(Q−1)) for i = 0..Q−1 (same levels for every row).
    Between levels q is taken linear, so δ(ρ) = ∫₀^ρ q² du is a piecewise cubic computed
    exactly (eq. 3.7); δ'(ρ) = q(ρ)². With Q → ∞ this is the measured magnitude-pruning
    distortion of the population.

    The top segment runs from the (Q−2)/(Q−1) quantile to the largest weight, where a straight
    line overstates the energy of a heavy tail; `mean_square`, the measured E[w²], when given,
    fixes that segment's energy so that δ(1) = E[w²] (eq. 3.7).
    """

    magnitude_quantiles: ArrayLike
    mean_square: ArrayLike | None = None

    def _table(self) -> FloatArray:
        return self._checked_table

    @functools.cached_property
    def _checked_table(self) -> FloatArray:
        """The quantile table as floats, checked once (the law is immutable)."""
        table = _as_float(self.magnitude_quantiles)
        if table.shape[-1] < 2:
            raise ValueError("EmpiricalLaw needs at least 2 magnitude quantile levels")
        return table

    def _segment(self, rho: ArrayLike) -> tuple[NDArray[np.intp], FloatArray, FloatArray,
                                                FloatArray]:
        """Index of the segment holding ρ, the offset inside it, and its end quantiles."""
        table = self._table()
        n_seg = table.shape[-1] - 1
        rho = np.clip(_as_float(rho), 0.0, 1.0)
        position = rho * n_seg
        index = np.minimum(np.floor(position), n_seg - 1).astype(np.intp)
        fraction = position - index
        batch = np.broadcast_shapes(table.shape[:-1], rho.shape)
        table_b = np.broadcast_to(table, (*batch, table.shape[-1]))
        index_b = np.broadcast_to(index, batch)[..., None]
        q_lo = np.take_along_axis(table_b, index_b, axis=-1)[..., 0]
        q_hi = np.take_along_axis(table_b, index_b + 1, axis=-1)[..., 0]
        return index_b[..., 0], np.broadcast_to(fraction, batch), q_lo, q_hi

    def _segments(self) -> tuple[FloatArray, FloatArray]:
        return self._segment_energy

    @functools.cached_property
    def _segment_energy(self) -> tuple[FloatArray, FloatArray]:
        """∫ q² over each segment (..., Q−1), and the factor applied to the top segment's
        straight-line energy (1 unless `mean_square` is given)."""
        table = self._table()
        width = 1.0 / (table.shape[-1] - 1)
        a, b = table[..., :-1], table[..., 1:]
        per_segment = width * (a * a + a * b + b * b) / 3
        scale = np.ones(table.shape[:-1])
        if self.mean_square is not None:
            below = per_segment[..., :-1].sum(axis=-1)
            top = np.maximum(_as_float(self.mean_square) - below, width * a[..., -1] ** 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(per_segment[..., -1] > 0, top / per_segment[..., -1], 1.0)
            per_segment = np.concatenate([per_segment[..., :-1], top[..., None]], axis=-1)
        return per_segment, scale

    def _cumulative(self) -> FloatArray:
        return self._cumulative_energy

    @functools.cached_property
    def _cumulative_energy(self) -> FloatArray:
        """∫ q² over whole segments, cumulated: shape (..., Q)."""
        per_segment, _ = self._segments()
        zeros = np.zeros((*per_segment.shape[:-1], 1))
        return np.concatenate([zeros, np.cumsum(per_segment, axis=-1)], axis=-1)

    def second_moment(self) -> FloatArray:
        return self._cumulative()[..., -1]

    def delta(self, rho: ArrayLike) -> FloatArray:
        index, fraction, q_lo, q_hi = self._segment(rho)
        cumulative = self._cumulative()
        batch = index.shape
        cum_b = np.broadcast_to(cumulative, (*batch, cumulative.shape[-1]))
        whole = np.take_along_axis(cum_b, index[..., None].astype(np.intp), axis=-1)[..., 0]
        width = 1.0 / (self._table().shape[-1] - 1)
        slope = q_hi - q_lo
        # ∫₀^{fw} (q_lo + slope·x/w)² dx for the partial segment
        part = width * (q_lo**2 * fraction + q_lo * slope * fraction**2
                        + slope**2 * fraction**3 / 3)
        top_scale = np.broadcast_to(self._segments()[1], batch)
        part = np.where(index == self._table().shape[-1] - 2, part * top_scale, part)
        return _as_float(whole + part)

    def magnitude_quantile(self, rho: ArrayLike) -> FloatArray:
        _, fraction, q_lo, q_hi = self._segment(rho)
        return _as_float(q_lo + fraction * (q_hi - q_lo))

    def delta_derivative(self, rho: ArrayLike) -> FloatArray:
        return self.magnitude_quantile(rho) ** 2

    def inverse_delta(self, distortion: ArrayLike) -> FloatArray:
        """Bisection on the increasing δ (vectorized; 60 halvings reach float precision)."""
        target = _as_float(distortion)
        shape = np.broadcast_shapes(target.shape, self._table().shape[:-1])
        lo, hi = np.zeros(shape), np.ones(shape)
        for _ in range(60):
            mid = (lo + hi) / 2
            below = self.delta(mid) < target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return (lo + hi) / 2


def magnitude_pruning_distortion(weights: ArrayLike, rho: ArrayLike) -> FloatArray:
    """Measured per-weight distortion of magnitude pruning a sample: (1/N)·Σ of the ⌊ρN⌋
    smallest w² (eq. 3.1). The reference every law is checked against. ρN is rounded to 9
    decimals before the floor, so ρ = k/N prunes exactly k weights."""
    rho_a = _as_float(rho)
    if np.any((rho_a < 0) | (rho_a > 1)) or np.any(np.isnan(rho_a)):
        bad = rho_a[(rho_a < 0) | (rho_a > 1) | np.isnan(rho_a)]
        raise ValueError(f"pruning ratios must lie in [0, 1], got {bad[:3]}")
    squares = np.sort(np.abs(_as_float(weights)).ravel()) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(squares)])
    count = np.floor(np.round(rho_a * squares.size, 9)).astype(np.intp)
    return _as_float(cumulative[count] / squares.size)


def magnitude_quantile_table(weights: ArrayLike, levels: int = 1001) -> FloatArray:
    """Quantiles of |w| at `levels` equally spaced levels in [0, 1] (for EmpiricalLaw)."""
    return _as_float(np.quantile(np.abs(_as_float(weights)).ravel(), np.linspace(0, 1, levels)))
