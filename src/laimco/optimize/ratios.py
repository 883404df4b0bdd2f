"""The best pruning ratios of every split at once (docs/theory.md §4.3).

For a fixed split the problem is convex (§4.1). With C*(T) the device capacity
(device_capacity.py), a ratio pair is feasible iff

    C_d(ρ_d) ≤ C*(T' − t_s(ρ_s)),  ρ_floor ≤ ρ_d ≤ ρ_max,  0 ≤ ρ_s ≤ ρ_max           (eq. 4.10)

and the objective is non-decreasing in each ratio. Tied ratios: the answer is the least
feasible ρ, a root of an increasing function (4.11). Separate ratios: the least feasible ρ_d
for a given ρ_s, β(ρ_s), is convex and non-increasing, so φ(ρ_s) = D_s(ρ_s) + D_d(β(ρ_s)) is
convex (4.12); its minimizer within the feasible range is the one sign change of a max/min of
three monotone functions of the curve parameter (4.16), found by a single search.

Every search runs along the capacity curve's parameter v (eq. 4.14), on which T, C* and dC*/dT
are closed forms, so no root is nested inside another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from laimco.optimize.device_capacity import (
    CapacityCurve,
    DevicePolicy,
    capacity_at,
    capacity_curve,
    capacity_point,
    parameter_floor,
)
from laimco.optimize.problem import SplitProblem
from laimco.optimize.roots import increasing_root, increasing_root_bracket
from laimco.optimize.tolerances import (
    CYCLES_ABS_TOL,
    RATIO_FLOOR_TOL,
    ROUNDING_TOL,
    SEARCH_ABS_TOL_PER_TIME,
    SEARCH_REL_TOL,
    TINY,
)
from laimco.theory.distortion_bound import RuleSplitBound, SplitDistortionBound

FloatArray = NDArray[np.float64]
# fractions of the interior piece [0, x_hi] the joint search's first grid also evaluates
_INTERIOR_GRID = np.linspace(0.0, 1.0, 10)[1:-1]


@dataclass(frozen=True)
class RatioSolution:
    """Per split (shape (R, L+1) or (L+1,)): feasibility, ratios and the objective."""

    feasible: NDArray[np.bool_]
    rho_device: FloatArray
    rho_server: FloatArray
    objective: FloatArray


@dataclass(frozen=True)
class _Elements:
    """The problem flattened to one element per (realization, split)."""

    shape: tuple[int, ...]
    split: NDArray[np.intp]
    cycles_prunable: FloatArray
    cycles_fixed: FloatArray
    server_prunable_s: FloatArray
    server_fixed_s: FloatArray
    rho_floor: FloatArray
    allowed: NDArray[np.bool_]
    curve: CapacityCurve


def _elements(problem: SplitProblem, policy: DevicePolicy) -> _Elements:
    shape = np.broadcast_shapes(np.shape(problem.gain), (problem.n_splits,))

    def full(a: ArrayLike) -> NDArray[np.generic]:
        a = np.asarray(a)
        return a if a.shape == shape else np.broadcast_to(a, shape)

    def flat(a: ArrayLike, dtype: type = np.float64) -> Any:  # the dtype asked for
        return np.ravel(full(np.asarray(a, dtype=dtype)))

    d = problem.device
    # the most time any search asks about: the whole budget less the server's fixed part
    time_max = full(problem.time_budget_s - problem.server_fixed_s)
    curve = capacity_curve(
        full(problem.upload_bits), full(problem.noise_to_gain_w()),
        bandwidth_hz=problem.channel.bandwidth_hz, energy_j=d.energy_budget_j,
        tx_power_max_w=d.tx_power_max_w, kappa=d.kappa, cpu_freq_max_hz=d.cpu_freq_max_hz,
        policy=policy, time_max_s=time_max)
    return _Elements(
        shape=shape, split=flat(np.arange(problem.n_splits), np.intp),
        cycles_prunable=flat(problem.cycles_prunable_device),
        cycles_fixed=flat(problem.cycles_fixed_device),
        server_prunable_s=flat(problem.server_prunable_s),
        server_fixed_s=flat(problem.server_fixed_s),
        rho_floor=flat(np.minimum(problem.rho_floor_device, problem.scenario.task.rho_max)),
        allowed=flat(problem.allowed & (problem.rho_floor_device
                                        <= problem.scenario.task.rho_max), bool),
        curve=curve)


def _server_ratio(time_s: FloatArray, budget_s: float, prunable_s: FloatArray,
                  fixed_s: FloatArray) -> FloatArray:
    """ρ_s that leaves the device `time_s`: T' − t_s(ρ_s) = time_s (t_s affine, eq. 2.7)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1 - (budget_s - time_s - fixed_s) / prunable_s


