"""What each pruning rule really costs, as measured on a model and stored in its profile
(docs/theory.md §5).

A rule (magnitude per matrix, Wanda, structured heads/neurons, ...) is described by

- its **distortion curve** per unit: D_u(ρ) = k_u · N_u · δ_u(ρ), where δ_u is the unit's
  per-weight distortion of that rule, tabulated by its slope δ_u'(ρ) on uniform levels of ρ
  (non-decreasing, so δ_u is convex, eq. 5.1), and k_u the unit's output sensitivity: measured
  output distortion over δ, calibrated on calibration text (eq. 5.3);
- its **execution line** per unit: the unit's forward time at ratio ρ is τ_u·(b_u − a_u·ρ),
  τ_u its dense time, with (a_u, b_u) fitted to the measured time of the pruned unit relative to
  the dense one on the kernels laimco runs (eq. 5.4): a ≈ 0 for masks on dense matrices, a ≈ 1
  when the matrices shrink; with the measured dense times of every part (`ExecutionTimes`) this
  gives each part's time at ρ relative to its dense time;
- its **storage**: "dense" (pruned weights stored as zeros: memory does not fall with ρ),
  "shrunk" (removed weights are not stored) or "csr" (kept weights with their column indices).

The profile JSON carries these under the top-level keys "rules" (schema: `RulesSection`) and
"execution" (schema: `ExecutionSection`), written by `laimco analyze --rules ...`. This module
is numpy/pydantic only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FloatArray = NDArray[np.float64]
Storage = Literal["dense", "shrunk", "csr"]
CSR_INDEX_BYTES = 8  # a CSR weight in memory: each kept value plus its int64 column index
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
MAX_LEVELS = 10_001


class RuleCostError(ValueError):
    """A rule the profile has no measured costs for, or a malformed rules section."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class UnitRuleCurve(_Strict):
    """One unit under one rule: slope table of δ (per weight) and output sensitivity k."""

    slope_per_weight: list[NonNegative] = Field(
        description="δ'(ρ) at ρ = i/(Q−1), i = 0..Q−1, non-decreasing (weight² units)")
    sensitivity: NonNegative = Field(description="k_u: output distortion per unit of N_u·δ_u")
    execution_slope: NonNegative = Field(
        description="a_u: forward time of the pruned unit is τ_u·(b − a·ρ), τ_u its dense time")
    execution_intercept: NonNegative = Field(
        1.0, description="b_u: time of the unit at ρ = 0 over dense (1 but for formats "
        "such as CSR that run even the unpruned weights on another kernel)")

    @model_validator(mode="after")
    def _convex(self) -> UnitRuleCurve:
        table = self.slope_per_weight
        if not 2 <= len(table) <= MAX_LEVELS:
            raise ValueError(f"slope_per_weight needs 2..{MAX_LEVELS} levels, got {len(table)}")
        if any(b < a for a, b in itertools.pairwise(table)):
            raise ValueError("slope_per_weight must be non-decreasing (a convex curve)")
        if self.execution_slope > self.execution_intercept:
            raise ValueError("execution_slope exceeds execution_intercept: the unit's time "
                             "τ·(b − a·ρ) would be negative at ρ = 1")
        return self


class RuleSection(_Strict):
    """One rule: storage and one curve per unit with prunable weights (null for the others)."""

    storage: Storage
    units: list[UnitRuleCurve | None]
    measured: dict[str, object] = Field(default_factory=dict,
                                        description="the raw measurements behind the curves")


class RulesSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: dict[str, RuleSection]


Seconds = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


class ExecutionSection(_Strict):
    """Dense forward times measured on the machine that built the profile (eq. 5.4)."""

    clock: Literal["thread"] = Field(
        description="CPU time of the calling thread (time.thread_time): what one thread spends "
        "computing, insensitive to other load on the machine")
    threads: Annotated[int, Field(ge=1)]
    tokens: Annotated[int, Field(ge=1)]
    rounds: Annotated[int, Field(ge=1)]
    unit_time_s: list[Seconds] = Field(
        description="τ_u: time of unit u inside the dense model (0 for units without "
        "prunable weights, which are not timed alone)")
    device_part_time_s: list[Seconds] = Field(
        description="T_d(s): the dense device part of split s = 0..L (0 at s = 0)")
    server_part_time_s: list[Seconds] = Field(
        description="T_s(s): the dense server part of split s = 0..L (0 at s = L)")


@dataclass(frozen=True)
class ExecutionTimes:
    """`ExecutionSection` as arrays: τ_u shape (L,), T_d and T_s shape (L+1,)."""

    unit_time_s: FloatArray
    device_part_time_s: FloatArray
    server_part_time_s: FloatArray

    def part_cycles(self, rule: RuleCosts, dense_cycles: FloatArray, mask: FloatArray,
                    side: Literal["device", "server"]) -> tuple[FloatArray, FloatArray]:
        """(cycles that scale with 1 − ρ, cycles that do not) per split of one side pruned by
        `rule` (eq. 5.4): the part's time is T(s) + Σ_u τ_u·(b_u − 1 − a_u·ρ) over its units,
        and its cycles are its dense cycles times that time over T(s)."""
        part = self.device_part_time_s if side == "device" else self.server_part_time_s
        saved = mask @ (self.unit_time_s * rule.execution_slope)  # A(s)
        extra = mask @ (self.unit_time_s * (rule.execution_intercept - 1.0))  # B(s)
        scale = np.divide(dense_cycles, part, out=np.zeros_like(dense_cycles), where=part > 0)
        # Σ τ_u over a part can exceed T(s) by timing noise: the time at ρ = 1 stays ≥ 0
        return scale * saved, scale * np.maximum(part + extra - saved, 0.0)


