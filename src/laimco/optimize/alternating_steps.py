"""The two convex steps of the `alternating` baseline at one split (docs/theory.md §4.8):
(a) the pruning ratios for fixed transmit power and device frequency (eq. 4.19), and (b) the
power and frequency for fixed ratios, solved in the upload and device times (eq. 4.20, 4.21).
Each is solved by scipy's SLSQP, a generic method; the uplink physics is system/channel.py's."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize, nnls

from laimco.optimize.problem import SplitProblem
from laimco.system.channel import (
    power_for_efficiency_w,
    spectral_efficiency,
    upload_energy_and_slope,
)

FloatArray = NDArray[np.float64]
ResourceGoal = Literal["least-energy", "balanced", "weighted"]
LN2 = math.log(2.0)
_SLACK = 1e-12           # every iterate keeps this much normalized slack on latency and energy
_ACTIVE = 1e-7           # a constraint is active in step (a) when its normalized slack is below
_AT_BOUND = 1e-12        # a ratio this close to its bound has that bound active in step (a)
_MAX_EXPONENT = 700.0    # a/t beyond this overflows 2^{a/t}: the power is capped there
_SLSQP = {"maxiter": 200, "ftol": 1e-14}


@dataclass(frozen=True)
class SplitData:
    """One split of one problem at one channel gain, as plain floats (docs/theory.md §4.1)."""

    split: int
    cycles_prunable: float     # C_d(ρ_d) = (1 − ρ_d)·cycles_prunable + cycles_fixed (eq. 2.1)
    cycles_fixed: float
    server_prunable_s: float   # t_s(ρ_s) = (1 − ρ_s)·server_prunable_s + server_fixed_s (2.7)
    server_fixed_s: float
    time_budget_s: float       # T' = T − t_dl
    energy_budget_j: float
    kappa: float
    freq_max_hz: float
    power_max_w: float
    bits_per_hz: float         # a = S/B
    noise_to_gain_w: float     # w = N₀B/g
    rho_lo_device: float       # memory floor (eq. 2.12), 0 for a side without weights
    rho_hi_device: float       # ρ_max, or 0 for a side without prunable weights
    rho_hi_server: float
    device_prunable: bool
    server_prunable: bool

    def device_cycles(self, rho_d: float) -> float:
        return (1 - rho_d) * self.cycles_prunable + self.cycles_fixed

    def server_time_s(self, rho_s: float) -> float:
        return (1 - rho_s) * self.server_prunable_s + self.server_fixed_s

    def upload_time_s(self, power_w: float) -> float:
        """t_c = S / r(p) (eq. 2.4); 0 when nothing is uploaded, ∞ at zero power."""
        if self.bits_per_hz == 0:
            return 0.0
        if power_w <= 0:
            return math.inf
        return self.bits_per_hz / float(spectral_efficiency(power_w, self.noise_to_gain_w))

    def shortest_upload_s(self) -> float:
        """t_P: the upload time at the largest power."""
        return self.upload_time_s(self.power_max_w)

    def upload_energy_j(self, t_c: float) -> tuple[float, float]:
        """e_c(t) = w·t·(2^{a/t} − 1) and its derivative (eq. 2.6)."""
        if self.bits_per_hz == 0:
            return 0.0, 0.0
        t = max(t_c, self.bits_per_hz * LN2 / _MAX_EXPONENT)
        energy, neg_slope = upload_energy_and_slope(t, self.noise_to_gain_w,
                                                    self.bits_per_hz * LN2)
        return float(energy) * t_c / t, -float(neg_slope)

    def power_for_time_w(self, t_c: float) -> float:
        """p(t) = w·(2^{a/t} − 1) (eq. 2.5)."""
        if self.bits_per_hz == 0:
            return 0.0
        return float(power_for_efficiency_w(min(self.bits_per_hz / t_c, _MAX_EXPONENT / LN2),
                                            self.noise_to_gain_w))

    def slacks(self, rho_d: float, rho_s: float, power_w: float,
               freq_hz: float) -> tuple[float, float]:
        """Normalized latency and energy slack of a decision (≥ 0: the limit holds)."""
        cycles = self.device_cycles(rho_d)
        if cycles > 0 and freq_hz <= 0:
            return -math.inf, -math.inf
        t_d = cycles / freq_hz if cycles > 0 else 0.0
        t_c = self.upload_time_s(power_w)
        latency = t_d + t_c + self.server_time_s(rho_s)
        energy = self.kappa * cycles * freq_hz**2 + (power_w * t_c if t_c > 0 else 0.0)
        return 1 - latency / self.time_budget_s, 1 - energy / self.energy_budget_j


def split_data(problem: SplitProblem, split: int, gain: float) -> SplitData:
    """The split's numbers at one channel gain."""
    s = int(split)
    sc = problem.scenario
    device_prunable = bool(problem.table.prunable_device[s] > 0)
    server_prunable = bool(problem.table.prunable_server[s] > 0)
    rho_max = sc.task.rho_max
    return SplitData(
        split=s,
        cycles_prunable=float(problem.cycles_prunable_device[s]),
        cycles_fixed=float(problem.cycles_fixed_device[s]),
        server_prunable_s=float(problem.server_prunable_s[s]),
        server_fixed_s=float(problem.server_fixed_s[s]),
        time_budget_s=float(problem.time_budget_s),
        energy_budget_j=float(sc.device.energy_budget_j),
        kappa=float(problem.device.kappa),
        freq_max_hz=float(problem.device.cpu_freq_max_hz),
        power_max_w=float(problem.device.tx_power_max_w),
        bits_per_hz=float(problem.upload_bits[s]) / problem.channel.bandwidth_hz,
        noise_to_gain_w=float(problem.channel.noise_to_gain_w(gain)),
        rho_lo_device=float(problem.rho_floor_device[s]) if device_prunable else 0.0,
        rho_hi_device=rho_max if device_prunable else 0.0,
        rho_hi_server=rho_max if server_prunable else 0.0,
        device_prunable=device_prunable, server_prunable=server_prunable)


