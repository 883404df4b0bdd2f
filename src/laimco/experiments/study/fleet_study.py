"""The fleet study (docs/study.md "Fleet"): one band and one edge server shared by 2 … 64
paper-mode devices, the certified fleet solver (docs/theory.md §7) against equal shares and
shares proportional to demand. Writes fleet_study.json (the data), fleet_report.md (tables
computed from that data) and the figures (figures_fleet.py).

(a, d) The fleets are nested: n of the SIZES[-1] devices of one drawn city fleet
(fleet_population.py) within RADIUS_M of the base station, at a fixed band and server, for
every n in SIZES: total and worst-device distortion, solve time and the certified gap per n.
(b, c) The largest fleet's shares against channel gain, and its chosen splits per device class.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from laimco.experiments.study.figures_style import Figure
from laimco.experiments.study.fleet_population import nested_fleet
from laimco.experiments.study.numbers import fmt_g
from laimco.fleet.baselines import equal_shares, proportional
from laimco.fleet.fleet import Fleet, SharedResources
from laimco.fleet.solution import FleetSolution
from laimco.fleet.solver import solve_fleet
from laimco.profile import load_profile

SIZES = (2, 4, 8, 16, 32, 64)
SEED = 14
# the fixed band and server of (a): what 16 devices get at the benchmark's per-device shares
# (1 MHz, 1.5e8 cycles/s each), so 2 devices are comfortable and 64 contend
BANDWIDTH_HZ = 16e6
SERVER_CYCLES_PER_S = 2.4e9
SERVER_FLOPS_PER_CYCLE = 64.0  # the city fleet's server
# a campus-size cell (the city fleet's placement out to 200 m instead of 1 km): at 1 km most
# devices cannot offload at any share, so the division would matter for few of them
RADIUS_M = 200.0
MAX_ROUNDS = 20  # the solver's default
GAP = 1e-3
JOINT = "joint"
BASELINES: dict[str, Callable[[Fleet], FleetSolution]] = {
    "equal-shares": equal_shares, "proportional": proportional}
METHODS = (JOINT, *BASELINES)
SHARES_METHODS = (JOINT, "equal-shares")  # the methods whose per-device shares are kept
JSON_NAME, REPORT_NAME = "fleet_study.json", "fleet_report.md"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MethodOutcome:
    """One division of one fleet: Σ distortion and the worst device's (over the served
    devices; None when none is served), devices served, seconds to decide."""

    method: str
    objective: float
    worst_distortion: float | None
    served: int
    solve_time_s: float


@dataclass(frozen=True)
class SizeOutcome:
    """Every method on the fleet of the first n devices, and the solver's certificate."""

    n_devices: int
    dual_bound: float
    relative_gap: float
    outcomes: tuple[MethodOutcome, ...]

    def outcome(self, method: str) -> MethodOutcome:
        return next(o for o in self.outcomes if o.method == method)


@dataclass(frozen=True)
class DeviceShare:
    """One device of the largest fleet under one method: its class, gain, shares, split
    (None: not served) and distortion (None: not served)."""

    method: str
    device_id: str
    class_name: str
    path_gain: float
    bandwidth_hz: float
    server_cycles_per_s: float
    split: int | None
    distortion: float | None


@dataclass(frozen=True)
class FleetStudyData:
    """Everything the figures and the report are drawn from (fleet_study.json)."""

    seed: int
    bandwidth_hz: float
    server_cycles_per_s: float
    max_rounds: int
    gap: float
    n_units: int  # splits are 0 … n_units (n_units: the whole model on the device)
    sizes: tuple[SizeOutcome, ...]
    devices: tuple[DeviceShare, ...]
    seconds: float


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def method_outcome(solution: FleetSolution, method: str) -> MethodOutcome:
    served = solution.served
    worst = solution.device_objective[served].max() if served.any() else math.inf
    return MethodOutcome(method=method, objective=solution.objective,
                         worst_distortion=_finite(float(worst)), served=int(served.sum()),
                         solve_time_s=solution.solve_time_s)


def device_shares(solution: FleetSolution, method: str) -> list[DeviceShare]:
    fleet = solution.fleet
    rows = []
    for u in range(fleet.n_devices):
        point = solution.decisions[u].point
        rows.append(DeviceShare(
            method=method, device_id=fleet.ids[u],
            class_name=fleet.classes[int(fleet.class_index[u])].name,
            path_gain=float(fleet.path_gain[u]), bandwidth_hz=float(solution.bandwidth_hz[u]),
            server_cycles_per_s=float(solution.server_cycles_per_s[u]),
            split=None if point is None else int(point.split),
            distortion=None if point is None else _finite(float(point.objective))))
    return rows


def study_fleet(n_devices: int, seed: int = SEED, largest: int = SIZES[-1]) -> Fleet:
    """n of `largest` city devices drawn with `seed` (nested in n) at the fixed band and
    server."""
    resources = SharedResources(BANDWIDTH_HZ, SERVER_CYCLES_PER_S, SERVER_FLOPS_PER_CYCLE)
    return nested_fleet(n_devices, max(n_devices, largest), seed, resources, RADIUS_M)


