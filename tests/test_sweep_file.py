"""The sweep file model (laimco.experiments.sweep.file_model) at the command line: every malformed
file, oversized sweep and unusable output folder exits 2 with one message naming the key and
what is allowed, before any work; shipped sweeps load as their TOML says; infeasible rows
carry a null split and limit keys; a SIGKILLed sweep takes its worker processes with it."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from laimco.config import load_scenario
from laimco.experiments.commands import register
from laimco.experiments.sweep import (
    INFEASIBLE_LIMIT_KEYS,
    SweepError,
    load_sweep,
    read_columns,
    read_table,
    run_sweep,
)
from laimco.optimize import STRATEGIES, solve

pytestmark = pytest.mark.slow  # runs sweeps and kills sweep processes

ROOT = Path(__file__).resolve().parents[1]
PHONE = ROOT / "scenarios" / "minilm-phone.toml"
RAYLEIGH = ROOT / "scenarios" / "minilm-phone-rayleigh.toml"
AXIS = '[axes]\n"task.latency_budget_s" = [0.1, 0.2]\n'


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _design(body: str = "", axes: str = AXIS, sweep: str = "") -> str:
    return f'[sweep]\nbase = "{PHONE}"\nstrategies = ["joint"]\n{sweep}\n{axes}\n{body}'


def _run_cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(_app(), args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback instead of a message: {result.exception!r}")
    return result.exit_code, result.output


BAD_FILES = [
    # a scalar where a table belongs
    ("sweep = 3\n" + AXIS, "sweep: must be a table"),
    (f'axes = 5\n[sweep]\nbase = "{PHONE}"\nstrategies = ["joint"]\n', "axes: must be a table"),
    (_design(axes='[axes]\n"channel.path_gain" = 5'),
     "axes.'channel.path_gain': an axis is a list of values or a range table"),
    (_design("[options]\nratio = [0.5]"), "options.ratio: must be a number"),
    # strings where numbers belong
    (_design(sweep='realizations = "10"'), "sweep.realizations: must be a whole number"),
    (_design(axes='[axes]\n"channel.path_gain" = {start = "1e-9", stop = 1e-6, num = 3}'),
     "axes.'channel.path_gain'.start: must be a number"),
    (_design(axes='[axes]\n"channel.path_gain" = [1e-9, [1e-8]]'),
     "axes.'channel.path_gain'[1]: must be a number, a string or a boolean"),
    (_design(axes='[axes]\n"channel.path_gain" = [1e-9, "1e-8"]'),
     "axes.'channel.path_gain': mixes number and string"),
    # inf / NaN
    (_design(axes='[axes]\n"channel.path_gain" = {start = 1e-9, stop = inf, num = 3}'),
     "axes.'channel.path_gain'.stop: must be a finite number"),
    (_design(axes='[axes]\n"channel.path_gain" = {start = nan, stop = 1e-6, step = 1e-7}'),
     "axes.'channel.path_gain'.start: must be a finite number"),
    (_design(axes='[axes]\n"channel.path_gain" = [1e-9, nan]'),
     "axes.'channel.path_gain'[1]: must be a finite number"),
    (_design('[set]\n"channel.path_gain" = -inf'), "set.'channel.path_gain': must be a finite"),
    # a list in [set] (list-valued scenario keys): non-empty, one kind, values the key allows
    (_design('[set]\n"uplink.activation_bits" = []'),
     "set.'uplink.activation_bits': is empty"),
    (_design('[set]\n"uplink.activation_bits" = [8, "4"]'),
     "set.'uplink.activation_bits': mixes number and string"),
    (_design('[set]\n"uplink.activation_bits" = [8, 7]'), "7 bits is not supported"),
    # integers that must be integers
    (_design(axes='[axes]\n"channel.path_gain" = {start = 1e-9, stop = 1e-6, num = 1.5}'),
     "axes.'channel.path_gain'.num: must be a whole number (an integer) (got 1.5)"),
    (_design(sweep='kind = "fading"\nrealizations = 1e11'),
     "sweep.realizations: must be a whole number"),
    # values that passed before and failed mid-run
    (_design(sweep="seed = -1"), "sweep.seed: must be greater than or equal to 0"),
    (_design("[options]\nseed = -1"), "options.seed: must be greater than or equal to 0"),
    (_design("[options]\nn_starts = -1"), "options.n_starts: must be greater than or equal to 1"),
    (_design("[options]\nn_starts = 1_000_000_000"),
     "options.n_starts: must be less than or equal to 10000"),
    # names that would escape the output folder
    (_design(sweep='name = "../../x"'), "sweep.name: must be a safe name"),
    (_design(sweep='name = "/tmp/x"'), "sweep.name: must be a safe name"),
    # unknown keys with the likely spelling
    (_design(sweep="realisations = 3"), "sweep.realisations: unknown key (did you mean "
                                        "'realizations'?)"),
    (_design(axes='[axes]\n"chanel.path_gain" = [1e-9]'),
     "unknown scenario key 'chanel.path_gain' (did you mean 'channel.path_gain'?)"),
    (_design("[optoins]\nratio = 0.5"), "optoins: unknown key (did you mean 'options'?)"),
    (_design(axes='[axes]\n"channel.path_gain" = {start = 1e-9, stop = 1e-6, nmu = 3}'),
     "axes.'channel.path_gain'.nmu: unknown key (did you mean 'num'?)"),
    (_design(sweep='kind = "fadeing"'), "sweep.kind: must be 'design', 'fading', 'robust' or"),
    (f'[sweep]\nbase = "{PHONE}"\nstrategies = ["jiont"]\n' + AXIS,
     "unknown strategy 'jiont' (did you mean 'joint'?)"),
    (f'[sweep]\nbase = "{PHONE}"\nstrategies = "joint"\n' + AXIS,
     'sweep.strategies: must be a list of strategy names or "all"'),
    # rich markup characters in keys and values survive into the message
    (_design(axes='[axes]\n"[/]" = [1]'), "unknown scenario key '[/]'"),
    (_design(axes='[axes]\n"[bold]task.x" = [1]'), "unknown scenario key '[bold]task.x'"),
    # cross-field rules
    (f'[sweep]\nkind = "fading"\nbase = "{RAYLEIGH}"\nstrategies = ["joint"]\n' + AXIS,
     "sweep.realizations: a fading sweep needs at least 1"),
    ('[sweep]\nkind = "bound"\n[axes]\nrho = [0.5, 1.5]\n', "axis 'rho' lists pruning ratios"),
    (_design("[quick]\nrealizations = -1"), "quick.realizations: must be greater than or equal"),
]


@pytest.mark.parametrize("text, message", BAD_FILES,
                         ids=[f"{i}-{m[:40]}" for i, (_, m) in enumerate(BAD_FILES)])
def test_bad_sweep_file_exits_2_with_one_message_naming_the_key(
        tmp_path: Path, text: str, message: str) -> None:
    file = _write(tmp_path, text)
    out = tmp_path / "out"
    code, output = _run_cli(["sweep", str(file), "--out", str(out), "--workers", "1"])
    assert code == 2, output
    assert message in " ".join(output.split()), output
    assert output.count("error:") == 1
    assert not out.exists()


def test_binary_sweep_file_and_binary_base_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "blob.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    code, output = _run_cli(["sweep", str(binary), "--out", str(tmp_path / "a")])
    assert code == 2 and "not a text file" in output
    file = _write(tmp_path, f'[sweep]\nbase = "{binary}"\nstrategies = ["joint"]\n' + AXIS)
    code, output = _run_cli(["sweep", str(file), "--out", str(tmp_path / "b"), "--workers", "1"])
    flat = " ".join(output.split())
    assert code == 2 and "base scenario" in flat and "not a text file" in flat
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---- size caps: refused before any work ---------------------------------------------------


@pytest.mark.parametrize("sweep, axes, evaluations", [
    ("", '"channel.path_gain" = {start = 1e-9, stop = 1e-6, num = 1_000_000_000}',
     "1,000,000,000 "),
    # 10^12 + 1 values up to the range's rounding tolerance (the last digit may differ)
    ("", '"task.latency_budget_s" = {start = 0.1, stop = 1.1, step = 1e-12}', "1,000,000,000,00"),
    ("", '"channel.path_gain" = {start = 1e-9, stop = 1e-6, num = 1_000_000}\n'
         '"task.latency_budget_s" = {start = 0.1, stop = 1.0, num = 1_000_000}', f"{10**12:,} "),
    ('strategies = ["slsqp"]\n', '"channel.path_gain" = {start = 1e-9, stop = 1e-6, num = 2000}',
     f"{2000 * 10_000:,} "),
])
def test_the_cap_refuses_before_any_work_naming_the_number_and_how_to_raise_it(
        tmp_path: Path, sweep: str, axes: str, evaluations: str) -> None:
    body = (f'[sweep]\nbase = "{PHONE}"\n' + (sweep or 'strategies = ["joint"]\n')
            + f"[axes]\n{axes}\n" + ("[options]\nn_starts = 10000\n" if "slsqp" in sweep else ""))
    file = _write(tmp_path, body)
    out = tmp_path / "out"
    started = time.perf_counter()
    code, output = _run_cli(["sweep", str(file), "--out", str(out)])
    elapsed = time.perf_counter() - started
    flat = " ".join(output.split())
    assert code == 2, output
    assert f"asks for {evaluations}" in flat
    assert "more than the limit of 10,000,000" in flat
    assert "[limits] max_evaluations" in flat and "--max-evaluations" in flat
    assert elapsed < 10, "the cap must be checked before the axes are expanded"
    assert not out.exists()


def test_realizations_per_point_are_capped_with_the_key_that_raises_the_cap(
        tmp_path: Path) -> None:
    file = _write(tmp_path, f'[sweep]\nkind = "fading"\nbase = "{RAYLEIGH}"\n'
                            'strategies = ["joint"]\nrealizations = 100_000_000_000\n'
                            '[axes]\n"channel.path_gain" = [1e-9]\n')
    code, output = _run_cli(["sweep", str(file), "--out", str(tmp_path / "out")])
    flat = " ".join(output.split())
    assert code == 2
    assert "sweep.realizations = 100,000,000,000" in flat and "100,000 per point" in flat
    assert "max_realizations_per_point" in flat


def test_the_cap_is_raised_by_the_flag_or_the_limits_section(tmp_path: Path) -> None:
    """Two points × three strategies = 6 evaluations: a cap of 5 refuses, 6 runs."""
    axes = '[axes]\n"task.latency_budget_s" = [0.1, 0.2]\n'
    body = (f'[sweep]\nbase = "{PHONE}"\nstrategies = ["joint", "tied", "on-device"]\n{axes}')
    file = _write(tmp_path, body)
    code, output = _run_cli(["sweep", str(file), "--out", str(tmp_path / "a"),
                             "--max-evaluations", "5"])
    assert code == 2 and "asks for 6 evaluations" in output
    code, output = _run_cli(["sweep", str(file), "--out", str(tmp_path / "b"), "--workers", "1",
                             "--no-progress", "--max-evaluations", "6"])
    assert code == 0, output
    limited = _write(tmp_path, body + "[limits]\nmax_evaluations = 5\n", "limited.toml")
    with pytest.raises(SweepError, match="limit of 5"):
        load_sweep(limited)
    assert load_sweep(limited, max_evaluations=6).evaluations == 6


# ---- output folders --------------------------------------------------------------------------


def test_unusable_output_folders_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    file = _write(tmp_path, _design())
    a_file = tmp_path / "plain.txt"
    a_file.write_text("mine")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.parquet").write_text("my own table")
    cases = [(a_file, "is a file"), (a_file / "sub" / "out", "is under the file"),
             (Path("/proc/laimco-cannot-write/out"), "output folder"),
             (foreign, "holds files laimco did not write")]
    for out, message in cases:
        code, output = _run_cli(["sweep", str(file), "--out", str(out), "--workers", "1",
                                 "--no-progress"])
        assert code == 2, (out, output)
        assert message in " ".join(output.split()), output
    assert a_file.read_text() == "mine"
    assert (foreign / "results.parquet").read_text() == "my own table"
    assert sorted(p.name for p in foreign.iterdir()) == ["results.parquet"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_parent_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    file = _write(tmp_path, _design())
    code, output = _run_cli(["sweep", str(file), "--out", str(locked / "out")])
    assert code == 2 and "is not writable" in output


def test_another_sweeps_folder_is_refused_and_a_rerun_of_the_same_is_not(
        tmp_path: Path) -> None:
    first = _write(tmp_path, _design(), "first.toml")
    second = _write(tmp_path, _design(), "second.toml")
    out = tmp_path / "out"
    run_sweep(load_sweep(first), out, progress=False)
    assert run_sweep(load_sweep(first), out, progress=False).chunks_run == 0
    with pytest.raises(SweepError, match="holds the design sweep 'first', not 'second'"):
        run_sweep(load_sweep(second), out, progress=False)
    cache_only = tmp_path / "cache-only"  # what `laimco reproduce` leaves after validating
    (cache_only / "profiles").mkdir(parents=True)
    assert run_sweep(load_sweep(second), cache_only, progress=False).chunks_run == 1


def test_a_failing_point_leaves_no_output_folder(tmp_path: Path) -> None:
    file = _write(tmp_path, _design(axes='[axes]\n"channel.bandwidth_hz" = [1e6, -2e6]'))
    out = tmp_path / "new" / "out"
    code, output = _run_cli(["sweep", str(file), "--out", str(out), "--workers", "1"])
    assert code == 2 and "point 1" in output
    assert not out.exists()


# ---- shipped sweeps ---------------------------------------------------------------------------


def _independent_values(spec: dict[str, object]) -> list[float]:
    if isinstance(spec, list):
        return spec
    start, stop = float(spec["start"]), float(spec["stop"])
    if "num" in spec:
        space = np.geomspace if spec.get("scale") == "log" else np.linspace
        return list(space(start, stop, int(spec["num"])))
    return list(np.arange(start, stop + float(spec["step"]) / 2, float(spec["step"])))


@pytest.mark.parametrize("quick", [False, True])
def test_every_shipped_sweep_loads_as_its_toml_says(quick: bool) -> None:
    files = sorted((ROOT / "sweeps").glob("*.toml"))
    assert len(files) >= 12
    for file in files:
        raw = tomllib.loads(file.read_text())
        sweep, quick_raw = raw.get("sweep", {}), raw.get("quick", {})
        axes = {**raw["axes"], **(quick_raw.get("axes", {}) if quick else {})}
        spec = load_sweep(file, quick=quick)
        assert spec.name == file.stem and spec.kind == sweep.get("kind", "design")
        assert [a.key for a in spec.axes] == list(axes)
        for axis in spec.axes:
            expected = _independent_values(axes[axis.key])
            if axis.dtype == "string":
                assert list(axis.values) == expected
            else:
                assert list(axis.values) == pytest.approx(expected, rel=1e-11)
        strategies = sweep.get("strategies", [])
        assert list(spec.strategies) == (list(STRATEGIES) if strategies == "all" else
                                         strategies)
        assert spec.options.model_dump(exclude_none=True) == raw.get("options", {})
        assert spec.overrides == {**raw.get("set", {}),
                                  **(quick_raw.get("set", {}) if quick else {})}
        for key in ("realizations", "calibration_sentences", "heldout_sentences"):
            wanted = quick_raw.get(key, sweep.get(key)) if quick else sweep.get(key)
            if wanted is not None:
                assert getattr(spec, key) == wanted, (file.name, key)
        assert spec.seed == sweep.get("seed", 0)


# ---- infeasible rows -------------------------------------------------------------------------


def test_infeasible_rows_have_a_null_split_and_limit_keys(tmp_path: Path) -> None:
    """At a 0.1 ms budget nothing fits; at 1 s everything does. The Parquet split is null
    exactly where solve() is infeasible; infeasible_limits holds keys of the fixed vocabulary
    naming the limits solve()'s reasons name; the sentences are in infeasible_reasons."""
    file = _write(tmp_path, f'[sweep]\nbase = "{PHONE}"\n'
                            'strategies = ["joint", "on-device", "on-server"]\n'
                            '[axes]\n"task.latency_budget_s" = [1e-4, 1.0]\n'
                            '"device.energy_budget_j" = [1e-6, 0.05]\n')
    spec = load_sweep(file)
    for fmt in ("parquet", "csv"):
        out = tmp_path / fmt
        run_sweep(spec, out, fmt=fmt, progress=False)
        table = read_table(out)
        base = load_scenario(PHONE)
        infeasible = 0
        for i in range(len(table["point"])):
            scenario = base.replace(
                task={"latency_budget_s": float(table["task.latency_budget_s"][i])},
                device={"energy_budget_j": float(table["device.energy_budget_j"][i])})
            d = solve(scenario, str(table["strategy"][i]))
            keys = str(table["infeasible_limits"][i]).split(",") if not d.success else []
            if d.success:
                assert table["split"][i] == d.point.split
                assert table["infeasible_limits"][i] == "" == table["infeasible_reasons"][i]
                continue
            infeasible += 1
            assert math.isnan(table["split"][i])
            assert set(keys) <= set(INFEASIBLE_LIMIT_KEYS)
            assert table["infeasible_reasons"][i] == " | ".join(r.message for r in d.reasons)
            for reason, key in zip(d.reasons, keys, strict=True):
                if key in ("latency", "energy", "memory", "privacy"):
                    assert reason.limit == key and reason.message.startswith(f"{key}:")
                else:
                    assert key == "jointly-too-tight" and reason.limit == "several"
                    assert "jointly too tight" in reason.message
        assert infeasible >= 6
    if True:  # the stored form: null in Parquet, empty in CSV
        import pyarrow.parquet as pq

        column = pq.read_table(tmp_path / "parquet" / "results.parquet").column("split")
        assert str(column.type) == "int64"
        assert column.null_count == infeasible
        assert -1 not in column.to_pylist()
        lines = (tmp_path / "csv" / "results.csv").read_text().splitlines()
        names, types = lines[0].split(","), lines[1].split(",")
        assert types[names.index("split")] == "Int64"


