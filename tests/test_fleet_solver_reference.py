"""The fleet solver (laimco.fleet.solver.solve_fleet) against independent references: the
brute force over share grids on 2- and 3-device fleets (tests/fleet_reference.py, V_u from the
single-device optimizer at every grid point), the baselines, and the CVXPY conic model of the
whole fleet at the solver's own discrete choices (which optimizes the continuous shares by
itself). Paper-mode scenarios, heterogeneous channel gains and classes."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from fleet_reference import BruteForce, brute_force_shares, paper_fleet, scenario, twenty_devices

from laimco.fleet import baselines
from laimco.fleet.fleet import Fleet
from laimco.fleet.solution import FleetSolution
from laimco.fleet.solver import solve_fleet

BRUTE_REL = 1e-6  # the target: gap to the brute force ≤ 1e-6 relative
BOUND_REL = 1e-9  # rounding allowed on "dual bound ≤ any feasible objective"


def small_fleets() -> dict[str, Fleet]:
    phone, iot = scenario("paper-minilm-phone"), scenario("paper-minilm-iot")
    laptop = scenario("paper-minilm-laptop")
    both = [("phone", phone), ("iot", iot)]
    return {
        "2 phones, gains 1e-7 / 1e-9": paper_fleet([("phone", phone)], [0, 0], [1e-7, 1e-9]),
        "phone + iot, weights 1 / 2": paper_fleet(both, [0, 1], [1e-7, 1e-8], [1.0, 2.0]),
        "phone + laptop, tight band": paper_fleet(
            [("phone", phone), ("laptop", laptop)], [0, 1], [3e-8, 1e-9],
            bandwidth_hz=2e6, server_cycles_per_s=3e8),
        "phone + iot + phone": paper_fleet(both, [0, 1, 0], [1e-7, 1e-8, 1e-9],
                                           [1.0, 2.0, 1.0]),
        "3 phones, gains 1e-7 / 1e-8 / 3e-9": paper_fleet(
            [("phone", phone)], [0, 0, 0], [1e-7, 1e-8, 3e-9], bandwidth_hz=6e6,
            server_cycles_per_s=6e8),
    }


FLEETS = small_fleets()
# Cases the solver failed when these tests were last run (solver on main at 02b61fa): strict
# xfails, so a fix shows up as XPASS and the mark must go. Numbers: solver objective (dual
# bound) vs the brute force / the best baseline.
_DEFECT = "solver short of the reference (session 7 main): "
KNOWN_FAILURES = {
    "none": {},
    "brute": {},
    "baselines": {},
}


def cases(test: str) -> list[object]:
    """(fleet name, objective) pairs, the known failures of `test` as strict xfails."""
    out: list[object] = []
    for name in sorted(FLEETS):
        for objective in ("sum", "max-min"):
            reason = KNOWN_FAILURES[test].get((name, objective))
            marks = [pytest.mark.xfail(strict=True, reason=_DEFECT + reason)] if reason else []
            out.append(pytest.param(name, objective, marks=marks, id=f"{name}-{objective}"))
    return out


@functools.cache
def solved(name: str, objective: str) -> tuple[BruteForce, FleetSolution]:
    """The brute force and the solver on one small fleet (computed once per module run)."""
    fleet = FLEETS[name]
    brute = brute_force_shares(fleet, objective)  # type: ignore[arg-type]
    solution = solve_fleet(fleet, objective)  # type: ignore[arg-type]
    print(f"{name}, {objective}: solver {solution.objective:.12g} (bound "
          f"{solution.dual_bound:.9g}, gap {solution.relative_gap:.2e}), brute force "
          f"{brute.objective:.12g} ({brute.evaluations} solves)")
    return brute, solution


@pytest.mark.slow
@pytest.mark.parametrize(("name", "objective"), cases("none"))
def test_solver_dual_bound_is_below_the_brute_force(name: str, objective: str) -> None:
    """The certificate is a true lower bound: below the solver's own objective and below the
    brute force's (a feasible point; a bound above it would be false)."""
    brute, solution = solved(name, objective)
    assert solution.dual_bound is not None
    assert solution.dual_bound <= solution.objective * (1 + BOUND_REL) + 1e-12
    assert solution.dual_bound <= brute.objective * (1 + BOUND_REL) + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize(("name", "objective"), cases("brute"))
