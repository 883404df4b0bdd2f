"""Scenario files: a TOML description of the model, device, server, channel and task limits,
validated by pydantic. Every quantity is in SI units; the key names say which.

Every number has a physical range (README "Scenario files"). The optimizer is checked at the
corners of the box they span (tests/test_scenario_ranges.py: every strategy solves, joint never
loses to a restriction of itself, the brute-force search agrees); beyond it double precision
gave wrong decisions, so a value outside is an error rather than a silently wrong answer.
Types are strict: `true` is not a number, a float is not an integer (an integer is a fine
float)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from laimco.schema_messages import invalid_file_message
from laimco.system import Channel, Device, Server
from laimco.theory.distortion_bound import LawName
from laimco.uplink.coding import Coding
from laimco.uplink.quantizer import ACTIVATION_BITS

MAX_SCENARIO_BYTES = 1 << 20  # a scenario is a few hundred bytes; checked before reading


def _plain_int(value: Any) -> Any:
    """numpy integers (sweep axes) count as integers; bools stay bools (and are refused)."""
    if isinstance(value, np.integer):
        return int(value)
    return value


def _range(lo: float, hi: float) -> Any:
    """[lo, hi], finite; strict: an int is a fine float, a bool or a string is not."""
    return Field(ge=lo, le=hi, allow_inf_nan=False, strict=True)


_NUMPY = BeforeValidator(_plain_int)

# The accepted ranges (README "Scenario files" states them and why).
ENERGY_MAX_J = 1e6
LATENCY_MAX_S = 1e4
FrequencyHz = Annotated[float, _NUMPY, _range(1e3, 1e12)]  # kHz MCUs .. beyond any CPU clock
FlopsPerCycle = Annotated[float, _NUMPY, _range(1e-3, 1e7)]  # soft-float core .. a whole GPU
Kappa = Annotated[float, _NUMPY, _range(1e-35, 1e-20)]  # J·s², CMOS (typically 1e-28)
TxPowerW = Annotated[float, _NUMPY, _range(1e-6, 1e3)]  # -30 dBm .. 60 dBm
EnergyJ = Annotated[float, _NUMPY, _range(1e-9, ENERGY_MAX_J)]  # nJ .. MJ per inference
MemoryBytes = Annotated[float, _NUMPY, _range(1.0, 1e18)]  # 1 B .. 1 EB
BandwidthHz = Annotated[float, _NUMPY, _range(1.0, 1e12)]  # 1 Hz .. 1 THz
NoisePsdWPerHz = Annotated[float, _NUMPY, _range(1e-24, 1e-12)]  # < kT at 1 K .. -90 dBm/Hz
PathGain = Annotated[float, _NUMPY, _range(1e-20, 1.0)]  # -200 .. 0 dB: a passive channel
LatencyS = Annotated[float, _NUMPY, _range(1e-6, LATENCY_MAX_S)]  # µs .. ~3 hours
LatencyOrZeroS = Annotated[float, _NUMPY, _range(0.0, LATENCY_MAX_S)]
BytesPerWeight = Annotated[float, _NUMPY, _range(0.125, 16.0)]  # 1 bit .. 128 bits
Sensitivity = Annotated[float, _NUMPY, _range(0.0, 1e6)]
OutageProb = Annotated[float, _NUMPY, _range(1e-6, 0.99)]
RatioBelowOne = Annotated[float, _NUMPY, Field(ge=0, lt=1, allow_inf_nan=False, strict=True)]
Count = Annotated[int, _NUMPY, Field(ge=0, le=1_000_000, strict=True)]


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not validate; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelSection(_Section):
    profile: str = Field("minilm-l6", min_length=1, max_length=4096,
                         description='built-in profile name, "config:NAME" or a JSON path')
    bytes_per_weight: BytesPerWeight = Field(4.0, description="bytes of one stored weight")


class DeviceSection(_Section):
    cpu_freq_max_hz: FrequencyHz
    flops_per_cycle: FlopsPerCycle
    kappa: Kappa = Field(description="effective switched capacitance, J·s² per cycle·Hz²")
    tx_power_max_w: TxPowerW
    energy_budget_j: EnergyJ
    memory_bytes: MemoryBytes | None = Field(None, description="absent = unlimited")

    def to_device(self) -> Device:
        return Device(**self.model_dump())


class ServerSection(_Section):
    cpu_freq_max_hz: FrequencyHz = Field(description="this device's share of the server's CPU")
    flops_per_cycle: FlopsPerCycle

    def to_server(self) -> Server:
        return Server(**self.model_dump())


class ChannelSection(_Section):
    bandwidth_hz: BandwidthHz
    noise_psd_w_per_hz: NoisePsdWPerHz
    path_gain: PathGain = Field(description="mean channel power gain, linear")
    fading: Literal["none", "rayleigh"] = "none"
    outage_prob: OutageProb | None = None

    @model_validator(mode="after")
    def _outage_needed(self) -> ChannelSection:
        if self.fading == "rayleigh" and self.outage_prob is None:
            raise ValueError("fading = 'rayleigh' needs channel.outage_prob in [1e-6, 0.99]")
        return self

    def to_channel(self) -> Channel:
        return Channel(**self.model_dump())


class TaskSection(_Section):
    latency_budget_s: LatencyS
    downlink_s: LatencyOrZeroS = 0.0
    min_split: Count = 0
    rho_max: RatioBelowOne = 0.9
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
    k_device: Sensitivity | Literal["profile"] | None = None
    k_server: Sensitivity | Literal["profile"] | None = None

    @field_validator("rules", "law", "k_device", "k_server")
    @classmethod
    def _keys_of_mode(cls, value: object, info: ValidationInfo) -> object:
        """law and the k's belong to the paper mode, rules to the calibrated one."""
        if value is None:  # absent
            return value
        mode = info.data.get("mode", "calibrated")
        key = info.field_name
        if key == "rules":
            if mode != "calibrated":
                raise ValueError("applies to mode = 'calibrated' only (the paper mode prunes by "
                                 "magnitude): remove it or set mode = 'calibrated'")
            if not value:
                raise ValueError("must name at least one pruning rule")
        elif mode == "calibrated":
            raise ValueError("applies to mode = 'paper' only; the calibrated mode uses the "
                             "profile's measured curves (remove it, or set mode = 'paper')")
        return value

    @property
    def paper_law(self) -> LawName:
        return self.law or "laplace"

    @property
    def paper_k_device(self) -> float | Literal["profile"]:
        return 1.0 if self.k_device is None else self.k_device

    @property
    def paper_k_server(self) -> float | Literal["profile"]:
        return 1.0 if self.k_server is None else self.k_server


