"""Rayleigh fading (beyond the paper): with instantaneous CSI joint stays feasible and no worse
in every realization (by construction), and a decision designed for g_ε = −ḡ·ln(1−ε) breaks a
limit at rate ε (an analytic fact, docs/theory.md eq. 2.9, re-measured)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from laimco.experiments.study.claim import Claim, ClaimId, Status, TextTable
from laimco.experiments.study.numbers import db, fmt_pct
from laimco.experiments.study.tables import (
    ABS_TOL,
    REL_TOL,
    Table,
    mask,
    present_strategies,
)


def claim_fading(fading: Table) -> Claim:
    """Per realization, joint feasible wherever a baseline is and never worse; outage rates."""
    gains = sorted(set(fading["channel.path_gain"].tolist()), reverse=True)
    names = present_strategies(fading)
    rows = []
    missing = worse = pairs = 0
    for g in gains:
        at_g = fading["channel.path_gain"] == g
        obj = {s: fading["objective"][at_g & (fading["strategy"] == s)] for s in names}
        ok = {s: fading["feasible"][at_g & (fading["strategy"] == s)] for s in names}
        for s in names:
            if s == "joint":
                continue
            both = ok[s]
            pairs += int(both.sum())
            missing += int(np.sum(both & ~ok["joint"]))
            both = both & ok["joint"]
            worse += int(np.sum(obj["joint"][both] > obj[s][both] * (1 + REL_TOL) + ABS_TOL))
        rows.append([f"{db(g):.0f} dB", *[fmt_pct(1 - float(np.mean(ok[s]))) for s in names]])
    outage_joint = {g: 1 - float(np.mean(fading["feasible"][
        mask(fading, strategy="joint") & (fading["channel.path_gain"] == g)])) for g in gains}
    n = int(np.max(fading["realization"])) + 1
    verdict = (f"over {n} Rayleigh realizations at each of {len(gains)} mean gains (by "
               f"construction, as for the design sweeps: every baseline restricts joint), joint "
               f"is feasible in every realization where a baseline is: "
               f"{'yes' if not missing else f'NO ({missing} misses)'}; never worse: "
               f"{'yes' if not worse else f'NO ({worse} realizations)'} ({pairs} feasible "
               f"pairs). Joint's outage rate: "
               + ", ".join(f"{fmt_pct(v)} at {db(g):.0f} dB" for g, v in outage_joint.items())
               + ".")
    return Claim.judged(
        ClaimId.FADING, "Under Rayleigh fading (instantaneous CSI)",
        "(beyond the paper: the distribution of the objective, and outage rates)", verdict,
        missing == 0 and worse == 0,
        TextTable.of(["mean gain", *[f"{s} outage" for s in names]], rows),
        ["fading_cdf", "fading_outage"], kind=Status.BY_CONSTRUCTION, missing=missing,
        worse=worse, pairs=pairs, outage_joint=outage_joint)


@dataclass(frozen=True)
class RobustCase:
    """One outage-designed decision held over sampled gains: its violation rate against the
    target ε + 3 standard errors, and the rate of the decision designed for the mean gain."""

    strategy: str
    epsilon: float
    n: int  # realizations
    violations: int
    rate: float
    limit: float  # ε + 3·√(ε(1−ε)/n)
    within: bool
    mean_design_rate: float


def robust_cases(robust: Table) -> list[RobustCase]:
    """Each feasible outage-designed decision of the robust sweep."""
    out = []
    for i in np.flatnonzero((robust["design"] == "outage") & robust["feasible"]):
        eps = float(robust["channel.outage_prob"][i])
        n = int(robust["realizations"][i])
        limit = eps + 3 * math.sqrt(eps * (1 - eps) / n)
        mean_row = mask(robust, strategy=robust["strategy"][i], design="mean") & (
            robust["channel.outage_prob"] == eps)
        rate = float(robust["violation_rate"][i])
        out.append(RobustCase(str(robust["strategy"][i]), eps, n, int(robust["violations"][i]),
                              rate, limit, rate <= limit,
                              float(robust["violation_rate"][mean_row][0])))
    return out


def claim_robust(robust: Table) -> Claim:
    """Every robust decision's violation rate within ε + 3 standard errors."""
    cases = robust_cases(robust)
    within = sum(c.within for c in cases)
    mean_rates = [c.mean_design_rate for c in cases]
    verdict = ("Analytic fact checked: under Rayleigh fading the gain is ḡ·|h|² with |h|² ~ "
               "Exp(1), so the design gain g_ε = −ḡ·ln(1−ε) gives P(g < g_ε) = "
               "1 − exp(−g_ε/ḡ) = ε exactly (eq. 2.9), and every cost is non-increasing in g, "
               "so a decision designed for g_ε breaks a limit with probability at most ε "
               "(exactly ε when a limit binds). Re-measuring that rate on sampled gains is a "
               "sanity check of the sampler and of the held decision, not a finding: "
               f"the rate is within ε + 3 standard errors at {within} of {len(cases)} "
               f"(strategy, ε) cases (rates {min(c.rate for c in cases):.4f}–"
               f"{max(c.rate for c in cases):.4f}). Designed for the mean gain instead, the "
               f"decision breaks a limit in {np.mean(mean_rates):.1%} of realizations "
               "(1 − e^{−1} ≈ 63 % when a limit binds at ḡ).")
    table = TextTable.of(["strategy", "ε", "realizations", "violations", "rate", "ε + 3 SE",
                          "within", "rate if designed for ḡ"],
                         [[c.strategy, c.epsilon, c.n, c.violations, f"{c.rate:.4f}",
                           f"{c.limit:.4f}", "yes" if c.within else "NO",
                           f"{c.mean_design_rate:.3f}"] for c in cases])
    return Claim.judged(
        ClaimId.ROBUST, "Robust decisions meet their outage target",
        "(beyond the paper: outage-constrained design under Rayleigh fading, "
        "g_ε = −ḡ·ln(1−ε))", verdict, within == len(cases) and bool(cases), table,
        ["robust_violation"], kind=Status.ANALYTIC, cases=len(cases), within=within)
