"""Mid-size fleet steps of the weighted-sum solver (docs/theory.md §7.3): diving to one point
per device (fleet/diving.py) and the reduced-cost filter before branch and bound
(fleet/branching.py `promising`), each checked against an enumeration of every
one-item-per-device choice (the independent reference)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from laimco.fleet.boxes import Boxes
from laimco.fleet.branching import promising
from laimco.fleet.diving import dive
from laimco.fleet.menu_lp import solve_menu
from laimco.fleet.solver import _round


def _every_choice(device: np.ndarray, x: np.ndarray, y: np.ndarray, cost: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every choice of one item per device: the items (choices × n) and whether they fit."""
    per = [np.flatnonzero(device == u) for u in range(n)]
    chosen = np.array(list(itertools.product(*per)))
    fits = (x[chosen].sum(axis=1) <= 1 + 1e-12) & (y[chosen].sum(axis=1) <= 1 + 1e-12)
    return chosen, fits


def _rounded(device: np.ndarray, x: np.ndarray, y: np.ndarray, cost: np.ndarray, n: int,
             fixes: int) -> np.ndarray:
    """The solver's rounding after `fixes` dives (0: the plain rounding)."""
    start = solve_menu(device, x, y, cost, n)
    weights = start.weights
    if fixes:
        active, weights = dive(device, x, y, cost, n, start, fixes)
        weights = np.where(active, weights, -1.0)
    return _round(device, x, y, cost, weights, n)


def test_diving_keeps_the_mixed_device_offloading() -> None:
    """Device 0 can run alone (cost 20, no share) or offload (cost 10 with 0.5 of both);
    devices 1–3 each take 0.2 of both (cost 5) or 0.1 (cost 8). Giving up share is cheapest
    at device 0 (20 per unit against 30), so the relaxation lets the others take 0.2 and mixes
    device 0 (0.8 offloading); the plain rounding then sends device 0 alone (cost 35), while
    the optimum has it offload and one other take 0.1 (cost 28): diving finds it."""
    device = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    x = np.array([0.0, 0.5, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1])
    y = x.copy()
    cost = np.array([20.0, 10.0, 5.0, 8.0, 5.0, 8.0, 5.0, 8.0])
    chosen, fits = _every_choice(device, x, y, cost, 4)
    optimum = cost[chosen[fits]].sum(axis=1).min()
    plain = _rounded(device, x, y, cost, 4, 0)
    dived = _rounded(device, x, y, cost, 4, 2)
    assert optimum == pytest.approx(28.0)
    assert cost[plain].sum() == pytest.approx(35.0)  # what diving is for
    assert x[dived].sum() <= 1 + 1e-12 and y[dived].sum() <= 1 + 1e-12
    assert cost[dived].sum() == pytest.approx(optimum, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_diving_to_the_end_leaves_one_fitting_item_per_device(seed: int) -> None:
    """Random menus (5 devices, 4 items each, one at no share): diving with as many fixes as
    devices leaves no device mixed, so the relaxation's weights are one item per device; that
    choice fits, costs the last relaxation's value, and is never below the enumerated
    optimum."""
    rng = np.random.default_rng(seed)
    n, k = 5, 4
    device = np.repeat(np.arange(n), k)
    x, y = rng.uniform(0.05, 0.5, n * k), rng.uniform(0.05, 0.5, n * k)
    x[::k], y[::k] = 0.0, 0.0
    cost = rng.uniform(1, 10, n * k) + 40 * (x == 0)
    chosen, fits = _every_choice(device, x, y, cost, n)
    optimum = cost[chosen[fits]].sum(axis=1).min()
    active, weights = dive(device, x, y, cost, n, solve_menu(device, x, y, cost, n), n)
    support = np.flatnonzero(active & (weights > 1e-9))
    assert np.array_equal(np.sort(device[support]), np.arange(n))  # one item per device
    assert np.allclose(weights[support], 1.0)
    assert x[support].sum() <= 1 + 1e-9 and y[support].sum() <= 1 + 1e-9
    assert cost[support].sum() >= optimum * (1 - 1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_promising_keeps_every_box_of_every_cheaper_choice(seed: int) -> None:
    """The reduced-cost filter (docs/theory.md §7.3): for random boxes of 3 devices and an
    incumbent between the relaxation's value and the best box choice, every box of every
    fitting box choice (upper-corner cost, lower-corner shares) cheaper than the incumbent is
    kept, at the relaxation's prices and at arbitrary ones — and the filter does drop boxes
    (it is not vacuous)."""
    rng = np.random.default_rng(seed)
    n, k = 3, 7
    device = np.repeat(np.arange(n), k)
    x0, y0 = rng.uniform(0, 0.6, n * k), rng.uniform(0, 0.6, n * k)
    value = rng.uniform(1, 10, n * k) + 10 * (0.6 - x0) + 10 * (0.6 - y0)
    boxes = Boxes(device, x0, x0 + 0.1, y0, y0 + 0.1, value)
    chosen, fits = _every_choice(device, x0, y0, value, n)
    totals = value[chosen].sum(axis=1)
    best = totals[fits].min()
    relaxed = solve_menu(device, x0, y0, value, n)
    incumbent = best + 0.5 * (best - relaxed.value) + 1.0
    cheaper = chosen[fits & (totals < incumbent)]
    dropped = 0
    for prices in [(relaxed.price_x, relaxed.price_y), (0.0, 0.0),
                   tuple(rng.uniform(0, 20, 2))]:
        kept = promising(boxes, float(prices[0]), float(prices[1]), incumbent)
        assert kept[cheaper.ravel()].all()
        dropped += int((~kept).sum())
    assert dropped > 0
