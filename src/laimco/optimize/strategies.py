"""Every decision strategy by name: the exact joint design and the benchmarks it is judged
against (docs/theory.md §4.6, §4.8). Each is a `Strategy` whose `solve` finds its best
candidate for one rule pair; `solve(scenario, name)` runs it over the rule pairs and returns
the checked `Decision` (optimize/decision.py)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from laimco.config import Scenario
from laimco.optimize.alternating import alternating_ratios, alternating_split
from laimco.optimize.choices import least_upload, problem_variants, rule_pairs, widths
from laimco.optimize.decision import (
    Candidate,
    Decision,
    Reason,
    decide,
    infeasible,
    tie_break,
    tied_mask,
)
from laimco.optimize.device_capacity import DevicePolicy
from laimco.optimize.diagnose import infeasibility_reasons
from laimco.optimize.evaluate import decision_costs
from laimco.optimize.operating_point import operating_point
from laimco.optimize.problem import (
    SplitProblem,
    build_problem,
    stack_widths,
    with_activation_bits,
)
from laimco.optimize.ratios import RatioSolution, fixed_ratios, separate_ratios, tied_ratios
from laimco.optimize.slsqp import slsqp_ratios, slsqp_split
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
    # say which limits make an infeasible problem infeasible (relaxed re-solves); `solve` asks
    # only when no rule pair is feasible
    explain_infeasible: bool = True


def server_frequency_hz(problem: SplitProblem, split: int, rho_server: float) -> float:
    """f_s: the server's whole share when it has work (its energy is not the device's, §4.1),
    0 when the server runs nothing."""
    return problem.server.cpu_freq_max_hz if problem.server_time_s(rho_server)[split] > 0 else 0.0


def device_energy_j(problem: SplitProblem, found: Candidate, gain: float) -> float:
    """The device energy of a candidate: the tie-break's second key."""
    return decision_costs(problem, found.split, found.rho_device, found.rho_server,
                          found.power_w, found.freq_device_hz, found.freq_server_hz,
                          gain).energy_total_j


def least_candidate(problem: SplitProblem, found: Sequence[tuple[float, Candidate]],
                    gain: float) -> Candidate:
    """`tie_break` over (objective, candidate) pairs in split order; device energies are
    computed only when objectives tie."""
    if len(found) == 1:
        return found[0][1]
    objective = np.array([value for value, _ in found])
    tied = tied_mask(objective)
    if tied.sum() <= 1:
        return found[int(np.argmin(objective))][1]
    return tie_break([(value, device_energy_j(problem, c, gain), c)
                      for (value, c), t in zip(found, tied, strict=True) if t])


class Strategy(ABC):
    """One way to decide. `solve` finds the strategy's best candidate for one problem (one
    rule pair, the design gain) or the reasons there is none; `ratios` gives the ratios and
    objective of every split at every gain of a problem (no operating point), the batch over
    channel realizations that fading sweeps use."""

    name: str
    description: str
    reads: frozenset[str] = frozenset()  # the StrategyOptions fields it reads among ratio/split
    generic: bool = False  # a generic-solver reference: slow, from several starts
    ties_ratios: bool = False  # both sides at one imposed ratio: every rule pair is solved
    policy: DevicePolicy = "free"  # how power and device frequency are set (§4.2)

    @abstractmethod
    def solve(self, problem: SplitProblem, options: StrategyOptions) -> Candidate | list[Reason]:
        ...

    @abstractmethod
    def ratios(self, problem: SplitProblem, options: StrategyOptions) -> RatioSolution:
        ...

    def solve_widths(self, problem: SplitProblem, widths: list[int], options: StrategyOptions
                     ) -> list[tuple[SplitProblem, Candidate | list[Reason]]]:
        """`solve` at every activation width of a problem (one rule pair): the problem of
        each width with what the strategy found there."""
        variants = [with_activation_bits(problem, bits) for bits in widths]
        return [(v, self.solve(v, options)) for v in variants]


RatioRule = Callable[[SplitProblem, DevicePolicy, StrategyOptions], RatioSolution]
SplitRule = Callable[[SplitProblem, StrategyOptions], int]


