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

import numpy as np
from numpy.typing import NDArray

from laimco.fleet.answer import fleet_answer
from laimco.fleet.boxes import Boxes
from laimco.fleet.branching import BranchResult, branch_and_bound, promising
from laimco.fleet.diving import dive
from laimco.fleet.fitting import fit_everyone
from laimco.fleet.fleet import Fleet, FleetObjective
from laimco.fleet.menu_lp import HULL_FROM_ITEMS, MenuSolution, solve_menu, solve_whole
from laimco.fleet.runs import rank_within, run_starts
from laimco.fleet.share_points import (
    SharePoints,
    ShareValues,
    cut_boxes,
    first_grid,
    servable,
)
from laimco.fleet.small_fleet import (
    EXHAUSTIVE_DEVICES,
    POLISH_DEVICES,
    best_combinations,
    exhaustive_bound,
    polish,
)
from laimco.fleet.solution import FleetSolution
from laimco.fleet.value import fleet_values

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
DEFAULT_GAP = 1e-3
DEFAULT_ROUNDS = 20
# boxes cut per device and round: the ones with the lowest bound among those still open;
# CUTS_PER_ROUND shared among the devices of smaller fleets (docs/theory.md §7.3), divided by
# the single-device problems one evaluation solves (rule pairs × widths: 1 in paper mode)
CUTS_PER_DEVICE = 32
CUTS_PER_ROUND = 20_000
# small fleets branch on the devices the relaxation mixes (branching.py) once the boxes'
# slack is within the target and after the last round, with at most this many relaxations
BRANCH_DEVICES = 24
BRANCH_NODES = 64
# ... also when a round raised the bound by less than this share of the gap target
STALLED = 0.1
# ... over at most this many boxes (those that can still beat the answer, `promising`)
BRANCH_BOXES = 20_000
# fleets up to this size round the points' relaxation by diving (diving.py), fixing at most
# DIVE_FIXES devices; larger ones round each mixed device to one of its points (_round)
DIVE_DEVICES = 100
DIVE_FIXES = 2
# ... over this many points per device, those of least priced cost
NEAR_POINTS = 64
# a box is cut only if its slack exceeds this share of the gap target per device
SLACK_SHARE = 0.25
# cutting passes per round: each pass cuts the boxes still open after the previous one, at the
# same prices (cheaper than a round: no relaxation in between)
REFINE_PASSES = 4
# ... and at most this many for fleets that share CUTS_PER_ROUND (`_refine`)
BUDGET_PASSES = 8
Progress = Callable[[str], None]


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
    devices = np.flatnonzero(servable(fleet, values))
    evaluate = ShareValues(fleet, devices, values)
    x, y, bound = np.zeros(fleet.n_devices), np.zeros(fleet.n_devices), 0.0
    crowded: list[int] = []
    if devices.size:
        boxes, points = first_grid(evaluate, devices.size)
        boxes, points, crowded = fit_everyone(boxes, points, evaluate)
        devices = evaluate.devices
        per_round = int(CUTS_PER_ROUND / _problems_per_evaluation(evaluate))
    if devices.size:
        choice, primal = (np.zeros(devices.size), np.zeros(devices.size)), np.inf
        for round_number in range(max_rounds + 1):
            relaxed = _relaxation(boxes, devices.size)
            found, value, mixed = _primal(points, devices.size, evaluate, gap)
            if value < primal:  # the best answer so far (rounding is not monotone)
                choice, primal = found, value
            previous, bound = bound, max(bound, relaxed.value)
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
                         f"gap {rel:.2e}, points' relaxation {mixed.value:.6g}, "
                         f"{evaluate.calls} evaluations")
            # small fleets branch once the boxes' own slack is within the target (what is
            # left is the relaxation's mixing) or the bound stalls, and after the last round
            if rel > gap and devices.size <= BRANCH_DEVICES and (
                    round_number == max_rounds
                    or mixed.value - bound <= gap * abs(primal)
                    or bound - previous < STALLED * gap * abs(primal)):
                branched = _branch(boxes, points, evaluate, primal, gap,
                                   (relaxed.price_x, relaxed.price_y))
                bound = max(bound, branched.bound)
                if branched.shares is not None and branched.value < primal:
                    choice, primal = branched.shares, branched.value
                used |= branched.weak
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
                            used=used, per_round=per_round)
        if devices.size <= POLISH_DEVICES:
            choice, primal = _polished(choice, evaluate, progress)
        x[devices], y[devices] = choice
    return fleet_answer(fleet, "dual-decomposition", kind, x, y, bound if devices.size else 0.0,
                   started, crowded)


