"""The reference divisions the fleet study compares the solver with (docs/study.md "Fleet"):
equal shares (b_u = B/N, f_s,u = F/N) and shares in proportion to demand, each device then
deciding at its share with laimco's single-device solver. Same API as `laimco.fleet.baselines`
(method names "equal-shares", "proportional"), which replaces this module once on main."""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.fleet import Fleet
from laimco.fleet.solution import FleetSolution
from laimco.fleet.solver import device_decision

FloatArray = NDArray[np.float64]


def at_shares(fleet: Fleet, method: str, bandwidth_hz: FloatArray,
              server_cycles_per_s: FloatArray, started: float) -> FleetSolution:
    """Every device's best decision at given shares; the weighted sum over the served."""
    decisions = tuple(device_decision(fleet, u, float(bandwidth_hz[u]),
                                      float(server_cycles_per_s[u]))
                      for u in range(fleet.n_devices))
    value = np.array([d.point.objective if d.point else np.inf for d in decisions])
    weighted = fleet.weight * value
    return FleetSolution(fleet=fleet, objective_kind="sum", method=method,
                         bandwidth_hz=bandwidth_hz, server_cycles_per_s=server_cycles_per_s,
                         device_objective=value, decisions=decisions,
                         objective=float(weighted[np.isfinite(weighted)].sum()),
                         dual_bound=None, solve_time_s=time.perf_counter() - started)


def equal_shares(fleet: Fleet) -> FleetSolution:
    started = time.perf_counter()
    n, res = fleet.n_devices, fleet.resources
    return at_shares(fleet, "equal-shares", np.full(n, res.bandwidth_hz / n),
                     np.full(n, res.server_cycles_per_s / n), started)


def _in_proportion(total: float, demand: FloatArray) -> FloatArray:
    return (total * demand / demand.sum() if demand.sum() > 0
            else np.full(demand.size, total / demand.size))


def proportional(fleet: Fleet) -> FleetSolution:
    """Shares in proportion to what each device's best decision at equal shares asks: its
    upload bits for the band, its server cycles (server time × F/N) for the server."""
    started = time.perf_counter()
    n, res = fleet.n_devices, fleet.resources
    b_eq, f_eq = res.bandwidth_hz / n, res.server_cycles_per_s / n
    demand = np.zeros((n, 2))
    for u in range(n):
        point = device_decision(fleet, u, b_eq, f_eq).point
        if point is not None:
            demand[u] = point.uplink_bits, point.costs.latency_server_s * f_eq
    return at_shares(fleet, "proportional", _in_proportion(res.bandwidth_hz, demand[:, 0]),
                     _in_proportion(res.server_cycles_per_s, demand[:, 1]), started)
