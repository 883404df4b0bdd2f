"""Where the split moves across device classes and channels, and which shipped scenarios are
trivial (a corner strategy is optimal) or need the joint design."""

from __future__ import annotations

import numpy as np

from laimco.experiments.study.claim import Claim, ClaimId, TextTable
from laimco.experiments.study.numbers import db, fmt_g
from laimco.experiments.study.tables import ABS_TOL, Table, mask, no_worse

CORNERS = ("on-device", "on-server", "no-pruning")


def _joint_cell(t: Table, i: int) -> str:
    return (f"s = {int(t['split'][i])}, ρ = {t['rho_device'][i]:.2f}/"
            f"{t['rho_server'][i]:.2f} ({t['binding'][i] or 'nothing binds'})")


def _fixed_split_penalty(regimes: Table | None) -> str:
    """The median cost of forcing the middle split, over the shipped scenarios."""
    if regimes is None:
        return ""
    ratios = []
    for base in set(regimes["base"].tolist()):
        j = mask(regimes, strategy="joint", base=base)
        f = mask(regimes, strategy="fixed-split", base=base)
        if regimes["feasible"][f][0] and regimes["objective"][j][0] > 0:
            ratios.append(regimes["objective"][f][0] / regimes["objective"][j][0])
    if not ratios:
        return ""
    return (f" Forcing the middle split instead costs a median "
            f"{np.median(ratios):.3g}× the bound over the shipped scenarios.")


def claim_split(device_class: Table, regimes: Table | None) -> Claim:
    """Joint's split differs between device classes at some channel quality."""
    t = device_class
    gains = sorted(set(t["channel.path_gain"].tolist()))
    classes = list(dict.fromkeys(t["base"].tolist()))
    rows = []
    differs = comparable = 0
    for g in gains:
        cells = []
        splits = []
        for c in classes:
            i = int(np.flatnonzero(mask(t, strategy="joint", base=c)
                                   & (t["channel.path_gain"] == g))[0])
            if t["feasible"][i]:
                splits.append(int(t["split"][i]))
                cells.append(_joint_cell(t, i))
            else:
                cells.append("infeasible")
        if len(splits) >= 2:
            comparable += 1
            differs += len(set(splits)) > 1
        rows.append([f"{db(g):.0f} dB", *cells])
    within = {c: sorted({int(s) for s in t["split"][mask(t, strategy="joint", base=c)
                                                     & t["feasible"]]}) for c in classes}
    moving = [c for c, s in within.items() if len(s) > 1]
    verdict = (f"the joint design's split differs between device classes at {differs} of the "
               f"{comparable} channel qualities where at least two classes are feasible; it "
               f"moves with the channel within {len(moving)} of {len(classes)} classes ("
               + "; ".join(f"{c}: {', '.join(map(str, s))}" for c, s in within.items())
               + ")." + _fixed_split_penalty(regimes))
    return Claim.judged(
        ClaimId.SPLIT, "The split point matters under heterogeneity",
        "the split point matters a great deal when devices and links are heterogeneous and "
        "resources are tight", verdict, differs >= 1,
        TextTable.of(["mean gain ḡ", *classes], rows), ["split_vs_device_class"],
        classes_differ_at=differs, comparable=comparable, splits_by_class=within)


def _unpruned_optimal(latency: Table | None) -> str:
    """At how many latency budgets (per min_split) the unpruned model is optimal."""
    if latency is None or "task.min_split" not in latency:
        return ""
    parts = []
    for m in sorted(set(latency["task.min_split"].tolist())):
        j = mask(latency, strategy="joint") & (latency["task.min_split"] == m)
        zero = int(np.sum(latency["feasible"][j] & (latency["objective"][j] <= ABS_TOL)))
        parts.append(f"{zero} of {int(j.sum())} latency budgets with min_split = {m}")
    return " Unpruned (objective 0) is optimal at " + " and ".join(parts) + "."


def claim_regimes(regimes: Table, latency: Table | None) -> Claim:
    """Which shipped scenarios are trivial: a corner strategy is as good as joint."""
    rows = []
    trivial = []
    for base in dict.fromkeys(regimes["base"].tolist()):
        j = int(np.flatnonzero(mask(regimes, strategy="joint", base=base))[0])
        if not regimes["feasible"][j]:
            rows.append([base, "infeasible", "—", "—"])
            continue
        corners = [c for c in CORNERS
                   if regimes["feasible"][mask(regimes, strategy=c, base=base)][0]
                   and no_worse(regimes["objective"][mask(regimes, strategy=c, base=base)][0],
                                regimes["objective"][j])]
        kind = ("trivial: " + ", ".join(corners) + " is optimal") if corners else (
            "non-trivial: no corner is optimal")
        if corners:
            trivial.append(base)
        rows.append([base, f"s = {int(regimes['split'][j])}, "
                           f"ρ_d = {regimes['rho_device'][j]:.3f}, "
                           f"ρ_s = {regimes['rho_server'][j]:.3f}",
                     fmt_g(regimes["objective"][j]), kind])
    n = len(rows)
    verdict = (f"{len(trivial)} of {n} shipped scenarios are trivial (a corner strategy is "
               f"optimal: {', '.join(trivial) or 'none'}); the other {n - len(trivial)} need "
               f"the joint design." + _unpruned_optimal(latency))
    return Claim.judged(
        ClaimId.REGIMES, "Where the trade-off is trivial and where it is not",
        "(laimco's check: realistic scenarios, with and without privacy)", verdict, None,
        TextTable.of(["scenario", "joint decision", "objective", "regime"], rows),
        ["regimes"], trivial=trivial)
