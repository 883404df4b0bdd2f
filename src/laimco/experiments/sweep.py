"""Declarative, resumable sweeps: a TOML file → validated points → chunks keyed by a hash of
their inputs → one row table (Parquet or CSV) that a rerun reproduces bit for bit.

A sweep file (docs/study.md has the full reference):

    [sweep]
    kind = "design"                    # design | fading | robust | bound
    base = "../scenarios/minilm-phone.toml"   # relative to the sweep file
    strategies = ["joint", "tied"]     # names of laimco.optimize.STRATEGIES, or "all"
    realizations = 0                   # Rayleigh realizations per point (fading, robust)
    seed = 0
    [set]                              # fixed changes to the base scenario
    "task.min_split" = 1
    [axes]                             # the cartesian product of these, first axis slowest
    "task.latency_budget_s" = {start = 0.05, stop = 0.5, num = 10, scale = "log"}
    "channel.path_gain" = [1e-7, 1e-9]
    [options]                          # StrategyOptions: ratio, split, n_starts, seed
    [quick]                            # replaces keys (and axes) under --quick
    [limits]                           # max_evaluations, max_realizations_per_point

Kinds — what one row is:
* design: one (point, strategy): `solve()` at the scenario's design gain; the decision's fields.
* fading: one (point, strategy, realization): the strategy re-solved for one Rayleigh gain
  ḡ·|h|², |h|² ~ Exp(1) (eq. 2.8; instantaneous CSI), vectorized over realizations.
* robust: one (point, strategy, design): the decision made for g_ε = −ḡ ln(1−ε) ("outage",
  eq. 2.9) or for ḡ ("mean"), held fixed while the gain fades; counts the realizations whose
  latency or energy limit it breaks.
* bound: one pruning ratio of the real MiniLM (torch): measured D_w, D_y and task quality next
  to the laws' predicted D_w (docs/theory.md §3); axis "rho" only.

The file's schema is the pydantic model `laimco.experiments.sweep_file.SweepFile`. Everything
that can be wrong with a sweep file — an unknown key, a wrong type, an empty axis, an unknown
strategy, too much work for the cap, a value a scenario rejects, an output folder that cannot
be written — raises `SweepError` before any point is solved.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from laimco.config import Scenario, ScenarioError, scenario_from_dict
from laimco.experiments.sweep_file import (
    NAME_PATTERN,
    Kind,
    RangeAxis,
    check_size,
    read_sweep_file,
)
from laimco.experiments.sweep_file import (
    SweepError as SweepError,  # re-exported: callers catch sweep.SweepError
)

# 2: an infeasible row's split is null (was -1); infeasible_limits holds limit keys only
ENGINE_VERSION = 2  # part of every chunk key: bump when a kind's rows change meaning
Format = Literal["parquet", "csv"]
TIMING_COLUMNS = ("solve_time_s",)  # wall-clock columns: kept out of the reproducible table
# integer columns that are null where a row has no value (an infeasible row's split): null in
# Parquet, empty in CSV, NaN in the float64 arrays `read_columns` returns
NULLABLE_INT_COLUMNS = ("split",)
NULLABLE_INT = "Int64"  # their type name in a CSV table's second line
# what `infeasible_limits` may hold (comma-separated): the limits that, relaxed alone, make the
# strategy feasible (laimco.optimize.diagnose), or why no single one does
INFEASIBLE_LIMIT_KEYS = ("latency", "energy", "memory", "privacy", "jointly-too-tight",
                         "solver-found-none", "internal-check", "other")
LIMIT_TOL = 1e-9  # relative tolerance of a limit check (as laimco.optimize.evaluate)
_DEFAULT_CHUNK = {"design": 4, "fading": 1, "robust": 1, "bound": 1}


# --------------------------------------------------------------------------------------------
# the sweep file (validated by laimco.experiments.sweep_file)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One varied key ("section.key", "base" or, for the bound kind, "rho") and its values."""

    key: str
    values: tuple[Any, ...]
    dtype: str  # "int64" | "float64" | "string" | "bool"


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file, its axes expanded."""

    name: str
    path: Path
    kind: Kind
    base: Path | None
    overrides: dict[str, Any]
    axes: tuple[Axis, ...]
    strategies: tuple[str, ...]
    options: dict[str, Any]
    realizations: int
    seed: int
    chunk_points: int
    common_random_numbers: bool
    seq_len: int
    model: str
    calibration_sentences: int
    heldout_sentences: int
    quick: bool
    evaluations: int = 0  # the work it asks for (sweep_file.SweepFile.size)

    @property
    def n_points(self) -> int:
        return math.prod(len(a.values) for a in self.axes)


def _fail(path: Path, message: str) -> SweepError:
    return SweepError(f"{path}: {message}")


def _axis_dtype(values: Sequence[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "float64"
    return "string"


def _expand_axis(path: Path, key: str, spec: RangeAxis | list[Any]) -> Axis:
    values = spec.values() if isinstance(spec, RangeAxis) else list(spec)
    if len(set(map(repr, values))) != len(values):
        raise _fail(path, f"axis {key!r} repeats a value (a range's values are rounded to 12 "
                          "significant digits: use fewer of them)")
    return Axis(key, tuple(values), _axis_dtype(values))


def _existing_file(path: Path, relative: str, key: str) -> Path:
    candidate = (path.parent / relative).resolve()
    if not candidate.is_file():
        raise _fail(path, f"{key}: base scenario file {str(candidate)!r} does not exist")
    return candidate


def _corpus_sizes() -> tuple[int, int]:
    from laimco.data import calibration_sentences, heldout_sentences

    return len(calibration_sentences()), len(heldout_sentences())


def load_sweep(path: str | Path, *, quick: bool = False,
               max_evaluations: int | None = None) -> SweepSpec:
    """Read and validate a sweep file (its `[quick]` section applied when `quick`) and refuse
    it when it asks for more evaluations than the cap (`max_evaluations`, else the file's
    `[limits] max_evaluations`, default 10^7) — all before any axis is expanded. Every point is
    then checked by `expand`, still before any work."""
    path = Path(path)
    file = read_sweep_file(path, quick=quick)
    size = check_size(file, path, max_evaluations)
    sweep = file.sweep
    name = sweep.name or path.stem
    if not re.fullmatch(NAME_PATTERN, name):
        raise _fail(path, f"the file name {name!r} is not a safe folder name: give sweep.name "
                          "(letters, digits, '_', '-', '.'; no '/', no leading '.')")
    axes = tuple(_expand_axis(path, key, spec) for key, spec in file.axes.items())
    base = _existing_file(path, sweep.base, "sweep.base") if sweep.base is not None else None
    for axis in axes:
        if axis.key == "base":
            for i, value in enumerate(axis.values):
                _existing_file(path, value, f"axes.base[{i}]")
    if sweep.kind == "bound":
        available = _corpus_sizes()
        for key, wanted, have in zip(("calibration_sentences", "heldout_sentences"),
                                     (sweep.calibration_sentences, sweep.heldout_sentences),
                                     available, strict=True):
            if wanted > have:
                raise _fail(path, f"sweep.{key} = {wanted}: the shipped corpus has {have}")
    return SweepSpec(
        name=name, path=path.resolve(), kind=sweep.kind, base=base,
        overrides=dict(file.set), axes=axes, strategies=tuple(sweep.strategies or ()),
        options=file.options.model_dump(exclude_none=True), realizations=sweep.realizations,
        seed=sweep.seed, chunk_points=sweep.chunk_points or _DEFAULT_CHUNK[sweep.kind],
        common_random_numbers=sweep.common_random_numbers, seq_len=sweep.seq_len,
        model=sweep.model, calibration_sentences=sweep.calibration_sentences,
        heldout_sentences=sweep.heldout_sentences, quick=quick,
        evaluations=int(size.evaluations))


# --------------------------------------------------------------------------------------------
# expansion: points, profiles, chunks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One combination of axis values and its validated scenario (as a dict whose
    model.profile is the content hash of the profile it runs on)."""

    index: int
    coords: tuple[Any, ...]
    scenario: dict[str, Any]


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to compute one chunk; `key` hashes all of it."""

    key: str
    kind: Kind
    axes: tuple[tuple[str, str], ...]  # (key, dtype) in order
    points: tuple[Point, ...]
    profiles: dict[str, str]  # content hash → profile JSON text
    strategies: tuple[str, ...]
    options: dict[str, Any]
    realizations: int
    seed: int
    common_random_numbers: bool
    model: str = "minilm"
    calibration_sentences: int = 0
    heldout_sentences: int = 0

    @property
    def evaluations(self) -> int:
        """Scenario-realizations this chunk solves or evaluates (the progress unit)."""
        per_point = max(len(self.strategies), 1) * max(self.realizations, 1)
        return len(self.points) * per_point * (2 if self.kind == "robust" else 1)


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    section, _, name = key.partition(".")
    data.setdefault(section, {})[name] = value


def _profile_text(name: str, cache: Path, seq_len: int) -> str:
    """The JSON text of a profile, resolved as every command resolves it (built in,
    "config:NAME" profiled at `seq_len` and cached in `cache`, or a file)."""
    from laimco.profile import resolve_profile_text

    return resolve_profile_text(name, seq_len=seq_len, cache_dir=cache)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@dataclass
class Expansion:
    """The validated points of a sweep, grouped in chunks."""

    spec: SweepSpec
    points: list[Point]
    profiles: dict[str, str]
    chunks: list[ChunkTask] = field(default_factory=list)


def expand(spec: SweepSpec, cache: Path) -> Expansion:
    """Every point built and validated (scenario keys and values, profile, strategy options),
    then grouped in chunks of `spec.chunk_points`. Raises SweepError naming the point."""
    profiles: dict[str, str] = {}
    points: list[Point] = []
    bases: dict[Path, dict[str, Any]] = {}
    profile_by_name: dict[str, str] = {}

    def base_dict(file: Path) -> dict[str, Any]:
        if file not in bases:
            try:
                bases[file] = tomllib.loads(file.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                raise _fail(spec.path, f"base scenario {file}: not a text file (not UTF-8): "
                                       "a scenario is TOML") from None
            except tomllib.TOMLDecodeError as err:
                raise _fail(spec.path, f"base scenario {file}: not valid TOML: {err}") from None
            except OSError as err:
                raise _fail(spec.path, f"base scenario {file}: cannot be read: "
                                       f"{err.strerror or err}") from None
        copied: dict[str, Any] = json.loads(json.dumps(bases[file]))
        return copied

    for index, coords in enumerate(itertools.product(*(a.values for a in spec.axes))):
        described = ", ".join(f"{a.key} = {v!r}" for a, v in zip(spec.axes, coords, strict=True))
        if spec.kind == "bound":
            points.append(Point(index, tuple(coords), {}))
            continue
        file = spec.base
        for axis, value in zip(spec.axes, coords, strict=True):
            if axis.key == "base":
                file = (spec.path.parent / value).resolve()
        assert file is not None
        data = base_dict(file)
        for key, value in spec.overrides.items():
            _set_key(data, key, value)
        for axis, value in zip(spec.axes, coords, strict=True):
            if axis.key != "base":
                _set_key(data, axis.key, value)
        try:
            scenario = scenario_from_dict(data)
        except ScenarioError as err:
            raise _fail(spec.path, f"point {index} ({described}): {err}") from None
        name = scenario.model.profile
        if name not in profile_by_name:
            try:
                text = _profile_text(name, cache / "profiles", spec.seq_len)
            except (OSError, ValueError) as err:
                raise _fail(spec.path, f"point {index} ({described}): model.profile "
                                       f"{name!r}: {err}") from None
            digest = "sha256:" + _sha(text)
            profiles[digest] = text
            profile_by_name[name] = digest
        resolved = scenario.model_dump()
        resolved["model"]["profile"] = profile_by_name[name]
        _check_point(spec, scenario, profiles[profile_by_name[name]], index, described)
        points.append(Point(index, tuple(coords), resolved))
    expansion = Expansion(spec, points, profiles)
    expansion.chunks = [_chunk(spec, points[i:i + spec.chunk_points], profiles)
                        for i in range(0, len(points), spec.chunk_points)]
    return expansion


def _check_point(spec: SweepSpec, scenario: Scenario, profile_text: str, index: int,
                 described: str) -> None:
    """Build the problem once and check each strategy's options against it."""
    from laimco.optimize.problem import build_problem

    where = f"point {index} ({described})"
    try:
        profile = _parse_profile(profile_text)
        build_problem(scenario, profile)
    except (ScenarioError, ValueError) as err:
        raise _fail(spec.path, f"{where}: {err}") from None
    if spec.kind == "robust" and scenario.channel.fading != "rayleigh":
        raise _fail(spec.path, f"{where}: a robust sweep needs channel.fading = 'rayleigh' "
                               "and channel.outage_prob (set them in [set] or the base)")
    split = spec.options.get("split")
    if "fixed-split" in spec.strategies and split is not None and not (
            0 <= int(split) <= profile.n_units):
        raise _fail(spec.path, f"{where}: options.split = {split} but profile "
                               f"{profile.name!r} has splits 0..{profile.n_units}")
    ratio = float(spec.options.get("ratio", 0.5))
    if "fixed-ratio" in spec.strategies and not 0 <= ratio <= scenario.task.rho_max:
        raise _fail(spec.path, f"{where}: options.ratio = {ratio} is outside "
                               f"[0, task.rho_max = {scenario.task.rho_max}]")


