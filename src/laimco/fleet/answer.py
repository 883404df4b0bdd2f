"""The fleet's answer assembled: shares in Hz and cycles/s and every device's laimco decision
at its shares (docs/theory.md §7.3)."""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.fleet import Fleet, FleetObjective
from laimco.fleet.solution import FleetSolution
from laimco.fleet.value import REFERENCE_BANDWIDTH_HZ, REFERENCE_SERVER_HZ
from laimco.optimize.decision import Decision, Reason, infeasible
from laimco.optimize.strategies import solve

FloatArray = NDArray[np.float64]


def fleet_answer(fleet: Fleet, method: str, kind: FleetObjective, x: FloatArray, y: FloatArray,
            bound: float | None, started: float, crowded: list[int] | None = None
            ) -> FleetSolution:
    """Shares in Hz and cycles/s, and every device's laimco decision at its share; the
    devices in `crowded` are left out for lack of room (their own reason says so)."""
    res = fleet.resources
    bandwidth = x * res.bandwidth_hz
    cycles = y * res.server_cycles_per_s
    solve_time = time.perf_counter() - started
    local: dict[int, Decision] = {}  # without a share a device's decision is its class's

    def decision(u: int) -> Decision:
        if bandwidth[u] > 0 and cycles[u] > 0:
            return device_decision(fleet, u, bandwidth[u], cycles[u])
        number = int(fleet.class_index[u])
        if number not in local:
            local[number] = device_decision(fleet, u, 0.0, 0.0)
        return local[number]

    decisions = tuple(decision(u) for u in range(fleet.n_devices))
    for u in crowded or []:
        decisions = (*decisions[:u], crowded_out(fleet, u), *decisions[u + 1:])
    objective_u = np.array([d.point.objective if d.point else np.inf for d in decisions])
    weighted = fleet.weight * objective_u
    served = np.isfinite(weighted)
    total = (float(weighted[served].sum()) if kind == "sum"
             else float(weighted[served].max(initial=0.0)))
    return FleetSolution(fleet=fleet, objective_kind=kind, method=method,
                         bandwidth_hz=bandwidth, server_cycles_per_s=cycles,
                         device_objective=objective_u, decisions=decisions, objective=total,
                         dual_bound=bound, solve_time_s=solve_time)


def crowded_out(fleet: Fleet, device: int) -> Decision:
    """A device the fleet cannot serve together with the others."""
    res = fleet.resources
    return infeasible("joint", [Reason("fleet", (
        f"device {fleet.ids[device]!r} cannot be served together with the others: it cannot "
        "run the whole model itself and the rest of resources.bandwidth_hz = "
        f"{res.bandwidth_hz:.4g} Hz and resources.server_cycles_per_s = "
        f"{res.server_cycles_per_s:.4g} cycles/s is too small for it; raise them or remove "
        "devices"))])


def device_decision(fleet: Fleet, device: int, bandwidth_hz: float,
                    server_cycles_per_s: float) -> Decision:
    """laimco's single-device decision of device u at its shares; with no share of either
    resource it can only run the whole model itself (split L)."""
    if bandwidth_hz > 0 and server_cycles_per_s > 0:
        return solve(fleet.device_scenario(device, bandwidth_hz, server_cycles_per_s))
    scenario = fleet.device_scenario(device, REFERENCE_BANDWIDTH_HZ, REFERENCE_SERVER_HZ)
    from laimco.profile import load_profile

    units = load_profile(scenario.model.profile).n_units
    return solve(scenario.replace(task={"min_split": units}))
