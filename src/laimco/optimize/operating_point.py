"""Transmit power and device frequency for chosen ratios: the least device energy that meets
the latency limit (docs/theory.md §4.5)."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from laimco.optimize.device_capacity import LN2, DevicePolicy
from laimco.optimize.problem import SplitProblem


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
    bandwidth = problem.channel.bandwidth_hz
    if bits == 0:
        freq = cycles / time_left if cycles > 0 else 0.0
        if policy == "max-frequency" and cycles > 0:
            freq = d.cpu_freq_max_hz
        return 0.0, min(freq, d.cpu_freq_max_hz)
    bits_per_hz = bits / bandwidth
    t_power = bits / (bandwidth * np.log1p(d.tx_power_max_w / w) / LN2)
    least_device_s = cycles / d.cpu_freq_max_hz
    t_freq_cap = time_left - least_device_s
    if policy == "max-power":
        t_c = t_power
    elif policy == "max-frequency" or cycles == 0:
        t_c = t_freq_cap
    else:
        kc3 = d.kappa * cycles**3

        def zeta(t: float) -> float:
            """ζ(t) = 2κC³/(T − t)³ + e'(t), e'(t) = w·[(2^{a/t} − 1) − (a·ln2/t)·2^{a/t}].
            T − t ≥ C/F on [t_P, T − C/F]; the floor keeps rounding (C/F far below the
            resolution of T) from dividing by zero."""
            y = bits_per_hz * LN2 / t
            device_s = max(time_left - t, least_device_s)
            return 2 * kc3 / device_s**3 + w * (math.expm1(y) - y * math.exp(y))

        # one scalar root: scipy's brentq on plain floats (≈ 0.05 ms; a numpy batch of one
        # element costs ten times that in call overhead). 1e-12 relative in t_c: the energy is
        # at its minimum there, so the error costs O(1e-24) relative energy, and t_d = T − t_c
        # keeps the latency exact
        if t_freq_cap <= t_power or zeta(t_power) >= 0:
            t_c = t_power
        elif zeta(t_freq_cap) <= 0:
            t_c = t_freq_cap
        else:
            t_c = brentq(zeta, t_power, t_freq_cap, xtol=1e-300, rtol=1e-12)
    t_c = min(max(t_c, t_power), t_freq_cap) if t_freq_cap >= t_power else t_power
    t_d = max(time_left - t_c, least_device_s)  # the floor: as in ζ, rounding of T − t_c
    power = float(w * np.expm1(bits / (bandwidth * t_c) * LN2))
    freq = cycles / t_d if cycles > 0 else 0.0
    if policy == "max-frequency" and cycles > 0:
        freq = d.cpu_freq_max_hz
    return min(power, d.tx_power_max_w), min(freq, d.cpu_freq_max_hz)
