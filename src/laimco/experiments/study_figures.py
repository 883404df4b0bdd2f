"""The study's figures, one function per figure, each drawn from its sweep's table and saved as
PNG and SVG with a caption whose numbers come from the same table."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

Table = dict[str, np.ndarray]
STRATEGY_ORDER = ("joint", "tied", "slsqp", "alternating", "max-frequency", "max-power",
                  "fixed-split", "fixed-ratio", "on-device", "on-server", "no-pruning")
_STYLE: dict[str, dict[str, Any]] = {
    "joint": {"color": "black", "lw": 2.4, "marker": "o", "zorder": 5},
    "tied": {"color": "tab:blue", "ls": "--", "marker": "s"},
    "slsqp": {"color": "tab:gray", "ls": ":", "marker": "x"},
    "alternating": {"color": "tab:olive", "ls": "--", "marker": "h"},
    "max-frequency": {"color": "tab:orange", "ls": "-.", "marker": "^"},
    "max-power": {"color": "tab:red", "ls": "-.", "marker": "v"},
    "fixed-split": {"color": "tab:purple", "ls": "--", "marker": "D"},
    "fixed-ratio": {"color": "tab:brown", "ls": ":", "marker": "P"},
    "on-device": {"color": "tab:green", "ls": "-", "marker": "<"},
    "on-server": {"color": "tab:cyan", "ls": "-", "marker": ">"},
    "no-pruning": {"color": "tab:pink", "ls": "-", "marker": "*"},
}
OBJECTIVE_LABEL = "distortion bound  Σ k·N·δ(ρ)  (symlog)"
# 3GPP TR 38.901 Table 7.4.1-1, UMi street canyon, line of sight, carrier 3.5 GHz:
# PL(d) = 32.4 + 21·log10(d / m) + 20·log10(f_c / GHz) dB, valid 10 m ≤ d ≤ 5 km
UMI_CARRIER_GHZ = 3.5


def umi_los_distance_m(path_gain: Any) -> Any:
    """Distance at which the UMi-LOS path loss equals −10·log10(path_gain)."""
    loss_db = -10 * np.log10(np.asarray(path_gain, dtype=np.float64))
    return 10 ** ((loss_db - 32.4 - 20 * math.log10(UMI_CARRIER_GHZ)) / 21)


def umi_los_gain(distance_m: Any) -> Any:
    d = np.maximum(np.asarray(distance_m, dtype=np.float64), 1e-9)
    return 10 ** (-(32.4 + 21 * np.log10(d) + 20 * math.log10(UMI_CARRIER_GHZ)) / 10)


def gain_db(path_gain: Any) -> Any:
    """10·log10(ḡ): gain axes are drawn in dB."""
    return 10 * np.log10(np.asarray(path_gain, dtype=np.float64))


def umi_los_distance_from_db(gain_db_values: Any) -> Any:
    """UMi-LOS distance (m) of a path gain given in dB (for a secondary axis)."""
    loss = -np.asarray(gain_db_values, dtype=np.float64)
    return 10 ** ((loss - 32.4 - 20 * math.log10(UMI_CARRIER_GHZ)) / 21)


def umi_los_db_from_distance(distance_m: Any) -> Any:
    d = np.maximum(np.asarray(distance_m, dtype=np.float64), 1e-9)
    return -(32.4 + 21 * np.log10(d) + 20 * math.log10(UMI_CARRIER_GHZ))


DISTANCE_LABEL = "3GPP UMi-LOS distance at 3.5 GHz"
GAIN_DB_LABEL = "mean channel power gain ḡ (dB)"
# readable names of sweep keys and panel values
_KEY_NAMES = {"task.min_split": "min_split", "channel.path_gain": "mean gain ḡ",
              "task.latency_budget_s": "latency budget T (s)",
              "device.energy_budget_j": "energy budget E (J)"}
_PANEL_TITLES = {("task.min_split", 1): "privacy: raw text stays on the device (min_split = 1)",
                 ("task.min_split", 0): "no privacy limit: raw text may be uploaded "
                                        "(min_split = 0)"}


def panel_title(key: str, value: Any) -> str:
    """A readable title for the panel of a sweep key's value."""
    if (key, value) in _PANEL_TITLES:
        return _PANEL_TITLES[(key, value)]
    return f"{_KEY_NAMES.get(key, key)} = {value:g}" if isinstance(value, float) else (
        f"{_KEY_NAMES.get(key, key)} = {value}")


