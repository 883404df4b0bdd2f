"""The wireless uplink from device to edge server: a flat-fading AWGN link.

Notation (docs/theory.md §2.2): bandwidth B (Hz), noise power spectral density N₀ (W/Hz),
channel power gain g (linear; path loss × |h|²), transmit power p (W). The noise-to-gain
power w = N₀·B/g (W) appears everywhere, and so does the spectral efficiency η = r/B (bit/s/Hz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

FloatArray = NDArray[np.float64]
LN2 = float(np.log(2.0))


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
        snr = np.asarray(power_w, dtype=np.float64) / self.noise_to_gain_w(gain)
        return self.bandwidth_hz * np.log1p(snr) / LN2

    def power_for_time_w(self, bits: ArrayLike, time_s: ArrayLike, gain: ArrayLike) -> FloatArray:
        """The power that sends `bits` in `time_s`: p = w·(2^{S/(B·t)} − 1) (eq. 2.5)."""
        bits_a = np.asarray(bits, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            efficiency = np.where(bits_a > 0, bits_a / (self.bandwidth_hz * np.asarray(time_s)), 0)
            return np.asarray(self.noise_to_gain_w(gain) * np.expm1(efficiency * LN2),
                              dtype=np.float64)

    def upload_time_s(self, bits: ArrayLike, power_w: ArrayLike, gain: ArrayLike) -> FloatArray:
        """t_c = S / r(p); zero when nothing is sent."""
        bits_a = np.asarray(bits, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(bits_a > 0, bits_a / self.rate_bps(power_w, gain), 0.0)

    def upload_energy_j(self, bits: ArrayLike, time_s: ArrayLike, gain: ArrayLike) -> FloatArray:
        """e_c(t) = p·t = w·t·(2^{S/(B·t)} − 1), convex and decreasing in t (eq. 2.6)."""
        bits_a = np.asarray(bits, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            energy = self.power_for_time_w(bits, time_s, gain) * np.asarray(time_s)
        return np.where(bits_a > 0, energy, 0.0)

    def upload_energy_floor_j(self, bits: ArrayLike, gain: ArrayLike) -> FloatArray:
        """inf_t e_c(t) = w·(S/B)·ln 2, approached as t → ∞ (eq. 2.10)."""
        return np.asarray(self.noise_to_gain_w(gain) * np.asarray(bits) / self.bandwidth_hz
                          * LN2, dtype=np.float64)

    def max_efficiency_for_energy(self, bits: ArrayLike, energy_j: ArrayLike,
                                  gain: ArrayLike) -> FloatArray:
        """Largest spectral efficiency η (bit/s/Hz) whose upload of `bits` costs at most
        `energy_j`: the root of (2^η − 1)/η = c, c = E·B/(w·S), in closed form with the
        lower branch of the Lambert W function (eq. 2.11). Returns 0 where c ≤ ln 2: then no
        finite upload time fits the energy."""
        bits_a = np.asarray(bits, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.asarray(energy_j) * self.bandwidth_hz / (self.noise_to_gain_w(gain) * bits_a)
            ok = c > LN2 * (1 + 1e-12)
            c_ok = np.where(ok, c, 2.0)
            x = -(LN2 / c_ok) * np.exp(-LN2 / c_ok)
            y = -(c_ok / LN2) * special.lambertw(x, k=-1).real
            eta = (y - 1) / c_ok
        return np.where(ok, eta, 0.0)
