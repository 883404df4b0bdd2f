"""`device_capacity` (the most device cycles that fit a time and an energy budget) against a
brute-force search over the upload time, its slope against finite differences, and the
monotone root finder `increasing_root` against scipy's brentq.

Reference (docs/theory.md §2, written here from scratch): the device computes C cycles in t_d at
f_d = C/t_d ≤ F with energy κC³/t_d², and uploads S bits in t_c at the power
p = w·(2^{S/(B t_c)} − 1) ≤ P with energy p·t_c, t_d + t_c ≤ T, total energy ≤ E. For a fixed
upload time t_c the largest C is

    free:           min(F·(T − t_c), ((E − e(t_c))·(T − t_c)²/κ)^{1/3})
    max-frequency:  min(F·(T − t_c), (E − e(t_c))/(κF²))        (f_d = F, the rest idles)
    max-power:      the free formula at t_c = S/r(P) only

and C* is its maximum over t_c ∈ [t_P, T] (−inf when no t_c leaves E − e(t_c) ≥ 0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from laimco.optimize.device_capacity import capacity_at, capacity_curve, capacity_point
from laimco.optimize.roots import increasing_root, increasing_root_bracket

LN2 = math.log(2.0)
GOLDEN = (math.sqrt(5.0) - 1) / 2
POLICIES = ("free", "max-power", "max-frequency")
N_DEVICES = 60  # scalar parameters (B, E, P, κ, F) per call
N_BUDGETS = 40  # broadcast elements (T, S, w) per call
GRID = 1001
CAPACITY_REL_TOL = 1e-8


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int | None = None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _instances(seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    scalars = {"bandwidth_hz": float(_log_uniform(rng, 1e5, 1e8)),
               "energy_j": float(_log_uniform(rng, 1e-4, 0.3)),
               "tx_power_max_w": float(_log_uniform(rng, 0.01, 2.0)),
               "kappa": float(_log_uniform(rng, 1e-29, 1e-27)),
               "cpu_freq_max_hz": float(_log_uniform(rng, 1e8, 5e9))}
    n = N_BUDGETS
    bits = _log_uniform(rng, 1e3, 1e7, n)
    bits[rng.random(n) < 0.1] = 0.0
    arrays = {"time_s": _log_uniform(rng, 1e-3, 1.0, n),
              "upload_bits": bits,
              "noise_to_gain_w": _log_uniform(rng, 1e-12, 1e-6, n)}
    return scalars, arrays


def _upload_energy(t: np.ndarray, bits: np.ndarray, w: np.ndarray, bandwidth: float):
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        e = w * t * np.expm1(bits * LN2 / (bandwidth * t))
        return np.where(bits > 0, np.where(t > 0, e, np.inf), 0.0)


def _cycles_at(t_c: np.ndarray, policy: str, T: np.ndarray, E: np.ndarray, bits: np.ndarray,
               w: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """The largest C that fits with upload time t_c (−inf when the upload alone is too
    costly or too long)."""
    F, kappa = p["cpu_freq_max_hz"], p["kappa"]
    spare = E - _upload_energy(t_c, bits, w, p["bandwidth_hz"])
    t_d = T - t_c
    with np.errstate(invalid="ignore"):
        if policy == "max-frequency":
            by_energy = spare / (kappa * F**2)
        else:
            by_energy = np.cbrt(np.maximum(spare, 0.0) * np.maximum(t_d, 0.0) ** 2 / kappa)
        cycles = np.minimum(F * t_d, by_energy)
    return np.where((spare >= 0) & (t_d >= 0), cycles, -np.inf)


def brute_force_capacity(policy: str, T: np.ndarray, E: np.ndarray, bits: np.ndarray,
                         w: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """max over t_c of `_cycles_at`: a 1001-point grid on [t_P, T], then golden-section search
    around the best grid point (the function is concave where finite, −inf to its left)."""
    rate_p = p["bandwidth_hz"] * np.log2(1 + p["tx_power_max_w"] / w)
    t_p = np.where(bits > 0, bits / rate_p, 0.0)
    if policy == "max-power":
        return np.where(t_p <= T, _cycles_at(t_p, policy, T, E, bits, w, p), -np.inf)
    span = np.maximum(T - t_p, 0.0)
    u = np.linspace(0.0, 1.0, GRID)
    grid = t_p[:, None] + u[None, :] * span[:, None]
    values = _cycles_at(grid, policy, T[:, None], E[:, None], bits[:, None], w[:, None], p)
    best_index = np.argmax(values, axis=1)
    best = values[np.arange(T.size), best_index]
    a = t_p + np.maximum(best_index - 1, 0) / (GRID - 1) * span
    b = t_p + np.minimum(best_index + 1, GRID - 1) / (GRID - 1) * span

    def f(t: np.ndarray) -> np.ndarray:
        return _cycles_at(t, policy, T, E, bits, w, p)

    x1, x2 = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    f1, f2 = f(x1), f(x2)
    for _ in range(120):
        right = (f1 < f2) | ((f1 == -np.inf) & (f2 == -np.inf))
        a = np.where(right, x1, a)
        b = np.where(right, b, x2)
        x1n = np.where(right, x2, b - GOLDEN * (b - a))
        x2n = np.where(right, a + GOLDEN * (b - a), x1)
        f1n = np.where(right, f2, f(x1n))
        f2n = np.where(right, f(x2n), f1)
        x1, x2, f1, f2 = x1n, x2n, f1n, f2n
    found = np.maximum.reduce([best, f1, f2, f(a), f(b)])
    return np.where(t_p <= T, found, -np.inf)


def _capacity(policy: str, arrays: dict[str, np.ndarray], scalars: dict[str, float]):
    """C*(T) of flat arrays, as the solver evaluates it: the curve, then the capacity at T."""
    curve = capacity_curve(arrays["upload_bits"], arrays["noise_to_gain_w"],
                           policy=policy, time_max_s=arrays["time_s"],  # type: ignore[arg-type]
                           **scalars)
    return capacity_at(curve, arrays["time_s"])


@pytest.mark.parametrize("policy", POLICIES)
def test_capacity_equals_brute_force_over_the_upload_time(policy: str) -> None:
    """Same feasibility; C* within 1e-8 relative of the brute force and never above it by more
    than 1e-12 (an optimistic capacity would let the solver return an infeasible decision);
    the upload time returned really carries C* cycles."""
    n_feasible = n_infeasible = 0
    worst = 0.0
    for seed in range(N_DEVICES):
        scalars, arrays = _instances(seed)
        T = arrays["time_s"]
        E = np.full(T.shape, scalars["energy_j"])
        bits, w = arrays["upload_bits"], arrays["noise_to_gain_w"]
        cap = _capacity(policy, arrays, scalars)
        reference = brute_force_capacity(policy, T, E, bits, w, scalars)
        scale = scalars["cpu_freq_max_hz"] * T
        for i in range(T.size):
            where = (f"policy {policy}, seed {seed}, element {i}: T={T[i]!r}, "
                     f"S={bits[i]!r}, w={w[i]!r}, {scalars}")
            if reference[i] == -np.inf:
                n_infeasible += 1
                assert cap.cycles[i] == -np.inf, (where, cap.cycles[i])
                continue
            n_feasible += 1
            assert np.isfinite(cap.cycles[i]), (where, reference[i])
            floor = 1e-12 * scale[i]
            error = (cap.cycles[i] - reference[i]) / max(reference[i], floor)
            worst = max(worst, abs(error))
            assert error <= 1e-12, (where, "optimistic", cap.cycles[i], reference[i])
            assert error >= -CAPACITY_REL_TOL, (where, cap.cycles[i], reference[i])
            # the upload time it reports really carries that many cycles
            t_c = np.array([cap.upload_time_s[i]])
            carried = _cycles_at(t_c, policy, T[i:i + 1], E[i:i + 1], bits[i:i + 1],
                                 w[i:i + 1], scalars)[0]
            assert carried >= cap.cycles[i] * (1 - 1e-12) - floor, (where, carried)
    print(f"{policy}: {n_feasible} feasible, {n_infeasible} infeasible, "
          f"largest relative error {worst:.3g}")
    assert n_feasible >= 0.5 * N_DEVICES * N_BUDGETS
    assert n_infeasible >= 0.03 * N_DEVICES * N_BUDGETS


@pytest.mark.parametrize("policy", POLICIES)
def test_capacity_slope_equals_central_finite_difference(policy: str) -> None:
    """dC*/dT against a central difference of the brute-force capacity (h = 1e-5·T), away from
    regime changes (where the one-sided differences disagree)."""
    checked = kinks = 0
    for seed in range(N_DEVICES):
        scalars, arrays = _instances(seed)
        T = arrays["time_s"]
        E = np.full(T.shape, scalars["energy_j"])
        bits, w = arrays["upload_bits"], arrays["noise_to_gain_w"]
        h = 1e-5 * T

        def reference(time: np.ndarray, E: np.ndarray = E, bits: np.ndarray = bits,
                      w: np.ndarray = w, scalars: dict[str, float] = scalars) -> np.ndarray:
            return brute_force_capacity(policy, time, E, bits, w, scalars)

        mid = reference(T)
        up, down = reference(T + h), reference(T - h)
        slope = _capacity(policy, arrays, scalars).slope_cycles_per_s
        ok = np.isfinite(up) & np.isfinite(down) & np.isfinite(mid) & (down > 0)
        with np.errstate(invalid="ignore"):  # −inf − (−inf) where infeasible: not checked
            forward, backward = (up - mid) / h, (mid - down) / h
            central = (up - down) / (2 * h)
            noise = 1e-13 * np.abs(mid) / h  # rounding of the brute force, amplified by 1/h
            kink = np.abs(forward - backward) > 1e-3 * np.abs(central) + noise
        for i in np.flatnonzero(ok):
            if kink[i]:
                kinks += 1
                continue
            checked += 1
            assert abs(slope[i] - central[i]) <= 1e-5 * abs(central[i]) + noise[i], (
                policy, seed, i, slope[i], central[i],
                {k: v[i] for k, v in arrays.items()}, scalars)
    print(f"{policy}: {checked} slopes checked, {kinks} skipped at regime changes")
    assert checked >= 0.4 * N_DEVICES * N_BUDGETS
    assert kinks <= 0.02 * checked


def test_capacity_is_accurate_to_1e_11_when_the_boundary_piece_is_long() -> None:
    scalars, arrays = _instances(28)
    element = {k: v[37:38] for k, v in arrays.items()}
    cap = _capacity("free", element, scalars)
    reference = brute_force_capacity("free", element["time_s"],
                                     np.array([scalars["energy_j"]]),
                                     element["upload_bits"], element["noise_to_gain_w"], scalars)
    # the returned upload time carries the brute-force capacity exactly
    carried = _cycles_at(cap.upload_time_s, "free", element["time_s"],
                         np.array([scalars["energy_j"]]), element["upload_bits"],
                         element["noise_to_gain_w"], scalars)
    assert carried[0] == pytest.approx(reference[0], rel=1e-13)
    assert cap.cycles[0] == pytest.approx(reference[0], rel=1e-11)  # fails: 7.7e-10 short


# --------------------------------------------------------------------------------------------
# increasing_root
# --------------------------------------------------------------------------------------------

KINDS = 5


def _monotone(x: np.ndarray, kind: np.ndarray, root: np.ndarray, scale: np.ndarray,
              steep: np.ndarray) -> np.ndarray:
    """Five families of increasing functions, each crossing zero at `root`."""
    z = (x - root) / scale
    with np.errstate(over="ignore"):
        return np.select(
            [kind == 0, kind == 1, kind == 2, kind == 3],
            [np.tanh(steep * z) + 0.01 * z,                       # sigmoid with a gentle tail
             np.expm1(steep * z),                                 # exponential
             z**3,                                                # flat at the root
             np.where(z < 0, z, steep * z)],                      # kinked, two slopes
            np.sinh(z) + np.arctan(steep * z) * 1e-3)             # odd, nearly flat near root


def _monotone_scalar(x: float, kind: float, root: float, scale: float, steep: float) -> float:
    """`_monotone` for one float (plain math: brentq calls it thousands of times)."""
    z = (x - root) / scale
    if kind == 0:
        return math.tanh(steep * z) + 0.01 * z
    if kind == 1:
        return math.expm1(min(steep * z, 700.0))
    if kind == 2:
        return z**3
    if kind == 3:
        return z if z < 0 else steep * z
    return math.sinh(max(min(z, 700.0), -700.0)) + math.atan(steep * z) * 1e-3


def _root_problems(seed: int, n: int = 300) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-5, 5, n) * _log_uniform(rng, 1e-3, 1e3, n)
    width = _log_uniform(rng, 1e-6, 10, n) * np.maximum(np.abs(lo), 1.0)
    hi = lo + width
    return {"lo": lo, "hi": hi, "kind": rng.integers(0, KINDS, n).astype(float),
            "root": lo + rng.uniform(0.001, 0.999, n) * width,
            "scale": width * _log_uniform(rng, 1e-3, 1e3, n),
            "steep": _log_uniform(rng, 0.1, 100, n)}


@pytest.mark.parametrize("rel_tol", [None, 1e-10])
@pytest.mark.parametrize(("seed", "n"), [(0, 8), (1, 40), (2, 300), (3, 1000)])
def test_increasing_root_agrees_with_brentq(seed: int, n: int, rel_tol: float | None) -> None:
    """Batch sizes cover every path: a small batch (16-point grids, converged elements masked),
    a medium one (coarser grid, converged elements dropped), a large one (no grid)."""
    prob = _root_problems(seed, n)
    args = (prob["kind"], prob["root"], prob["scale"], prob["steep"])
    kwargs = {} if rel_tol is None else {"rel_tol": rel_tol}
    tol = 4 * np.finfo(float).eps if rel_tol is None else rel_tol
    found = increasing_root(_monotone, prob["lo"], prob["hi"], args, **kwargs)
    at_found = _monotone(found, *args)
    for i in range(found.size):
        element = tuple(float(a[i]) for a in args)
        reference = optimize.brentq(_monotone_scalar, prob["lo"][i], prob["hi"][i], element,
                                    xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
        assert prob["lo"][i] <= found[i] <= prob["hi"][i]
        assert at_found[i] >= 0, (i, element, found[i])
        allowed = 4 * tol * abs(reference) + 4 * np.spacing(abs(reference))
        assert abs(found[i] - reference) <= allowed, (i, element, found[i], reference)


def test_increasing_root_keeps_the_shape_and_returns_the_bracket_ends() -> None:
    lo = np.array([[0.0, 0.0, 2.0], [-1.0, 0.0, 3.0]])
    hi = np.array([[1.0, 1.0, 4.0], [1.0, 0.5, 3.0]])
    target = np.array([[0.25, -1.0, 5.0], [0.0, 0.2, 3.0]])
    found = increasing_root(lambda x, t: x - t, lo, hi, (target,))
    assert found.shape == lo.shape
    assert found[0, 0] == pytest.approx(0.25, rel=1e-15)
    assert found[0, 1] == 0.0  # f(lo) ≥ 0 → lo
    assert found[0, 2] == 4.0  # f(hi) < 0 → hi
    assert found[1, 0] == pytest.approx(0.0, abs=1e-300)
    assert found[1, 1] == pytest.approx(0.2, rel=1e-15)
    assert found[1, 2] == 3.0  # empty bracket, f(lo) ≥ 0


@pytest.mark.parametrize("n", [8, 300, 1000])
def test_increasing_root_bracket_sides_enclose_the_sign_change(n: int) -> None:
    """Both sides: f(lower) ≤ 0 ≤ f(upper), lower ≤ upper, and both within the tolerance of
    brentq's root (for a max/min of monotone pieces too: only the sign pattern matters)."""
    prob = _root_problems(7 + n, n)
    args = (prob["kind"], prob["root"], prob["scale"], prob["steep"])
    shifted = prob["root"] + 0.3 * (prob["hi"] - prob["root"])

    def piecewise(x: np.ndarray, kind: np.ndarray, root: np.ndarray, scale: np.ndarray,
                  steep: np.ndarray, other: np.ndarray) -> np.ndarray:
        # the min of two increasing functions changes sign at the larger of their roots
        first = _monotone(x, kind, root, scale, steep)
        second = np.tanh((x - other) / scale)
        return np.minimum(first, second)

    lower, upper = increasing_root_bracket(piecewise, prob["lo"], prob["hi"], (*args, shifted),
                                           rel_tol=1e-13)
    f_lower, f_upper = piecewise(lower, *args, shifted), piecewise(upper, *args, shifted)
    expected = np.maximum(prob["root"], shifted)
    assert np.all(lower <= upper)
    assert np.all(f_lower <= 0) and np.all(f_upper >= 0)
    allowed = 4e-13 * np.abs(expected) + 4 * np.spacing(np.abs(expected))
    assert np.all(np.abs(upper - expected) <= allowed)
    assert np.all(np.abs(lower - expected) <= allowed)


