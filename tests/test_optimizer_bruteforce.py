"""The exact per-split solver against brute-force searches, on ≥ 200 random scenarios.

Two searches, both written from theory.md §2 with their own arithmetic (tests/scenario_factory.py's
`Reference` for the data and the final limit check), neither using the solver's helpers:

1. **Grid search** over (ρ_d, ρ_s, θ), θ = t_d/(t_d + t_c) the device's share of the time left
   after the server (T − downlink − t_s at f_s = F_s): f_d = C_d/t_d and the power
   p = (N₀B/g)(2^{S/(B·t_c)} − 1) that sends the activation in exactly t_c, every limit
   checked, the best feasible point kept, then a finer grid around it, level after level.
   θ runs over the window the caps allow, [C_d/(F·T_left), 1 − t_P/T_left], since near a
   latency-bound optimum that window is far narrower than any fixed grid step.
2. **Boundary search**, strong where the grid search is weak: a grid over ρ_s refined around
   its best point, and for each ρ_s a grid over the upload time t_c (refined by golden-section
   search) of the most device cycles that fit: C(t_c) = min(F·t_d, ((E − e_c(t_c))·t_d²/κ)^{1/3}),
   t_d = T_left − t_c. The least device ratio carrying that many cycles (and meeting the
   memory limit) is the best ρ_d for this ρ_s, since the distortion grows with ρ_d. With tied
   ratios the grid runs over the common ρ and keeps the feasible ones. The point found is
   rebuilt as a full decision (p, f_d from the times) and every limit checked again.

Using the whole time budget loses nothing (a longer t_d or t_c only lowers f_d or p), and the
server's energy is not charged to the device, so both searches cover the problem.

Scenarios: `scenario_factory.random_case` (MiniLM or synthetic profiles, all four laws, tied and
separate ratios, random budgets, bandwidth, server share, device frequency, κ, min_split,
memory, Rayleigh outage design): 72 base scenarios, each solved at its design gain and at four
other path gains (×0.05 … ×20) in one vectorized call (`build_problem(..., gain=...)`), so
360 instances, of which ≥ 200 (in practice ~290) are feasible.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scenario_factory import GOLDEN, LN2, Case, Reference, random_case

from laimco.optimize import solve
from laimco.optimize.problem import build_problem
from laimco.optimize.ratios import separate_ratios, tied_ratios

N_CHUNKS = 8
BASES_PER_CHUNK = 9
GAINS_PER_BASE = 5  # → 8·9·5 = 360 scenario instances
MIN_FEASIBLE_PER_CHUNK = 25  # → at least 200 feasible instances overall
BEATS_TOL = 1e-6  # no search may beat the optimizer by more than this (relative)
GAP_SLACK = 1e-6  # nor may the optimizer be worse than the boundary search by more than this
GRID_GAP_SLACK = 4.0  # the grid search is coarse: a sanity check that it comes near at all
LIMIT_TOL = 1e-9
COARSE, FINE, LEVELS, ZOOM = 21, 11, 4, 3  # grid search: ±3 steps, 11 points → ×5/3 finer
X_COARSE, X_FINE, X_LEVELS = 41, 17, 13  # boundary search over ρ_s: ±2 steps → ×4 finer
T_GRID, T_GOLDEN = 33, 64  # upload-time grid and golden-section steps


# --------------------------------------------------------------------------------------------
# 1. grid search over (ρ_d, ρ_s, θ)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """The best point of a search (objective inf when nothing feasible was found)."""

    objective: float
    rho_device: float = math.nan
    rho_server: float = math.nan
    upload_time_s: float = math.nan


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    return np.linspace(lo, hi, n) if hi > lo else np.array([lo])


def _relevance(ref: Reference, s: int) -> tuple[bool, bool, bool]:
    """(device ratio matters, server ratio matters, tied ratios couple them) at split s."""
    device = bool(ref.n_device[s] > 0 or ref.cycles_prunable[s] > 0)
    server = bool(ref.n_server[s] > 0 or ref.server_cycles_prunable[s] > 0)
    return device, server, ref.tied and device and server


def _grid_point_limits(ref: Reference, s: int, gain: float, rho_d: np.ndarray,
                       rho_s: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feasibility (every limit) and device energy at broadcast grid points; θ = θ_lo +
    u·(θ_hi − θ_lo) inside the window the frequency and power caps allow."""
    cycles = (1 - rho_d) * ref.cycles_prunable[s] + ref.cycles_fixed[s]
    t_server = ((1 - rho_s) * ref.server_cycles_prunable[s] + ref.server_cycles_fixed[s]) / ref.Fs
    left = ref.T - ref.downlink_at(s) - t_server
    bits = ref.upload_bits[s]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        theta_lo = np.where(cycles > 0, cycles / (ref.F * left), 0.0)
        theta_hi = 1 - ref.shortest_upload_s(s, gain) / left
        theta = theta_lo + u * (theta_hi - theta_lo)
        t_dev = theta * left
        t_up = (1 - theta) * left
        freq = np.where(cycles > 0, cycles / t_dev, 0.0)
        if bits > 0:
            power = ref.noise_power(gain) * np.expm1(bits * LN2 / (ref.B * t_up))
            e_up = np.where(t_up > 0, power * t_up, np.inf)
        else:
            power, e_up = np.zeros_like(t_up), np.zeros_like(t_up)
        energy = ref.kappa * cycles * freq**2 + e_up
        ok = ((left > 0) & (theta_lo <= theta_hi) & (t_dev >= 0) & (t_up >= 0)
              & (t_dev + t_up + t_server + ref.downlink_at(s) <= ref.T * (1 + 1e-12))
              & (freq <= ref.F * (1 + 1e-12)) & (power <= ref.P * (1 + 1e-12))
              & (energy <= ref.E) & ref.memory_ok(s, rho_d)
              & (rho_d <= ref.rho_max) & (rho_s <= ref.rho_max))
    return ok, np.where(ok, energy, np.inf)


