"""`laimco sweep`, `reproduce`, `evaluate` and `fleet-study`: thin command-line shells over the
sweep engine and the studies. `register(app)` adds them to laimco's typer app; `python -m
laimco.experiments.commands` runs them alone."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from laimco.experiments.study.claim import Claim
    from laimco.experiments.study.claims_corners import MeasuredGain

console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True)

Workers = Annotated[int | None, typer.Option(
    help="local worker processes (default: one per core; 1 = this process)")]
DaskLocal = Annotated[int | None, typer.Option(
    "--dask-local", help="run on a new local Dask cluster of N worker processes")]
Scheduler = Annotated[str | None, typer.Option(
    "--scheduler", help="run on an existing Dask cluster, e.g. tcp://host:8786")]
TableFormat = Annotated[str, typer.Option("--format", help="table format: parquet | csv")]
Quick = Annotated[bool, typer.Option(help=escape("use the sweep files' [quick] grids"))]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="no progress bar")]


def _fail(message: str, code: int = 2) -> None:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=code)


def _check_format(fmt: str) -> None:
    if fmt not in ("parquet", "csv"):
        _fail(f"--format must be parquet or csv, got {fmt!r}")


def _interrupted(out: Path) -> None:
    errors.print(f"[yellow]interrupted[/]: finished chunks are kept in "
                 f"{escape(str(out))}/parts; run the same command again to resume")
    raise typer.Exit(code=130)


def sweep(
    file: Annotated[Path, typer.Argument(help="sweep TOML file (see sweeps/)")],
    out: Annotated[Path | None, typer.Option(
        help="output folder (default runs/<sweep name>)")] = None,
    quick: Quick = False,
    workers: Workers = None,
    dask_local: DaskLocal = None,
    scheduler: Scheduler = None,
    fmt: TableFormat = "parquet",
    no_progress: NoProgress = False,
    max_evaluations: Annotated[int | None, typer.Option(
        "--max-evaluations", min=1,
        help="refuse a sweep asking for more evaluations (points × strategies × realizations) "
             "than this (default: the file's \\[limits] max_evaluations, else 10^7)")] = None,
) -> None:
    """Run a declarative sweep; results go to OUT/results.parquet. Interrupt it at any time
    and rerun the same command: finished chunks are not recomputed."""
    from laimco.experiments.executors import ExecutorError, make_executor
    from laimco.experiments.sweep import SweepError, describe, load_sweep, run_sweep

    _check_format(fmt)
    try:
        spec = load_sweep(file, quick=quick, max_evaluations=max_evaluations)
    except SweepError as err:
        _fail(str(err))
        raise
    folder = out or Path("runs") / spec.name
    console.print(escape(describe(spec)), highlight=False)
    try:
        with make_executor(workers=workers, dask_local=dask_local,
                           scheduler=scheduler) as executor:
            console.print(escape(f"executor: {executor.name}"), highlight=False)
            result = run_sweep(spec, folder, executor=executor, fmt=fmt,  # type: ignore[arg-type]
                               progress=not no_progress)
    except (SweepError, ExecutorError) as err:
        _fail(str(err))
        raise
    except OSError as err:  # the disk filled up, the folder vanished, …
        _fail(f"writing {folder}: {err.strerror or err}")
        raise
    except KeyboardInterrupt:
        _interrupted(folder)
        raise
    rate = result.evaluations_run / result.seconds if result.seconds > 0 else 0.0
    console.print(f"{result.table}: {result.n_points} points in {result.n_chunks} chunks "
                  f"({result.chunks_run} computed now, {result.n_chunks - result.chunks_run} "
                  f"reused); {result.evaluations_run:,} scenario-realizations in "
                  f"{result.seconds:.1f} s ({rate:,.0f}/s)", highlight=False, markup=False)


def reproduce(
    out: Annotated[Path, typer.Option(help="folder for sweeps, figures and report.md")] = Path(
        "runs/study"),
    quick: Annotated[bool, typer.Option(help="coarse grids (≤ 3 min; the tests use it)")] = (
        False),
    sweeps: Annotated[Path | None, typer.Option(
        help="folder of the sweep files (default: the ones shipped with laimco, the same as "
             "the repository's sweeps/)")] = None,
    analysis: Annotated[Path | None, typer.Option(
        help="take the bound-reliability numbers from this analysis.json (laimco analyze) "
             "instead of measuring them")] = None,
    workers: Workers = None,
    dask_local: DaskLocal = None,
    scheduler: Scheduler = None,
    fmt: TableFormat = "parquet",
    no_progress: NoProgress = False,
    run_evaluation: Annotated[bool | None, typer.Option(
        "--evaluate/--no-evaluate",
        help="apply every strategy's decision on every shipped scenario to the real model "
        "(laimco evaluate, into OUT/evaluate) for the measured claims; default: yes, but not "
        "with --quick")] = None,
    evaluation: Annotated[Path | None, typer.Option(
        help="use this existing `laimco evaluate` output folder for the measured claims")
    ] = None,
) -> None:
    """The whole study: every sweep under sweeps/, its figures (PNG + SVG), a table and a
    computed verdict per claim, in OUT/report.md. Resumes like `laimco sweep`."""
    from laimco.experiments.executors import ExecutorError, make_executor
    from laimco.experiments.study import StudyError, default_sweeps_dir, run_study
    from laimco.experiments.study.report import STATUS_LABELS
    from laimco.experiments.sweep import SweepError

    _check_format(fmt)
    if evaluation is not None and not (evaluation / "evaluate.json").is_file():
        _fail(f"--evaluation {evaluation}: no evaluate.json there (run `laimco evaluate "
              "scenarios/ --out DIR` first)")
    measured_gain: Callable[[], list[MeasuredGain]] | None = None
    measured_claims: list[Claim] = []
    if evaluation is None and (run_evaluation if run_evaluation is not None else not quick):
        evaluation = out / "evaluate"
        _evaluate_shipped(evaluation)
    if evaluation is not None:
        measured_gain, measured_claims = _measured(evaluation)
    try:
        with make_executor(workers=workers, dask_local=dask_local,
                           scheduler=scheduler) as executor:
            console.print(escape(f"executor: {executor.name}"), highlight=False)
            study = run_study(out, quick=quick, sweeps_dir=sweeps or default_sweeps_dir(),
                              executor=executor, fmt=fmt,  # type: ignore[arg-type]
                              analysis_json=analysis, progress=not no_progress,
                              console=console, measured_gain=measured_gain,
                              measured_claims=measured_claims)
    except (SweepError, StudyError, ExecutorError) as err:
        _fail(str(err))
        raise
    except KeyboardInterrupt:
        _interrupted(out / "sweeps")
        raise
    for claim in study.claims:
        mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "·"}[
            claim.holds if claim.status.is_finding or claim.holds is False else None]
        status = "" if claim.status.is_finding else f" ({escape(STATUS_LABELS[claim.status])})"
        console.print(f"{mark} {escape(claim.title)}{status}: {escape(claim.verdict)}",
                      highlight=False)
    console.print(escape(f"wrote {out / 'report.md'} with {len(study.figures)} figures in "
                         f"{study.seconds:.0f} s"), highlight=False)


def _measured(evaluation: Path) -> tuple[Callable[[], list[MeasuredGain]], list[Claim]]:
    """What an evaluate output folder gives the study: the measured gains (as the callable
    run_study takes) and the claims judged on measurements."""
    from laimco.experiments.study import StudyError
    from laimco.experiments.study.claims_execution import (
        claim_execution,
        evaluation_inputs,
        measured_gains,
    )
    from laimco.experiments.study.claims_uplink import claim_uplink_executed

    try:
        report, losses = evaluation_inputs(evaluation)
    except StudyError as err:
        _fail(str(err))
        raise
    gains = measured_gains(report, losses)
    claims = [claim_execution(report, losses)]
    executed = claim_uplink_executed(report.compression_targets())
    claims += [executed] if executed is not None else []
    return (lambda: gains), claims


def _evaluate_shipped(out: Path) -> None:
    """`laimco evaluate` on every shipped scenario (both modes) into `out` (resumes)."""
    from laimco.config import ScenarioError
    from laimco.examples import scenarios_dir
    from laimco.experiments.evaluate import EvaluateError
    from laimco.experiments.evaluate import evaluate as run_evaluate

    try:
        run_evaluate(scenarios_dir(), out)
    except (EvaluateError, ScenarioError) as err:
        _fail(str(err))


def evaluate(
    scenarios: Annotated[Path, typer.Argument(help="scenario TOML file or a folder of them")],
    out: Annotated[Path, typer.Option(help="folder for evaluate.json/.md and figures")] = (
        Path("runs/evaluate")),
    model: Annotated[str, typer.Option(help="the profile's model: built-in name or directory")
                     ] = "minilm",
    strategies: Annotated[str | None, typer.Option(
        help="comma-separated strategy names (default: every strategy but the generic-solver "
        "baselines slsqp and alternating)")] = None,
    sentences: Annotated[int, typer.Option(help="held-out sentences to measure on")] = 256,
    timing_rounds: Annotated[int, typer.Option(
        help="round-robin timing rounds (thread CPU time)")] = 15,
) -> None:
    """Apply every strategy's decision to the real model: predicted vs measured quality,
    latency, energy and limits (resumes an interrupted run in the same --out)."""
    from laimco.config import ScenarioError
    from laimco.experiments.evaluate import DEFAULT_STRATEGIES, EvaluateError
    from laimco.experiments.evaluate import evaluate as run_evaluate
    from laimco.models.loading import ModelLoadError
    from laimco.profile import ProfileError

    names = DEFAULT_STRATEGIES if strategies is None else tuple(
        s.strip() for s in strategies.split(",") if s.strip())
    if timing_rounds < 1:
        _fail(f"--timing-rounds must be at least 1 (got {timing_rounds})")
    try:
        report = run_evaluate(scenarios, out, model=model, strategies=names,
                              n_sentences=sentences, timing_rounds=timing_rounds)
    except (EvaluateError, ScenarioError, ProfileError, ModelLoadError) as err:
        _fail(str(err))
        return
    agreement = report["rank_agreement"]
    console.print(f"wrote evaluate.json, evaluate.md and figures to {escape(str(out))}; the "
                  f"objective orders {agreement['agreeing']}/{agreement['pairs']} significant "
                  "pairs as measured", highlight=False)


def fleet_study(
    out: Annotated[Path, typer.Option(help="folder for fleet_report.md, fleet_study.json and "
                                      "figures/")] = Path("runs/fleet-study"),
    sizes: Annotated[str, typer.Option(
        help="comma-separated increasing fleet sizes N (N of the largest size's devices: "
             "the fleets are nested)")] = (
        "2,4,8,16,32,64"),
    seed: Annotated[int, typer.Option(help="seed of the fleet's draws")] = 14,
    max_rounds: Annotated[int, typer.Option(
        min=0, help="refinement rounds of the fleet solver at most")] = 20,
) -> None:
    """The fleet study: N paper-mode devices sharing one band and one edge server, the
    certified fleet solver against equal and proportional shares (docs/study.md "Fleet")."""
    from laimco.experiments.study.fleet_study import run_fleet_study

    try:
        counts = tuple(int(s) for s in sizes.split(",") if s.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1 or list(counts) != sorted(set(counts)):
        _fail(f"--sizes must be increasing positive integers separated by commas, got {sizes!r}")
    data, figures = run_fleet_study(out, sizes=counts, seed=seed, max_rounds=max_rounds,
                                    progress=lambda text: console.print(escape(text),
                                                                        highlight=False))
    console.print(escape(f"wrote {out / 'fleet_report.md'} with {len(figures)} figures in "
                         f"{data.seconds:.0f} s"), highlight=False)


def register(app: typer.Typer) -> None:
    """Add `sweep`, `reproduce`, `evaluate` and `fleet-study` to the laimco command line."""
    app.command("sweep")(sweep)
    app.command("reproduce")(reproduce)
    app.command("evaluate")(evaluate)
    app.command("fleet-study")(fleet_study)


def main() -> None:
    app = typer.Typer(no_args_is_help=True, add_completion=False)
    register(app)
    app()


if __name__ == "__main__":
    main()
