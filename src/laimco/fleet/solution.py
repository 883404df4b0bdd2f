"""The answer for a fleet: every device's shares and decision, the fleet objective, the dual
bound that certifies it, and the `laimco fleet --json` contract (docs/fleet.md)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from laimco.config import Scenario
from laimco.fleet.fleet import Fleet, FleetObjective
from laimco.fleet.server_memory import ServerMemory, server_memory
from laimco.optimize.decision import Decision

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class FleetSolution:
    """Per device u: its bandwidth b_u (Hz), server cycles f_s,u (cycles/s), its distortion
    D_u (unweighted; inf when it cannot be served) and laimco's single-device decision at those
    shares (`Decision`, the `laimco optimize` answer for `scenario(u)`). `objective` is
    Σ w_u·D_u ("sum") or max w_u·D_u ("max-min") over the devices that are served;
    `dual_bound` a proven lower bound on the best achievable objective (None for baselines),
    so `relative_gap` certifies how far from optimal the answer can be (docs/theory.md §7)."""

    fleet: Fleet
    objective_kind: FleetObjective
    method: str
    bandwidth_hz: FloatArray
    server_cycles_per_s: FloatArray
    device_objective: FloatArray
    decisions: tuple[Decision, ...]
    objective: float
    dual_bound: float | None
    solve_time_s: float

    @property
    def served(self) -> NDArray[np.bool_]:
        return np.array([d.success for d in self.decisions], dtype=bool)

    @property
    def status(self) -> str:
        """"optimal" when every device is served, "partial" when some are not (they are named
        in their reasons), "infeasible" when none is."""
        served = self.served
        return "optimal" if served.all() else "partial" if served.any() else "infeasible"

    @property
    def relative_gap(self) -> float | None:
        """(objective − dual bound)/objective (0 when both are 0; None without a bound)."""
        if self.dual_bound is None:
            return None
        scale = max(abs(self.objective), 1e-300)
        return max(self.objective - self.dual_bound, 0.0) / scale if self.objective else 0.0

    @functools.cached_property
    def server_memory(self) -> ServerMemory:
        """The distinct server parts the answer asks the server to host, against its memory."""
        return server_memory(self.fleet, self.decisions)

    def scenario(self, device: int) -> Scenario:
        """Device u's single-device scenario at its shares."""
        return self.fleet.device_scenario(device, float(self.bandwidth_hz[device]),
                                          float(self.server_cycles_per_s[device]))

    def to_json_dict(self) -> dict[str, object]:
        """The stable JSON contract of `laimco fleet --json` (docs/fleet.md)."""
        return {
            "status": self.status, "objective_kind": self.objective_kind, "method": self.method,
            "objective": self.objective, "dual_bound": self.dual_bound,
            "relative_gap": self.relative_gap, "solve_time_s": self.solve_time_s,
            "server_memory": {"used_bytes": self.server_memory.used_bytes,
                              "limit_bytes": self.server_memory.limit_bytes,
                              "parts": self.server_memory.parts,
                              "fits": self.server_memory.fits},
            "shares": {"bandwidth_hz": [float(b) for b in self.bandwidth_hz],
                       "server_cycles_per_s": [float(f) for f in self.server_cycles_per_s]},
            "devices": [self._device_json(u) for u in range(self.fleet.n_devices)]}

    def _device_json(self, u: int) -> dict[str, object]:
        decision = self.decisions[u]
        point = decision.point
        row: dict[str, object] = {
            "id": self.fleet.ids[u], "class": self.fleet.classes[
                int(self.fleet.class_index[u])].name,
            "weight": float(self.fleet.weight[u]), "path_gain": float(self.fleet.path_gain[u]),
            "status": decision.status, "bandwidth_hz": float(self.bandwidth_hz[u]),
            "server_cycles_per_s": float(self.server_cycles_per_s[u])}
        if point is None:
            row.update(dict.fromkeys(("split", "rule_device", "rule_server", "rho_device",
                                      "rho_server", "power_w", "freq_device_hz",
                                      "activation_bits", "latency_s", "energy_j", "objective")))
        else:
            row.update(split=point.split, rule_device=point.rule_device,
                       rule_server=point.rule_server, rho_device=point.rho_device,
                       rho_server=point.rho_server, power_w=point.power_w,
                       freq_device_hz=point.freq_device_hz,
                       activation_bits=point.activation_bits,
                       latency_s=point.costs.latency_total_s,
                       energy_j=point.costs.energy_total_j, objective=point.objective)
        row["reasons"] = [r.message for r in decision.reasons]
        return row
