"""How many CPU cycles the device can run before the cut, given what is left of the latency
and energy budgets after the server's share (docs/theory.md §4.2).

The device must compute C cycles in t_d and upload S bits in t_c with t_d + t_c ≤ T and
κC³/t_d² + e_c(t_c) ≤ E, f_d = C/t_d ≤ F, p(t_c) ≤ P. The largest feasible C, C*(T), is a
concave non-decreasing function of T (eq. 4.5); its derivative dC*/dT is what the outer
problem needs (eq. 4.8). Three policies:

- "free": power and frequency both chosen (the joint design);
- "max-power": p = P fixed;
- "max-frequency": f_d = F fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from laimco.optimize.roots import increasing_root

FloatArray = NDArray[np.float64]
DevicePolicy = Literal["free", "max-power", "max-frequency"]
LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class UplinkEnergy:
    """e(t) = w·t·(2^{a/t} − 1), a = S/B, and its slope e'(t) (eq. 2.6, 4.6)."""

    noise_to_gain_w: FloatArray
    bits_per_hz: FloatArray

    def energy(self, t: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(self.bits_per_hz > 0,
                            self.noise_to_gain_w * t * np.expm1(self.bits_per_hz * LN2 / t), 0.0)

    def slope(self, t: FloatArray) -> FloatArray:
        """e'(t) = w·[(2^{a/t} − 1) − (a ln2/t)·2^{a/t}] < 0."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x = self.bits_per_hz * LN2 / t
            return np.where(self.bits_per_hz > 0,
                            self.noise_to_gain_w * (np.expm1(x) - x * np.exp(x)), 0.0)


@dataclass(frozen=True)
class DeviceCapacity:
    """C*(T), the upload time t_c that attains it, and dC*/dT; C* = −inf where infeasible."""

    cycles: FloatArray
    upload_time_s: FloatArray
    slope_cycles_per_s: FloatArray


def shortest_upload_time_s(
    upload_bits: FloatArray,
    bandwidth_hz: float,
    noise_to_gain_w: FloatArray,
    tx_power_max_w: float,
    energy_j: FloatArray,
) -> FloatArray:
    """t_lo = S/(B·η_max): the shortest upload time the power cap and the whole energy budget
    allow (eq. 4.4); 0 when nothing is sent, inf when no upload fits the energy."""
    eta_power = np.log1p(tx_power_max_w / noise_to_gain_w) / LN2
    with np.errstate(divide="ignore", invalid="ignore"):
        c = energy_j * bandwidth_hz / (noise_to_gain_w * upload_bits)
    ok = np.isfinite(c) & (c > LN2 * (1 + 1e-12))
    c_ok = np.where(ok, c, 2.0)
    from scipy.special import lambertw  # local: keeps this module's import cheap

    x = -(LN2 / c_ok) * np.exp(-LN2 / c_ok)
    y = -(c_ok / LN2) * lambertw(x, k=-1).real
    eta_energy = np.where(ok, (y - 1) / c_ok, 0.0)
    eta = np.minimum(eta_power, eta_energy)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lo = np.where(eta > 0, upload_bits / (bandwidth_hz * eta), np.inf)
    return np.where(upload_bits > 0, t_lo, 0.0)


def device_capacity(
    time_s: FloatArray,
    energy_j: FloatArray,
    upload_bits: FloatArray,
    *,
    bandwidth_hz: float,
    noise_to_gain_w: FloatArray,
    tx_power_max_w: float,
    kappa: float,
    cpu_freq_max_hz: float,
    policy: DevicePolicy = "free",
) -> DeviceCapacity:
    """C*(T) for every element of the broadcast inputs (docs/theory.md §4.2)."""
    T, E, S, w = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                       for v in (time_s, energy_j, upload_bits, noise_to_gain_w)))
    F, kap = cpu_freq_max_hz, kappa
    t_lo = shortest_upload_time_s(S, bandwidth_hz, w, tx_power_max_w, E)
    if policy == "max-power":
        # p = P whatever the energy: the upload takes S/r(P) and must still fit E
        eta_p = np.log1p(tx_power_max_w / w) / LN2
        t_lo = np.where(S > 0, S / (bandwidth_hz * eta_p), 0.0)
    feasible = (T >= t_lo) & (T >= 0)
    # neutralize infeasible elements so the arithmetic below stays finite
    T = np.where(feasible, T, 1.0)
    t_lo = np.where(feasible, t_lo, 0.0)
    uplink = UplinkEnergy(w, S / bandwidth_hz)
    sends = S > 0

    if policy == "max-frequency":
        cycles, t_c, slope = _capacity_at_max_frequency(T, E, t_lo, uplink, kap, F)
    else:
        cycles, t_c, slope = _capacity_free(T, E, t_lo, uplink, kap, F, sends,
                                            fixed_upload=(policy == "max-power"))
    energy_ok = uplink.energy(t_c) <= E * (1 + 1e-12)
    ok = feasible & energy_ok & (cycles >= 0)
    return DeviceCapacity(
        cycles=np.where(ok, cycles, -np.inf),
        upload_time_s=np.where(ok, t_c, np.nan),
        slope_cycles_per_s=np.where(ok, slope, 0.0),
    )


def _capacity_free(T: FloatArray, E: FloatArray, t_lo: FloatArray, uplink: UplinkEnergy,
                   kap: float, F: float, sends: FloatArray,
                   fixed_upload: bool) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Energy-limited optimum t* (root of ψ, eq. 4.6), then the frequency cap (root of χ)."""

    def psi(t: FloatArray) -> FloatArray:
        return 2 * (E - uplink.energy(t)) + uplink.slope(t) * (T - t)

    if fixed_upload:
        t_star = t_lo
    else:
        lo = np.where(sends, t_lo, T)
        t_star = increasing_root(psi, lo, T.copy())
    t_star = np.where(sends, t_star, 0.0)
    left = np.maximum(E - uplink.energy(t_star), 0.0)
    t_d = np.maximum(T - t_star, 0.0)
    c_energy = np.cbrt(left * t_d**2 / kap)
    capped = F * t_d < c_energy

    def chi_negated(t: FloatArray) -> FloatArray:
        return (E - uplink.energy(t)) - kap * F**3 * (T - t)

    needs_crossing = capped & sends & (chi_negated(t_lo) < 0)
    lo = np.where(needs_crossing, t_lo, t_star)
    t_cross = increasing_root(chi_negated, lo, t_star.copy())
    t_c = np.where(capped & sends, np.where(needs_crossing, t_cross, t_lo), t_star)
    cycles = np.where(capped, F * (T - t_c), c_energy)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope_energy = np.where(t_d > 0, 2 * c_energy / (3 * t_d), F)
        e_slope = uplink.slope(t_c)
        slope_cross = F * (-e_slope) / (kap * F**3 - e_slope)
    slope = np.where(capped, np.where(needs_crossing, slope_cross, F), slope_energy)
    return cycles, t_c, slope


def _capacity_at_max_frequency(T: FloatArray, E: FloatArray, t_lo: FloatArray,
                               uplink: UplinkEnergy, kap: float,
                               F: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """f_d = F: C* is the root of κCF² + e(T − C/F) = E on [0, F(T − t_lo)] (eq. 4.9)."""
    c_hi = F * np.maximum(T - t_lo, 0.0)

    def excess(c: FloatArray) -> FloatArray:
        return kap * c * F**2 + uplink.energy(T - c / F) - E

    fits_whole = excess(c_hi) <= 0
    # excess is increasing in C; search u = C_hi − C so the returned side satisfies excess ≤ 0
    u_root = increasing_root(lambda u: -excess(c_hi - u), np.zeros_like(c_hi), c_hi.copy())
    cycles = np.where(fits_whole, c_hi, c_hi - u_root)
    cycles = np.where(excess(np.zeros_like(c_hi)) > 0, -1.0, cycles)
    t_c = np.where(uplink.bits_per_hz > 0, T - cycles / F, 0.0)
    e_slope = uplink.slope(t_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope_root = -e_slope / (kap * F**2 - e_slope / F)
    slope = np.where(fits_whole, F, slope_root)
    return cycles, t_c, slope
