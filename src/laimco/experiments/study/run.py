"""Running the study: every sweep (resumable), then the figures, the claims and the report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from laimco.experiments.study.claim import Claim
from laimco.experiments.study.claims_bound import (
    bound_from_analysis,
    claim_bound,
    claim_laws,
    k_hat,
)
from laimco.experiments.study.claims_corners import MeasuredGainSource, claim_corners
from laimco.experiments.study.claims_design import claim_dominance, claim_feasibility
from laimco.experiments.study.claims_fading import claim_fading, claim_robust
from laimco.experiments.study.claims_model_size import claim_model_size
from laimco.experiments.study.claims_scenarios import claim_regimes, claim_split
from laimco.experiments.study.claims_solvers import (
    ALTERNATING_SWEEPS,
    claim_alternating,
    claim_solve_time,
)
from laimco.experiments.study.claims_uplink import claim_uplink
from laimco.experiments.study.errors import StudyError
from laimco.experiments.study.figures import draw_figures
from laimco.experiments.study.report import write_study
from laimco.experiments.study.result import StudyResult, SweepRun
from laimco.experiments.study.tables import Table
from laimco.experiments.study.uplink_quality import (
    UplinkQuality,
    measure_uplink_quality,
    measured_bandwidths,
)
from laimco.experiments.sweep import (
    Format,
    expand,
    load_sweep,
    read_columns,
    read_table,
    run_sweep,
)

SWEEPS = ("bound", "latency", "energy", "bandwidth", "pathgain", "txpower", "device_class",
          "regimes", "fading", "robust", "solve_time", "model_size", "uplink_bandwidth",
          "uplink_bandwidth_float32", "uplink_pathgain")
# the compressed-uplink measurement on the real model (uplink_quality.py), quick and full:
# held-out sentences, bandwidths of uplink_bandwidth.toml executed, widths per split
UPLINK_SENTENCES = {True: 16, False: 256}
UPLINK_BANDWIDTHS = {True: 3, False: 4}
UPLINK_WIDTHS: dict[bool, tuple[int, ...] | None] = {True: (8, 4, 2), False: None}  # None: all


def default_sweeps_dir() -> Path:
    """The sweep files shipped with the package (laimco/examples/sweeps; the repository's
    top-level sweeps/ links to the same folder)."""
    from laimco.examples import sweeps_dir

    return sweeps_dir()


def _run_sweeps(names: Sequence[str], sweeps_dir: Path, out: Path, *, quick: bool,
                executor: Any, fmt: Format, progress: bool, console: Any
                ) -> dict[str, SweepRun]:
    specs = {}
    for name in names:
        file = sweeps_dir / f"{name}.toml"
        if not file.is_file():
            raise StudyError(f"{file}: missing sweep file (the study needs {', '.join(SWEEPS)})")
        specs[name] = load_sweep(file, quick=quick)
    for name, spec in specs.items():  # every point of every sweep validated before any work
        expand(spec, out / "sweeps" / name)
    runs = {}
    for name, spec in specs.items():
        result = run_sweep(spec, out / "sweeps" / name, executor=executor, fmt=fmt,
                           progress=progress, console=console)
        runs[name] = SweepRun(points=result.n_points, chunks=result.n_chunks,
                              chunks_computed=result.chunks_run,
                              evaluations=result.evaluations_run, seconds=result.seconds)
    return runs


def study_claims(tables: dict[str, Table], bound: Table, bound_source: str, timings: Table,
                 alternating_timings: dict[str, Table],
                 measured_gain: MeasuredGainSource | None,
                 uplink_quality: UplinkQuality | None = None) -> list[Claim]:
    """Every claim computed from the sweep tables, in the report's order."""
    return [claim_bound(bound, bound_source), claim_laws(bound), claim_dominance(tables),
            claim_feasibility(tables),
            claim_corners(tables, None if measured_gain is None else measured_gain()),
            claim_split(tables["device_class"], tables["regimes"]),
            claim_regimes(tables["regimes"], tables.get("latency")),
            claim_fading(tables["fading"]), claim_robust(tables["robust"]),
            claim_solve_time(tables["solve_time"], timings),
            claim_alternating(tables, alternating_timings),
            claim_model_size(tables["model_size"], bound),
            claim_uplink(tables["uplink_bandwidth"], tables["uplink_bandwidth_float32"],
                         uplink_quality)]


def _uplink_quality(sweeps_dir: Path, out: Path, table: Table, quick: bool) -> UplinkQuality:
    """The compressed uplink measured on the real model at a few bandwidths of the
    uplink_bandwidth sweep (cached in OUT/uplink/quality.json)."""
    spec = load_sweep(sweeps_dir / "uplink_bandwidth.toml", quick=quick)
    assert spec.base is not None  # the shipped file names its base scenario
    bandwidths = measured_bandwidths(table["channel.bandwidth_hz"], UPLINK_BANDWIDTHS[quick])
    return measure_uplink_quality(spec.base, bandwidths, UPLINK_SENTENCES[quick],
                                  out / "uplink" / "quality.json", UPLINK_WIDTHS[quick])


def run_study(out: str | Path, *, quick: bool = False, sweeps_dir: Path | None = None,
              executor: Any = None, fmt: Format = "parquet", analysis_json: Path | None = None,
              progress: bool = True, console: Any = None,
              measured_gain: MeasuredGainSource | None = None,
              measured_claims: Sequence[Claim] = ()) -> StudyResult:
    """Run (or resume) every sweep, then draw the figures, compute the claims and write
    report.md, claims.json and study.json into `out`. `measured_gain` supplies the measured
    quality gain of the best interior split over the best corner per scenario (from
    `laimco evaluate`); without it "split beats both corners" is reported as not judged.
    `measured_claims` are claims computed from `laimco evaluate` (evaluation_claims.py)."""
    started = time.perf_counter()
    out = Path(out)
    sweeps_dir = Path(sweeps_dir or default_sweeps_dir())
    names = [n for n in SWEEPS if not (n == "bound" and analysis_json is not None)]
    runs = _run_sweeps(names, sweeps_dir, out, quick=quick, executor=executor, fmt=fmt,
                       progress=progress, console=console)
    tables = {name: read_table(out / "sweeps" / name) for name in names}
    if analysis_json is not None:
        bound, bound_source = bound_from_analysis(Path(analysis_json)), str(analysis_json)
    else:
        bound, bound_source = tables["bound"], "measured by sweeps/bound.toml"
    timings = read_columns(out / "sweeps" / "solve_time" / f"timings.{fmt}")
    alternating_timings = {name: read_columns(out / "sweeps" / name / f"timings.{fmt}")
                           for name in ALTERNATING_SWEEPS}
    quality = _uplink_quality(sweeps_dir, out, tables["uplink_bandwidth"], quick)
    figures = draw_figures(tables, bound, k_hat(bound), bound_source, timings,
                           out / "figures", quality)
    claims = [*study_claims(tables, bound, bound_source, timings, alternating_timings,
                            measured_gain, quality), *measured_claims]
    study = StudyResult(quick=quick, seconds=time.perf_counter() - started, runs=runs,
                        executor=getattr(executor, "name", "in-process"), figures=figures,
                        claims=claims)
    write_study(study, out, sweeps_dir.parent / "scenarios")
    return study