@dataclass(frozen=True)
class ExactStrategy(Strategy):
    """The exact per-split solver (docs/theory.md §4.1–4.5) under a ratio rule, a device
    policy and optionally one split; the split is chosen by `tie_break`."""

    name: str
    description: str
    ratio_rule: RatioRule
    policy: DevicePolicy = "free"
    only_split: SplitRule | None = None
    reads: frozenset[str] = field(default_factory=frozenset)
    ties_ratios: bool = False
    generic: bool = False

    def restricted(self, problem: SplitProblem, options: StrategyOptions) -> SplitProblem:
        if self.only_split is None:
            return problem
        keep = np.arange(problem.n_splits) == self.only_split(problem, options)
        return build_problem(problem.scenario, problem.profile, gain=problem.gain,
                             split_restriction=keep, rules=problem.rules,
                             activation_bits=problem.activation_bits)

    def ratios(self, problem: SplitProblem, options: StrategyOptions) -> RatioSolution:
        return self.ratio_rule(self.restricted(problem, options), self.policy, options)

    def solve(self, problem: SplitProblem, options: StrategyOptions) -> Candidate | list[Reason]:
        problem = self.restricted(problem, options)
        solution = self.ratio_rule(problem, self.policy, options)
        return self._best_split(problem, solution, options)

    def solve_widths(self, problem: SplitProblem, widths: list[int], options: StrategyOptions
                     ) -> list[tuple[SplitProblem, Candidate | list[Reason]]]:
        """Every width in one vectorized ratio solve (`stack_widths`), then each width's best
        split as `solve` chooses it."""
        if len(widths) == 1:
            return super().solve_widths(problem, widths, options)
        problem = self.restricted(problem, options)
        variants = [with_activation_bits(problem, bits) for bits in widths]
        solution = self.ratio_rule(stack_widths(variants), self.policy, options)
        shape = (len(widths), problem.n_splits)
        found = []
        for row, variant in enumerate(variants):
            row_solution = RatioSolution(*(np.asarray(a).reshape(shape)[row] for a in (
                solution.feasible, solution.rho_device, solution.rho_server,
                solution.objective)))
            found.append((variant, self._best_split(variant, row_solution, options)))
        return found

    def _best_split(self, problem: SplitProblem, solution: RatioSolution,
                    options: StrategyOptions) -> Candidate | list[Reason]:
        objective = np.ravel(solution.objective)
        if not np.isfinite(objective).any():
            if not options.explain_infeasible:
                return [Reason("several", "infeasible (not diagnosed)")]
            return infeasibility_reasons(
                problem, lambda relaxed: self.ratio_rule(relaxed, self.policy, options))
        gain = float(np.ravel(problem.gain)[0])
        rho_d, rho_s = np.ravel(solution.rho_device), np.ravel(solution.rho_server)
        tied = np.flatnonzero(tied_mask(objective))
        found = [(float(objective[s]), self._candidate(problem, int(s), float(rho_d[s]),
                                                       float(rho_s[s]), gain)) for s in tied]
        return least_candidate(problem, found, gain)

    def _candidate(self, problem: SplitProblem, split: int, rho_d: float, rho_s: float,
                   gain: float) -> Candidate:
        power, freq_d = operating_point(problem, split, rho_d, rho_s, gain, self.policy)
        return Candidate(split, rho_d, rho_s, power, freq_d,
                         server_frequency_hz(problem, split, rho_s))


def _per_split(problem: SplitProblem, search: Callable[[int], tuple[float, Candidate] | None]
               ) -> list[tuple[float, Candidate]]:
    """(objective, candidate) of a generic search at every allowed split where it finds one."""
    found = (search(int(s)) for s in np.flatnonzero(problem.allowed))
    return [f for f in found if f is not None]


@dataclass(frozen=True)
class SlsqpStrategy(Strategy):
    """scipy's SLSQP multi-start on (ρ_d, ρ_s, p, f_d, f_s) at every split (slsqp.py)."""

    name: str = "slsqp"
    description: str = ("scipy SLSQP multi-start on (ρ_d, ρ_s, p, f_d, f_s) per split "
                        "(generic-solver reference)")
    generic: bool = True

    def solve(self, problem: SplitProblem, options: StrategyOptions) -> Candidate | list[Reason]:
        rng = np.random.default_rng(options.seed)

        def search(split: int) -> tuple[float, Candidate] | None:
            best = slsqp_split(problem, split, options.n_starts, rng)
            return None if best is None else (best[0], Candidate(split, *(float(v)
                                                                          for v in best[1])))

        found = _per_split(problem, search)
        if not found:
            return [Reason("search", "SLSQP found no feasible point from "
                                     f"{options.n_starts} starts per split")]
        return least_candidate(problem, found, float(np.ravel(problem.gain)[0]))

    def ratios(self, problem: SplitProblem, options: StrategyOptions) -> RatioSolution:
        return slsqp_ratios(problem, options.n_starts, options.seed)


