"""Costs of a concrete decision, computed straight from the system model (docs/theory.md §2),
and the check of every limit. Independent of how the decision was found: the optimizer
re-checks its own answers with it, and so do the tests and the SLSQP baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from laimco.optimize.problem import SplitProblem
from laimco.optimize.tolerances import LIMIT_TOL

# the limits of a scenario, by the names `binding` and the limit usage use (README)
Limit = Literal["latency", "energy", "memory", "privacy", "tx_power", "cpu_freq_device",
                "cpu_freq_server", "rho_max_device", "rho_max_server"]


@dataclass(frozen=True)
class DecisionCosts:
    """Latency (s), energy (J) and memory (bytes) of one decision (eqs. 2.1–2.13)."""

    latency_device_s: float
    latency_uplink_s: float
    latency_server_s: float
    latency_downlink_s: float
    energy_compute_j: float
    energy_uplink_j: float
    memory_bytes: float

    @property
    def latency_total_s(self) -> float:
        return (self.latency_device_s + self.latency_uplink_s + self.latency_server_s
                + self.latency_downlink_s)

    @property
    def energy_total_j(self) -> float:
        return self.energy_compute_j + self.energy_uplink_j


def decision_costs(problem: SplitProblem, split: int, rho_device: float, rho_server: float,
                   power_w: float, freq_device_hz: float, freq_server_hz: float,
                   gain: float | None = None) -> DecisionCosts:
    """Evaluate eqs. (2.1)–(2.13) for one decision."""
    s = int(split)
    g = float(np.ravel(problem.gain)[0]) if gain is None else gain
    device, server, channel = problem.device, problem.server, problem.channel
    # the problem's cycles already follow the rule of each side (eq. 5.4)
    cycles_d = float(problem.device_cycles(rho_device)[s])
    cycles_s = float(problem.server_time_s(rho_server)[s]) * server.cpu_freq_max_hz
    bits = problem.upload_bits[s]
    t_c = float(channel.upload_time_s(bits, power_w, g)) if bits > 0 else 0.0
    return DecisionCosts(
        latency_device_s=float(device.compute_latency_s(cycles_d, freq_device_hz)),
        latency_uplink_s=t_c,
        latency_server_s=float(server.compute_latency_s(cycles_s, freq_server_hz)),
        # nothing to download when the whole model runs on the device (eq. 2.13)
        latency_downlink_s=(problem.scenario.task.downlink_s
                            if s < problem.profile.n_units else 0.0),
        energy_compute_j=float(device.compute_energy_j(cycles_d, freq_device_hz)),
        energy_uplink_j=power_w * t_c,
        memory_bytes=problem.memory_bytes(s, rho_device),
    )


def objective_at(problem: SplitProblem, split: int, rho_device: float,
                 rho_server: float) -> float:
    """The objective of ratios at a split (eq. 3.10; docs/theory.md §5.4 when calibrated),
    plus the distortion of the quantized uplink (eq. 6.5)."""
    return float(problem.bound.device_at(rho_device, int(split))
                 + problem.bound.server_at(rho_server, int(split))
                 + problem.quantization_at(int(split)))


def limit_usage(problem: SplitProblem, split: int, rho_device: float, rho_server: float,
                power_w: float, freq_device_hz: float, freq_server_hz: float,
                costs: DecisionCosts) -> dict[Limit, float]:
    """Each limit's used / allowed (≤ 1 means satisfied). Keys name the limits."""
    sc = problem.scenario
    usage: dict[Limit, float] = {
        "latency": costs.latency_total_s / sc.task.latency_budget_s,
        "energy": costs.energy_total_j / sc.device.energy_budget_j,
        "tx_power": power_w / sc.device.tx_power_max_w,
        "cpu_freq_device": freq_device_hz / sc.device.cpu_freq_max_hz,
        "cpu_freq_server": freq_server_hz / sc.server.cpu_freq_max_hz,
        "rho_max_device": rho_device / sc.task.rho_max if sc.task.rho_max > 0 else 0.0,
        "rho_max_server": rho_server / sc.task.rho_max if sc.task.rho_max > 0 else 0.0,
        "privacy": (sc.task.min_split - split + 1.0) if sc.task.min_split else 0.0,
    }
    if sc.device.memory_bytes is not None:
        usage["memory"] = costs.memory_bytes / sc.device.memory_bytes
    return usage


def violations(usage: dict[Limit, float], rho_device: float, rho_server: float,
               power_w: float) -> list[str]:
    """Names of the limits a decision breaks (beyond LIMIT_TOL, relative)."""
    broken: list[str] = [name for name, used in usage.items() if used > 1 + LIMIT_TOL]
    if min(rho_device, rho_server, power_w) < -LIMIT_TOL:
        broken.append("non_negative")
    return broken
