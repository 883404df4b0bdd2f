"""`laimco analyze minilm` timing (issue: real models). Never part of the test suite. Run:
python benchmarks/bench_analyze.py

Runs the command a user types, as a child process, into a temporary folder: wall time (target
≤ 3 minutes on this 2-core machine), the child's CPU time, and the time of each section as
analysis.json records it. The load average before and after says how quiet the machine was.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 180.0


def main() -> int:
    laimco = Path(sys.executable).parent / "laimco"
    with tempfile.TemporaryDirectory(prefix="laimco-bench-analyze-") as folder:
        load_before = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([str(laimco), "analyze", "minilm", "--out", folder], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime
                                                             - cpu_before.ru_stime)
        result = json.loads((Path(folder) / "analysis.json").read_text())
    print("# `laimco analyze minilm` (160 calibration + 320 held-out sentences)\n")
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"{os.cpu_count()} cores\n")
    print("| what | seconds |")
    print("| --- | ---: |")
    print(f"| whole command, wall (imports, model load, figures included) | {wall:.1f} |")
    print(f"| whole command, CPU (all threads) | {cpu:.1f} |")
    for section, seconds in result["timings_s"].items():
        print(f"| section `{section}` | {seconds:.1f} |")
    verdict = "met" if wall <= TARGET_S else "NOT met"
    print(f"\n- target ≤ {TARGET_S:.0f} s wall: {verdict} ({wall:.0f} s)")
    return 0 if wall <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