def _polished(choice: tuple[FloatArray, FloatArray], evaluate: ShareValues,
              progress: Progress | None) -> tuple[tuple[FloatArray, FloatArray], float]:
    """The answer of a small fleet polished by share moves between devices (small_fleet.py)."""
    n = evaluate.devices.size
    x, y = choice
    start = evaluate(np.arange(n), x, y)
    x, y, value = polish(x, y, start, evaluate)
    if progress:
        progress(f"polished: objective {start.sum():.9g} → {value.sum():.9g}")
    return (x, y), float(value.sum())


def _relaxation(boxes: Boxes, n: int) -> MenuSolution:
    """The lower bound: one box per device, at its upper corner's cost and lower corner's
    shares (eq. 7.6), relaxed to mixtures."""
    return solve_menu(boxes.device, boxes.x0, boxes.y0, boxes.value_upper, n)


def _primal(points: SharePoints, n: int, evaluate: ShareValues, gap: float
            ) -> tuple[tuple[FloatArray, FloatArray], float, MenuSolution]:
    """A feasible choice: the relaxation over evaluated points, its mixed devices rounded
    (or dived, `_recover`), then every leftover share handed out in proportion (exact sums;
    V only falls)."""
    ok = points.finite()
    mixed = solve_menu(points.device[ok], points.x[ok], points.y[ok], points.value[ok], n)
    if n <= DIVE_DEVICES and mixed.feasible and np.count_nonzero(ok) > HULL_FROM_ITEMS:
        # diving needs a basic solution (at most two devices mixed): HiGHS over each
        # device's points of least priced cost at the relaxation's prices (a heuristic: the
        # answer only needs to be feasible)
        ok = _near_priced_best(points, ok, mixed)
        mixed = solve_whole(points.device[ok], points.x[ok], points.y[ok], points.value[ok], n,
                            1.0, 1.0)
    shares, total = _recover(points, ok, mixed, n, evaluate, gap=gap)
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


def _near_priced_best(points: SharePoints, ok: NDArray[np.bool_], mixed: MenuSolution
                      ) -> NDArray[np.bool_]:
    """Per device the NEAR_POINTS `ok` points of least priced cost w·V + λx + μy at the
    relaxation's prices."""
    items = np.flatnonzero(ok)
    priced = (points.value[items] + mixed.price_x * points.x[items]
              + mixed.price_y * points.y[items])
    order = items[np.lexsort((priced, points.device[items]))]
    keep = np.zeros(ok.size, dtype=bool)
    keep[order[rank_within(points.device[order]) < NEAR_POINTS]] = True
    return keep


def _recover(points: SharePoints, usable: NDArray[np.bool_], mixed: MenuSolution, n: int,
             evaluate: ShareValues, record: bool = True, gap: float | None = None
             ) -> tuple[tuple[FloatArray, FloatArray], float]:
    """The relaxation's mixture over the `usable` points rounded to one point per device, the
    leftover handed out, V evaluated at the final shares (and kept as points). With a `gap`,
    fleets of up to DIVE_DEVICES whose rounding lost more than half of it against the
    relaxation also dive (diving.py); the better of the two roundings is kept."""
    device, x, y = points.device[usable], points.x[usable], points.y[usable]
    value = points.value[usable]
    best = _rounded(device, x, y, value, _round(device, x, y, value, mixed.weights, n),
                    evaluate, points if record else None)
    lost = best[1] - mixed.value
    if gap is not None and n <= DIVE_DEVICES and lost > 0.5 * gap * abs(best[1]):
        active, weights = dive(device, x, y, value, n, mixed, DIVE_FIXES)
        # inactive items are never picked
        pick = _round(device, x, y, value, np.where(active, weights, -1.0), n)
        dived = _rounded(device, x, y, value, pick, evaluate, points if record else None)
        if dived[1] < best[1]:
            best = dived
    return best


def _rounded(device: IntArray, x: FloatArray, y: FloatArray, value: FloatArray,
             pick: IntArray, evaluate: ShareValues, record: SharePoints | None
             ) -> tuple[tuple[FloatArray, FloatArray], float]:
    """The picked points' shares with the leftover handed out, V evaluated there (and kept
    in `record`)."""
    n = pick.size
    share_x, share_y = x[pick].copy(), y[pick].copy()
    # a share of one resource without the other buys nothing (V(x, 0) = V(0, y) = V(0, 0))
    idle = (share_x == 0) | (share_y == 0)
    share_x[idle], share_y[idle] = 0.0, 0.0
    hand_out_leftover(share_x, share_y, value[pick])
    final = evaluate(np.arange(n), share_x, share_y)
    if record is not None:
        record.add(np.arange(n), share_x, share_y, final)
    return (share_x, share_y), float(final.sum())