@pytest.mark.parametrize("seed", range(2))
def test_increasing_root_lower_side_agrees_with_brentq_from_below(seed: int) -> None:
    prob = _root_problems(100 + seed)
    args = (prob["kind"], prob["root"], prob["scale"], prob["steep"])
    found = increasing_root(_monotone, prob["lo"], prob["hi"], args, side="lower")
    at_found = _monotone(found, *args)
    tol = 4 * np.finfo(float).eps
    for i in range(found.size):
        element = tuple(float(a[i]) for a in args)
        reference = optimize.brentq(_monotone_scalar, prob["lo"][i], prob["hi"][i], element,
                                    xtol=1e-300, rtol=tol, maxiter=500)
        assert prob["lo"][i] <= found[i] <= prob["hi"][i]
        assert at_found[i] <= 0, (i, element, found[i])
        allowed = 4 * tol * abs(reference) + 4 * np.spacing(abs(reference))
        assert abs(found[i] - reference) <= allowed, (i, element, found[i], reference)


@pytest.mark.parametrize("n", [4, 300, 1000])
def test_nan_values_count_as_above_zero_everywhere(n: int) -> None:
    """A NaN value is read as +inf by every sign test, so both sides stay consistent: the
    sign change found is the first point that is NaN or ≥ 0."""
    roots = np.linspace(0.2, 0.8, n)

    def nan_above(x: np.ndarray, root: np.ndarray) -> np.ndarray:
        return np.where(x < root, x - root, np.nan)

    lower, upper = increasing_root_bracket(nan_above, np.zeros(n), np.ones(n), (roots,),
                                           rel_tol=1e-12)
    assert np.all(nan_above(lower, roots) < 0) and np.all(np.isnan(nan_above(upper, roots)))
    assert np.allclose(upper, roots, rtol=4e-12, atol=0)