def _chunk(spec: SweepSpec, points: Sequence[Point], profiles: dict[str, str]) -> ChunkTask:
    used = {p.scenario["model"]["profile"] for p in points if p.scenario}
    fields: dict[str, Any] = {
        "kind": spec.kind, "axes": tuple((a.key, a.dtype) for a in spec.axes),
        "points": tuple(points), "strategies": spec.strategies, "options": spec.options,
        "realizations": spec.realizations, "seed": spec.seed,
        "common_random_numbers": spec.common_random_numbers}
    if spec.kind == "bound":
        fields |= {"model": spec.model, "calibration_sentences": spec.calibration_sentences,
                   "heldout_sentences": spec.heldout_sentences}
    keyed = {k: ([(p.index, list(p.coords), p.scenario) for p in v] if k == "points" else v)
             for k, v in fields.items()}
    key = _sha(_canonical({"engine": ENGINE_VERSION, **keyed}))[:32]
    return ChunkTask(key=key, profiles={h: profiles[h] for h in sorted(used)}, **fields)


# --------------------------------------------------------------------------------------------
# computing a chunk (runs in a worker: every input comes with the task)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _parse_profile(text: str) -> Any:
    from laimco.profile import parse_profile_text

    return parse_profile_text(text, "model.profile")


def _fading_draws(task: ChunkTask, point: Point, scenario: Scenario) -> np.ndarray:
    """R Rayleigh gains ḡ·|h|² (eq. 2.8); with common random numbers every point of the sweep
    sees the same |h|² draws, else each point its own stream (seed, point index)."""
    sequence = (np.random.SeedSequence(task.seed) if task.common_random_numbers
                else np.random.SeedSequence(task.seed, spawn_key=(point.index,)))
    return scenario.channel.to_channel().sample_gains(task.realizations,
                                                      np.random.default_rng(sequence))


