"""Distance → mean channel power gain: the 3GPP TR 38.901 (V17.0.0) Table 7.4.1-1 path loss of
the UMi street-canyon scenario, so a scenario's `channel.path_gain` can be set from a distance
(README "Scenario files"; `laimco path-gain`). Antenna gains and shadow fading are not included:
the gain is 10^(−PL/10) of the median path loss.

LOS, with d_3D = √(d_2D² + (h_BS − h_UT)²), f_c in GHz and distances in metres:
    PL1 = 32.4 + 21·log10(d_3D) + 20·log10(f_c)                       10 m ≤ d_2D ≤ d'_BP
    PL2 = 32.4 + 40·log10(d_3D) + 20·log10(f_c)
          − 9.5·log10(d'_BP² + (h_BS − h_UT)²)                        d'_BP ≤ d_2D ≤ 5 km
    d'_BP = 4·h'_BS·h'_UT·f_c/c, h' = h − h_E, h_E = 1 m, c = 3·10⁸ m/s (f_c in Hz here)
NLOS:
    PL = max(PL_LOS, 35.3·log10(d_3D) + 22.4 + 21.3·log10(f_c) − 0.3·(h_UT − 1.5))
Ranges of validity: 10 m ≤ d_2D ≤ 5000 m, h_BS = 10 m, 1.5 m ≤ h_UT ≤ 22.5 m, and
0.5 GHz ≤ f_c ≤ 100 GHz (TR 38.901 §7.4.1).

LOS probability (Table 7.4.2-1, UMi street canyon), used by the fleet generator (docs/fleet.md):
    P_LOS(d_2D) = 1                                        d_2D ≤ 18 m
                = 18/d_2D + exp(−d_2D/36)·(1 − 18/d_2D)    d_2D > 18 m

`UmiStreetCanyon.path_gain` works on one distance; `path_gains` is the same law over arrays of
distances and LOS flags (a fleet of 100,000 devices)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

SPEED_OF_LIGHT_M_PER_S = 3.0e8  # the value TR 38.901 uses in d'_BP
BS_HEIGHT_M = 10.0
ENVIRONMENT_HEIGHT_M = 1.0  # h_E of UMi
DISTANCE_RANGE_M = (10.0, 5000.0)
UT_HEIGHT_RANGE_M = (1.5, 22.5)
CARRIER_RANGE_GHZ = (0.5, 100.0)


def los_pl1_db(distance_3d_m: ArrayLike, carrier_ghz: float) -> NDArray[np.float64]:
    """PL1 = 32.4 + 21·log10(d_3D) + 20·log10(f_c) (dB), the LOS path loss up to the breakpoint
    distance d'_BP, elementwise over 3D distances in metres (no range check)."""
    d3 = np.asarray(distance_3d_m, dtype=np.float64)
    return 32.4 + 21 * np.log10(d3) + 20 * math.log10(carrier_ghz)


def los_pl1_distance_m(loss_db: ArrayLike, carrier_ghz: float) -> NDArray[np.float64]:
    """The 3D distance (m) at which PL1 equals `loss_db`: the inverse of `los_pl1_db`,
    elementwise (no range check)."""
    loss = np.asarray(loss_db, dtype=np.float64)
    return 10 ** ((loss - 32.4 - 20 * math.log10(carrier_ghz)) / 21)


class PathLossError(ValueError):
    """A distance, height or carrier outside the model's range of validity."""


def _check(name: str, value: float, bounds: tuple[float, float], unit: str) -> None:
    low, high = bounds
    if not (math.isfinite(value) and low <= value <= high):
        raise PathLossError(f"{name} = {value:g} is outside the 3GPP TR 38.901 UMi range of "
                            f"validity: give {low:g}..{high:g} {unit}")


