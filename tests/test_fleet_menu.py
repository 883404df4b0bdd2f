"""The menu relaxation (laimco.fleet.menu_lp / menu_dual): the lower-hull reduction and the
two-price dual against HiGHS on the whole LP, on random menus."""

from __future__ import annotations

import numpy as np
import pytest

from laimco.fleet import menu_dual, menu_lp


def _menu(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, float, float]:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 60)), int(rng.integers(1, 40))
    device = np.repeat(np.arange(n), k)
    x, y = rng.uniform(0, 1, n * k) ** 3, rng.uniform(0, 1, n * k) ** 3
    if seed % 4 == 0:  # every device may stay at no share
        x[::k], y[::k] = 0.0, 0.0
    cost = 1 / (0.02 + x) + 1 / (0.02 + y) + rng.uniform(0, 3, n * k)
    return device, x, y, cost, n, n * rng.uniform(0.01, 0.3), n * rng.uniform(0.01, 0.3)


@pytest.mark.parametrize("seed", range(24))
def test_dual_matches_the_whole_lp(seed: int) -> None:
    """Same feasibility; the dual's value is a lower bound within 1e-8 of HiGHS's optimum; its
    mixture gives every device weight 1 and fits both capacities."""
    device, x, y, cost, n, cap_x, cap_y = _menu(seed)
    whole = menu_lp.solve_whole(device, x, y, cost, n, cap_x, cap_y)
    dual = menu_dual.solve_by_prices(device, x, y, cost, n, cap_x, cap_y)
    assert whole.feasible == dual.feasible
    if whole.feasible:
        assert dual.value <= whole.value + 1e-9 * abs(whole.value)
        assert dual.value == pytest.approx(whole.value, rel=1e-8)
        per_device = np.bincount(device, weights=dual.weights, minlength=n)
        assert per_device == pytest.approx(np.ones(n), abs=1e-9)
        assert (dual.weights * x).sum() <= cap_x * (1 + 1e-9)
        assert (dual.weights * y).sum() <= cap_y * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_hull_reduction_keeps_the_value(seed: int) -> None:
    device, x, y, cost, n, cap_x, cap_y = _menu(100 + seed)
    keep = menu_lp.lower_hull_items(device, x, y, cost)
    whole = menu_lp.solve_whole(device, x, y, cost, n, cap_x, cap_y)
    reduced = menu_lp.solve_whole(device[keep], x[keep], y[keep], cost[keep], n, cap_x, cap_y)
    assert whole.feasible == reduced.feasible
    if whole.feasible:
        assert reduced.value == pytest.approx(whole.value, rel=1e-9)
