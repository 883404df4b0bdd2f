"""The design sweeps' figures: objective against each resource, the split per device class,
every shipped scenario under every strategy, and bound reliability on MiniLM."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from laimco.experiments.study.figures_style import (
    GAIN_DB_LABEL,
    OBJECTIVE_LABEL,
    STYLE,
    Figure,
    distance_axis,
    gain_db,
    objective_axis,
    panel_title,
    save_figure,
    shared_legend,
    strategy_lines,
)
from laimco.experiments.study.tables import Table, mask, no_worse, present_strategies, where


def joint_lowest_text(table: Table, conditions: dict[str, Any]) -> str:
    """'joint is lowest at k of n points where some strategy is feasible' (from the table)."""
    rows = where(table, conditions)
    points = np.unique(table["point"][rows])
    lowest = 0
    fit = 0
    for p in points:
        at = rows & (table["point"] == p) & table["feasible"]
        if not at.any():
            continue
        fit += 1
        best = np.nanmin(table["objective"][at])
        joint = at & (table["strategy"] == "joint")
        if joint.any() and no_worse(table["objective"][joint][0], best):
            lowest += 1
    return f"joint is lowest at {lowest} of the {fit} budgets where any strategy is feasible"


def resource_figure(table: Table, folder: Path, *, name: str, x_key: str, x_label: str,
                    title: str, what: str, secondary: tuple[str, Callable[[Any], Any],
                                                        Callable[[Any], Any]] | None = None,
                    panels: tuple[str, Sequence[Any]] | None = None,
                    x_in_db: bool = False) -> Figure:
    """Objective of every strategy against one resource (optionally a panel per value), with
    one legend below the panels. `x_in_db`: the resource is a path gain, drawn in dB with a
    secondary axis in UMi-LOS metres (`secondary` is then ignored)."""
    panel_values = list(panels[1]) if panels else [None]
    fig, axes = plt.subplots(1, len(panel_values), figsize=(6.4 * len(panel_values), 5.2),
                             squeeze=False, layout="constrained")
    notes = []
    shown = {**table, x_key: gain_db(table[x_key])} if x_in_db else table
    for ax, value in zip(axes[0], panel_values, strict=True):
        conditions = {panels[0]: value} if panels else {}
        strategy_lines(ax, shown, x_key, conditions)
        ax.set_xscale("linear" if x_in_db else "log")
        ax.set_xlabel(x_label)
        objective_axis(ax)
        label = panel_title(panels[0], value) if panels else ""
        ax.set_title(label or title, fontsize=10)
        if x_in_db:
            distance_axis(ax)
        elif secondary is not None:  # a linear secondary unit (dBm) over a log axis
            top = ax.secondary_xaxis("top", functions=(secondary[1], secondary[2]))
            lo, hi = sorted(float(secondary[1](x)) for x in ax.get_xlim())
            ticks = [t for t in MaxNLocator(6).tick_values(lo, hi) if lo <= t <= hi]
            top.set_xticks(ticks, [f"{t:g}" for t in ticks])
            top.set_xlabel(secondary[0], fontsize=8)
        notes.append((label + ": " if label else "") + joint_lowest_text(table, conditions))
    shared_legend(fig, axes[0])
    files = save_figure(fig, folder, name)
    caption = (f"Distortion bound of each strategy against {what} (absent points: the strategy "
               f"is infeasible there; symlog axis, 0 = no pruning needed). "
               + "; ".join(notes) + ".")
    return Figure(name, title, caption, files)


def bound_figure(bound: Table, k_hat: float, folder: Path, source: str) -> Figure:
    rho = bound["rho"]
    order = np.argsort(rho)
    rho = rho[order]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    ax.plot(rho, bound["d_y_heldout_mean"][order], "o-", color="black",
            label="measured D_y (held-out mean)")
    ax.plot(rho, bound["d_y_heldout_max"][order], "o:", color="gray",
            label="measured D_y (held-out max)")
    ax.plot(rho, k_hat * bound["d_w"][order], "s-", color="tab:red",
            label="K̂·D_w (measured D_w)")
    styles = {"laplace": "--", "gennorm": "-.", "empirical": ":"}
    for law, ls in styles.items():
        values = bound.get(f"law_{law}")
        if values is not None and np.isfinite(values).any():
            ax.plot(rho, k_hat * values[order], ls, label=f"K̂·D_w predicted by the {law} law")
    ax.set_yscale("log")
    ax.set_title("Output distortion and its bound", fontsize=10)
    ax.set_xlabel("pruning ratio ρ (every matrix, magnitude)")
    ax.set_ylabel("output distortion  ‖f(x;w) − f(x;ŵ)‖²")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    tight = bound["d_y_heldout_mean"][order] / (k_hat * bound["d_w"][order])
    ax2.plot(rho, tight, "o-", color="black")
    ax2.set_xlabel("pruning ratio ρ")
    ax2.set_ylabel("tightness  D_y / (K̂·D_w)")
    ax2.set_title("Tightness of the bound (1 = tight)", fontsize=10)
    ax2.set_ylim(0, 1.05)
    ax2.grid(True, alpha=0.3)
    files = save_figure(fig, folder, "bound_reliability")
    caption = (f"all-MiniLM-L6-v2 ({source}): measured output distortion against the bound "
               f"K̂·D_w with K̂ = {k_hat:.3g} calibrated on calibration text, and the bound "
               f"the distortion laws predict from the profile's weight statistics. Right: "
               f"tightness goes from {tight[0]:.2f} at ρ = {rho[0]:.1f} to {tight[-1]:.2f} at "
               f"ρ = {rho[-1]:.1f}.")
    return Figure("bound_reliability", "Bound reliability on MiniLM", caption, files)


def device_class_figure(table: Table, folder: Path) -> Figure:
    classes = list(dict.fromkeys(table["base"].tolist()))
    fig, axes = plt.subplots(1, 4, figsize=(17, 5.0), layout="constrained")
    colors = dict(zip(classes, ("tab:green", "tab:blue", "tab:red", "tab:purple"),
                      strict=False))
    for base in classes:
        rows = mask(table, strategy="joint", base=base)
        g = gain_db(table["channel.path_gain"][rows])
        order = np.argsort(g)
        style = {"color": colors.get(base), "marker": "o", "label": base}
        axes[0].step(g[order], table["split"][rows][order], where="mid", **style)
        axes[1].plot(g[order], table["rho_device"][rows][order], **style)
        axes[2].plot(g[order], table["rho_server"][rows][order], **style)
        axes[3].plot(g[order], table["objective"][rows][order], **style)
    labels = ("chosen split s (units on the device)", "device pruning ratio ρ_d",
              "server pruning ratio ρ_s", OBJECTIVE_LABEL)
    titles = ("Split point", "Device pruning ratio", "Server pruning ratio",
              "Distortion bound (joint)")
    for ax, label, panel in zip(axes, labels, titles, strict=True):
        ax.set_xlabel(GAIN_DB_LABEL)
        ax.set_ylabel(label)
        ax.set_title(panel, fontsize=10)
        ax.grid(True, alpha=0.3)
        distance_axis(ax)
    axes[3].set_yscale("symlog", linthresh=1.0)
    axes[3].set_ylim(bottom=0)
    shared_legend(fig, axes[:1])
    files = save_figure(fig, folder, "split_vs_device_class")
    caption = ("The joint design's split, ratios and distortion bound for an IoT board, a "
               "phone and a laptop (each with its own budgets) as the channel improves. "
               + split_summary(table) + ".")
    return Figure("split_vs_device_class", "Where the split moves", caption, files)


def split_summary(table: Table) -> str:
    """Per class, the splits the joint design chooses over the channel range."""
    parts = []
    for base in dict.fromkeys(table["base"].tolist()):
        rows = mask(table, strategy="joint", base=base) & table["feasible"]
        splits = sorted({int(s) for s in table["split"][rows]})  # null (NaN) when infeasible
        parts.append(f"{base}: split {', '.join(map(str, splits)) or 'none feasible'}")
    return "; ".join(parts)



def regimes_figure(table: Table, folder: Path) -> Figure:
    bases = list(dict.fromkeys(table["base"].tolist()))
    names = present_strategies(table)
    fig, ax = plt.subplots(figsize=(12, 4.6))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = []
        for base in bases:
            row = mask(table, strategy=name, base=base)
            values.append(table["objective"][row][0] if table["feasible"][row][0] else np.nan)
        x = np.arange(len(bases)) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, values, width, label=name, color=STYLE[name]["color"])
        missing = ~np.isfinite(values)
        ax.plot(x[missing], np.full(missing.sum(), 0.3), "x", color=STYLE[name]["color"])
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_xticks(np.arange(len(bases)), bases, rotation=20, ha="right")
    ax.set_ylabel(OBJECTIVE_LABEL)
    ax.set_title("Every shipped scenario under every strategy", fontsize=10)
    ax.legend(fontsize=7, ncol=5)
    ax.grid(True, axis="y", alpha=0.3)
    files = save_figure(fig, folder, "regimes")
    caption = ("Every shipped scenario under every strategy (× at the bottom: infeasible). "
               "A zero bar means the strategy runs the model unpruned.")
    return Figure("regimes", "Trivial and non-trivial regimes", caption, files)
