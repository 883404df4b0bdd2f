"""A sweep's points and chunks: every point built and validated (scenario, profile, strategy
options) before any work, then grouped in chunks keyed by a hash of all their inputs, so a
finished chunk is recognized on a rerun and gives the same rows on any worker.

A `ChunkTask` carries everything a worker needs (the scenarios, the profile texts they run on)
and decodes it for the row producers (`scenario`, `profile`, `coords`, `rayleigh_gains`)."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laimco.config import Scenario, ScenarioError, scenario_from_dict
from laimco.experiments.sweep.file_model import Kind, OptionsSection
from laimco.experiments.sweep.producers import producer_for
from laimco.experiments.sweep.spec import SweepSpec, fail
from laimco.optimize.strategies import StrategyOptions
from laimco.profile import ModelProfile, parse_profile_text, resolve_profile_text

# a scenario file's TOML data before validation (a dict: it is the file's own form; it stays in
# this module, and leaves it as a validated Scenario)
TomlTable = dict[str, Any]

# 2: an infeasible row's split is null; infeasible_limits holds limit keys only
# 3: a fading realization with tied splits takes the split `solve` picks (least energy)
ENGINE_VERSION = 4  # part of every chunk key: bump when a kind's rows change meaning


@dataclass(frozen=True)
class Point:
    """One combination of axis values and its validated scenario, whose model.profile is the
    content hash of the profile it runs on (None for the bound kind, which runs no scenario)."""

    index: int
    coords: tuple[Any, ...]
    scenario: Scenario | None


@functools.lru_cache(maxsize=32)
def _parse_profile(text: str) -> ModelProfile:
    return parse_profile_text(text, "model.profile")


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to compute one chunk; `key` hashes all of it."""

    key: str
    kind: Kind
    axes: tuple[tuple[str, str], ...]  # (key, dtype) in order
    points: tuple[Point, ...]
    profiles: dict[str, str]  # content hash → profile JSON text
    strategies: tuple[str, ...]
    options: OptionsSection
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
        return len(self.points) * per_point * producer_for(self.kind).decisions_per_realization

    def scenario(self, point: Point) -> Scenario:
        assert point.scenario is not None  # only the bound kind has none, and asks for none
        return point.scenario

    def profile(self, point: Point) -> ModelProfile:
        """The profile the point runs on (parsed once per worker process)."""
        return _parse_profile(self.profiles[self.scenario(point).model.profile])

    def coords(self, point: Point) -> dict[str, Any]:
        """The point's axis values by key; a base scenario file is named by its stem (a dict:
        the row producers add them as table columns, whose names are the sweep's axis keys)."""
        return {key: Path(value).stem if key == "base" else value
                for (key, _), value in zip(self.axes, point.coords, strict=True)}

    def strategy_options(self) -> StrategyOptions:
        return StrategyOptions(**self.options.model_dump(exclude_none=True))

    def rayleigh_gains(self, point: Point, scenario: Scenario) -> np.ndarray:
        """`realizations` Rayleigh gains ḡ·|h|², |h|² ~ Exp(1) (docs/theory.md §2, eq. 2.8);
        with common random numbers every point of the sweep sees the same |h|² draws, else
        each point its own stream (seed, point index)."""
        sequence = (np.random.SeedSequence(self.seed) if self.common_random_numbers
                    else np.random.SeedSequence(self.seed, spawn_key=(point.index,)))
        return scenario.channel.to_channel().sample_gains(self.realizations,
                                                          np.random.default_rng(sequence))


def _set_key(data: TomlTable, key: str, value: Any) -> None:
    section, _, name = key.partition(".")
    data.setdefault(section, {})[name] = list(value) if isinstance(value, list) else value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Expansion:
    """The validated points of a sweep, grouped in chunks."""

    spec: SweepSpec
    points: list[Point]
    profiles: dict[str, str]
    chunks: list[ChunkTask] = field(default_factory=list)


