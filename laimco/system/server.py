"""The edge server's share of compute."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class Server:
    """The CPU share an edge server gives this device: t_s = flops/(φ_s·f_s) (eq. 2.7).

    Server energy is not charged to the device's budget, so the best server frequency is always
    its maximum (docs/theory.md §4.1)."""

    cpu_freq_max_hz: float
    flops_per_cycle: float

    def cycles(self, flops: ArrayLike) -> NDArray[np.float64]:
        """Server CPU cycles for `flops` floating-point operations."""
        return np.asarray(flops, dtype=np.float64) / self.flops_per_cycle

    def compute_latency_s(self, cycles: ArrayLike, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """t_s = cycles / f_s (eq. 2.7)."""
        cycles_a = np.asarray(cycles, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.where(cycles_a > 0, cycles_a / np.asarray(freq_hz), 0.0),
                              dtype=np.float64)
