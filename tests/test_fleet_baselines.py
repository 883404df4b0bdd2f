"""The fleet baselines (laimco.fleet.baselines, fixed_split_cvxpy) against independent
computations: the single-device optimizer at each device's share, Shannon's formula written out,
the brute force over share grids (tests/fleet_reference.py) and CVXPY's conic model of one
device. Paper-mode scenarios (one solve ≈ 1–2 ms)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from fleet_reference import brute_force_shares, paper_fleet, scenario, twenty_devices

from laimco.fleet import baselines
from laimco.fleet.fleet import DeviceClass, Fleet, SharedResources
from laimco.optimize import solve
from laimco.optimize.evaluate import decision_costs, limit_usage, violations

SHARE_SUM_REL = 1e-12


def mixed_fleet(objective: str = "sum") -> Fleet:
    """Three devices: two phones (good and poor channel) and an IoT node, unequal weights."""
    return paper_fleet([("phone", scenario("paper-minilm-phone")),
                        ("iot", scenario("paper-minilm-iot"))], [0, 1, 0],
                       [1e-7, 1e-8, 1e-9], [1.0, 2.0, 1.0], objective=objective)


def pair_fleet(objective: str = "sum") -> Fleet:
    """Two phones, channel gains 100× apart: both offload at the brute-force optimum."""
    return paper_fleet([("phone", scenario("paper-minilm-phone"))], [0, 0], [1e-7, 1e-9],
                       objective=objective)


@pytest.mark.parametrize("method", ["equal_shares", "proportional", "alone"])
def test_baseline_shares_sum_exactly_to_the_totals(method: str) -> None:
    fleet = mixed_fleet()
    solution = getattr(baselines, method)(fleet)
    res = fleet.resources
    assert solution.dual_bound is None
    assert solution.method == method.replace("_", "-")
    assert abs(solution.bandwidth_hz.sum() - res.bandwidth_hz) <= SHARE_SUM_REL * res.bandwidth_hz
    assert (abs(solution.server_cycles_per_s.sum() - res.server_cycles_per_s)
            <= SHARE_SUM_REL * res.server_cycles_per_s)
    assert np.all(solution.bandwidth_hz >= 0) and np.all(solution.server_cycles_per_s >= 0)


@pytest.mark.parametrize("method", ["equal_shares", "proportional"])
def test_each_device_takes_the_single_device_optimum_at_its_share(method: str) -> None:
    """Every device's decision is what `solve` gives on its scenario at its share, and that
    decision re-costed from the system model at the share keeps every limit."""
    fleet = mixed_fleet()
    solution = getattr(baselines, method)(fleet)
    for u in range(fleet.n_devices):
        b, f = float(solution.bandwidth_hz[u]), float(solution.server_cycles_per_s[u])
        point = solution.decisions[u].point
        assert point is not None
        problem = baselines.problem_of_point(fleet.device_scenario(u, max(b, 1), max(f, 1e3)),
                                             point)
        if b >= 1 and f >= 1e3:
            alone = solve(fleet.device_scenario(u, b, f))
            assert alone.point is not None
            assert point.objective == pytest.approx(alone.point.objective, rel=1e-12, abs=1e-12)
        else:  # no usable share: the whole model on the device
            assert point.split == problem.profile.n_units
        costs = decision_costs(problem, point.split, point.rho_device, point.rho_server,
                               point.power_w, point.freq_device_hz, point.freq_server_hz)
        usage = limit_usage(problem, point.split, point.rho_device, point.rho_server,
                            point.power_w, point.freq_device_hz, point.freq_server_hz, costs)
        assert not violations(usage, point.rho_device, point.rho_server, point.power_w)
        assert solution.device_objective[u] == point.objective
    weighted = fleet.weight * solution.device_objective
    assert solution.objective == pytest.approx(weighted.sum(), rel=1e-12)


def test_proportional_shares_follow_demand_written_out() -> None:
    """Demand computed here from the equal-share decisions: upload bits and server cycles
    (server time × F/N); a device out of radio reach (gain 1e-16) runs everything itself at
    equal shares, so it demands nothing and gets nothing."""
    fleet = paper_fleet([("phone", scenario("paper-minilm-phone"))], [0, 0, 0],
                        [1e-7, 1e-8, 1e-16], bandwidth_hz=6e6, server_cycles_per_s=6e8)
    n, res = fleet.n_devices, fleet.resources
    bits, cycles = np.zeros(n), np.zeros(n)
    for u in range(n):
        point = solve(fleet.device_scenario(u, res.bandwidth_hz / n,
                                            res.server_cycles_per_s / n)).point
        assert point is not None
        bits[u] = point.uplink_bits
        cycles[u] = point.costs.latency_server_s * res.server_cycles_per_s / n
    assert bits[2] == 0 and cycles[2] == 0 and bits[0] > 0 and cycles[1] > 0
    solution = baselines.proportional(fleet)
    np.testing.assert_allclose(solution.bandwidth_hz, res.bandwidth_hz * bits / bits.sum(),
                               rtol=1e-12)
    np.testing.assert_allclose(solution.server_cycles_per_s,
                               res.server_cycles_per_s * cycles / cycles.sum(), rtol=1e-12)
    assert solution.bandwidth_hz[2] == 0 and solution.server_cycles_per_s[2] == 0
    last = solution.decisions[2].point
    assert last is not None and last.uplink_bits == 0  # on the device: split L
    assert last.costs.latency_server_s == 0


def test_alone_flags_the_device_whose_standalone_decision_breaks_its_latency() -> None:
    """Device 0's class is the phone (2 MHz, 2e8 cycles/s); device 1's class is the same phone
    with four times the band and the server. At equal shares (2 MHz, 2e8 each) device 0 keeps
    its standalone decision; device 1's, decided for 8 MHz, uploads too slowly over 2 MHz. Its
    latency is recomputed here with Shannon's formula and the server and device times."""
    phone = scenario("paper-minilm-phone")
    rich = phone.replace(channel={"bandwidth_hz": 8e6}, server={"cpu_freq_max_hz": 8e8})
    fleet = paper_fleet([("phone", phone), ("rich", rich)], [0, 1], [1e-7, 1e-7])
    solution = baselines.alone(fleet)
    own = solve(phone)
    first = solution.decisions[0].point
    assert first is not None and own.point is not None
    assert first.objective == pytest.approx(own.point.objective, rel=1e-12)
    assert first.costs.latency_total_s == pytest.approx(own.point.costs.latency_total_s,
                                                        rel=1e-9)
    broken = solution.decisions[1]
    assert broken.status == "infeasible" and solution.status == "partial"
    assert math.isinf(solution.device_objective[1])
    # the standalone decision, re-costed by hand at 2 MHz and 2e8 cycles/s
    standalone = solve(baselines.standalone_scenario(fleet, 1)).point
    assert standalone is not None
    b, f = 2e6, 2e8
    snr = standalone.power_w * 1e-7 / (phone.channel.noise_psd_w_per_hz * b)
    upload_s = standalone.uplink_bits / (b * math.log2(1 + snr))
    server_s = standalone.costs.latency_server_s * standalone.freq_server_hz / f
    latency = standalone.costs.latency_device_s + upload_s + server_s
    excess = 100 * (latency / phone.task.latency_budget_s - 1)
    assert excess > 1
    messages = [r.message for r in broken.reasons if r.limit == "latency"]
    assert len(messages) == 1 and "task.latency_budget_s" in messages[0]
    reported = float(messages[0].split(" by ")[1].split(" %")[0])
    assert reported == pytest.approx(excess, rel=1e-2)
    assert solution.objective == pytest.approx(first.objective, rel=1e-12)  # served ones


