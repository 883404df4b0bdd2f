"""Model profiles: the per-unit numbers the optimizer needs, loaded from JSON (docs/design.md §3).

A profile lists the units u = 1..L of a model in execution order. Split s runs units 1..s on
the device and s+1..L on the server; `SplitTable` holds the per-split sums (eq. 1.1).

Every command names a profile the same way (`resolve_profile_text`, `load_profile`): a built-in
name ("minilm-l6"), "config:NAME" (an architecture-only profile of src/laimco/configs/NAME.json
or of a config.json path, built on the meta device) or the path of a profile JSON file. The file
format is validated by `laimco.profile_schema` (docs/profiling.md, "JSON schema").
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from laimco.profile_schema import ProfileFile, describe_errors
from laimco.rule_costs import (
    ExecutionTimes,
    RuleCostError,
    RuleCosts,
    parse_execution,
    parse_rules,
)
from laimco.uplink_costs import UplinkCostError, UplinkCosts, parse_uplink

FloatArray = NDArray[np.float64]
CONFIG_PREFIX = "config:"  # model.profile = "config:gpt2-xl": an architecture-only profile
MAX_PROFILE_BYTES = 64 * 1024 * 1024  # checked before a profile file is read
DEFAULT_SEQ_LEN = 128  # tokens per input of a "config:NAME" profile


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
    kind: str | None = None  # "embeddings" | "block" | "head" (None when the file does not say)
    # "measured" from the weights, or "assumed" (architecture only: Gaussian of the config's
    # initializer_range); None when the file does not say
    weights: str | None = None
    output_sensitivity: float | None = None  # the unit's measured K (laimco analyze)


@dataclass(frozen=True)
class ModelProfile:
    """A whole model: its units in order and the raw input size in bits, with every header
    field of the profile file, so that no consumer re-reads the JSON (docs/profiling.md,
    "JSON schema"). A header field the file does not carry is None."""

    name: str
    input_bits: float
    units: tuple[UnitProfile, ...]
    output_sensitivity: dict[str, float] | None = None
    seq_len: int | None = None  # tokens per input it was measured at (ViT: patches + 1)
    # measured costs of each pruning rule (laimco.rule_costs), empty for architecture-only or
    # older profiles
    rules: Mapping[str, RuleCosts] = field(default_factory=dict)
    # measured dense times of units and parts, the base of the rules' execution lines
    execution: ExecutionTimes | None = None
    family: str | None = None  # the model family ("bert", "gpt2", "llama", "vit")
    source: str | None = None  # where the model came from
    batch_size: int | None = None  # inputs per inference the counts are for
    image_size: int | None = None  # image side in pixels (ViT)
    activation_bits: int | None = None  # bits per activation element that crosses the cut
    # measured cost of quantizing the activation crossing each split (laimco.uplink_costs)
    uplink: UplinkCosts | None = None

    @property
    def architecture_only(self) -> bool:
        """True when no unit's weight statistics were measured (all "assumed")."""
        return all(u.weights == "assumed" for u in self.units)

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


def profile_from_dict(data: object) -> ModelProfile:
    """Build a profile from its JSON form, validated by `ProfileFile` (schema:
    docs/profiling.md); a `ProfileError` names every bad key path."""
    try:
        checked = ProfileFile.model_validate(data)
    except ValidationError as err:
        raise ProfileError(f"invalid profile:\n  {describe_errors(err)}") from None
    units = tuple(
        UnitProfile(name=u.name, n_prunable=u.n_prunable, n_fixed=u.n_fixed,
                    flops_prunable=u.flops_prunable, flops_fixed=u.flops_fixed,
                    out_bits=u.out_bits, weight_mean_abs=u.weight_mean_abs,
                    weight_std=u.weight_std, gennorm_beta=u.gennorm_beta,
                    gennorm_scale=u.gennorm_scale,
                    magnitude_quantiles=tuple(u.magnitude_quantiles), kind=u.kind,
                    weights=u.weights, output_sensitivity=u.output_sensitivity)
        for u in checked.units)
    sensitivity = (None if checked.output_sensitivity is None else
                   {k: float(v) for k, v in checked.output_sensitivity.model_dump().items()
                    if v is not None})
    rules = {}
    if checked.rules is not None:
        try:
            rules = parse_rules(data["rules"], len(units),  # type: ignore[index]
                                np.array([u.n_prunable for u in units], dtype=np.float64))
        except RuleCostError as err:
            raise ProfileError(str(err)) from None
    execution = None
    if checked.execution is not None:
        try:
            execution = parse_execution(checked.execution, len(units))
        except RuleCostError as err:
            raise ProfileError(str(err)) from None
    if rules and execution is None:
        raise ProfileError("profile has measured pruning rules but no 'execution' section (the "
                           "dense times their execution lines scale): measure both again with "
                           "`laimco analyze MODEL --rules ... --out DIR`")
    uplink = None
    if checked.uplink is not None:
        try:
            uplink = parse_uplink(checked.uplink, len(units))
        except UplinkCostError as err:
            raise ProfileError(str(err)) from None
    return ModelProfile(name=checked.name, input_bits=checked.input_bits, units=units,
                        output_sensitivity=sensitivity, seq_len=checked.seq_len, rules=rules,
                        execution=execution,
                        family=checked.family, source=checked.source,
                        batch_size=checked.batch_size, image_size=checked.image_size,
                        activation_bits=checked.activation_bits, uplink=uplink)


def builtin_profile_names() -> list[str]:
    """Names of the profiles shipped inside the package."""
    return list(_builtin_profile_names())