@dataclass(frozen=True)
class AlternatingStrategy(Strategy):
    """Alternating convex steps per split, multi-start (alternating.py, docs/theory.md §4.8)."""

    name: str = "alternating"
    description: str = ("alternating convex steps per split: ratios for fixed (p, f_d), then "
                        "(p, f_d) for fixed ratios, multi-start (the paper's kind of method)")
    generic: bool = True

    def solve(self, problem: SplitProblem, options: StrategyOptions) -> Candidate | list[Reason]:
        gain = float(np.ravel(problem.gain)[0])
        rng = np.random.default_rng(options.seed)

        def search(split: int) -> tuple[float, Candidate] | None:
            p = alternating_split(problem, split, gain, options.n_starts, rng)
            return None if p is None else (p.objective, Candidate(
                split, p.rho_device, p.rho_server, p.power_w, p.freq_device_hz,
                server_frequency_hz(problem, split, p.rho_server)))

        found = _per_split(problem, search)
        if not found:
            if not options.explain_infeasible:
                return [Reason("several", "infeasible (not diagnosed)")]
            return infeasibility_reasons(
                problem, lambda relaxed: alternating_ratios(relaxed, "free", 1, options.seed))
        return least_candidate(problem, found, gain)

    def ratios(self, problem: SplitProblem, options: StrategyOptions) -> RatioSolution:
        return alternating_ratios(problem, "free", options.n_starts, options.seed)


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


def _given_split(problem: SplitProblem, options: StrategyOptions) -> int:
    split = problem.profile.n_units // 2 if options.split is None else options.split
    if not 0 <= split <= problem.profile.n_units:
        raise StrategyError(f"fixed-split needs --split in 0..{problem.profile.n_units} "
                            f"for profile {problem.profile.name!r}, got {split}")
    return split


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    ExactStrategy("joint", "exact joint design: best split, ratios, power and frequency "
                  "(default)", _scenario_ratios),
    ExactStrategy("tied", "joint design with one pruning ratio for both sides (the paper's "
                  "design)", _tied, ties_ratios=True),
    ExactStrategy("on-device", "whole model on the device (split = L), ratios and resources "
                  "optimized", _scenario_ratios, only_split=lambda p, o: p.profile.n_units),
    ExactStrategy("on-server", "device uploads the raw input (split = 0), server model "
                  "optimized", _scenario_ratios, only_split=lambda p, o: 0),
    ExactStrategy("no-pruning", "no pruning on either side; best split and resources",
                  _no_pruning),
    ExactStrategy("fixed-ratio", "the same given ratio (--ratio) on both sides; best split",
                  _fixed_ratio, reads=frozenset({"ratio"}), ties_ratios=True),
    ExactStrategy("max-power", "transmit at maximum power; everything else optimized",
                  _scenario_ratios, policy="max-power"),
    ExactStrategy("max-frequency", "device CPU at maximum frequency; everything else "
                  "optimized", _scenario_ratios, policy="max-frequency"),
    ExactStrategy("fixed-split", "a given split (--split, default L/2); everything else "
                  "optimized", _scenario_ratios, only_split=_given_split,
                  reads=frozenset({"split"})),
    SlsqpStrategy(),
    AlternatingStrategy(),
)}


def strategy_named(name: str) -> Strategy:
    """The registered strategy of a name; StrategyError naming the choices otherwise."""
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def solve(scenario: Scenario, strategy: str = "joint", *, profile: ModelProfile | None = None,
          options: StrategyOptions | None = None) -> Decision:
    """Run one strategy on a scenario at its design channel gain. In the calibrated mode the
    pruning rule of each side is a decision too: every (device rule, server rule) pair is
    solved and the best kept by the one tie-break rule (decision.tie_break)."""
    spec = strategy_named(strategy)
    options = options or StrategyOptions()
    started = time.perf_counter()
    profile = profile or load_profile(scenario.model.profile)
    quick = replace(options, explain_infeasible=False)
    decisions = [decide(problem, strategy, found)
                 for pair in rule_pairs(scenario, profile, spec.ties_ratios)
                 for problem, found in spec.solve_widths(
                     build_problem(scenario, profile, rules=pair), widths(scenario, profile),
                     quick)]
    if all(d.point is None for d in decisions):  # say why, per choice (relaxed re-solves)
        variants = problem_variants(scenario, profile, spec.ties_ratios)
        decisions = [decide(problem, strategy, spec.solve(problem, options))
                     for problem in least_upload(variants)]
    return replace(_best(strategy, decisions), solve_time_s=time.perf_counter() - started)


def _best(strategy: str, decisions: list[Decision]) -> Decision:
    """The best decision over rule pairs by `tie_break`; all reasons when none is feasible."""
    feasible = [(d.point.objective, d.point.costs.energy_total_j, d)
                for d in decisions if d.point is not None]
    if not feasible:
        reasons = [r for d in decisions for r in d.reasons]
        # a limit whose relaxation alone helps under some rule pair is the answer; "jointly too
        # tight" (from pairs where no single relaxation helps) would contradict it
        single = [r for r in reasons if r.limit != "several"]
        return infeasible(strategy, single or reasons)
    return tie_break(feasible)
