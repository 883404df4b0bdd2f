"""The sweep file (docs/study.md, "Sweep files") as a pydantic model: every section, key, type
and range is checked, with the whole file's problems reported at once, each naming its key, what
is allowed and, for an unknown key, the likely intended spelling (the messages are
`file_reading.describe_errors`).

`SweepFile.size()` counts the work a file asks for without expanding anything; reading a file
and refusing one above the evaluation cap is `laimco.experiments.sweep.file_reading`, expanding
it into points and chunks `laimco.experiments.sweep.expansion`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

Kind = Literal["design", "fading", "robust", "bound"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # one safe path component
DEFAULT_MAX_EVALUATIONS = 10_000_000
# one fading point holds all its realizations at once: about 10 kB each for MiniLM (9.4 GB
# peak measured at 10^6), so the default keeps a point near 1 GB; robust rows hold only gains
DEFAULT_MAX_REALIZATIONS = {"fading": 100_000, "robust": 10_000_000}
MAX_N_STARTS = 10_000
MAX_SEQ_LEN = 1 << 20
MAX_SEED = 2**63 - 1
RANGE_TAG, LIST_TAG = "range", "values"


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Table(BaseModel):
    """A TOML table with a fixed set of keys: refuses a scalar in its place and names unknown
    keys with the likely misspelling."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _is_a_table(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise PydanticCustomError("not_a_table", "must be a table (a [section] or an "
                                      "inline table), got {got}", {"got": shown_value(data)})
        return data