def _device_cycles(rho: FloatArray, prunable: FloatArray, fixed: FloatArray) -> FloatArray:
    return (1 - rho) * prunable + fixed


def _least_device_ratio(cycles_max: FloatArray, el_prunable: FloatArray, el_fixed: FloatArray,
                        floor: FloatArray) -> FloatArray:
    """β: the least device ratio whose cycles fit in cycles_max (floor when no weights)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(el_prunable > 0, 1 - (cycles_max - el_fixed) / el_prunable, floor)
    return np.maximum(beta, floor)


def _parameter_bracket_hi(el: _Elements, budget_s: float, rho_max: float) -> FloatArray:
    """A curve parameter at which T(x) ≥ T' − t_s(ρ_max) (eq. 4.18)."""
    time_max = budget_s - ((1 - rho_max) * el.server_prunable_s + el.server_fixed_s)
    return np.maximum(el.curve.parameter_reaching(time_max), 0.0)


def _finish(problem: SplitProblem, el: _Elements, feasible: NDArray[np.bool_],
            rho_d: FloatArray, rho_s: FloatArray, *, imposed: bool = False) -> RatioSolution:
    """Package per-element ratios. Free ratios (`imposed` False) are 0 on a side whose pruning
    buys nothing (no prunable cycles: no weights, or a rule whose pruning saves no time, eq.
    5.4); imposed ratios (tied, fixed) stay wherever the side has weights to prune."""
    if imposed:
        rho_d = np.where(problem.table.prunable_device[el.split] > 0, rho_d, 0.0)
        rho_s = np.where(problem.table.prunable_server[el.split] > 0, rho_s, 0.0)
    else:
        rho_d = np.where(el.cycles_prunable > 0, rho_d, 0.0)
        rho_s = np.where(el.server_prunable_s > 0, rho_s, 0.0)
    rho_d_s = rho_d.reshape(el.shape)
    rho_s_s = rho_s.reshape(el.shape)
    objective = problem.bound.device(rho_d_s) + problem.bound.server(rho_s_s)
    if problem.quantization_distortion is not None:  # D_q(s, b), a constant per split (eq. 6.5)
        objective = objective + problem.quantization_distortion
    ok = feasible.reshape(el.shape)
    return RatioSolution(feasible=ok, rho_device=np.where(ok, rho_d_s, np.nan),
                         rho_server=np.where(ok, rho_s_s, np.nan),
                         objective=np.where(ok, objective, np.inf))


def _check(el: _Elements, budget_s: float, rho_max: float, rho_d: FloatArray | None,
           rho_s: FloatArray) -> tuple[NDArray[np.bool_], FloatArray]:
    """Feasibility of final ratios by a direct capacity evaluation (eq. 4.10), and the least
    device ratio β the capacity allows. With rho_d None the device ratio is β itself."""
    time_s = budget_s - ((1 - rho_s) * el.server_prunable_s + el.server_fixed_s)
    cap = capacity_at(el.curve, time_s)
    beta = _least_device_ratio(cap.cycles, el.cycles_prunable, el.cycles_fixed, el.rho_floor)
    rho = np.minimum(beta, rho_max) if rho_d is None else rho_d
    need = _device_cycles(rho, el.cycles_prunable, el.cycles_fixed)
    fits = cap.cycles >= need * (1 - ROUNDING_TOL) - CYCLES_ABS_TOL
    feasible = (el.allowed & el.curve.feasible & fits & (rho <= rho_max * (1 + ROUNDING_TOL))
                & (rho >= el.rho_floor - RATIO_FLOOR_TOL))
    if rho_d is None:
        feasible &= beta <= rho_max * (1 + ROUNDING_TOL)
    return feasible, beta


