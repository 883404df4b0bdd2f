"""Solve time and objective gap of joint against SLSQP and alternating; the model-size
figure."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from laimco.experiments.study.figures_style import STYLE, Figure, save_figure
from laimco.experiments.study.tables import REL_TOL, Table, mask

GAP_FLOOR = 1e-12  # relative objective gaps below this are drawn at it (float noise)
GAP_TOLERANCE = REL_TOL  # the study's tolerance for "equal objectives"


def solve_time_figure(table: Table, timings: Table, folder: Path) -> Figure:
    """Left: solve time of joint and of the generic methods per scenario. Right: how much worse
    each method's objective is than joint's, as |relative gap| on a log axis with a floor."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5.0), layout="constrained")
    points = np.unique(table["point"])
    label = [f"{table['base'][table['point'] == p][0]}\n"
             f"{10 * math.log10(table['channel.path_gain'][table['point'] == p][0]):.0f} dB"
             for p in points]
    others = [n for n in ("slsqp", "alternating") if n in set(table["strategy"].tolist())]
    for name in ("joint", *others):
        t = np.array([timings["solve_time_s"][(timings["point"] == p)
                                              & (timings["strategy"] == name)][0]
                      for p in points])
        ax.plot(np.arange(points.size), t, label=name, **STYLE[name])
    ax.set_yscale("log")
    ax.set_xticks(np.arange(points.size), label, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel("solve time per scenario (s, log)")
    ax.set_title("Solve time, same scenarios, same run", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    width = 0.8 / max(len(others), 1)
    below = 0
    for k, name in enumerate(others):
        gaps = []
        for p in points:
            jo = table["objective"][mask(table, point=p, strategy="joint")][0]
            so = table["objective"][mask(table, point=p, strategy=name)][0]
            if not (np.isfinite(jo) and np.isfinite(so)):
                gaps.append(np.nan)
            else:  # a zero objective (nothing pruned): compare absolutely
                gaps.append((so - jo) / jo if jo > 0 else so - jo)
        gap = np.array(gaps)
        below += int(np.sum(np.abs(gap[np.isfinite(gap)]) < GAP_FLOOR))
        x = np.arange(points.size) + (k - (len(others) - 1) / 2) * width
        heights = np.maximum(np.abs(gap), GAP_FLOOR)
        color = STYLE[name]["color"]
        ax2.bar(x, np.where(gap >= 0, heights, np.nan), width, color=color,
                label=f"{name} worse than joint")
        ax2.bar(x, np.where(gap < 0, heights, np.nan), width, color="white", edgecolor=color,
                hatch="//", label=f"{name} better than joint")
    ax2.set_yscale("log")
    ax2.set_ylim(GAP_FLOOR / 3, 1.0)
    ax2.axhline(GAP_TOLERANCE, color="black", ls="--", lw=0.8,
                label=f"study tolerance {GAP_TOLERANCE:g}")
    ax2.set_xticks(np.arange(points.size), label, fontsize=7, rotation=45, ha="right")
    ax2.set_ylabel(f"|objective − joint's| / joint's  (log, floor {GAP_FLOOR:g})")
    ax2.set_title("Objective gap to the exact solver", fontsize=10)
    ax2.legend(fontsize=7, loc="upper left")
    ax2.grid(True, axis="y", alpha=0.3)
    files = save_figure(fig, folder, "solve_time")
    caption = (f"Wall-clock solve time of the exact joint design and of the generic methods — "
               f"scipy SLSQP (random multi-start on every split) and alternating optimization "
               f"(convex ratio and resource steps in turn, docs/theory.md §4.8) — on the same "
               f"scenarios in the same run. Right: |relative objective gap| to joint on a log "
               f"axis; gaps below {GAP_FLOOR:g} (float noise) are drawn at that floor "
               f"({below} bars), hatched bars are below joint within the solver's tolerance, "
               f"the dashed line is the study's tolerance {GAP_TOLERANCE:g}; no bar: the "
               f"method found nothing feasible, or neither did joint.")
    return Figure("solve_time", "Solve time and objective gap: joint vs SLSQP and alternating",
                  caption, files)


def model_size_figure(table: Table, folder: Path) -> Figure:
    bases = list(dict.fromkeys(table["base"].tolist()))
    budgets = sorted(set(table["task.latency_budget_s"].tolist()))
    fig, axes = plt.subplots(len(bases), 2, figsize=(12, 4.4 * len(bases)), squeeze=False)
    for row, base in enumerate(bases):
        ax, ax2 = axes[row]
        top = ax.get_xaxis_transform()  # x in data, y in axes fraction
        for k, budget in enumerate(budgets):
            rows = mask(table, strategy="joint", base=base) & (
                table["task.latency_budget_s"] == budget)
            order = np.argsort(table["params_total"][rows])
            params = table["params_total"][rows][order]
            ok = table["feasible"][rows][order]
            per_weight = (table["objective"][rows] / table["weights_total"][rows])[order]
            line = ax.plot(params[ok], per_weight[ok], "o-", label=f"T = {budget:g} s")
            color = line[0].get_color()
            ax.plot(params[~ok], np.full((~ok).sum(), 0.96 - 0.05 * k), "x", color=color,
                    markersize=9, transform=top)
            ax2.plot(params[ok], table["pruned_fraction"][rows][order][ok], "o-", color=color,
                     label=f"T = {budget:g} s")
        names = mask(table, strategy="joint", base=base) & (
            table["task.latency_budget_s"] == budgets[0])
        for p, label in zip(table["params_total"][names], table["model.profile"][names],
                            strict=True):
            ax2.annotate(str(label).removeprefix("config:"), (p, 0.0), rotation=60,
                         fontsize=7, xytext=(0, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-7)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("model parameters")
        ax.set_ylabel("distortion bound per prunable weight (symlog)")
        ax.set_title(f"{base} (× at the top: does not fit at any ratio ≤ ρ_max)", fontsize=10)
        ax.legend(fontsize=8, loc="center left")
        ax.grid(True, alpha=0.3)
        ax2.set_xscale("log")
        ax2.set_xlabel("model parameters")
        ax2.set_ylabel("pruned fraction of all prunable weights")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_title(base, fontsize=10)
        ax2.legend(fontsize=8, loc="upper left")
        ax2.grid(True, alpha=0.3)
    files = save_figure(fig, folder, "model_size")
    caption = ("The larger the merrier? Architecture-only profiles of public models (MiniLM "
               "measured) under the same device, channel and server budgets: the joint "
               "design's distortion bound per prunable weight (Gaussian law, σ = 0.02 for the "
               "config-only models) and the fraction of all prunable weights it removes; × "
               "marks sizes that do not fit at all.")
    return Figure("model_size", "The larger the merrier?", caption, files)


