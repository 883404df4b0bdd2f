"""The profile JSON format as a strict pydantic model (docs/profiling.md, "JSON schema").

Every key a profile may carry is declared here, with its type and range; an unknown key, a
string or list where an object belongs, a bool or null where a number belongs, NaN/±Inf, a
negative count or cost, a fractional count, decreasing magnitude quantiles or a generalized-
Gaussian shape ≤ 0 are errors that name the key path. Sizes are capped (units, quantile levels)
so a hostile file cannot make the optimizer allocate gigabytes; the file size itself is checked
by `laimco.profile` before reading.

A new optional top-level section is one more field on `ProfileFile` (with its own model).
"""

from __future__ import annotations

import functools
import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from laimco.models.family_names import family_names
from laimco.schema_messages import JsonSchema, describe_validation_error

MAX_UNITS = 4096  # LLaMA-7B has 34 units; the split table is (L+1)×L per field
MAX_QUANTILE_LEVELS = 100_001  # the profiler writes 1001
MAX_COUNT = 10**15  # parameters in one unit
MAX_COST = 1e21  # FLOPs or bits of one unit, or of the input
MAX_STATISTIC = 1e6  # |w| statistics, shape and scale of a weight distribution
MAX_NAME_CHARS = 256


def _integral(value: Any) -> Any:
    """A float with an integral value (1e6 in a JSON file) counts as an integer; anything else
    goes to the strict integer check unchanged (so 1.5 and true are refused)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _range(lo: float, hi: float) -> Any:
    """[lo, hi], finite; strict: an int is a fine float, a bool, string or null is not."""
    return Field(ge=lo, le=hi, allow_inf_nan=False, strict=True)


def _whole_or_zero(value: float) -> float:
    """FLOPs and bits come in whole units: 0, or at least 1 (1e-250 bits is no size at all,
    and would stall the optimizer's root finding)."""
    if 0 < value < 1:
        raise ValueError(f"must be 0 or at least 1 (a whole FLOP or bit), got {value!r}")
    return value


def _json_number(value: float) -> float | int:
    """A whole FLOP or bit count is written as a JSON integer, as the profiler counts it."""
    return int(value) if value.is_integer() else value


_INTEGRAL = BeforeValidator(_integral)
Count = Annotated[int, _INTEGRAL, Field(ge=0, le=MAX_COUNT, strict=True)]
PositiveInt = Annotated[int, _INTEGRAL, Field(ge=1, le=10**9, strict=True)]
Cost = Annotated[float, _range(0.0, MAX_COST), AfterValidator(_whole_or_zero),
                 PlainSerializer(_json_number, when_used="json")]
Statistic = Annotated[float, _range(0.0, MAX_STATISTIC)]
# Generalized-Gaussian shape: fits of real weights lie in 0.5…3; outside [0.1, 100] the law's
# moments Γ(3/β)/Γ(1/β) overflow double precision (β = 0.01 gives e^1049)
Shape = Annotated[float, _range(0.1, 100.0)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS, strict=True)]
Text = Annotated[str, Field(max_length=4096, strict=True)]
ActivationBits = Annotated[int, _INTEGRAL, Field(ge=1, le=1024, strict=True)]
QuantileLevels = Annotated[int, _INTEGRAL, Field(ge=0, le=MAX_QUANTILE_LEVELS, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class UnitEntry(_Strict):
    """One unit of `units` (embeddings, block, head), measured at the profile's input size."""

    name: Name
    kind: Literal["embeddings", "block", "head"] | None = None
    n_prunable: Count
    n_fixed: Count
    flops_prunable: Cost
    flops_fixed: Cost
    out_bits: Cost
    weights: Literal["measured", "assumed"] | None = None
    weight_mean_abs: Statistic
    weight_std: Statistic
    gennorm_beta: Shape = 1.0
    gennorm_scale: Statistic = 0.0
    magnitude_quantiles: Annotated[list[Statistic], Field(max_length=MAX_QUANTILE_LEVELS)] = []
    weight_sample_size: Count | None = None
    # the keys laimco analyze adds, last (fields are written in this order)
    gennorm_fit: Text | None = None
    output_sensitivity: Statistic | None = None

    @field_validator("magnitude_quantiles")
    @classmethod
    def _quantile_table(cls, table: list[float]) -> list[float]:
        if len(table) == 1:
            raise ValueError("needs no levels (an empty list) or at least 2: q(0) … q(1)")
        for i in range(1, len(table)):
            if table[i] < table[i - 1]:
                raise ValueError(f"quantiles must not decrease: level {i} is {table[i]!r}, "
                                 f"below level {i - 1}'s {table[i - 1]!r}")
        return table


def _known_family(value: str) -> str:
    if value not in family_names():
        raise ValueError(f"unknown model family {value!r}: laimco has an adapter for "
                         f"{', '.join(map(repr, family_names()))}")
    return value


# a registered family (one adapter module each in laimco/models/families); the schema's enum
# lets error messages list them
FamilyName = Annotated[str, Field(strict=True, json_schema_extra={"enum": list(family_names())}),
                       AfterValidator(_known_family)]


class OutputSensitivity(_Strict):
    """Measured constants of the output bound (written by `laimco analyze`)."""

    k_device: Statistic | None = None
    k_server: Statistic | None = None
    at_split: Count | None = None
    k_hat_whole_model: Statistic | None = None


class ProfileFile(_Strict):
    """A whole profile file (laimco.models.profiler writes it, docs/profiling.md)."""

    name: Name
    source: Text | None = None
    family: FamilyName | None = None
    batch_size: PositiveInt | None = None
    seq_len: PositiveInt | None = None
    image_size: PositiveInt | None = None
    activation_bits: ActivationBits | None = None
    input_bits: Cost
    magnitude_quantile_levels: QuantileLevels | None = None
    units: Annotated[list[UnitEntry], Field(min_length=1, max_length=MAX_UNITS)]
    output_sensitivity: OutputSensitivity | None = None
    # measured pruning-rule costs, kept in their JSON form here and validated by
    # laimco.rule_costs.RulesSection (its messages name the rule and unit)
    rules: dict[str, Any] | None = None
    # measured dense unit and part times, validated by laimco.rule_costs.ExecutionSection
    execution: dict[str, Any] | None = None
    # measured cost of quantizing the activation at each split, validated by
    # laimco.uplink_costs.UplinkSection (its messages name the key path)
    uplink: dict[str, Any] | None = None

    def json_data(self) -> dict[str, Any]:
        """The profile as its JSON object (a dict on purpose: it is the file's form): the keys it
        was built or read with, in the order of this schema."""
        return self.model_dump(mode="json", exclude_unset=True)

    def json_text(self) -> str:
        """The profile file's text, pretty-printed."""
        return json.dumps(self.json_data(), indent=2) + "\n"

    @model_validator(mode="before")
    @classmethod
    def _few_enough_units(cls, data: Any) -> Any:
        """The unit cap before any unit is validated (a list of 10⁶ units fails fast)."""
        if isinstance(data, dict):
            units = data.get("units")
            if isinstance(units, list) and len(units) > MAX_UNITS:
                raise ValueError(f"units: {len(units)} units, at most {MAX_UNITS} are allowed")
        return data

    @model_validator(mode="after")
    def _quantile_levels_agree(self) -> ProfileFile:
        lengths = {len(u.magnitude_quantiles) for u in self.units if u.magnitude_quantiles}
        if len(lengths) > 1:
            raise ValueError("units: every non-empty magnitude_quantiles list must have the same "
                             f"number of levels (found {sorted(lengths)})")
        declared = self.magnitude_quantile_levels
        if declared is not None and lengths and lengths != {declared}:
            raise ValueError(f"magnitude_quantile_levels = {declared} but the units' "
                             f"magnitude_quantiles have {lengths.pop()} levels")
        return self


def describe_errors(error: ValidationError) -> str:
    """One line per problem: the key path (units[3].n_prunable), what is wrong, what was given,
    what is allowed."""
    return "\n  ".join(describe_validation_error(error, _profile_schema()))


@functools.cache
def _profile_schema() -> JsonSchema:
    return ProfileFile.model_json_schema()
