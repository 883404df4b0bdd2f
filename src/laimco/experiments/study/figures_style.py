"""The look shared by the study's figures: one line style per strategy, axis labels, the
UMi-LOS distance axis over a path gain in dB, the shared legend, and saving as PNG + SVG."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from laimco.experiments.study.tables import Table, present_strategies, where
from laimco.system.pathloss import los_pl1_db, los_pl1_distance_m

STYLE: dict[str, dict[str, Any]] = {
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
# The distance axis reads a path gain as a 3GPP TR 38.901 UMi street-canyon LOS distance at
# 3.5 GHz through PL1 (laimco.system.pathloss.los_pl1_db): the median loss up to the breakpoint
# d'_BP (210 m at 3.5 GHz for a 1.5 m terminal), extended beyond it.
UMI_CARRIER_GHZ = 3.5


def umi_los_distance_m(path_gain: Any) -> Any:
    """Distance at which the UMi-LOS path loss (PL1) equals −10·log10(path_gain)."""
    return los_pl1_distance_m(-gain_db(path_gain), UMI_CARRIER_GHZ)


def gain_db(path_gain: Any) -> Any:
    """10·log10(ḡ): gain axes are drawn in dB."""
    return 10 * np.log10(np.asarray(path_gain, dtype=np.float64))


def umi_los_distance_from_db(gain_db_values: Any) -> Any:
    """UMi-LOS distance (m) of a path gain given in dB (for a secondary axis)."""
    return los_pl1_distance_m(-np.asarray(gain_db_values, dtype=np.float64), UMI_CARRIER_GHZ)


def umi_los_db_from_distance(distance_m: Any) -> Any:
    """The path gain in dB (−PL1) of a UMi-LOS distance (the secondary axis's inverse)."""
    return -los_pl1_db(np.maximum(np.asarray(distance_m, dtype=np.float64), 1e-9),
                       UMI_CARRIER_GHZ)


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


def distance_axis(ax: Any) -> None:
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


def shared_legend(fig: Any, axes: Sequence[Any], ncol: int = 6) -> None:
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


def save_figure(fig: Any, folder: Path, name: str) -> tuple[str, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    plt.rcParams["svg.hashsalt"] = "laimco-study"
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(folder / f"{name}.png", dpi=130, metadata={"Software": None})
    fig.savefig(folder / f"{name}.svg", metadata={"Date": None})
    plt.close(fig)
    return (f"{folder.name}/{name}.png", f"{folder.name}/{name}.svg")


def objective_axis(ax: Any) -> None:
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(OBJECTIVE_LABEL)
    ax.grid(True, which="major", alpha=0.3)


def strategy_lines(ax: Any, table: Table, x_key: str, conditions: dict[str, Any],
                    y_key: str = "objective") -> None:
    for name in present_strategies(table):
        rows = where(table, {**conditions, "strategy": name})
        x, y = table[x_key][rows], table[y_key][rows]
        order = np.argsort(x)
        ax.plot(x[order], y[order], label=name, markersize=4, **STYLE[name])


