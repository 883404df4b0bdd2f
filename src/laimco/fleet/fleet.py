"""A fleet: device classes (single-device scenarios), the devices as arrays over those classes,
and the resources they share (docs/theory.md §7.1).

Devices are held as arrays (class index, path gain, weight) rather than one scenario each, so a
fleet of 100,000 devices costs a few megabytes; `device_scenario` builds one device's scenario
with its shares when a single-device tool (solve, prune, serve) needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from laimco.config import Scenario

FleetObjective = Literal["sum", "max-min"]


@dataclass(frozen=True)
class SharedResources:
    """What the devices divide: the uplink band (FDMA, Σ b_u ≤ B), the server's cycles per
    second (Σ f_s,u ≤ F) at `server_flops_per_cycle`, and the server's memory for the parts it
    hosts (None: not limited)."""

    bandwidth_hz: float
    server_cycles_per_s: float
    server_flops_per_cycle: float
    server_memory_bytes: float | None = None


@dataclass(frozen=True)
class DeviceClass:
    """One kind of device: a complete single-device scenario. Its channel gain, bandwidth and
    server frequency are placeholders; each device has its own gain, and its shares replace
    the bandwidth and the server frequency."""

    name: str
    scenario: Scenario


@dataclass(frozen=True)
class Fleet:
    """N devices, device u of class `classes[class_index[u]]` with mean channel power gain
    `path_gain[u]` (linear, the realization the fleet is planned for) and objective weight
    `weight[u]`."""

    name: str
    resources: SharedResources
    classes: tuple[DeviceClass, ...]
    class_index: NDArray[np.intp]
    path_gain: NDArray[np.float64]
    weight: NDArray[np.float64]
    ids: tuple[str, ...]
    objective: FleetObjective = "sum"

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("class_index", "path_gain", "weight"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"fleet {self.name!r}: {name} has shape "
                                 f"{np.shape(getattr(self, name))}, expected ({n},)")

    @property
    def n_devices(self) -> int:
        return len(self.ids)

    def members(self, class_number: int) -> NDArray[np.intp]:
        """The indices of the devices of one class."""
        return np.flatnonzero(self.class_index == class_number)

    def device_scenario(self, device: int, bandwidth_hz: float,
                        server_cycles_per_s: float) -> Scenario:
        """Device u's single-device scenario with its shares: its class scenario at its own
        gain (no fading: the fleet is planned for one realization), `bandwidth_hz` of band and
        `server_cycles_per_s` of the server at the fleet server's FLOPs per cycle."""
        base = self.classes[int(self.class_index[device])].scenario
        return base.replace(
            channel={"bandwidth_hz": bandwidth_hz, "path_gain": float(self.path_gain[device]),
                     "fading": "none", "outage_prob": None},
            server={"cpu_freq_max_hz": server_cycles_per_s,
                    "flops_per_cycle": self.resources.server_flops_per_cycle})

    def subset(self, devices: NDArray[np.intp], name: str | None = None) -> Fleet:
        """The fleet of some of the devices (same classes and resources)."""
        index = np.asarray(devices, dtype=np.intp)
        return Fleet(name=name or self.name, resources=self.resources, classes=self.classes,
                     class_index=self.class_index[index], path_gain=self.path_gain[index],
                     weight=self.weight[index], ids=tuple(self.ids[i] for i in index),
                     objective=self.objective)
