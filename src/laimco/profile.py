"""Model profiles: the per-unit numbers the optimizer needs, loaded from JSON (SPEC §1).

A profile lists the units u = 1..L of a model in execution order. Split s runs units 1..s on
the device and s+1..L on the server; `SplitTable` holds the per-split sums (eq. 1.1).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from laimco.rule_costs import RuleCostError, RuleCosts, parse_rules

FloatArray = NDArray[np.float64]


class ProfileError(ValueError):
    """A profile file that is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class UnitProfile:
    """One unit (embedding, block, head) of a model, measured at the profile's input size."""

    name: str
    n_prunable: int
    n_fixed: int
    flops_prunable: float
    flops_fixed: float
    out_bits: float
    weight_mean_abs: float
    weight_std: float
    gennorm_beta: float
    gennorm_scale: float
    magnitude_quantiles: tuple[float, ...]


@dataclass(frozen=True)
class ModelProfile:
    """A whole model: its units in order and the raw input size in bits."""

    name: str
    input_bits: float
    units: tuple[UnitProfile, ...]
    output_sensitivity: dict[str, float] | None = None
    # measured costs of each pruning rule (laimco.rule_costs), empty for architecture-only or
    # older profiles
    rules: Mapping[str, RuleCosts] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return len(self.units)

    def column(self, field: str) -> FloatArray:
        """One numeric field of every unit, shape (L,)."""
        return np.array([getattr(u, field) for u in self.units], dtype=np.float64)

    def device_mask(self) -> NDArray[np.bool_]:
        """mask[s, u] is True when unit u (0-based) runs on the device at split s = 0..L."""
        splits = np.arange(self.n_units + 1)[:, None]
        return np.arange(self.n_units)[None, :] < splits

    def split_table(self) -> SplitTable:
        """Per-split sums of every cost input (eq. 1.1), computed once per profile (read-only
        arrays: every optimizer call starts from them)."""
        return self._split_table

    @functools.cached_property
    def _split_table(self) -> SplitTable:
        mask = self.device_mask().astype(np.float64)
        server = 1.0 - mask
        out_bits = self.column("out_bits")
        upload = np.concatenate([[self.input_bits], out_bits[:-1], [0.0]])
        table = SplitTable(
            prunable_device=mask @ self.column("n_prunable"),
            prunable_server=server @ self.column("n_prunable"),
            fixed_device=mask @ self.column("n_fixed"),
            flops_prunable_device=mask @ self.column("flops_prunable"),
            flops_fixed_device=mask @ self.column("flops_fixed"),
            flops_prunable_server=server @ self.column("flops_prunable"),
            flops_fixed_server=server @ self.column("flops_fixed"),
            upload_bits=upload,
        )
        for array in vars(table).values():
            array.flags.writeable = False
        return table


@dataclass(frozen=True)
class SplitTable:
    """Arrays of shape (L+1,), indexed by split s: what the device and server each carry."""

    prunable_device: FloatArray
    prunable_server: FloatArray
    fixed_device: FloatArray
    flops_prunable_device: FloatArray
    flops_fixed_device: FloatArray
    flops_prunable_server: FloatArray
    flops_fixed_server: FloatArray
    upload_bits: FloatArray


_UNIT_DEFAULTS = {"gennorm_beta": 1.0, "gennorm_scale": 0.0, "magnitude_quantiles": ()}
_REQUIRED = ("name", "n_prunable", "n_fixed", "flops_prunable", "flops_fixed", "out_bits",
             "weight_mean_abs", "weight_std")


def profile_from_dict(data: dict[str, object]) -> ModelProfile:
    """Build a profile from its JSON form (schema: docs/profile_minilm.md)."""
    try:
        raw_units = data["units"]
        name = str(data["name"])
        input_bits = float(data["input_bits"])  # type: ignore[arg-type]
    except KeyError as err:
        raise ProfileError(f"profile is missing the top-level key {err.args[0]!r}") from err
    if not isinstance(raw_units, list) or not raw_units:
        raise ProfileError("profile 'units' must be a non-empty list")
    units = []
    for i, raw in enumerate(raw_units):
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise ProfileError(f"profile unit {i} is missing {', '.join(missing)}")
        values = {**_UNIT_DEFAULTS, **{k: raw[k] for k in raw if k in UnitProfile.__annotations__}}
        values["magnitude_quantiles"] = tuple(float(q) for q in values["magnitude_quantiles"])
        unit = UnitProfile(**values)
        if unit.n_prunable < 0 or unit.n_fixed < 0 or unit.out_bits < 0:
            raise ProfileError(f"profile unit {unit.name!r} has a negative count")
        units.append(unit)
    sensitivity = data.get("output_sensitivity")
    rules = {}
    if data.get("rules") is not None:
        try:
            rules = parse_rules(data["rules"], len(units),
                                np.array([u.n_prunable for u in units], dtype=np.float64))
        except RuleCostError as err:
            raise ProfileError(str(err)) from None
    return ModelProfile(name=name, input_bits=input_bits, units=tuple(units),
                        output_sensitivity=dict(sensitivity) if isinstance(sensitivity, dict)
                        else None, rules=rules)


def builtin_profile_names() -> list[str]:
    """Names of the profiles shipped inside the package."""
    return list(_builtin_profile_names())


@functools.cache
def _builtin_profile_names() -> tuple[str, ...]:
    folder = resources.files("laimco") / "profiles"
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir()
                        if p.name.endswith(".json")))


def load_profile(name_or_path: str | Path) -> ModelProfile:
    """A built-in profile by name (e.g. "minilm-l6") or a profile JSON file by path.

    Profiles are immutable, so a file is parsed once per modification time."""
    candidate = Path(name_or_path)
    if str(name_or_path) in _builtin_profile_names():
        return _load_builtin(str(name_or_path))
    if candidate.is_file():
        resolved = candidate.resolve()
        return _load_file(resolved, resolved.stat().st_mtime_ns)
    raise ProfileError(
        f"no profile {str(name_or_path)!r}: give a built-in name "
        f"({', '.join(builtin_profile_names())}) or the path of a profile JSON file")


@functools.lru_cache(maxsize=16)
def _load_builtin(name: str) -> ModelProfile:
    text = (resources.files("laimco") / "profiles" / f"{name}.json").read_text()
    return _parse(text, name)


@functools.lru_cache(maxsize=16)
def _load_file(path: Path, mtime_ns: int) -> ModelProfile:
    return _parse(path.read_text(), str(path))


def _parse(text: str, name_or_path: str) -> ModelProfile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProfileError(f"profile {str(name_or_path)!r} is not valid JSON: {err}") from err
    return profile_from_dict(data)