def test_slsqp_refuses_a_large_fleet() -> None:
    fleet = paper_fleet([("phone", scenario("paper-minilm-phone"))], [0] * 11, [1e-7] * 11)
    with pytest.raises(ValueError, match="N ≤ 10"):
        baselines.slsqp(fleet)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("hold", ["server-ratio", "server-time"])
@pytest.mark.parametrize("name", [
    "paper-minilm-phone",
    # calibrated: rule pair (structured, dense server) and a 6-bit activation held
    pytest.param("minilm-phone", marks=pytest.mark.slow)])
def test_cvxpy_fixed_split_reproduces_a_single_device_optimum(name: str, hold: str) -> None:
    """A fleet of one device owning its scenario's band and server, the choices held at
    laimco's single-device optimum: the conic model's best is that optimum (the continuous
    optimum is unique for fixed discrete choices), rel 1e-5."""
    from laimco.fleet.fixed_split_cvxpy import cvxpy_fixed_split

    own = scenario(name)
    b, f = own.channel.bandwidth_hz, own.server.cpu_freq_max_hz
    fleet = Fleet(name="one", resources=SharedResources(b, f, own.server.flops_per_cycle),
                  classes=(DeviceClass(name, own),), class_index=np.zeros(1, dtype=np.intp),
                  path_gain=np.array([own.channel.path_gain]), weight=np.ones(1), ids=("d0",))
    optimum = solve(fleet.device_scenario(0, b, f))
    assert optimum.point is not None and optimum.point.objective > 0
    fixed = baselines.solution_at_shares(fleet, "laimco", np.array([b]), np.array([f]),
                                         time.perf_counter())
    result = cvxpy_fixed_split(fixed, hold=hold)  # type: ignore[arg-type]
    assert result.decisions[0].success, result.decisions[0].reasons
    assert result.objective == pytest.approx(optimum.point.objective, rel=1e-5)
    assert result.objective >= optimum.point.objective * (1 - 1e-9)  # laimco is exact
    point = result.decisions[0].point
    assert point is not None
    assert (point.split, point.rule_device, point.rule_server, point.activation_bits) == (
        optimum.point.split, optimum.point.rule_device, optimum.point.rule_server,
        optimum.point.activation_bits)
    print(f"{name}, {hold}: cvxpy {result.objective:.9g}, laimco {optimum.point.objective:.9g}")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("hold", ["server-ratio", "server-time"])
