"""Fleet solver benchmark (issue 14 targets). Prints a markdown section; never part of the test
suite. Run: `nice -n 15 python benchmarks/bench_fleet.py [--sizes 10,100,1000,10000]
[--rounds N=R,...] [--baselines-up-to 1000]`, and `--sizes 100000 --rounds 100000=0` alone for
the memory run.

Per N: the shipped paper-mode city fleet scaled to N devices (fleet_population.city_fleet:
fleets/city-1000.toml's class mix, placement and per-device totals, seed N, so N = 1,000,
10,000 and 100,000 are exactly fleets/city-1000/10000/100000.toml), solved by `solve_fleet`
with the default gap 1e-3: wall time, the solver's own solve_time_s (before the per-device
decisions are built), rounds, evaluations of V, time inside the value oracle and inside the
menu relaxations (`solve_menu`: HiGHS, or the two-price dual for large menus) — measured by
wrapping the solver's calls, the solver itself unchanged —,
objective, bound, certified gap, and peak RSS of the process (resource.getrusage). For
N ≤ --baselines-up-to: the equal-shares and proportional baselines' objectives over the
solver's (≥ 1 means the solver is no worse).
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import time
from dataclasses import dataclass, field

import laimco.fleet.share_points as share_points
import laimco.fleet.solver as fleet_solver
from laimco.experiments.study.fleet_population import city_fleet
from laimco.fleet.baselines import equal_shares, proportional

TARGETS_S = {1000: 1.0, 10000: 10.0}
TARGET_GAP = 1e-3


@dataclass
class Clock:
    """Seconds spent inside wrapped calls."""

    seconds: float = 0.0
    calls: int = 0

    def wrap(self, func):  # type: ignore[no-untyped-def]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1
        return timed


@dataclass
class Row:
    n: int
    max_rounds: int
    wall_s: float
    solve_s: float
    rounds: int
    branched: bool
    evaluations: int
    oracle_s: float
    lp_s: float
    decisions_s: float
    objective: float
    bound: float
    gap: float
    peak_rss_mb: float
    baselines: dict[str, float] = field(default_factory=dict)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, max_rounds: int, with_baselines: bool) -> Row:
    fleet = city_fleet(n)
    oracle, lp, finish = Clock(), Clock(), Clock()
    saved = (share_points.ShareValues.__call__, fleet_solver.solve_menu,
             fleet_solver.fleet_answer)
    share_points.ShareValues.__call__ = oracle.wrap(saved[0])  # type: ignore[method-assign]
    fleet_solver.solve_menu = lp.wrap(saved[1])
    fleet_solver.fleet_answer = finish.wrap(saved[2])
    messages: list[str] = []

    def note(text: str) -> None:  # the solver's progress, timed, on stderr
        messages.append(text)
        print(f"  {n:,} devices, {time.perf_counter() - started:.1f} s: {text}", file=sys.stderr,
              flush=True)

    try:
        started = time.perf_counter()
        answer = fleet_solver.solve_fleet(fleet, max_rounds=max_rounds,
                                          progress=note)
        wall = time.perf_counter() - started
    finally:
        (share_points.ShareValues.__call__, fleet_solver.solve_menu,  # type: ignore[method-assign]
         fleet_solver.fleet_answer) = saved
    found = [m for m in map(re.compile(r"round (\d+):.* (\d+) evaluations").match, messages)
             if m]
    rounds, evaluations = (int(found[-1][1]), int(found[-1][2])) if found else (0, 0)
    branched = any(m.startswith("branched") for m in messages)
    row = Row(n=n, max_rounds=max_rounds, wall_s=wall, solve_s=answer.solve_time_s,
              rounds=rounds, branched=branched, evaluations=evaluations,
              oracle_s=oracle.seconds, lp_s=lp.seconds,
              decisions_s=finish.seconds, objective=answer.objective,
              bound=float(answer.dual_bound or 0.0), gap=float(answer.relative_gap or 0.0),
              peak_rss_mb=peak_rss_mb())
    if with_baselines:
        for baseline in (equal_shares, proportional):
            other = baseline(fleet)
            row.baselines[other.method] = other.objective / answer.objective
    return row


def markdown(rows: list[Row], command: str) -> str:
    lines = [
        "## Solve time and certified gap vs N (city fleets, paper mode, totals ∝ N)", "",
        f"`{command}`", "",
        "| N | rounds (max) | wall s | solve s | oracle s | LP s | decisions s | evaluations "
        "| objective | bound | gap | peak RSS MB | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        target = TARGETS_S.get(r.n)
        verdict = "—" if target is None else (
            f"≤ {target:g} s, gap ≤ 1e-3: {r.wall_s / target:.1f}× the time, "
            f"gap {r.gap / TARGET_GAP:.1f}× — " + (
                "met" if r.wall_s <= target and r.gap <= TARGET_GAP else "not met"))
        lines.append(
            f"| {r.n:,} | {r.rounds} ({r.max_rounds}){' + B&B' if r.branched else ''} "
            f"| {r.wall_s:.2f} | {r.solve_s:.2f} "
            f"| {r.oracle_s:.2f} | {r.lp_s:.2f} | {r.decisions_s:.2f} | {r.evaluations:,} "
            f"| {r.objective:.6g} | {r.bound:.6g} | {r.gap:.2e} | {r.peak_rss_mb:.0f} "
            f"| {verdict} |")
    with_base = [r for r in rows if r.baselines]
    if with_base:
        names = sorted({name for r in with_base for name in r.baselines})
        lines += ["", "Baseline objective / solver objective (≥ 1: the solver is no worse):", "",
                  "| N | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
        for r in with_base:
            lines.append(f"| {r.n:,} | " + " | ".join(f"{r.baselines[m]:.4g}" for m in names)
                         + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--rounds", default="", help="per-N max rounds, e.g. 10000=5,100000=0")
    parser.add_argument("--baselines-up-to", type=int, default=1000)
    args = parser.parse_args()
    rounds = {int(k): int(v) for k, v in (p.split("=") for p in args.rounds.split(",") if p)}
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        row = measure(n, rounds.get(n, fleet_solver.DEFAULT_ROUNDS),
                      n <= args.baselines_up_to)
        print(row, file=sys.stderr, flush=True)
        rows.append(row)
    print(markdown(rows, "python benchmarks/bench_fleet.py " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
