"""Baselines the fleet solver is compared with (docs/theory.md §7): simple rules for dividing
the band and the server's cycles, every device then deciding with laimco's single-device
optimizer at its share, and a generic solver (SLSQP) over the shares. Each returns a
`FleetSolution` with `dual_bound` None: a baseline proves nothing about optimality.

Device u's value at shares (b, f) is V_u(b, f) = the objective of `laimco.optimize.solve` on
`fleet.device_scenario(u, b, f)` (joint strategy), inf when infeasible (`decision_at_shares`).
The CVXPY baseline on fixed discrete choices is in `fixed_split_cvxpy`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from laimco.config import Scenario
from laimco.fleet.answer import device_decision
from laimco.fleet.fleet import Fleet, FleetObjective
from laimco.fleet.solution import FleetSolution
from laimco.optimize import Decision, OperatingPoint, Reason, solve
from laimco.optimize.decision import Candidate, decide, infeasible
from laimco.optimize.evaluate import decision_costs, limit_usage
from laimco.optimize.problem import (
    SplitProblem,
    allowed_rules,
    build_problem,
    with_activation_bits,
)
from laimco.optimize.tolerances import LIMIT_TOL
from laimco.profile import load_profile

FloatArray = NDArray[np.float64]
# the least shares a device scenario can hold (config: BandwidthHz ≥ 1, FrequencyHz ≥ 1e3);
# a device with less can use neither the band nor the server: it runs the whole model (split L)
LEAST_BANDWIDTH_HZ = 1.0
LEAST_SERVER_CYCLES_PER_S = 1e3
# SLSQP over 2N share fractions with finite differences costs O(N) solves per gradient
SLSQP_MAX_DEVICES = 10


def decision_at_shares(fleet: Fleet, device: int, bandwidth_hz: float,
                       server_cycles_per_s: float) -> Decision:
    """Device u's best decision at its shares: the fleet solver's `device_decision` (`solve`,
    joint, on its scenario). Less than LEAST_BANDWIDTH_HZ of band or LEAST_SERVER_CYCLES_PER_S
    of server (below what a scenario can hold) counts as no share: the whole model on the
    device (split L)."""
    if bandwidth_hz < LEAST_BANDWIDTH_HZ or server_cycles_per_s < LEAST_SERVER_CYCLES_PER_S:
        return device_decision(fleet, device, 0.0, 0.0)
    return device_decision(fleet, device, bandwidth_hz, server_cycles_per_s)


def scenario_at_shares(fleet: Fleet, device: int, bandwidth_hz: float,
                       server_cycles_per_s: float) -> Scenario:
    """Device u's scenario at its shares, a share below what a scenario can hold raised to
    that least value: for costing a decision at split L (which uses no share) or one that is
    then found to break its limits."""
    return fleet.device_scenario(device, max(bandwidth_hz, LEAST_BANDWIDTH_HZ),
                                 max(server_cycles_per_s, LEAST_SERVER_CYCLES_PER_S))


def device_value(decision: Decision) -> float:
    """V_u: the decision's objective (unweighted distortion), inf when infeasible."""
    return math.inf if decision.point is None else decision.point.objective


def fleet_objective(kind: FleetObjective, weight: FloatArray,
                    device_objective: FloatArray) -> float:
    """Σ w_u·D_u ("sum") or max w_u·D_u ("max-min") over the served devices (finite D_u), as
    `FleetSolution.objective` is defined (0 when none is served, as the solver reports)."""
    served = np.isfinite(device_objective)
    weighted = weight[served] * device_objective[served]
    return float(weighted.sum() if kind == "sum" else weighted.max(initial=0.0))


def solution_at_shares(fleet: Fleet, method: str, bandwidth_hz: FloatArray,
                       server_cycles_per_s: FloatArray, started: float,
                       objective: FleetObjective | None = None,
                       decisions: Sequence[Decision] | None = None) -> FleetSolution:
    """The fleet solution of given shares: every device's best decision there (or the given
    decisions), its objective and the fleet objective."""
    kind = objective or fleet.objective
    if decisions is None:
        decisions = [decision_at_shares(fleet, u, float(b), float(f)) for u, (b, f) in
                     enumerate(zip(bandwidth_hz, server_cycles_per_s, strict=True))]
    values = np.array([device_value(d) for d in decisions], dtype=np.float64)
    return FleetSolution(
        fleet=fleet, objective_kind=kind, method=method,
        bandwidth_hz=np.asarray(bandwidth_hz, dtype=np.float64),
        server_cycles_per_s=np.asarray(server_cycles_per_s, dtype=np.float64),
        device_objective=values, decisions=tuple(decisions),
        objective=fleet_objective(kind, fleet.weight, values), dual_bound=None,
        solve_time_s=time.perf_counter() - started)


