"""The level search on frontiers (laimco.fleet.level_frontier, docs/theory.md §7.5) against
independent computations: a closed-form max-min optimum, exhaustive enumeration of the
lattice fit, and dense share grids (a synthetic non-convex fleet and a real 2-phone fleet)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fleet_reference import paper_fleet, scenario

from laimco.fleet.level_frontier import (
    FRONTIER_TOL,
    Frontiers,
    Lattice,
    least_level_shares,
    min_plus_fit,
)
from laimco.fleet.share_points import ShareValues
from laimco.fleet.value import fleet_values

FloatArray = np.ndarray


def product_values(a: FloatArray) -> object:
    """w·V_u(x, y) = a_u/(x·y): non-increasing in both shares, ∞ with no share."""

    def evaluate(device: FloatArray, x: FloatArray, y: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore"):
            return np.where((x > 0) & (y > 0), a[device] / (x * y), np.inf)

    evaluate.calls = 0  # type: ignore[attr-defined]
    return evaluate


def test_product_fleet_reaches_its_closed_form_level() -> None:
    """max-min of a_u/(x_u·y_u) with Σx = Σy = 1: by Cauchy–Schwarz Σ√(x_u·y_u) ≤ 1, so
    t ≥ (Σ√a_u)², reached at x_u = y_u = √(a_u/t). The search finds it to 1e-8 relative and
    its proven bound is below it."""
    a = np.array([1.0, 4.0, 0.25])
    optimum = float(np.sum(np.sqrt(a)) ** 2)
    evaluate = product_values(a)
    start = np.full(3, 1 / 3)
    found = least_level_shares(evaluate, 3, 0.0, float(np.max(a * 9)), start, start)
    assert found.level == pytest.approx(optimum, rel=1e-8)
    assert found.level >= optimum * (1 - 1e-12)
    assert 0 < found.proven_below <= optimum
    assert found.x.sum() <= 1 + 1e-12 and found.y.sum() <= 1 + 1e-12
    assert found.x == pytest.approx(np.sqrt(a / optimum), rel=1e-3)
    assert np.all(evaluate(np.arange(3), found.x, found.y) <= found.level)


def test_frontier_brackets_contain_the_closed_form_frontier() -> None:
    """φ_t(x) = a/(t·x) for V = a/(x·y): low < φ ≤ high, high − low within the asked
    tolerance (FRONTIER_TOL by default); ∞ where even y = 1 does not reach t."""
    a = np.array([2.0])
    evaluate = product_values(a)
    frontiers = Frontiers(evaluate, Lattice.whole(1, 32), np.array([np.inf]), tol=1e-6)
    fine = Frontiers(evaluate, Lattice.around(np.array([0.5]), 1e-9, 4), np.array([np.inf]))
    lo, hi = fine.at(4.5)
    rows = np.zeros(lo.size, dtype=np.intp)
    assert np.all(evaluate(rows, fine.x, lo) > 4.5) and np.all(evaluate(rows, fine.x, hi) <= 4.5)
    assert hi == pytest.approx(a[0] / (4.5 * fine.x), rel=1e-10)
    assert np.all(hi - lo <= FRONTIER_TOL)
    for level in (2.5, 7.0, 60.0):
        lo, hi = frontiers.at(level)
        x = frontiers.x
        phi = np.where(x > 0, a[0] / (level * np.maximum(x, 1e-300)), np.inf)
        reachable = phi <= 1
        assert np.all(lo[reachable] <= phi[reachable] + 1e-15)
        assert np.all(hi[reachable] >= phi[reachable] - 1e-15)
        assert np.all(hi[reachable] - lo[reachable] <= frontiers.tol)
        assert np.all(np.isinf(hi[~reachable]) & np.isinf(lo[~reachable]))


def test_min_plus_fit_matches_enumeration() -> None:
    """The dynamic programme against every combination of small random cost arrays."""
    rng = np.random.default_rng(4)
    for _ in range(40):
        n = int(rng.integers(1, 5))
        costs = [rng.uniform(0, 1, int(rng.integers(1, 7))) for _ in range(n)]
        for c in costs:
            c[rng.uniform(size=c.size) < 0.2] = np.inf
        budget = int(rng.integers(0, 12))
        best = np.inf
        for js in itertools.product(*(range(c.size) for c in costs)):
            if sum(js) <= budget:
                best = min(best, sum(c[j] for c, j in zip(costs, js, strict=True)))
        value, picks = min_plus_fit(costs, budget)
        assert value == pytest.approx(best, rel=1e-12) or (np.isinf(value) and np.isinf(best))
        if np.isfinite(value):
            assert picks.sum() <= budget
            assert sum(c[j] for c, j in zip(costs, picks, strict=True)) == pytest.approx(value)


def two_split_values(device: FloatArray, x: FloatArray, y: FloatArray) -> FloatArray:
    """A non-convex pair: each device takes the better of an offloading option (a/(x·y)) and
    a band-only one (c + d/x, the server idle), or runs alone (L) with no share."""
    a, c, d, local = (np.array([1.0, 3.0]), np.array([6.0, 2.0]), np.array([0.5, 6.0]),
                      np.array([40.0, 60.0]))
    u = device
    with np.errstate(divide="ignore"):
        offload = np.where((x > 0) & (y > 0), a[u] / (x * y), np.inf)
        band = np.where(x > 0, c[u] + d[u] / x, np.inf)
    return np.minimum(np.minimum(offload, np.where(y > 0, band, np.inf)), local[u])


def dense_pair_minimum(evaluate: object, points: int) -> float:
    """min over a dense (x₁, y₁) grid of max(V₁(x₁, y₁), V₂(1 − x₁, 1 − y₁))."""
    grid = np.linspace(0, 1, points)
    x1, y1 = (g.ravel() for g in np.meshgrid(grid, grid, indexing="ij"))
    v1 = evaluate(np.zeros(x1.size, dtype=np.intp), x1, y1)  # type: ignore[operator]
    v2 = evaluate(np.ones(x1.size, dtype=np.intp), 1 - x1, 1 - y1)  # type: ignore[operator]
    return float(np.min(np.maximum(v1, v2)))


def test_non_convex_pair_is_no_worse_than_a_dense_grid() -> None:
    """On a 2001 × 2001 grid of device 1's shares the best max-min level is not below the
    search's (1e-9 relative), and the search's proven bound is not above it."""
    dense = dense_pair_minimum(two_split_values, 2001)
    start = np.full(2, 0.5)
    high = float(np.max(two_split_values(np.arange(2), start, start)))
    found = least_level_shares(two_split_values, 2, 0.0, high, start, start)
    assert found.level <= dense * (1 + 1e-9)
    assert found.proven_below <= found.level
    assert found.proven_below <= dense
    assert float(np.max(two_split_values(np.arange(2), found.x, found.y))) <= found.level


@pytest.mark.slow
def test_two_phones_level_is_no_worse_than_a_dense_grid_of_the_real_values() -> None:
    """Two paper-mode phones (gains 1e-7, 1e-9), V from laimco's exact single-device solver:
    a 241 × 241 grid of device 1's shares is not better than the level search (1e-9
    relative) and is not below its proven bound."""
    fleet = paper_fleet([("phone", scenario("paper-minilm-phone"))], [0, 0], [1e-7, 1e-9])
    evaluate = ShareValues(fleet, np.arange(2), fleet_values(fleet))
    dense = dense_pair_minimum(evaluate, 241)
    start = np.full(2, 0.5)
    high = float(np.max(evaluate(np.arange(2), start, start)))
    found = least_level_shares(evaluate, 2, 0.0, high, start, start)
    print(f"level {found.level:.12g}, proven {found.proven_below:.9g}, dense grid {dense:.12g}")
    assert found.level <= dense * (1 + 1e-9)
    assert found.proven_below <= dense
    assert float(np.max(evaluate(np.arange(2), found.x, found.y))) <= found.level