class UplinkSection(_Section):
    """How the activation crossing the split is sent (docs/theory.md §6): the widths the
    optimizer chooses among, and the lossless coding of the payload."""

    activation_bits: list[Annotated[int, Field(strict=True)]] | None = Field(
        None, description="bits per activation element to choose among (32 = float32, 16 = "
        "float16, 8/6/4/2 = integers with per-token scales); default: 32 and every width the "
        "profile measured (calibrated mode), 32 (paper mode)")
    coding: Coding = Field("none", description='"zstd": lossless coding of the payload')

    @field_validator("activation_bits")
    @classmethod
    def _supported(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        allowed = ", ".join(str(b) for b in ACTIVATION_BITS)
        if not value:
            raise ValueError(f"must list at least one width among {allowed}")
        for bits in value:
            if bits not in ACTIVATION_BITS:
                raise ValueError(f"{bits} bits is not supported: choose among {allowed}")
        if len(set(value)) != len(value):
            raise ValueError("lists a width twice: give each once")
        return value


class Scenario(_Section):
    """A whole scenario (one TOML file)."""

    model: ModelSection = Field(default_factory=lambda: ModelSection.model_validate({}))
    device: DeviceSection
    server: ServerSection
    channel: ChannelSection
    task: TaskSection
    distortion: DistortionSection = Field(
        default_factory=lambda: DistortionSection.model_validate({}))
    uplink: UplinkSection = Field(default_factory=lambda: UplinkSection.model_validate({}))

    def replace(self, **changes: dict[str, object]) -> Scenario:
        """A copy with some keys of some sections changed, validated again:
        `scenario.replace(task={"latency_budget_s": 0.3})`."""
        data = self.model_dump()
        for section, values in changes.items():
            data[section] = {**data[section], **values}
        return scenario_from_dict(data)


def scenario_from_dict(data: dict[str, object]) -> Scenario:
    """Validate a scenario given as nested dictionaries."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(invalid_file_message(err, Scenario, "invalid scenario")) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file (UTF-8, at most MAX_SCENARIO_BYTES)."""
    file = Path(path)
    if not file.is_file():
        raise ScenarioError(f"scenario file {str(path)!r} does not exist")
    try:
        size = file.stat().st_size
        if size > MAX_SCENARIO_BYTES:
            raise ScenarioError(f"{path}: {size} bytes is too large for a scenario file (at most "
                                f"{MAX_SCENARIO_BYTES}); give a TOML scenario (see scenarios/)")
        data = tomllib.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a text file (not UTF-8); a scenario is a TOML file "
                            "(see scenarios/)") from None
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read the scenario: {err.strerror}") from None
    try:
        return scenario_from_dict(data)
    except ScenarioError as err:
        raise ScenarioError(f"{path}: {err}") from None