class SplitObjective:
    """D(ρ_d, ρ_s) of eq. (3.10) at one split, with its gradient (eq. 3.3), normalized by its
    value at (ρ_max, ρ_max)."""

    def __init__(self, problem: SplitProblem, data: SplitData) -> None:
        self.bound = problem.bound
        self.split = np.array([float(data.split)])
        self.index = np.array([data.split])
        top = self.value(data.rho_hi_device, data.rho_hi_server)
        self.scale = top if top > 0 else 1.0

    def value(self, rho_d: float, rho_s: float) -> float:
        return float(self.bound.device_at(np.array([rho_d]), self.index)[0]
                     + self.bound.server_at(np.array([rho_s]), self.index)[0])

    def gradient(self, rho_d: float, rho_s: float) -> FloatArray:
        with np.errstate(all="ignore"):
            g_d = self.bound.device_derivative_at(np.array([rho_d]), self.split)[0]
            g_s = self.bound.server_derivative_at(np.array([rho_s]), self.split)[0]
        return np.array([g_d, g_s], dtype=np.float64)


def _ratio_constraints(data: SplitData, power_w: float,
                       freq_hz: float) -> tuple[FloatArray, FloatArray] | None:
    """Step (a)'s constraints as slack(x) = c0 + G·x ≥ 0 with x = (ρ_d, ρ_s), normalized
    (eq. 4.19): latency and energy are affine in the ratios at fixed (p, f_d). None when the
    device must compute but has no frequency."""
    if data.device_cycles(0.0) > 0 and freq_hz <= 0:
        return None
    t_c = data.upload_time_s(power_w)
    if not math.isfinite(t_c):
        return None
    full = data.cycles_prunable + data.cycles_fixed
    t_full = full / freq_hz if full > 0 else 0.0
    latency0 = t_full + t_c + data.server_prunable_s + data.server_fixed_s
    energy0 = data.kappa * full * freq_hz**2 + power_w * t_c
    c0 = np.array([1 - latency0 / data.time_budget_s, 1 - energy0 / data.energy_budget_j])
    per_cycle_s = 1 / freq_hz if freq_hz > 0 else 0.0
    g = np.array([
        [data.cycles_prunable * per_cycle_s / data.time_budget_s,
         data.server_prunable_s / data.time_budget_s],
        [data.kappa * data.cycles_prunable * freq_hz**2 / data.energy_budget_j, 0.0]])
    return c0, g