class _Rows:
    """Column lists that grow row by row (or block by block) into numpy arrays."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {}

    def add(self, n: int, **values: Any) -> None:
        for name, value in values.items():
            array = np.broadcast_to(np.asarray(value), (n,)) if np.ndim(value) == 0 else (
                np.asarray(value))
            self.columns.setdefault(name, []).append(array)

    def arrays(self, axes: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, parts in self.columns.items():
            joined = np.concatenate(parts) if parts else np.array([])
            dtype = dict(axes).get(name)
            if joined.dtype.kind in "US" or dtype == "string":
                joined = joined.astype(object)
            elif dtype == "float64" or name in NULLABLE_INT_COLUMNS:
                joined = joined.astype(np.float64)
            out[name] = joined
        return out


def _coords(task: ChunkTask, point: Point) -> dict[str, Any]:
    """The point's axis values by key; a base scenario file is named by its stem."""
    return {key: Path(value).stem if key == "base" else value
            for (key, _), value in zip(task.axes, point.coords, strict=True)}


def _limit_key(reason: str) -> str:
    """The key of one infeasibility reason of a Decision (one of INFEASIBLE_LIMIT_KEYS)."""
    head = reason.split(":", 1)[0].strip()
    if head in INFEASIBLE_LIMIT_KEYS[:4]:
        return head
    if "jointly too tight" in reason:
        return "jointly-too-tight"
    if "found no feasible point" in reason:
        return "solver-found-none"
    if reason.startswith("internal check failed"):
        return "internal-check"
    return "other"


