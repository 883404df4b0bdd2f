"""The fixed-policy strategies ("max-power": p = P; "max-frequency": f_d = F) against a
brute-force search per split, written from docs/theory.md §2 with its own arithmetic
(tests/scenario_factory.py's `Reference`), none of the solver's helpers.

With p or f_d fixed, the most device cycles that fit in the time T_left left after the server
(and the downlink) follow from the limits directly:

- max-power: the upload takes t_P = S/r(P) at energy P·t_P, the device gets t_d = T_left − t_P
  and C = min(F·t_d, ((E − P·t_P)·t_d²/κ)^{1/3});
- max-frequency: t_d = C/F, so C is the largest value with κ·C·F² + e_c(T_left − C/F) ≤ E and
  T_left − C/F ≥ t_P; the left side grows with C, so bisection finds it.

For each ρ_s the best ρ_d is then the least ratio whose cycles fit (and whose parameters fit the
memory), since the distortion grows with ρ_d; a grid over ρ_s, refined around its best point
level after level, finds the best pair. The solver must match the search's best to 1e-6
relative, and the search must never beat the solver by more than that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scenario_factory import Reference, random_case

from laimco.optimize.problem import build_problem
from laimco.optimize.ratios import separate_ratios

SEEDS = range(40)
POLICIES = ("max-power", "max-frequency")
TOL = 1e-6
COARSE, FINE, LEVELS = 41, 17, 14  # ρ_s grid; each level keeps ±2 steps around the best
BISECTIONS = 200


def _upload_energy(ref: Reference, s: int, t_upload: np.ndarray, gain: float) -> np.ndarray:
    """e_c(t) = (N₀B/g)·t·(2^{S/(B t)} − 1), ∞ for t ≤ 0."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        energy = ref.power_for(s, t_upload, gain) * t_upload
    return np.where(t_upload > 0, energy, np.inf)


def _most_cycles(ref: Reference, s: int, time_left: np.ndarray, gain: float,
                 policy: str) -> np.ndarray:
    """The most device cycles that fit in time_left under the policy (−inf: none fit)."""
    t_power = ref.shortest_upload_s(s, gain)
    if policy == "max-power":
        e_up = ref.P * t_power
        t_dev = time_left - t_power
        with np.errstate(invalid="ignore"):
            cycles = np.minimum(ref.F * t_dev,
                                np.cbrt(max(ref.E - e_up, 0.0) * t_dev**2 / ref.kappa))
        return np.where((t_dev >= 0) & (e_up <= ref.E), cycles, -np.inf)
    # max-frequency
    if ref.upload_bits[s] == 0:
        cycles = np.minimum(ref.F * time_left, ref.E / (ref.kappa * ref.F**2))
        return np.where(time_left >= 0, cycles, -np.inf)

    def over_energy(c: np.ndarray) -> np.ndarray:
        return ref.kappa * c * ref.F**2 + _upload_energy(ref, s, time_left - c / ref.F,
                                                         gain) > ref.E

    hi = np.maximum(ref.F * (time_left - t_power), 0.0)
    lo = np.zeros_like(hi)
    feasible = (time_left >= t_power) & ~over_energy(lo)
    top_fits = ~over_energy(hi)
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        over = over_energy(mid)
        lo, hi = np.where(over, lo, mid), np.where(over, mid, hi)
    return np.where(feasible, np.where(top_fits, np.maximum(ref.F * (time_left - t_power), 0.0),
                                       lo), -np.inf)


def _best_device_ratio(ref: Reference, s: int, cycles: np.ndarray) -> np.ndarray:
    """The least ρ_d whose cycles fit in `cycles` and whose parameters fit the memory (∞:
    none does)."""
    floor = ref.memory_floor(s)
    if ref.cycles_prunable[s] > 0:
        rho = np.maximum(1 - (cycles - ref.cycles_fixed[s]) / ref.cycles_prunable[s], floor)
    else:
        rho = np.where(cycles >= ref.cycles_fixed[s], floor, np.inf)
    if ref.n_device[s] == 0:
        rho = np.where(np.isfinite(rho), 0.0, np.inf)
    return np.where(rho <= ref.rho_max * (1 + 1e-12), np.minimum(rho, ref.rho_max), np.inf)


def brute_force(ref: Reference, s: int, gain: float, policy: str) -> float:
    """The least objective at split s over a refined ρ_s grid (∞: nothing feasible)."""
    if s < ref.min_split:
        return math.inf
    top = ref.rho_max if ref.n_server[s] > 0 else 0.0
    lo, hi, n, best = 0.0, top, COARSE, (math.inf, 0.0)
    for _ in range(LEVELS):
        rho_s = np.linspace(lo, hi, n)
        time_left = ref.T - ref.downlink_at(s) - ref.server_time(s, rho_s)
        rho_d = _best_device_ratio(ref, s, _most_cycles(ref, s, time_left, gain, policy))
        ok = np.isfinite(rho_d)
        if not ok.any():
            break
        objective = np.where(ok, ref.device_side(s, np.where(ok, rho_d, 0.0))
                             + ref.server_side(s, rho_s), np.inf)
        i = int(np.argmin(objective))
        best = min(best, (float(objective[i]), float(rho_s[i])))
        step = (hi - lo) / (n - 1) if n > 1 else 0.0
        lo, hi, n = max(0.0, best[1] - 2 * step), min(top, best[1] + 2 * step), FINE
        if hi <= lo:
            break
    return best[0]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_fixed_policy_ratios_match_a_brute_force_search(seed: int, policy: str) -> None:
    case = random_case(seed)
    scenario = case.scenario.model_copy(update={"task": case.scenario.task.model_copy(
        update={"ratios": "separate"})})
    ref = Reference(scenario, case.profile)
    gain = ref.design_gain()
    solution = separate_ratios(build_problem(scenario, case.profile), policy)  # type: ignore[arg-type]
    for s in range(ref.L + 1):
        opt = float(np.ravel(solution.objective)[s])
        found = brute_force(ref, s, gain, policy)
        scale = 1e-12 * max(ref.objective_scale(s), 1e-300)
        where = f"{case.label} {policy} split {s}: solver {opt}, search {found}"
        if not math.isfinite(found):
            assert not math.isfinite(opt), where
            continue
        assert math.isfinite(opt), where
        assert found >= opt * (1 - TOL) - scale, where
        assert opt <= found * (1 + TOL) + scale, where
