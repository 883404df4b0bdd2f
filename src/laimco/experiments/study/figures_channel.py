"""The fading sweeps' figures: the objective's distribution and the outage rate per strategy under
Rayleigh fading, and the robust decisions' violation rate against ε."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from laimco.experiments.study.figures_style import (
    OBJECTIVE_LABEL,
    STYLE,
    Figure,
    save_figure,
    shared_legend,
    umi_los_distance_m,
)
from laimco.experiments.study.tables import Table, mask, present_strategies


def fading_cdf_figure(table: Table, folder: Path) -> Figure:
    gains = sorted(set(table["channel.path_gain"].tolist()), reverse=True)
    fig, axes = plt.subplots(1, len(gains), figsize=(5.6 * len(gains), 5.0), squeeze=False,
                             layout="constrained")
    for ax, g in zip(axes[0], gains, strict=True):
        for name in present_strategies(table):
            rows = mask(table, strategy=name) & (table["channel.path_gain"] == g)
            values = np.sort(np.where(table["feasible"][rows], table["objective"][rows],
                                      np.inf))
            n = values.size
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                continue
            style = {k: v for k, v in STYLE[name].items() if k != "marker"}
            ax.step(finite, np.arange(1, finite.size + 1) / n, where="post", label=name,
                    **style)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel(OBJECTIVE_LABEL)
        ax.set_ylabel("P(objective ≤ x)  (tops out at 1 − outage)")
        ax.set_title(f"mean gain ḡ = {10 * math.log10(g):.0f} dB "
                     f"(≈ {float(umi_los_distance_m(g)):.0f} m UMi-LOS)", fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
    shared_legend(fig, axes[0])
    files = save_figure(fig, folder, "fading_cdf")
    n = int(np.max(table["realization"])) + 1
    caption = (f"Empirical CDF of the distortion bound over {n} Rayleigh realizations per mean "
               "gain, each strategy re-deciding for every realization's gain (instantaneous "
               "CSI). A curve that stops below 1 is infeasible in the remaining realizations.")
    return Figure("fading_cdf", "Objective under Rayleigh fading", caption, files)


def outage_figure(table: Table, folder: Path) -> Figure:
    gains = sorted(set(table["channel.path_gain"].tolist()), reverse=True)
    names = present_strategies(table)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / len(gains)
    for i, g in enumerate(gains):
        rates = [1 - float(np.mean(table["feasible"][mask(table, strategy=s)
                                                    & (table["channel.path_gain"] == g)]))
                 for s in names]
        ax.bar(np.arange(len(names)) + (i - (len(gains) - 1) / 2) * width, rates, width,
               label=f"ḡ = {10 * math.log10(g):.0f} dB")
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("infeasible (outage) fraction of realizations")
    ax.set_title("Outage rate per strategy under Rayleigh fading", fontsize=10)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    files = save_figure(fig, folder, "fading_outage")
    caption = ("Fraction of Rayleigh realizations in which each strategy finds no feasible "
               "decision. on-server is ruled out by the privacy limit (min_split = 1) in "
               "every realization; no-pruning by the latency and energy budgets.")
    return Figure("fading_outage", "Outage rate per strategy", caption, files)


def robust_figure(table: Table, folder: Path) -> Figure:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
    names = present_strategies(table)
    eps_all = np.array(sorted(set(table["channel.outage_prob"].tolist())))
    n = int(table["realizations"][0])
    se = np.sqrt(eps_all * (1 - eps_all) / n)
    ax.fill_between(eps_all, np.maximum(eps_all - 3 * se, 0), eps_all + 3 * se, color="0.85",
                    label="ε ± 3 standard errors")
    ax.plot(eps_all, eps_all, "k-", lw=0.8, label="target ε")
    for name in names:
        for design, ls in (("outage", "-"), ("mean", ":")):
            rows = mask(table, strategy=name, design=design)
            eps = table["channel.outage_prob"][rows]
            order = np.argsort(eps)
            style = {k: v for k, v in STYLE[name].items() if k not in ("ls",)}
            ax.plot(eps[order], table["violation_rate"][rows][order], ls=ls,
                    label=f"{name}, designed for {'g_ε' if design == 'outage' else 'ḡ'}",
                    **style)
            if design == "outage":
                mean_obj = table["objective"][mask(table, strategy=name, design="mean")]
                ax2.plot(eps[order], table["objective"][rows][order] / mean_obj[order],
                         label=name, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("target outage probability ε")
    ax.set_ylabel("measured violation rate (latency or energy)")
    ax.set_title("Violation rate against the target ε", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    ax2.set_xscale("log")
    ax2.set_xlabel("target outage probability ε")
    ax2.set_ylabel("objective of the g_ε design / objective of the ḡ design")
    ax2.set_title("What robustness costs in distortion bound", fontsize=10)
    ax2.legend(fontsize=7)
    ax2.grid(True, alpha=0.3)
    files = save_figure(fig, folder, "robust_violation")
    caption = (f"A decision made once for g_ε = −ḡ·ln(1−ε) and held while the gain fades over "
               f"{n:,} Rayleigh realizations breaks its latency or energy limit at about the "
               "target rate ε (grey: ±3 standard errors); the decision made for the mean gain "
               "ḡ breaks it in about 1 − e^{−1} ≈ 63 % of them. Right: what robustness costs "
               "in distortion bound.")
    return Figure("robust_violation", "Robust decisions against their outage target", caption,
                  files)


