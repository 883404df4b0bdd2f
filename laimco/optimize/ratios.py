"""The best pruning ratios of every split at once (docs/theory.md §4.3).

For a fixed split the problem is convex (§4.1). Writing C*(T) for the device capacity
(device_capacity.py), a pair (ρ_d, ρ_s) is feasible iff

    C_d(ρ_d) ≤ C*(T' − t_s(ρ_s)),  ρ_d ≥ ρ_floor,  ρ_d, ρ_s ≤ ρ_max           (eq. 4.10)

and the objective is non-decreasing in each ratio. Tied ratios: the answer is the least
feasible ρ, a root of an increasing function. Separate ratios: the least feasible ρ_d for a
given ρ_s, β(ρ_s), is convex and non-increasing, so φ(ρ_s) = D_s(ρ_s) + D_d(β(ρ_s)) is convex
and the answer is the root of its increasing derivative (eq. 4.12).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from laimco.optimize.device_capacity import (
    LN2,
    DeviceCapacity,
    DevicePolicy,
    device_capacity,
    shortest_upload_time_s,
)
from laimco.optimize.problem import SplitProblem
from laimco.optimize.roots import increasing_root

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RatioSolution:
    """Per split (shape (R, L+1) or (L+1,)): feasibility, ratios and the objective."""

    feasible: NDArray[np.bool_]
    rho_device: FloatArray
    rho_server: FloatArray
    objective: FloatArray


def capacity(problem: SplitProblem, time_s: FloatArray, policy: DevicePolicy) -> DeviceCapacity:
    """C*(T) for the problem's device and channel (eq. 4.5)."""
    d = problem.device
    return device_capacity(
        time_s, d.energy_budget_j, problem.upload_bits,
        bandwidth_hz=problem.channel.bandwidth_hz, noise_to_gain_w=problem.noise_to_gain_w(),
        tx_power_max_w=d.tx_power_max_w, kappa=d.kappa, cpu_freq_max_hz=d.cpu_freq_max_hz,
        policy=policy)


def _upload_ratio_floor(problem: SplitProblem, policy: DevicePolicy) -> FloatArray:
    """The least server ratio that leaves the shortest possible upload time t_lo (eq. 4.4):
    below it C*(T') = −inf, a step no root finder crosses quickly, so searches start here."""
    d = problem.device
    w = problem.noise_to_gain_w()
    if policy == "max-power":
        eta = np.log1p(d.tx_power_max_w / w) / LN2
        t_lo = np.where(problem.upload_bits > 0,
                        problem.upload_bits / (problem.channel.bandwidth_hz * eta), 0.0)
    else:
        t_lo = shortest_upload_time_s(problem.upload_bits, problem.channel.bandwidth_hz, w,
                                      d.tx_power_max_w, np.asarray(d.energy_budget_j))
    spare_s = problem.time_budget_s - t_lo - problem.server_fixed_s
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(problem.server_prunable_s > 0, 1 - spare_s / problem.server_prunable_s,
                       0.0)
    return np.asarray(np.clip(np.nan_to_num(rho, nan=1.0, posinf=1.0), 0.0,
                              problem.scenario.task.rho_max), dtype=np.float64)


def _shape(problem: SplitProblem) -> tuple[int, ...]:
    return np.broadcast_shapes(np.shape(problem.gain), (problem.n_splits,))


def _finish(problem: SplitProblem, feasible: NDArray[np.bool_], rho_d: FloatArray,
            rho_s: FloatArray) -> RatioSolution:
    rho_d = np.where(problem.cycles_prunable_device > 0, rho_d, 0.0)
    rho_s = np.where(problem.server_prunable_s > 0, rho_s, 0.0)
    objective = problem.bound.device(rho_d) + problem.bound.server(rho_s)
    return RatioSolution(feasible=feasible, rho_device=np.where(feasible, rho_d, np.nan),
                         rho_server=np.where(feasible, rho_s, np.nan),
                         objective=np.where(feasible, objective, np.inf))


