"""Figures of `laimco analyze` (PNG and SVG), drawn from the numbers in analysis.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from laimco.experiments.analysis_result import Analysis
from laimco.experiments.law_fits import LawFit


def _save(fig: Any, out: Path, name: str) -> list[str]:
    paths = []
    for suffix in ("png", "svg"):
        path = out / f"{name}.{suffix}"
        fig.savefig(path, dpi=130, bbox_inches="tight")
        paths.append(str(path))
    plt.close(fig)
    return paths


def _weight_histogram(result: Analysis, out: Path) -> list[str]:
    hist = result.laws.histogram
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.semilogy(hist.centres, hist.density, color="black", lw=1.5,
                label="measured (all block matrices)")
    ax.semilogy(hist.centres, hist.laplace, "--", label="Laplace (ML)")
    ax.semilogy(hist.centres, hist.gaussian, ":", label="Gaussian (ML)")
    ax.semilogy(hist.centres, hist.gennorm, "-.",
                label=f"generalized Gaussian (ML, β = {hist.gennorm_beta:.2f})")
    ax.set_xlabel("weight value w")
    ax.set_ylabel("probability density (1/unit of w)")
    ax.set_ylim(1e-3, max(hist.density) * 2)
    ax.set_title(f"{result.model}: weight distribution")
    ax.legend(fontsize=8)
    return _save(fig, out, "weight_histogram")


def _delta_vs_rho(result: Analysis, out: Path) -> list[str]:
    laws = result.laws
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    rho = laws.rho
    top.semilogy(rho, laws.measured, "ko-", label="measured magnitude pruning")
    for law, prediction in laws.laws.items():
        top.semilogy(rho, prediction.predicted, label=law.label)
        bottom.plot(rho, [p / m - 1 for p, m in zip(prediction.predicted, laws.measured,
                                                     strict=True)], label=law.label)
    top.set_ylabel("parameter distortion ‖w − ŵ‖² (weight²)")
    top.set_title("distortion–sparsity laws vs measured (each matrix pruned at ρ)")
    top.legend(fontsize=7)
    bottom.axhspan(-0.03, 0.03, color="green", alpha=0.15, label="±3%")
    bottom.set_ylim(-0.6, 0.6)
    bottom.set_xlabel("pruning ratio ρ")
    bottom.set_ylabel("relative error")
    return _save(fig, out, "delta_vs_rho")


def _bound_reliability(result: Analysis, out: Path) -> list[str]:
    bound, laws = result.bound, result.laws
    r_rho = [r.rho for r in bound.rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.semilogy(r_rho, [r.d_y_heldout_mean for r in bound.rows], "ko-",
                label="measured D_y (held-out mean)")
    ax.semilogy(r_rho, [r.d_y_heldout_max for r in bound.rows], "k:",
                label="measured D_y (held-out max)")
    ax.semilogy(r_rho, [r.k_hat_d_w for r in bound.rows], "r--",
                label=f"K̂·D_w (K̂ = {bound.k_hat:.3g}, calibrated)")
    law = laws.laws[LawFit.GENNORM_CURVE]
    law_by_rho = dict(zip(laws.rho, law.predicted, strict=True))
    ax.semilogy(r_rho, [bound.k_hat * law_by_rho.get(round(x, 2), float("nan"))
                        for x in r_rho], "b-.", label="K̂·N·δ(ρ), generalized Gaussian law")
    ax.set_xlabel("pruning ratio ρ (whole model, magnitude)")
    ax.set_ylabel("squared output distortion ‖Δ embedding‖²")
    ax.set_title("bound reliability: D_y ≤ K·D_w")
    ax.legend(fontsize=8)
    return _save(fig, out, "bound_reliability")


def _quality_vs_rho(result: Analysis, out: Path) -> list[str]:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for rule in ("magnitude", "wanda", "structured"):
        rows = result.quality.rows(rule)
        left.plot([r.rho for r in rows], [r.cosine for r in rows], "o-", label=rule)
        right.plot([r.rho for r in rows], [r.retrieval_agreement_at_10 for r in rows], "o-",
                   label=rule)
    left.set_xlabel("pruning ratio ρ (whole model)")
    left.set_ylabel("cosine similarity to the dense embedding")
    right.set_xlabel("pruning ratio ρ (whole model)")
    right.set_ylabel("retrieval agreement@10 (fraction)")
    left.legend()
    right.legend()
    fig.suptitle("task quality by pruning rule (held-out sentences)")
    return _save(fig, out, "quality_vs_rho")


def _unit_sensitivity(result: Analysis, out: Path) -> list[str]:
    sides = result.sides
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.bar(list(range(1, len(sides.k_by_block) + 1)), sides.k_by_block)
    ax.set_xlabel("block (pruned alone at ρ = 0.5)")
    ax.set_ylabel("output sensitivity D_y / D_w")
    ax.set_title(f"per-unit sensitivity (k_device = {sides.k_device:.3g}, "
                 f"k_server = {sides.k_server:.3g} at split {sides.split})")
    return _save(fig, out, "unit_sensitivity")


def _structured_speedup(result: Analysis, out: Path) -> list[str]:
    timing = result.structured_timing.rows
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot([r.rho for r in timing], [r.time_ratio for r in timing], "ko-",
            label="measured forward time / dense")
    ax.plot([r.rho for r in timing], [r.predicted_ratio_linear_only for r in timing],
            "r--", label="1 − removed fraction (FLOP prediction)")
    ax.set_xlabel("structured pruning ratio ρ (all blocks)")
    ax.set_ylabel("CPU time relative to dense")
    ax.set_ylim(0, 1.1)
    ax.set_title("structured pruning: real speed-up (1 thread)")
    ax.legend()
    return _save(fig, out, "structured_speedup")


def write_figures(result: Analysis, out: Path) -> list[str]:
    """Every figure of the analysis; returns the files written."""
    files: list[str] = []
    for draw in (_weight_histogram, _delta_vs_rho, _bound_reliability, _quality_vs_rho,
                 _unit_sensitivity, _structured_speedup):
        files += draw(result, out)
    return files
