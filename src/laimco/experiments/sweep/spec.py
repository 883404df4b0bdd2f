"""A validated sweep file with its axes expanded: `load_sweep(path) → SweepSpec`, everything
checked that can be checked without building a scenario (docs/study.md, "Sweep files")."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laimco.experiments.sweep.errors import SweepError
from laimco.experiments.sweep.file_model import NAME_PATTERN, Kind, OptionsSection, RangeAxis
from laimco.experiments.sweep.file_reading import check_size, read_sweep_file
from laimco.experiments.sweep.producers import producer_for


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
    # [set]: "section.key" → value (a list for list-valued keys such as uplink.activation_bits)
    overrides: dict[str, bool | int | float | str | list[bool | int | float | str]]
    axes: tuple[Axis, ...]
    strategies: tuple[str, ...]
    options: OptionsSection
    realizations: int
    seed: int
    chunk_points: int
    common_random_numbers: bool
    seq_len: int
    model: str
    calibration_sentences: int
    heldout_sentences: int
    quick: bool
    evaluations: int = 0  # the work it asks for (file_model.SweepFile.size)

    @property
    def n_points(self) -> int:
        return math.prod(len(a.values) for a in self.axes)


def fail(path: Path, message: str) -> SweepError:
    """A SweepError that names the sweep file."""
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
        raise fail(path, f"axis {key!r} repeats a value (a range's values are rounded to 12 "
                         "significant digits: use fewer of them)")
    return Axis(key, tuple(values), _axis_dtype(values))


def existing_file(path: Path, relative: str, key: str) -> Path:
    """A base scenario file named relative to the sweep file; it must exist."""
    candidate = (path.parent / relative).resolve()
    if not candidate.is_file():
        raise fail(path, f"{key}: base scenario file {str(candidate)!r} does not exist")
    return candidate


def _corpus_sizes() -> tuple[int, int]:
    from laimco.data import calibration_sentences, heldout_sentences

    return len(calibration_sentences()), len(heldout_sentences())


def load_sweep(path: str | Path, *, quick: bool = False,
               max_evaluations: int | None = None) -> SweepSpec:
    """Read and validate a sweep file (its `[quick]` section applied when `quick`) and refuse
    it when it asks for more evaluations than the cap (`max_evaluations`, else the file's
    `[limits] max_evaluations`, default 10^7) — all before any axis is expanded. Every point is
    then checked by `expansion.expand`, still before any work."""
    path = Path(path)
    file = read_sweep_file(path, quick=quick)
    size = check_size(file, path, max_evaluations)
    sweep = file.sweep
    name = sweep.name or path.stem
    if not re.fullmatch(NAME_PATTERN, name):
        raise fail(path, f"the file name {name!r} is not a safe folder name: give sweep.name "
                         "(letters, digits, '_', '-', '.'; no '/', no leading '.')")
    axes = tuple(_expand_axis(path, key, spec) for key, spec in file.axes.items())
    base = existing_file(path, sweep.base, "sweep.base") if sweep.base is not None else None
    for axis in axes:
        if axis.key == "base":
            for i, value in enumerate(axis.values):
                existing_file(path, value, f"axes.base[{i}]")
    if sweep.kind == "bound":
        available = _corpus_sizes()
        for key, wanted, have in zip(("calibration_sentences", "heldout_sentences"),
                                     (sweep.calibration_sentences, sweep.heldout_sentences),
                                     available, strict=True):
            if wanted > have:
                raise fail(path, f"sweep.{key} = {wanted}: the shipped corpus has {have}")
    return SweepSpec(
        name=name, path=path.resolve(), kind=sweep.kind, base=base,
        overrides=dict(file.set), axes=axes, strategies=tuple(sweep.strategies or ()),
        options=file.options, realizations=sweep.realizations,
        seed=sweep.seed,
        chunk_points=sweep.chunk_points or producer_for(sweep.kind).chunk_points,
        common_random_numbers=sweep.common_random_numbers, seq_len=sweep.seq_len,
        model=sweep.model, calibration_sentences=sweep.calibration_sentences,
        heldout_sentences=sweep.heldout_sentences, quick=quick,
        evaluations=int(size.evaluations))


def describe(spec: SweepSpec) -> str:
    """One line per axis, for the command line."""
    lines = [f"sweep {spec.name!r} ({spec.kind}): {spec.n_points} points"
             + (f" × {len(spec.strategies)} strategies" if spec.strategies else "")
             + (f" × {spec.realizations} realizations" if spec.realizations else "")]
    for axis in spec.axes:
        shown = ", ".join(map(str, axis.values[:4])) + (" …" if len(axis.values) > 4 else "")
        lines.append(f"  {axis.key}: {len(axis.values)} values ({shown})")
    return "\n".join(lines)
