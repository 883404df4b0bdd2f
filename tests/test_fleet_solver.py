"""The fleet solver (docs/theory.md §7): its value oracle against laimco's single-device solve,
its certificate against brute force, and the properties an optimum must have."""

from __future__ import annotations

import numpy as np
import pytest
from fleet_reference import paper_fleet, scenario

from laimco.config import load_scenario
from laimco.fleet.boxes import Boxes, split_boxes
from laimco.fleet.fleet import DeviceClass, Fleet, SharedResources
from laimco.fleet.server_memory import server_part_key
from laimco.fleet.share_points import first_levels
from laimco.fleet.solver import solve_fleet
from laimco.fleet.value import fleet_values
from laimco.optimize.strategies import solve
from laimco.profile import load_profile

PAPER = ("paper-minilm-phone", "paper-minilm-iot", "paper-minilm-laptop")


def _fleet(n: int, seed: int = 3, names: tuple[str, ...] = PAPER, band_per_device: float = 1.5e6,
           cycles_per_device: float = 1.5e8) -> Fleet:
    rng = np.random.default_rng(seed)
    classes = tuple(DeviceClass(name, load_scenario(f"scenarios/{name}.toml")) for name in names)
    return Fleet(name=f"test-{n}", resources=SharedResources(
        band_per_device * n, cycles_per_device * n, 64.0), classes=classes,
        class_index=rng.integers(0, len(classes), n).astype(np.intp),
        path_gain=1e-7 * np.exp(rng.normal(size=n) * 1.5), weight=rng.uniform(0.5, 2.0, n),
        ids=tuple(f"d{u}" for u in range(n)))


@pytest.mark.parametrize("name", ["paper-minilm-phone", "minilm-phone", "minilm-laptop"])
def test_value_oracle_is_the_single_device_solve(name: str) -> None:
    """V(g, b, f) from the scaled reference problem equals the objective of `solve` on the
    device's own scenario at (b, f), for random gains and shares (rel 1e-9)."""
    fleet = _fleet(6, seed=1, names=(name,), band_per_device=2e6, cycles_per_device=2e8)
    value = fleet_values(fleet)[0]
    rng = np.random.default_rng(5)
    band = fleet.resources.bandwidth_hz * rng.uniform(0.02, 0.6, 6)
    cycles = fleet.resources.server_cycles_per_s * rng.uniform(0.02, 0.6, 6)
    got = value.values(fleet.path_gain, band, cycles)
    for u in range(6):
        decision = solve(fleet.device_scenario(u, band[u], cycles[u]))
        want = decision.point.objective if decision.point else np.inf
        assert got[u] == pytest.approx(want, rel=1e-9), u


def test_split_halves_cover_the_box() -> None:
    boxes = Boxes(np.array([0, 0]), np.array([0.0, 0.1]), np.array([0.4, 0.2]),
                  np.array([0.1, 0.0]), np.array([0.2, 0.5]), np.array([1.0, 2.0]))
    children, x, y, owner = split_boxes(boxes, 1.0, 1.0)
    area = (boxes.x1 - boxes.x0) * (boxes.y1 - boxes.y0)
    child_area = (children.x1 - children.x0) * (children.y1 - children.y0)
    assert child_area.reshape(2, 2).sum(axis=0) == pytest.approx(area)
    # the new upper corners are the lower halves' upper corners; the upper halves keep the
    # parent's corner and value
    assert np.all(children.x1[:2] == x) and np.all(children.y1[:2] == y)
    assert np.all(children.value_upper[2:] == boxes.value_upper)
    assert np.all(owner == boxes.device)


def test_first_levels_reach_both_ends() -> None:
    for n in (1, 7, 100, 10_000):
        levels = first_levels(n)
        assert levels[0] == 0 and levels[-1] == 1 and np.all(np.diff(levels) > 0)


def test_fleet_of_one_reproduces_laimco_optimize() -> None:
    """One device gets the whole band and server, and its decision is `solve` on its scenario
    at those totals."""
    fleet = _fleet(1, seed=2, names=("minilm-phone",), band_per_device=2e6,
                   cycles_per_device=2e8)
    answer = solve_fleet(fleet)
    assert answer.bandwidth_hz[0] == pytest.approx(2e6, rel=1e-12)
    assert answer.server_cycles_per_s[0] == pytest.approx(2e8, rel=1e-12)
    alone = solve(fleet.device_scenario(0, 2e6, 2e8))
    assert alone.point is not None and answer.decisions[0].point is not None
    assert answer.decisions[0].point.split == alone.point.split
    assert answer.objective == pytest.approx(fleet.weight[0] * alone.point.objective, rel=1e-9)
    assert answer.dual_bound is not None and answer.dual_bound <= answer.objective * (1 + 1e-12)


