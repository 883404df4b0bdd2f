"""The title question: do larger models serve better at the edge? Joint's decision for public
model architectures under the same budgets, and how much of the largest model that fits must
be pruned (with MiniLM's measured cosine at that pruned fraction)."""

from __future__ import annotations

import math

import numpy as np

from laimco.experiments.study.claim import Claim, ClaimId, TextTable
from laimco.experiments.study.numbers import fmt_g
from laimco.experiments.study.tables import Table, mask


def interpolated_cosine(bound: Table | None, fraction: float) -> float:
    """MiniLM's measured held-out cosine at a pruned fraction (1 at ρ = 0, linear between
    the bound sweep's ratios); NaN without a bound table."""
    if bound is None or not math.isfinite(fraction):
        return math.nan
    known = np.isfinite(bound["cosine_heldout"])
    order = np.argsort(bound["rho"][known])
    rho = np.concatenate([[0.0], bound["rho"][known][order]])
    cosine = np.concatenate([[1.0], bound["cosine_heldout"][known][order]])
    return float(np.interp(fraction, rho, cosine))


def _model_row(table: Table, i: int, base: str, budget: float, bound: Table | None
               ) -> list[str]:
    label = str(table["model.profile"][i]).removeprefix("config:")
    ok = table["feasible"][i]
    quality = (f"{interpolated_cosine(bound, table['pruned_fraction'][i]):.3f}"
               if ok and label.startswith("minilm") else "")
    return [base, f"{budget:g}", label, f"{table['params_total'][i] / 1e6:.0f}",
            "yes" if ok else "no", str(int(table["split"][i])) if ok else "—",
            f"{table['pruned_fraction'][i]:.3f}" if ok else "—",
            fmt_g(table["objective"][i] / table["weights_total"][i], 3) if ok else "—",
            quality, "" if ok else table["infeasible_limits"][i]]


def claim_model_size(table: Table, bound: Table | None) -> Claim:
    """Per device and latency budget: how many models fit, and how much of the largest that
    fits is pruned."""
    rows = []
    summary = []
    heavy = 0
    for base in dict.fromkeys(table["base"].tolist()):
        for budget in sorted(set(table["task.latency_budget_s"].tolist())):
            sel = mask(table, strategy="joint", base=base) & (
                table["task.latency_budget_s"] == budget)
            idx = np.flatnonzero(sel)
            idx = idx[np.argsort(table["params_total"][idx])]
            fits = [i for i in idx if table["feasible"][i]]
            rows += [_model_row(table, int(i), base, budget, bound) for i in idx]
            if fits:
                big = fits[-1]
                name = str(table["model.profile"][big]).removeprefix("config:")
                fraction = float(table["pruned_fraction"][big])
                heavy += fraction > 0.5
                summary.append(f"{base} at T = {budget:g} s: {len(fits)} of {idx.size} fit, "
                               f"the largest {name} ({table['params_total'][big] / 1e6:.0f} M "
                               f"parameters) with {fraction:.0%} of its weights pruned")
            else:
                summary.append(f"{base} at T = {budget:g} s: none fits")
    cos_at_half = interpolated_cosine(bound, 0.5)
    mostly = heavy > len(summary) / 2
    verdict = ("; ".join(summary) + f". The largest model that fits is pruned by more than "
               f"half in {heavy} of {len(summary)} budgets; on MiniLM's measured curve, "
               f"pruning half of all weights leaves a cosine similarity of {cos_at_half:.2f} to "
               "the unpruned embedding — "
               + ("so under fixed edge budgets a larger model mostly buys weights that must "
                  "be pruned away." if mostly else
                  f"yet in {len(summary) - heavy} of the budgets the largest model that fits "
                  "keeps more than half of its weights."))
    table_md = TextTable.of(["device", "T (s)", "model", "params (M)", "fits", "split",
                             "pruned fraction", "bound per weight", "MiniLM measured cosine",
                             "why not"], rows)
    return Claim.judged(
        ClaimId.MODEL_SIZE, "The larger the merrier?",
        "(the title question) do larger models serve better at the edge?", verdict, None,
        table_md, ["model_size"], largest_pruned_over_half=heavy)
