"""The wireless uplink from device to edge server: a flat-fading AWGN link, the one place its
physics is written (the optimizer calls these functions on its arrays).

Notation (docs/theory.md §2.2): bandwidth B (Hz), noise power spectral density N₀ (W/Hz),
channel power gain g (linear; path loss × |h|²), transmit power p (W). The noise-to-gain
power w = N₀·B/g (W) appears everywhere, and so does the spectral efficiency η = r/B (bit/s/Hz).
The functions take w and the bits per hertz a = S/B as arrays, so a batch of splits and
channel realizations is one numpy call; they set no np.errstate (callers that reach a 0/0 or
an overflow on purpose do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from laimco.system.lambert_w import lambert_w0, lambert_w_minus1

FloatArray = NDArray[np.float64]
LN2 = float(np.log(2.0))
# c = E·B/(w·S) must exceed ln 2 by this (relative) for a finite upload to fit the energy:
# at c → ln 2 the Lambert-W branch point makes η lose all its digits (eq. 2.11)
_EFFICIENCY_MARGIN = 1e-12


def spectral_efficiency(power_w: ArrayLike, noise_to_gain_w: ArrayLike) -> FloatArray:
    """η = log₂(1 + p/w) bit/s/Hz (eq. 2.4)."""
    return np.asarray(np.log1p(np.asarray(power_w) / noise_to_gain_w) / LN2, dtype=np.float64)


def power_for_efficiency_w(efficiency: ArrayLike, noise_to_gain_w: ArrayLike) -> FloatArray:
    """p = w·(2^η − 1): the power that reaches spectral efficiency η (eq. 2.5)."""
    return np.asarray(noise_to_gain_w * np.expm1(np.asarray(efficiency) * LN2),
                      dtype=np.float64)


def upload_energy_and_slope(time_s: ArrayLike, noise_to_gain_w: ArrayLike,
                            bits_ln2: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """e(t) = w·t·(2^{a/t} − 1) and −e'(t) = w·[(a·ln2/t)·2^{a/t} − (2^{a/t} − 1)] > 0
    (eq. 2.6, 4.6) from one exponential, for bits_ln2 = a·ln2, a = S/B. With w = 0 where
    nothing is sent (and any t > 0 there) both are 0."""
    t = np.asarray(time_s, dtype=np.float64)
    w = np.asarray(noise_to_gain_w, dtype=np.float64)
    y = np.asarray(bits_ln2, dtype=np.float64) / t
    grow = np.expm1(y)
    return w * t * grow, w * (y * (grow + 1) - grow)


def upload_energy_slope_w(time_s: float, noise_to_gain_w: float, bits_ln2: float) -> float:
    """−e'(t) of `upload_energy_and_slope` on plain floats, for scalar root finders: a numpy
    call on one element costs several times this arithmetic (docs/theory.md §4.4)."""
    y = bits_ln2 / time_s
    grow = math.expm1(y)
    return noise_to_gain_w * (y * (grow + 1) - grow)


def max_efficiency_for_energy(energy_per_noise_bit: ArrayLike) -> FloatArray:
    """The largest spectral efficiency η whose upload costs at most the energy: the root of
    (2^η − 1)/η = c with c = E·B/(w·S), in closed form with the lower branch of the Lambert W
    function (eq. 2.11). 0 where c ≤ ln 2 (no finite upload time fits the energy) or c is
    not finite."""
    c = np.asarray(energy_per_noise_bit, dtype=np.float64)
    ok = np.isfinite(c) & (c > LN2 * (1 + _EFFICIENCY_MARGIN))
    c_ok = np.where(ok, c, 2.0)
    y = -(c_ok / LN2) * lambert_w_minus1(-(LN2 / c_ok) * np.exp(-LN2 / c_ok))
    return np.asarray(np.where(ok, (y - 1) / c_ok, 0.0), dtype=np.float64)


def upload_time_for_slope_s(bits_per_hz: FloatArray, noise_to_gain_w: FloatArray,
                            neg_slope_w: ArrayLike) -> FloatArray:
    """The upload time τ at which the upload energy falls at the rate −e'(τ) = c (in W), for
    c ≥ 0; −e' is decreasing, so later uploads fall slower. With x = a·ln2/τ,
    −e' = w·(1 + (x−1)e^x), so x = 1 + W₀((c/w − 1)/e) (eq. 4.15); τ = ∞ for c = 0, and 0
    where nothing is sent."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        arg = (np.asarray(neg_slope_w) / noise_to_gain_w - 1) / np.e
        # c = 0 sits on W's branch point −1/e: x = 0 there (τ = ∞)
        x = np.where(arg > -1 / np.e,
                     1 + lambert_w0(np.maximum(arg, -1 / np.e)), 0.0)
        return np.asarray(np.where(bits_per_hz > 0, bits_per_hz * LN2 / x, 0.0),
                          dtype=np.float64)


