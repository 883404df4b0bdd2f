"""A CPU that runs FLOPs at a frequency: what the device and the server have in common."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class Processor:
    """`flops_per_cycle` FLOPs per cycle, at most `cpu_freq_max_hz` cycles per second."""

    cpu_freq_max_hz: float
    flops_per_cycle: float

    def cycles(self, flops: ArrayLike) -> NDArray[np.float64]:
        """CPU cycles needed for `flops` floating-point operations (eq. 2.1)."""
        return np.asarray(flops, dtype=np.float64) / self.flops_per_cycle

    def compute_latency_s(self, cycles: ArrayLike, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """t = cycles / f (eq. 2.2, 2.7); zero when there is nothing to run."""
        cycles_a = np.asarray(cycles, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.where(cycles_a > 0, cycles_a / np.asarray(freq_hz), 0.0),
                              dtype=np.float64)
