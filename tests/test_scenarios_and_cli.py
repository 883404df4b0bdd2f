"""Scenario validation and the CLI contract: JSON schema, exit codes, messages naming keys."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from scenario_factory import Reference
from typer.testing import CliRunner

from laimco.cli import app
from laimco.config import ScenarioError, load_scenario
from laimco.optimize import STRATEGIES
from laimco.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "scenarios" / "minilm-phone.toml"
runner = CliRunner()

DECISION_KEYS = {"status", "strategy", "split", "rule_device", "rule_server", "rho_device",
                 "rho_server", "power_w", "freq_device_hz", "freq_server_hz",
                 "activation_bits", "coding", "uplink_bits", "latency_s", "energy_j",
                 "memory_bytes", "objective", "binding", "solve_time_s"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def _edit(key: str, value: str | None) -> str:
    """The default scenario with one `key = ...` line replaced (or removed when None)."""
    lines = []
    for line in DEFAULT.read_text().splitlines():
        if line.split("=")[0].strip() == key:
            if value is None:
                continue
            line = f"{key} = {value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_solves_to_a_decision_that_meets_its_limits(path: Path) -> None:
    """Every shipped scenario is written to be feasible, and the decision `optimize --json`
    prints is re-costed by the reference model of tests/scenario_factory.py (written from
    docs/theory.md §2 with its own arithmetic): the upload time and energy from the Shannon rate,
    the device energy κ·f_d³·t_d, the sums within the budgets, every bound. In the paper mode the
    reference also models compute, memory and the objective, so those must agree too."""
    result = runner.invoke(app, ["optimize", str(path), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["status"] == "optimal", d.get("reasons")
    scenario = load_scenario(path)
    ref = Reference(scenario, load_profile(scenario.model.profile), d["activation_bits"] or 32)
    s, rho_d, rho_s = d["split"], d["rho_device"], d["rho_server"]
    power, f_d, f_s = d["power_w"], d["freq_device_hz"], d["freq_server_hz"]
    costs = ref.costs(s, rho_d, rho_s, power, f_d, f_s, ref.design_gain())
    latency, energy = d["latency_s"], d["energy_j"]
    assert latency["uplink"] == pytest.approx(costs.t_uplink, rel=1e-9, abs=1e-15)
    assert energy["uplink"] == pytest.approx(costs.e_uplink, rel=1e-9, abs=1e-18)
    assert latency["downlink"] == costs.t_downlink
    assert energy["compute"] == pytest.approx(ref.kappa * f_d**3 * latency["device"], rel=1e-9,
                                              abs=1e-18)
    parts = latency["device"] + latency["uplink"] + latency["server"] + latency["downlink"]
    assert latency["total"] == pytest.approx(parts, rel=1e-12)
    assert energy["total"] == pytest.approx(energy["compute"] + energy["uplink"], rel=1e-12)
    assert latency["total"] <= ref.T * (1 + 1e-9) and energy["total"] <= ref.E * (1 + 1e-9)
    assert ref.min_split <= s <= ref.L
    assert 0 <= power <= ref.P and 0 <= f_s <= ref.Fs and 0 <= f_d <= ref.F
    assert 0 <= rho_d <= ref.rho_max and 0 <= rho_s <= ref.rho_max
    if scenario.distortion.mode == "paper":
        assert ref.violated_limits(s, rho_d, rho_s, power, f_d, f_s, ref.design_gain()) == []
        assert latency["device"] == pytest.approx(costs.t_device, rel=1e-9, abs=1e-15)
        assert latency["server"] == pytest.approx(costs.t_server, rel=1e-9, abs=1e-15)
        assert d["memory_bytes"] == pytest.approx(costs.memory, rel=1e-9)
        assert d["objective"] == pytest.approx(costs.objective, rel=1e-9, abs=1e-12)


def test_optimize_json_follows_the_contract() -> None:
    result = runner.invoke(app, ["optimize", str(DEFAULT), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == DECISION_KEYS
    assert data["status"] == "optimal"
    assert set(data["latency_s"]) == {"device", "uplink", "server", "downlink", "total"}
    assert set(data["energy_j"]) == {"compute", "uplink", "total"}
    lat = data["latency_s"]
    assert lat["total"] == pytest.approx(lat["device"] + lat["uplink"] + lat["server"]
                                         + lat["downlink"])
    assert data["energy_j"]["total"] == pytest.approx(data["energy_j"]["compute"]
                                                      + data["energy_j"]["uplink"])


def test_default_scenario_is_a_real_trade_off() -> None:
    """The README promises: neither on-device, on-server nor no-pruning is optimal."""
    scenario = load_scenario(DEFAULT)
    from laimco.optimize import solve

    joint = solve(scenario)
    assert joint.success and 0 < joint.point.split < 8
    assert joint.point.rho_device > 0  # pruning is needed (structurally: masks save no time)
    for name in ("on-device", "on-server", "no-pruning"):
        other = solve(scenario, name)
        assert not other.success or other.point.objective > joint.point.objective * 1.01


def test_infeasible_scenario_exits_zero_with_reasons(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit("latency_budget_s", "0.001"))
    result = runner.invoke(app, ["optimize", str(path), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["status"] == "infeasible"
    assert data["reasons"] and any("latency" in r for r in data["reasons"])


@pytest.mark.parametrize(("key", "value", "named"), [
    ("energy_budget_j", None, "device.energy_budget_j"),             # missing key
    ("energy_budget_j", "-1.0", "device.energy_budget_j"),           # negative budget
    ("bandwidth_hz", '"1 MHz"', "channel.bandwidth_hz"),             # wrong unit
    ("mode", '"cauchy"', "distortion.mode"),                         # unknown mode
    ("rho_max", "1.5", "task.rho_max"),                              # out of range
    ("fading", '"rayleigh"\nfoo_bar = 1', "channel.foo_bar"),         # unknown key
    ("fading", '"rayleigh"', "outage_prob"),                          # rayleigh needs ε
])
def test_malformed_scenario_exits_2_naming_the_key(tmp_path: Path, key: str,
                                                   value: str | None, named: str) -> None:
    text = _edit(key, value)
    if key == "fading" and "foo_bar" not in text:
        text = text.replace("outage_prob", "# outage_prob")
    path = _write(tmp_path, text)
    # a real process, so stdout/stderr/exit code are what a user sees
    proc = subprocess.run([sys.executable, "-m", "laimco.cli", "optimize", str(path), "--json"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert named in proc.stderr
    with pytest.raises(ScenarioError, match=named.split(".")[-1]):
        load_scenario(path)


def test_not_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    bad = _write(tmp_path, "[device\ncpu = 1")
    assert runner.invoke(app, ["optimize", str(bad)]).exit_code == 2
    missing = runner.invoke(app, ["optimize", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2


def test_min_split_beyond_the_model_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit("min_split", "12"))
    result = runner.invoke(app, ["optimize", str(path)])
    assert result.exit_code == 2


def test_unknown_strategy_exits_2() -> None:
    result = runner.invoke(app, ["optimize", str(DEFAULT), "--strategy", "magic"])
    assert result.exit_code == 2


def test_strategies_lists_every_strategy() -> None:
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0
    for name in STRATEGIES:
        assert name in result.stdout


def test_compare_json_has_every_strategy_but_the_slow_generic_solvers() -> None:
    result = runner.invoke(app, ["compare", str(DEFAULT), "--json"])
    assert result.exit_code == 0
    assert [d["strategy"] for d in json.loads(result.stdout)] == [
        s for s in STRATEGIES if s not in ("slsqp", "alternating")]


@pytest.mark.slow
def test_compare_with_generic_solvers_has_every_strategy() -> None:
    paper = DEFAULT.with_name("paper-" + DEFAULT.name)  # seconds there, minutes calibrated
    result = runner.invoke(app, ["compare", str(paper), "--json", "--generic-solvers"])
    assert result.exit_code == 0
    assert [d["strategy"] for d in json.loads(result.stdout)] == list(STRATEGIES)


def test_scenario_keys_match_the_documented_schema() -> None:
    data = tomllib.loads(DEFAULT.read_text())
    assert set(data) == {"model", "device", "server", "channel", "task", "distortion"}


def test_analytic_core_does_not_import_torch() -> None:
    code = ("import sys, laimco.optimize, laimco.config, laimco.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
