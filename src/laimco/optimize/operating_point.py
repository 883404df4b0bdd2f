"""Transmit power and device frequency for chosen ratios: the least device energy that meets
the latency limit (docs/theory.md §4.5)."""

from __future__ import annotations

from scipy.optimize import brentq

from laimco.optimize.device_capacity import DevicePolicy
from laimco.optimize.problem import SplitProblem
from laimco.optimize.tolerances import OPERATING_POINT_REL_TOL
from laimco.system.channel import (
    LN2,
    power_for_efficiency_w,
    spectral_efficiency,
    upload_energy_slope_w,
)


def operating_point(problem: SplitProblem, split: int, rho_device: float, rho_server: float,
                    gain: float, policy: DevicePolicy = "free") -> tuple[float, float]:
    """(power_w, freq_device_hz) for the decision.

    With C device cycles and T = T' − t_s for device and upload, minimize
    κC³/t_d² + e(t_c) over t_d + t_c = T, t_d ≥ C/F, t_c ≥ t_P: the root of the increasing
    ζ(t_c) = 2κC³/(T − t_c)³ + e'(t_c) (eq. 4.13). "max-power" fixes t_c = t_P, "max-frequency"
    fixes t_d = C/F.
    """
    s = int(split)
    d = problem.device
    cycles = float(problem.device_cycles(rho_device)[s])
    time_left = problem.time_budget_s - float(problem.server_time_s(rho_server)[s])
    bits = float(problem.upload_bits[s])
    w = float(problem.channel.noise_to_gain_w(gain))
    if bits == 0:
        freq = cycles / time_left if cycles > 0 else 0.0
        if policy == "max-frequency" and cycles > 0:
            freq = d.cpu_freq_max_hz
        return 0.0, min(freq, d.cpu_freq_max_hz)
    bits_per_hz = bits / problem.channel.bandwidth_hz
    bits_ln2 = bits_per_hz * LN2
    t_power = bits_per_hz / float(spectral_efficiency(d.tx_power_max_w, w))
    least_device_s = cycles / d.cpu_freq_max_hz
    t_freq_cap = time_left - least_device_s
    if policy == "max-power":
        t_c = t_power
    elif policy == "max-frequency" or cycles == 0:
        t_c = t_freq_cap
    else:
        kc3 = d.kappa * cycles**3

        def zeta(t: float) -> float:
            """ζ(t) = 2κC³/(T − t)³ + e'(t) (eq. 4.13), e' from the channel (eq. 4.6).
            T − t ≥ C/F on [t_P, T − C/F]; the floor keeps rounding (C/F far below the
            resolution of T) from dividing by zero."""
            device_s = max(time_left - t, least_device_s)
            return 2 * kc3 / device_s**3 - upload_energy_slope_w(t, w, bits_ln2)

        # one scalar root: scipy's brentq on floats (a vectorized search over a batch of one
        # element costs ten times that in call overhead); the tolerance is in tolerances.py,
        # and t_d = T − t_c keeps the latency exact
        if t_freq_cap <= t_power or zeta(t_power) >= 0:
            t_c = t_power
        elif zeta(t_freq_cap) <= 0:
            t_c = t_freq_cap
        else:
            t_c = brentq(zeta, t_power, t_freq_cap, xtol=1e-300, rtol=OPERATING_POINT_REL_TOL)
    t_c = min(max(t_c, t_power), t_freq_cap) if t_freq_cap >= t_power else t_power
    t_d = max(time_left - t_c, least_device_s)  # the floor: as in ζ, rounding of T − t_c
    power = float(power_for_efficiency_w(bits_per_hz / t_c, w))
    freq = cycles / t_d if cycles > 0 else 0.0
    if policy == "max-frequency" and cycles > 0:
        freq = d.cpu_freq_max_hz
    return min(power, d.tx_power_max_w), min(freq, d.cpu_freq_max_hz)