@pytest.mark.parametrize("objective", ["sum", "max-min"])
def test_cvxpy_fixed_at_equal_shares_choices_matches_or_beats_equal_shares(
        objective: str, hold: str) -> None:
    """Sanity, not evidence: equal shares are a feasible point of the conic model fixed at
    their own choices, so the model's answer can only match or beat them (1e-6 relative: the
    cutting planes stop at 1e-10 of the objective scale, and the answer is re-costed)."""
    from laimco.fleet.fixed_split_cvxpy import cvxpy_fixed_split

    fleet = twenty_devices(objective)
    equal = baselines.equal_shares(fleet)
    assert equal.status == "optimal"
    result = cvxpy_fixed_split(equal, hold=hold)  # type: ignore[arg-type]
    assert result.status == "optimal"
    res = fleet.resources
    assert abs(result.bandwidth_hz.sum() - res.bandwidth_hz) <= SHARE_SUM_REL * res.bandwidth_hz
    assert (abs(result.server_cycles_per_s.sum() - res.server_cycles_per_s)
            <= SHARE_SUM_REL * res.server_cycles_per_s)
    assert result.objective <= equal.objective * (1 + 1e-6)
    print(f"{objective}, {hold}: equal {equal.objective:.6g}, cvxpy {result.objective:.6g}")


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["sum", "max-min"])
def test_equal_shares_on_identical_devices_is_no_better_than_the_brute_force(
        objective: str) -> None:
    """Sanity check: equal shares are one of the brute force's lattice points, so the brute
    force is at least as good. (Equality, the symmetric optimum, would need V convex, which
    the discrete split does not guarantee; the printed gap shows how far it is here.)"""
    fleet = paper_fleet([("phone", scenario("paper-minilm-phone"))], [0, 0], [1e-8, 1e-8],
                        objective=objective)
    equal = baselines.equal_shares(fleet)
    brute = brute_force_shares(fleet)
    assert brute.objective <= equal.objective * (1 + 1e-12)
    print(f"{objective}: equal {equal.objective:.9g}, brute force {brute.objective:.9g}")


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["sum", "max-min"])
def test_slsqp_on_two_devices_is_within_1e_3_of_the_brute_force(objective: str) -> None:
    fleet = pair_fleet(objective)
    brute = brute_force_shares(fleet)
    result = baselines.slsqp(fleet)
    assert result.status == "optimal"
    assert abs(result.objective - brute.objective) <= 1e-3 * brute.objective
    print(f"{objective}: slsqp {result.objective:.9g}, brute force {brute.objective:.9g} "
          f"({brute.evaluations} solves)")
