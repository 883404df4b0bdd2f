"""A fleet served for real (issue 14: 32 devices with heterogeneous decisions against one server,
60 s, zero failed or lost requests). Never part of the test suite.
Run: python benchmarks/bench_fleet_serve.py --out runs/fleet-32 [--devices 32] [--duration-s 60]
     [--shares equal|solver]

The fleet: the shipped MiniLM classes (scenarios/minilm-phone, -iot, -laptop; half phones, a third
IoT devices, the rest laptops), channel gains drawn log-uniform in [10^-8.5, 10^-6.5] (seed 7), 2
MHz of band and 0.2 GHz of server cycles per device. Shares: "equal"
(`laimco.fleet.baselines.equal_shares`) gives every device B/N and F/N and `laimco optimize`'s
decision there (heterogeneous: each phone prunes its device part to its own ratio); "solver" is
`laimco.fleet.solver.solve_fleet`. Then `laimco.runtime.fleet_serve.serve_fleet` (the `laimco
fleet-serve` run) writes its report to --out; this prints fleet_serve.md and exits 1 when a request
failed or was lost.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("minilm-phone", "minilm-iot", "minilm-laptop")


def make_fleet(n: int, seed: int = 7):  # type: ignore[no-untyped-def]
    from laimco.config import load_scenario
    from laimco.fleet.fleet import DeviceClass, Fleet, SharedResources

    rng = np.random.default_rng(seed)
    classes = tuple(DeviceClass(c, load_scenario(ROOT / "scenarios" / f"{c}.toml"))
                    for c in CLASSES)
    counts = [n // 2, n // 3, n - n // 2 - n // 3]
    index = np.repeat(np.arange(3), counts)
    gains = 10 ** rng.uniform(-8.5, -6.5, n)
    ids = tuple(f"{CLASSES[c].removeprefix('minilm-')}-{i}" for i, c in enumerate(index))
    return Fleet(f"minilm-{n}", SharedResources(2e6 * n, 2e8 * n, 64.0), classes, index,
                 gains, np.ones(n), ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--shares", choices=("equal", "solver"), default="equal")
    args = parser.parse_args()
    from laimco.runtime.fleet_serve import FleetServeOptions, serve_fleet

    fleet = make_fleet(args.devices)
    if args.shares == "equal":
        from laimco.fleet.baselines import equal_shares

        solution = equal_shares(fleet)
    else:
        from laimco.fleet.solver import solve_fleet

        solution = solve_fleet(fleet)
    print(f"{os.cpu_count()} cores, load average before start {os.getloadavg()[0]:.2f}")
    report = serve_fleet(solution, args.out, FleetServeOptions(duration_s=args.duration_s),
                         progress=lambda m: print(f"· {m}", flush=True))
    print((args.out / "fleet_serve.md").read_text())
    print(f"load average at the end {os.getloadavg()[0]:.2f}; elapsed {report['elapsed_s']:.0f} s")
    return 0 if report["status"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
