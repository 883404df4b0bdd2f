"""The fleet's band and server divided: the least Σ w_u·V_u(b_u, f_u) with Σ b_u ≤ B and
Σ f_u ≤ F, with a proven lower bound that certifies it (docs/theory.md §7.3).

Each device's share plane is cut into boxes; V_u at a box's upper corner bounds the whole box
from below (V_u is non-increasing). Dual decomposition over the two resource prices is the
linear relaxation of "one box per device" (menu_lp.py): its value is a lower bound on the
optimum. The same relaxation over the evaluated points gives a feasible choice (at most two
devices are mixed; they are rounded), whose leftover band and cycles are handed out in
proportion so the sums hold exactly. Boxes that could still hide a better point at the current
prices are cut in four, and the rounds go on until the gap between the two is small.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.boxes import Boxes, grid_boxes, split_boxes
from laimco.fleet.branching import BranchResult, branch_and_bound
from laimco.fleet.fleet import Fleet, FleetObjective
from laimco.fleet.menu_lp import MenuSolution, solve_menu
from laimco.fleet.small_fleet import (
    EXHAUSTIVE_DEVICES,
    POLISH_DEVICES,
    best_combinations,
    exhaustive_bound,
    polish,
)
from laimco.fleet.solution import FleetSolution
from laimco.fleet.value import (
    REFERENCE_BANDWIDTH_HZ,
    REFERENCE_SERVER_HZ,
    ClassValue,
    fleet_values,
)
from laimco.optimize.decision import Decision, Reason, infeasible
from laimco.optimize.strategies import solve

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
DEFAULT_GAP = 1e-3
DEFAULT_ROUNDS = 20
# boxes cut per device and round: the ones with the lowest bound among those still open
CUTS_PER_DEVICE = 32
# small fleets branch on the devices the relaxation mixes (branching.py) after the last
# round, with at most this many relaxations
BRANCH_DEVICES = 24
BRANCH_NODES = 64
# rounds of cuts that try to fit every device before one is left out
FEASIBILITY_CUTS = 12
# a box is cut only if its slack exceeds this share of the gap target per device
SLACK_SHARE = 0.25
# the first grid: the equal share times powers of GRID_RATIO
GRID_RATIO = 16.0
GRID_BELOW = 1
Progress = Callable[[str], None]


@dataclass
class _Points:
    """Every share evaluated so far: owner, (x, y) and the weighted value w·V (inf: nothing
    fits there)."""

    device: IntArray
    x: FloatArray
    y: FloatArray
    value: FloatArray

    def add(self, device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray) -> None:
        self.device = np.concatenate([self.device, device])
        self.x = np.concatenate([self.x, x])
        self.y = np.concatenate([self.y, y])
        self.value = np.concatenate([self.value, value])

    def finite(self) -> NDArray[np.bool_]:
        return np.isfinite(self.value)


class _Evaluator:
    """w_u·V_u at shares given as fractions of the totals, for devices of the served subset."""

    def __init__(self, fleet: Fleet, devices: IntArray, values: list[ClassValue]) -> None:
        self.fleet, self.devices, self.values = fleet, devices, values
        self.calls = 0

    def __call__(self, device: IntArray, x: FloatArray, y: FloatArray) -> FloatArray:
        fleet = self.fleet
        members = self.devices[device]
        out = np.empty(device.size)
        for number, value in enumerate(self.values):
            rows = np.flatnonzero(fleet.class_index[members] == number)
            if rows.size:
                u = members[rows]
                out[rows] = fleet.weight[u] * value.values(
                    fleet.path_gain[u], x[rows] * fleet.resources.bandwidth_hz,
                    y[rows] * fleet.resources.server_cycles_per_s)
        self.calls += device.size
        return out


def first_levels(n_devices: int) -> FloatArray:
    """0, then the equal share 1/N times powers of GRID_RATIO from GRID_RATIO^-GRID_BELOW up
    to 1 (the whole resource)."""
    equal = 1.0 / max(n_devices, 1)
    top = int(np.ceil(np.log(1 / equal) / np.log(GRID_RATIO) - 1e-9))
    levels = equal * GRID_RATIO ** np.arange(-GRID_BELOW, top)
    return np.concatenate([[0.0], levels[levels < 1.0], [1.0]])


def solve_fleet(fleet: Fleet, objective: FleetObjective | None = None, *,
                gap: float = DEFAULT_GAP, max_rounds: int = DEFAULT_ROUNDS,
                progress: Progress | None = None) -> FleetSolution:
    """The fleet's shares and every device's decision (docs/theory.md §7)."""
    kind = objective or fleet.objective
    if kind != "sum":
        from laimco.fleet.max_min import solve_max_min

        return solve_max_min(fleet, gap=gap, max_rounds=max_rounds, progress=progress)
    started = time.perf_counter()
    values = fleet_values(fleet)
    servable = _servable(fleet, values)
    devices = np.flatnonzero(servable)
    evaluate = _Evaluator(fleet, devices, values)
    x, y, bound = np.zeros(fleet.n_devices), np.zeros(fleet.n_devices), 0.0
    crowded: list[int] = []
    if devices.size:
        boxes, points = _first_grid(evaluate, devices.size)
        boxes, points, crowded = _fit_everyone(boxes, points, evaluate)
        devices = evaluate.devices
    if devices.size:
        choice, primal = (np.zeros(devices.size), np.zeros(devices.size)), np.inf
        for round_number in range(max_rounds + 1):
            relaxed = _relaxation(boxes, devices.size)
            found, value, mixed = _primal(points, devices.size, evaluate)
            if value < primal:  # the best answer so far (rounding is not monotone)
                choice, primal = found, value
            bound = max(bound, relaxed.value)
            used = relaxed.weights > 1e-9
            exhaustive = (exhaustive_bound(boxes, devices.size)
                          if devices.size <= EXHAUSTIVE_DEVICES else None)
            if exhaustive is not None:
                bound = max(bound, exhaustive[0])
                for combination in exhaustive[1]:
                    used[combination] = True
            rel = (primal - bound) / max(abs(primal), 1e-300)
            if progress:
                progress(f"round {round_number}: objective {primal:.6g}, bound {bound:.6g}, "
                         f"gap {rel:.2e}, {evaluate.calls} evaluations")
            if rel > gap and devices.size <= BRANCH_DEVICES and round_number == max_rounds:
                branched = _branch(boxes, points, evaluate, primal, gap)
                bound = max(bound, branched.bound)
                if branched.shares is not None and branched.value < primal:
                    choice, primal = branched.shares, branched.value
                rel = (primal - bound) / max(abs(primal), 1e-300)
                if progress:
                    progress(f"branched ({branched.nodes} relaxations): objective "
                             f"{primal:.6g}, bound {bound:.6g}, gap {rel:.2e}")
            if rel <= gap or round_number == max_rounds:
                break
            # cut where the bound is slack at both price pairs: the relaxation's and the
            # primal's (the bound is tight only where the dual functions meet)
            boxes = _refine(boxes, points, [(relaxed.price_x, relaxed.price_y),
                                            (mixed.price_x, mixed.price_y)], evaluate,
                            worth=SLACK_SHARE * gap * abs(primal) / devices.size,
                            used=used)
        if devices.size <= POLISH_DEVICES:
            choice, primal = _polished(choice, evaluate, progress)
        x[devices], y[devices] = choice
    return _finish(fleet, "dual-decomposition", kind, x, y, bound if devices.size else 0.0,
                   started, crowded)


def _polished(choice: tuple[FloatArray, FloatArray], evaluate: _Evaluator,
              progress: Progress | None) -> tuple[tuple[FloatArray, FloatArray], float]:
    """The answer of a small fleet polished by share moves between devices (small_fleet.py)."""
    n = evaluate.devices.size
    x, y = choice
    start = evaluate(np.arange(n), x, y)
    x, y, value = polish(x, y, start, evaluate)
    if progress:
        progress(f"polished: objective {start.sum():.9g} → {value.sum():.9g}")
    return (x, y), float(value.sum())


def _fit_everyone(boxes: Boxes, points: _Points, evaluate: _Evaluator
                  ) -> tuple[Boxes, _Points, list[int]]:
    """Leave out devices until the rest fit together. While the box relaxation has no solution
    the fleet provably cannot serve them all (§7.3): the device needing the largest least share
    (x₀ + y₀ over its boxes) goes. While the boxes fit but no evaluated points do, the boxes the
    relaxation uses are cut (their upper corners are shares that may fit), up to
    FEASIBILITY_CUTS times, before the device needing the most (over its points) goes.
    Returns boxes and points renumbered over the devices kept, and the fleet indices of those
    left out (their reason says the fleet is too small for them)."""
    left_out: list[int] = []
    cuts = 0
    while evaluate.devices.size:
        n = evaluate.devices.size
        ok = points.finite()
        relaxed = _relaxation(boxes, n)
        if relaxed.feasible:
            if solve_menu(points.device[ok], points.x[ok], points.y[ok], points.value[ok],
                          n).feasible:
                break
            if cuts < FEASIBILITY_CUTS:
                cuts += 1
                boxes = _cut(boxes, np.flatnonzero(relaxed.weights > 1e-9), points, evaluate,
                             1.0, 1.0)
                continue
            need = np.full(n, np.inf)
            np.minimum.at(need, points.device[ok], points.x[ok] + points.y[ok])
        else:
            need = np.full(n, np.inf)
            np.minimum.at(need, boxes.device, boxes.x0 + boxes.y0)
        worst = int(np.argmax(need))
        left_out.append(int(evaluate.devices[worst]))
        boxes, points = _without(boxes, points, worst, n)
        evaluate.devices = np.delete(evaluate.devices, worst)
    return boxes, points, left_out


def _without(boxes: Boxes, points: _Points, device: int, n: int) -> tuple[Boxes, _Points]:
    """Boxes and points of every device but one, renumbered."""
    renumber = np.full(n, -1)
    keep = np.delete(np.arange(n), device)
    renumber[keep] = np.arange(keep.size)
    boxes = boxes.take(boxes.device != device)
    stay = points.device != device
    return (Boxes(renumber[boxes.device], boxes.x0, boxes.x1, boxes.y0, boxes.y1,
                  boxes.value_upper),
            _Points(renumber[points.device[stay]], points.x[stay], points.y[stay],
                    points.value[stay]))


def _servable(fleet: Fleet, values: list[ClassValue]) -> NDArray[np.bool_]:
    """Devices that could be served if they had the whole band and server: V_u(1, 1) < ∞."""
    res = fleet.resources
    out = np.zeros(fleet.n_devices, dtype=bool)
    for number, value in enumerate(values):
        u = fleet.members(number)
        out[u] = np.isfinite(value.values(fleet.path_gain[u], np.full(u.size, res.bandwidth_hz),
                                          np.full(u.size, res.server_cycles_per_s)))
    return out


def _first_grid(evaluate: _Evaluator, n: int) -> tuple[Boxes, _Points]:
    levels = first_levels(n)
    boxes, cx, cy, owner = grid_boxes(n, levels)
    inside = (cx > 0) & (cy > 0)
    value = np.empty(cx.size)
    value[inside] = evaluate(owner[inside], cx[inside], cy[inside])
    local = evaluate(np.arange(n), np.zeros(n), np.zeros(n))
    value[~inside] = local[owner[~inside]]
    boxes = Boxes(boxes.device, boxes.x0, boxes.x1, boxes.y0, boxes.y1, value)
    points = _Points(np.concatenate([owner[inside], np.arange(n)]),
                     np.concatenate([cx[inside], np.zeros(n)]),
                     np.concatenate([cy[inside], np.zeros(n)]),
                     np.concatenate([value[inside], local]))
    return boxes.take(np.isfinite(boxes.value_upper)), points


def _relaxation(boxes: Boxes, n: int) -> MenuSolution:
    """The lower bound: one box per device, at its upper corner's cost and lower corner's
    shares (eq. 7.6), relaxed to mixtures."""
    return solve_menu(boxes.device, boxes.x0, boxes.y0, boxes.value_upper, n)


def _primal(points: _Points, n: int, evaluate: _Evaluator
            ) -> tuple[tuple[FloatArray, FloatArray], float, MenuSolution]:
    """A feasible choice: the relaxation over evaluated points, its mixed devices rounded,
    then every leftover share handed out in proportion (exact sums; V only falls)."""
    ok = points.finite()
    mixed = solve_menu(points.device[ok], points.x[ok], points.y[ok], points.value[ok], n)
    shares, total = _recover(points, ok, mixed, n, evaluate)
    if n <= EXHAUSTIVE_DEVICES:  # few devices: the best combination of points, exactly
        found = best_combinations(points.device, points.x, points.y, points.value, n)
        if found is not None and found[1]:
            pick = found[1][0]
            share_x, share_y = points.x[pick].copy(), points.y[pick].copy()
            hand_out_leftover(share_x, share_y, points.value[pick])
            final = evaluate(np.arange(n), share_x, share_y)
            points.add(np.arange(n), share_x, share_y, final)
            if final.sum() < total:
                shares, total = (share_x, share_y), float(final.sum())
    return shares, total, mixed


def _recover(points: _Points, usable: NDArray[np.bool_], mixed: MenuSolution, n: int,
             evaluate: _Evaluator, record: bool = True
             ) -> tuple[tuple[FloatArray, FloatArray], float]:
    """The relaxation's mixture over the `usable` points rounded to one point per device, the
    leftover handed out, V evaluated at the final shares (and kept as points)."""
    device, x, y = points.device[usable], points.x[usable], points.y[usable]
    value = points.value[usable]
    pick = _round(device, x, y, value, mixed.weights, n)
    share_x, share_y = x[pick].copy(), y[pick].copy()
    # a share of one resource without the other buys nothing (V(x, 0) = V(0, y) = V(0, 0))
    idle = (share_x == 0) | (share_y == 0)
    share_x[idle], share_y[idle] = 0.0, 0.0
    hand_out_leftover(share_x, share_y, value[pick])
    final = evaluate(np.arange(n), share_x, share_y)
    if record:
        points.add(np.arange(n), share_x, share_y, final)
    return (share_x, share_y), float(final.sum())


def _branch(boxes: Boxes, points: _Points, evaluate: _Evaluator, incumbent: float,
            gap: float) -> BranchResult:
    """Branch and bound over the boxes (branching.py) with each branch's answer from its
    points."""
    n = evaluate.devices.size
    frozen = _Points(points.device.copy(), points.x.copy(), points.y.copy(),
                     points.value.copy())

    def primal(mask: NDArray[np.bool_]) -> tuple[tuple[FloatArray, FloatArray], float] | None:
        usable = mask & frozen.finite()
        if np.bincount(frozen.device[usable], minlength=n).min() == 0:
            return None
        mixed = solve_menu(frozen.device[usable], frozen.x[usable], frozen.y[usable],
                           frozen.value[usable], n)
        if not mixed.feasible:
            return None
        return _recover(frozen, usable, mixed, n, evaluate, record=False)

    return branch_and_bound(boxes, n, frozen.x, frozen.y, frozen.device, primal, incumbent,
                            gap, BRANCH_NODES)


def hand_out_leftover(share_x: FloatArray, share_y: FloatArray, value: FloatArray) -> None:
    """Make both sums exactly 1 in place: the leftover goes to the devices that hold shares and
    could still gain (value > 0), in proportion to their shares (to every holder when none
    can). No value rises: V is non-increasing (docs/theory.md §7.3)."""
    holders = share_x > 0
    gaining = holders & (value > 0)
    receivers = gaining if gaining.any() else holders
    for share in (share_x, share_y):
        held = share[receivers].sum()
        if held > 0:
            share[receivers] *= (1.0 - (share.sum() - held)) / held


def _round(device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray,
           weights: FloatArray, n: int) -> IntArray:
    """One point per device: its heaviest item; devices the relaxation mixes try each of their
    items (at most two such devices in a basic solution) and keep the best combination that
    fits, else fall back to their least-share item."""
    order = np.lexsort((-weights, device))
    first = np.ones(order.size, dtype=bool)
    first[1:] = device[order][1:] != device[order][:-1]
    pick = order[first]
    support = weights > 1e-9
    counts = np.bincount(device[support], minlength=n)
    mixed = np.flatnonzero(counts > 1)[:4]
    if mixed.size == 0:
        return pick
    options = [np.flatnonzero(support & (device == u)) for u in mixed]
    best, best_cost = pick.copy(), np.inf
    for combo in itertools.product(*options):
        trial = pick.copy()
        trial[mixed] = combo
        if x[trial].sum() <= 1 + 1e-12 and y[trial].sum() <= 1 + 1e-12:
            cost = value[trial].sum()
            if cost < best_cost:
                best, best_cost = trial, cost
    if np.isfinite(best_cost):
        return best
    for u, items in zip(mixed, options, strict=True):
        pick[u] = items[np.argmin(x[items] + y[items])]
    return pick


def _refine(boxes: Boxes, points: _Points, prices: list[tuple[float, float]],
            evaluate: _Evaluator, worth: float = 0.0,
            used: NDArray[np.bool_] | None = None) -> Boxes:
    """Cut the boxes the relaxation uses (`used`: their lower corners are what makes it
    optimistic) and those that could still hold a point better, at some of the given prices,
    than the device's best evaluated point there by more than `worth` (a box whose slack is
    below it cannot keep the gap above the target): per device and price pair the
    CUTS_PER_DEVICE boxes with the lowest bound."""
    n = int(boxes.device.max()) + 1
    ok = points.finite()
    cut_mask = np.zeros(boxes.size, dtype=bool) if used is None else used.copy()
    for lam, mu in prices:
        best = np.full(n, np.inf)
        np.minimum.at(best, points.device[ok],
                      points.value[ok] + lam * points.x[ok] + mu * points.y[ok])
        low = boxes.lower_cost(lam, mu)
        slack = best[boxes.device] - low
        open_ = slack > np.maximum(worth, 1e-12 * np.abs(best[boxes.device]))
        order = np.lexsort((low, boxes.device))
        ranked = order[open_[order]]
        cut_mask[ranked[_rank_within(boxes.device[ranked]) < CUTS_PER_DEVICE]] = True
    return _cut(boxes, np.flatnonzero(cut_mask), points, evaluate, *prices[0])


def _cut(boxes: Boxes, cut: IntArray, points: _Points, evaluate: _Evaluator, price_x: float,
         price_y: float) -> Boxes:
    """The boxes `cut` cut in two (split_boxes), their new corners evaluated and added to the
    points; boxes that turn out infeasible (∞ at the upper corner) dropped."""
    if cut.size == 0:
        return boxes
    keep = np.ones(boxes.size, dtype=bool)
    keep[cut] = False
    children, cx, cy, owner = split_boxes(boxes.take(cut), price_x, price_y)
    new = evaluate(owner, cx, cy)
    points.add(owner, cx, cy, new)
    children.value_upper[np.isnan(children.value_upper)] = new
    joined = Boxes.join([boxes.take(keep), children])
    return joined.take(np.isfinite(joined.value_upper))


def _rank_within(sorted_owner: IntArray) -> IntArray:
    """0, 1, 2, … within each run of equal owners of an owner-sorted array."""
    if sorted_owner.size == 0:
        return sorted_owner
    start = np.r_[True, sorted_owner[1:] != sorted_owner[:-1]]
    first_index = np.maximum.accumulate(np.where(start, np.arange(sorted_owner.size), 0))
    return np.arange(sorted_owner.size) - first_index


def _finish(fleet: Fleet, method: str, kind: FleetObjective, x: FloatArray, y: FloatArray,
            bound: float | None, started: float, crowded: list[int] | None = None
            ) -> FleetSolution:
    """Shares in Hz and cycles/s, and every device's laimco decision at its share; the
    devices in `crowded` are left out for lack of room (their own reason says so)."""
    res = fleet.resources
    bandwidth = x * res.bandwidth_hz
    cycles = y * res.server_cycles_per_s
    solve_time = time.perf_counter() - started
    local: dict[int, Decision] = {}  # without a share a device's decision is its class's

    def decision(u: int) -> Decision:
        if bandwidth[u] > 0 and cycles[u] > 0:
            return device_decision(fleet, u, bandwidth[u], cycles[u])
        number = int(fleet.class_index[u])
        if number not in local:
            local[number] = device_decision(fleet, u, 0.0, 0.0)
        return local[number]

    decisions = tuple(decision(u) for u in range(fleet.n_devices))
    for u in crowded or []:
        decisions = (*decisions[:u], _crowded_out(fleet, u), *decisions[u + 1:])
    objective_u = np.array([d.point.objective if d.point else np.inf for d in decisions])
    weighted = fleet.weight * objective_u
    served = np.isfinite(weighted)
    total = (float(weighted[served].sum()) if kind == "sum"
             else float(weighted[served].max(initial=0.0)))
    return FleetSolution(fleet=fleet, objective_kind=kind, method=method,
                         bandwidth_hz=bandwidth, server_cycles_per_s=cycles,
                         device_objective=objective_u, decisions=decisions, objective=total,
                         dual_bound=bound, solve_time_s=solve_time)


def _crowded_out(fleet: Fleet, device: int) -> Decision:
    """A device the fleet cannot serve together with the others."""
    res = fleet.resources
    return infeasible("joint", [Reason("fleet", (
        f"device {fleet.ids[device]!r} cannot be served together with the others: it cannot "
        "run the whole model itself and the rest of resources.bandwidth_hz = "
        f"{res.bandwidth_hz:.4g} Hz and resources.server_cycles_per_s = "
        f"{res.server_cycles_per_s:.4g} cycles/s is too small for it; raise them or remove "
        "devices"))])


def device_decision(fleet: Fleet, device: int, bandwidth_hz: float,
                    server_cycles_per_s: float) -> Decision:
    """laimco's single-device decision of device u at its shares; with no share of either
    resource it can only run the whole model itself (split L)."""
    if bandwidth_hz > 0 and server_cycles_per_s > 0:
        return solve(fleet.device_scenario(device, bandwidth_hz, server_cycles_per_s))
    scenario = fleet.device_scenario(device, REFERENCE_BANDWIDTH_HZ, REFERENCE_SERVER_HZ)
    from laimco.profile import load_profile

    units = load_profile(scenario.model.profile).n_units
    return solve(scenario.replace(task={"min_split": units}))