class _Bases:
    """The base scenario files of a sweep, each read once; a fresh copy per point."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.read: dict[Path, TomlTable] = {}

    def copy(self, file: Path) -> TomlTable:
        if file not in self.read:
            where = f"base scenario {file}"
            try:
                self.read[file] = tomllib.loads(file.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                raise fail(self.spec.path, f"{where}: not a text file (not UTF-8): a scenario "
                                           "is TOML") from None
            except tomllib.TOMLDecodeError as err:
                raise fail(self.spec.path, f"{where}: not valid TOML: {err}") from None
            except OSError as err:
                raise fail(self.spec.path, f"{where}: cannot be read: "
                                           f"{err.strerror or err}") from None
        copied: TomlTable = json.loads(json.dumps(self.read[file]))
        return copied


def _point_data(spec: SweepSpec, bases: _Bases, coords: Sequence[Any]) -> TomlTable:
    """The scenario dict of one point: its base file, then [set], then its axis values."""
    file = spec.base
    for axis, value in zip(spec.axes, coords, strict=True):
        if axis.key == "base":
            file = (spec.path.parent / value).resolve()
    assert file is not None  # the file model requires sweep.base or a base axis
    data = bases.copy(file)
    for key, value in spec.overrides.items():
        _set_key(data, key, value)
    for axis, value in zip(spec.axes, coords, strict=True):
        if axis.key != "base":
            _set_key(data, axis.key, value)
    return data


def expand(spec: SweepSpec, cache: Path) -> Expansion:
    """Every point built and validated (scenario keys and values, profile, strategy options),
    then grouped in chunks of `spec.chunk_points`. Profiles are resolved by
    `laimco.profile.resolve_profile_text` (built-in names, files, "config:NAME" profiled at
    sweep.seq_len and cached in `cache/profiles`). Raises SweepError naming the point."""
    profiles: dict[str, str] = {}
    points: list[Point] = []
    bases = _Bases(spec)
    digest_of: dict[str, str] = {}  # profile name → content hash
    for index, coords in enumerate(itertools.product(*(a.values for a in spec.axes))):
        if spec.kind == "bound":
            points.append(Point(index, tuple(coords), None))
            continue
        described = ", ".join(f"{a.key} = {v!r}" for a, v in zip(spec.axes, coords, strict=True))
        where = f"point {index} ({described})"
        try:
            scenario = scenario_from_dict(_point_data(spec, bases, coords))
        except ScenarioError as err:
            raise fail(spec.path, f"{where}: {err}") from None
        name = scenario.model.profile
        if name not in digest_of:
            try:
                text = resolve_profile_text(name, seq_len=spec.seq_len,
                                            cache_dir=cache / "profiles")
            except (OSError, ValueError) as err:
                raise fail(spec.path, f"{where}: model.profile {name!r}: {err}") from None
            digest_of[name] = "sha256:" + _sha(text)
            profiles[digest_of[name]] = text
        resolved = scenario.model_copy(update={"model": scenario.model.model_copy(
            update={"profile": digest_of[name]})})
        _check_point(spec, scenario, profiles[digest_of[name]], where)
        points.append(Point(index, tuple(coords), resolved))
    expansion = Expansion(spec, points, profiles)
    expansion.chunks = [_chunk(spec, points[i:i + spec.chunk_points], profiles)
                        for i in range(0, len(points), spec.chunk_points)]
    return expansion


def _check_point(spec: SweepSpec, scenario: Scenario, profile_text: str, where: str) -> None:
    """Build the problem once and check each strategy's options against it."""
    from laimco.optimize.problem import build_problem

    try:
        profile = _parse_profile(profile_text)
        build_problem(scenario, profile)
    except (ScenarioError, ValueError) as err:
        raise fail(spec.path, f"{where}: {err}") from None
    if spec.kind == "robust" and scenario.channel.fading != "rayleigh":
        raise fail(spec.path, f"{where}: a robust sweep needs channel.fading = 'rayleigh' "
                              "and channel.outage_prob (set them in [set] or the base)")
    split = spec.options.split
    if "fixed-split" in spec.strategies and split is not None and not (
            0 <= int(split) <= profile.n_units):
        raise fail(spec.path, f"{where}: options.split = {split} but profile "
                              f"{profile.name!r} has splits 0..{profile.n_units}")
    ratio = spec.options.ratio if spec.options.ratio is not None else StrategyOptions.ratio
    if "fixed-ratio" in spec.strategies and not 0 <= ratio <= scenario.task.rho_max:
        raise fail(spec.path, f"{where}: options.ratio = {ratio} is outside "
                              f"[0, task.rho_max = {scenario.task.rho_max}]")


def _chunk(spec: SweepSpec, points: Sequence[Point], profiles: dict[str, str]) -> ChunkTask:
    used = {p.scenario.model.profile for p in points if p.scenario is not None}
    fields: dict[str, Any] = {  # ChunkTask's fields, keyed below by their JSON form
        "kind": spec.kind, "axes": tuple((a.key, a.dtype) for a in spec.axes),
        "points": tuple(points), "strategies": spec.strategies, "options": spec.options,
        "realizations": spec.realizations, "seed": spec.seed,
        "common_random_numbers": spec.common_random_numbers}
    if spec.kind == "bound":
        fields |= {"model": spec.model, "calibration_sentences": spec.calibration_sentences,
                   "heldout_sentences": spec.heldout_sentences}
    keyed = fields | {
        "points": [(p.index, list(p.coords), p.scenario.model_dump() if p.scenario else {})
                   for p in points],
        "options": spec.options.model_dump(exclude_none=True)}
    key = _sha(_canonical({"engine": ENGINE_VERSION, **keyed}))[:32]
    return ChunkTask(key=key, profiles={h: profiles[h] for h in sorted(used)}, **fields)