@dataclass(frozen=True)
class UmiStreetCanyon:
    """3GPP TR 38.901 UMi street canyon at one carrier and user-terminal height."""

    carrier_ghz: float
    ut_height_m: float = 1.5

    def __post_init__(self) -> None:
        _check("carrier_ghz", self.carrier_ghz, CARRIER_RANGE_GHZ, "GHz")
        _check("ut_height_m", self.ut_height_m, UT_HEIGHT_RANGE_M, "m")

    @property
    def breakpoint_distance_m(self) -> float:
        """d'_BP = 4·h'_BS·h'_UT·f_c/c (Table 7.4.1-1, note 1)."""
        return (4 * (BS_HEIGHT_M - ENVIRONMENT_HEIGHT_M) * (self.ut_height_m
                - ENVIRONMENT_HEIGHT_M) * self.carrier_ghz * 1e9 / SPEED_OF_LIGHT_M_PER_S)

    def distance_3d_m(self, distance_2d_m: float) -> float:
        _check("distance_m", distance_2d_m, DISTANCE_RANGE_M, "m (ground distance)")
        return math.hypot(distance_2d_m, BS_HEIGHT_M - self.ut_height_m)

    def los_path_loss_db(self, distance_2d_m: float) -> float:
        """Line-of-sight path loss (dB) at a ground distance."""
        d3 = self.distance_3d_m(distance_2d_m)
        breakpoint_m = self.breakpoint_distance_m
        if distance_2d_m <= breakpoint_m:
            return float(los_pl1_db(d3, self.carrier_ghz))
        return (32.4 + 40 * math.log10(d3) + 20 * math.log10(self.carrier_ghz)
                - 9.5 * math.log10(breakpoint_m**2 + (BS_HEIGHT_M - self.ut_height_m) ** 2))

    def nlos_path_loss_db(self, distance_2d_m: float) -> float:
        """Non-line-of-sight path loss (dB): never below the LOS loss at the same distance."""
        d3 = self.distance_3d_m(distance_2d_m)
        nlos = (35.3 * math.log10(d3) + 22.4 + 21.3 * math.log10(self.carrier_ghz)
                - 0.3 * (self.ut_height_m - 1.5))
        return max(self.los_path_loss_db(distance_2d_m), nlos)

    def path_loss_db(self, distance_2d_m: float, *, line_of_sight: bool = True) -> float:
        return (self.los_path_loss_db(distance_2d_m) if line_of_sight
                else self.nlos_path_loss_db(distance_2d_m))

    def path_gain(self, distance_2d_m: float, *, line_of_sight: bool = True) -> float:
        """The linear mean power gain 10^(−PL/10), the value of `channel.path_gain`."""
        return gain_of_loss_db(self.path_loss_db(distance_2d_m, line_of_sight=line_of_sight))

    def path_gains(self, distance_2d_m: ArrayLike,
                   line_of_sight: ArrayLike = True) -> NDArray[np.float64]:
        """`path_gain` elementwise over ground distances (m) and LOS flags (broadcast together):
        PL1/PL2 for LOS, max(PL_LOS, PL_NLOS) otherwise, gain 10^(−PL/10)."""
        d2 = np.asarray(distance_2d_m, dtype=np.float64)
        los = np.asarray(line_of_sight, dtype=bool)
        low, high = DISTANCE_RANGE_M
        outside = ~((d2 >= low) & (d2 <= high))  # NaN is outside too
        if np.any(outside):
            _check("distance_m", float(d2[outside].flat[0]), DISTANCE_RANGE_M,
                   "m (ground distance)")
        height_m = BS_HEIGHT_M - self.ut_height_m
        log_d3 = np.log10(np.hypot(d2, height_m))
        log_fc = math.log10(self.carrier_ghz)
        breakpoint_m = self.breakpoint_distance_m
        pl1 = 32.4 + 21 * log_d3 + 20 * log_fc
        pl2 = (32.4 + 40 * log_d3 + 20 * log_fc
               - 9.5 * math.log10(breakpoint_m**2 + height_m**2))
        los_loss = np.where(d2 <= breakpoint_m, pl1, pl2)
        nlos_loss = np.maximum(los_loss, 35.3 * log_d3 + 22.4 + 21.3 * log_fc
                               - 0.3 * (self.ut_height_m - 1.5))
        loss_db = np.where(los, los_loss, nlos_loss)
        return np.asarray(10.0 ** (-loss_db / 10.0), dtype=np.float64)


def los_probability(distance_2d_m: ArrayLike) -> NDArray[np.float64]:
    """P_LOS of UMi street canyon (TR 38.901 Table 7.4.2-1) elementwise over ground distances
    in metres: 1 up to 18 m, then 18/d + exp(−d/36)·(1 − 18/d)."""
    d2 = np.asarray(distance_2d_m, dtype=np.float64)
    far = np.maximum(d2, 18.0)  # the d > 18 m branch, evaluated only where it applies
    return np.where(d2 <= 18.0, 1.0, 18.0 / far + np.exp(-far / 36.0) * (1.0 - 18.0 / far))


def gain_of_loss_db(loss_db: float) -> float:
    """Linear power gain of a path loss in dB."""
    return float(10.0 ** (-loss_db / 10.0))
