"""The discrete choices `solve` enumerates exactly: the (device rule, server rule) pairs
(docs/theory.md §5.4) and the activation widths of the uplink (§6.3); for each, the problem the
exact per-split solver runs on."""

from __future__ import annotations

import itertools

import numpy as np

from laimco.config import Scenario
from laimco.optimize.problem import (
    SplitProblem,
    activation_bit_choices,
    allowed_rules,
    build_problem,
    with_activation_bits,
)
from laimco.profile import ModelProfile


def widths(scenario: Scenario, profile: ModelProfile) -> list[int]:
    """The activation widths to solve for, widest first (the order of preference)."""
    return sorted(activation_bit_choices(scenario, profile), reverse=True)


def problem_variants(scenario: Scenario, profile: ModelProfile, ties_ratios: bool,
                     gain: np.ndarray | None = None) -> list[SplitProblem]:
    """One problem per discrete choice a strategy is solved for: every (device rule, server
    rule) pair and every activation width, in the order of preference (rule pairs in order,
    then 32 bits first): the choices `solve` enumerates exactly (docs/theory.md §5.4, §6.3)."""
    problems = []
    for pair in rule_pairs(scenario, profile, ties_ratios):
        base = build_problem(scenario, profile, gain=gain, rules=pair)
        problems += [with_activation_bits(base, bits) for bits in widths(scenario, profile)]
    return problems


def least_upload(problems: list[SplitProblem]) -> list[SplitProblem]:
    """Per rule pair, the width that sends the fewest bits at every split when one does: the
    limits do not depend on the width otherwise, so it is feasible wherever any width is and
    the reasons for infeasibility are the same (docs/theory.md §6.3)."""
    kept = []
    for pair in dict.fromkeys(p.rules for p in problems):
        same = [p for p in problems if p.rules == pair]
        least = [p for p in same if all(np.all(p.upload_bits <= q.upload_bits) for q in same)]
        kept += least[:1] or same
    return kept


def rule_pairs(scenario: Scenario, profile: ModelProfile,
               ties_ratios: bool) -> list[tuple[str, str]]:
    """The (device rule, server rule) pairs a strategy is solved for (docs/theory.md §5.4);
    `ties_ratios`: the strategy imposes one ratio on both sides."""
    rules = allowed_rules(scenario, profile)
    if not ties_ratios and scenario.task.ratios == "separate":
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
