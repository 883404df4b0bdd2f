"""The fleet study's figures (docs/study.md "Fleet"), drawn from `FleetStudyData` alone:
distortion vs the number of devices, shares vs channel gain, splits per device class, and the
solver's time and certificate vs N against the baselines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from laimco.experiments.study.figures_style import (
    GAIN_DB_LABEL,
    OBJECTIVE_LABEL,
    STYLE,
    Figure,
    gain_db,
    objective_axis,
    save_figure,
    shared_legend,
)

if TYPE_CHECKING:
    from laimco.experiments.study.fleet_study import DeviceShare, FleetStudyData

METHOD_STYLE: dict[str, dict[str, Any]] = {
    "joint": {**STYLE["joint"], "label": "joint (certified solver)"},
    "equal-shares": {"color": "tab:red", "ls": "--", "marker": "s", "label": "equal shares"},
    "proportional": {"color": "tab:purple", "ls": "-.", "marker": "^",
                     "label": "proportional to demand"},
}
CLASS_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:brown", "tab:pink")
NOT_SERVED_COLOR = "lightgray"
GAP_FLOOR = 1e-6  # certified gaps below this are drawn at it


def _n_axis(ax: Any, sizes: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sizes), [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("devices sharing the band and the server (N)")
    ax.grid(True, alpha=0.3)


def _method_lines(ax: Any, data: FleetStudyData, value: Any) -> None:
    sizes = [s.n_devices for s in data.sizes]
    for method, style in METHOD_STYLE.items():
        y = [value(s.outcome(method)) for s in data.sizes]
        ax.plot(sizes, [np.nan if v is None else v for v in y], markersize=5, **style)


def distortion_figure(data: FleetStudyData, folder: Path) -> Figure:
    """(a) Σ and worst-device distortion vs N at a fixed band and server."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    sizes = [s.n_devices for s in data.sizes]
    _method_lines(axes[0], data, lambda o: o.objective)
    _method_lines(axes[1], data, lambda o: o.worst_distortion)
    for ax, title in zip(axes, ("total: Σ over the devices", "worst device: max over the "
                                "devices"), strict=True):
        objective_axis(ax)
        _n_axis(ax, sizes)
        ax.set_title(title, fontsize=10)
    axes[1].set_ylabel(OBJECTIVE_LABEL.replace("Σ k·N·δ(ρ)", "k·N·δ(ρ) of one device"))
    shared_legend(fig, axes, ncol=3)
    files = save_figure(fig, folder, "fleet_distortion_vs_n")
    caption = (f"N paper-mode devices (N of {data.sizes[-1].n_devices} city devices drawn "
               f"with seed {data.seed}, nested) "
               f"share {data.bandwidth_hz / 1e6:g} MHz and {data.server_cycles_per_s / 1e9:g} "
               "Gcycles/s. Left: the fleet's total distortion bound; right: the worst served "
               "device's. The certified solver divides both resources jointly (it stops at "
               f"a certified gap of {data.gap:g} or after {data.max_rounds} rounds); equal "
               "shares and shares proportional to each device's demand at equal shares let "
               "every device decide at its share. Symlog axis: 0 means no device prunes.")
    return Figure("fleet_distortion_vs_n", "Fleet distortion vs the number of devices",
                  caption, files)


def _class_names(devices: Sequence[DeviceShare]) -> list[str]:
    return list(dict.fromkeys(d.class_name for d in devices))