def fixed_ratios(problem: SplitProblem, rho_device: float, rho_server: float,
                 policy: DevicePolicy = "free") -> RatioSolution:
    """Feasibility and objective of given ratios at every split."""
    el = _elements(problem, policy)
    rho_d = np.full(el.split.shape, float(rho_device))
    rho_s = np.full(el.split.shape, float(rho_server))
    rho_d_eff = np.where(problem.table.prunable_device[el.split] > 0, rho_d, el.rho_floor)
    feasible, _ = _check(el, problem.time_budget_s, problem.scenario.task.rho_max,
                         rho_d_eff, np.where(el.server_prunable_s > 0, rho_s, 0.0))
    return _finish(problem, el, feasible, rho_d, rho_s, imposed=True)


def tied_ratios(problem: SplitProblem, policy: DevicePolicy = "free") -> RatioSolution:
    """The least feasible common ratio ρ_d = ρ_s = ρ at every split (eq. 4.11)."""
    el = _elements(problem, policy)
    budget, rho_max = problem.time_budget_s, problem.scenario.task.rho_max
    constants = el.curve.constants()
    searched = el.server_prunable_s > 0

    def margin(v: FloatArray, a_d: FloatArray, b_d: FloatArray, a_s: FloatArray,
               b_s: FloatArray, *curve_args: FloatArray) -> FloatArray:
        time_s, cycles, _, _ = capacity_point(v, *curve_args, *constants)
        rho = _server_ratio(time_s, budget, a_s, b_s)
        return cycles - _device_cycles(rho, a_d, b_d)

    index = np.flatnonzero(searched & el.allowed & el.curve.feasible)
    sub = el.curve.subset(index)
    hi = _parameter_bracket_hi(el, budget, rho_max)[index]
    args = (el.cycles_prunable[index], el.cycles_fixed[index], el.server_prunable_s[index],
            el.server_fixed_s[index], *sub.args())
    x = increasing_root(margin, parameter_floor(sub.boundary), hi, args, rel_tol=SEARCH_REL_TOL)
    # feasibility is judged where the root landed (margin ≥ 0 there), not re-derived from ρ
    time_s = capacity_point(x, *sub.args(), *constants)[0]
    rho = np.full(el.split.shape, np.inf)
    rho[index] = np.where(margin(x, *args) >= 0,
                          _server_ratio(time_s, budget, el.server_prunable_s[index],
                                        el.server_fixed_s[index]), np.inf)
    rho = np.maximum(rho, el.rho_floor)
    # splits whose server side has no weights: T is fixed, ρ only moves the device cycles
    cap_fixed = capacity_at(el.curve, budget - el.server_fixed_s)
    beta = _least_device_ratio(cap_fixed.cycles, el.cycles_prunable, el.cycles_fixed,
                               el.rho_floor)
    rho = np.where(searched, rho, beta)
    feasible = (el.allowed & el.curve.feasible & (rho <= rho_max * (1 + ROUNDING_TOL))
                & (searched | (cap_fixed.cycles >= el.cycles_fixed)))
    rho = np.minimum(rho, rho_max)
    return _finish(problem, el, feasible, rho, rho, imposed=True)


class _JointTerms(NamedTuple):
    """Per searched element, the constants of the joint search function (eq. 4.16), in the
    order the search takes them after v (the root finder slices them as rows)."""

    floor: FloatArray
    split: FloatArray
    time_at_rho_zero: FloatArray  # T₀, the device time left at ρ_s = 0 (eq. 2.7)
    per_server_s: FloatArray  # 1/a_s (0 without server weights)
    beta_base: FloatArray  # β = beta_base − C·per_device_cycle
    per_device_cycle: FloatArray
    beta_per_capacity_slope: FloatArray  # a_s/a_d: dβ/dρ_s = −(dC*/dT)·a_s/a_d (§4.3)
    need: FloatArray  # the device cycles at ρ_d = ρ_max
    per_need: FloatArray
    time_max: FloatArray  # the most time the server leaves (at ρ_s = ρ_max)
    per_time: FloatArray
    balance_cap: FloatArray