def grid_search(ref: Reference, s: int, gain: float) -> Found:
    """Least objective over a zooming grid of (ρ_d, ρ_s, u) at split s (ρ_d = ρ_s if tied)."""
    if s < ref.min_split:
        return Found(math.inf)
    device, server, tied = _relevance(ref, s)
    has_cycles = ref.cycles_prunable[s] + ref.cycles_fixed[s] > 0
    sends = ref.upload_bits[s] > 0
    # a ratio that changes nothing stays at 0; θ is pinned when one side of the device is idle
    box = {"rd": (0.0, ref.rho_max if device else 0.0),
           "rs": (0.0, ref.rho_max if server and not tied else 0.0),
           "u": (0.0, 1.0) if (has_cycles and sends) else ((1.0, 1.0) if has_cycles else
                                                           (0.0, 0.0))}
    limits = {"rd": (0.0, ref.rho_max), "rs": (0.0, ref.rho_max), "u": (0.0, 1.0)}
    n = COARSE
    best, centre = Found(math.inf), {}
    for _ in range(LEVELS + 1):
        rd, u = _grid(*box["rd"], n), _grid(*box["u"], n)
        rs = rd if tied else _grid(*box["rs"], n)
        rho_s = rd[:, None, None] if tied else rs[None, :, None]
        ok, energy = _grid_point_limits(ref, s, gain, rd[:, None, None], rho_s,
                                        u[None, None, :])
        pair_ok = ok.any(axis=2)
        if not pair_ok.any():
            break
        if tied:
            objective = (ref.device_side(s, rd) + ref.server_side(s, rd))[:, None]
        else:
            objective = ref.device_side(s, rd)[:, None] + ref.server_side(s, rs)[None, :]
        objective = np.where(pair_ok, objective, np.inf)
        i, j = np.unravel_index(np.argmin(objective), objective.shape)
        k = int(np.argmin(energy[i, j]))
        if objective[i, j] < best.objective:
            best = Found(float(objective[i, j]), float(rd[i]), float(rd[i] if tied else rs[j]))
            centre = {"rd": float(rd[i]), "rs": best.rho_server, "u": float(u[k])}
        box = {name: (max(limits[name][0], centre[name] - ZOOM * (hi - lo) / (n - 1)),
                      min(limits[name][1], centre[name] + ZOOM * (hi - lo) / (n - 1)))
               if hi > lo else (lo, hi) for name, (lo, hi) in box.items()}
        n = FINE
    return best


