"""The JSON contract of `laimco optimize --json` (README "JSON contract") on every shipped
scenario and every fast strategy: the keys, their order and types, and — for an optimal
decision — numbers that meet the scenario's limits when recomputed here from the system
physics (laimco.system: Device, Server, Channel; eqs. 2.1–2.13) and the profile's measured
numbers (eq. 5.4), not through the optimizer's own cost evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from laimco.cli import app
from laimco.config import Scenario, load_scenario
from laimco.optimize import STRATEGIES
from laimco.profile import ModelProfile, load_profile

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "src" / "laimco" / "examples" / "scenarios").glob("*.toml"))
FAST = [name for name, spec in STRATEGIES.items() if not spec.generic]
KEYS = ["status", "strategy", "split", "rule_device", "rule_server", "rho_device",
        "rho_server", "power_w", "freq_device_hz", "freq_server_hz", "activation_bits", "coding",
        "uplink_bits", "latency_s", "energy_j", "memory_bytes", "objective", "binding",
        "solve_time_s"]
NUMBERS = ["rho_device", "rho_server", "power_w", "freq_device_hz", "freq_server_hz",
           "memory_bytes", "objective"]
LIMITS = {"latency", "energy", "tx_power", "cpu_freq_device", "cpu_freq_server", "memory",
          "rho_max_device", "rho_max_server", "privacy"}
REL = 1e-9  # a recomputed cost may differ from the decision's by rounding only


def _side_cycles(profile: ModelProfile, split: int, units: np.ndarray, side: str,
                 rule: str | None, rho: float, paper: bool, flops_per_cycle: float) -> float:
    """Cycles of the units of one side: paper mode F_fixed + (1 − ρ)·F_prunable (eq. 2.1);
    calibrated mode the dense cycles scaled by the part's time at ρ over its dense time T(s),
    (1 − ρ)·A(s) + max(T(s) + B(s) − A(s), 0) with A = Σ τ_u·a_u, B = Σ τ_u·(b_u − 1) over the
    side's units (eq. 5.4); a side without a rule runs dense."""
    prunable = float(np.array([u.flops_prunable for u in profile.units])[units].sum())
    fixed = float(np.array([u.flops_fixed for u in profile.units])[units].sum())
    if paper:
        return (fixed + (1 - rho) * prunable) / flops_per_cycle
    dense = (fixed + prunable) / flops_per_cycle
    if rule is None or dense == 0:
        return dense
    times = profile.execution
    assert times is not None
    part = (times.device_part_time_s if side == "device" else times.server_part_time_s)[split]
    tau = times.unit_time_s[units]
    a = float((tau * profile.rules[rule].execution_slope[units]).sum())
    b = float((tau * (profile.rules[rule].execution_intercept[units] - 1)).sum())
    return dense * ((1 - rho) * a + max(part + b - a, 0.0)) / part


def _upload_bits(profile: ModelProfile, split: int, activation_bits: int | None,
                 coding: str) -> float:
    """What crosses the link, written out from docs/theory.md §6.1: the raw input at s = 0,
    nothing at s = L; else seq_len rows of H values at b bits, each row padded to whole bytes,
    plus one float32 scale per row for the integer widths (×the measured zstd ratio), plus
    the attention mask as the profile counts it (its out_bits beyond the float32 rows)."""
    n = profile.n_units
    if split == 0:
        return profile.input_bits
    if split == n:
        return 0.0
    assert activation_bits is not None
    if activation_bits == 32 and coding == "none":
        return profile.units[split - 1].out_bits
    assert profile.uplink is not None and profile.seq_len is not None
    hidden = int(profile.uplink.hidden[split])
    mask_bits = profile.units[split - 1].out_bits - profile.seq_len * hidden * 32
    row_bits = 8 * math.ceil(hidden * activation_bits / 8)
    scale_bits = 32 if activation_bits <= 8 else 0
    bits = profile.seq_len * (row_bits + scale_bits)
    if coding == "zstd":
        bits *= profile.uplink.coded_ratio(activation_bits)[split]
    return float(bits + mask_bits)