@pytest.mark.parametrize("n", [8, 40])
def test_breakpoints_bracket_a_jump_without_bisection(n: int) -> None:
    """A monotone function that jumps over zero at a known point: with the point given as a
    breakpoint, the two sides returned straddle the jump within the tolerance after the grid
    rounds alone (no bisection toward the jump, which takes ≈ 40 steps without it)."""
    rng = np.random.default_rng(n)
    lo = rng.uniform(-2.0, 0.0, n)
    hi = lo + _log_uniform(rng, 1e-3, 10.0, n)
    jump = lo + rng.uniform(0.01, 0.99, n) * (hi - lo)
    calls = [0]

    def step(x: np.ndarray, at: np.ndarray) -> np.ndarray:
        calls[0] += 1
        return np.where(x < at, -1.0 - (at - x), 0.5 + (x - at))

    tol = 1e-13
    lower, upper = increasing_root_bracket(step, lo, hi, (jump,), rel_tol=tol,
                                           breakpoints=jump[:, None])
    assert calls[0] <= 2  # the two grid rounds
    assert np.all(step(lower, jump) < 0) and np.all(step(upper, jump) >= 0)
    assert np.all(lower < jump) and np.all(upper >= jump)
    assert np.all(upper - lower <= tol * np.maximum(np.abs(lower), np.abs(upper)))


