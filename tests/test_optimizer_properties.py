"""Properties of `laimco.optimize.solve` on random scenarios (hypothesis): budgets act
monotonically, the joint design dominates every benchmark, and every returned decision is
finite and meets every limit of docs/theory.md §2 (checked with the independent reference model of
tests/scenario_factory.py, 1e-9 relative)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scenario_factory import Case, Reference, cases

from laimco.optimize import Decision, OperatingPoint, StrategyOptions, solve

REL = 1e-9
BENCHMARKS = ("tied", "on-device", "on-server", "no-pruning", "fixed-ratio", "max-power",
              "max-frequency", "fixed-split")

def _settings(examples: int) -> settings:
    # derandomized: the same examples on every run, so CI does not flicker
    return settings(deadline=None, max_examples=examples, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _no_worse(better: Decision, worse: Decision, ref: Reference) -> bool:
    """better.objective ≤ worse.objective up to 1e-9 relative (and a 1e-12 absolute floor
    against the objective scale, for optima at zero)."""
    assert better.point is not None and worse.point is not None
    floor = 1e-12 * max(ref.objective_scale(s) for s in range(ref.L + 1))
    return better.point.objective <= worse.point.objective * (1 + REL) + floor


def _numbers(point: OperatingPoint) -> list[float]:
    c = point.costs
    return [float(v) for v in (
        point.split, point.rho_device, point.rho_server, point.power_w, point.freq_device_hz,
        point.freq_server_hz, c.memory_bytes, point.objective, c.latency_device_s,
        c.latency_uplink_s, c.latency_server_s, c.latency_downlink_s, c.latency_total_s,
        c.energy_compute_j, c.energy_uplink_j, c.energy_total_j)]


def check_decision(decision: Decision, case: Case, options: StrategyOptions | None = None) -> None:
    """Status-specific contract of a Decision, with every limit re-checked from scratch."""
    ref = Reference(case.scenario, case.profile)
    point = decision.point
    if point is None:
        assert decision.status == "infeasible", decision
        assert decision.reasons and all(r.message.strip() for r in decision.reasons), decision
        return
    assert decision.status == "optimal", decision
    numbers = _numbers(point)
    assert all(math.isfinite(v) for v in numbers), (decision, case.describe())
    s = point.split
    args = (s, point.rho_device, point.rho_server, point.power_w, point.freq_device_hz,
            point.freq_server_hz, ref.design_gain())
    broken = ref.violated_limits(*args, rel=REL)
    assert not broken, f"{decision.strategy}: {decision} breaks {broken}\n{case.describe()}"
    costs = ref.costs(*args)
    scale = 1e-12 * ref.objective_scale(s)
    assert abs(costs.objective - point.objective) <= REL * costs.objective + scale, (
        decision, costs)
    assert point.costs.latency_total_s == pytest.approx(costs.latency, rel=REL)
    assert point.costs.energy_total_j == pytest.approx(costs.energy, rel=REL, abs=1e-18)
    device_weights, server_weights = ref.n_device[s] > 0, ref.n_server[s] > 0
    name = decision.strategy
    if name == "on-device":
        assert s == ref.L
    if name == "on-server":
        assert s == 0
    if name == "fixed-split" and options is not None and options.split is not None:
        assert s == options.split
    if name == "no-pruning":
        assert point.rho_device == 0 and point.rho_server == 0
    if name == "fixed-ratio" and options is not None:
        if device_weights:
            assert point.rho_device == pytest.approx(options.ratio, rel=1e-12)
        if server_weights:
            assert point.rho_server == pytest.approx(options.ratio, rel=1e-12)
    if (name == "tied" or ref.tied) and device_weights and server_weights:
        assert point.rho_device == pytest.approx(point.rho_server, rel=1e-12)
    if name == "max-power" and ref.upload_bits[s] > 0:
        assert point.power_w == pytest.approx(ref.P, rel=REL)
    if name == "max-frequency" and float(ref.device_cycles(s, args[1])) > 0:
        assert point.freq_device_hz == pytest.approx(ref.F, rel=REL)


@_settings(60)
@given(case=cases(), factor=st.floats(1.0, 4.0))
def test_looser_latency_budget_never_worsens_the_joint_objective(case: Case,
                                                                 factor: float) -> None:
    ref = Reference(case.scenario, case.profile)
    base = solve(case.scenario)
    event(f"base {base.status}")
    looser_scenario = case.scenario.replace(
        task={"latency_budget_s": case.scenario.task.latency_budget_s * factor})
    looser = solve(looser_scenario)
    check_decision(base, case)
    check_decision(looser, Case(looser_scenario, case.profile, case.label + " (looser T)"))
    if base.status == "optimal":
        assert looser.status == "optimal", (factor, case.describe())
        assert _no_worse(looser, base, ref), (factor, base, looser, case.describe())


@_settings(60)
@given(case=cases(), factor=st.floats(1.0, 10.0))
def test_looser_energy_budget_never_worsens_the_joint_objective(case: Case,
                                                                factor: float) -> None:
    ref = Reference(case.scenario, case.profile)
    base = solve(case.scenario)
    looser_scenario = case.scenario.replace(
        device={"energy_budget_j": case.scenario.device.energy_budget_j * factor})
    looser = solve(looser_scenario)
    check_decision(looser, Case(looser_scenario, case.profile, case.label + " (looser E)"))
    if base.status == "optimal":
        assert looser.status == "optimal", (factor, case.describe())
        assert _no_worse(looser, base, ref), (factor, base, looser, case.describe())


@_settings(50)
@given(case=cases(), ratio=st.floats(0.0, 1.0), split=st.integers(0, 10))
def test_joint_is_never_worse_than_any_benchmark_and_feasible_wherever_one_is(
        case: Case, ratio: float, split: int) -> None:
    ref = Reference(case.scenario, case.profile)
    options = StrategyOptions(ratio=ratio * case.scenario.task.rho_max, split=split % (ref.L + 1))
    joint = solve(case.scenario)
    check_decision(joint, case)
    event(f"joint {joint.status}")
    for name in BENCHMARKS:
        other = solve(case.scenario, name, options=options)
        check_decision(other, case, options)
        if other.status != "optimal":
            continue
        assert joint.status == "optimal", (f"{name} is feasible but joint is not", other,
                                           joint.reasons, case.describe())
        assert _no_worse(joint, other, ref), (name, joint, other, case.describe())


@_settings(40)
@given(case=cases())
def test_returned_decisions_are_finite_and_meet_every_limit(case: Case) -> None:
    """The joint design and the policies it nests (tied, max-power, max-frequency) on the
    scenario and on a copy with a ten times tighter energy budget."""
    tight = case.scenario.replace(
        device={"energy_budget_j": case.scenario.device.energy_budget_j / 10})
    for scenario in (case.scenario, tight):
        variant = Case(scenario, case.profile, case.label)
        for name in ("joint", "tied", "max-power", "max-frequency"):
            check_decision(solve(scenario, name), variant)
