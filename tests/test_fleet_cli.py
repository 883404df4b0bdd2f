"""`laimco fleet`: the --json contract, the objective switch, and bad input (exit 2, the key
named, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from laimco.cli import app
from laimco.fleet.fleet_file import load_fleet
from laimco.optimize.strategies import solve

runner = CliRunner()
DEVICE_KEYS = {"id", "status", "split", "rho_device", "rho_server", "power_w", "freq_device_hz",
               "bandwidth_hz", "server_cycles_per_s", "latency_s", "energy_j", "objective",
               "reasons"}


def _fleet_file(tmp_path: Path, devices: str, resources: str = "") -> Path:
    text = ("name = \"cli-test\"\n[resources]\n" + (resources or
            "bandwidth_hz = 6e6\nserver_cycles_per_s = 6e8\nserver_flops_per_cycle = 64\n")
            + devices)
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


THREE = """
[[devices]]
scenario = "paper-minilm-phone"
path_gain = 1e-7
[[devices]]
scenario = "paper-minilm-phone"
path_gain = 3e-9
[[devices]]
scenario = "paper-minilm-laptop"
path_gain = 2e-8
weight = 2.0
"""


def test_json_contract_and_decisions(tmp_path: Path) -> None:
    result = runner.invoke(app, ["fleet", str(_fleet_file(tmp_path, THREE)), "--json",
                                 "--max-rounds", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"status", "objective_kind", "objective", "dual_bound", "relative_gap",
            "solve_time_s", "shares", "devices"} <= set(data)
    assert data["objective_kind"] == "sum"
    assert set(data["shares"]) == {"bandwidth_hz", "server_cycles_per_s"}
    assert len(data["devices"]) == 3
    assert all(set(d) >= DEVICE_KEYS for d in data["devices"])
    assert data["dual_bound"] <= data["objective"] * (1 + 1e-12)
    # each device's decision is laimco optimize's at its shares (an independent solve)
    fleet = load_fleet(tmp_path / "fleet.toml")
    weighted = 0.0
    for u, row in enumerate(data["devices"]):
        alone = solve(fleet.device_scenario(u, row["bandwidth_hz"], row["server_cycles_per_s"])
                      if row["bandwidth_hz"] > 0 else fleet.device_scenario(u, 6e6, 6e8)
                      .replace(task={"min_split": 8}))
        assert alone.point is not None
        assert row["objective"] == pytest.approx(alone.point.objective, rel=1e-9)
        weighted += fleet.weight[u] * alone.point.objective
    assert data["objective"] == pytest.approx(weighted, rel=1e-9)
    assert sum(data["shares"]["bandwidth_hz"]) <= 6e6 * (1 + 1e-12)


def test_max_min_switch_and_table(tmp_path: Path) -> None:
    path = _fleet_file(tmp_path, THREE)
    result = runner.invoke(app, ["fleet", str(path), "--objective", "max-min", "--json",
                                 "--max-rounds", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["objective_kind"] == "max-min"
    worst = max(d["objective"] * w for d, w in zip(data["devices"], (1.0, 1.0, 2.0),
                                                    strict=True))
    assert data["objective"] == pytest.approx(worst, rel=1e-12)
    table = runner.invoke(app, ["fleet", str(path), "--max-rounds", "2"])
    assert table.exit_code == 0, table.output
    assert "certified gap" in table.stdout and "per class" in table.stdout


@pytest.mark.parametrize(("body", "resources", "named"), [
    ("", "", "devices"),
    (THREE, "bandwidth_hz = 0\nserver_cycles_per_s = 6e8\nserver_flops_per_cycle = 64\n",
     "bandwidth_hz"),
    (THREE, "bandwidth_hz = 6e6\nserver_cycles_per_s = -1\nserver_flops_per_cycle = 64\n",
     "server_cycles_per_s"),
    ("[generator]\nseed = 1\ndistance_m = { min = 1, max = 50 }\n"
     "[[generator.classes]]\nscenario = \"paper-minilm-phone\"\ncount = 3\n", "",
     "distance_m"),
])
def test_bad_input_exits_2_naming_the_key(tmp_path: Path, body: str, resources: str,
                                          named: str) -> None:
    result = runner.invoke(app, ["fleet", str(_fleet_file(tmp_path, body, resources))])
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "Traceback" not in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["fleet", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert np.char.find(result.output, "nope.toml") >= 0