def test_solver_is_within_1e_6_of_the_brute_force(name: str, objective: str) -> None:
    """solve_fleet ≤ brute force·(1 + 1e-6), every device served."""
    brute, solution = solved(name, objective)
    assert solution.status == "optimal"
    assert solution.objective <= brute.objective * (1 + BRUTE_REL) + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize(("name", "objective"), cases("baselines"))
def test_solver_is_no_worse_than_any_baseline(name: str, objective: str) -> None:
    """Against equal shares, proportional shares, every device deciding alone, and SLSQP:
    the solver serves at least as many devices and, where it serves the same ones, its
    objective is no larger (1e-9 relative)."""
    fleet = FLEETS[name]
    solution = solve_fleet(fleet, objective)  # type: ignore[arg-type]
    for method in (baselines.equal_shares, baselines.proportional, baselines.alone,
                   baselines.slsqp):
        other = method(fleet, objective)  # type: ignore[arg-type]
        print(f"{name}, {objective}: solver {solution.objective:.12g}, {other.method} "
              f"{other.objective:.12g} ({other.served.sum()} served)")
        assert solution.served.sum() >= other.served.sum()
        if np.array_equal(solution.served, other.served):
            assert solution.objective <= other.objective * (1 + 1e-9) + 1e-12


@pytest.mark.slow
def test_max_min_of_four_devices_is_no_worse_than_slsqp() -> None:
    """Above the brute force's reach (N = 4, seeded phones and IoT nodes, weights 0.5..2, a
    scarce band): the max-min level search (docs/theory.md §7.5) is no worse than SLSQP from
    its five starts (1e-9 relative), serving everyone."""
    rng = np.random.default_rng(4)
    fleet = paper_fleet([("phone", scenario("paper-minilm-phone")),
                         ("iot", scenario("paper-minilm-iot"))], list(rng.integers(0, 2, 4)),
                        list(10 ** rng.uniform(-9, -7, 4)), list(rng.uniform(0.5, 2, 4)),
                        bandwidth_hz=6e6, server_cycles_per_s=6e8)
    solution = solve_fleet(fleet, "max-min")
    other = baselines.slsqp(fleet, "max-min")
    print(f"4 devices, max-min: solver {solution.objective:.12g} (bound "
          f"{solution.dual_bound:.9g}), slsqp {other.objective:.12g}")
    assert solution.served.all() and other.served.all()
    assert solution.objective <= other.objective * (1 + 1e-9)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("hold", ["server-ratio", "server-time"])
@pytest.mark.parametrize("objective", ["sum", "max-min"])
def test_cvxpy_at_the_solvers_choices_cannot_beat_its_certificate(objective: str,
                                                                  hold: str) -> None:
    """Evidence: the conic model keeps the solver's splits, rules, widths, upload times and
    server ratios (or server times) but chooses every share and the other continuous variables
    itself. It may not improve the solver's objective by more than the solver's own certified
    gap (objective − dual bound) + 1e-6 relative. 20 devices, 30 MHz and 3e9 cycles/s: scarce
    enough that both objectives are positive."""
    from laimco.fleet.fixed_split_cvxpy import cvxpy_fixed_split

    fleet = twenty_devices(objective, 30e6, 3e9)
    solution = solve_fleet(fleet, objective)  # type: ignore[arg-type]
    assert solution.dual_bound is not None and solution.status == "optimal"
    assert solution.objective > 0
    result = cvxpy_fixed_split(solution, hold=hold)  # type: ignore[arg-type]
    assert result.status == "optimal"
    improvement = solution.objective - result.objective
    allowed = solution.objective - solution.dual_bound + 1e-6 * solution.objective
    print(f"{objective}, {hold}: solver {solution.objective:.9g} (bound "
          f"{solution.dual_bound:.9g}), cvxpy at its choices {result.objective:.9g}")
    assert improvement <= allowed


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["max-min", "sum"])
def test_solver_certifies_its_default_gap_on_20_devices(objective: str) -> None:
    """The certificate must mean something for the evidence above: the solver's relative gap
    reaches its default target (1e-3) on the 20-device fleet."""
    from laimco.fleet.solver import DEFAULT_GAP

    solution = solve_fleet(twenty_devices(objective, 30e6, 3e9), objective)  # type: ignore[arg-type]
    print(f"{objective}: objective {solution.objective:.9g}, bound {solution.dual_bound:.9g}, "
          f"gap {solution.relative_gap}")
    assert solution.relative_gap is not None and solution.relative_gap <= DEFAULT_GAP