def _brute_force_two(fleet: Fleet, points: int, worst: bool = False) -> float:
    """min over a grid of (x, y) for device 0 (device 1 gets the rest) of Σ w·V (`worst`:
    max w·V): an upper bound on the optimum from exact values."""
    value = fleet_values(fleet)
    grid = np.linspace(0.0, 1.0, points)
    gx, gy = (a.ravel() for a in np.meshgrid(grid, grid, indexing="ij"))
    res = fleet.resources
    total = np.zeros(gx.size)
    for u, (sx, sy) in enumerate(((gx, gy), (1 - gx, 1 - gy))):
        v = value[int(fleet.class_index[u])].values(
            np.full(gx.size, fleet.path_gain[u]), sx * res.bandwidth_hz,
            sy * res.server_cycles_per_s)
        total = np.maximum(total, fleet.weight[u] * v) if worst else total + fleet.weight[u] * v
    return float(total.min())


@pytest.mark.parametrize("seed", [0, 4, 9])
def test_bound_never_exceeds_brute_force_and_answer_is_close(seed: int) -> None:
    """Two devices: the certified lower bound is ≤ the best of a 121×121 share grid evaluated
    exactly (any feasible point bounds the optimum from above), and the solver's answer is no
    worse than that grid's best by more than its own certified gap."""
    fleet = _fleet(2, seed=seed)
    answer = solve_fleet(fleet, max_rounds=8)
    grid_best = _brute_force_two(fleet, 121)
    assert answer.dual_bound is not None
    assert answer.dual_bound <= grid_best * (1 + 1e-12)
    assert answer.objective <= grid_best * (1 + 1e-9) + (answer.objective - answer.dual_bound)


@pytest.mark.slow
@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 2.0)])
def test_max_min_of_two_is_no_worse_than_a_share_grid(weights: tuple[float, float]) -> None:
    """Two paper-mode devices whose shares matter (a phone and a far IoT node): the max-min
    answer (the level search of docs/theory.md §7.5) is no worse than the best of a 161×161
    share grid evaluated exactly (1e-9 relative), and its certified bound is not above it."""
    fleet = paper_fleet([("phone", scenario("paper-minilm-phone")),
                         ("iot", scenario("paper-minilm-iot"))], [0, 1], [1e-7, 1e-8],
                        list(weights))
    answer = solve_fleet(fleet, "max-min", max_rounds=4)
    grid_best = _brute_force_two(fleet, 161, worst=True)
    assert answer.status == "optimal" and answer.dual_bound is not None
    assert answer.objective <= grid_best * (1 + 1e-9)
    assert answer.dual_bound <= grid_best * (1 + 1e-12)
    assert answer.bandwidth_hz.sum() == pytest.approx(fleet.resources.bandwidth_hz, rel=1e-12)


@pytest.mark.slow
def test_more_band_never_raises_the_optimum() -> None:
    """OPT(2B) ≤ OPT(B): so the certified bound at 2B can never exceed the answer at B (a
    check of the bound's validity), and likewise for the server."""
    small = _fleet(8, seed=6)
    answer = solve_fleet(small, max_rounds=6)
    res = small.resources
    for bigger in (SharedResources(2 * res.bandwidth_hz, res.server_cycles_per_s,
                                   res.server_flops_per_cycle),
                   SharedResources(res.bandwidth_hz, 2 * res.server_cycles_per_s,
                                   res.server_flops_per_cycle)):
        more = solve_fleet(Fleet(small.name, bigger, small.classes, small.class_index,
                                 small.path_gain, small.weight, small.ids), max_rounds=6)
        assert more.dual_bound is not None
        assert more.dual_bound <= answer.objective * (1 + 1e-12)


def test_shares_sum_exactly_and_decisions_hold_their_shares() -> None:
    fleet = _fleet(12, seed=8)
    answer = solve_fleet(fleet, max_rounds=4)
    offloading = answer.bandwidth_hz > 0
    if offloading.any():
        assert answer.bandwidth_hz.sum() == pytest.approx(fleet.resources.bandwidth_hz, rel=1e-12)
        assert answer.server_cycles_per_s.sum() == pytest.approx(
            fleet.resources.server_cycles_per_s, rel=1e-12)
    units = load_profile(fleet.classes[0].scenario.model.profile).n_units
    for u, decision in enumerate(answer.decisions):
        assert decision.point is not None
        # a device without a share runs the whole model
        if answer.bandwidth_hz[u] == 0:
            assert decision.point.split == units