def shown_value(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _scalar(value: Any) -> bool | int | float | str:
    """An axis or [set] value: a boolean, integer, finite float or string."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "must be a finite number, got {got}",
                                      {"got": repr(value)})
        return value
    raise PydanticCustomError("scalar", "must be a number, a string or a boolean, got {got}",
                              {"got": shown_value(value)})


Scalar = Annotated[bool | int | float | str, PlainValidator(_scalar)]


def _set_value(value: Any) -> bool | int | float | str | list[bool | int | float | str]:
    """A [set] value: a scalar, or a non-empty list of scalars of one kind (for list-valued
    scenario keys such as `uplink.activation_bits`)."""
    if isinstance(value, list):
        return _values_list([_scalar(v) for v in value])
    return _scalar(value)


SetValue = Annotated[bool | int | float | str | list[bool | int | float | str],
                     PlainValidator(_set_value)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


def scenario_keys() -> list[str]:
    """Every "section.key" a scenario file knows (laimco.config.Scenario)."""
    from laimco.config import Scenario

    keys = []
    for section, info in Scenario.model_fields.items():
        keys += [f"{section}.{name}" for name in getattr(info.annotation, "model_fields", {})]
    return keys


def _check_scenario_key(key: str, where: str) -> None:
    known = scenario_keys()
    if key not in known:
        raise PydanticCustomError(
            "scenario_key", "{where}unknown scenario key {key}{hint}; use 'section.key' with "
            "section one of {sections}",
            {"where": where, "key": repr(key), "hint": did_you_mean(key, known),
             "sections": ", ".join(dict.fromkeys(k.split(".")[0] for k in known))})


# --------------------------------------------------------------------------------------------
# axes
# --------------------------------------------------------------------------------------------


class RangeAxis(_Table):
    """{start, stop, num[, scale]} (both ends included) or {start, stop, step} (linear)."""

    start: Finite
    stop: Finite
    num: Count | None = None
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    scale: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _consistent(self) -> RangeAxis:
        if (self.num is None) == (self.step is None):
            raise PydanticCustomError("range_form", "give exactly one of num and step")
        if self.scale == "log" and (self.start <= 0 or self.stop <= 0):
            raise PydanticCustomError("log_range", "a log range needs start > 0 and stop > 0, "
                                      "got start = {start}, stop = {stop}",
                                      {"start": self.start, "stop": self.stop})
        if self.step is not None and self.scale != "linear":
            raise PydanticCustomError("step_scale", "step ranges are linear: use num with "
                                      "scale = 'log'")
        if self.step is not None and self.stop < self.start:
            raise PydanticCustomError("empty_range", "is empty: start {start} > stop {stop}",
                                      {"start": self.start, "stop": self.stop})
        return self

    @property
    def count(self) -> float:
        """How many values the range holds (computed, nothing allocated; inf if unbounded)."""
        if self.num is not None:
            return self.num
        assert self.step is not None
        quotient = (self.stop - self.start) / self.step
        return math.floor(quotient * (1 + 1e-12)) + 1 if math.isfinite(quotient) else math.inf

    def values(self) -> list[float]:
        """The values, rounded to 12 significant digits (they read back from a table or a
        label as the same floats). Call only after `check_size`."""
        import numpy as np

        if self.num is not None:
            space = np.geomspace if self.scale == "log" else np.linspace
            values = space(self.start, self.stop, self.num)
        else:
            assert self.step is not None
            values = self.start + self.step * np.arange(int(self.count), dtype=np.float64)
        return [float(f"{v:.12g}") for v in values]


def _values_list(values: list[Any]) -> list[Any]:
    if not values:
        raise PydanticCustomError("empty_axis", "is empty: give at least one value")
    if len({repr(v) for v in values}) != len(values):
        raise PydanticCustomError("repeated_value", "repeats a value")
    kinds = {"bool" if isinstance(v, bool) else "number" if isinstance(v, int | float)
             else "string" for v in values}
    if len(kinds) > 1:
        raise PydanticCustomError("mixed_axis", "mixes {kinds}: give all numbers, all strings "
                                  "or all booleans", {"kinds": " and ".join(sorted(kinds))})
    return values


def _axis_form(value: Any) -> str | None:
    if isinstance(value, dict | RangeAxis):
        return RANGE_TAG
    return LIST_TAG if isinstance(value, list) else None


AxisSpec = Annotated[
    Annotated[RangeAxis, Tag(RANGE_TAG)]
    | Annotated[Annotated[list[Scalar], AfterValidator(_values_list)], Tag(LIST_TAG)],
    Discriminator(_axis_form, custom_error_type="axis_form",
                  custom_error_message="an axis is a list of values or a range table "
                                       "(start, stop, num or step, scale)")]


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def _strategy_names() -> list[str]:
    from laimco.optimize import STRATEGIES

    return list(STRATEGIES)


def _checked_strategies(value: Any) -> list[str] | None:
    if value is None:
        return None
    known = _strategy_names()
    if value == "all":
        return known
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PydanticCustomError("strategies", "must be a list of strategy names or \"all\", "
                                  "got {got}", {"got": shown_value(value)})
    if not value:
        raise PydanticCustomError("strategies", "is empty: name at least one strategy")
    for name in value:
        if name not in known:
            raise PydanticCustomError("strategy", "unknown strategy {name}{hint}: choose from "
                                      "{known}", {"name": repr(name),
                                                  "hint": did_you_mean(name, known),
                                                  "known": ", ".join(known)})
    if len(set(value)) != len(value):
        raise PydanticCustomError("strategies", "repeats a name")
    return list(value)


Strategies = Annotated[list[str] | None, PlainValidator(_checked_strategies)]


class SweepSection(_Table):
    """[sweep]: what runs and how it is grouped."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = Field(
        None, description="the output folder's name: letters, digits, '_', '-', '.'")
    kind: Kind = "design"
    base: str | None = None
    strategies: Strategies = None
    realizations: Annotated[int, Field(ge=0)] = 0
    seed: Seed = 0
    chunk_points: Count | None = None
    common_random_numbers: bool = True
    seq_len: Annotated[int, Field(ge=1, le=MAX_SEQ_LEN)] = 128
    model: str = "minilm"
    calibration_sentences: Count = 320
    heldout_sentences: Count = 640


class OptionsSection(_Table):
    """[options]: laimco.optimize.StrategyOptions."""

    ratio: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] | None = None
    split: Annotated[int, Field(ge=0)] | None = None
    n_starts: Annotated[int, Field(ge=1, le=MAX_N_STARTS)] | None = None
    seed: Seed | None = None


class LimitsSection(_Table):
    """[limits]: the caps on the work one sweep may ask for."""

    max_evaluations: Count = DEFAULT_MAX_EVALUATIONS
    max_realizations_per_point: Count | None = None


class QuickSection(_Table):
    """[quick]: what --quick replaces (keys of [sweep], and [quick.axes] / [quick.set])."""

    realizations: Annotated[int, Field(ge=0)] | None = None
    chunk_points: Count | None = None
    strategies: Strategies = None
    axes: dict[str, AxisSpec] = Field(default_factory=dict)
    set: dict[str, SetValue] = Field(default_factory=dict)
    calibration_sentences: Count | None = None
    heldout_sentences: Count | None = None


@dataclass(frozen=True)
class SweepSize:
    """The work a sweep asks for, counted without expanding it."""

    points: float
    per_point: float

    @property
    def evaluations(self) -> float:
        return self.points * self.per_point


