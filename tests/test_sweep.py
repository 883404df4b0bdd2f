"""The sweep engine: a bad sweep file fails before any work naming what is wrong; every kind's
rows equal an independent computation; a rerun, an interrupted run and a process-pool run
give the same table bytes as an uninterrupted in-process run."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from laimco.config import load_scenario
from laimco.experiments.commands import register
from laimco.experiments.executors import PoolExecutor
from laimco.experiments.sweep import (
    SweepError,
    load_sweep,
    read_columns,
    read_table,
    run_sweep,
)
from laimco.optimize import solve
from laimco.profile import load_profile

pytestmark = pytest.mark.slow  # runs sweeps

ROOT = Path(__file__).resolve().parents[1]
PHONE = ROOT / "scenarios" / "minilm-phone.toml"
RAYLEIGH = ROOT / "scenarios" / "paper-minilm-phone-rayleigh.toml"


def _sweep(tmp_path: Path, body: str, base: Path = PHONE, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'[sweep]\nbase = "{base}"\n{body}')
    return path


DESIGN = """strategies = ["joint", "tied", "on-device"]
chunk_points = 2
[axes]
"task.latency_budget_s" = {start = 0.05, stop = 0.5, num = 4, scale = "log"}
"channel.path_gain" = [1e-7, 1e-9]
"""


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("axes, named", [
    ('"task.latency_budget" = [0.1]', "task.latency_budget"),
    ('"radio.bandwidth_hz" = [1e6]', "radio.bandwidth_hz"),
    ('bandwidth_hz = [1e6]', "bandwidth_hz"),
])
def test_unknown_scenario_key_fails_before_any_work_naming_the_key(
        tmp_path: Path, axes: str, named: str) -> None:
    file = _sweep(tmp_path, f'strategies = ["joint"]\n[axes]\n{axes}\n')
    with pytest.raises(SweepError, match=re.escape(f"unknown scenario key '{named}'")):
        load_sweep(file)


def test_unknown_key_in_set_and_unknown_sweep_key_are_named(tmp_path: Path) -> None:
    file = _sweep(tmp_path, 'strategies = ["joint"]\n[set]\n"device.cpu_hz" = 1e9\n'
                            '[axes]\n"task.latency_budget_s" = [0.1]\n')
    with pytest.raises(SweepError, match=r"'device\.cpu_hz'"):
        load_sweep(file)
    file = _sweep(tmp_path, 'strategies = ["joint"]\nrealisations = 3\n'
                            '[axes]\n"task.latency_budget_s" = [0.1]\n')
    with pytest.raises(SweepError, match=r"sweep\.realisations"):
        load_sweep(file)


@pytest.mark.parametrize("axis, problem", [
    ("[]", "is empty"), ("{start = 0.1, stop = 0.2, num = 0}", "num: must be greater than"),
    ("{start = 0.3, stop = 0.2, step = 0.1}", "is empty: start 0.3 > stop 0.2")])
def test_empty_axis_fails_naming_it(tmp_path: Path, axis: str, problem: str) -> None:
    file = _sweep(tmp_path, f'strategies = ["joint"]\n[axes]\n"task.latency_budget_s" = {axis}\n')
    with pytest.raises(SweepError, match=r"axes\.'task\.latency_budget_s'.*" + problem):
        load_sweep(file)


def test_unknown_strategy_fails_naming_it(tmp_path: Path) -> None:
    file = _sweep(tmp_path, 'strategies = ["joint", "greedy"]\n'
                            '[axes]\n"task.latency_budget_s" = [0.1]\n')
    with pytest.raises(SweepError, match="unknown strategy 'greedy'"):
        load_sweep(file)


def test_a_value_the_scenario_rejects_fails_before_anything_is_written(tmp_path: Path) -> None:
    file = _sweep(tmp_path, 'strategies = ["joint"]\n'
                            '[axes]\n"channel.bandwidth_hz" = [1e6, -2e6]\n')
    out = tmp_path / "out"
    with pytest.raises(SweepError, match=r"point 1 .*channel.bandwidth_hz"):
        run_sweep(load_sweep(file), out, progress=False)
    assert not (out / "parts").exists()


def test_strategy_options_are_checked_against_every_point(tmp_path: Path) -> None:
    file = _sweep(tmp_path, 'strategies = ["fixed-split"]\n[options]\nsplit = 12\n'
                            '[axes]\n"task.latency_budget_s" = [0.1]\n')
    with pytest.raises(SweepError, match=r"options\.split = 12"):
        run_sweep(load_sweep(file), tmp_path / "out", progress=False)


def test_every_shipped_sweep_file_validates_in_both_modes() -> None:
    files = sorted((ROOT / "sweeps").glob("*.toml"))
    assert len(files) >= 12
    for file in files:
        full, quick = load_sweep(file), load_sweep(file, quick=True)
        assert quick.n_points <= full.n_points


# ---- expansion ---------------------------------------------------------------------------


def test_ranges_expand_to_their_endpoints(tmp_path: Path) -> None:
    file = _sweep(tmp_path, 'strategies = ["joint"]\n[axes]\n'
                            '"channel.path_gain" = {start = 1e-9, stop = 1e-6, num = 4, '
                            'scale = "log"}\n"task.latency_budget_s" = {start = 0.1, stop = 0.3,'
                            ' step = 0.05}\n')
    spec = load_sweep(file)
    assert spec.axes[0].values == pytest.approx([1e-9, 1e-8, 1e-7, 1e-6], rel=1e-11)
    assert spec.axes[1].values == pytest.approx([0.1, 0.15, 0.2, 0.25, 0.3], rel=1e-11)
    assert spec.n_points == 20


# ---- rows against independent computations -----------------------------------------------


def test_design_rows_equal_solve_called_directly(tmp_path: Path) -> None:
    spec = load_sweep(_sweep(tmp_path, DESIGN))
    table = read_table(run_sweep(spec, tmp_path / "out", progress=False).table.parent)
    assert len(table["point"]) == 8 * 3
    base = load_scenario(PHONE)
    for i in range(len(table["point"])):
        scenario = base.replace(task={"latency_budget_s": table["task.latency_budget_s"][i]},
                                channel={"path_gain": table["channel.path_gain"][i]})
        d = solve(scenario, table["strategy"][i])
        assert d.status == table["status"][i]
        if d.success:
            assert d.point.split == table["split"][i]
            assert d.point.objective == table["objective"][i]
            assert d.point.costs.latency_total_s == table["latency_s"][i]
        else:
            assert math.isnan(table["objective"][i])


def test_fading_rows_are_the_scalar_solve_at_each_rayleigh_gain(tmp_path: Path) -> None:
    """The vectorized per-realization answer equals solve() at that one gain, and the gains
    are ḡ·Exp(1) draws of the documented seed."""
    file = _sweep(tmp_path, 'kind = "fading"\nstrategies = ["joint", "on-device"]\n'
                            'realizations = 40\nseed = 11\n'
                            '[axes]\n"channel.path_gain" = [1e-7, 1e-10]\n', base=RAYLEIGH)
    table = read_table(run_sweep(load_sweep(file), tmp_path / "out", progress=False)
                       .table.parent)
    h2 = np.random.default_rng(np.random.SeedSequence(11)).exponential(1.0, 40)
    base = load_scenario(RAYLEIGH)
    for g_mean in (1e-7, 1e-10):
        rows = (table["channel.path_gain"] == g_mean) & (table["strategy"] == "joint")
        assert table["gain"][rows] == pytest.approx(g_mean * h2, rel=1e-15)
    for i in range(0, len(table["point"]), 7):
        at_gain = base.replace(channel={"fading": "none", "path_gain": float(table["gain"][i])})
        d = solve(at_gain, table["strategy"][i])
        assert d.success == bool(table["feasible"][i])
        if d.success:
            assert table["objective"][i] == pytest.approx(d.point.objective, rel=1e-9)


def test_robust_violations_match_a_direct_evaluation_of_the_held_decision(
        tmp_path: Path) -> None:
    file = _sweep(tmp_path, 'kind = "robust"\nstrategies = ["joint"]\nrealizations = 3000\n'
                            'seed = 5\n[axes]\n"channel.outage_prob" = [0.05, 0.2]\n',
                  base=RAYLEIGH)
    table = read_table(run_sweep(load_sweep(file), tmp_path / "out", progress=False)
                       .table.parent)
    base = load_scenario(RAYLEIGH)
    profile = load_profile("minilm-l6")
    gains = base.channel.path_gain * np.random.default_rng(
        np.random.SeedSequence(5)).exponential(1.0, 3000)
    for i in range(len(table["point"])):
        eps = float(table["channel.outage_prob"][i])
        scenario = base.replace(channel={"outage_prob": eps})
        if table["design"][i] == "mean":
            scenario = scenario.replace(channel={"fading": "none"})
        d = solve(scenario)
        assert d.point is not None
        units = profile.units
        bits = profile.input_bits if d.point.split == 0 else units[d.point.split - 1].out_bits
        b, n0 = base.channel.bandwidth_hz, base.channel.noise_psd_w_per_hz
        upload = bits / (b * np.log2(1 + d.point.power_w * gains / (n0 * b)))
        latency = d.point.costs.latency_device_s + d.point.costs.latency_server_s + upload
        energy = d.point.costs.energy_compute_j + d.point.power_w * upload
        broken = (latency > base.task.latency_budget_s * (1 + 1e-9)) | (
            energy > base.device.energy_budget_j * (1 + 1e-9))
        assert table["violations"][i] == int(broken.sum())


# ---- storage, resumption, executors --------------------------------------------------------


def test_rerun_skips_finished_chunks_and_rewrites_the_same_bytes(tmp_path: Path) -> None:
    spec = load_sweep(_sweep(tmp_path, DESIGN))
    out = tmp_path / "out"
    first = run_sweep(spec, out, progress=False)
    reference = first.table.read_bytes()
    again = run_sweep(spec, out, progress=False)
    assert (first.chunks_run, again.chunks_run) == (4, 0)
    assert again.table.read_bytes() == reference
    sorted((out / "parts").glob("*.parquet"))[1].unlink()
    repaired = run_sweep(spec, out, progress=False)
    assert repaired.chunks_run == 1
    assert repaired.table.read_bytes() == reference
    timings = read_columns(out / "timings.parquet")
    assert np.all(timings["solve_time_s"] > 0)
    assert "solve_time_s" not in read_table(out)


def test_csv_and_parquet_tables_hold_the_same_values(tmp_path: Path) -> None:
    spec = load_sweep(_sweep(tmp_path, DESIGN))
    run_sweep(spec, tmp_path / "pq", progress=False)
    run_sweep(spec, tmp_path / "csv", fmt="csv", progress=False)
    a, b = read_table(tmp_path / "pq"), read_table(tmp_path / "csv")
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        if a[key].dtype.kind == "f":
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key].tolist() == b[key].tolist(), key


def test_process_pool_table_is_bit_identical_to_the_in_process_one(tmp_path: Path) -> None:
    spec = load_sweep(_sweep(tmp_path, DESIGN))
    local = run_sweep(spec, tmp_path / "local", progress=False)
    with PoolExecutor(2) as pool:
        pooled = run_sweep(spec, tmp_path / "pool", executor=pool, progress=False)
    assert pooled.table.read_bytes() == local.table.read_bytes()


def test_killed_sweep_resumes_to_the_uninterrupted_table(tmp_path: Path) -> None:
    """SIGKILL a `laimco sweep` process once some chunks are written, rerun, and compare
    with a run that was never interrupted."""
    file = _sweep(tmp_path, 'kind = "fading"\nstrategies = ["joint", "tied"]\n'
                            'realizations = 1500\n[axes]\n"channel.path_gain" = '
                            '{start = 1e-10, stop = 1e-6, num = 8, scale = "log"}\n',
                  base=RAYLEIGH)
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "laimco.experiments.commands", "sweep", str(file), "--out",
         str(out), "--workers", "1", "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while len(list((out / "parts").glob("*.parquet"))) < 2:
            assert process.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    finished = len(list((out / "parts").glob("*.parquet")))
    assert 2 <= finished < 8
    assert not (out / "results.parquet").exists()
    spec = load_sweep(file)
    resumed = run_sweep(spec, out, progress=False)
    assert resumed.chunks_run == 8 - finished
    whole = run_sweep(spec, tmp_path / "whole", progress=False)
    assert resumed.table.read_bytes() == whole.table.read_bytes()


def test_progress_bar_shows_the_rate_and_the_time_left(tmp_path: Path) -> None:
    spec = load_sweep(_sweep(tmp_path, DESIGN))
    screen = io.StringIO()
    run_sweep(spec, tmp_path / "out", console=Console(file=screen, force_terminal=True,
                                                      width=150))
    shown = screen.getvalue()
    assert "24/24" in shown and " /s" in shown and "ETA" in shown


def test_sweep_command_exits_2_naming_the_problem_and_writes_the_table(
        tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    bad = _sweep(tmp_path, 'strategies = ["jiont"]\n[axes]\n"task.latency_budget_s" = [0.1]\n',
                 name="bad.toml")
    result = runner.invoke(app, ["sweep", str(bad), "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert "unknown strategy 'jiont'" in result.output
    good = _sweep(tmp_path, DESIGN, name="good.toml")
    result = runner.invoke(app, ["sweep", str(good), "--out", str(tmp_path / "good"),
                                 "--workers", "1", "--format", "csv", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "good" / "results.csv").is_file()
    assert "8 points in 4 chunks" in result.output