def parse_execution(raw: object, n_units: int) -> ExecutionTimes:
    """The profile's "execution" section as arrays; errors name the key."""
    try:
        section = ExecutionSection.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RuleCostError(f"profile key execution.{where}: {first['msg']}") from None
    for key, size in (("unit_time_s", n_units), ("device_part_time_s", n_units + 1),
                      ("server_part_time_s", n_units + 1)):
        if len(getattr(section, key)) != size:
            raise RuleCostError(f"profile key execution.{key} has {len(getattr(section, key))} "
                                f"entries but the profile needs {size}")
    device = np.asarray(section.device_part_time_s, dtype=np.float64)
    server = np.asarray(section.server_part_time_s, dtype=np.float64)
    if np.any(device[1:] <= 0) or np.any(server[:-1] <= 0):
        raise RuleCostError("profile key execution: every non-empty part needs a time > 0 "
                            "(device_part_time_s[1:], server_part_time_s[:-1])")
    return ExecutionTimes(unit_time_s=np.asarray(section.unit_time_s, dtype=np.float64),
                          device_part_time_s=device, server_part_time_s=server)


@dataclass(frozen=True)
class RuleCosts:
    """One rule's costs for every unit of a profile, as arrays of shape (L,).

    Units without prunable weights have slope 0, sensitivity 0 and execution slope 0."""

    name: str
    storage: Storage
    slope_tables: FloatArray  # (L, Q)
    sensitivity: FloatArray
    execution_slope: FloatArray
    execution_intercept: FloatArray

    @property
    def dense_at_zero(self) -> bool:
        """At ρ = 0 the rule runs the dense part unchanged (b = 1, not another format)."""
        return self.storage != "csr" and bool(np.all(self.execution_intercept == 1.0))

    @property
    def saves_nothing(self) -> bool:
        """Pruning by this rule saves neither time nor memory (a = 0, b = 1, dense storage)."""
        return (self.storage == "dense" and self.dense_at_zero
                and not self.execution_slope.any())

    def memory_bytes(self, n_fixed: FloatArray, n_prunable: FloatArray, bytes_per_weight: float
                     ) -> tuple[FloatArray, FloatArray]:
        """(bytes that stay, bytes that scale with 1 − ρ) of a side's stored weights (eq. 5.6)."""
        if self.storage == "dense":  # masks on dense matrices: every weight is stored
            return (n_fixed + n_prunable) * bytes_per_weight, np.zeros_like(n_prunable)
        per_kept = bytes_per_weight + (CSR_INDEX_BYTES if self.storage == "csr" else 0.0)
        return n_fixed * bytes_per_weight, n_prunable * per_kept


def parse_rules(raw: object, n_units: int, n_prunable: FloatArray) -> dict[str, RuleCosts]:
    """The profile's "rules" section as `RuleCosts` per rule name; errors name the key."""
    try:
        section = RulesSection.model_validate({"rules": raw})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RuleCostError(f"profile key {where}: {first['msg']}") from None
    out = {}
    for name, rule in section.rules.items():
        if len(rule.units) != n_units:
            raise RuleCostError(f"profile key rules.{name}.units has {len(rule.units)} entries "
                                f"but the profile has {n_units} units")
        levels = {len(u.slope_per_weight) for u in rule.units if u is not None}
        if len(levels) > 1:
            raise RuleCostError(f"profile key rules.{name}: units have different numbers of "
                                "slope levels")
        q = levels.pop() if levels else 2
        tables = np.zeros((n_units, q))
        k = np.zeros(n_units)
        a = np.zeros(n_units)
        b = np.ones(n_units)
        for i, unit in enumerate(rule.units):
            if unit is None:
                if n_prunable[i] > 0:
                    raise RuleCostError(f"profile key rules.{name}.units[{i}] is null but unit {i} "
                                        f"has n_prunable = {n_prunable[i]:g} > 0: measure the "
                                        "rule's costs again (laimco analyze --rules) after "
                                        "changing the units")
                continue
            tables[i] = unit.slope_per_weight
            k[i] = unit.sensitivity
            a[i] = unit.execution_slope
            b[i] = unit.execution_intercept
        out[name] = RuleCosts(name=name, storage=rule.storage, slope_tables=tables,
                              sensitivity=k, execution_slope=a, execution_intercept=b)
    return out


def slope_table_from_curve(levels: FloatArray, distortion: FloatArray, n_weights: float,
                           table_levels: int = 101) -> list[float]:
    """A non-decreasing slope table (per weight) on `table_levels` uniform levels from a
    measured distortion curve D(ρ) at increasing `levels` (ρ = 0 first, D(0) = 0).

    Segment slopes are made non-decreasing by isotonic regression (the closest convex curve in
    least squares, eq. 5.2), then read at the table's levels (a level between two segments
    takes their mean slope)."""
    from scipy.optimize import isotonic_regression

    rho = np.asarray(levels, dtype=np.float64)
    d = np.asarray(distortion, dtype=np.float64) / max(n_weights, 1.0)
    widths = np.diff(rho)
    slopes = np.diff(d) / widths
    fitted = isotonic_regression(slopes, weights=widths, increasing=True).x
    fitted = np.maximum(fitted, 0.0)
    mids = (rho[:-1] + rho[1:]) / 2
    grid = np.linspace(0.0, 1.0, table_levels)
    table = np.interp(grid, mids, fitted)  # constant beyond the first and last midpoints
    return [float(v) for v in np.maximum.accumulate(table)]
