"""The study's report writer: report.md (verdicts, figures, tables, the scenarios and their
sources, run times), claims.json (every claim with its numbers) and study.json (run times and
figures), from a finished `StudyResult`. Display labels live here, nowhere else."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from laimco.experiments.study.citations import load_citations
from laimco.experiments.study.claim import Claim, ClaimId, Status, TextTable
from laimco.experiments.study.numbers import fmt_rate
from laimco.experiments.study.result import StudyResult
from laimco.experiments.study.scenario_table import scenario_table

STATUS_LABELS = {
    Status.HOLDS: "holds",
    Status.FAILS: "**does not hold**",
    Status.BY_CONSTRUCTION: "by construction: baselines restrict joint",
    Status.ANALYTIC: "sanity check of an analytic fact",
    Status.NOT_JUDGED: "not judged here: needs measured quality (laimco evaluate)",
    Status.MEASURED: "measured (no pass/fail)",
}
SECTIONS = (
    ("Bound reliability on a real model", (ClaimId.BOUND, ClaimId.LAWS),
     ("bound_reliability",)),
    ("The joint design against the benchmarks",
     (ClaimId.DOMINANCE, ClaimId.FEASIBILITY, ClaimId.CORNERS),
     ("objective_vs_latency", "objective_vs_energy", "objective_vs_bandwidth",
      "objective_vs_path_gain", "objective_vs_tx_power")),
    ("Where the split moves", (ClaimId.SPLIT,), ("split_vs_device_class",)),
    ("Trivial and non-trivial regimes", (ClaimId.REGIMES,), ("regimes",)),
    ("Rayleigh fading", (ClaimId.FADING, ClaimId.ROBUST),
     ("fading_cdf", "fading_outage", "robust_violation")),
    ("Solve time", (ClaimId.SOLVE_TIME, ClaimId.ALTERNATING), ("solve_time",)),
    ("The larger the merrier?", (ClaimId.MODEL_SIZE,), ("model_size",)),
    ("The compressed uplink", (ClaimId.UPLINK,),
     ("uplink_bandwidth", "uplink_split_vs_gain", "uplink_quality_vs_bits")),
    ("Decisions executed on the real model", (ClaimId.EXECUTION, ClaimId.UPLINK_EXECUTED), ()),
)


def markdown_table(table: TextTable) -> str:
    lines = ["| " + " | ".join(table.header) + " |", "|" + " --- |" * len(table.header)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def claim_tables_markdown(claim: Claim) -> str:
    """The claim's tables in Markdown, one after the other ("" if it has none)."""
    return "\n\n".join(markdown_table(t) for t in claim.tables)


def claim_record(claim: Claim) -> dict[str, Any]:
    """One claim as claims.json writes it (status: the `Status` identifier)."""
    return {"id": str(claim.id), "title": claim.title, "paper": claim.paper,
            "verdict": claim.verdict, "holds": claim.holds, "status": str(claim.status),
            "table": claim_tables_markdown(claim), "figures": list(claim.figures),
            "numbers": claim.evidence}


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def write_study(study: StudyResult, out: Path, scenarios_dir: Path) -> None:
    """claims.json, study.json and report.md into `out`."""
    claims = [claim_record(c) for c in study.claims]
    (out / "claims.json").write_text(json.dumps(claims, indent=1, default=_json) + "\n")
    summary = {"quick": study.quick, "seconds": study.seconds,
               "runs": {name: asdict(run) for name, run in study.runs.items()},
               "executor": study.executor, "figures": [asdict(f) for f in study.figures]}
    (out / "study.json").write_text(json.dumps(summary, indent=1, default=_json) + "\n")
    (out / "report.md").write_text(report_markdown(study, scenarios_dir))


