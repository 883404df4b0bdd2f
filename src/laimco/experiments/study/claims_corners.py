"""Split inference against the two corners (fully on the device, fully on the server), and
joint's objective never rising when a resource grows. "Split beats both corners" is about
output quality, so it is judged only on a measured quality gain (`laimco evaluate`); the
distortion bound's corner/joint ratios are reported for the record."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from laimco.experiments.study.claim import Claim, ClaimId, Status, TextTable
from laimco.experiments.study.claims_design import RESOURCE_FIGURES
from laimco.experiments.study.numbers import fmt_g
from laimco.experiments.study.tables import Table, no_worse

RESOURCE_SWEEPS = {"latency": "task.latency_budget_s", "energy": "device.energy_budget_j",
                   "bandwidth": "channel.bandwidth_hz", "pathgain": "channel.path_gain",
                   "txpower": "device.tx_power_max_w"}


@dataclass(frozen=True)
class MeasuredGain:
    """The measured quality gain of the best interior split over the best corner at one
    scenario, from `laimco evaluate`: mean loss (1 − cosine) of the best feasible corner
    (on-device, on-server) minus that of the best feasible interior split, with its paired
    95 % confidence interval. Positive: the split is better."""

    scenario: str
    gain: float
    ci95: tuple[float, float]


MeasuredGainSource = Callable[[], Sequence[MeasuredGain]]


@dataclass(frozen=True)
class CornerVerdict:
    """"Split beats both corners" judged on measured gains."""

    verdict: str
    holds: bool
    table: TextTable


def corner_verdict(measured: Sequence[MeasuredGain]) -> CornerVerdict:
    """It holds when the split is significantly better somewhere (CI above 0) and
    significantly worse nowhere (CI below 0)."""
    better = [m for m in measured if m.ci95[0] > 0]
    worse = [m for m in measured if m.ci95[1] < 0]
    verdict = (f"on measured quality, the best interior split beats the best corner "
               f"significantly at {len(better)} of {len(measured)} scenarios and is "
               f"significantly worse at {len(worse)}"
               + (f" ({', '.join(m.scenario for m in worse)})" if worse else "") + ".")
    table = TextTable.of(
        ["scenario", "measured gain (corner loss − split loss)", "95 % CI"],
        [[m.scenario, fmt_g(m.gain, 3), f"[{fmt_g(m.ci95[0], 3)}, {fmt_g(m.ci95[1], 3)}]"]
         for m in measured])
    return CornerVerdict(verdict, bool(better) and not worse, table)


@dataclass(frozen=True)
class _ResourcePanel:
    """One resource sweep (one min_split panel of the latency sweep)."""

    label: str
    monotone: bool  # joint's objective never rises as the resource grows
    corner_ratios: list[float]  # best corner / joint, where joint needs pruning
    only_joint: int  # points where joint is feasible and neither corner is


def _resource_panel(t: Table, key: str, label: str, sel: np.ndarray) -> _ResourcePanel:
    j = sel & (t["strategy"] == "joint")
    order = np.argsort(t[key][j])
    y = np.where(t["feasible"][j], t["objective"][j], np.inf)[order]
    monotone = all(no_worse(b, a) for a, b in itertools.pairwise(y) if math.isfinite(a))
    ratios: list[float] = []
    only_joint = 0
    for p in np.unique(t["point"][sel]):
        at = sel & (t["point"] == p)
        jo = t["objective"][at & (t["strategy"] == "joint")]
        corner = [t["objective"][at & (t["strategy"] == c)][0] for c in
                  ("on-device", "on-server") if t["feasible"][at & (t["strategy"] == c)].any()]
        if jo.size and np.isfinite(jo[0]):
            if not corner:
                only_joint += 1
            elif jo[0] > 0:
                ratios.append(min(corner) / jo[0])
    return _ResourcePanel(label, monotone, ratios, only_joint)


def _resource_panels(tables: dict[str, Table]) -> list[_ResourcePanel]:
    panels = []
    for sweep, key in RESOURCE_SWEEPS.items():
        if sweep not in tables:
            continue
        t = tables[sweep]
        if "task.min_split" in t and sweep == "latency":
            for m in sorted(set(t["task.min_split"].tolist())):
                panels.append(_resource_panel(t, key, f"{sweep} (min_split = {m})",
                                              t["task.min_split"] == m))
        else:
            panels.append(_resource_panel(t, key, sweep, np.ones(len(t["point"]), bool)))
    return panels


def claim_corners(tables: dict[str, Table],
                  measured: Sequence[MeasuredGain] | None = None) -> Claim:
    """Joint against the better of fully-on-device and fully-on-server. Judged only on a
    measured quality gain (`measured`, from `laimco evaluate`); without it the claim is
    reported as not judged, with the bound's corner/joint ratios for the record. Joint's
    objective never rising with a resource is by construction (an exact optimizer over a
    larger feasible set); a violation would be a solver bug and fails the claim."""
    panels = _resource_panels(tables)
    monotone_all = all(p.monotone for p in panels)
    gains = [r for p in panels for r in p.corner_ratios]
    only_joint = sum(p.only_joint for p in panels)
    table = TextTable.of(
        ["sweep", "joint objective non-increasing in the resource (by construction)",
         "median best-corner/joint bound", "max best-corner/joint bound"],
        [[p.label, "yes" if p.monotone else "NO",
          fmt_g(float(np.median(p.corner_ratios)), 3) if p.corner_ratios else "—",
          fmt_g(float(np.max(p.corner_ratios)), 3) if p.corner_ratios else "—"]
         for p in panels])
    bound_note = (f"the better of fully-on-device and fully-on-server has a median "
                  f"{fmt_g(float(np.median(gains)), 3)}× and up to "
                  f"{fmt_g(float(np.max(gains)), 3)}× the joint design's distortion bound "
                  f"where joint needs pruning, and at {only_joint} points neither corner is "
                  f"feasible and joint is — the model's prediction, not a measured quality "
                  f"gain") if gains else "no point where the bound compares a corner with joint"
    monotone_note = (f"joint's objective never rises when a resource grows (by construction): "
                     f"{'yes' if monotone_all else 'NO — a solver bug'}")
    tables_shown: list[TextTable] = [table]
    if measured is None:
        verdict = ("Not judged here: whether a split beats both corners is a statement about "
                   "output quality and needs the measured gain of the best interior split over "
                   f"the best corner (`laimco evaluate`). For the record, {bound_note}; "
                   f"{monotone_note}.")
        holds: bool | None = None if monotone_all else False
        kind: Status | None = Status.NOT_JUDGED
    else:
        judged = corner_verdict(measured)
        verdict = f"{judged.verdict} For the record, {bound_note}; {monotone_note}."
        holds = judged.holds and monotone_all
        kind = None
        tables_shown.insert(0, judged.table)
    return Claim.judged(
        ClaimId.CORNERS, "Split inference beats both corners; more resources never hurt",
        "the joint design beats fully-on-device and fully-on-server inference in the "
        "distortion/latency/energy trade-off", verdict, holds, tables_shown, RESOURCE_FIGURES,
        kind=kind, median_corner_ratio=float(np.median(gains)) if gains else None,
        only_joint=only_joint, monotone=monotone_all,
        measured=None if measured is None else len(measured))
