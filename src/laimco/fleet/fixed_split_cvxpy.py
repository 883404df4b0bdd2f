"""A generic reference for the fleet: one CVXPY conic model of the whole fleet with each
device's discrete choices fixed (docs/theory.md §7). It needs cvxpy (the `test` extra).

Fixed per device u, taken from a given `FleetSolution` (the fleet solver's, equal shares', …):
the split s, the rule pair, the activation width, the upload time t_c, and either the server
ratio ρ_s (`hold="server-ratio"`, the default) or the server time t_s (`hold="server-time"`).
Optimized jointly: the shares b_u, f_s,u (Σ b_u ≤ B, Σ f_s,u ≤ F) and each device's ρ_d,
device time t_d, transmit power p, compute energy, and t_s (or ρ_s). Why those are held: the
split, rules and width are discrete; with ρ_s and f both free the server time C_s(ρ_s)/f is
bilinear (not convex), so one of ρ_s, t_s is held; with b free the rate constraint
S ≤ t_c·b·log2(1 + p·g/(N0·b)) has the product t_c·b (not DCP), so t_c is held. Then every
constraint is convex:

    t_d + t_c + t_s ≤ T'                                  latency (eq. 2.13)
    C_d(ρ_d) ≤ F_d·t_d                                    f_d = C_d/t_d ≤ F_d, C_d affine (eq. 2.1)
    κ·C_d³/t_d² + p·t_c ≤ E                               energy (eqs. 2.3, 2.6): power cone
    t_s ≥ C_s·inv_pos(f_s,u)    (ρ_s held)                server time (eq. 2.7)
    C_s(ρ_s) ≤ f_s,u·t_s        (t_s held: linear)
    S·ln2/t_c ≤ −rel_entr(b, b + p·g/N0)                  Shannon rate (eq. 2.4), a perspective:
                                                          b·ln(1 + p·g/(N0·b)) is jointly concave
    0 ≤ p ≤ P, memory floor ≤ ρ_d ≤ ρ_max, 0 ≤ ρ_s ≤ ρ_max, ρ_d = ρ_s when the ratios are tied

The objective Σ w_u·(D_d(ρ_d) + D_s(ρ_s) + D_q) (or max_u of the terms) has D_d, D_s convex and
non-decreasing but not DCP for these laws: each is replaced by the maximum of its tangents (an
outer approximation) refined by cutting planes, a tangent at each new solution, until the true
objective and the model's agree (as tests/test_optimizer_cvxpy.py does for one device).

The answer is re-costed from the system model, not taken from the conic solver: the shares are
scaled to sum exactly to B and F, each device takes the least-energy power and frequency for
the model's ratios at its share (docs/theory.md §4.5), the ratios are raised (bisection) as
little as every limit needs after the solver's rounding, and `decide` re-checks them.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.baselines import (
    problem_for_choices,
    problem_of_point,
    scenario_at_shares,
    solution_at_shares,
)
from laimco.fleet.fleet import Fleet, FleetObjective
from laimco.fleet.solution import FleetSolution
from laimco.fleet.tangent_cuts import TangentCuts
from laimco.optimize import Decision
from laimco.optimize.decision import Candidate, decide
from laimco.optimize.evaluate import Limit, decision_costs, limit_usage
from laimco.optimize.operating_point import operating_point
from laimco.optimize.problem import SplitProblem
from laimco.optimize.tolerances import LIMIT_TOL
from laimco.system.channel import LN2

FloatArray = NDArray[np.float64]
Hold = Literal["server-ratio", "server-time"]
N_CUTS0 = 24
N_EXTRA = 40
AGREE_REL = 1e-10


@dataclass(frozen=True)
class FixedDevice:
    """One device with its discrete choices fixed: its split problem (at the shares it was
    decided for), the held values and the per-split constants the model reads (SI units)."""

    problem: SplitProblem
    split: int
    rho_device: float
    rho_server: float
    # whether a side's ratio may move: it has prunable weights and a known rule (a side the
    # calibrated decision left unpruned, rule None, could be any dense-at-zero rule: held at 0)
    prunes_device: bool
    prunes_server: bool
    upload_time_s: float
    server_time_s: float
    upload_bits: float
    time_s: float                    # T': what the device, the upload and the server share
    server_cycles_prunable: float    # C_s(ρ) = (1 − ρ)·prunable + fixed (eq. 2.7)
    server_cycles_fixed: float
    gain: float
    objective: float                 # the held decision's, D_d + D_s + D_q

    @property
    def rho_floor(self) -> float:
        return float(self.problem.rho_floor_device[self.split])

    @property
    def rho_max(self) -> float:
        return float(self.problem.scenario.task.rho_max)

    @property
    def tied(self) -> bool:
        table = self.problem.table
        return (self.problem.scenario.task.ratios == "tied"
                and table.prunable_device[self.split] > 0
                and table.prunable_server[self.split] > 0)

    def server_cycles(self, rho_server: float) -> float:
        return max((1 - rho_server) * self.server_cycles_prunable + self.server_cycles_fixed,
                   0.0)

    def side(self, which: Literal["device", "server"], rho: FloatArray,
             derivative: bool) -> FloatArray:
        """D_d(ρ) or D_s(ρ) at this split (or its derivative), eq. 3.10."""
        b, split = self.problem.bound, np.full(np.shape(rho), float(self.split))
        rho = np.asarray(rho, dtype=np.float64)
        if derivative:  # ∞ at ρ = 1 (ρ_max < 1 here)
            with np.errstate(divide="ignore"):
                return np.asarray((b.device_derivative_at if which == "device"
                                   else b.server_derivative_at)(rho, split))
        return np.asarray((b.device_at if which == "device" else b.server_at)(
            rho, split.astype(np.intp)))


def _fixed_device(problem: SplitProblem, decision: Decision) -> FixedDevice:
    point = decision.point
    assert point is not None
    s = point.split
    # server_time_s is at the scenario's server frequency and holds −downlink at split L
    # (nothing comes back there, eq. 2.13): both undone here
    downlink = problem.scenario.task.downlink_s if s == problem.profile.n_units else 0.0
    freq = problem.server.cpu_freq_max_hz
    paper = problem.scenario.distortion.mode == "paper"
    return FixedDevice(
        problem=problem, split=s, rho_device=point.rho_device, rho_server=point.rho_server,
        prunes_device=bool(problem.table.prunable_device[s] > 0
                           and (paper or point.rule_device is not None)),
        prunes_server=bool(problem.table.prunable_server[s] > 0
                           and (paper or point.rule_server is not None)),
        upload_time_s=point.costs.latency_uplink_s, server_time_s=point.costs.latency_server_s,
        upload_bits=float(problem.upload_bits[s]), time_s=problem.time_budget_s + downlink,
        server_cycles_prunable=float(problem.server_prunable_s[s]) * freq,
        server_cycles_fixed=(float(problem.server_fixed_s[s]) + downlink) * freq,
        gain=float(np.ravel(problem.gain)[0]), objective=point.objective)


def cvxpy_fixed_split(fixed: FleetSolution, objective: FleetObjective | None = None,
                      hold: Hold = "server-ratio", solver: str = "CLARABEL") -> FleetSolution:
    """The best shares and continuous variables for the discrete choices of `fixed` (module
    docstring), as a FleetSolution with method "cvxpy-fixed-split". A device `fixed` does not
    serve keeps no share and stays unserved."""
    import cvxpy as cp  # the test extra: a reference, not a dependency of the toolkit

    started = time.perf_counter()
    fleet, kind = fixed.fleet, objective or fixed.objective_kind
    res = fleet.resources
    served = [u for u in range(fleet.n_devices) if fixed.decisions[u].point is not None]
    devices = [_fixed_device(problem_of_point(
        scenario_at_shares(fleet, u, float(fixed.bandwidth_hz[u]),
                           float(fixed.server_cycles_per_s[u])),
        fixed.decisions[u].point), fixed.decisions[u]) for u in served]  # type: ignore[arg-type]
    model = _FleetModel(cp, devices, fleet.weight[served], kind, hold, res.bandwidth_hz,
                        res.server_cycles_per_s)
    beta, phi, rho_d, rho_s = model.solve(solver)
    # shares summing exactly to the totals (a device that needs none gets none; the rest is
    # given out in proportion, which only loosens the others' limits: V is non-increasing)
    bandwidth, server = np.zeros(fleet.n_devices), np.zeros(fleet.n_devices)
    beta = np.where([d.upload_bits > 0 for d in devices], np.maximum(beta, 0.0), 0.0)
    phi = np.where([d.server_cycles(r) > 0 for d, r in zip(devices, rho_s, strict=True)],
                   np.maximum(phi, 0.0), 0.0)
    index = np.array(served, dtype=np.intp)
    if beta.sum() > 0:
        bandwidth[index] = res.bandwidth_hz * beta / beta.sum()
    if phi.sum() > 0:
        server[index] = res.server_cycles_per_s * phi / phi.sum()
    decisions = list(fixed.decisions)
    for k, u in enumerate(served):
        decisions[u] = _recost(fleet, u, devices[k], float(bandwidth[u]), float(server[u]),
                               (float(rho_d[k]), float(rho_s[k])))
    return solution_at_shares(fleet, "cvxpy-fixed-split", bandwidth, server, started, kind,
                              decisions)


def _recost(fleet: Fleet, u: int, d: FixedDevice, bandwidth_hz: float,
            server_cycles_per_s: float, ratios: tuple[float, float]) -> Decision:
    """The model's ratios (ρ_d, ρ_s) for one device made exactly feasible at its (exact-sum)
    shares: the power and device frequency of least energy for them (`operating_point`,
    docs/theory.md §4.5, which may move time between the upload and the device), and both
    ratios raised toward ρ_max by one fraction θ, found by bisection, as little as every limit
    needs after the conic solver's rounding (θ is of the order of the solver's tolerance, so
    a held ρ_s moves only by rounding); `decide` then costs and checks the point from the
    system model."""
    scenario = scenario_at_shares(fleet, u, bandwidth_hz, server_cycles_per_s)
    problem = problem_for_choices(scenario, *d.problem.rules, d.problem.activation_bits)
    s = d.split
    # a side whose ratio may not move keeps the held one (the model may leave it anywhere
    # when the side has nothing to prune)
    rho_d = float(np.clip(ratios[0], d.rho_floor, d.rho_max)) if d.prunes_device \
        else d.rho_device
    rho_s = float(np.clip(ratios[1], 0.0, d.rho_max)) if d.prunes_server else d.rho_server
    if d.tied:
        rho_d = rho_s

    def candidate(theta: float) -> Candidate:
        rd = rho_d + theta * (d.rho_max - rho_d) if d.prunes_device else rho_d
        rs = rho_s + theta * (d.rho_max - rho_s) if d.prunes_server else rho_s
        rd = rs if d.tied else rd
        server_hz = server_cycles_per_s if d.server_cycles(rs) > 0 else 0.0
        power, freq = operating_point(problem, s, rd, rs, d.gain)
        return Candidate(s, rd, rs, power, freq, server_hz)

    def excess(theta: float) -> float:
        """The most-used resource limit's use − 1 − LIMIT_TOL/2 (≤ 0: `decide` accepts it)."""
        c = candidate(theta)
        costs = decision_costs(problem, s, c.rho_device, c.rho_server, c.power_w,
                               c.freq_device_hz, c.freq_server_hz, d.gain)
        usage = limit_usage(problem, s, c.rho_device, c.rho_server, c.power_w,
                            c.freq_device_hz, c.freq_server_hz, costs)
        return max(usage.get(k, 0.0) for k in _REPAIRED) - 1.0 - LIMIT_TOL / 2

    theta = 0.0
    if excess(0.0) > 0 >= excess(1.0):  # bisection keeping the feasible end
        low, theta = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (low + theta)
            low, theta = (mid, theta) if excess(mid) > 0 else (low, mid)
    return decide(problem, "cvxpy-fixed-split", candidate(theta))