# --------------------------------------------------------------------------------------------
# 2. boundary search: ρ_s grid (zooming) × upload-time search, all splits and gains at once
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One row per (scenario, gain, split) problem: the data the boundary search needs."""

    owner: np.ndarray  # index of the scenario (reference) the row belongs to
    gain: np.ndarray  # index of the gain within that scenario
    split: np.ndarray
    energy: np.ndarray
    kappa: np.ndarray
    freq: np.ndarray
    bandwidth: np.ndarray
    time: np.ndarray  # T − downlink
    bits: np.ndarray
    noise: np.ndarray  # N₀B/g
    t_min: np.ndarray  # shortest upload time the power cap allows
    c_prunable: np.ndarray
    c_fixed: np.ndarray
    s_prunable: np.ndarray  # server seconds at F_s
    s_fixed: np.ndarray
    floor: np.ndarray  # least device ratio the memory allows
    rho_max: np.ndarray
    device: np.ndarray  # the device ratio matters
    server: np.ndarray  # the server ratio matters
    tied: np.ndarray  # tied ratios and both matter

    @staticmethod
    def build(problems: list[tuple[Reference, np.ndarray]]) -> Batch:
        rows: list[dict[str, float]] = []
        for owner, (ref, gains) in enumerate(problems):
            for r, g in enumerate(gains):
                for s in range(ref.min_split, ref.L + 1):
                    device, server, tied = _relevance(ref, s)
                    rows.append({
                        "owner": owner, "gain": r, "split": s, "energy": ref.E,
                        "kappa": ref.kappa, "freq": ref.F, "bandwidth": ref.B,
                        "time": ref.T - ref.downlink_at(s), "bits": ref.upload_bits[s],
                        "noise": ref.noise_power(g), "t_min": ref.shortest_upload_s(s, g),
                        "c_prunable": ref.cycles_prunable[s], "c_fixed": ref.cycles_fixed[s],
                        "s_prunable": ref.server_cycles_prunable[s] / ref.Fs,
                        "s_fixed": ref.server_cycles_fixed[s] / ref.Fs,
                        "floor": ref.memory_floor(s), "rho_max": ref.rho_max,
                        "device": device, "server": server, "tied": tied})
        columns = {name: np.array([row[name] for row in rows]) for name in rows[0]}
        for name in ("owner", "gain", "split"):
            columns[name] = columns[name].astype(np.intp)
        for name in ("device", "server", "tied"):
            columns[name] = columns[name].astype(bool)
        return Batch(**columns)


def _most_cycles(b: Batch, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row and time left (rows, N): the most device cycles that fit some upload time
    t_c ∈ [t_P, T_left], and that t_c; −inf where none fits."""
    col = {name: getattr(b, name)[:, None] for name in
           ("bits", "noise", "t_min", "energy", "kappa", "freq", "bandwidth")}

    def cycles_at(t_c: np.ndarray) -> np.ndarray:
        extra = (1,) * (t_c.ndim - 2)
        c = {k: v.reshape(v.shape + extra) for k, v in col.items()}
        lft = left.reshape(left.shape + extra)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            e_up = np.where(c["bits"] > 0, c["noise"] * t_c
                            * np.expm1(c["bits"] * LN2 / (c["bandwidth"] * t_c)), 0.0)
            spare = c["energy"] - e_up
            t_dev = lft - t_c
            fit = np.cbrt(np.maximum(spare, 0.0) * np.maximum(t_dev, 0.0) ** 2 / c["kappa"])
            cycles = np.minimum(c["freq"] * t_dev, fit)
        return np.where((spare >= 0) & (t_dev >= 0) & np.isfinite(cycles), cycles, -np.inf)

    sends = col["bits"] > 0
    lo = np.where(sends, col["t_min"], 0.0) + 0 * left
    hi = np.where(sends, np.maximum(left, lo), 0.0)
    u = np.linspace(0.0, 1.0, T_GRID)
    grid = lo[..., None] + u * (hi - lo)[..., None]
    values = cycles_at(grid)
    k = np.argmax(values, axis=-1)
    best = np.take_along_axis(values, k[..., None], axis=-1)[..., 0]
    best_t = np.take_along_axis(grid, k[..., None], axis=-1)[..., 0]
    step = (hi - lo) / (T_GRID - 1)
    a, z = np.maximum(best_t - step, lo), np.minimum(best_t + step, hi)
    x1, x2 = z - GOLDEN * (z - a), a + GOLDEN * (z - a)
    f1, f2 = cycles_at(x1), cycles_at(x2)
    for _ in range(T_GOLDEN):
        right = (f1 < f2) | ((f1 == -np.inf) & (f2 == -np.inf))
        a, z = np.where(right, x1, a), np.where(right, z, x2)
        x1n = np.where(right, x2, z - GOLDEN * (z - a))
        x2n = np.where(right, a + GOLDEN * (z - a), x1)
        f1n = np.where(right, f2, cycles_at(x1n))
        f2n = np.where(right, cycles_at(x2n), f1)
        x1, x2, f1, f2 = x1n, x2n, f1n, f2n
    candidates = np.stack([best, f1, f2])
    times = np.stack([best_t, x1, x2])
    pick = np.argmax(candidates, axis=0)
    cycles = np.take_along_axis(candidates, pick[None], axis=0)[0]
    t_c = np.take_along_axis(times, pick[None], axis=0)[0]
    return np.where(left >= lo, cycles, -np.inf), t_c