def _limit_keys(reasons: Sequence[str]) -> str:
    """The limit keys of a decision's infeasibility reasons, comma-separated, each once."""
    return ",".join(dict.fromkeys(_limit_key(r) for r in reasons))


def _strategy_options(task: ChunkTask) -> Any:
    from laimco.optimize import StrategyOptions

    return StrategyOptions(**task.options)


def run_chunk(task: ChunkTask) -> dict[str, np.ndarray]:
    """The rows of one chunk as named columns (a pure function of the task, so a chunk gives
    the same bits on any worker; only the TIMING_COLUMNS differ from run to run)."""
    compute: Callable[[ChunkTask, _Rows], None] = {
        "design": _design_rows, "fading": _fading_rows, "robust": _robust_rows,
        "bound": _bound_rows}[task.kind]
    rows = _Rows()
    compute(task, rows)
    return rows.arrays(task.axes)


def _scenario_and_profile(task: ChunkTask, point: Point) -> tuple[Scenario, Any]:
    return (scenario_from_dict(point.scenario),
            _parse_profile(task.profiles[point.scenario["model"]["profile"]]))


def _design_rows(task: ChunkTask, rows: _Rows) -> None:
    from laimco.optimize import solve

    options = _strategy_options(task)
    for point in task.points:
        scenario, profile = _scenario_and_profile(task, point)
        weights = float(profile.column("n_prunable").sum())
        params = weights + float(profile.column("n_fixed").sum())
        split_table = profile.split_table()
        for name in task.strategies:
            d = solve(scenario, name, profile=profile, options=options)
            ok = d.success
            lat = d.latency_s or {}
            en = d.energy_j or {}
            nan = float("nan")
            pruned = nan
            if ok and weights > 0:
                assert d.split is not None and d.rho_device is not None
                pruned = (d.rho_device * split_table.prunable_device[d.split]
                          + (d.rho_server or 0.0) * split_table.prunable_server[d.split]
                          ) / weights
            rows.add(1, point=point.index, **_coords(task, point), strategy=name,
                     status=d.status, feasible=ok, split=d.split if ok else nan,
                     rho_device=d.rho_device if ok else nan,
                     rho_server=d.rho_server if ok else nan,
                     power_w=d.power_w if ok else nan,
                     freq_device_hz=d.freq_device_hz if ok else nan,
                     freq_server_hz=d.freq_server_hz if ok else nan,
                     objective=d.objective if ok else nan,
                     latency_s=lat.get("total", nan), latency_device_s=lat.get("device", nan),
                     latency_uplink_s=lat.get("uplink", nan),
                     latency_server_s=lat.get("server", nan),
                     energy_j=en.get("total", nan), energy_compute_j=en.get("compute", nan),
                     energy_uplink_j=en.get("uplink", nan),
                     memory_bytes=d.memory_bytes if ok else nan,
                     binding=",".join(d.binding),
                     infeasible_limits=_limit_keys(d.reasons),
                     infeasible_reasons=" | ".join(d.reasons),
                     pruned_fraction=pruned, n_units=profile.n_units, weights_total=weights,
                     params_total=params,
                     solve_time_s=d.solve_time_s)