def test_fading_rows_mark_outage_with_a_null_split(tmp_path: Path) -> None:
    file = _write(tmp_path, f'[sweep]\nkind = "fading"\nbase = "{RAYLEIGH}"\n'
                            'strategies = ["fixed-split"]\nrealizations = 200\nseed = 3\n'
                            '[axes]\n"channel.path_gain" = [1e-11]\n')
    run_sweep(load_sweep(file), tmp_path / "out", progress=False)
    columns = read_columns(tmp_path / "out" / "results.parquet")
    feasible = columns["feasible"]
    assert 0 < (~feasible).sum() < feasible.size  # deep fades break the fixed split's upload
    assert np.isnan(columns["split"][~feasible]).all()
    assert (columns["split"][feasible] >= 0).all()


# ---- workers die with the parent ------------------------------------------------------------


@pytest.mark.parametrize("executor", [["--workers", "2"], ["--dask-local", "2"]],
                         ids=["process-pool", "dask-local"])
def test_sigkilled_sweep_leaves_no_worker_process(tmp_path: Path, executor: list[str]) -> None:
    psutil = pytest.importorskip("psutil")
    if "--dask-local" in executor:
        pytest.importorskip("distributed")
    file = _write(tmp_path, f'[sweep]\nkind = "fading"\nbase = "{RAYLEIGH}"\n'
                            'strategies = ["joint", "tied"]\nrealizations = 20000\n'
                            '[axes]\n"channel.path_gain" = '
                            '{start = 1e-10, stop = 1e-6, num = 40, scale = "log"}\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "laimco.experiments.commands", "sweep", str(file), "--out",
         str(tmp_path / "out"), *executor, "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    try:
        while True:  # until both workers have started on a chunk
            workers = [c for c in parent.children(recursive=True)
                       if c.cpu_percent(interval=None) >= 0 and "resource_tracker" not in
                       " ".join(c.cmdline())]
            if len(workers) >= 2 and (tmp_path / "out" / "manifest.json").exists():
                break
            assert process.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        children = parent.children(recursive=True)
        time.sleep(1.0)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def alive(child: object) -> bool:
        try:
            return child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 5
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [(c.pid, " ".join(c.cmdline())) for c in children if alive(c)]
    for pid, _ in survivors:  # do not leave them running if the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, survivors


# ---- fuzz: any file gives a run or exit 2 ------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(
            value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(data: dict[str, dict[str, object]]) -> str:
    return "".join(f"[{section}]\n" + "".join(f"{json.dumps(k)} = {_toml_value(v)}\n"
                                              for k, v in table.items())
                   for section, table in data.items())


_VALID = {
    "sweep": {"base": str(PHONE), "strategies": ["joint", "on-device"], "seed": 1},
    "axes": {"task.latency_budget_s": {"start": 0.05, "stop": 0.5, "num": 3, "scale": "log"},
             "channel.path_gain": [1e-7, 1e-9]},
    "options": {"ratio": 0.5},
}
_KEYS = ["kind", "strategies", "realizations", "seed", "name", "chunk_points", "base", "num",
         "start", "stop", "step", "scale", "ratio", "split", "n_starts", "task.min_split",
         "channel.path_gain", "[x]", "max_evaluations"]


def _values():
    from hypothesis import strategies as st

    scalars = st.one_of(st.booleans(), st.integers(-10**13, 10**13),
                        st.floats(allow_nan=True, allow_infinity=True),
                        st.sampled_from(["joint", "all", "log", "fading", "robust", "../x",
                                         "[bold]", "[/]", "", "a b"]),
                        st.text(max_size=5))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=3)),
        max_leaves=6)


