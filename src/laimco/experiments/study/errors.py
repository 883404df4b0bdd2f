"""The study's error type."""

from __future__ import annotations


class StudyError(ValueError):
    """A study that cannot run (missing sweep file, unreadable analysis.json); the message
    names the file and what to change."""