def shares_figure(data: FleetStudyData, folder: Path) -> Figure:
    """(b) each device's band and server share vs its channel gain, by class."""
    joint = [d for d in data.devices if d.method == "joint"]
    n = len(joint)
    names = _class_names(joint)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    for k, name in enumerate(names):
        group = [d for d in joint if d.class_name == name]
        x = gain_db([d.path_gain for d in group])
        served = np.array([d.split is not None for d in group])
        for ax, y in ((axes[0], np.array([d.bandwidth_hz / 1e6 for d in group])),
                      (axes[1], np.array([d.server_cycles_per_s / 1e9 for d in group]))):
            ax.scatter(x[served], y[served], color=CLASS_COLORS[k % len(CLASS_COLORS)], s=22,
                       label=name, zorder=3)
            if (~served).any():
                ax.scatter(x[~served], y[~served], color=CLASS_COLORS[k % len(CLASS_COLORS)],
                           marker="x", s=30, label=f"{name}, not served", zorder=3)
    for ax, equal, label in ((axes[0], data.bandwidth_hz / 1e6 / n, "band share b_u (MHz)"),
                             (axes[1], data.server_cycles_per_s / 1e9 / n,
                              "server share f_s,u (Gcycles/s)")):
        ax.axhline(equal, color="black", ls="--", lw=0.9, label="equal share")
        ax.set_xlabel(GAIN_DB_LABEL + " (UMi path loss × Rayleigh)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_title("uplink band", fontsize=10)
    axes[1].set_title("edge-server cycles", fontsize=10)
    shared_legend(fig, axes, ncol=4)
    files = save_figure(fig, folder, "fleet_shares_vs_gain")
    caption = (f"The certified solver's division of {data.bandwidth_hz / 1e6:g} MHz and "
               f"{data.server_cycles_per_s / 1e9:g} Gcycles/s among {n} devices, per device "
               "against its channel gain, coloured by class. A device at 0 gets no share and "
               "runs the whole model itself (split L); × would mark a device that cannot meet "
               "its limits at its share. The dashed line is the equal share.")
    return Figure("fleet_shares_vs_gain", "Shares vs channel gain", caption, files)


def split_figure(data: FleetStudyData, folder: Path) -> Figure:
    """(c) how many devices of each class run each split, per method."""
    methods = list(dict.fromkeys(d.method for d in data.devices))
    names = _class_names(data.devices)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.95, data.n_units + 1))
    splits = sorted({d.split for d in data.devices if d.split is not None})
    fig, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), 4.6),
                             layout="constrained", sharey=True)
    for ax, method in zip(np.atleast_1d(axes), methods, strict=True):
        rows = [d for d in data.devices if d.method == method]
        bottom = np.zeros(len(names))
        for s in splits:
            count = np.array([sum(1 for d in rows if d.class_name == c and d.split == s)
                              for c in names])
            label = f"split {s}" + (" (all on the device)" if s == data.n_units else "")
            ax.bar(names, count, bottom=bottom, color=colors[s], label=label)
            bottom += count
        lost = np.array([sum(1 for d in rows if d.class_name == c and d.split is None)
                         for c in names])
        if lost.any():
            ax.bar(names, lost, bottom=bottom, color=NOT_SERVED_COLOR, hatch="//",
                   label="not served")
        ax.set_title(METHOD_STYLE[method]["label"], fontsize=10)
        ax.set_xlabel("device class")
        ax.grid(True, axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("devices")
    shared_legend(fig, list(np.atleast_1d(axes)), ncol=5)
    files = save_figure(fig, folder, "fleet_split_by_class")
    caption = (f"The split each device of the {data.sizes[-1].n_devices}-device fleet runs "
               f"(0: the server runs every block; {data.n_units}: the device runs them all), "
               "stacked per class, under the certified solver's shares and under equal "
               "shares; only the splits some device runs are listed.")
    return Figure("fleet_split_by_class", "Chosen split per device class", caption, files)


def solver_figure(data: FleetStudyData, folder: Path) -> Figure:
    """(d) solve time, certified gap and the baselines' objective over the solver's vs N."""
    from laimco.experiments.study.fleet_study import BASELINES, ratio

    sizes = [s.n_devices for s in data.sizes]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    _method_lines(axes[0], data, lambda o: o.solve_time_s)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("seconds to decide (log)")
    axes[0].set_title("solve time", fontsize=10)
    gaps = np.maximum([s.relative_gap for s in data.sizes], GAP_FLOOR)
    axes[1].plot(sizes, gaps, **METHOD_STYLE["joint"])
    axes[1].axhline(data.gap, color="black", ls=":", lw=0.9, label=f"target gap {data.gap:g}")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("(objective − dual bound) / objective (log)")
    axes[1].set_title("certified gap of the solver", fontsize=10)
    for method in BASELINES:
        values = [ratio(s.outcome(method).objective, s.outcome("joint").objective)
                  for s in data.sizes]
        axes[2].plot(sizes, values, **METHOD_STYLE[method])
    axes[2].axhline(1.0, color="black", lw=0.9)
    axes[2].set_ylabel("baseline Σ D / solver's Σ D")
    axes[2].set_title("baselines against the solver (> 1: worse)", fontsize=10)
    for ax in axes:
        _n_axis(ax, sizes)
    shared_legend(fig, axes, ncol=4)
    files = save_figure(fig, folder, "fleet_solver_vs_n")
    caption = ("Left: wall time of the certified solver (its own solve_time_s, shares only) "
               "and of the baselines (including every device's decision at its share), on a "
               "shared 2-core machine. Middle: the certified relative gap (objective − dual "
               f"bound)/objective at the last round (floor {GAP_FLOOR:g}). Right: each "
               "baseline's total distortion over the solver's (0/0 counts as 1).")
    return Figure("fleet_solver_vs_n", "Solve time and certificate vs N", caption, files)


def draw_fleet_figures(data: FleetStudyData, folder: Path) -> list[Figure]:
    return [distortion_figure(data, folder), shares_figure(data, folder),
            split_figure(data, folder), solver_figure(data, folder)]
