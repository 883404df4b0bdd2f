"""The battery-powered device: a DVFS CPU and a radio transmitter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from laimco.system.processor import Processor


@dataclass(frozen=True)
class Device(Processor):
    """A device CPU with dynamic voltage and frequency scaling (docs/theory.md §2).

    Running `cycles` CPU cycles at frequency f takes t = cycles/f seconds (eq. 2.2) and
    κ·cycles·f² joules (eq. 2.3), κ the effective switched capacitance in J·s² (per cycle·Hz²).
    No defaults: every value comes from a scenario's [device] section (config.DeviceSection),
    where all but `memory_bytes` (absent = unlimited) are required.
    """

    kappa: float
    tx_power_max_w: float
    energy_budget_j: float
    memory_bytes: float | None = None

    def compute_energy_j(self, cycles: ArrayLike, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """e_d = κ · cycles · f_d² (eq. 2.3)."""
        return np.asarray(self.kappa * np.asarray(cycles, dtype=np.float64)
                          * np.asarray(freq_hz) ** 2, dtype=np.float64)