class SweepFile(_Table):
    """A whole sweep file."""

    sweep: SweepSection = Field(default_factory=lambda: SweepSection.model_validate({}))
    set: dict[str, SetValue] = Field(default_factory=dict)
    axes: dict[str, AxisSpec] = Field(default_factory=dict)
    options: OptionsSection = Field(default_factory=lambda: OptionsSection.model_validate({}))
    quick: QuickSection = Field(default_factory=lambda: QuickSection.model_validate({}))
    limits: LimitsSection = Field(default_factory=lambda: LimitsSection.model_validate({}))

    @field_validator("set")
    @classmethod
    def _set_keys(cls, values: dict[str, SetValue]) -> dict[str, SetValue]:
        for key in values:
            _check_scenario_key(key, "")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> SweepFile:
        sweep, kind = self.sweep, self.sweep.kind
        if not self.axes:
            raise PydanticCustomError("no_axes", "[axes] is empty: name at least one key to vary")
        for key, spec in self.axes.items():
            if kind == "bound":
                if key != "rho":
                    raise PydanticCustomError("bound_axis", "axes: a bound sweep varies only "
                                              "'rho' (pruning ratios), not {key}",
                                              {"key": repr(key)})
                # a range's values lie between its ends
                values = [spec.start, spec.stop] if isinstance(spec, RangeAxis) else spec
                if not all(isinstance(v, int | float) and not isinstance(v, bool)
                           and 0 <= v < 1 for v in values):
                    raise PydanticCustomError("rho", "axis 'rho' lists pruning ratios in [0, 1)")
            elif key == "base":
                if not (isinstance(spec, list) and all(isinstance(v, str) for v in spec)):
                    raise PydanticCustomError("base_axis", "axis 'base' lists scenario files "
                                              "(strings)")
            else:
                _check_scenario_key(key, "axes: ")
        if kind == "bound":
            if sweep.strategies:
                raise PydanticCustomError("bound_strategies", "sweep.strategies: a bound sweep "
                                          "measures the real model, it takes no strategies")
        elif sweep.strategies is None:
            raise PydanticCustomError("strategies", "sweep.strategies is required: a list of "
                                      "names from `laimco strategies`, or \"all\"")
        if kind == "fading" and "slsqp" in (sweep.strategies or []):
            raise PydanticCustomError("fading_slsqp", "sweep.strategies: 'slsqp' is not "
                                      "vectorized over realizations: leave it out of a fading "
                                      "sweep (a design sweep times it)")
        if kind in ("fading", "robust") and sweep.realizations < 1:
            raise PydanticCustomError("realizations", "sweep.realizations: a {kind} sweep needs "
                                      "at least 1 Rayleigh realization per point",
                                      {"kind": kind})
        if kind in ("design", "bound") and sweep.realizations:
            raise PydanticCustomError("realizations", "sweep.realizations: a {kind} sweep has "
                                      "no Rayleigh realizations: remove it or use kind = "
                                      "'fading' / 'robust'", {"kind": kind})
        if kind != "bound" and sweep.base is None and "base" not in self.axes:
            raise PydanticCustomError("base", "sweep.base (a scenario file) is required unless "
                                      "an axis 'base' lists scenario files")
        return self

    def with_quick(self) -> SweepFile:
        """The file as --quick runs it: [quick]'s keys replace [sweep]'s, its axes and set
        entries replace or add to [axes] and [set]; validated again."""
        data = self.model_dump(exclude_unset=True, exclude={"quick"})
        quick = self.quick.model_dump(exclude_unset=True)
        for table in ("axes", "set"):
            data[table] = {**data.get(table, {}), **quick.pop(table, {})}
        data["sweep"] = {**data.get("sweep", {}), **quick}
        return SweepFile.model_validate(data)

    def size(self) -> SweepSize:
        """Points × evaluations per point (strategies × realizations; a robust point decides
        twice; slsqp counts its n_starts), from the axis lengths alone."""
        points = math.prod(spec.count if isinstance(spec, RangeAxis) else len(spec)
                           for spec in self.axes.values())
        sweep = self.sweep
        if sweep.kind == "bound":
            return SweepSize(points, 1)
        n_starts = self.options.n_starts or 8
        per_point = sum(n_starts if name == "slsqp" else 1 for name in sweep.strategies or [])
        if sweep.kind in ("fading", "robust"):
            per_point *= sweep.realizations * (2 if sweep.kind == "robust" else 1)
        return SweepSize(points, per_point)