@dataclass(frozen=True)
class Channel:
    """Uplink channel. `path_gain` is the mean power gain ḡ; under Rayleigh fading the gain of
    one realization is ḡ·|h|² with |h|² ~ Exp(1) (eq. 2.8), and the ε-outage gain is
    g_ε = −ḡ·ln(1−ε) (eq. 2.9)."""

    bandwidth_hz: float
    noise_psd_w_per_hz: float
    path_gain: float
    fading: str = "none"
    outage_prob: float | None = None

    def noise_to_gain_w(self, gain: ArrayLike) -> FloatArray:
        """w = N₀·B/g: the transmit power that gives SNR 1 (eq. 2.4)."""
        return self.noise_psd_w_per_hz * self.bandwidth_hz / np.asarray(gain, dtype=np.float64)

    def design_gain(self) -> float:
        """The gain a decision is designed for: ḡ without fading, g_ε under Rayleigh fading."""
        if self.fading == "rayleigh":
            if self.outage_prob is None:
                raise ValueError("Rayleigh fading needs channel.outage_prob")
            return float(-self.path_gain * np.log1p(-self.outage_prob))
        return self.path_gain

    def sample_gains(self, n: int, rng: np.random.Generator) -> FloatArray:
        """n Rayleigh-fading power gains ḡ·|h|², |h|² ~ Exp(1) (eq. 2.8)."""
        return self.path_gain * rng.exponential(1.0, size=n)

    def rate_bps(self, power_w: ArrayLike, gain: ArrayLike) -> FloatArray:
        """Shannon rate r = B·log₂(1 + p·g/(N₀B)) (eq. 2.4)."""
        return self.bandwidth_hz * spectral_efficiency(power_w, self.noise_to_gain_w(gain))

    def upload_time_s(self, bits: ArrayLike, power_w: ArrayLike, gain: ArrayLike) -> FloatArray:
        """t_c = S / r(p); zero when nothing is sent."""
        bits_a = np.asarray(bits, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(bits_a > 0, bits_a / self.rate_bps(power_w, gain), 0.0)

    def power_for_time_w(self, bits: ArrayLike, time_s: ArrayLike, gain: ArrayLike) -> FloatArray:
        """The power that sends `bits` in `time_s`: p = w·(2^{S/(B·t)} − 1) (eq. 2.5); zero
        when nothing is sent."""
        bits_a = np.asarray(bits, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            efficiency = np.where(bits_a > 0, bits_a / (self.bandwidth_hz * np.asarray(time_s)), 0)
            return power_for_efficiency_w(efficiency, self.noise_to_gain_w(gain))

    def upload_energy_j(self, bits: ArrayLike, time_s: ArrayLike, gain: ArrayLike) -> FloatArray:
        """e_c(t) = p·t = w·t·(2^{S/(B·t)} − 1), convex and decreasing in t (eq. 2.6)."""
        bits_a = np.asarray(bits, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            energy, _ = upload_energy_and_slope(
                np.where(bits_a > 0, np.asarray(time_s, dtype=np.float64), 1.0),
                np.where(bits_a > 0, self.noise_to_gain_w(gain), 0.0),
                bits_a / self.bandwidth_hz * LN2)
        return np.asarray(np.where(bits_a > 0, energy, 0.0), dtype=np.float64)

    def max_efficiency_for_energy(self, bits: ArrayLike, energy_j: ArrayLike,
                                  gain: ArrayLike) -> FloatArray:
        """Largest spectral efficiency η (bit/s/Hz) whose upload of `bits` costs at most
        `energy_j` (eq. 2.11); 0 where no finite upload time fits the energy."""
        with np.errstate(divide="ignore", invalid="ignore"):
            c = (np.asarray(energy_j) * self.bandwidth_hz
                 / (self.noise_to_gain_w(gain) * np.asarray(bits, dtype=np.float64)))
        return max_efficiency_for_energy(c)