# round distances inside the UMi-LOS model's validity (10 m – 5 km), finest set first
_DISTANCE_TICKS_M = ((10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
                     (10, 30, 100, 300, 1000, 3000), (10, 100, 1000))
_TICK_SPACING_IN = 0.45  # least room per distance label (inches)


def _distance_axis(ax: Any) -> None:
    """A secondary x axis in metres for an x axis in dB of path gain: ticks at round distances
    inside the axis and inside the UMi-LOS model's validity (10 m – 5 km); call it after
    plotting, so that the x limits are known."""
    top = ax.secondary_xaxis("top", functions=(umi_los_distance_from_db,
                                               umi_los_db_from_distance))
    limits = ax.get_xlim()
    lo, hi = sorted(float(umi_los_distance_from_db(x)) for x in limits)
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    inch_per_db = width_in / abs(limits[1] - limits[0])
    ticks: list[int] = []
    for candidates in _DISTANCE_TICKS_M:
        ticks = [d for d in candidates if lo <= d <= hi]
        db = [float(umi_los_db_from_distance(d)) for d in ticks]
        if all(abs(a - b) * inch_per_db >= _TICK_SPACING_IN
               for a, b in itertools.pairwise(db)):
            break
    top.set_xticks(ticks, [f"{d / 1000:g} km" if d >= 1000 else f"{d} m" for d in ticks])
    top.set_xlabel(DISTANCE_LABEL + " (model valid 10 m – 5 km)", fontsize=8)
    top.tick_params(labelsize=7)


def _shared_legend(fig: Any, axes: Sequence[Any], ncol: int = 6) -> None:
    """One legend for every panel, below them (the figure must use the constrained layout)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(ncol, len(handles)), fontsize=8)


@dataclass(frozen=True)
class Figure:
    """A saved figure: its name, caption and files (relative to the report's folder)."""

    name: str
    title: str
    caption: str
    files: tuple[str, ...]


def _save(fig: Any, folder: Path, name: str) -> tuple[str, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    plt.rcParams["svg.hashsalt"] = "laimco-study"
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(folder / f"{name}.png", dpi=130, metadata={"Software": None})
    fig.savefig(folder / f"{name}.svg", metadata={"Date": None})
    plt.close(fig)
    return (f"{folder.name}/{name}.png", f"{folder.name}/{name}.svg")


def mask(table: Table, **equal: Any) -> np.ndarray:
    """Rows whose columns equal the given values (keys with dots: pass them in a dict)."""
    keep = np.ones(len(table["point"]), dtype=bool)
    for key, value in equal.items():
        keep &= table[key] == value
    return keep


def where(table: Table, conditions: dict[str, Any]) -> np.ndarray:
    return mask(table, **conditions)


def present_strategies(table: Table) -> list[str]:
    found = set(table["strategy"].tolist())
    return [s for s in STRATEGY_ORDER if s in found]


def _objective_axis(ax: Any) -> None:
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(OBJECTIVE_LABEL)
    ax.grid(True, which="major", alpha=0.3)


def _strategy_lines(ax: Any, table: Table, x_key: str, conditions: dict[str, Any],
                    y_key: str = "objective") -> None:
    for name in present_strategies(table):
        rows = where(table, {**conditions, "strategy": name})
        x, y = table[x_key][rows], table[y_key][rows]
        order = np.argsort(x)
        ax.plot(x[order], y[order], label=name, markersize=4, **_STYLE[name])


def _joint_lowest_text(table: Table, conditions: dict[str, Any]) -> str:
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
        if joint.any() and table["objective"][joint][0] <= best * (1 + 1e-6) + 1e-9:
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
        _strategy_lines(ax, shown, x_key, conditions)
        ax.set_xscale("linear" if x_in_db else "log")
        ax.set_xlabel(x_label)
        _objective_axis(ax)
        label = panel_title(panels[0], value) if panels else ""
        ax.set_title(label or title, fontsize=10)
        if x_in_db:
            _distance_axis(ax)
        elif secondary is not None:  # a linear secondary unit (dBm) over a log axis
            top = ax.secondary_xaxis("top", functions=(secondary[1], secondary[2]))
            lo, hi = sorted(float(secondary[1](x)) for x in ax.get_xlim())
            ticks = [t for t in MaxNLocator(6).tick_values(lo, hi) if lo <= t <= hi]
            top.set_xticks(ticks, [f"{t:g}" for t in ticks])
            top.set_xlabel(secondary[0], fontsize=8)
        notes.append((label + ": " if label else "") + _joint_lowest_text(table, conditions))
    _shared_legend(fig, axes[0])
    files = _save(fig, folder, name)
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
    files = _save(fig, folder, "bound_reliability")
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
        _distance_axis(ax)
    axes[3].set_yscale("symlog", linthresh=1.0)
    axes[3].set_ylim(bottom=0)
    _shared_legend(fig, axes[:1])
    files = _save(fig, folder, "split_vs_device_class")
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
            style = {k: v for k, v in _STYLE[name].items() if k != "marker"}
            ax.step(finite, np.arange(1, finite.size + 1) / n, where="post", label=name,
                    **style)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel(OBJECTIVE_LABEL)
        ax.set_ylabel("P(objective ≤ x)  (tops out at 1 − outage)")
        ax.set_title(f"mean gain ḡ = {10 * math.log10(g):.0f} dB "
                     f"(≈ {float(umi_los_distance_m(g)):.0f} m UMi-LOS)", fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
    _shared_legend(fig, axes[0])
    files = _save(fig, folder, "fading_cdf")
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
    files = _save(fig, folder, "fading_outage")
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
            style = {k: v for k, v in _STYLE[name].items() if k not in ("ls",)}
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
    files = _save(fig, folder, "robust_violation")
    caption = (f"A decision made once for g_ε = −ḡ·ln(1−ε) and held while the gain fades over "
               f"{n:,} Rayleigh realizations breaks its latency or energy limit at about the "
               "target rate ε (grey: ±3 standard errors); the decision made for the mean gain "
               "ḡ breaks it in about 1 − e^{−1} ≈ 63 % of them. Right: what robustness costs "
               "in distortion bound.")
    return Figure("robust_violation", "Robust decisions against their outage target", caption,
                  files)


GAP_FLOOR = 1e-12  # relative objective gaps below this are drawn at it (float noise)
GAP_TOLERANCE = 1e-6  # the study's tolerance for "equal objectives" (study.REL_TOL)


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
        ax.plot(np.arange(points.size), t, label=name, **_STYLE[name])
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
        color = _STYLE[name]["color"]
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
    files = _save(fig, folder, "solve_time")
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
    files = _save(fig, folder, "model_size")
    caption = ("The larger the merrier? Architecture-only profiles of public models (MiniLM "
               "measured) under the same device, channel and server budgets: the joint "
               "design's distortion bound per prunable weight (Gaussian law, σ = 0.02 for the "
               "config-only models) and the fraction of all prunable weights it removes; × "
               "marks sizes that do not fit at all.")
    return Figure("model_size", "The larger the merrier?", caption, files)


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
        ax.bar(x, values, width, label=name, color=_STYLE[name]["color"])
        missing = ~np.isfinite(values)
        ax.plot(x[missing], np.full(missing.sum(), 0.3), "x", color=_STYLE[name]["color"])
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_xticks(np.arange(len(bases)), bases, rotation=20, ha="right")
    ax.set_ylabel(OBJECTIVE_LABEL)
    ax.set_title("Every shipped scenario under every strategy", fontsize=10)
    ax.legend(fontsize=7, ncol=5)
    ax.grid(True, axis="y", alpha=0.3)
    files = _save(fig, folder, "regimes")
    caption = ("Every shipped scenario under every strategy (× at the bottom: infeasible). "
               "A zero bar means the strategy runs the model unpruned.")
    return Figure("regimes", "Trivial and non-trivial regimes", caption, files)
