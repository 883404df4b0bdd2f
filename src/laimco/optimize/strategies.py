"""Every decision strategy by name: the exact joint design and the benchmarks it is judged
against (docs/theory.md §4.6). Each takes a scenario and returns a checked `Decision`."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from laimco.config import Scenario
from laimco.optimize.alternating import alternating_decision, alternating_ratios
from laimco.optimize.decision import (
    ACTIVE_TOL,
    TIE_TOL,
    Decision,
    make_decision,
    optimal_decision,
)
from laimco.optimize.device_capacity import DevicePolicy
from laimco.optimize.evaluate import decision_costs, limit_usage
from laimco.optimize.problem import SplitProblem, allowed_rules, build_problem
from laimco.optimize.ratios import RatioSolution, fixed_ratios, separate_ratios, tied_ratios
from laimco.optimize.slsqp import slsqp_split
from laimco.profile import ModelProfile, load_profile


class StrategyError(ValueError):
    """An unknown strategy name or a missing/invalid strategy option."""


@dataclass(frozen=True)
class StrategyOptions:
    """Options some strategies need: `ratio` for fixed-ratio, `split` for fixed-split,
    `n_starts`/`seed` for slsqp and alternating."""

    ratio: float = 0.5
    split: int | None = None
    n_starts: int = 8
    seed: int = 0


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    policy: DevicePolicy
    ratios: Callable[[SplitProblem, DevicePolicy, StrategyOptions], RatioSolution]
    splits: Callable[[SplitProblem, StrategyOptions], np.ndarray] | None = None


def _scenario_ratios(problem: SplitProblem, policy: DevicePolicy,
                     _: StrategyOptions) -> RatioSolution:
    if problem.scenario.task.ratios == "tied":
        return tied_ratios(problem, policy)
    return separate_ratios(problem, policy)


def _tied(problem: SplitProblem, policy: DevicePolicy, _: StrategyOptions) -> RatioSolution:
    return tied_ratios(problem, policy)


def _no_pruning(problem: SplitProblem, policy: DevicePolicy,
                _: StrategyOptions) -> RatioSolution:
    return fixed_ratios(problem, 0.0, 0.0, policy)


def _fixed_ratio(problem: SplitProblem, policy: DevicePolicy,
                 options: StrategyOptions) -> RatioSolution:
    if not 0 <= options.ratio <= problem.scenario.task.rho_max:
        raise StrategyError(f"fixed-ratio needs --ratio in [0, task.rho_max = "
                            f"{problem.scenario.task.rho_max}], got {options.ratio}")
    return fixed_ratios(problem, options.ratio, options.ratio, policy)


def _only(split_of: Callable[[SplitProblem, StrategyOptions], int]) -> Callable[
        [SplitProblem, StrategyOptions], np.ndarray]:
    def mask(problem: SplitProblem, options: StrategyOptions) -> np.ndarray:
        return np.asarray(np.arange(problem.n_splits) == split_of(problem, options))
    return mask


def _given_split(problem: SplitProblem, options: StrategyOptions) -> int:
    split = problem.profile.n_units // 2 if options.split is None else options.split
    if not 0 <= split <= problem.profile.n_units:
        raise StrategyError(f"fixed-split needs --split in 0..{problem.profile.n_units} "
                            f"for profile {problem.profile.name!r}, got {split}")
    return split


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("joint", "exact joint design: best split, ratios, power and frequency (default)",
             "free", _scenario_ratios),
    Strategy("tied", "joint design with one pruning ratio for both sides (the paper's design)",
             "free", _tied),
    Strategy("on-device", "whole model on the device (split = L), ratios and resources optimized",
             "free", _scenario_ratios, _only(lambda p, o: p.profile.n_units)),
    Strategy("on-server", "device uploads the raw input (split = 0), server model optimized",
             "free", _scenario_ratios, _only(lambda p, o: 0)),
    Strategy("no-pruning", "no pruning on either side; best split and resources",
             "free", _no_pruning),
    Strategy("fixed-ratio", "the same given ratio (--ratio) on both sides; best split",
             "free", _fixed_ratio),
    Strategy("max-power", "transmit at maximum power; everything else optimized",
             "max-power", _scenario_ratios),
    Strategy("max-frequency", "device CPU at maximum frequency; everything else optimized",
             "max-frequency", _scenario_ratios),
    Strategy("fixed-split", "a given split (--split, default L/2); everything else optimized",
             "free", _scenario_ratios, _only(_given_split)),
    Strategy("slsqp", "scipy SLSQP multi-start on (ρ_d, ρ_s, p, f_d, f_s) per split "
             "(generic-solver reference)", "free", _scenario_ratios),
    Strategy("alternating", "alternating convex steps per split: ratios for fixed (p, f_d), "
             "then (p, f_d) for fixed ratios, multi-start (the paper's kind of method)",
             "free", lambda problem, policy, options: alternating_ratios(
                 problem, policy, options.n_starts, options.seed)),
)}


def solve(scenario: Scenario, strategy: str = "joint", *, profile: ModelProfile | None = None,
          options: StrategyOptions | None = None) -> Decision:
    """Run one strategy on a scenario at its design channel gain. In the calibrated mode the
    pruning rule of each side is a decision too: every (device rule, server rule) pair is
    solved exactly and the best is kept (least objective, then least device energy)."""
    if strategy not in STRATEGIES:
        raise StrategyError(f"unknown strategy {strategy!r}: choose one of "
                            f"{', '.join(STRATEGIES)}")
    options = options or StrategyOptions()
    started = time.perf_counter()
    profile = profile or load_profile(scenario.model.profile)
    decisions = [_solve_pair(scenario, profile, strategy, options, pair)
                 for pair in rule_pairs(scenario, profile, strategy)]
    elapsed = time.perf_counter() - started
    best = _best(decisions)
    return dataclasses.replace(best, solve_time_s=elapsed)


def rule_pairs(scenario: Scenario, profile: ModelProfile,
               strategy: str) -> list[tuple[str, str]]:
    """The (device rule, server rule) pairs a strategy is solved for (docs/theory.md §5.4)."""
    rules = allowed_rules(scenario, profile)
    if strategy not in ("tied", "fixed-ratio") and scenario.task.ratios == "separate":
        rules = distinct_rules(profile, rules)  # each side's ratio is free
    return list(itertools.product(rules, rules))


def distinct_rules(profile: ModelProfile, rules: list[str]) -> list[str]:
    """The rules worth solving for when each side's ratio is free: rules under which pruning
    saves neither time nor memory (execution a = 0, b = 1, dense storage) all lead to ρ = 0 on
    their side, where they are the same dense part, so only the first of them is kept
    (docs/theory.md §5.4). Not for tied or fixed ratios, where such a side may be pruned."""
    kept, useless_seen = [], False
    for name in rules:
        costs = profile.rules.get(name)
        useless = costs is not None and costs.saves_nothing
        if useless and useless_seen:
            continue
        useless_seen |= useless
        kept.append(name)
    return kept


def _best(decisions: list[Decision]) -> Decision:
    feasible = [d for d in decisions if d.success]
    if not feasible:
        reasons = list(dict.fromkeys(r for d in decisions for r in d.reasons))
        # a limit whose relaxation alone helps under some rule pair is the answer; "jointly too
        # tight" (from pairs where no single relaxation helps) would contradict it
        single = [r for r in reasons if "jointly too tight" not in r]
        return dataclasses.replace(decisions[0], reasons=single or reasons)
    objective = {id(d): float(d.objective or 0.0) for d in feasible}  # set when optimal
    least = min(objective.values())
    tied = [d for d in feasible
            if objective[id(d)] <= least + TIE_TOL * max(abs(least), 1e-300)]
    return min(tied, key=lambda d: (d.energy_j or {}).get("total", 0.0))


def _solve_pair(scenario: Scenario, profile: ModelProfile, strategy: str,
                options: StrategyOptions, rules: tuple[str, str]) -> Decision:
    problem = build_problem(scenario, profile, rules=rules)
    if strategy == "slsqp":
        return _solve_slsqp(problem, options, time.perf_counter())
    if strategy == "alternating":
        return alternating_decision(problem, options.n_starts, options.seed,
                                    time.perf_counter())
    spec = STRATEGIES[strategy]
    if spec.splits is not None:
        problem = build_problem(scenario, problem.profile,
                                split_restriction=spec.splits(problem, options), rules=rules)
    solution = spec.ratios(problem, spec.policy, options)

    def ratio_solver(relaxed: SplitProblem) -> RatioSolution:
        return spec.ratios(relaxed, spec.policy, options)

    return make_decision(problem, solution, spec.policy, strategy, ratio_solver)


def solve_per_split(scenario: Scenario, strategy: str = "joint", *,
                    profile: ModelProfile | None = None,
                    options: StrategyOptions | None = None) -> RatioSolution:
    """Ratios and objective of every split (no operating point), for tables and plots."""
    options = options or StrategyOptions()
    problem = build_problem(scenario, profile)
    spec = STRATEGIES[strategy]
    return spec.ratios(problem, spec.policy, options)


def _solve_slsqp(problem: SplitProblem, options: StrategyOptions, started: float) -> Decision:
    rng = np.random.default_rng(options.seed)
    best: tuple[float, int, np.ndarray] | None = None
    for split in (int(i) for i in np.flatnonzero(problem.allowed)):
        found = slsqp_split(problem, split, options.n_starts, rng)
        if found is not None and (best is None or found[0] < best[0]):
            best = (found[0], split, found[1])
    elapsed = time.perf_counter() - started
    if best is None:
        return Decision(status="infeasible", strategy="slsqp", solve_time_s=elapsed,
                        reasons=["SLSQP found no feasible point from "
                                 f"{options.n_starts} starts per split"])
    _, split_best, x = best
    rho_d, rho_s, power, freq_d, freq_s = (float(v) for v in x)
    gain = float(np.ravel(problem.gain)[0])
    costs = decision_costs(problem, split_best, rho_d, rho_s, power, freq_d, freq_s, gain)
    usage = limit_usage(problem, split_best, rho_d, rho_s, power, freq_d, freq_s, costs)
    return optimal_decision(problem, "slsqp", split_best, (rho_d, rho_s, power, freq_d, freq_s),
                            costs, [k for k, u in usage.items() if u >= 1 - ACTIVE_TOL],
                            elapsed)
