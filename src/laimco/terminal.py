"""What every command of the `laimco` shell shares: the consoles, the one-message failure
(exit code 2) and the default output root (README "Command line")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from laimco.extras import MissingExtraError, require_extra

# a pipe or a CI log has no width: give tables room instead of folding them at 80 columns
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True)  # errors and progress: stdout stays clean for --json
RUNS = Path("runs")  # default output root: never the repository's shipped folders


def fail(message: str) -> NoReturn:
    """One message on stderr, exit code 2 (soft-wrapped: paths in it stay whole)."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def require_models(command: str) -> None:
    """Exit 2 with the install command when the model extra (torch, transformers,
    safetensors) is missing, before anything imports torch."""
    try:
        require_extra("models", f"laimco {command}")
    except MissingExtraError as err:
        fail(str(err))
