"""The study's error type, and how a file that fails validation is described in it."""

from __future__ import annotations

from pydantic import ValidationError


class StudyError(ValueError):
    """A study that cannot run (missing sweep file, unreadable analysis.json); the message
    names the file and what to change."""


def first_problem(err: ValidationError | OSError) -> str:
    """One line naming the first invalid key of a file and what is wrong with it."""
    if isinstance(err, OSError):
        return str(err)
    first = err.errors()[0]
    where = ".".join(map(str, first["loc"])) or "(top level)"
    return f"{err.error_count()} problem(s), first: {where}: {first['msg']}"
