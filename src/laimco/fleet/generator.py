"""Random device placement for a generated fleet (docs/fleet.md "Fleet file", `[generator]`):
ground distances from a law, line of sight, the 3GPP TR 38.901 UMi street-canyon path loss,
and Rayleigh fading, all drawn from one seeded generator and vectorized over the devices.

Per device u, in this order from `numpy.random.default_rng(seed)`:
    d_u     "area":    d = √(U·(d_max² − d_min²) + d_min²), U ~ U(0, 1): uniform over the annulus
            "uniform": d = d_min + U·(d_max − d_min)
    LOS_u   "3gpp": LOS if V < P_LOS(d_u), V ~ U(0, 1) (TR 38.901 Table 7.4.2-1);
            "always" / "never": no draw
    |h_u|²  "rayleigh": Exp(1); "none": 1, no draw
    g_u = 10^(−PL(d_u, LOS_u)/10) · |h_u|²  (TR 38.901 Table 7.4.1-1, laimco.system.pathloss)
A gain below the scenario floor (1e-20, −200 dB) is raised to it: such a device cannot reach the
server at any share either way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from laimco.system.pathloss import UmiStreetCanyon, los_probability

DistanceLaw = Literal["area", "uniform"]
LineOfSight = Literal["always", "never", "3gpp"]
Fading = Literal["none", "rayleigh"]
PATH_GAIN_FLOOR = 1e-20  # the smallest channel.path_gain a scenario accepts (config.PathGain)


@dataclass(frozen=True)
class DevicePlacement:
    """How the generator places devices: the distance law on [min, max] m, the LOS rule, the
    fading and the UMi path-loss model's carrier and device height."""

    distance_min_m: float
    distance_max_m: float
    distance_law: DistanceLaw = "area"
    line_of_sight: LineOfSight = "3gpp"
    fading: Fading = "none"
    carrier_ghz: float = 3.5
    ut_height_m: float = 1.5


@dataclass(frozen=True)
class DeviceDraws:
    """What was drawn for n devices: ground distance (m), LOS flag, fading power |h|²
    (1 without fading) and the resulting linear channel power gain."""

    distance_m: NDArray[np.float64]
    line_of_sight: NDArray[np.bool_]
    fading_power: NDArray[np.float64]
    path_gain: NDArray[np.float64]


def draw_distances_m(placement: DevicePlacement, n: int,
                     rng: np.random.Generator) -> NDArray[np.float64]:
    """n ground distances from the placement's law (module docstring)."""
    low, high = placement.distance_min_m, placement.distance_max_m
    uniform = rng.random(n)
    if placement.distance_law == "area":
        return np.sqrt(uniform * (high**2 - low**2) + low**2)
    return low + uniform * (high - low)


def draw_devices(placement: DevicePlacement, n: int, seed: int) -> DeviceDraws:
    """Distances, LOS, fading and channel gains of n devices, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    distance_m = draw_distances_m(placement, n, rng)
    if placement.line_of_sight == "3gpp":
        los = rng.random(n) < los_probability(distance_m)
    else:
        los = np.full(n, placement.line_of_sight == "always")
    fading_power = (rng.standard_exponential(n) if placement.fading == "rayleigh"
                    else np.ones(n))
    model = UmiStreetCanyon(carrier_ghz=placement.carrier_ghz, ut_height_m=placement.ut_height_m)
    gain = np.maximum(model.path_gains(distance_m, los) * fading_power, PATH_GAIN_FLOOR)
    return DeviceDraws(distance_m=distance_m, line_of_sight=los, fading_power=fading_power,
                       path_gain=gain)
