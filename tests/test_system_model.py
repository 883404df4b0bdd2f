"""The physical blocks (device, channel, server) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from laimco.optimize.device_capacity import shortest_upload_time_s
from laimco.system import Channel, Device, Server

CHANNEL = Channel(bandwidth_hz=2e6, noise_psd_w_per_hz=3.98e-21, path_gain=1e-7)


def test_rate_is_shannon_capacity_in_bits() -> None:
    snr = 0.2 * 1e-7 / (3.98e-21 * 2e6)
    assert CHANNEL.rate_bps(0.2, 1e-7) == pytest.approx(2e6 * np.log2(1 + snr), rel=1e-14)


@settings(max_examples=200, deadline=None)
@given(bits=st.floats(1e3, 1e8), time_s=st.floats(1e-4, 10.0), log_gain=st.floats(-13, -5))
def test_power_for_time_sends_exactly_the_bits(bits: float, time_s: float,
                                               log_gain: float) -> None:
    gain = 10.0**log_gain
    power = CHANNEL.power_for_time_w(bits, time_s, gain)
    if not np.isfinite(power) or power > 1e30:
        return
    assert CHANNEL.rate_bps(power, gain) * time_s == pytest.approx(bits, rel=1e-9)
    assert CHANNEL.upload_energy_j(bits, time_s, gain) == pytest.approx(power * time_s)


def test_upload_energy_falls_to_its_floor() -> None:
    bits, gain = 1.6e6, 1e-7
    times = np.geomspace(1e-3, 1e4, 200)
    energy = CHANNEL.upload_energy_j(bits, times, gain)
    assert np.all(np.diff(energy) < 0)
    floor = CHANNEL.noise_to_gain_w(gain) * bits / CHANNEL.bandwidth_hz * np.log(2)  # eq. 2.10
    assert energy[-1] == pytest.approx(floor, rel=1e-4)


@settings(max_examples=200, deadline=None)
@given(bits=st.floats(1e3, 1e7), energy=st.floats(1e-6, 1.0), log_gain=st.floats(-12, -6))
def test_lambert_w_efficiency_matches_brentq(bits: float, energy: float,
                                             log_gain: float) -> None:
    """eq. (2.11): the closed form vs a numerical root of e_c(S/(Bη)) = E."""
    gain = 10.0**log_gain
    eta = CHANNEL.max_efficiency_for_energy(bits, energy, gain)
    floor = CHANNEL.noise_to_gain_w(gain) * bits / CHANNEL.bandwidth_hz * np.log(2)  # eq. 2.10
    if energy <= floor * (1 + 1e-9):
        assert eta == 0.0
        return

    def excess(e: float) -> float:
        return float(CHANNEL.upload_energy_j(bits, bits / (CHANNEL.bandwidth_hz * e), gain)
                     - energy)

    upper = 1.0
    while excess(upper) < 0:
        upper *= 2
    reference = brentq(excess, 1e-12, upper, xtol=1e-14, rtol=1e-13)
    assert eta == pytest.approx(reference, rel=1e-8)


@settings(max_examples=200, deadline=None)
@given(time_s=st.floats(1e-4, 10.0), log_w=st.floats(-15, -3), y=st.floats(0.0, 50.0))
def test_scalar_upload_energy_slope_is_the_vectorized_one(time_s: float, log_w: float,
                                                         y: float) -> None:
    """The operating point's scalar −e'(t) and the capacity curve's vectorized one agree, and
    both match −d/dt of e(t) = w·t·(2^{a/t} − 1) by a central difference (eq. 2.6), for
    a·ln2/t = y up to 50 (the power cap keeps it far below: y = ln(1 + P/w) at t_P)."""
    from laimco.system.channel import upload_energy_and_slope, upload_energy_slope_w

    w, bits_ln2 = 10.0**log_w, y * time_s
    energy, neg_slope = upload_energy_and_slope(np.array([time_s]), w, bits_ln2)
    assert upload_energy_slope_w(time_s, w, bits_ln2) == pytest.approx(neg_slope[0], rel=1e-12)
    h = 1e-6 * time_s
    e = [w * t * np.expm1(bits_ln2 / t) for t in (time_s - h, time_s + h)]
    assert neg_slope[0] == pytest.approx((e[0] - e[1]) / (2 * h), rel=1e-5, abs=1e-12 * w)
    assert energy[0] == pytest.approx(w * time_s * np.expm1(bits_ln2 / time_s), rel=1e-12)


def test_shortest_upload_time_respects_power_and_energy() -> None:
    bits, gain = np.array([1.6e6, 1.6e6, 0.0]), 1e-7
    w = CHANNEL.noise_to_gain_w(gain)
    t = shortest_upload_time_s(bits, CHANNEL.bandwidth_hz, w, 0.2, np.array([10.0, 1e-4, 1.0]))
    # ample energy: the power cap decides
    assert t[0] == pytest.approx(bits[0] / CHANNEL.rate_bps(0.2, gain), rel=1e-12)
    # scarce energy: the upload uses exactly the budget, at a power below the cap
    assert CHANNEL.upload_energy_j(bits[1], t[1], gain) == pytest.approx(1e-4, rel=1e-9)
    assert CHANNEL.power_for_time_w(bits[1], t[1], gain) < 0.2
    assert t[2] == 0.0


def test_rayleigh_outage_gain_has_the_stated_outage_probability() -> None:
    """eq. (2.9) against Monte Carlo."""
    channel = Channel(2e6, 3.98e-21, 1e-7, fading="rayleigh", outage_prob=0.1)
    gains = channel.sample_gains(400_000, np.random.default_rng(7))
    outage = np.mean(gains < channel.design_gain())
    assert outage == pytest.approx(0.1, abs=4 * np.sqrt(0.1 * 0.9 / gains.size))
    assert gains.mean() == pytest.approx(1e-7, rel=0.01)


def test_device_energy_is_kappa_cycles_f_squared() -> None:
    device = Device(2e9, 8.0, 1e-28, 0.2, 1.0)
    cycles = device.cycles(8e8)
    assert cycles == pytest.approx(1e8)
    assert device.compute_latency_s(cycles, 1e9) == pytest.approx(0.1)
    assert device.compute_energy_j(cycles, 1e9) == pytest.approx(1e-28 * 1e8 * 1e18)
    assert Server(3e9, 64.0).compute_latency_s(Server(3e9, 64.0).cycles(6.4e10), 1e9) == \
        pytest.approx(1.0)


def test_no_downlink_is_charged_when_the_whole_model_runs_on_the_device() -> None:
    """eq. 2.13: at split L nothing comes back. On the laptop with a downlink that alone would
    break the budget of the on-device decision, on-device stays feasible and its latency sums
    to the budget without the downlink; at an interior split the downlink is charged."""
    from pathlib import Path

    from laimco.config import load_scenario
    from laimco.optimize import StrategyOptions, solve

    root = Path(__file__).resolve().parents[1]
    base = load_scenario(root / "scenarios" / "paper-minilm-laptop.toml")
    alone = solve(base, "on-device")
    assert alone.success and alone.point.split == 8
    budget = base.task.latency_budget_s
    slow = base.replace(task={"downlink_s": 0.5 * budget})
    on_device = solve(slow, "on-device")
    assert on_device.success and on_device.point.costs.latency_downlink_s == 0.0
    assert on_device.point.objective == pytest.approx(alone.point.objective, rel=1e-9)
    interior = solve(slow, "fixed-split", options=StrategyOptions(split=4))
    if interior.success:
        assert interior.point.costs.latency_downlink_s == pytest.approx(0.5 * budget)
        assert interior.point.costs.latency_total_s <= budget * (1 + 1e-9)