def _joint_terms(el: _Elements, index: NDArray[np.intp], budget: float,
                 rho_max: float) -> _JointTerms:
    """The joint search's constants of the elements `index`."""
    n = index.size
    a_d, b_d = el.cycles_prunable[index], el.cycles_fixed[index]
    a_s, b_s = el.server_prunable_s[index], el.server_fixed_s[index]
    # the device cycles at ρ_d = ρ_max (the feasibility edge is where the capacity reaches
    # them) and the most time the server leaves (at ρ_s = ρ_max; all of it without weights)
    need = _device_cycles(np.full(n, rho_max), a_d, b_d)
    time_max = budget - ((1 - rho_max) * a_s + b_s)
    has_device_weights, has_server_weights = a_d > 0, a_s > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # ρ_s = (T − T₀)/a_s with T₀ the time left at ρ_s = 0 (eq. 2.7); β = base − C/a_d
        time_at_rho_zero = budget - (a_s + b_s)
        per_server_s = np.where(has_server_weights, 1 / a_s, 0.0)
        beta_base = np.where(has_device_weights, 1 + b_d / a_d, el.rho_floor[index])
        per_device_cycle = np.where(has_device_weights, 1 / a_d, 0.0)
        # dβ/dρ_s = −(dC*/dT)·a_s/a_d (§4.3)
        beta_per_capacity_slope = np.where(has_device_weights, a_s / a_d, 0.0)
    return _JointTerms(
        floor=el.rho_floor[index], split=el.split[index].astype(np.float64),
        time_at_rho_zero=time_at_rho_zero, per_server_s=per_server_s, beta_base=beta_base,
        per_device_cycle=per_device_cycle, beta_per_capacity_slope=beta_per_capacity_slope,
        need=need, per_need=1 / np.maximum(need, 1.0), time_max=time_max,
        per_time=1 / _time_scale(time_max),
        # splits without server weights have nothing to balance: b = −1, the device takes all
        # the time there is (b ≤ 1 elsewhere, so the cap changes nothing there)
        balance_cap=np.where(has_server_weights, 1.0, -1.0))


def _time_scale(time_max: FloatArray) -> FloatArray:
    """The time that scales the search's tolerance and its time excess."""
    return np.maximum(np.abs(time_max), TINY)


def _joint_search(bound: SplitDistortionBound | RuleSplitBound, rho_max: float,
                  constants: tuple[float, float, float, bool]) -> Callable[..., FloatArray]:
    """max(min(margin, φ'), excess) as a function of the curve parameter v, the per-element
    `_JointTerms` and the capacity curve's arguments (eq. 4.16)."""

    def search(v: FloatArray, floor: FloatArray, split: FloatArray, time_at_rho_zero: FloatArray,
               per_server_s: FloatArray, beta_base: FloatArray, per_device_cycle: FloatArray,
               beta_per_capacity_slope: FloatArray, need: FloatArray, per_need: FloatArray,
               time_max: FloatArray, per_time: FloatArray, balance_cap: FloatArray,
               *curve_args: FloatArray) -> FloatArray:
        time_s, cycles, cap_slope, _ = capacity_point(v, *curve_args, *constants)
        rho_s_raw = (time_s - time_at_rho_zero) * per_server_s
        rho_s = np.minimum(np.maximum(rho_s_raw, 0.0), rho_max)
        beta_raw = beta_base - cycles * per_device_cycle
        beta = np.minimum(np.maximum(beta_raw, floor), rho_max)
        # φ' = D_s' + D_d'·β' as a balance in [−1, 1]: the same sign, and of order one like
        # the other two pieces, so the piece changing sign is the one max/min picks.
        # Below ρ_s = 0 the server's ratio stays at 0: its term does not move; on its floor
        # β does not move either (β' = 0). Neither moving: balance 0, nothing to gain.
        gain_s = bound.server_derivative_at(rho_s, split) * (rho_s_raw > 0)
        loss_d = (bound.device_derivative_at(beta, split) * (cap_slope * beta_per_capacity_slope)
                  * (beta_raw > floor))
        balance = np.minimum((gain_s - loss_d) / (gain_s + loss_d + TINY), balance_cap)
        margin = (cycles - need) * per_need
        excess = (time_s - time_max) * per_time
        return np.maximum(np.minimum(margin, balance), excess)

    return search