def boundary_search(problems: list[tuple[Reference, np.ndarray]]) -> list[list[list[Found]]]:
    """Best point of every (scenario, gain, split) at once: result[scenario][gain][split]."""
    found = [[[Found(math.inf) for _ in range(ref.L + 1)] for _ in gains]
             for ref, gains in problems]
    b = Batch.build(problems)
    rows = np.arange(b.split.size)
    span = np.where(b.server, b.rho_max, 0.0)
    lo_x, hi_x = np.zeros(span.shape), span.copy()
    best_obj = np.full(span.shape, np.inf)
    best = np.full((span.size, 3), np.nan)  # ρ_d, ρ_s, t_c
    owners = [np.flatnonzero(b.owner == i) for i in range(len(problems))]
    rho_max = b.rho_max[:, None]
    n = X_COARSE
    for _ in range(X_LEVELS + 1):
        x = lo_x[:, None] + np.linspace(0.0, 1.0, n) * (hi_x - lo_x)[:, None]
        left = b.time[:, None] - ((1 - x) * b.s_prunable[:, None] + b.s_fixed[:, None])
        cycles, t_c = _most_cycles(b, left)
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(b.device[:, None], 1 - (cycles - b.c_fixed[:, None])
                            / b.c_prunable[:, None],
                            np.where(cycles >= b.c_fixed[:, None], 0.0, np.inf))
        rho_d = np.maximum(np.maximum(need, b.floor[:, None]), 0.0)
        rho_d = np.where(np.isnan(rho_d), np.inf, rho_d)
        ok = np.isfinite(cycles) & (rho_d <= rho_max)
        ok &= ~b.tied[:, None] | (x >= rho_d)
        rho_d = np.where(b.tied[:, None], x, np.where(ok, rho_d, 0.0))
        objective = np.full(x.shape, np.inf)
        for i, (ref, _) in enumerate(problems):
            mine = owners[i]
            dev, srv = ref.sides_at_splits(b.split[mine], rho_d[mine], x[mine])
            objective[mine] = np.where(ok[mine], dev + srv, np.inf)
        j = np.argmin(objective, axis=1)
        value = objective[rows, j]
        better = value < best_obj
        best_obj = np.where(better, value, best_obj)
        best[better] = np.stack([rho_d[rows, j], x[rows, j], t_c[rows, j]], axis=1)[better]
        centre = np.where(np.isfinite(best[:, 1]), best[:, 1], 0.0)
        step = (hi_x - lo_x) / (n - 1)
        lo_x = np.where(span > 0, np.maximum(centre - 2 * step, 0.0), 0.0)
        hi_x = np.where(span > 0, np.minimum(centre + 2 * step, b.rho_max), 0.0)
        n = X_FINE
    for i in np.flatnonzero(np.isfinite(best_obj)):
        found[b.owner[i]][b.gain[i]][b.split[i]] = Found(float(best_obj[i]),
                                                         *(float(v) for v in best[i]))
    return found


