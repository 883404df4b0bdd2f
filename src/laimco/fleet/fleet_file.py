"""Fleet files: a TOML description of the shared resources and the devices of a fleet (an
explicit `[[devices]]` list or a seeded `[generator]`), validated by pydantic and turned into a
`Fleet` (docs/fleet.md "Fleet file"). Every quantity is in SI units; the key names say which.

A device's `scenario` is a packaged scenario name (`minilm-phone`: `scenarios/minilm-phone.toml`
of the installed package) or a path to a scenario file, relative to the fleet file; the distinct
scenarios are the fleet's device classes. An explicit device's channel gain is the realization
the fleet is planned for: `path_gain`, or `distance_m` through the 3GPP UMi street-canyon path
loss, or else the class scenario's own `channel.path_gain`; the class scenario's `fading` is not
drawn for it (give the drawn gain, or use `[generator]` with `fading = "rayleigh"`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from laimco.config import FlopsPerCycle, MemoryBytes, PathGain, Scenario, ScenarioError
from laimco.fleet.device_classes import NAME_PATTERN, ClassCatalog
from laimco.fleet.fleet import Fleet, SharedResources
from laimco.fleet.generator import (
    DevicePlacement,
    DistanceLaw,
    Fading,
    LineOfSight,
    draw_devices,
)
from laimco.schema_messages import invalid_file_message
from laimco.system.pathloss import (
    CARRIER_RANGE_GHZ,
    DISTANCE_RANGE_M,
    UT_HEIGHT_RANGE_M,
    UmiStreetCanyon,
)

MAX_FLEET_BYTES = 1 << 24  # 16 MiB: an explicit list of 100,000 devices; checked before reading
MAX_DEVICES = 1_000_000


class FleetError(ValueError):
    """A fleet file that cannot be read, does not validate, or names a scenario that does not
    load; the message names the key and what to change."""


def _number(low: float, high: float, *, open_low: bool = False) -> Any:
    """A finite number in [low, high] ((low, high] if `open_low`); an int is a fine float."""
    if open_low:
        return Field(gt=low, le=high, allow_inf_nan=False, strict=True)
    return Field(ge=low, le=high, allow_inf_nan=False, strict=True)


TotalBandwidthHz = Annotated[float, _number(1.0, 1e12)]  # the whole band: 1 Hz .. 1 THz
TotalCyclesPerS = Annotated[float, _number(1e3, 1e18)]  # the whole server: kHz .. 10⁶ × 1 THz
Weight = Annotated[float, _number(0.0, 1e6, open_low=True)]
DistanceM = Annotated[float, _number(*DISTANCE_RANGE_M)]
CarrierGhz = Annotated[float, _number(*CARRIER_RANGE_GHZ)]
UtHeightM = Annotated[float, _number(*UT_HEIGHT_RANGE_M)]
SafeName = Annotated[str, Field(pattern=NAME_PATTERN, strict=True)]
ScenarioReference = Annotated[str, Field(
    min_length=1, max_length=4096, strict=True,
    description="a packaged scenario name (minilm-phone) or a .toml path relative to the "
                "fleet file")]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ResourcesSection(_Table):
    """What the devices share (docs/theory.md §7.1)."""

    bandwidth_hz: TotalBandwidthHz = Field(description="total uplink band, divided by FDMA")
    server_cycles_per_s: TotalCyclesPerS = Field(description="total server cycles per second")
    server_flops_per_cycle: FlopsPerCycle = Field(
        description="the server's FLOPs per cycle; replaces every class scenario's")
    server_memory_bytes: MemoryBytes | None = Field(None, description="absent = unlimited")

    def to_resources(self) -> SharedResources:
        return SharedResources(**self.model_dump())


class DeviceEntry(_Table):
    """One `[[devices]]` table."""

    scenario: ScenarioReference
    id: SafeName | None = Field(None, description='default "<class>-<k>"')
    weight: Weight = 1.0
    path_gain: PathGain | None = Field(None, description="linear mean channel power gain")
    distance_m: DistanceM | None = Field(None, description="ground distance to the base "
                                         "station (3GPP UMi street canyon)")
    line_of_sight: bool | None = Field(None, description="with distance_m; default true")
    carrier_ghz: CarrierGhz | None = Field(None, description="with distance_m; default 3.5")
    ut_height_m: UtHeightM | None = Field(None, description="with distance_m; default 1.5")

    @field_validator("distance_m")
    @classmethod
    def _one_gain(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("path_gain") is not None:
            raise ValueError("give path_gain or distance_m, not both")
        return value

    @field_validator("line_of_sight", "carrier_ghz", "ut_height_m")
    @classmethod
    def _with_distance(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and info.data.get("distance_m") is None:
            raise ValueError("applies with distance_m only: give distance_m or remove it")
        return value

    def path_gain_of(self, scenario: Scenario) -> float:
        """The device's gain: its own, or from its distance, or its class scenario's."""
        if self.path_gain is not None:
            return self.path_gain
        if self.distance_m is None:
            return scenario.channel.path_gain
        model = UmiStreetCanyon(carrier_ghz=self.carrier_ghz or 3.5,
                                ut_height_m=self.ut_height_m or 1.5)
        line_of_sight = True if self.line_of_sight is None else self.line_of_sight
        return model.path_gain(self.distance_m, line_of_sight=line_of_sight)


class DistanceSection(_Table):
    """`generator.distance_m = {min, max, law}`: ground distances in metres."""

    min: DistanceM
    max: DistanceM
    law: DistanceLaw = Field("area", description='"area": uniform over the annulus; '
                             '"uniform": uniform in distance')

    @field_validator("max")
    @classmethod
    def _ordered(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min")
        if low is not None and value < low:
            raise ValueError(f"is smaller than min ({low:g}): give max ≥ min")
        return value


class ClassEntry(_Table):
    """One `[[generator.classes]]` table: `count` devices of one scenario."""

    scenario: ScenarioReference
    count: Annotated[int, Field(ge=0, le=MAX_DEVICES, strict=True)]
    weight: Weight = 1.0


class GeneratorSection(_Table):
    """`[generator]`: devices drawn with a seed (laimco.fleet.generator)."""

    seed: Annotated[int, Field(ge=0, le=2**63 - 1, strict=True)]
    distance_m: DistanceSection
    line_of_sight: LineOfSight = Field("3gpp", description='"3gpp": drawn with TR 38.901 '
                                       'Table 7.4.2-1 P_LOS(d)')
    fading: Fading = Field("none", description='"rayleigh": |h|² ~ Exp(1) per device')
    carrier_ghz: CarrierGhz = 3.5
    ut_height_m: UtHeightM = 1.5
    classes: list[ClassEntry]

    @field_validator("classes")
    @classmethod
    def _some_devices(cls, value: list[ClassEntry]) -> list[ClassEntry]:
        total = sum(entry.count for entry in value)
        if total == 0:
            raise ValueError("no devices: give at least one [[generator.classes]] table with "
                             "count ≥ 1")
        if total > MAX_DEVICES:
            raise ValueError(f"{total} devices in all: give at most {MAX_DEVICES}")
        return value

    def placement(self) -> DevicePlacement:
        return DevicePlacement(
            distance_min_m=self.distance_m.min, distance_max_m=self.distance_m.max,
            distance_law=self.distance_m.law, line_of_sight=self.line_of_sight,
            fading=self.fading, carrier_ghz=self.carrier_ghz, ut_height_m=self.ut_height_m)


class FleetFile(_Table):
    """A whole fleet file: resources and either `[[devices]]` or `[generator]`."""

    name: SafeName | None = Field(None, description="default: the file name without .toml")
    objective: Literal["sum", "max-min"] = "sum"
    resources: ResourcesSection
    devices: list[DeviceEntry] | None = None
    generator: GeneratorSection | None = None

    @field_validator("devices")
    @classmethod
    def _not_empty(cls, value: list[DeviceEntry] | None) -> list[DeviceEntry] | None:
        if value is not None and not value:
            raise ValueError("lists no device: give at least one [[devices]] table")
        if value is not None and len(value) > MAX_DEVICES:
            raise ValueError(f"{len(value)} devices: give at most {MAX_DEVICES}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FleetFile:
        if (self.devices is None) == (self.generator is None):
            which = ("both [[devices]] and" if self.devices is not None
                     else "neither [[devices]] nor")
            raise ValueError(f"the fleet file has {which} [generator]: give exactly one (an "
                             "explicit list of devices, or a generator)")
        return self


def parse_fleet_file(data: dict[str, object]) -> FleetFile:
    """Validate a fleet file given as nested dictionaries (no scenario is loaded)."""
    try:
        return FleetFile.model_validate(data)
    except ValidationError as err:
        raise FleetError(invalid_file_message(err, FleetFile, "invalid fleet file")) from None


def _numbered_ids(class_index: NDArray[np.intp], names: list[str]) -> list[str]:
    """'<class>-<k>': k = 1, 2, ... over the devices of each class, in fleet order."""
    seen = [0] * len(names)
    ids = []
    for number in class_index.tolist():
        seen[number] += 1
        ids.append(f"{names[number]}-{seen[number]}")
    return ids


def _class_number(classes: ClassCatalog, reference: str, key: str) -> int:
    try:
        return classes.number(reference)
    except ScenarioError as err:
        raise FleetError(f"{key}: {err}") from None


def _explicit(devices: list[DeviceEntry], classes: ClassCatalog) -> tuple[
        NDArray[np.intp], NDArray[np.float64], NDArray[np.float64], list[str]]:
    numbers = [_class_number(classes, d.scenario, f"devices[{i}].scenario")
               for i, d in enumerate(devices)]
    class_index = np.asarray(numbers, dtype=np.intp)
    gain = np.array([d.path_gain_of(classes.classes[n].scenario)
                     for d, n in zip(devices, numbers, strict=True)])
    weight = np.array([d.weight for d in devices])
    default = _numbered_ids(class_index, [c.name for c in classes.classes])
    ids = [d.id or default[i] for i, d in enumerate(devices)]
    first: dict[str, int] = {}
    for i, device_id in enumerate(ids):
        if device_id in first:
            raise FleetError(f"devices[{i}].id: {device_id!r} is already the id of devices"
                             f"[{first[device_id]}]: give every device its own id")
        first[device_id] = i
    return class_index, gain, weight, ids


def _generated(generator: GeneratorSection, classes: ClassCatalog) -> tuple[
        NDArray[np.intp], NDArray[np.float64], NDArray[np.float64], list[str]]:
    numbers = [_class_number(classes, c.scenario, f"generator.classes[{i}].scenario")
               for i, c in enumerate(generator.classes)]
    counts = [c.count for c in generator.classes]
    class_index = np.repeat(np.asarray(numbers, dtype=np.intp), counts)
    weight = np.repeat(np.array([c.weight for c in generator.classes]), counts)
    draws = draw_devices(generator.placement(), int(sum(counts)), generator.seed)
    ids = _numbered_ids(class_index, [c.name for c in classes.classes])
    return class_index, draws.path_gain, weight, ids


def fleet_from_dict(data: dict[str, object], base_dir: str | Path,
                    *, default_name: str = "fleet") -> Fleet:
    """Validate a fleet given as nested dictionaries; scenario paths are relative to
    `base_dir`. The name is `data["name"]`, else `default_name`."""
    spec = parse_fleet_file(data)
    classes = ClassCatalog(Path(base_dir))
    if spec.devices is not None:
        class_index, gain, weight, ids = _explicit(spec.devices, classes)
    else:
        assert spec.generator is not None  # the model's validator: exactly one of them
        class_index, gain, weight, ids = _generated(spec.generator, classes)
    return Fleet(name=spec.name or default_name, resources=spec.resources.to_resources(),
                 classes=tuple(classes.classes), class_index=class_index,
                 path_gain=np.asarray(gain, dtype=np.float64),
                 weight=np.asarray(weight, dtype=np.float64), ids=tuple(ids),
                 objective=spec.objective)


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet TOML file (UTF-8, at most MAX_FLEET_BYTES) and load its class
    scenarios; FleetError names the key and what to change."""
    file = Path(path)
    if not file.is_file():
        raise FleetError(f"fleet file {str(path)!r} does not exist")
    try:
        size = file.stat().st_size
        if size > MAX_FLEET_BYTES:
            raise FleetError(f"{path}: {size} bytes is too large for a fleet file (at most "
                             f"{MAX_FLEET_BYTES}); give a TOML fleet file (see fleets/), with a "
                             "[generator] for a large fleet")
        data = tomllib.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise FleetError(f"{path}: not a text file (not UTF-8); a fleet is a TOML file "
                         "(see fleets/)") from None
    except tomllib.TOMLDecodeError as err:
        raise FleetError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise FleetError(f"{path}: cannot read the fleet file: {err.strerror}") from None
    if not re.fullmatch(NAME_PATTERN, file.stem) and "name" not in data:
        raise FleetError(f"{path}: the file name {file.stem!r} is not a safe fleet name "
                         "(letters, digits, '_', '-', '.'): give name = \"...\"")
    try:
        return fleet_from_dict(data, file.parent, default_name=file.stem)
    except FleetError as err:
        raise FleetError(f"{path}: {err}") from None
