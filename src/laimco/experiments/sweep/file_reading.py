"""Reading a sweep file: TOML → the validated `SweepFile` of the mode that will run (`[quick]`
merged in under `--quick`), pydantic's errors turned into one line per problem naming the key and
what is allowed, and the cap on the work one sweep may ask for (docs/study.md, "Sweep files")."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from laimco.experiments.sweep.errors import SweepError
from laimco.experiments.sweep.file_model import (
    DEFAULT_MAX_REALIZATIONS,
    LIST_TAG,
    RANGE_TAG,
    LimitsSection,
    OptionsSection,
    QuickSection,
    RangeAxis,
    SweepFile,
    SweepSection,
    SweepSize,
    did_you_mean,
    shown_value,
)


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        after_axis_key = i >= 2 and loc[i - 2] == "axes"
        if after_axis_key and part in (RANGE_TAG, LIST_TAG):
            continue
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]"]
        elif part.isidentifier():
            parts.append(part)
        else:
            parts.append(repr(part))
    return ".".join(parts)


_FRIENDLY = {
    "int_type": "must be a whole number (an integer)",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "finite_number": "must be a finite number",
    "string_pattern_mismatch": "must be a safe name: a letter or digit, then letters, digits, "
                               "'_', '-' or '.' (at most 64 characters: one folder name, "
                               "no '/', no leading '.')",
}


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys of the table an unknown key sits in."""
    if RANGE_TAG in loc[2:]:
        return list(RangeAxis.model_fields)
    tables: dict[Any, type[BaseModel]] = {
        "sweep": SweepSection, "options": OptionsSection, "limits": LimitsSection,
        "quick": QuickSection}
    parent = tables.get(loc[-2] if len(loc) > 1 else None, SweepFile)
    return list(parent.model_fields)


def describe_errors(error: ValidationError) -> list[str]:
    """One line per problem: the key, what is wrong and what is allowed, the value given."""
    lines = []
    for item in error.errors():
        where = _location(item["loc"])
        message = _FRIENDLY.get(item["type"], item["msg"])
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(item["loc"])
            lines.append(f"{where}: unknown key{did_you_mean(str(item['loc'][-1]), allowed)}; "
                         f"allowed here: {', '.join(allowed)}")
            continue
        if item["type"] == "literal_error":
            message = "must be " + item["msg"].removeprefix("Input should be ")
        elif message.startswith("Input should be "):
            message = "must be " + message.removeprefix("Input should be ")
        got = item.get("input")
        custom = item["type"] not in _FRIENDLY and item["msg"] == message
        shown = "" if custom or isinstance(got, dict) or item["type"] == "missing" else (
            f" (got {shown_value(got)})")
        lines.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    return lines


def read_sweep_file(path: str | Path, *, quick: bool = False) -> SweepFile:
    """Read and validate a sweep file; with `quick`, the file as --quick runs it (both the
    file and its quick version must validate)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {str(path)!r} does not exist (or is not a file)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SweepError(f"{path}: not a text file (not UTF-8): a sweep file is TOML"
                             ) from None
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise SweepError(f"{path}: cannot be read: {err.strerror or err}") from None
    try:
        file = SweepFile.model_validate(data)
    except ValidationError as err:
        raise SweepError(f"{path}: invalid sweep file:\n  "
                             + "\n  ".join(describe_errors(err))) from None
    if not quick:
        return file
    try:
        return file.with_quick()
    except ValidationError as err:
        raise SweepError(f"{path}: invalid with --quick ([quick] merged in):\n  "
                             + "\n  ".join(describe_errors(err))) from None


def _count(n: float) -> str:
    return f"{n:,.0f}" if math.isfinite(n) and n < 1e18 else (
        "an unbounded number of" if not math.isfinite(n) else f"{n:.3g}")


def check_size(file: SweepFile, path: Path, max_evaluations: int | None = None) -> SweepSize:
    """Refuse, before anything is expanded, a sweep that asks for more evaluations than the
    cap (`max_evaluations`, else `[limits] max_evaluations`, default 10^7) or more
    realizations per point than one point can hold in memory."""
    size = file.size()
    sweep, limits = file.sweep, file.limits
    if sweep.kind in DEFAULT_MAX_REALIZATIONS:
        cap = limits.max_realizations_per_point or DEFAULT_MAX_REALIZATIONS[sweep.kind]
        if sweep.realizations > cap:
            raise SweepError(
                f"{path}: sweep.realizations = {sweep.realizations:,} is more than the "
                f"{cap:,} per point a {sweep.kind} sweep allows (each point holds all its "
                f"realizations in memory at once, about 10 kB each in a fading sweep). Use "
                f"fewer, or raise the limit with [limits] max_realizations_per_point = "
                f"{sweep.realizations}")
    cap = max_evaluations if max_evaluations is not None else limits.max_evaluations
    if size.evaluations > cap:
        raise SweepError(
            f"{path}: this sweep asks for {_count(size.evaluations)} evaluations "
            f"({_count(size.points)} points × {_count(size.per_point)} per point: strategies × "
            f"realizations, a robust point twice, slsqp n_starts times), more than the limit "
            f"of {cap:,}. Shrink the axes, or raise the limit with [limits] max_evaluations = "
            f"{_count(size.evaluations).replace(',', '_')} in the file or "
            f"`laimco sweep --max-evaluations N`")
    return size
