"""The edge server's share of compute."""

from __future__ import annotations

from dataclasses import dataclass

from laimco.system.processor import Processor


@dataclass(frozen=True)
class Server(Processor):
    """The CPU share an edge server gives this device: t_s = flops/(φ_s·f_s) (eq. 2.7).

    Server energy is not charged to the device's budget, so the best server frequency is always
    its maximum (docs/theory.md §4.1)."""