def separate_ratios(problem: SplitProblem, policy: DevicePolicy = "free") -> RatioSolution:
    """The optimal (ρ_d, ρ_s) at every split: minimize φ(ρ_s) = D_s(ρ_s) + D_d(β(ρ_s)).

    One search along the curve parameter v finds, per split, min(v_max, max(v_edge, v*))
    (docs/theory.md §4.3): v_edge the least v at which ρ_d = ρ_max fits, v* the root of φ',
    v_max the v whose time is what the server leaves at ρ_s = ρ_max. Each is the one sign
    change of a function of v, so max(min(margin, φ'), excess) changes sign exactly there."""
    el = _elements(problem, policy)
    budget, rho_max = problem.time_budget_s, problem.scenario.task.rho_max
    constants = el.curve.constants()
    live = el.allowed & el.curve.feasible
    index = np.flatnonzero(live)
    terms = _joint_terms(el, index, budget, rho_max)
    time_scale = _time_scale(terms.time_max)
    sub = el.curve.subset(index)
    curve_args = sub.args()
    # a bracket: the parameter floor, and a v whose time reaches time_max (eq. 4.18); most
    # roots lie on the interior piece [0, hi], which gets grid points of its own (the
    # boundary piece holds those of splits with little device compute)
    lo = parameter_floor(sub.boundary)
    hi = np.maximum(sub.parameter_reaching(terms.time_max), lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        v_lower, v_upper = increasing_root_bracket(
            _joint_search(problem.bound, rho_max, constants), lo, hi, (*terms, *curve_args),
            rel_tol=SEARCH_REL_TOL, abs_tol=SEARCH_ABS_TOL_PER_TIME * time_scale,
            breakpoints=sub.kinks(),
            grid_points=np.maximum(hi, 0.0)[:, None] * _INTERIOR_GRID)
    # where the search stopped at time_max take the side within it; everywhere else the side
    # with margin ≥ 0 (the device fits). One evaluation of both candidates:
    n = index.size
    both = capacity_point(np.concatenate([v_upper, v_lower]),
                          *(np.concatenate([arg, arg]) for arg in curve_args), *constants)
    over = both[0][:n] > terms.time_max
    time_found = np.where(over, both[0][n:], both[0][:n])
    cycles_found = np.where(over, both[1][n:], both[1][:n])
    cycles = np.full(el.split.shape, -np.inf)
    rho_s = np.zeros(el.split.shape)
    cycles[index] = cycles_found
    rho_s[index] = np.clip((time_found - terms.time_at_rho_zero) * terms.per_server_s, 0.0,
                           rho_max)
    # feasibility is judged at the capacity the search found, not re-derived from ρ_s
    beta = _least_device_ratio(cycles, el.cycles_prunable, el.cycles_fixed, el.rho_floor)
    fits = np.where(el.cycles_prunable > 0, beta <= rho_max * (1 + ROUNDING_TOL),
                    cycles >= el.cycles_fixed)
    # the device time found must be one the server leaves (a few ulps over: rounding in T')
    reachable = np.zeros(el.split.shape, dtype=bool)
    reachable[index] = time_found <= terms.time_max + ROUNDING_TOL * time_scale
    feasible = live & fits & reachable
    return _finish(problem, el, feasible, np.minimum(beta, rho_max), rho_s)


SplitSearch = Callable[[int, float], tuple[float, float, float] | None]


def searched_ratios(problem: SplitProblem, search: SplitSearch) -> RatioSolution:
    """A `RatioSolution` from a search run at every allowed split and gain of the problem
    (the generic-solver baselines: one multi-start per element); `search(split, gain)` gives
    (objective, ρ_d, ρ_s) or None when it finds nothing feasible."""
    gains = np.ravel(problem.gain)
    shape = (gains.size, problem.n_splits)
    rho_d, rho_s = np.full(shape, np.nan), np.full(shape, np.nan)
    objective = np.full(shape, np.inf)
    for r, gain in enumerate(gains):
        for s in (int(i) for i in np.flatnonzero(problem.allowed)):
            found = search(s, float(gain))
            if found is not None:
                objective[r, s], rho_d[r, s], rho_s[r, s] = found
    out_shape = np.broadcast_shapes(np.shape(problem.gain), (problem.n_splits,))
    return RatioSolution(feasible=np.isfinite(objective).reshape(out_shape),
                         rho_device=rho_d.reshape(out_shape),
                         rho_server=rho_s.reshape(out_shape),
                         objective=objective.reshape(out_shape))