@pytest.mark.parametrize("seed", range(3))
def test_caller_grid_points_leave_the_root_unchanged(seed: int) -> None:
    """Extra first-round grid points (anywhere, even outside the bracket: they are moved in)
    change where the search starts, not what it finds."""
    prob = _root_problems(200 + seed, 24)
    args = (prob["kind"], prob["root"], prob["scale"], prob["steep"])
    rng = np.random.default_rng(seed)
    width = prob["hi"] - prob["lo"]
    points = prob["lo"][:, None] + rng.uniform(-0.5, 1.5, (24, 6)) * width[:, None]
    found = increasing_root(_monotone, prob["lo"], prob["hi"], args, rel_tol=1e-13)
    lower, upper = increasing_root_bracket(_monotone, prob["lo"], prob["hi"], args,
                                           rel_tol=1e-13, grid_points=points)
    assert np.all(_monotone(upper, *args) >= 0) and np.all(_monotone(lower, *args) <= 0)
    allowed = 4e-13 * np.abs(found) + 4 * np.spacing(np.abs(found))
    assert np.all(np.abs(upper - found) <= 2 * allowed)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(4))
def test_parameter_reaching_gives_a_curve_point_at_or_past_the_time(policy: str,
                                                                    seed: int) -> None:
    """`parameter_reaching(T)` (eq. 4.18) is an upper bracket: the curve's time there is at
    least T wherever the curve is feasible, and it is never past the plain bound T − t_lo."""
    scalars, arrays = _instances(300 + seed)
    curve = capacity_curve(arrays["upload_bits"], arrays["noise_to_gain_w"],
                           policy=policy, **scalars)  # type: ignore[arg-type]
    times = arrays["time_s"]
    x = curve.parameter_reaching(times)
    reached = capacity_point(x, *curve.args(), *curve.constants())[0]
    ok = curve.feasible & (times >= curve.t_lo)
    assert np.all(reached[ok] >= times[ok] * (1 - 1e-12)), (reached[ok], times[ok])
    assert np.all(x <= times - curve.t_lo)


def test_caller_points_that_are_nan_or_infinite_are_harmless() -> None:
    """Breakpoints or grid points of NaN or ±∞ are moved into the bracket (NaN to its low end)
    and change nothing about the root found."""
    lo, hi = np.zeros(8), np.linspace(1.0, 8.0, 8)
    target = hi / 3
    bad = np.tile([np.nan, np.inf, -np.inf], (8, 1))
    lower, upper = increasing_root_bracket(lambda x, t: x - t, lo, hi, (target,),
                                           rel_tol=1e-13, breakpoints=bad, grid_points=bad)
    assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))
    assert np.allclose(upper, target, rtol=4e-13, atol=0)
    assert np.all(lower <= target) and np.all(upper >= target)