_REPAIRED: tuple[Limit, ...] = ("latency", "energy", "tx_power", "cpu_freq_device", "memory")


class _FleetModel:
    """The conic model (module docstring), vectorized over devices, in scaled units: times as
    fractions of T'_u, cycles of C0_u = (E·T'²/κ)^{1/3}, energies of E_u, shares as fractions
    of B and F, power as a fraction of P_u, distortion over a common scale."""

    def __init__(self, cp: Any, devices: list[FixedDevice], weight: FloatArray,
                 kind: FleetObjective, hold: Hold, bandwidth_hz: float,
                 server_cycles_per_s: float) -> None:
        self.cp, self.devices, self.weight = cp, devices, np.asarray(weight, dtype=np.float64)
        n = len(devices)
        self.rd, self.rs = cp.Variable(n), cp.Variable(n)
        self.beta, self.phi = cp.Variable(n, nonneg=True), cp.Variable(n, nonneg=True)
        td, ts, energy, power = (cp.Variable(n, nonneg=True) for _ in range(4))

        def arr(f: Any) -> FloatArray:
            return np.array([f(d) for d in devices], dtype=np.float64)

        T = arr(lambda d: d.time_s)
        E = arr(lambda d: d.problem.device.energy_budget_j)
        c0 = (E * T**2 / arr(lambda d: d.problem.device.kappa)) ** (1 / 3)
        cycles = (cp.multiply(1 - self.rd, arr(lambda d: d.problem.cycles_prunable_device[
            d.split]) / c0) + arr(lambda d: d.problem.cycles_fixed_device[d.split]) / c0)
        t_c = arr(lambda d: d.upload_time_s) / T
        p_max = arr(lambda d: d.problem.device.tx_power_max_w)
        rho_max = arr(lambda d: d.rho_max)
        floor = arr(lambda d: d.rho_floor)
        cons = [td + t_c + ts <= 1,
                cycles <= cp.multiply(arr(lambda d: d.problem.device.cpu_freq_max_hz) * T / c0,
                                      td),
                cp.constraints.PowCone3D(energy, td, cycles, 1 / 3),
                energy + cp.multiply(p_max * t_c * T / E, power) <= 1, power <= 1,
                self.rd >= floor, self.rd <= rho_max, self.rs >= 0, self.rs <= rho_max,
                cp.sum(self.beta) <= 1, cp.sum(self.phi) <= 1]
        tied = np.flatnonzero(arr(lambda d: d.tied))
        if tied.size:
            cons.append(self.rd[tied] == self.rs[tied])
        for ratio, moves, held_ratio in ((self.rd, "prunes_device", "rho_device"),
                                         (self.rs, "prunes_server", "rho_server")):
            still = [k for k, d in enumerate(devices) if not getattr(d, moves)]
            if still:
                cons.append(ratio[still] == [getattr(devices[k], held_ratio) for k in still])
        scale = server_cycles_per_s * T
        prunable = arr(lambda d: d.server_cycles_prunable) / scale
        fixed = arr(lambda d: d.server_cycles_fixed) / scale
        if hold == "server-ratio":
            cons.append(self.rs == arr(lambda d: d.rho_server))
            work = arr(lambda d: d.server_cycles(d.rho_server)) / scale
            on = np.flatnonzero(work > 0)
            if on.size:
                cons.append(ts[on] >= cp.multiply(work[on], cp.inv_pos(self.phi[on])))
        else:  # server time held: C_s(ρ_s) ≤ f·t_s is linear in (ρ_s, f)
            held = arr(lambda d: d.server_time_s) / T
            cons += [ts == held, cp.multiply(1 - self.rs, prunable) + fixed
                     <= cp.multiply(held, self.phi)]
            work = np.maximum(prunable + fixed, 0.0)
        idle = work <= 0
        if idle.any():
            cons += [self.phi[idle] == 0, ts[idle] == 0]
        cons += self._upload_constraints(power, p_max, bandwidth_hz)
        sides: tuple[tuple[Literal["device", "server"], Any, FloatArray], ...] = (
            ("device", self.rd, floor), ("server", self.rs, np.zeros(n)))
        self.cuts = tuple(
            TangentCuts(cp, [functools.partial(d.side, which) for d in devices], ratio, low,
                        rho_max, N_CUTS0, N_EXTRA) for which, ratio, low in sides)
        cons += [c.constraint for c in self.cuts]
        quantization = arr(lambda d: d.problem.quantization_at(d.split))
        # the objective's scale: the held solution's (a tiny optimum beside a huge D(ρ_max)
        # leaves the conic solver no digits), or 1e-6 of D(ρ_max) when that is 0
        given = self.weight * arr(lambda d: d.objective)
        at_max = arr(lambda d: float(d.side("device", np.array(d.rho_max), False)
                                     + d.side("server", np.array(d.rho_max), False)))
        reference = float(given.sum() if kind == "sum" else given.max())
        self.scale: float = reference if reference > 0 else max(
            1e-6 * float(np.max(self.weight * at_max)), 1e-12)
        w = self.weight / self.scale
        terms = cp.multiply(w, self.cuts[0].y + self.cuts[1].y) + w * quantization
        self.problem = cp.Problem(cp.Minimize(cp.sum(terms) if kind == "sum"
                                              else cp.max(terms)), cons)

    def _upload_constraints(self, power: Any, p_max: FloatArray, bandwidth_hz: float
                            ) -> list[Any]:
        """S/t_c ≤ b·log2(1 + p·g/(N0·b)) with t_c held (a perspective: −rel_entr), in the
        model's units; no band and no power where nothing is sent."""
        cp, devices = self.cp, self.devices
        bits = np.array([d.upload_bits for d in devices], dtype=np.float64)
        cons: list[Any] = []
        up = np.flatnonzero(bits > 0)
        if up.size:
            gain = np.array([d.gain for d in devices], dtype=np.float64)
            noise = np.array([d.problem.channel.noise_psd_w_per_hz for d in devices])
            upload_s = np.array([d.upload_time_s for d in devices], dtype=np.float64)
            snr = p_max * gain / (noise * bandwidth_hz)
            need = bits[up] * LN2 / (upload_s[up] * bandwidth_hz)
            beta_up = self.beta[up]
            cons.append(-cp.rel_entr(beta_up, beta_up + cp.multiply(snr[up], power[up]))
                        >= need)
        if (bits <= 0).any():
            cons += [self.beta[bits <= 0] == 0, power[bits <= 0] == 0]
        return cons

    def _run(self, solver: str) -> None:
        """Solve, with other settings when the interior-point method stalls (the rate's
        exponential cone spans e^±15 at high SNR), and CLARABEL's last resort SCS (first
        order, so less accurate: the answer is re-costed by laimco either way)."""
        cp = self.cp
        attempts: list[tuple[str, dict[str, Any]]] = [(solver, {})]
        if solver == "CLARABEL":
            attempts += [(solver, {"equilibrate_enable": False}),
                         (solver, {"max_iter": 1000, "static_regularization_constant": 1e-7}),
                         ("SCS", {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000})]
        for name, extra in attempts:
            try:
                self.problem.solve(solver=name, **extra)
            except cp.error.SolverError:
                continue
            if self.problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
                return
        raise RuntimeError(f"the fixed-split CVXPY model did not solve (attempts: {attempts}); "
                           f"status {self.problem.status}")

    def solve(self, solver: str) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(β, φ, ρ_d, ρ_s): cutting planes until the true objective at the solution and the
        model's agree to AGREE_REL (relative to the objective scale), no new tangent is found,
        or a re-solve fails (then the last solution is kept: it is re-costed anyway, so only
        its optimality within the model is less certain)."""
        lows = [np.array([d.rho_floor for d in self.devices]), np.zeros(len(self.devices))]
        highs = np.array([d.rho_max for d in self.devices])
        found: tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None = None
        for _ in range(N_EXTRA + 1):
            for c in self.cuts:
                c.set()
            try:
                self._run(solver)
            except RuntimeError:
                if found is None:
                    raise
                break
            rho = [np.clip(np.asarray(v.value, dtype=np.float64), lo, highs)
                   for v, lo in zip((self.rd, self.rs), lows, strict=True)]
            found = (np.asarray(self.beta.value, dtype=np.float64),
                     np.asarray(self.phi.value, dtype=np.float64), rho[0], rho[1])
            gap = sum(float(np.sum(c.gap(r) * self.weight)) for c, r in
                      zip(self.cuts, rho, strict=True)) / self.scale
            if gap <= AGREE_REL or self.cuts[0].full:
                break
            if not any([c.add(r) for c, r in zip(self.cuts, rho, strict=True)]):
                break
        assert found is not None
        return found