def run_sizes(sizes: Sequence[int], seed: int, max_rounds: int, gap: float,
              progress: Progress | None = None
              ) -> tuple[list[SizeOutcome], dict[str, FleetSolution]]:
    """(a, d): every method on every nested fleet; the largest fleet's solutions."""
    outcomes, largest = [], {}
    for n in sizes:
        fleet = study_fleet(n, seed, max(sizes))
        joint = solve_fleet(fleet, "sum", gap=gap, max_rounds=max_rounds)
        solutions = {JOINT: joint, **{name: baseline(fleet)
                                      for name, baseline in BASELINES.items()}}
        outcomes.append(SizeOutcome(
            n_devices=n, dual_bound=float(joint.dual_bound or 0.0),
            relative_gap=float(joint.relative_gap or 0.0),
            outcomes=tuple(method_outcome(s, m) for m, s in solutions.items())))
        largest = solutions
        if progress:
            progress(f"{n} devices: joint {joint.objective:.6g} (gap "
                     f"{outcomes[-1].relative_gap:.2e}, {joint.solve_time_s:.1f} s)")
    return outcomes, largest


def run_fleet_study(out: str | Path, *, sizes: Sequence[int] = SIZES, seed: int = SEED,
                    max_rounds: int = MAX_ROUNDS, gap: float = GAP,
                    progress: Progress | None = None) -> tuple[FleetStudyData, list[Figure]]:
    """Run the fleet experiments and write OUT/fleet_study.json, OUT/fleet_report.md and
    OUT/figures/fleet_*.png|svg."""
    from laimco.experiments.study.figures_fleet import draw_fleet_figures

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outcomes, largest = run_sizes(sizes, seed, max_rounds, gap, progress)
    devices = [row for m in SHARES_METHODS for row in device_shares(largest[m], m)]
    n_units = max(load_profile(c.scenario.model.profile).n_units
                  for c in largest[JOINT].fleet.classes)
    data = FleetStudyData(seed=seed, bandwidth_hz=BANDWIDTH_HZ,
                          server_cycles_per_s=SERVER_CYCLES_PER_S, max_rounds=max_rounds,
                          gap=gap, n_units=n_units, sizes=tuple(outcomes),
                          devices=tuple(devices), seconds=time.perf_counter() - started)
    figures = draw_fleet_figures(data, out / "figures")
    (out / JSON_NAME).write_text(json.dumps(asdict(data), indent=1) + "\n", encoding="utf-8")
    (out / REPORT_NAME).write_text(fleet_report(data, figures), encoding="utf-8")
    return data, figures


def ratio(a: float, b: float) -> float:
    """a/b, with 0/0 = 1 (both divisions leave every device unpruned)."""
    return 1.0 if a == b else a / b if b > 0 else math.inf


def size_rows(data: FleetStudyData) -> list[list[str]]:
    """(a, d) one row per fleet size."""
    rows = []
    for size in data.sizes:
        joint = size.outcome(JOINT)
        row = [str(size.n_devices), fmt_g(joint.objective, 6), fmt_g(size.dual_bound, 6),
               f"{size.relative_gap:.2e}"]
        row += [fmt_g(size.outcome(m).objective, 6) for m in BASELINES]
        row += [fmt_g(ratio(size.outcome(m).objective, joint.objective)) for m in BASELINES]
        row += [fmt_g(size.outcome(m).worst_distortion) for m in METHODS]
        row += ["/".join(str(size.outcome(m).served) for m in METHODS),
                f"{joint.solve_time_s:.2f}"]
        rows.append(row)
    return rows


SIZE_HEADER = (["N", "joint Σ D", "bound", "certified gap"]
               + [f"{m} Σ D" for m in BASELINES] + [f"{m} / joint" for m in BASELINES]
               + [f"worst D {m}" for m in METHODS] + ["served (" + "/".join(METHODS) + ")",
                                                      "joint solve s"])


def class_rows(data: FleetStudyData) -> list[list[str]]:
    """(b, c) per method and class of the largest fleet: devices, mean shares, splits."""
    rows = []
    for method in SHARES_METHODS:
        for name in sorted({d.class_name for d in data.devices}):
            group = [d for d in data.devices if d.method == method and d.class_name == name]
            splits = [d.split for d in group if d.split is not None]
            counts = ", ".join(f"{s}: {splits.count(s)}" for s in sorted(set(splits)))
            rows.append([method, name, str(len(group)),
                         fmt_g(float(np.mean([d.bandwidth_hz for d in group])) / 1e6),
                         fmt_g(float(np.mean([d.server_cycles_per_s for d in group])) / 1e9),
                         counts or "—", str(len(group) - len(splits))])
    return rows


CLASS_HEADER = ["method", "class", "devices", "mean band MHz", "mean server Gcycles/s",
                "split: devices", "not served"]


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def fleet_report(data: FleetStudyData, figures: Sequence[Figure]) -> str:
    """fleet_report.md: the tables (computed from `data`) and the figures."""
    largest = data.sizes[-1].n_devices
    parts = [
        "# Fleet study", "",
        f"Nested paper-mode city fleets within {RADIUS_M:g} m (seed {data.seed}) sharing "
        f"{data.bandwidth_hz / 1e6:g} MHz "
        f"and {data.server_cycles_per_s / 1e9:g} Gcycles/s; the solver stops at a certified "
        f"gap of {data.gap:g} or after {data.max_rounds} rounds. D: the distortion bound "
        f"(paper mode); Σ over the served devices. Run: {data.seconds:.0f} s.", "",
        "## Distortion, certificate and solve time vs N", "", _table(SIZE_HEADER,
                                                                     size_rows(data)), "",
        f"## Shares and splits per class ({largest} devices)", "",
        _table(CLASS_HEADER, class_rows(data)), ""]
    for figure in figures:
        parts += [f"## {figure.title}", "", f"![{figure.name}]({figure.files[0]})", "",
                  figure.caption, ""]
    return "\n".join(parts)