def _verdicts_section(study: StudyResult) -> list[str]:
    labels = STATUS_LABELS
    mode = "quick (coarse grids)" if study.quick else "full"
    return [
        "# laimco study: the paper's evaluation, reproduced and extended",
        "",
        f"Mode: {mode}; executor: {study.executor}; {len(study.figures)} figures. Every "
        "number and verdict below is computed from the sweep tables in `sweeps/*/results.*` by "
        "`laimco.experiments.study`; rerun `laimco reproduce` to regenerate it.",
        "",
        "## Verdicts",
        "",
        "Status: *holds* / *does not hold* are findings on these data; *"
        + labels[Status.BY_CONSTRUCTION] + "* marks a check that cannot fail unless the code "
        "is wrong (every baseline solves joint's problem with something fixed, or searches the "
        "same feasible set, and joint is exact); *" + labels[Status.ANALYTIC] + "* re-measures "
        "a proven fact; *" + labels[Status.NOT_JUDGED] + "* marks a claim about quality that a "
        "distortion bound cannot decide; *" + labels[Status.MEASURED] + "* reports numbers "
        "without a verdict.",
        "",
        markdown_table(TextTable.of(
            ["claim", "paper / check", "verdict", "status"],
            [[c.title, c.paper, c.verdict, labels[c.status]] for c in study.claims])),
        "",
    ]


def _scenarios_section(scenarios_dir: Path) -> list[str]:
    return [
        "## Scenarios and where their numbers come from",
        "",
        "Three device classes, each next to a busy edge server of which it gets a share; "
        "the phone variants change only the channel, fading or privacy. Derived columns "
        "(peak FLOP rate, power κf³, energy per FLOP, distance) are computed from the "
        "scenario files.",
        "",
        markdown_table(scenario_table(scenarios_dir)),
        "",
        *[f"- {s.text}" for s in load_citations(scenarios_dir).sources],
        "",
    ]


def _claim_sections(study: StudyResult) -> list[str]:
    by_id = {c.id: c for c in study.claims}
    by_name = {f.name: f for f in study.figures}
    lines: list[str] = []
    shown = [s for s in SECTIONS if any(i in by_id for i in s[1])]  # measured: optional
    for number, (title, ids, names) in enumerate(shown, start=1):
        lines += [f"## {number}. {title}", ""]
        for name in names:
            if name in by_name:
                f = by_name[name]
                lines += [f"![{f.title}]({f.files[0]})", "",
                          f"*Figure {f.name}* — {f.caption} ([SVG]({f.files[1]}))", ""]
        for cid in (i for i in ids if i in by_id):  # measured claims need `laimco evaluate`
            c = by_id[cid]
            lines += [f"### {c.title}", "", f"Paper: {c.paper}.", "",
                      f"**Verdict ({STATUS_LABELS[c.status]}):** {c.verdict}", ""]
            if c.tables:
                lines += [claim_tables_markdown(c), ""]
    return lines


def _differences_section(claims: Sequence[Claim]) -> list[str]:
    bullets = [f"- {c.title}: {c.verdict}" for c in claims if c.holds is False]
    bound = next((c for c in claims if c.id == ClaimId.BOUND), None)
    if bound is not None and bound.holds and not bound.evidence["tighter_at_high_ratios"]:
        bullets.insert(0, "- Bound tightness: " + bound.verdict)
    return ["## Where our results differ from the paper", "",
            *(bullets or ["- nowhere: every checked claim holds on these data."])]


def _run_section(study: StudyResult) -> list[str]:
    table = TextTable.of(
        ["sweep", "points", "chunks", "computed now", "scenario-realizations", "seconds",
         "per second"],
        [[n, r.points, r.chunks, r.chunks_computed, f"{r.evaluations:,}", f"{r.seconds:.1f}",
          fmt_rate(r.evaluations, r.seconds)] for n, r in study.runs.items()])
    return ["", "## Run", "", markdown_table(table), "",
            f"Whole study: {study.seconds:.0f} s.", ""]


def report_markdown(study: StudyResult, scenarios_dir: Path) -> str:
    """report.md: verdicts, scenarios with sources, one section per topic, differences from
    the paper, run times."""
    return "\n".join([*_verdicts_section(study), *_scenarios_section(scenarios_dir),
                      *_claim_sections(study), *_differences_section(study.claims),
                      *_run_section(study)])
