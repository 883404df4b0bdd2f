"""The accepted scenario ranges (README "Scenario files", src/laimco/config.py): every bound is
enforced, and the optimizer behaves over the whole box they span.

Scenarios are drawn at the corners of the box (each numeric key at its lower bound, its upper
bound or the default phone scenario's value, with every law, ratio mode, fading model, privacy
limit and memory setting), and checked for (a) no exception from any strategy, (b) the
by-construction consistency check: a strategy that restricts the joint design (max-power,
max-frequency, fixed-split, tied, on-device, on-server, no-pruning, fixed-ratio) can never beat
joint — so joint's objective is ≤ each of theirs within 1e-9 relative, and joint is feasible
whenever any of them is — and (c) agreement with the independent boundary search of
tests/test_optimizer_bruteforce.py on corner cases.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scenario_factory import Reference
from test_optimizer_bruteforce import boundary_search

from laimco.config import ScenarioError, scenario_from_dict
from laimco.optimize import solve
from laimco.optimize.strategies import StrategyOptions
from laimco.profile import load_profile

# (section, key): (lower, upper) as README "Scenario files" states them
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("model", "bytes_per_weight"): (0.125, 16.0),
    ("device", "cpu_freq_max_hz"): (1e3, 1e12),
    ("device", "flops_per_cycle"): (1e-3, 1e7),
    ("device", "kappa"): (1e-35, 1e-20),
    ("device", "tx_power_max_w"): (1e-6, 1e3),
    ("device", "energy_budget_j"): (1e-9, 1e6),
    ("device", "memory_bytes"): (1.0, 1e18),
    ("server", "cpu_freq_max_hz"): (1e3, 1e12),
    ("server", "flops_per_cycle"): (1e-3, 1e7),
    ("channel", "bandwidth_hz"): (1.0, 1e12),
    ("channel", "noise_psd_w_per_hz"): (1e-24, 1e-12),
    ("channel", "path_gain"): (1e-20, 1.0),
    ("task", "latency_budget_s"): (1e-6, 1e4),
    ("distortion", "k_device"): (0.0, 1e6),
    ("distortion", "k_server"): (0.0, 1e6),
}
BASE: dict[str, dict[str, Any]] = {
    "model": {"profile": "minilm-l6", "bytes_per_weight": 4.0},
    "device": {"cpu_freq_max_hz": 2e9, "flops_per_cycle": 8.0, "kappa": 1e-28,
               "tx_power_max_w": 0.2, "energy_budget_j": 0.02, "memory_bytes": 2e9},
    "server": {"cpu_freq_max_hz": 2e8, "flops_per_cycle": 64.0},
    "channel": {"bandwidth_hz": 2e6, "noise_psd_w_per_hz": 3.98e-21, "path_gain": 1e-7},
    "task": {"latency_budget_s": 0.2, "min_split": 1, "rho_max": 0.9},
    "distortion": {"mode": "paper", "law": "laplace", "k_device": 1.0, "k_server": 1.0},
}
RESTRICTIONS = ("max-power", "max-frequency", "fixed-split", "tied", "on-device", "on-server",
                "no-pruning", "fixed-ratio")
CONSISTENCY_REL = 1e-9
N_CORNER_CHUNKS, CORNERS_PER_CHUNK = 6, 40


def _base() -> dict[str, dict[str, Any]]:
    return {section: dict(values) for section, values in BASE.items()}


def _with(section: str, key: str, value: Any) -> dict[str, dict[str, Any]]:
    data = _base()
    data[section][key] = value
    return data


BOUNDED = {**RANGES, ("channel", "outage_prob"): (1e-6, 0.99),
           ("task", "downlink_s"): (0.0, 1e4)}


@pytest.mark.parametrize(("section", "key"), list(BOUNDED))
def test_every_bound_is_accepted_and_just_outside_is_refused(section: str, key: str) -> None:
    lo, hi = BOUNDED[(section, key)]

    def scenario(value: float) -> Any:
        data = _with(section, key, value)
        if key == "outage_prob":
            data["channel"]["fading"] = "rayleigh"
        if key == "downlink_s":  # the downlink must leave time: the budget at its top
            data["task"]["latency_budget_s"] = 1e4
            value = min(value, 1e4 * (1 - 1e-12)) if value <= 1e4 else value
            data["task"]["downlink_s"] = value
        return scenario_from_dict(data)

    for inside in (lo, hi):
        scenario(inside)
    for outside in (lo * (1 - 1e-9) if lo > 0 else -1e-300, hi * (1 + 1e-9)):
        with pytest.raises(ScenarioError, match=rf"{section}\.{key}"):
            scenario(outside)


def _corner(rng: np.random.Generator, n_units: int) -> dict[str, dict[str, Any]]:
    data = _base()
    for (section, key), (lo, hi) in RANGES.items():
        draw = rng.random()
        if draw < 1 / 3:
            data[section][key] = lo
        elif draw < 2 / 3:
            data[section][key] = hi
    if rng.random() < 0.3:
        del data["device"]["memory_bytes"]
    data["distortion"]["law"] = str(rng.choice(["laplace", "gaussian", "gennorm", "empirical"]))
    data["task"]["ratios"] = str(rng.choice(["separate", "tied"]))
    data["task"]["min_split"] = int(rng.choice([0, 1, n_units]))
    data["task"]["rho_max"] = float(rng.choice([0.0, 0.5, 0.999999]))
    if rng.random() < 0.3:
        data["task"]["downlink_s"] = 0.5 * data["task"]["latency_budget_s"]
    if rng.random() < 0.3:
        data["channel"]["fading"] = "rayleigh"
        data["channel"]["outage_prob"] = float(rng.choice([1e-6, 0.99]))
    return data


def _objective(decision: Any) -> float:
    return decision.point.objective if decision.point is not None else math.inf


@pytest.mark.parametrize("chunk", range(N_CORNER_CHUNKS))
def test_corners_of_the_accepted_ranges_solve_and_joint_beats_every_restriction(
        chunk: int) -> None:
    """(a) and (b) of the module docstring on 40 corner scenarios per chunk."""
    n_units = load_profile("minilm-l6").n_units
    rng = np.random.default_rng(5_000 + chunk)
    options = StrategyOptions(ratio=0.5, split=n_units // 2)
    feasible = 0
    for index in range(CORNERS_PER_CHUNK):
        data = _corner(rng, n_units)
        scenario = scenario_from_dict(data)
        where = f"chunk {chunk} corner {index}: {data}"
        joint = _objective(solve(scenario, "joint"))
        feasible += math.isfinite(joint)
        for name in RESTRICTIONS:
            if name == "fixed-ratio" and scenario.task.rho_max < options.ratio:
                continue
            other = _objective(solve(scenario, name, options=options))
            # by-construction consistency check: `name` restricts joint's feasible set (with
            # task.ratios = "tied", joint is tied itself)
            assert joint <= other * (1 + CONSISTENCY_REL) + 1e-300, (name, joint, other, where)
    assert feasible >= 5  # the box's corners are not all infeasible: the check has content


CORNER_CASES = [
    # the top of the channel ranges, one at a time and together (path_gain = 1e300 and
    # bandwidth_hz = 1e30, beyond them, used to give wrong decisions)
    {"channel": {"path_gain": 1.0}},
    {"channel": {"bandwidth_hz": 1e12}},
    {"channel": {"path_gain": 1.0, "bandwidth_hz": 1e12, "noise_psd_w_per_hz": 1e-24}},
    # the bottom of the gain range with the most power: the whole model stays on the device
    {"device": {"tx_power_max_w": 1e3}, "channel": {"path_gain": 1e-20}},
    # the least energy budget with the least switched capacitance
    {"device": {"kappa": 1e-35, "energy_budget_j": 1e-9}},
    # a kHz device with a huge per-cycle width, a 1e-3 FLOP/cycle server, 16-byte weights
    {"model": {"bytes_per_weight": 16.0},
     "device": {"cpu_freq_max_hz": 1e3, "flops_per_cycle": 1e7, "kappa": 1e-35,
                "tx_power_max_w": 1e-6},
     "server": {"flops_per_cycle": 1e-3},
     "channel": {"noise_psd_w_per_hz": 1e-12, "path_gain": 1.0},
     "task": {"min_split": 0, "rho_max": 0.999999}, "distortion": {"k_server": 0.0}},
    # infeasible: a 1 Hz band and too little memory for the device part
    {"device": {"memory_bytes": 1e7}, "channel": {"bandwidth_hz": 1.0},
     "task": {"latency_budget_s": 1e4}},
]


@pytest.mark.parametrize("index", range(len(CORNER_CASES)))
def test_corner_cases_agree_with_the_boundary_search(index: int) -> None:
    """(c): the best split's objective equals the independent boundary search's best within
    1e-6 relative (the search's own resolution, as in test_optimizer_bruteforce), and both
    agree on feasibility."""
    data = _base()
    for section, values in CORNER_CASES[index].items():
        data[section].update(values)
    scenario = scenario_from_dict(data)
    profile = load_profile(scenario.model.profile)
    ref = Reference(scenario, profile)
    decision = solve(scenario, "joint")
    [per_gain] = boundary_search([(ref, np.array([ref.design_gain()]))])
    best = min(found.objective for found in per_gain[0])
    if not decision.success:
        assert not math.isfinite(best), (best, data)
        return
    point = decision.point
    assert point is not None
    assert best >= point.objective * (1 - 1e-6), (best, point.objective, data)
    assert best <= point.objective * (1 + 1e-6) + 1e-12 * max(
        ref.objective_scale(point.split), 1e-300), (best, point.objective, data)


def _sampled_corner_cases(count: int) -> list[dict[str, dict[str, Any]]]:
    """The first `count` corner scenarios (seeded) that are feasible with a positive objective:
    the cases where a wrong optimum would show."""
    n_units = load_profile("minilm-l6").n_units
    rng = np.random.default_rng(77)
    found: list[dict[str, dict[str, Any]]] = []
    while len(found) < count:
        data = _corner(rng, n_units)
        decision = solve(scenario_from_dict(data), "joint")
        if decision.point is not None and decision.point.objective:
            found.append(data)
    return found


SAMPLED_CORNERS = _sampled_corner_cases(6)


@pytest.mark.parametrize("index", range(len(SAMPLED_CORNERS)))
def test_sampled_corners_agree_with_the_boundary_search(index: int) -> None:
    """(c) on corner scenarios drawn like those of (a)/(b): the same check as above."""
    data = SAMPLED_CORNERS[index]
    scenario = scenario_from_dict(data)
    ref = Reference(scenario, load_profile(scenario.model.profile))
    decision = solve(scenario, "joint")
    [per_gain] = boundary_search([(ref, np.array([ref.design_gain()]))])
    best = min(found.objective for found in per_gain[0])
    point = decision.point
    assert point is not None
    assert best >= point.objective * (1 - 1e-6), (best, point.objective, data)
    assert best <= point.objective * (1 + 1e-6) + 1e-12 * max(
        ref.objective_scale(point.split), 1e-300), (best, point.objective, data)
