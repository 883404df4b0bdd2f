"""The battery-powered device: a DVFS CPU and a radio transmitter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class Device:
    """A device CPU with dynamic voltage and frequency scaling (docs/theory.md §2).

    Running `cycles` CPU cycles at frequency f takes t = cycles/f seconds (eq. 2.2) and
    κ·cycles·f² joules (eq. 2.3), κ the effective switched capacitance in J·s² (per cycle·Hz²).
    """

    cpu_freq_max_hz: float
    flops_per_cycle: float
    kappa: float
    tx_power_max_w: float
    energy_budget_j: float
    memory_bytes: float | None = None

    def cycles(self, flops: ArrayLike) -> NDArray[np.float64]:
        """CPU cycles needed for `flops` floating-point operations (eq. 2.1)."""
        return np.asarray(flops, dtype=np.float64) / self.flops_per_cycle

    def compute_latency_s(self, cycles: ArrayLike, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """t_d = cycles / f_d (eq. 2.2)."""
        cycles_a = np.asarray(cycles, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.where(cycles_a > 0, cycles_a / np.asarray(freq_hz), 0.0),
                              dtype=np.float64)

    def compute_energy_j(self, cycles: ArrayLike, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """e_d = κ · cycles · f_d² (eq. 2.3)."""
        return np.asarray(self.kappa * np.asarray(cycles, dtype=np.float64)
                          * np.asarray(freq_hz) ** 2, dtype=np.float64)
