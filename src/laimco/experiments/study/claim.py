"""A claim of the study: data → verdict. Each claim function (claims_*.py) reads sweep tables
and returns one `Claim` with its status (what kind of evidence the verdict is), the verdict
sentence, the numbers behind it and a table; `report.py` renders claims to Markdown and JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

# What a claim's numbers may be: JSON values (claims.json writes them as they are).
EvidenceValue = (float | int | bool | str | None | Sequence["EvidenceValue"]
                 | Mapping[str, "EvidenceValue"] | Mapping[float, "EvidenceValue"])
Evidence = Mapping[str, EvidenceValue]


class Status(StrEnum):
    """What kind of evidence a verdict is. Only HOLDS and FAILS are findings; a check that
    cannot fail unless the code is wrong says so. A failed check of any kind is FAILS."""

    HOLDS = "holds"
    FAILS = "fails"
    BY_CONSTRUCTION = "by_construction"  # every baseline restricts joint, and joint is exact
    ANALYTIC = "analytic"  # re-measures a proven fact
    NOT_JUDGED = "not_judged"  # needs measured quality (laimco evaluate)
    MEASURED = "measured"  # numbers without a pass/fail verdict

    @property
    def is_finding(self) -> bool:
        return self in (Status.HOLDS, Status.FAILS)


class ClaimId(StrEnum):
    """The study's claims, in the order the report shows them."""

    BOUND = "bound"
    LAWS = "laws"
    DOMINANCE = "dominance"
    FEASIBILITY = "feasibility"
    CORNERS = "corners"
    SPLIT = "split"
    REGIMES = "regimes"
    FADING = "fading"
    ROBUST = "robust"
    SOLVE_TIME = "solve_time"
    ALTERNATING = "alternating"
    MODEL_SIZE = "model_size"
    UPLINK = "uplink"
    EXECUTION = "execution"
    UPLINK_EXECUTED = "uplink_executed"


@dataclass(frozen=True)
class TextTable:
    """A table of already formatted cells (the report writer decides the markup)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, header: Sequence[str], rows: Sequence[Sequence[object]]) -> TextTable:
        """A table whose cells are written with str()."""
        return cls(tuple(header), tuple(tuple(str(c) for c in row) for row in rows))


@dataclass(frozen=True)
class Claim:
    """One claim of the paper (or a check of laimco's) and its verdict on the study's data.

    `holds` is the check's outcome (None: no pass/fail); `status` says what kind of evidence
    the verdict is. Build claims with `Claim.judged`, which applies the status rule."""

    id: ClaimId
    title: str
    paper: str  # the paper's statement, or the check's, in words
    verdict: str
    holds: bool | None
    status: Status
    tables: tuple[TextTable, ...] = ()
    figures: tuple[str, ...] = ()
    evidence: Evidence = field(default_factory=dict)

    @classmethod
    def judged(cls, cid: ClaimId, title: str, paper: str, verdict: str, holds: bool | None,
               tables: TextTable | Sequence[TextTable] | None, figures: Sequence[str] = (),
               *, kind: Status | None = None, **evidence: EvidenceValue) -> Claim:
        """A claim whose status is `kind` (BY_CONSTRUCTION, ANALYTIC, NOT_JUDGED, MEASURED)
        when given, else HOLDS if it holds and MEASURED if it has no verdict; a failed check
        is always FAILS, whatever its kind."""
        if holds is False:
            status = Status.FAILS
        elif kind is not None:
            status = kind
        else:
            status = Status.HOLDS if holds else Status.MEASURED
        if tables is None:
            shown: tuple[TextTable, ...] = ()
        elif isinstance(tables, TextTable):
            shown = (tables,)
        else:
            shown = tuple(tables)
        return cls(cid, title, paper, verdict, holds, status, shown, tuple(figures),
                   dict(evidence))
