"""What a study run produced: per-sweep work and times, the figures and the claims."""

from __future__ import annotations

from dataclasses import dataclass

from laimco.experiments.study.claim import Claim
from laimco.experiments.study.figures_style import Figure


@dataclass(frozen=True)
class SweepRun:
    """One sweep of the study: its size and what this run computed."""

    points: int
    chunks: int
    chunks_computed: int
    evaluations: int  # scenario-realizations computed now
    seconds: float


@dataclass(frozen=True)
class StudyResult:
    """A finished study (what report.md, claims.json and study.json are written from)."""

    quick: bool
    seconds: float
    runs: dict[str, SweepRun]
    executor: str
    figures: list[Figure]
    claims: list[Claim]