def shares_of(total: float, demand: FloatArray) -> FloatArray:
    """`total` divided in proportion to `demand` (≥ 0), summing to `total` to rounding;
    equal parts when nothing is demanded."""
    demand = np.asarray(demand, dtype=np.float64)
    if demand.sum() <= 0:
        return np.full(demand.size, total / demand.size)
    return np.asarray(total * (demand / demand.sum()), dtype=np.float64)


def equal_shares(fleet: Fleet, objective: FleetObjective | None = None) -> FleetSolution:
    """b_u = B/N, f_s,u = F/N; every device's best decision at its share."""
    started = time.perf_counter()
    n = fleet.n_devices
    res = fleet.resources
    return solution_at_shares(fleet, "equal-shares", np.full(n, res.bandwidth_hz / n),
                              np.full(n, res.server_cycles_per_s / n), started, objective)


def demand_of(decision: Decision, scenario: Scenario) -> tuple[float, float]:
    """(upload bits, server cycles) per inference of a decision: what it asks of the band and
    of the server. The server cycles are its server time at the server frequency it was given
    (f_s·t_s, eq. 2.7); an infeasible decision or one at split L demands nothing."""
    point = decision.point
    if point is None:
        return 0.0, 0.0
    return (point.uplink_bits,
            point.costs.latency_server_s * scenario.server.cpu_freq_max_hz)


def proportional(fleet: Fleet, objective: FleetObjective | None = None) -> FleetSolution:
    """Shares in proportion to demand. Device u's demand is that of its best decision at equal
    shares (B/N, F/N): its upload bits per inference for the band (b_u = B·S_u/Σ S) and its
    server work in cycles per inference (t_s·F/N) for the server (f_s,u = F·C_u/Σ C). A device
    that demands none of a resource gets none of it (and then runs the whole model on the
    device); when no device demands a resource it is divided equally. Every device then
    decides again at its share."""
    started = time.perf_counter()
    n = fleet.n_devices
    res = fleet.resources
    b_eq, f_eq = res.bandwidth_hz / n, res.server_cycles_per_s / n
    demand = np.array([demand_of(decision_at_shares(fleet, u, b_eq, f_eq),
                                 fleet.device_scenario(u, b_eq, f_eq)) for u in range(n)])
    return solution_at_shares(fleet, "proportional", shares_of(res.bandwidth_hz, demand[:, 0]),
                              shares_of(res.server_cycles_per_s, demand[:, 1]), started,
                              objective)


def standalone_scenario(fleet: Fleet, device: int) -> Scenario:
    """Device u deciding without the fleet: its class scenario (its own bandwidth and server
    frequency) at the device's gain, no fading (what `laimco optimize` would do there)."""
    base = fleet.classes[int(fleet.class_index[device])].scenario
    return base.replace(channel={"path_gain": float(fleet.path_gain[device]),
                                 "fading": "none", "outage_prob": None})


def problem_of_point(scenario: Scenario, point: OperatingPoint) -> SplitProblem:
    """The split problem of a decision's discrete choices in a scenario: its rule pair and its
    activation width (32 bits when no activation crosses)."""
    return problem_for_choices(scenario, point.rule_device, point.rule_server,
                               point.activation_bits)


def problem_for_choices(scenario: Scenario, rule_device: str | None, rule_server: str | None,
                        activation_bits: int | None) -> SplitProblem:
    """The split problem of one rule pair and activation width (None: 32 bits) in a scenario.
    A side with rule None (not pruned) takes the first allowed rule that runs the dense part
    unchanged at ρ = 0; the paper mode has one rule pair."""
    if scenario.distortion.mode == "paper":
        problem = build_problem(scenario)
    else:
        profile = load_profile(scenario.model.profile)
        allowed = allowed_rules(scenario, profile)
        dense = [r for r in allowed if profile.rules[r].dense_at_zero] or allowed
        problem = build_problem(scenario, profile, rules=(rule_device or dense[0],
                                                          rule_server or dense[0]))
    return with_activation_bits(problem, activation_bits or 32)


