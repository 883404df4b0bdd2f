"""Sweep benchmarks (issue: the study). Prints rates against a reference measured in the same
run; never part of the test suite. Run: python benchmarks/bench_sweep.py [--full-study].

1. A sweep of 1,000,000 scenario-realizations (100 mean path gains × 10,000 Rayleigh
   realizations, the joint design re-solved for each) on the default local executor (a pool of
   one process per core), streamed in 100 chunks. Reference: the same solver called once on
   10,000 realizations in this process, without the sweep machinery. Memory: peak resident
   size of the driver and of the largest worker, against a 100,000-realization sweep — bounded
   memory means the peaks do not grow with the sweep.
2. `laimco reproduce --quick` (and, with --full-study, the full study): wall time and
   scenario-realizations per second.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RAYLEIGH = ROOT / "scenarios" / "minilm-phone-rayleigh.toml"
REALIZATIONS = 10_000


def sweep_file(folder: Path, points: int) -> Path:
    file = folder / f"bench-{points}.toml"
    file.write_text(f"""[sweep]
kind = "fading"
base = "{RAYLEIGH}"
strategies = ["joint"]
realizations = {REALIZATIONS}
common_random_numbers = false
chunk_points = 1
[axes]
"channel.path_gain" = {{start = 1e-10, stop = 1e-6, num = {points}, scale = "log"}}
""")
    return file


def child(points: int) -> None:
    """Run one sweep in this (fresh) process and print its numbers as JSON."""
    from laimco.experiments.executors import make_executor
    from laimco.experiments.sweep import load_sweep, run_sweep

    with tempfile.TemporaryDirectory() as folder:
        spec = load_sweep(sweep_file(Path(folder), points))
        with make_executor() as executor:
            workers = executor.workers
            result = run_sweep(spec, Path(folder) / "out", executor=executor, progress=False)
        size = result.table.stat().st_size
    print(json.dumps({
        "points": points, "evaluations": result.evaluations_run, "seconds": result.seconds,
        "workers": workers, "table_bytes": size,
        "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def run_child(points: int) -> dict[str, float]:
    output = subprocess.run([sys.executable, __file__, "--child", str(points)],
                            check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def reference_rate() -> float:
    """Realizations per second of one vectorized separate-ratios solve, in this process."""
    from laimco.config import load_scenario
    from laimco.optimize.problem import build_problem
    from laimco.optimize.ratios import separate_ratios

    scenario = load_scenario(RAYLEIGH)
    gains = scenario.channel.to_channel().sample_gains(REALIZATIONS, np.random.default_rng(0))
    separate_ratios(build_problem(scenario, gain=gains[:100]))  # warm-up
    started = time.perf_counter()
    separate_ratios(build_problem(scenario, gain=gains))
    return REALIZATIONS / (time.perf_counter() - started)


def study(quick: bool) -> dict[str, float]:
    from laimco.experiments.executors import make_executor
    from laimco.experiments.study import run_study

    with tempfile.TemporaryDirectory() as folder, make_executor() as executor:
        result = run_study(Path(folder), quick=quick, executor=executor, progress=False)
    evaluations = sum(r.evaluations for r in result.runs.values())
    points = sum(r.points for r in result.runs.values())
    sweep_s = sum(r.seconds for r in result.runs.values())
    return {"seconds": result.seconds, "evaluations": evaluations, "points": points,
            "sweep_seconds": sweep_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--full-study", action="store_true", help="also time the full study")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"# Sweep benchmarks\n\npython {sys.version.split()[0]}; numpy {np.__version__}; "
          f"{os.cpu_count()} cores\n")
    reference = reference_rate()
    small, large = run_child(10), run_child(100)
    print("## 1. 1,000,000 scenario-realizations, streamed (fading sweep, joint design)\n")
    print("| sweep | scenario-realizations | workers | wall time | rate | rate / reference "
          "| driver peak RSS | largest worker peak RSS | table size |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in (small, large):
        rate = r["evaluations"] / r["seconds"]
        print(f"| {int(r['points'])} gains × {REALIZATIONS:,} | {int(r['evaluations']):,} | "
              f"{int(r['workers'])} | {r['seconds']:.1f} s | {rate:,.0f}/s | "
              f"{rate / reference:.2f} | {r['driver_peak_mb']:.0f} MB | "
              f"{r['worker_peak_mb']:.0f} MB | {r['table_bytes'] / 1e6:.1f} MB |")
    print(f"\nreference: separate_ratios on {REALIZATIONS:,} realizations in one call, one "
          f"process: {reference:,.0f}/s")
    growth = large["driver_peak_mb"] / small["driver_peak_mb"]
    print(f"- memory bounded: driver peak ×{growth:.2f} and largest worker ×"
          f"{large['worker_peak_mb'] / small['worker_peak_mb']:.2f} for a 10× larger sweep "
          f"({'yes' if growth < 1.5 else 'NO'})")
    print("\n## 2. The study\n")
    print("| study | wall time | target | points | scenario-realizations | per second |")
    print("| --- | --- | --- | --- | --- | --- |")
    for quick, target in ((True, 180), *(((False, 1800),) if args.full_study else ())):
        s = study(quick)
        print(f"| {'quick' if quick else 'full'} | {s['seconds']:.0f} s | ≤ {target} s "
              f"({'met' if s['seconds'] <= target else 'NOT met'}) | {int(s['points'])} | "
              f"{int(s['evaluations']):,} | {s['evaluations'] / s['sweep_seconds']:,.0f} |")


if __name__ == "__main__":
    main()