def ratio_step(data: SplitData, objective: SplitObjective, power_w: float, freq_hz: float,
               start: tuple[float, float]) -> tuple[float, float, float, float] | None:
    """Step (a): the ratios that minimize (3.10) at fixed (p, f_d), and the multipliers
    (λ_T, λ_E) of the latency and energy limits. None when no ratio pair is feasible."""
    constraints = _ratio_constraints(data, power_w, freq_hz)
    if constraints is None:
        return None
    c0, g = constraints
    lo = np.array([data.rho_lo_device, 0.0])
    hi = np.array([data.rho_hi_device, data.rho_hi_server])
    if np.any(c0 + g @ hi < 0):  # the feasible set is upward closed (§4.1)
        return None
    scale = objective.scale

    def fun(x: FloatArray) -> tuple[float, FloatArray]:
        x = np.clip(x, lo, hi)
        return (objective.value(x[0], x[1]) / scale,
                objective.gradient(x[0], x[1]) / scale)

    x0 = np.clip(np.asarray(start, dtype=np.float64), lo, hi)
    result = minimize(fun, x0, jac=True, method="SLSQP", bounds=list(zip(lo, hi, strict=True)),
                      constraints=[{"type": "ineq",
                                    "fun": lambda x: c0 + g @ x - np.minimum(_SLACK, c0 + g @ hi),
                                    "jac": lambda x: g}],
                      options=_SLSQP)
    x = _repair(np.clip(result.x, lo, hi), hi, c0, g)
    if not _better_or_equal(objective, x, x0, c0, g):
        x = _repair(x0, hi, c0, g)  # never worse than where it started (when that is feasible)
    # KKT multipliers on the active set: ∇D = Σ λ_i ∇c_i, λ ≥ 0 (nnls)
    slack = c0 + g @ x
    grad = objective.gradient(x[0], x[1]) / scale
    columns, names = [], []
    for i in range(2):
        if slack[i] <= _ACTIVE:
            columns.append(g[i])
            names.append(i)
    for k in range(2):
        if x[k] <= lo[k] + _AT_BOUND:
            columns.append(np.eye(2)[k])
            names.append(2)
        if x[k] >= hi[k] - _AT_BOUND:
            columns.append(-np.eye(2)[k])
            names.append(2)
    lam = np.zeros(3)
    if columns and np.all(np.isfinite(grad)):
        weights, _ = nnls(np.array(columns).T, grad)
        for name, weight in zip(names, weights, strict=True):
            lam[name] += weight
    return float(x[0]), float(x[1]), float(lam[0]), float(lam[1])


def _better_or_equal(objective: SplitObjective, x: FloatArray, x0: FloatArray, c0: FloatArray,
                     g: FloatArray) -> bool:
    if np.any(c0 + g @ x0 < 0):
        return True
    return objective.value(x[0], x[1]) <= objective.value(x0[0], x0[1])


def _repair(x: FloatArray, hi: FloatArray, c0: FloatArray, g: FloatArray) -> FloatArray:
    """Move x toward (ρ_max, ρ_max) just enough that every slack is ≥ min(_SLACK, its
    value at (ρ_max, ρ_max)) ≥ 0: the slacks are affine along the segment."""
    s0, s1 = c0 + g @ x, c0 + g @ hi
    tau = 0.0
    for a, b in zip(s0, s1, strict=True):
        target = min(_SLACK, b)
        if a < target:
            tau = max(tau, min(1.0, (target - a) / (b - a)) if b > a else 1.0)
    if tau > 0:
        x = x + min(1.0, tau * (1 + 1e-9)) * (hi - x)
    return x


def resource_step(data: SplitData, rho_d: float, rho_s: float, goal: ResourceGoal,
                  start: tuple[float, float] | None = None,
                  weights: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float] | None:
    """Step (b): (p, f_d) for fixed ratios, solved in the times (t_d, t_c) — f_d = C/t_d and
    p = p(t_c) (eq. 2.5) are monotone — where it is convex (eq. 4.20), with the latency limit
    t_d + t_c ≤ T' − t_s, the energy limit κC³/t_d² + e_c(t_c) ≤ E, t_d ≥ C/F, t_c ≥ t_P:

    - "least-energy": least energy under the latency limit alone (feasibility: the ratios
      can be met iff it is ≤ E);
    - "balanced": the largest equal normalized slack on both limits (eq. 4.21);
    - "weighted": least λ_T·latency/T' + λ_E·energy/E (`weights`, step (a)'s multipliers).

    None when the ratios cannot be met."""
    cycles = data.device_cycles(rho_d)
    budget = data.time_budget_s - data.server_time_s(rho_s)
    t_p = data.shortest_upload_s()
    t_min = cycles / data.freq_max_hz
    if t_min + t_p > budget * (1 - _SLACK):
        return None
    has_device, has_upload = cycles > 0, data.bits_per_hz > 0
    if not has_device and not has_upload:
        return 0.0, 0.0
    kc3 = data.kappa * cycles**3
    tb, eb = data.time_budget_s, data.energy_budget_j
    n = int(has_device) + int(has_upload)

    def times(u: FloatArray) -> tuple[float, float]:
        if has_device and has_upload:
            return float(u[0]) * tb, float(u[1]) * tb
        return (float(u[0]) * tb, 0.0) if has_device else (0.0, float(u[0]) * tb)

    def energy(u: FloatArray) -> tuple[float, FloatArray]:
        """Normalized energy and its gradient in the normalized times (z excluded)."""
        t_d, t_c = times(u)
        e_c, de_c = data.upload_energy_j(t_c) if has_upload else (0.0, 0.0)
        grad = ([-2 * kc3 / t_d**3 * tb / eb] if has_device else []) + (
            [de_c * tb / eb] if has_upload else [])
        return ((kc3 / t_d**2 if has_device else 0.0) + e_c) / eb, np.array(grad)

    lows = [t_min / tb] * has_device + [t_p / tb] * has_upload
    highs = [budget / tb - (t_p / tb if has_upload else 0.0)] * has_device + [
        budget / tb - (t_min / tb if has_device else 0.0)] * has_upload
    room = budget / tb  # normalized time left to device and upload
    latency_left = 1 - room  # share of T' the server takes
    if start is None:  # even split of the spare time, inside the bounds
        u0 = np.array(lows) + (room - sum(lows)) / (2 * n)
    else:
        u0 = np.array([start[0] / tb] * has_device + [start[1] / tb] * has_upload)
    u0 = np.clip(u0, lows, highs)
    if goal == "balanced":
        u = _balanced_times(energy, u0, lows, highs, latency_left)
    else:
        u = _weighted_times(energy, u0, lows, highs, room,
                            (0.0, 1.0) if goal == "least-energy" else weights,
                            energy_limit=goal == "weighted")
    if start is not None and not _meets(u, room, energy) and _meets(u0, room, energy):
        u = u0  # keep the current (feasible) resources rather than a slightly infeasible step
    t_d, t_c = times(u)
    freq = min(cycles / t_d, data.freq_max_hz) if has_device else 0.0
    power = min(data.power_for_time_w(t_c), data.power_max_w) if has_upload else 0.0
    slack_t, slack_e = data.slacks(rho_d, rho_s, power, freq)
    if slack_t < 0 or slack_e < 0:
        return None
    return power, freq