def _fading_rows(task: ChunkTask, rows: _Rows) -> None:
    from laimco.optimize import STRATEGIES
    from laimco.optimize.problem import build_problem
    from laimco.optimize.strategies import rule_pairs

    options = _strategy_options(task)
    for point in task.points:
        scenario, profile = _scenario_and_profile(task, point)
        gains = _fading_draws(task, point, scenario)
        r = gains.size
        for name in task.strategies:
            spec = STRATEGIES[name]
            best = np.full(r, np.inf)
            split = np.zeros(r, dtype=np.int64)
            rho_d = np.full(r, np.nan)
            rho_s = np.full(r, np.nan)
            # every (device rule, server rule) pair, as `solve` does; the least objective wins
            for pair in rule_pairs(scenario, profile, name):
                problem = build_problem(scenario, profile, gain=gains, rules=pair)
                if spec.splits is not None:
                    problem = build_problem(scenario, profile, gain=gains, rules=pair,
                                            split_restriction=spec.splits(problem, options))
                solution = spec.ratios(problem, spec.policy, options)
                objective = np.asarray(solution.objective).reshape(r, -1)
                # the least objective over splits (ties: the lowest split)
                pair_split = np.argmin(objective, axis=1)
                pair_best = objective[np.arange(r), pair_split]
                better = pair_best < best
                best = np.where(better, pair_best, best)
                split = np.where(better, pair_split, split)
                for out, a in ((rho_d, solution.rho_device), (rho_s, solution.rho_server)):
                    out[better] = np.asarray(a).reshape(r, -1)[np.arange(r), pair_split][better]
            feasible = np.isfinite(best)
            rows.add(r, point=point.index, **_coords(task, point), strategy=name,
                     realization=np.arange(r, dtype=np.int64), gain=gains, feasible=feasible,
                     split=np.where(feasible, split, np.nan),
                     rho_device=np.where(feasible, rho_d, np.nan),
                     rho_server=np.where(feasible, rho_s, np.nan),
                     objective=np.where(feasible, best, np.nan))


