"""Alternating optimization (the paper's kind of method, docs/theory.md §4.8) against the exact
solver on every study scenario: the shipped scenarios (scenarios/*.toml) and the solve-time
sweep's device classes × channels (sweeps/solve_time.toml). Prints, per scenario, joint's and
alternating's objective, the relative gap, both solve times and their ratio. Never part of the
test suite. Run: python benchmarks/bench_alternating.py [--starts N] [--repeats K]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tomllib
from pathlib import Path

from laimco.config import Scenario, load_scenario
from laimco.optimize import Decision, StrategyOptions, solve

ROOT = Path(__file__).resolve().parents[1]


def study_scenarios() -> list[tuple[str, Scenario]]:
    """Every shipped scenario, then the solve-time sweep's points (base × path gain)."""
    out = [(p.stem, load_scenario(p)) for p in sorted((ROOT / "scenarios").glob("*.toml"))]
    sweep = tomllib.loads((ROOT / "sweeps" / "solve_time.toml").read_text())
    for base in sweep["axes"]["base"]:
        scenario = load_scenario(ROOT / "sweeps" / base)
        for gain in sweep["axes"]["channel.path_gain"]:
            out.append((f"{Path(base).stem} at {gain:g}",
                        scenario.replace(channel={"path_gain": gain})))
    return out


def timed(scenario: Scenario, strategy: str, options: StrategyOptions,
          repeats: int) -> tuple[Decision, float]:
    """The decision and the median wall-clock time of `repeats` solves (after one warm-up)."""
    decision = solve(scenario, strategy, options=options)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        solve(scenario, strategy, options=options)
        samples.append(time.perf_counter() - started)
    return decision, statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=8, help="alternating starts per split")
    parser.add_argument("--repeats", type=int, default=3, help="timed solves per strategy")
    args = parser.parse_args()
    options = StrategyOptions(n_starts=args.starts, seed=0)
    print(f"# alternating vs joint ({args.starts} starts per split, median of {args.repeats} "
          "solves each)\n")
    print("| scenario | joint objective | alternating objective | relative gap | joint ms | "
          "alternating ms | time ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    gaps, ratios = [], []
    for name, scenario in study_scenarios():
        joint, t_joint = timed(scenario, "joint", options, max(args.repeats, 5))
        alternating, t_alt = timed(scenario, "alternating", options, args.repeats)
        if joint.point is not None and alternating.point is not None:
            exact, found = joint.point.objective, alternating.point.objective
            gap = (found - exact) / exact if exact > 0 else found - exact
            gaps.append(gap)
            cells = [f"{exact:.8g}", f"{found:.8g}", f"{gap:.2e}"]
        else:
            cells = [joint.status if joint.point is None else f"{joint.point.objective:.8g}",
                     alternating.status if alternating.point is None
                     else f"{alternating.point.objective:.8g}", "—"]
        ratios.append(t_alt / t_joint)
        print(f"| {name} | {' | '.join(cells)} | {t_joint * 1e3:.2f} | {t_alt * 1e3:.0f} | "
              f"{t_alt / t_joint:.0f} |", flush=True)
    print(f"\nrelative gap: median {statistics.median(gaps):.2e}, max {max(gaps):.2e} over "
          f"{len(gaps)} feasible scenarios; alternating takes a median "
          f"{statistics.median(ratios):.0f}× joint's time")


if __name__ == "__main__":
    main()
