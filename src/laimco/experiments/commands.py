"""`laimco sweep` and `laimco reproduce`: thin command-line shells over the sweep engine and
the study. `register(app)` adds them to laimco's typer app; `python -m
laimco.experiments.commands` runs them alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

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
    errors.print(f"[yellow]interrupted[/]: finished chunks are kept in {escape(str(out))}/parts; "
                 "run the same command again to resume")
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
) -> None:
    """Run a declarative sweep; results go to OUT/results.parquet. Interrupt it at any time
    and rerun the same command: finished chunks are not recomputed."""
    from laimco.experiments.executors import ExecutorError, make_executor
    from laimco.experiments.sweep import SweepError, describe, load_sweep, run_sweep

    _check_format(fmt)
    try:
        spec = load_sweep(file, quick=quick)
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
    except KeyboardInterrupt:
        _interrupted(folder)
        raise
    rate = result.evaluations_run / result.seconds if result.seconds > 0 else 0.0
    console.print(escape(f"{result.table}: {result.n_points} points in {result.n_chunks} "
                         f"chunks ({result.chunks_run} computed now, "
                         f"{result.n_chunks - result.chunks_run} reused); "
                         f"{result.evaluations_run:,} scenario-realizations in "
                         f"{result.seconds:.1f} s ({rate:,.0f}/s)"), highlight=False)


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
) -> None:
    """The whole study: every sweep under sweeps/, its figures (PNG + SVG), a table and a
    computed verdict per claim, in OUT/report.md. Resumes like `laimco sweep`."""
    from laimco.experiments.executors import ExecutorError, make_executor
    from laimco.experiments.study import StudyError, default_sweeps_dir, run_study
    from laimco.experiments.sweep import SweepError

    _check_format(fmt)
    try:
        with make_executor(workers=workers, dask_local=dask_local,
                           scheduler=scheduler) as executor:
            console.print(escape(f"executor: {executor.name}"), highlight=False)
            study = run_study(out, quick=quick, sweeps_dir=sweeps or default_sweeps_dir(),
                              executor=executor, fmt=fmt,  # type: ignore[arg-type]
                              analysis_json=analysis, progress=not no_progress,
                              console=console)
    except (SweepError, StudyError, ExecutorError) as err:
        _fail(str(err))
        raise
    except KeyboardInterrupt:
        _interrupted(out / "sweeps")
        raise
    for claim in study["claims"]:
        mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "·"}[claim["holds"]]
        console.print(f"{mark} {escape(claim['title'])}: {escape(claim['verdict'])}",
                      highlight=False)
    console.print(escape(f"wrote {out / 'report.md'} with {len(study['figures'])} figures in "
                         f"{study['seconds']:.0f} s"), highlight=False)


def register(app: typer.Typer) -> None:
    """Add `sweep` and `reproduce` to the laimco command line."""
    app.command("sweep")(sweep)
    app.command("reproduce")(reproduce)


def main() -> None:
    app = typer.Typer(no_args_is_help=True, add_completion=False)
    register(app)
    app()


if __name__ == "__main__":
    main()
