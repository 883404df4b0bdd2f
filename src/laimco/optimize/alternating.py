"""The paper's kind of solution method as a baseline: alternating optimization per split
(docs/theory.md §4.8).

For each allowed split, alternate between two convex subproblems, each solved by scipy's
SLSQP (a generic method, no problem-specific search):

(a) the pruning ratios (ρ_d, ρ_s) for fixed transmit power p and device frequency f_d — the
    convex objective (eq. 3.10) under constraints affine in the ratios (eq. 4.19);
(b) (p, f_d) for fixed ratios, solved in the upload and device times (t_c, t_d), where it is
    convex: the largest equal slack on the latency and energy limits (eq. 4.20), or the least
    resource use weighted by step (a)'s multipliers (eq. 4.21) — whichever lets the next (a)
    go lower — always keeping the current ratios feasible,

from several starts, until a round improves the objective by less than a relative tolerance;
then the best split. Every iterate is feasible, so the objective never rises (eq. 4.22); it
can stop where no single block can improve although a joint move would (eq. 4.23) — the exact
solver (`joint`, §4.1–4.3) is the reference it is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from laimco.optimize.alternating_steps import (
    SplitData,
    SplitObjective,
    ratio_step,
    resource_step,
    split_data,
)
from laimco.optimize.device_capacity import DevicePolicy
from laimco.optimize.problem import SplitProblem
from laimco.optimize.ratios import RatioSolution, searched_ratios

RELATIVE_TOL = 1e-9      # stop when an (a)+(b) round improves the objective by less than this
MAX_ROUNDS = 200         # (a)+(b) rounds per start


@dataclass(frozen=True)
class Point:
    """One iterate: ratios, power and device frequency, its objective."""

    rho_device: float
    rho_server: float
    power_w: float
    freq_device_hz: float
    objective: float


def _times_of(data: SplitData, rho_d: float, power_w: float, freq_hz: float
              ) -> tuple[float, float]:
    cycles = data.device_cycles(rho_d)
    return (cycles / freq_hz if cycles > 0 else 0.0,
            data.upload_time_s(power_w) if data.bits_per_hz > 0 else 0.0)


def alternate(data: SplitData, objective: SplitObjective, rho_start: tuple[float, float],
              weights: tuple[float, float]) -> Point | None:
    """One start: (b) at the starting ratios (least energy, then the given weights), then
    (a), (b), (a), … until an (a)+(b) round improves the objective by less than RELATIVE_TOL
    (eq. 4.22). Step (b) tries both its balanced and its multiplier-weighted goal and keeps
    whichever lets the next (a) go lower."""
    rho_d, rho_s = rho_start
    first = resource_step(data, rho_d, rho_s, "least-energy")
    if first is None:
        return None
    power, freq = resource_step(data, rho_d, rho_s, "weighted", _times_of(data, rho_d, *first),
                                weights) or first
    best: Point | None = None
    step = ratio_step(data, objective, power, freq, (rho_d, rho_s))
    for _ in range(MAX_ROUNDS):
        if step is None:
            break
        rho_d, rho_s, lam_t, lam_e = step
        value = objective.value(rho_d, rho_s)
        improved = best is None or value < best.objective * (1 - RELATIVE_TOL)
        if best is None or value <= best.objective:
            best = Point(rho_d, rho_s, power, freq, value)
        if not improved or (lam_t <= 0 and lam_e <= 0):
            break  # (a) sits at its unconstrained minimum, or the round gained too little
        current = _times_of(data, rho_d, power, freq)
        candidates = [resource_step(data, rho_d, rho_s, "balanced", current)]
        total = lam_t + lam_e
        candidates.append(resource_step(data, rho_d, rho_s, "weighted", current,
                                        (lam_t / total, lam_e / total)))
        options = []
        for moved in (c for c in candidates if c is not None):
            nxt = ratio_step(data, objective, *moved, (rho_d, rho_s))
            if nxt is not None:
                options.append((objective.value(nxt[0], nxt[1]), moved, nxt))
        if not options:
            break
        _, (power, freq), step = min(options, key=lambda o: o[0])
    return best


def alternating_split(problem: SplitProblem, split: int, gain: float, n_starts: int,
                      rng: np.random.Generator) -> Point | None:
    """The best point over `n_starts` starts at one split: the first from (ρ_max, ρ_max) with
    the least-energy resources, the others from random ratios and random resource weights.
    None when the split is infeasible (tested exactly at (ρ_max, ρ_max): step (b)'s
    least-energy problem is convex)."""
    data = split_data(problem, split, gain)
    objective = SplitObjective(problem, data)
    top = (data.rho_hi_device, data.rho_hi_server)
    if data.rho_lo_device > data.rho_hi_device or resource_step(
            data, *top, "least-energy") is None:
        return None
    best = alternate(data, objective, top, (0.0, 1.0))
    for _ in range(max(n_starts, 1) - 1):
        rho = (float(rng.uniform(data.rho_lo_device, data.rho_hi_device)),
               float(rng.uniform(0.0, data.rho_hi_server)))
        for _ in range(30):  # halfway toward (ρ_max, ρ_max) until the ratios can be met
            if resource_step(data, *rho, "least-energy") is not None:
                break
            rho = ((rho[0] + top[0]) / 2, (rho[1] + top[1]) / 2)
        else:
            rho = top
        weight = float(rng.uniform())
        found = alternate(data, objective, rho, (weight, 1 - weight))
        if found is not None and (best is None or found.objective < best.objective):
            best = found
    if best is None or problem.quantization_at(split) == 0:
        return best
    # the quantized uplink's distortion is a constant at a split (eq. 6.5): added once here
    return replace(best, objective=best.objective + problem.quantization_at(split))


def alternating_ratios(problem: SplitProblem, policy: DevicePolicy,
                       n_starts: int, seed: int) -> RatioSolution:
    """Per split (and per gain, for a problem over realizations): the ratios and objective
    alternating optimization finds. `policy` must be "free" (the method sets p and f_d)."""
    if policy != "free":
        raise ValueError("alternating optimization chooses power and frequency itself: "
                         "policy must be 'free'")
    rng = np.random.default_rng(seed)

    def search(split: int, gain: float) -> tuple[float, float, float] | None:
        found = alternating_split(problem, split, gain, n_starts, rng)
        return None if found is None else (found.objective, found.rho_device,
                                           found.rho_server)

    return searched_ratios(problem, search)