def fixed_ratios(problem: SplitProblem, rho_device: float, rho_server: float,
                 policy: DevicePolicy = "free") -> RatioSolution:
    """Feasibility and objective of given ratios at every split."""
    shape = _shape(problem)
    rho_d = np.broadcast_to(np.maximum(rho_device, 0.0), shape)
    rho_s = np.broadcast_to(float(rho_server), shape)
    cap = capacity(problem, problem.time_budget_s - problem.server_time_s(rho_s), policy)
    feasible = (problem.allowed & (rho_d >= problem.rho_floor_device - 1e-15)
                & (cap.cycles >= problem.device_cycles(rho_d)))
    return _finish(problem, feasible, rho_d, rho_s)


def tied_ratios(problem: SplitProblem, policy: DevicePolicy = "free") -> RatioSolution:
    """The least feasible common ratio ρ_d = ρ_s = ρ at every split (eq. 4.11)."""
    shape = _shape(problem)
    rho_max = problem.scenario.task.rho_max

    def margin(rho: FloatArray) -> FloatArray:
        cap = capacity(problem, problem.time_budget_s - problem.server_time_s(rho), policy)
        return cap.cycles - problem.device_cycles(rho)

    lo = np.maximum(np.minimum(problem.rho_floor_device, rho_max),
                    _upload_ratio_floor(problem, policy))
    lo = np.broadcast_to(lo, shape).copy()
    hi = np.full(shape, rho_max)
    rho = increasing_root(margin, lo, hi)
    feasible = problem.allowed & (margin(rho) >= 0)
    return _finish(problem, feasible, rho, rho)


def separate_ratios(problem: SplitProblem, policy: DevicePolicy = "free") -> RatioSolution:
    """The optimal (ρ_d, ρ_s) at every split: minimize φ(ρ_s) = D_s(ρ_s) + D_d(β(ρ_s))."""
    shape = _shape(problem)
    rho_max = problem.scenario.task.rho_max
    floor = np.minimum(problem.rho_floor_device, rho_max)
    a_d = problem.cycles_prunable_device
    has_device_weights = a_d > 0

    def least_device_ratio(rho_s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """β(ρ_s), whether it sits on its floor, and C*'(T'') (eq. 4.12)."""
        cap = capacity(problem, problem.time_budget_s - problem.server_time_s(rho_s), policy)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(has_device_weights,
                            1 - (cap.cycles - problem.cycles_fixed_device) / a_d, floor)
        on_floor = beta <= floor
        return np.maximum(beta, floor), on_floor, cap.slope_cycles_per_s

    def margin(rho_s: FloatArray) -> FloatArray:
        cap = capacity(problem, problem.time_budget_s - problem.server_time_s(rho_s), policy)
        return cap.cycles - problem.device_cycles(np.full(shape, rho_max))

    start = np.broadcast_to(_upload_ratio_floor(problem, policy), shape).copy()
    rho_s_lo = increasing_root(margin, start, np.full(shape, rho_max))
    feasible = problem.allowed & (margin(rho_s_lo) >= 0)

    def phi_slope(rho_s: FloatArray) -> FloatArray:
        beta, on_floor, cap_slope = least_device_ratio(rho_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta_slope = np.where(on_floor | ~has_device_weights, 0.0,
                                  -cap_slope * problem.server_prunable_s / a_d)
        slope = (problem.bound.server_derivative(rho_s)
                 + problem.bound.device_derivative(np.minimum(beta, rho_max)) * beta_slope)
        return np.where(np.isfinite(slope), slope, 0.0)

    lo = np.where(feasible, rho_s_lo, 0.0)
    rho_s = increasing_root(phi_slope, lo, np.full(shape, rho_max))
    rho_d = least_device_ratio(rho_s)[0]
    # guard the floating-point edge: never return a device ratio above rho_max
    feasible &= rho_d <= rho_max * (1 + 1e-12)
    return _finish(problem, feasible, np.minimum(rho_d, rho_max), rho_s)