def test_fuzzed_sweep_files_run_or_exit_2(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Mutations of a valid sweep file (a key of any section replaced, added or removed, a
    value of any type): `laimco sweep` either runs (exit 0, a table) or exits 2 with one
    message — never a traceback, never another code."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    sections = st.sampled_from(["sweep", "axes", "options", "set", "limits", "quick", "axis"])
    mutation = st.tuples(sections, st.sampled_from(_KEYS), st.one_of(st.none(), _values()))

    @hypothesis.settings(max_examples=120, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(st.lists(mutation, min_size=1, max_size=3))
    def check(mutations: list[tuple[str, str, object]]) -> None:
        data = json.loads(json.dumps(_VALID))
        for section, key, value in mutations:
            table = data.setdefault(section, {})
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        folder = tmp_path_factory.mktemp("fuzz")
        file = folder / "fuzz.toml"
        file.write_text(_toml(data))
        out = folder / "out"
        code, output = _run_cli(["sweep", str(file), "--out", str(out), "--workers", "1",
                                 "--no-progress", "--format", "csv", "--max-evaluations", "40"])
        assert code in (0, 2), output
        if code == 0:
            assert (out / "results.csv").is_file()
        else:
            assert output.count("error:") == 1, output
            assert not out.exists() or (out / "manifest.json").is_file()

    check()


def test_the_watchdog_alone_ends_an_orphaned_worker(tmp_path: Path) -> None:
    """Where prctl is unavailable (not Linux) the watchdog thread must do it: a middle process
    starts a worker that calls die_with_parent with prctl disabled; SIGKILL the middle one and
    the worker exits within a second or two."""
    worker = ("import os, sys, time\nsys.platform = 'darwin'  # no PR_SET_PDEATHSIG\n"
              "from laimco.experiments.executors import die_with_parent\n"
              "die_with_parent(os.getppid(), poll_s=0.05)\n"
              "print(os.getpid(), flush=True)\ntime.sleep(60)\n")
    middle = ("import subprocess, sys, time\n"
              f"subprocess.Popen([sys.executable, '-c', {worker!r}])\ntime.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", middle], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    pid = int(process.stdout.readline())
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 5

    def running() -> bool:
        try:
            return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            return False

    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = running()
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive


def test_a_quick_section_that_breaks_a_rule_is_named_under_quick_only(tmp_path: Path) -> None:
    file = _write(tmp_path, f'[sweep]\nkind = "fading"\nbase = "{RAYLEIGH}"\n'
                            'strategies = ["joint"]\nrealizations = 10\n'
                            '[axes]\n"channel.path_gain" = [1e-9]\n'
                            '[quick]\nstrategies = ["joint", "slsqp"]\n')
    assert load_sweep(file).strategies == ("joint",)
    code, output = _run_cli(["sweep", str(file), "--quick", "--out", str(tmp_path / "out")])
    flat = " ".join(output.split())
    assert code == 2 and "invalid with --quick" in flat and "'slsqp' is not vectorized" in flat