def _recomputed(sc: Scenario, profile: ModelProfile, d: dict) -> dict[str, float]:
    """Latency parts (s), energy parts (J) and every limit's usage from laimco.system and the
    profile's measured numbers alone."""
    device, server, channel = (sc.device.to_device(), sc.server.to_server(),
                               sc.channel.to_channel())
    s, n = d["split"], profile.n_units
    paper = sc.distortion.mode == "paper"
    on_device = np.arange(n) < s
    cycles_d = _side_cycles(profile, s, on_device, "device", d["rule_device"], d["rho_device"],
                            paper, device.flops_per_cycle)
    cycles_s = _side_cycles(profile, s, ~on_device, "server", d["rule_server"], d["rho_server"],
                            paper, server.flops_per_cycle)
    bits = _upload_bits(profile, s, d["activation_bits"], d["coding"])
    t_d = float(device.compute_latency_s(cycles_d, d["freq_device_hz"]))
    t_s = float(server.compute_latency_s(cycles_s, d["freq_server_hz"]))
    t_c = float(bits / channel.rate_bps(d["power_w"], channel.design_gain())) if bits else 0.0
    t_dl = sc.task.downlink_s if s < n else 0.0
    e_d = float(device.compute_energy_j(cycles_d, d["freq_device_hz"]))
    e_c = d["power_w"] * t_c
    out = {"device": t_d, "uplink": t_c, "server": t_s, "downlink": t_dl,
           "compute": e_d, "uplink_energy": e_c,
           "latency": (t_d + t_c + t_s + t_dl) / sc.task.latency_budget_s,
           "energy": (e_d + e_c) / sc.device.energy_budget_j,
           "tx_power": d["power_w"] / sc.device.tx_power_max_w,
           "cpu_freq_device": d["freq_device_hz"] / sc.device.cpu_freq_max_hz,
           "cpu_freq_server": d["freq_server_hz"] / sc.server.cpu_freq_max_hz}
    if sc.device.memory_bytes is not None:
        out["memory"] = d["memory_bytes"] / sc.device.memory_bytes
    return out


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_optimize_json_keeps_its_contract_and_meets_every_limit(path: Path) -> None:
    sc = load_scenario(path)
    profile = load_profile(sc.model.profile)
    runner = CliRunner()
    for strategy in FAST:
        result = runner.invoke(app, ["optimize", str(path), "--strategy", strategy, "--json"])
        assert result.exit_code == 0, result.output
        d = json.loads(result.output)
        keys = KEYS if d["status"] == "optimal" else [*KEYS[:-1], "reasons", KEYS[-1]]
        assert list(d) == keys, (strategy, list(d))
        assert d["strategy"] == strategy and d["solve_time_s"] >= 0
        if d["status"] == "infeasible":
            assert all(d[k] is None for k in KEYS[2:17]) and d["binding"] == []
            assert d["reasons"] and all(isinstance(r, str) and r for r in d["reasons"])
            continue
        assert d["status"] == "optimal"
        assert all(isinstance(d[k], float) and math.isfinite(d[k]) for k in NUMBERS)
        assert isinstance(d["split"], int) and sc.task.min_split <= d["split"] <= profile.n_units
        assert 0 <= d["rho_device"] <= sc.task.rho_max and 0 <= d["rho_server"] <= sc.task.rho_max
        assert set(d["binding"]) <= LIMITS
        lat, en = d["latency_s"], d["energy_j"]
        assert list(lat) == ["device", "uplink", "server", "downlink", "total"]
        assert list(en) == ["compute", "uplink", "total"]
        ref = _recomputed(sc, profile, d)
        assert d["uplink_bits"] == pytest.approx(
            _upload_bits(profile, d["split"], d["activation_bits"], d["coding"]), rel=1e-12)
        crosses = 0 < d["split"] < profile.n_units
        assert (d["activation_bits"] is not None) == crosses
        for part in ("device", "uplink", "server", "downlink"):
            assert lat[part] == pytest.approx(ref[part], rel=REL, abs=1e-15), (strategy, part)
        assert en["compute"] == pytest.approx(ref["compute"], rel=REL, abs=1e-18)
        assert en["uplink"] == pytest.approx(ref["uplink_energy"], rel=REL, abs=1e-18)
        assert lat["total"] == pytest.approx(sum(lat[p] for p in list(lat)[:4]), rel=1e-12)
        assert en["total"] == pytest.approx(en["compute"] + en["uplink"], rel=1e-12)
        for limit in ("latency", "energy", "tx_power", "cpu_freq_device", "cpu_freq_server",
                      "memory"):
            if limit in ref:
                assert ref[limit] <= 1 + REL, (strategy, limit, ref[limit])
        for limit in set(d["binding"]) & set(ref):
            assert ref[limit] >= 1 - 1e-6, (strategy, limit, ref[limit])


@pytest.mark.parametrize("name", ["paper-minilm-phone-rayleigh", "minilm-phone-rayleigh"])
def test_the_vectorized_choice_per_realization_is_solve_at_each_gain(name: str) -> None:
    """One tie-break rule (docs/theory.md §4.3): the fading sweep's vectorized choice over
    realizations picks the split and ratios `solve` returns at each gain alone (calibrated:
    across every rule pair as well)."""
    from laimco.experiments.sweep.producers.fading import choose
    from laimco.optimize import StrategyOptions, solve

    sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    gains = sc.channel.to_channel().sample_gains(8, np.random.default_rng(3))
    chosen = choose(sc, load_profile(sc.model.profile), "joint", StrategyOptions(), gains)
    for i, gain in enumerate(gains):
        d = solve(sc.replace(channel={"fading": "none", "path_gain": float(gain)}))
        assert (d.point is not None) == bool(chosen.feasible[i])
        if d.point is not None:
            assert chosen.split[i] == d.point.split
            assert chosen.rho_device[i] == pytest.approx(d.point.rho_device, rel=1e-9, abs=1e-12)
            assert chosen.rho_server[i] == pytest.approx(d.point.rho_server, rel=1e-9, abs=1e-12)
            assert chosen.objective[i] == pytest.approx(d.point.objective, rel=1e-9)
