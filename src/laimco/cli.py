"""The `laimco` command line: a thin shell over config, optimize, models and runtime. Each
package registers its own commands (decision_commands.py, models/commands.py,
experiments/commands.py, runtime/commands.py). Every message printed through rich is escaped
(rich.markup.escape), so bracketed text such as `laimco[models]` survives; bad input exits
with code 2 and one message (README "Command line")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

import laimco
from laimco.extras import extra_of_module, install_hint
from laimco.terminal import console, errors, fail

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Pruning-aware co-inference of large AI models over wireless links.")


def _show_version(value: bool) -> None:
    if value:
        console.print(f"laimco {escape(laimco.__version__)}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="print laimco's version and exit")] = False) -> None:
    """Pruning-aware co-inference of large AI models over wireless links."""


def examples(
    dest: Annotated[Path, typer.Argument(
        help="folder to copy the shipped scenarios/, sweeps/ and fleets/ into (created if "
        "missing)")],
) -> None:
    """Copy the shipped example scenarios, sweep and fleet files into a folder (never
    overwrites)."""
    from laimco.examples import ExamplesError, copy_examples

    try:
        written = copy_examples(dest)
    except (ExamplesError, OSError) as err:
        fail(str(err))
    console.print(escape(f"copied {len(written)} files to {dest}: scenarios/, sweeps/ and "
                         f"fleets/ (try: laimco optimize "
                         f"{dest / 'scenarios' / 'minilm-phone.toml'})"),
                  highlight=False)


def _register_commands() -> None:
    """Every package's commands; those whose modules bring their own dependencies (the
    study's Dask, the runtime's MLServer, the models' torch) import them only when run."""
    from laimco.decision_commands import path_gain
    from laimco.decision_commands import register as register_decisions
    from laimco.experiments.commands import register as register_study
    from laimco.fleet.commands import register as register_fleet
    from laimco.models.commands import register as register_models
    from laimco.runtime.commands import register as register_runtime

    register_decisions(app)
    register_models(app)
    app.command()(examples)
    app.command("path-gain")(path_gain)
    register_study(app)
    register_fleet(app)
    register_runtime(app)


_register_commands()


def main() -> None:
    """The console script: the typer app, with an optional dependency that is missing anywhere
    (serve's MLServer, the study's Dask, the models' torch) reported as the command that
    installs it (exit 2) instead of a traceback."""
    try:
        app()
    except ModuleNotFoundError as err:
        extra = extra_of_module(err.name or "")
        if extra is None:
            raise
        _print_missing(err.name or "", extra)
        sys.exit(2)


def _print_missing(module: str, extra: str) -> None:
    errors.print(f"[bold red]error:[/] {escape(module)} is not installed: "
                 f"{escape(install_hint(extra))}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