def recost_at_shares(fleet: Fleet, device: int, decision: Decision, bandwidth_hz: float,
                     server_cycles_per_s: float, method: str) -> Decision:
    """A decision taken elsewhere, kept (split, rules, ratios, power, device frequency) and
    run at shares (b, f): the server runs its part at f, the upload at the decision's power
    over b Hz. Costs from the system model (eqs. 2.1–2.13); infeasible, with the limits it
    breaks and by how much, when the latency or energy limit no longer holds."""
    point = decision.point
    if point is None:
        return replace(decision, strategy=method)
    scenario = scenario_at_shares(fleet, device, bandwidth_hz, server_cycles_per_s)
    problem = problem_of_point(scenario, point)
    uses_band = point.uplink_bits > 0
    uses_server = point.costs.latency_server_s > 0
    if ((uses_band and bandwidth_hz < LEAST_BANDWIDTH_HZ)
            or (uses_server and server_cycles_per_s < LEAST_SERVER_CYCLES_PER_S)):
        return infeasible(method, [Reason("several", (
            f"its split {point.split} needs the band and the server but its share is "
            f"{bandwidth_hz:.3g} Hz, {server_cycles_per_s:.3g} cycles/s"))])
    freq_server = scenario.server.cpu_freq_max_hz if uses_server else 0.0
    costs = decision_costs(problem, point.split, point.rho_device, point.rho_server,
                           point.power_w, point.freq_device_hz, freq_server)
    usage = limit_usage(problem, point.split, point.rho_device, point.rho_server,
                        point.power_w, point.freq_device_hz, freq_server, costs)
    task, device_section = scenario.task, scenario.device
    checked: tuple[tuple[Literal["latency", "energy"], float, str, float, str], ...] = (
        ("latency", costs.latency_total_s, "task.latency_budget_s", task.latency_budget_s, "s"),
        ("energy", costs.energy_total_j, "device.energy_budget_j",
         device_section.energy_budget_j, "J"))
    reasons = [Reason(limit, (
        f"decided without the fleet, at its share ({bandwidth_hz:.4g} Hz, "
        f"{server_cycles_per_s:.4g} cycles/s) its {limit} {used:.4g} {unit} exceeds {key} = "
        f"{allowed:.4g} {unit} by {100 * (usage[limit] - 1):.3g} %"))
        for limit, used, key, allowed, unit in checked if usage[limit] > 1 + LIMIT_TOL]
    if reasons:
        return infeasible(method, reasons)
    return decide(problem, method, Candidate(point.split, point.rho_device, point.rho_server,
                                             point.power_w, point.freq_device_hz, freq_server))


def alone(fleet: Fleet, objective: FleetObjective | None = None) -> FleetSolution:
    """Every device decides without the fleet (`standalone_scenario`: its class scenario's own
    bandwidth and server frequency at its gain), then is given equal shares (B/N, F/N): its
    decision re-costed there (`recost_at_shares`). A device whose latency or energy limit the
    equal share breaks is reported infeasible with the broken limit and by how much."""
    started = time.perf_counter()
    n = fleet.n_devices
    res = fleet.resources
    b_eq, f_eq = res.bandwidth_hz / n, res.server_cycles_per_s / n
    decisions = [recost_at_shares(fleet, u, solve(standalone_scenario(fleet, u)), b_eq, f_eq,
                                  "alone") for u in range(n)]
    return solution_at_shares(fleet, "alone", np.full(n, b_eq), np.full(n, f_eq), started,
                              objective, decisions)