def rebuild_and_check(ref: Reference, s: int, gain: float, point: Found) -> list[str]:
    """The boundary search's point as a full decision (p and f_d from the times), checked."""
    cycles = float(ref.device_cycles(s, point.rho_device))
    left = ref.T - ref.downlink_at(s) - float(ref.server_time(s, point.rho_server))
    t_c = point.upload_time_s if ref.upload_bits[s] > 0 else 0.0
    t_d = left - t_c
    power = float(ref.power_for(s, t_c, gain)) if ref.upload_bits[s] > 0 else 0.0
    freq = cycles / t_d if cycles > 0 else 0.0
    return ref.violated_limits(s, point.rho_device, point.rho_server, power, freq, ref.Fs,
                               gain, rel=1e-12)


# --------------------------------------------------------------------------------------------
# solver runs (cached per base scenario, so every test of a chunk shares them)
# --------------------------------------------------------------------------------------------


def _base_seed(chunk: int, index: int) -> int:
    return 1000 + chunk * BASES_PER_CHUNK + index


def _gains(ref: Reference, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 77)
    design = ref.design_gain()
    others = design * np.exp(rng.uniform(np.log(0.05), np.log(20), GAINS_PER_BASE - 1))
    return np.concatenate([[design], others])


@functools.cache
def _solved(seed: int) -> tuple[Case, Reference, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(case, reference, gains, objective, ρ_d, ρ_s), the last three of shape (R, L+1)."""
    case = random_case(seed)
    ref = Reference(case.scenario, case.profile)
    gains = _gains(ref, seed)
    problem = build_problem(case.scenario, case.profile, gain=gains)
    solution = (tied_ratios if ref.tied else separate_ratios)(problem)
    return (case, ref, gains, np.asarray(solution.objective), np.asarray(solution.rho_device),
            np.asarray(solution.rho_server))


def _rel(a: float, b: float, scale: float) -> float:
    return abs(a - b) / max(abs(b), scale)


@pytest.mark.parametrize("chunk", range(N_CHUNKS))
def test_no_search_beats_the_optimizer_and_the_optimizer_matches_the_best_found(
        chunk: int) -> None:
    """Per instance and split: (a) the solver's ratios are feasible (own least-energy check)
    and scored as the reference scores them; (b) neither search finds a feasible point better
    than the solver's objective by 1e-6 relative, and a split the solver calls infeasible has
    no feasible point; (c) the boundary search comes within 1e-6 of the solver's objective and
    the grid search within 10 %; (d) at least 25 of the chunk's 36 instances are feasible."""
    feasible_instances = 0
    worst = {"boundary": 0.0, "grid": 0.0}
    solved = [_solved(_base_seed(chunk, index)) for index in range(BASES_PER_CHUNK)]
    chunk_boundary = boundary_search([(ref, gains) for _, ref, gains, *_ in solved])
    for index in range(BASES_PER_CHUNK):
        seed = _base_seed(chunk, index)
        case, ref, gains, objective, rho_d, rho_s = _solved(seed)
        boundary = chunk_boundary[index]
        for r, gain in enumerate(gains):
            where = f"{case.label}, gain[{r}] = {gain!r}"
            feasible_instances += bool(np.isfinite(objective[r]).any())
            for s in range(ref.L + 1):
                opt = float(objective[r, s])
                scale = 1e-12 * max(ref.objective_scale(s), 1e-300)
                if math.isfinite(opt):
                    mine = ref.objective(s, rho_d[r, s], rho_s[r, s])
                    assert _rel(mine, opt, scale) <= 1e-9, (where, s, mine, opt)
                    broken = ref.ratios_feasible(s, rho_d[r, s], rho_s[r, s], gain, LIMIT_TOL)
                    assert not broken, (f"{where}: split {s} ratios ({rho_d[r, s]}, "
                                        f"{rho_s[r, s]}) break {broken}\n{case.describe()}")
                    if ref.tied and ref.n_device[s] > 0 and ref.n_server[s] > 0:
                        assert rho_d[r, s] == pytest.approx(rho_s[r, s], rel=1e-12)
                for name, found in (("boundary", boundary[r][s]),
                                    ("grid", grid_search(ref, s, gain))):
                    if not math.isfinite(found.objective):
                        continue
                    if name == "boundary":
                        broken = rebuild_and_check(ref, s, gain, found)
                        assert not broken, (where, s, found, broken)  # a bug in the search
                    assert math.isfinite(opt), (
                        f"{where}: split {s}: the solver says infeasible but the {name} "
                        f"search found {found}\n{case.describe()}")
                    assert found.objective >= opt * (1 - BEATS_TOL) - scale, (
                        f"{where}: split {s}: the {name} search's {found} beats the solver's "
                        f"{opt} (ρ_d = {rho_d[r, s]}, ρ_s = {rho_s[r, s]})\n{case.describe()}")
                    gap = _rel(found.objective, opt, scale)
                    worst[name] = max(worst[name], gap)
                    slack = GAP_SLACK if name == "boundary" else GRID_GAP_SLACK
                    assert found.objective <= opt * (1 + slack) + scale, (
                        f"{where}: split {s}: the solver's {opt} is worse than the {name} "
                        f"search's {found}\n{case.describe()}")
                if math.isfinite(opt):
                    assert math.isfinite(boundary[r][s].objective), (
                        f"{where}: split {s}: the solver's ratios ({rho_d[r, s]}, "
                        f"{rho_s[r, s]}) are feasible but the boundary search found nothing")
    print(f"chunk {chunk}: {feasible_instances} feasible instances; largest relative excess "
          f"of the searches over the optimizer: boundary {worst['boundary']:.3g}, "
          f"grid {worst['grid']:.3g}")
    assert feasible_instances >= MIN_FEASIBLE_PER_CHUNK


@pytest.mark.parametrize("chunk", range(N_CHUNKS))
def test_returned_decision_meets_every_limit_and_takes_the_best_split(chunk: int) -> None:
    """`solve` at the design gain: status matches per-split feasibility, every limit holds
    (own arithmetic, 1e-9 relative), no NaN, the split is the best one, the reported costs are
    the reference's."""
    for index in range(BASES_PER_CHUNK):
        seed = _base_seed(chunk, index)
        case, ref, gains, objective, _, _ = _solved(seed)
        decision = solve(case.scenario)
        best = float(np.min(objective[0]))
        if not math.isfinite(best):
            assert decision.status == "infeasible", case.describe()
            assert decision.reasons, case.describe()
            continue
        assert decision.status == "optimal", (decision, case.describe())
        point = decision.point
        assert point is not None
        values = [point.split, point.rho_device, point.rho_server, point.power_w,
                  point.freq_device_hz, point.freq_server_hz, point.objective]
        assert all(math.isfinite(v) for v in values), decision
        s = point.split
        args = (s, point.rho_device, point.rho_server, point.power_w,
                point.freq_device_hz, point.freq_server_hz, gains[0])
        broken = ref.violated_limits(*args, rel=LIMIT_TOL)  # type: ignore[arg-type]
        assert not broken, (f"decision {decision} breaks {broken}\n{case.describe()}")
        costs = ref.costs(*args)  # type: ignore[arg-type]
        scale = 1e-12 * ref.objective_scale(s)
        assert _rel(costs.objective, best, scale) <= 1e-9, (decision, best, case.describe())
        assert _rel(point.objective, best, scale) <= 1e-9
        assert point.costs.latency_total_s == pytest.approx(costs.latency, rel=1e-9)
        assert point.costs.energy_total_j == pytest.approx(costs.energy, rel=1e-9, abs=1e-18)
        assert point.costs.memory_bytes == pytest.approx(costs.memory, rel=1e-9)


@pytest.mark.parametrize("seed", range(16))
def test_tiny_budgets_are_infeasible_for_the_optimizer_and_both_searches(seed: int) -> None:
    case = random_case(5000 + seed, tiny_budgets=True)
    ref = Reference(case.scenario, case.profile)
    gain = ref.design_gain()
    decision = solve(case.scenario)
    assert decision.status == "infeasible", case.describe()
    assert decision.reasons and all(r.message for r in decision.reasons)
    problem = build_problem(case.scenario, case.profile)
    solution = (tied_ratios if ref.tied else separate_ratios)(problem)
    assert not np.isfinite(solution.objective).any()
    boundary = boundary_search([(ref, np.array([gain]))])[0][0]
    for s in range(ref.L + 1):
        assert not math.isfinite(grid_search(ref, s, gain).objective), (s, case.describe())
        assert not math.isfinite(boundary[s].objective), (s, case.describe())


# --------------------------------------------------------------------------------------------
# known bug: a feasible split whose device part has no prunable weights is called infeasible
# --------------------------------------------------------------------------------------------

# random_case(1009): MiniLM, tied ratios, slow server share, weak channel. At split 0 (on-server)
# the device only uploads the 8192-bit input at full power (t_P ≈ 1.58 ms) and the server must
# prune ρ_s ≥ 0.0822 to fit the 0.53 s budget; every ρ_s above that is feasible.
SCENARIO_1009: dict[str, dict[str, object]] = {
    "model": {"profile": "minilm-l6", "bytes_per_weight": 1.0},
    "device": {"cpu_freq_max_hz": 827722019.3395865, "flops_per_cycle": 4.0,
               "kappa": 2.854387834993005e-28, "tx_power_max_w": 0.309933111612624,
               "energy_budget_j": 0.023877986521674072, "memory_bytes": 32009579.215753943},
    "server": {"cpu_freq_max_hz": 78898263.7983055, "flops_per_cycle": 64.0},
    "channel": {"bandwidth_hz": 260135.78047059113, "noise_psd_w_per_hz": 5.675468492192987e-21,
                "path_gain": 4.766486229410314e-09, "fading": "none"},
    "task": {"latency_budget_s": 0.5306887714269551, "downlink_s": 0.0, "min_split": 0,
             "rho_max": 0.6232748751093785, "ratios": "tied"},
    "distortion": {"mode": "paper", "law": "empirical", "k_device": 0.10540606569580566,
                   "k_server": 0.6248106462744566},
}
# the same scenario with a better channel: the solver then picks split 1 at objective 2528
GAIN_1009_BETTER = 3.525745541138148e-08
# on-server decision: split 0, ρ_d = 0, ρ_s = 0.09, p = P, f_d = 0, f_s = F_s — objective 6.19,
# latency 99.2 % of the budget, energy 2 %
ON_SERVER_RHO = 0.09


def _scenario_1009(path_gain: float | None = None) -> Case:
    from laimco.config import scenario_from_dict
    from laimco.profile import load_profile

    data = {k: dict(v) for k, v in SCENARIO_1009.items()}
    if path_gain is not None:
        data["channel"]["path_gain"] = path_gain
    return Case(scenario_from_dict(data), load_profile("minilm-l6"), "scenario 1009")


@pytest.mark.parametrize("path_gain", [None, GAIN_1009_BETTER])
def test_on_server_decision_of_scenario_1009_is_feasible(path_gain: float | None) -> None:
    """The witness for the known bug below: checked by the reference and by laimco's own
    evaluator."""
    from laimco.optimize.evaluate import decision_costs, limit_usage, objective_at, violations

    case = _scenario_1009(path_gain)
    ref = Reference(case.scenario, case.profile)
    gain = ref.design_gain()
    decision = (0, 0.0, ON_SERVER_RHO, ref.P, 0.0, ref.Fs, gain)
    assert not ref.violated_limits(*decision, rel=0.0)
    problem = build_problem(case.scenario, case.profile)
    costs = decision_costs(problem, *decision)
    usage = limit_usage(problem, *decision[:-1], costs)
    assert not violations(usage, 0.0, ON_SERVER_RHO, ref.P)
    assert usage["latency"] < 0.995
    objective = objective_at(problem, 0, 0.0, ON_SERVER_RHO)
    assert objective == pytest.approx(ref.objective(0, 0.0, ON_SERVER_RHO), rel=1e-12)
    assert objective < 6.2


def test_regression_scenario_1009_on_server_at_the_upload_edge_is_feasible() -> None:
    case = _scenario_1009()
    decision = solve(case.scenario)
    assert decision.status == "optimal", decision.reasons
    assert decision.point is not None and decision.point.objective < 6.2


def test_regression_scenario_1009_better_channel_keeps_the_best_split() -> None:
    case = _scenario_1009(GAIN_1009_BETTER)
    decision = solve(case.scenario)
    assert decision.status == "optimal"
    assert decision.point is not None and decision.point.objective < 6.2


def test_regression_separate_ratios_keep_a_split_without_device_weights() -> None:
    case = random_case(1027)
    ref = Reference(case.scenario, case.profile)
    gain = ref.design_gain()
    witness = boundary_search([(ref, np.array([gain]))])[0][0][1]
    assert witness.objective == pytest.approx(5658.3161, rel=1e-6)
    assert not rebuild_and_check(ref, 1, gain, witness)
    solution = separate_ratios(build_problem(case.scenario, case.profile))
    assert np.isfinite(solution.objective[1])
