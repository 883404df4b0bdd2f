"""Scenario files: a TOML description of the model, device, server, channel and task limits,
validated by pydantic. Every quantity is in SI units; the key names say which."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from laimco.system import Channel, Device, Server
from laimco.theory.distortion_bound import LawName

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not validate; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class ModelSection(_Section):
    profile: str = Field("minilm-l6", description="built-in profile name or path to a JSON file")
    bytes_per_weight: Positive = Field(4.0, description="bytes of one stored weight value")


class DeviceSection(_Section):
    cpu_freq_max_hz: Positive
    flops_per_cycle: Positive
    kappa: Positive = Field(description="effective switched capacitance, J·s² per cycle·Hz²")
    tx_power_max_w: Positive
    energy_budget_j: Positive
    memory_bytes: Positive | None = Field(None, description="absent = unlimited")

    def to_device(self) -> Device:
        return Device(**self.model_dump())


class ServerSection(_Section):
    cpu_freq_max_hz: Positive = Field(description="this device's share of the server's CPU")
    flops_per_cycle: Positive

    def to_server(self) -> Server:
        return Server(**self.model_dump())


class ChannelSection(_Section):
    bandwidth_hz: Positive
    noise_psd_w_per_hz: Positive
    path_gain: Positive = Field(description="mean channel power gain, linear")
    fading: Literal["none", "rayleigh"] = "none"
    outage_prob: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _outage_needed(self) -> ChannelSection:
        if self.fading == "rayleigh" and self.outage_prob is None:
            raise ValueError("fading = 'rayleigh' needs channel.outage_prob in (0, 1)")
        return self

    def to_channel(self) -> Channel:
        return Channel(**self.model_dump())


class TaskSection(_Section):
    latency_budget_s: Positive
    downlink_s: NonNegative = 0.0
    min_split: Annotated[int, Field(ge=0)] = 0
    rho_max: Annotated[float, Field(ge=0, lt=1)] = 0.9
    ratios: Literal["separate", "tied"] = "separate"

    @model_validator(mode="after")
    def _downlink_fits(self) -> TaskSection:
        if self.downlink_s >= self.latency_budget_s:
            raise ValueError(
                f"task.downlink_s ({self.downlink_s}) must be smaller than "
                f"task.latency_budget_s ({self.latency_budget_s})")
        return self


class DistortionSection(_Section):
    """How pruning damage and pruning savings are modelled (docs/theory.md §5).

    mode = "calibrated" (default): per-unit distortion curves, output sensitivities and
    execution/storage costs of each pruning rule, measured by `laimco analyze --rules` and stored
    in the profile; the optimizer also chooses the rule of each side among `rules`.
    mode = "paper": the paper's setting: one law per block (`law`), constants k_device/k_server,
    magnitude pruning assumed to remove the fraction ρ of prunable FLOPs and of stored weights.
    """

    mode: Literal["calibrated", "paper"] = "calibrated"
    rules: list[str] | None = Field(
        None, description="calibrated mode: rules to choose from (default: every rule the "
        "profile has measured costs for)")
    law: LawName | None = None
    # a number, or "profile": the constant measured by `laimco analyze` and stored in the profile
    k_device: NonNegative | Literal["profile"] | None = None
    k_server: NonNegative | Literal["profile"] | None = None

    @model_validator(mode="after")
    def _keys_of_mode(self) -> DistortionSection:
        if self.mode == "calibrated":
            given = [k for k in ("law", "k_device", "k_server") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} apply to mode = 'paper' only; in the "
                                 "calibrated mode the profile's measured curves are used "
                                 "(remove them, or set mode = 'paper')")
            if self.rules is not None and not self.rules:
                raise ValueError("rules must name at least one pruning rule")
        elif self.rules is not None:
            raise ValueError("rules applies to mode = 'calibrated' only (the paper mode prunes "
                             "by magnitude)")
        return self

    @property
    def paper_law(self) -> LawName:
        return self.law or "laplace"

    @property
    def paper_k_device(self) -> float | Literal["profile"]:
        return 1.0 if self.k_device is None else self.k_device

    @property
    def paper_k_server(self) -> float | Literal["profile"]:
        return 1.0 if self.k_server is None else self.k_server


class Scenario(_Section):
    """A whole scenario (one TOML file)."""

    model: ModelSection = Field(default_factory=lambda: ModelSection.model_validate({}))
    device: DeviceSection
    server: ServerSection
    channel: ChannelSection
    task: TaskSection
    distortion: DistortionSection = Field(
        default_factory=lambda: DistortionSection.model_validate({}))

    def replace(self, **changes: dict[str, object]) -> Scenario:
        """A copy with some keys of some sections changed, validated again:
        `scenario.replace(task={"latency_budget_s": 0.3})`."""
        data = self.model_dump()
        for section, values in changes.items():
            data[section] = {**data[section], **values}
        return scenario_from_dict(data)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(scenario)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and section)"
        elif item["type"] == "missing":
            message = "required key is missing"
        got = item.get("input")
        shown = "" if item["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{key}: {message}{shown}")
    return "invalid scenario:\n  " + "\n  ".join(lines)


def scenario_from_dict(data: dict[str, object]) -> Scenario:
    """Validate a scenario given as nested dictionaries."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_describe(err)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file."""
    file = Path(path)
    if not file.is_file():
        raise ScenarioError(f"scenario file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from None
    try:
        return scenario_from_dict(data)
    except ScenarioError as err:
        raise ScenarioError(f"{path}: {err}") from None