def slsqp(fleet: Fleet, objective: FleetObjective | None = None, n_random_starts: int = 3,
          seed: int = 0) -> FleetSolution:
    """A generic-solver reference: scipy's SLSQP over the 2N share fractions x_b, x_f
    (x ≥ 0, Σ x_b = 1, Σ x_f = 1), b_u = x_b,u·B, f_s,u = x_f,u·F, on Σ w_u·V_u (or, for
    "max-min", min t s.t. t ≥ w_u·V_u), V_u from `solve` and gradients by finite differences.
    An infeasible device counts as a penalty (ten times the largest finite weighted value met
    at the starts), so the search is pushed away from it. Starts: equal shares, the
    proportional baseline's shares, and `n_random_starts` Dirichlet draws; the best result
    wins. V_u is piecewise smooth (the split is discrete), so SLSQP may stop at a kink: this
    is a local method for small fleets only (N ≤ SLSQP_MAX_DEVICES; each gradient costs 2N
    solves per device)."""
    kind = objective or fleet.objective
    n = fleet.n_devices
    if n > SLSQP_MAX_DEVICES:
        raise ValueError(f"the slsqp baseline is for small fleets (N ≤ {SLSQP_MAX_DEVICES}, "
                         f"finite differences over 2N shares); fleet {fleet.name!r} has {n} "
                         "devices: use equal_shares, proportional or the fleet solver")
    started = time.perf_counter()
    res = fleet.resources
    cache: dict[tuple[int, float, float], float] = {}

    def value(u: int, x_b: float, x_f: float) -> float:
        key = (u, x_b, x_f)
        if key not in cache:
            cache[key] = device_value(decision_at_shares(
                fleet, u, max(x_b, 0.0) * res.bandwidth_hz,
                max(x_f, 0.0) * res.server_cycles_per_s))
        return cache[key]

    def weighted(x: FloatArray) -> FloatArray:
        return np.array([fleet.weight[u] * value(u, float(x[u]), float(x[n + u]))
                         for u in range(n)])

    rng = np.random.default_rng(seed)
    guide = proportional(fleet, kind)
    starts = [np.full(2 * n, 1.0 / n),
              np.concatenate([guide.bandwidth_hz / res.bandwidth_hz,
                              guide.server_cycles_per_s / res.server_cycles_per_s])]
    starts += [np.concatenate([rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))])
               for _ in range(n_random_starts)]
    finite = [w for x in starts for w in weighted(x) if math.isfinite(w)]
    penalty = 10 * max(max(finite, default=1.0), 1e-12)

    def penalized(x: FloatArray) -> FloatArray:
        w = weighted(x)
        return np.where(np.isfinite(w), w, penalty)

    best_x, best_value = starts[0], math.inf
    for start in starts:  # a run that ends worse than its start (a kink) keeps the start
        for x in (start, _slsqp_run(kind, n, start, penalized)):
            total = penalized(x / _simplex_sums(x, n))
            score = float(total.sum() if kind == "sum" else total.max())
            if score < best_value:
                best_x, best_value = x, score
    fractions = best_x / _simplex_sums(best_x, n)
    return solution_at_shares(fleet, "slsqp", fractions[:n] * res.bandwidth_hz,
                              fractions[n:] * res.server_cycles_per_s, started, kind)


def _simplex_sums(x: FloatArray, n: int) -> FloatArray:
    """Per entry, the sum of its simplex (band fractions, server fractions), to project on it."""
    return np.repeat([max(x[:n].sum(), 1e-300), max(x[n:].sum(), 1e-300)], n)


def _slsqp_run(kind: FleetObjective, n: int, start: FloatArray,
               penalized: Callable[[FloatArray], FloatArray]) -> FloatArray:
    """One SLSQP run from a start; the fractions it ends at, clipped to [0, 1]."""
    equalities = [{"type": "eq", "fun": lambda x: np.sum(x[:n]) - 1.0},
                  {"type": "eq", "fun": lambda x: np.sum(x[n:2 * n]) - 1.0}]
    step = {"eps": 1e-6}
    if kind == "sum":
        result = minimize(lambda x: float(np.sum(penalized(x))), start, method="SLSQP",
                          bounds=[(0.0, 1.0)] * (2 * n), constraints=equalities,
                          options={"maxiter": 100, "ftol": 1e-10, **step})
        x = result.x
    else:  # epigraph: min t s.t. t ≥ w_u·V_u(x)
        t0 = float(np.max(penalized(start)))
        epigraph = list(equalities)  # they read z[:2N] only
        epigraph.append({"type": "ineq", "fun": lambda z: z[-1] - penalized(z[:-1])})
        result = minimize(lambda z: float(z[-1]), np.append(start, t0), method="SLSQP",
                          bounds=[(0.0, 1.0)] * (2 * n) + [(0.0, None)],
                          constraints=epigraph, options={"maxiter": 100, "ftol": 1e-10, **step})
        x = result.x[:-1]
    return np.asarray(np.clip(x, 0.0, 1.0), dtype=np.float64)