def _branch(boxes: Boxes, points: SharePoints, evaluate: ShareValues, incumbent: float,
            gap: float, prices: tuple[float, float]) -> BranchResult:
    """Branch and bound over the boxes (branching.py) with each branch's answer from its
    points; only the boxes and points that can beat the incumbent at the relaxation's
    `prices` take part (reduced costs, `promising`)."""
    n = evaluate.devices.size
    taken = np.flatnonzero(promising(boxes, *prices, incumbent))
    if taken.size > BRANCH_BOXES:  # each relaxation would cost too much: no branching
        return BranchResult(-np.inf, incumbent, None, 0, np.zeros(boxes.size, dtype=bool))
    all_boxes, boxes = boxes, boxes.take(taken)
    keep = promising(Boxes(points.device, points.x, points.x, points.y, points.y,
                           points.value), *prices, incumbent)
    frozen = SharePoints(points.device[keep], points.x[keep], points.y[keep],
                         points.value[keep])

    def primal(mask: NDArray[np.bool_]) -> tuple[tuple[FloatArray, FloatArray], float] | None:
        usable = mask & frozen.finite()
        if np.bincount(frozen.device[usable], minlength=n).min() == 0:
            return None
        mixed = solve_menu(frozen.device[usable], frozen.x[usable], frozen.y[usable],
                           frozen.value[usable], n)
        if not mixed.feasible:
            return None
        return _recover(frozen, usable, mixed, n, evaluate, record=False)

    result = branch_and_bound(boxes, n, frozen.x, frozen.y, frozen.device, primal, incumbent,
                              gap, BRANCH_NODES)
    weak = np.zeros(all_boxes.size, dtype=bool)
    weak[taken[result.weak]] = True
    return BranchResult(result.bound, result.value, result.shares, result.nodes, weak)


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
    pick = order[run_starts(device[order])]
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


def _refine(boxes: Boxes, points: SharePoints, prices: list[tuple[float, float]],
            evaluate: ShareValues, worth: float = 0.0,
            used: NDArray[np.bool_] | None = None, per_round: int = CUTS_PER_ROUND) -> Boxes:
    """Cut the boxes the relaxation uses (`used`: their lower corners are what makes it
    optimistic) and those that could still hold a point better, at some of the given prices,
    than the device's best evaluated point there by more than `worth` (a box whose slack is
    below it cannot keep the gap above the target): per device and price pair the `cuts`
    boxes with the lowest bound, in passes at the same prices, each on the boxes still open
    after the previous one. `cuts` is CUTS_PER_DEVICE (then REFINE_PASSES passes), or the
    round's budget `per_round` shared among the devices where that is more (then passes, at
    most BUDGET_PASSES, while the round's cuts stay within the budget): the open boxes near a
    device's optimum grow in number as the slack falls (docs/theory.md §7.3)."""
    n = int(boxes.device.max()) + 1
    # the exhaustive bound and answer of the smallest fleets enumerate boxes and points:
    # they keep the fixed number of cuts
    few = n <= EXHAUSTIVE_DEVICES
    cuts = CUTS_PER_DEVICE if few else max(CUTS_PER_DEVICE, per_round // n)
    budgeted = cuts > CUTS_PER_DEVICE
    done = 0
    for _ in range(BUDGET_PASSES if budgeted else REFINE_PASSES):
        cut = _to_cut(boxes, points, prices, worth, used, cuts)
        if cut.size == 0:
            break
        boxes = cut_boxes(boxes, cut, points, evaluate, *prices[0])
        done, used = done + cut.size, None
        if budgeted and done + n * CUTS_PER_DEVICE > per_round:
            break
    return boxes


def _problems_per_evaluation(evaluate: ShareValues) -> float:
    """The single-device problems (rule pairs × activation widths) one evaluation solves,
    averaged over the served devices: what an evaluation costs, in paper-mode units."""
    problems = np.array([v.problems_per_row for v in evaluate.values], dtype=float)
    return float(np.mean(problems[evaluate.fleet.class_index[evaluate.devices]]))


def _to_cut(boxes: Boxes, points: SharePoints, prices: list[tuple[float, float]],
            worth: float, used: NDArray[np.bool_] | None, cuts: int) -> IntArray:
    """The boxes `_refine` cuts in one pass."""
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
        candidates = np.flatnonzero(open_)
        ranked = candidates[np.lexsort((low[candidates], boxes.device[candidates]))]
        cut_mask[ranked[rank_within(boxes.device[ranked]) < cuts]] = True
    return np.flatnonzero(cut_mask)