@functools.cache
def _builtin_profile_names() -> tuple[str, ...]:
    folder = resources.files("laimco") / "profiles"
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir()
                        if p.name.endswith(".json")))


def shipped_config_names() -> list[str]:
    """The NAMEs of "config:NAME": model configs shipped in src/laimco/configs."""
    folder = resources.files("laimco") / "configs"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir()
                  if p.name.endswith(".json"))


def config_file(name: str) -> Path:
    """The config.json behind "config:NAME": a shipped config, else NAME as a path."""
    shipped = Path(str(resources.files("laimco") / "configs" / f"{name}.json"))
    if name in shipped_config_names():
        return shipped
    if Path(name).is_file():
        return Path(name)
    raise ProfileError(f"profile 'config:{name}': no such config; shipped: "
                       f"{', '.join(shipped_config_names())} (or give the path of a "
                       "config.json after 'config:')")


def resolve_profile_text(name_or_path: str | Path, *, seq_len: int = DEFAULT_SEQ_LEN,
                         cache_dir: Path | None = None) -> str:
    """The JSON text of a profile named as every command names it: a built-in name,
    "config:NAME" (profiled at `seq_len` tokens; cached as a file in `cache_dir` when given)
    or a path. Not validated here: `profile_from_dict(json.loads(text))` does that."""
    name = str(name_or_path)
    if name.startswith(CONFIG_PREFIX):
        config = config_file(name.removeprefix(CONFIG_PREFIX))
        if cache_dir is None:
            return _config_profile_text(config, config.stat().st_mtime_ns, seq_len)
        digest = hashlib.sha256(config.read_bytes() + f"|{seq_len}".encode()).hexdigest()[:16]
        target = cache_dir / f"{config.stem}-seq{seq_len}-{digest}.json"
        if not target.is_file():
            from laimco.models.profiler import save_profile

            save_profile(ProfileFile.model_validate(json.loads(_config_profile_text(
                config, config.stat().st_mtime_ns, seq_len))), target)
        return _read_capped(target)
    if name in _builtin_profile_names():
        return (resources.files("laimco") / "profiles" / f"{name}.json").read_text()
    if Path(name).is_file():
        return _read_capped(Path(name))
    raise ProfileError(
        f"no profile {name!r}: give a built-in name ({', '.join(builtin_profile_names())}), "
        f"'config:NAME' (NAME one of {', '.join(shipped_config_names())}) or the path of a "
        "profile JSON file")


def load_profile(name_or_path: str | Path, *, seq_len: int = DEFAULT_SEQ_LEN) -> ModelProfile:
    """A profile by built-in name (e.g. "minilm-l6"), "config:NAME" or path, validated.

    Profiles are immutable, so a file is parsed once per modification time."""
    name = str(name_or_path)
    if name.startswith(CONFIG_PREFIX):
        config = config_file(name.removeprefix(CONFIG_PREFIX))
        return _load_config(config.resolve(), config.stat().st_mtime_ns, seq_len)
    if name in _builtin_profile_names():
        return _load_builtin(name)
    candidate = Path(name)
    if candidate.is_file():
        resolved = candidate.resolve()
        return _load_file(resolved, resolved.stat().st_mtime_ns)
    resolve_profile_text(name)  # raises the "no profile" error
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=16)
def _load_builtin(name: str) -> ModelProfile:
    return parse_profile_text(resolve_profile_text(name), name)


@functools.lru_cache(maxsize=16)
def _load_file(path: Path, mtime_ns: int) -> ModelProfile:
    return parse_profile_text(_read_capped(path), str(path))


@functools.lru_cache(maxsize=16)
def _load_config(path: Path, mtime_ns: int, seq_len: int) -> ModelProfile:
    return parse_profile_text(_config_profile_text(path, mtime_ns, seq_len), f"config:{path}")


@functools.lru_cache(maxsize=16)
def _config_profile_text(path: Path, mtime_ns: int, seq_len: int) -> str:
    """An architecture-only profile of a config.json, as the profiler would save it."""
    try:
        from laimco.models.profiler import profile_from_config
    except ImportError as err:
        raise ProfileError(f"profile 'config:{path.stem}' is built with transformers and torch, "
                           f"which are not installed ({err.name}): pip install "
                           "'laimco[models]'") from None
    try:
        profile = profile_from_config(path, seq_len=seq_len, name=path.stem)
    except (OSError, ValueError, TypeError, KeyError) as err:  # a config transformers rejects
        raise ProfileError(f"profile 'config:{path.stem}': {err}") from None
    return profile.json_text()


def _read_capped(path: Path) -> str:
    """A profile file's text, its size checked before reading."""
    try:
        size = path.stat().st_size
        if size > MAX_PROFILE_BYTES:
            raise ProfileError(f"profile {str(path)!r} is {size} bytes; a profile may have at "
                               f"most {MAX_PROFILE_BYTES} (64 MiB)")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"profile {str(path)!r} is not a text file (not UTF-8 JSON)") from None
    except OSError as err:
        raise ProfileError(f"profile {str(path)!r} cannot be read: {err.strerror}") from None


def parse_profile_text(text: str, name_or_path: str) -> ModelProfile:
    """A profile from its JSON text, validated; errors name `name_or_path` and the key."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProfileError(f"profile {name_or_path!r} is not valid JSON: {err}") from None
    except RecursionError:
        raise ProfileError(f"profile {name_or_path!r} nests too deeply to be a profile") from None
    try:
        return profile_from_dict(data)
    except ProfileError as err:
        raise ProfileError(f"profile {name_or_path!r}: {err}") from None