def violations_under_fading(problem: Any, decision: Any, gains: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """(latency broken, energy broken) per gain for a decision held fixed: its power,
    frequencies, split and ratios, with the upload time S/r(p, g) of each gain (eq. 2.4)."""
    bits = float(problem.upload_bits[decision.split])
    channel = problem.channel
    upload = (bits / channel.rate_bps(decision.power_w, gains) if bits > 0
              else np.zeros_like(gains))
    lat, en = decision.latency_s, decision.energy_j
    latency = lat["device"] + upload + lat["server"] + lat["downlink"]
    energy = en["compute"] + decision.power_w * upload
    sc = problem.scenario
    return (latency > sc.task.latency_budget_s * (1 + LIMIT_TOL),
            energy > sc.device.energy_budget_j * (1 + LIMIT_TOL))


def _robust_rows(task: ChunkTask, rows: _Rows) -> None:
    from laimco.optimize import solve
    from laimco.optimize.problem import build_problem

    options = _strategy_options(task)
    for point in task.points:
        scenario, profile = _scenario_and_profile(task, point)
        gains = _fading_draws(task, point, scenario)
        for name in task.strategies:
            for design in ("outage", "mean"):
                designed = (scenario if design == "outage"
                            else scenario.replace(channel={"fading": "none"}))
                d = solve(designed, name, profile=profile, options=options)
                problem = build_problem(designed, profile)
                nan = float("nan")
                if d.success:
                    late, costly = violations_under_fading(problem, d, gains)
                    broken = late | costly
                    counts = (int(broken.sum()), int(late.sum()), int(costly.sum()))
                else:
                    counts = (0, 0, 0)
                rows.add(1, point=point.index, **_coords(task, point), strategy=name,
                         design=design, design_gain=float(np.ravel(problem.gain)[0]),
                         status=d.status, feasible=d.success,
                         split=d.split if d.success else nan,
                         rho_device=d.rho_device if d.success else nan,
                         rho_server=d.rho_server if d.success else nan,
                         power_w=d.power_w if d.success else nan,
                         objective=d.objective if d.success else nan,
                         realizations=gains.size, violations=counts[0],
                         latency_violations=counts[1], energy_violations=counts[2],
                         violation_rate=counts[0] / gains.size if d.success else nan)


@functools.lru_cache(maxsize=1)
def _bound_context(model: str, n_calibration: int, n_heldout: int) -> Any:
    """The loaded model, its tokenized texts and unpruned outputs (once per process)."""
    import torch

    from laimco.data import calibration_sentences, heldout_sentences
    from laimco.experiments.text_batches import text_batches
    from laimco.models.loading import load_model
    from laimco.models.split import run_full

    torch.manual_seed(0)
    loaded = load_model(model)
    calibration = list(text_batches(loaded, calibration_sentences()[:n_calibration]))
    heldout = list(text_batches(loaded, heldout_sentences()[:n_heldout]))
    with torch.no_grad():
        reference = (torch.cat([run_full(loaded, b) for b in calibration]),
                     torch.cat([run_full(loaded, b) for b in heldout]))
    return loaded, calibration, heldout, reference


def _bound_rows(task: ChunkTask, rows: _Rows) -> None:
    import torch

    from laimco.measure.metrics import (
        mean_cosine_similarity,
        output_distortion_per_input,
        retrieval_agreement_at_k,
    )
    from laimco.models.pruned import prune_split_model
    from laimco.profile import load_profile
    from laimco.theory.distortion_bound import LAW_NAMES, SplitDistortionBound

    loaded, calibration, heldout, (ref_cal, ref_held) = _bound_context(
        task.model, task.calibration_sentences, task.heldout_sentences)
    profile = load_profile("minilm-l6") if task.model == "minilm" else None
    for point in task.points:
        rho = float(point.coords[0])
        pruned = prune_split_model(loaded, loaded.n_units, rho, 0.0, "magnitude")
        with torch.no_grad():
            y_cal = torch.cat([pruned(b) for b in calibration])
            y_held = torch.cat([pruned(b) for b in heldout])
        d_cal = output_distortion_per_input(ref_cal, y_cal)
        d_held = output_distortion_per_input(ref_held, y_held)
        laws = {}
        for law in LAW_NAMES:
            if profile is None:
                laws[f"law_{law}"] = float("nan")
                continue
            rho_all = np.full(profile.n_units + 1, rho)
            laws[f"law_{law}"] = float(SplitDistortionBound(profile, law, 1.0, 1.0).device(
                rho_all)[profile.n_units])
        rows.add(1, point=point.index, rho=rho,
                 d_w=pruned.reports["device"].parameter_distortion,
                 sparsity=pruned.reports["device"].sparsity,
                 d_y_calibration_mean=float(d_cal.mean()),
                 d_y_calibration_max=float(d_cal.max()),
                 d_y_heldout_mean=float(d_held.mean()), d_y_heldout_max=float(d_held.max()),
                 cosine_heldout=mean_cosine_similarity(ref_held, y_held),
                 retrieval_at_10_heldout=retrieval_agreement_at_k(
                     ref_held, y_held, min(10, ref_held.shape[0] - 1)), **laws)


# --------------------------------------------------------------------------------------------
# storage: one part file per chunk, then the table in chunk order
# --------------------------------------------------------------------------------------------


def _dtype_name(array: np.ndarray, name: str = "") -> str:
    if name in NULLABLE_INT_COLUMNS:
        return NULLABLE_INT
    if array.dtype == object:
        return "string"
    if array.dtype.kind == "b":
        return "bool"
    if array.dtype.kind in "iu":
        return "int64"
    return "float64"


def _format_value(value: Any, dtype: str) -> str:
    if dtype == NULLABLE_INT:
        return "" if math.isnan(value) else str(int(value))
    if dtype == "float64":
        return repr(float(value))
    if dtype == "bool":
        return "true" if value else "false"
    return str(value)


def _parse_column(values: list[str], dtype: str) -> np.ndarray:
    if dtype == "float64":
        return np.array([float(v) for v in values], dtype=np.float64)
    if dtype == NULLABLE_INT:
        return np.array([float(v) if v else np.nan for v in values], dtype=np.float64)
    if dtype == "int64":
        return np.array([int(v) for v in values], dtype=np.int64)
    if dtype == "bool":
        return np.array([v == "true" for v in values], dtype=bool)
    return np.array(values, dtype=object)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _require_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise SweepError("Parquet tables need pyarrow: pip install 'laimco[study]', or use "
                         "--format csv") from None
    return pyarrow


def _arrow_table(columns: dict[str, np.ndarray]) -> Any:
    pa = _require_pyarrow()
    arrays = {}
    for name, array in columns.items():
        kind = _dtype_name(array, name)
        if kind == NULLABLE_INT:
            null = np.isnan(array)
            arrays[name] = pa.array(np.where(null, 0, array).astype(np.int64), mask=null,
                                    type=pa.int64())
        else:
            arrays[name] = (pa.array(array.tolist(), type=pa.string()) if kind == "string"
                            else pa.array(array))
    return pa.table(arrays)


def write_columns(path: Path, columns: dict[str, np.ndarray], fmt: Format) -> None:
    """Write named columns as one Parquet or CSV file, atomically (temporary file + rename)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = _arrow_table(columns)
        _atomic_write(path, lambda p: pq.write_table(table, p, compression="zstd"))
        return
    names = list(columns)
    dtypes = [_dtype_name(columns[n], n) for n in names]

    def write(p: Path) -> None:
        with p.open("w", newline="") as handle:
            out = csv.writer(handle, lineterminator="\n")
            out.writerow(names)
            out.writerow(dtypes)
            for row in zip(*(columns[n] for n in names), strict=True):
                out.writerow(_format_value(v, t) for v, t in zip(row, dtypes, strict=True))
    _atomic_write(path, write)


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """Named numpy columns of a Parquet or CSV file written by `write_columns` (the
    NULLABLE_INT_COLUMNS as float64, NaN where null)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        out = {}
        for name in table.column_names:
            column = table.column(name)
            array = column.to_numpy(zero_copy_only=False)
            if name in NULLABLE_INT_COLUMNS:
                array = array.astype(np.float64)
            out[name] = array.astype(object) if column.type == "string" else array
        return out
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        names = next(reader)
        dtypes = next(reader)
        values: list[list[str]] = [[] for _ in names]
        for row in reader:
            for i, v in enumerate(row):
                values[i].append(v)
    return {n: _parse_column(v, t) for n, v, t in zip(names, values, dtypes, strict=True)}


def _consolidate(parts: Sequence[Path], target: Path, fmt: Format,
                 keep: Callable[[str], bool]) -> None:
    """Concatenate the chunk files in order into `target`, one chunk in memory at a time."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        def write(p: Path) -> None:
            writer = None
            try:
                for part in parts:
                    table = pq.read_table(part)
                    table = table.select([n for n in table.column_names if keep(n)])
                    if writer is None:
                        writer = pq.ParquetWriter(p, table.schema, compression="zstd")
                    writer.write_table(table)
            finally:
                if writer is not None:
                    writer.close()
        _atomic_write(target, write)
        return

    def write_csv(p: Path) -> None:
        with p.open("w", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            for i, part in enumerate(parts):
                with part.open(newline="") as handle:
                    reader = csv.reader(handle)
                    header, dtypes = next(reader), next(reader)
                    chosen = [j for j, n in enumerate(header) if keep(n)]
                    if i == 0:
                        writer.writerow([header[j] for j in chosen])
                        writer.writerow([dtypes[j] for j in chosen])
                    for row in reader:
                        writer.writerow([row[j] for j in chosen])
    _atomic_write(target, write_csv)


# --------------------------------------------------------------------------------------------
# running a sweep
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """Where the table is and what the run did."""

    table: Path
    timings: Path | None
    n_points: int
    n_chunks: int
    chunks_run: int
    evaluations_run: int
    seconds: float
    complete: bool


def table_path(out: Path, fmt: Format) -> Path:
    return out / f"results.{fmt}"


def _timed_chunk(task: ChunkTask) -> tuple[str, dict[str, np.ndarray], float]:
    started = time.perf_counter()
    columns = run_chunk(task)
    return task.key, columns, time.perf_counter() - started


def run_sweep(spec: SweepSpec, out: str | Path, *, executor: Any = None, fmt: Format = "parquet",
              progress: bool = True, console: Any = None) -> SweepResult:
    """Expand, run every chunk not finished yet (in `executor`, default in-process), write each
    chunk's rows as it finishes, then the whole table in chunk order.

    `out/parts/KEY.FMT` is one finished chunk; a rerun skips those, so an interrupted sweep
    loses at most the chunks in flight. `out/results.FMT` (no wall-clock columns) is the same
    bytes whichever executor computed it and however often it was interrupted;
    `out/timings.FMT` holds the solve times of design sweeps."""
    from laimco.experiments.executors import InProcessExecutor

    if fmt == "parquet":
        _require_pyarrow()
    started = time.perf_counter()
    out = Path(out)
    check_output_folder(out, spec)
    created = not out.exists()
    try:
        # every point validated before any chunk runs (config: profiles are cached in out/)
        expansion = expand(spec, out)
        parts_dir = out / "parts"
        parts_dir.mkdir(parents=True, exist_ok=True)
    except (SweepError, OSError) as err:
        if created and out.is_dir():
            shutil.rmtree(out)  # this call made it: leave no half-written folder
        if isinstance(err, OSError):
            raise SweepError(f"cannot write the output folder {str(out)!r}: "
                             f"{err.strerror or err}") from None
        raise
    chunks = expansion.chunks
    part_of = {c.key: parts_dir / f"{c.key}.{fmt}" for c in chunks}
    todo = [c for c in chunks if not part_of[c.key].is_file()]
    by_key = {c.key: c for c in todo}
    table = table_path(out, fmt)
    if todo:
        table.unlink(missing_ok=True)  # never leave a table that does not match the parts
    _write_manifest(out, expansion, fmt, complete=False)
    # a bound sweep needs torch and the real model: it always runs in this process
    executor = InProcessExecutor() if (executor is None or spec.kind == "bound") else executor
    evaluations = 0
    with _ProgressBar(spec, chunks, todo, progress, console) as advance:
        for key, columns, _ in executor.map_unordered(_timed_chunk, todo):
            write_columns(part_of[key], columns, fmt)
            task = by_key[key]
            evaluations += task.evaluations
            advance(task.evaluations)
    parts = [part_of[c.key] for c in chunks]
    _consolidate(parts, table, fmt, keep=lambda n: n not in TIMING_COLUMNS)
    timings = None
    if spec.kind == "design":
        timings = out / f"timings.{fmt}"
        _consolidate(parts, timings, fmt,
                     keep=lambda n: n in ("point", "strategy", *TIMING_COLUMNS))
    _write_manifest(out, expansion, fmt, complete=True)
    return SweepResult(table=table, timings=timings, n_points=len(expansion.points),
                       n_chunks=len(chunks), chunks_run=len(todo), evaluations_run=evaluations,
                       seconds=time.perf_counter() - started, complete=True)


def check_output_folder(out: Path, spec: SweepSpec) -> None:
    """Refuse an output folder that cannot hold this sweep, before anything is written: a
    file, a path under a file, an unwritable place, a non-empty folder laimco did not write
    (no manifest.json), or the folder of another sweep."""
    shown = repr(str(out))
    if out.exists() and not out.is_dir():
        raise SweepError(f"output folder {shown} is a file: give a folder")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SweepError(f"output folder {shown} is under the file {str(existing)!r}: "
                         "give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SweepError(f"output folder {shown}: {str(existing)!r} is not writable")
    if existing != out or {p.name for p in out.iterdir()} <= {"profiles"}:
        return  # new, empty, or holding only the profile cache `expand` writes
    manifest = out / "manifest.json"
    try:
        written = json.loads(manifest.read_text())
        name, kind = written["name"], written["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SweepError(f"output folder {shown} holds files laimco did not write (no sweep "
                         "manifest.json): give a new or empty folder") from None
    if (name, kind) != (spec.name, spec.kind):
        raise SweepError(f"output folder {shown} holds the {kind} sweep {name!r}, not "
                         f"{spec.name!r}: give another folder")


def _write_manifest(out: Path, expansion: Expansion, fmt: Format, complete: bool) -> None:
    spec = expansion.spec
    manifest = {
        "name": spec.name, "kind": spec.kind, "sweep_file": str(spec.path),
        "quick": spec.quick, "format": fmt, "engine_version": ENGINE_VERSION,
        "n_points": len(expansion.points), "strategies": list(spec.strategies),
        "realizations": spec.realizations, "seed": spec.seed,
        "axes": [{"key": a.key, "values": list(a.values)} for a in spec.axes],
        "set": spec.overrides, "options": spec.options,
        "base": str(spec.base) if spec.base else None,
        "chunks": [c.key for c in expansion.chunks], "complete": complete,
    }
    text = json.dumps(manifest, indent=1) + "\n"

    def write(path: Path) -> None:
        path.write_text(text)
    _atomic_write(out / "manifest.json", write)


class _ProgressBar:
    """A rich progress bar over scenario-realizations with rate and ETA (no-op when off)."""

    def __init__(self, spec: SweepSpec, chunks: Sequence[ChunkTask],
                 todo: Sequence[ChunkTask], enabled: bool, console: Any) -> None:
        self.enabled = enabled and bool(todo)
        self.total = sum(c.evaluations for c in todo)
        skipped = len(chunks) - len(todo)
        self.description = (f"{spec.name}: {len(todo)} chunks"
                            + (f" ({skipped} done before)" if skipped else ""))
        self.console = console

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _RateColumn(), TimeElapsedColumn(),
            console=self.console or Console(stderr=True))
        self.progress.start()
        task = self.progress.add_task(self.description, total=self.total)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()


class _RateColumn(ProgressColumn):
    """Scenario-realizations per second since the start, and the time left at that rate
    (rich's own estimate follows the last few updates, which chunks make jumpy)."""

    def render(self, task: Any) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("… /s  ETA …", style="progress.data.speed")
        speed = task.completed / elapsed
        shown = next((f"{speed / scale:.1f}{unit}" for unit, scale in (("M", 1e6), ("k", 1e3))
                      if speed >= scale), f"{speed:.1f}")
        left = max(task.total - task.completed, 0) / speed
        minutes, seconds = divmod(round(left), 60)
        return Text(f"{shown} /s  ETA {minutes}:{seconds:02d}", style="progress.data.speed")


def read_table(out: str | Path) -> dict[str, np.ndarray]:
    """The results table of a finished sweep folder, as named numpy columns."""
    out = Path(out)
    manifest = json.loads((out / "manifest.json").read_text())
    if not manifest.get("complete"):
        raise SweepError(f"{out}: the sweep has not finished; rerun it to complete the table")
    return read_columns(table_path(out, manifest["format"]))


def describe(spec: SweepSpec) -> str:
    """One line per axis, for the command line."""
    lines = [f"sweep {spec.name!r} ({spec.kind}): {spec.n_points} points"
             + (f" × {len(spec.strategies)} strategies" if spec.strategies else "")
             + (f" × {spec.realizations} realizations" if spec.realizations else "")]
    for axis in spec.axes:
        shown = ", ".join(map(str, axis.values[:4])) + (" …" if len(axis.values) > 4 else "")
        lines.append(f"  {axis.key}: {len(axis.values)} values ({shown})")
    return "\n".join(lines)