def _meets(u: FloatArray, room: float, energy: Callable[[FloatArray], tuple[float, FloatArray]]
           ) -> bool:
    return float(np.sum(u)) <= room and energy(u)[0] <= 1


EnergyOfTimes = Callable[[FloatArray], tuple[float, FloatArray]]


def _balanced_times(energy: EnergyOfTimes, u0: FloatArray, lows: list[float],
                    highs: list[float], latency_left: float) -> FloatArray:
    """Normalized times with the largest equal slack z on both limits (eq. 4.21): variables
    (u, z), maximize z ≤ both normalized slacks."""
    n = u0.size

    def fun(v: FloatArray) -> tuple[float, FloatArray]:
        grad = np.zeros(n + 1)
        grad[-1] = -1.0
        return -float(v[-1]), grad

    def slack_latency(v: FloatArray) -> float:
        return 1 - latency_left - float(np.sum(v[:-1])) - float(v[-1])

    def slack_energy(v: FloatArray) -> float:
        return 1 - energy(v[:-1])[0] - float(v[-1])

    cons = [{"type": "ineq", "fun": slack_latency,
             "jac": lambda v: np.append(-np.ones(n), -1.0)},
            {"type": "ineq", "fun": slack_energy,
             "jac": lambda v: np.append(-energy(v[:-1])[1], -1.0)}]
    z0 = min(1 - latency_left - float(np.sum(u0)), 1 - energy(u0)[0])
    result = minimize(fun, np.append(u0, z0), jac=True, method="SLSQP",
                      bounds=[*zip(lows, highs, strict=True), (None, None)],
                      constraints=cons, options=_SLSQP)
    return np.asarray(np.clip(result.x[:-1], lows, highs), dtype=np.float64)


def _weighted_times(energy: EnergyOfTimes, u0: FloatArray, lows: list[float],
                    highs: list[float], room: float, weights: tuple[float, float], *,
                    energy_limit: bool) -> FloatArray:
    """Normalized times with the least weighted use w_T·latency + w_E·energy under the
    latency limit (and the energy limit with `energy_limit`)."""
    n = u0.size
    wl, we = weights

    def weighted_use(u: FloatArray) -> tuple[float, FloatArray]:
        e, de = energy(u)
        return wl * float(np.sum(u)) + we * e, wl * np.ones(n) + we * de

    cons = [{"type": "ineq", "fun": lambda u: room * (1 - _SLACK) - np.sum(u),
             "jac": lambda u: -np.ones(n)}]
    if energy_limit:
        cons.append({"type": "ineq", "fun": lambda u: 1 - _SLACK - energy(u)[0],
                     "jac": lambda u: -energy(u)[1]})
    result = minimize(weighted_use, u0, jac=True, method="SLSQP",
                      bounds=list(zip(lows, highs, strict=True)), constraints=cons,
                      options=_SLSQP)
    return np.asarray(np.clip(result.x, lows, highs), dtype=np.float64)
