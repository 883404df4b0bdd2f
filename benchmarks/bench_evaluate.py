"""`laimco evaluate` timings and the execution-true targets (issue: decisions that hold when
executed). Runs the real command twice — the default scenario, then every shipped scenario —
and prints the wall times and the targets computed in evaluate.json. Not part of the test
suite.

    .venv/bin/python benchmarks/bench_evaluate.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAIMCO = Path(sys.executable).parent / "laimco"


def run(target: Path, out: Path) -> tuple[float, dict]:  # type: ignore[type-arg]
    started = time.perf_counter()
    subprocess.run([str(LAIMCO), "evaluate", str(target), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - started, json.loads((out / "evaluate.json").read_text())


def summary(report: dict) -> list[str]:  # type: ignore[type-arg]
    agreement = report["rank_agreement"]
    lines = [f"- objective order = measured order in {agreement['agreeing']} of "
             f"{agreement['pairs']} clearly and significantly different pairs (target ≥ 98 %)"]
    for mode, targets in report["targets"].items():
        broken = targets["broken_by_more_than_10_percent"]
        within = [s for s, g in targets["joint_vs_best_measured"].items() if g["within_3_se"]]
        lines += [f"- {mode} mode, {targets['decisions']} executed decisions: worst "
                  f"|measured/predicted − 1| latency {targets['worst_latency_relative_error']:.3f}"
                  f", energy {targets['worst_energy_relative_error']:.3f} (target ≤ 0.10); "
                  f"{len(broken)} break a limit by more than 10 % when executed"
                  + (f" ({', '.join(broken)})" if broken else ""),
                  f"- {mode} mode: joint meets its limits and is within 3 paired SE of the best "
                  f"measured feasible decision in {len(within)} of "
                  f"{len(targets['joint_vs_best_measured'])} scenarios"]
        for scenario, gap in targets["joint_vs_best_measured"].items():
            if not gap["within_3_se"]:
                kept = "meets" if gap["joint_holds_its_limits"] else "breaks"
                lines.append(f"  - {scenario}: joint {kept} its limits; best "
                             f"{gap['best_strategy']}, joint − best "
                             f"{gap['joint_minus_best_loss']:+.4f} ± {gap['paired_se']:.4f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="laimco-bench-evaluate-"))
    print("# `laimco evaluate`\n")
    print(f"2 cores; outputs in {base}; 256 held-out sentences; 15 timing rounds\n")
    one_s, one = run(ROOT / "scenarios" / "minilm-phone.toml", base / "phone")
    print(f"## scenarios/minilm-phone.toml: {one_s:.0f} s (target ≤ 180 s: "
          f"{'met' if one_s <= 180 else 'NOT met'})\n")
    print("\n".join(summary(one)) + "\n")
    all_s, every = run(ROOT / "scenarios", base / "all")
    print(f"## scenarios/ ({len(every['scenarios'])} scenarios, both modes): {all_s:.0f} s "
          f"(target ≤ 900 s: {'met' if all_s <= 900 else 'NOT met'})\n")
    print("\n".join(summary(every)))


if __name__ == "__main__":
    main()