@pytest.mark.slow
def test_permuting_devices_permutes_the_answer() -> None:
    """Permuted devices: each answer's certified bound is below the other's objective (both
    bounds are valid for the same problem), the objectives agree within the certified gaps,
    and the shares agree with the permutation to within the gap's resolution (5 %)."""
    fleet = _fleet(6, seed=11)
    order = np.array([3, 0, 5, 1, 4, 2])
    answer = solve_fleet(fleet, max_rounds=12)
    permuted = solve_fleet(fleet.subset(order), max_rounds=12)
    assert answer.dual_bound is not None and permuted.dual_bound is not None
    assert answer.dual_bound <= permuted.objective * (1 + 1e-12)
    assert permuted.dual_bound <= answer.objective * (1 + 1e-12)
    both = max(answer.objective, permuted.objective)
    assert abs(permuted.objective - answer.objective) <= both - min(answer.dual_bound,
                                                                     permuted.dual_bound)
    assert permuted.bandwidth_hz == pytest.approx(answer.bandwidth_hz[order], rel=0.05,
                                                  abs=1e-3 * fleet.resources.bandwidth_hz)


def test_max_min_bound_below_worst_device() -> None:
    fleet = _fleet(6, seed=12)
    answer = solve_fleet(fleet, "max-min", max_rounds=6)
    assert answer.objective_kind == "max-min"
    assert answer.dual_bound is not None and answer.dual_bound <= answer.objective * (1 + 1e-12)
    assert answer.objective == pytest.approx(
        float(np.max(fleet.weight * answer.device_objective)), rel=1e-12)


def test_server_memory_counts_each_distinct_part_once() -> None:
    """Devices deciding the same server part share one copy; its bytes are the server units'
    weights (profile split table: prunable server weights + all fixed weights − the device's
    fixed ones) at 4 bytes in the paper mode's dense storage."""
    fleet = _fleet(12, seed=8)
    answer = solve_fleet(fleet, max_rounds=2)
    keys = {server_part_key(fleet, u, d) for u, d in enumerate(answer.decisions)} - {None}
    memory = answer.server_memory
    assert memory.parts == len(keys)
    profile = load_profile(fleet.classes[0].scenario.model.profile)
    table = profile.split_table()
    total_fixed = profile.column("n_fixed").sum()
    expected = 0.0
    for _, split, _, _, _ in keys:
        expected += 4 * (table.prunable_server[split] + total_fixed - table.fixed_device[split])
    assert memory.used_bytes == pytest.approx(expected, rel=1e-12)


def _needy_fleet(n: int, band_hz: float) -> Fleet:
    """Devices that cannot run the whole model themselves (a 100 MHz CPU cannot finish it in
    the latency budget) and so need a share of the band and the server."""
    slow = load_scenario("scenarios/paper-minilm-phone.toml").replace(
        device={"cpu_freq_max_hz": 1e8})
    return Fleet(name="needy", resources=SharedResources(band_hz, 2e8 * n, 64.0),
                 classes=(DeviceClass("slow-phone", slow),),
                 class_index=np.zeros(n, dtype=np.intp),
                 path_gain=np.geomspace(1e-7, 1e-9, n), weight=np.ones(n),
                 ids=tuple(f"slow{u}" for u in range(n)))


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["sum", "max-min"])
def test_a_crowded_fleet_names_who_cannot_be_served(objective: str) -> None:
    """With a band too small for every needy device (each fits alone: checked by `solve` at
    the totals), some are left out with a reason naming the fleet's totals; the others are
    served within the totals; with 20× the band everyone is served."""
    roomy = solve_fleet(_needy_fleet(6, 40e6), objective, max_rounds=1)
    assert np.isinf(fleet_values(roomy.fleet)[0].local_value)
    assert roomy.status == "optimal"
    fleet = _needy_fleet(6, 2e6)
    for u in range(6):
        assert solve(fleet.device_scenario(u, 2e6, 12e8)).success
    crowded = solve_fleet(fleet, objective, max_rounds=1)
    assert crowded.status == "partial"
    out = np.flatnonzero(~crowded.served)
    assert 0 < out.size < 6
    for u in out:
        assert [r.limit for r in crowded.decisions[u].reasons] == ["fleet"]
        assert "resources.bandwidth_hz" in crowded.decisions[u].reasons[0].message
    assert crowded.bandwidth_hz.sum() <= 2e6 * (1 + 1e-12)
    assert np.all(crowded.bandwidth_hz[out] == 0)
