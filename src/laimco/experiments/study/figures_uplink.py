"""The compressed uplink's figures (docs/theory.md §6): the joint decision against the uplink
bandwidth with and without compression, its (split, bits) against the channel gain, and the
held-out loss of a quantized activation per split and width next to the profile's D_q."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from laimco.experiments.study.figures_style import (
    GAIN_DB_LABEL,
    Figure,
    distance_axis,
    gain_db,
    save_figure,
    shared_legend,
)
from laimco.experiments.study.numbers import fmt_g
from laimco.experiments.study.tables import Table, where
from laimco.experiments.study.uplink_quality import UplinkQuality

COMPRESSED = {"color": "black", "lw": 2.2, "marker": "o", "label": "widths 32…2 bits chosen"}
FLOAT32 = {"color": "tab:red", "ls": "--", "marker": "s", "label": "float32 only"}
BITS_TICKS = (2, 4, 6, 8, 16, 32)
Z95 = 1.96


def _joint(table: Table, x_key: str) -> dict[str, np.ndarray]:
    rows = where(table, {"strategy": "joint"})
    order = np.argsort(table[x_key][rows])
    return {k: table[k][rows][order] for k in (x_key, "split", "activation_bits", "objective")}


def _label_changes(ax: Any, curve: dict[str, np.ndarray], key: str, colour: str,
                   offset: float) -> None:
    """Write "s<split>/<bits>b" at the first point and wherever the decision changes."""
    previous = None
    for x, y, s, bits in zip(curve[key], curve["objective"], curve["split"],
                             curve["activation_bits"], strict=True):
        text = f"s{s:g}" + ("" if math.isnan(bits) or bits == 32 else f"/{bits:g}b")
        if np.isfinite(y) and text != previous:
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, offset),
                        ha="center", fontsize=7, color=colour)
        previous = text


def uplink_bandwidth_figure(compressed: Table, float32: Table, quality: UplinkQuality | None,
                            folder: Path) -> Figure:
    """Left: the joint objective against the bandwidth, widths chosen and float32 only, the
    chosen width written at each point. Right: the measured held-out loss (95 % interval)
    at the measured bandwidths, with the objective / 2 it predicts."""
    key = "channel.bandwidth_hz"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    a, b = _joint(compressed, key), _joint(float32, key)
    left.plot(b[key], b["objective"], markersize=4, **FLOAT32)
    left.plot(a[key], a["objective"], markersize=4, **COMPRESSED)
    for curve, colour, offset in ((a, "black", 6), (b, "tab:red", -11)):
        _label_changes(left, curve, key, colour, offset)
    left.set_ylabel("objective D (predicted output distortion 2·(1 − cos))")
    left.set_title("Objective of the joint decision (labels: split / bits where they change)",
                   fontsize=10)
    ratios = a["objective"] / b["objective"]
    notes = [f"the objective with compression is {fmt_g(np.nanmin(ratios), 3)}–"
             f"{fmt_g(np.nanmax(ratios), 3)} × the float32 one"]
    if quality is not None and quality.decisions:
        for compressed_, style in ((True, COMPRESSED), (False, FLOAT32)):
            ds = sorted((d for d in quality.decisions if d.compressed == compressed_),
                        key=lambda d: d.bandwidth_hz)
            x = np.array([d.bandwidth_hz for d in ds])
            mean = np.array([d.loss_mean for d in ds])
            half = np.array([Z95 * float(np.std(d.loss_per_input, ddof=1))
                             / math.sqrt(len(d.loss_per_input)) for d in ds])
            right.errorbar(x, mean, yerr=half, capsize=3, markersize=5, **style)
            right.plot(x, [d.objective / 2 for d in ds], ls="none", marker=style["marker"],
                       mfc="none", color=style["color"], markersize=9,
                       label=f"objective / 2 ({style['label']})")
        right.set_title(f"Measured on {quality.sentences} held-out sentences", fontsize=10)
        notes.append(f"right: mean loss 1 − cos with its 95 % interval on {quality.sentences} "
                     "held-out sentences (filled), the loss the objective predicts (hollow)")
    else:
        right.set_title("not measured (no model)", fontsize=10)
    right.set_ylabel("held-out loss 1 − cos")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("uplink bandwidth B (Hz)")
        ax.grid(True, which="major", alpha=0.3)
    shared_legend(fig, [left, right], ncol=4)
    files = save_figure(fig, folder, "uplink_bandwidth")
    caption = ("The joint decision on the calibrated phone scenario (scenarios/minilm-phone.toml) "
               "against the uplink bandwidth, the activation width chosen among 32, 16, 8, 6, "
               "4 and 2 bits and sent as float32 only, every budget the same; "
               + "; ".join(notes) + ".")
    return Figure("uplink_bandwidth", "Compressed uplink: objective and measured quality vs "
                  "bandwidth", caption, files)


def split_bits_figure(table: Table, folder: Path) -> Figure:
    """The joint decision's split (top) and activation width (bottom) against the path gain."""
    key = "channel.path_gain"
    j = _joint(table, key)
    x = gain_db(j[key])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.2), sharex=True,
                                      layout="constrained")
    top.plot(x, j["split"], drawstyle="steps-mid", **COMPRESSED)
    top.set_ylabel("split s (units on the device)")
    top.yaxis.get_major_locator().set_params(integer=True)
    bits = np.where(np.isnan(j["activation_bits"]), 32, j["activation_bits"])
    bottom.plot(x, bits, drawstyle="steps-mid", color="tab:purple", marker="D")
    bottom.set_yscale("log", base=2)
    bottom.set_yticks(BITS_TICKS, [str(b) for b in BITS_TICKS])
    bottom.minorticks_off()
    bottom.set_ylabel("activation bits b")
    bottom.set_xlabel(GAIN_DB_LABEL)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.set_title("Joint decision on the calibrated phone scenario", fontsize=10)
    distance_axis(top)
    files = save_figure(fig, folder, "uplink_split_vs_gain")
    feasible = np.isfinite(j["objective"])
    chosen = sorted({(int(s), "—" if math.isnan(b) else f"{b:g}")
                     for s, b in zip(j["split"][feasible], j["activation_bits"][feasible],
                                     strict=True)})
    caption = ("The split and the activation width the joint design chooses on "
               "scenarios/minilm-phone.toml against the mean channel gain (top axis: the 3GPP "
               "UMi-LOS distance at 3.5 GHz); (split, bits) pairs chosen: "
               + ", ".join(f"({s}, {b})" for s, b in chosen) + ".")
    return Figure("uplink_split_vs_gain", "Compressed uplink: split and bits vs channel gain",
                  caption, files)


def quality_bits_figure(quality: UplinkQuality, folder: Path) -> Figure:
    """Held-out loss of the dense model with only the activation at split s quantized, per
    width, with the profile's D_q(s, b)/2 (the loss it predicts) dashed."""
    fig, ax = plt.subplots(figsize=(7.5, 5.4), layout="constrained")
    splits = sorted({q.split for q in quality.per_bits})
    colours = plt.colormaps["viridis"](np.linspace(0, 0.9, len(splits)))
    for split, colour in zip(splits, colours, strict=True):
        qs = sorted((q for q in quality.per_bits if q.split == split), key=lambda q: q.bits)
        bits = np.array([q.bits for q in qs])
        ax.errorbar(bits, [q.loss_mean for q in qs], yerr=[Z95 * q.loss_se for q in qs],
                    color=colour, marker="o", markersize=4, capsize=2, label=f"s = {split}")
        ax.plot(bits, [q.predicted_loss for q in qs], color=colour, ls="--", marker="x",
                markersize=5, lw=1)
    ax.plot([], [], color="gray", marker="o", label="measured (held-out, 95 % interval)")
    ax.plot([], [], color="gray", ls="--", marker="x", label="profile D_q(s, b) / 2")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({q.bits for q in quality.per_bits}),
                  [str(b) for b in sorted({q.bits for q in quality.per_bits})])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("activation bits b")
    ax.set_ylabel("loss 1 − cos against the float32 model")
    ax.set_title("Quantizing only the activation at split s (dense model)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    shared_legend(fig, [ax], ncol=5)
    files = save_figure(fig, folder, "uplink_quality_vs_bits")
    caption = (f"all-MiniLM-L6-v2 split at s, the crossing activation's real-token rows "
               f"quantized to b bits (per-token scales, the profile's clip) and nothing pruned: "
               f"mean loss 1 − cos on {quality.sentences} held-out sentences (solid, 95 % "
               "interval) and the profile's D_q(s, b) / 2 measured on calibration text "
               "(dashed; D_y = 2·(1 − cos) per input, so D_q / 2 is the loss it predicts).")
    return Figure("uplink_quality_vs_bits", "Compressed uplink: measured quality vs bits per "
                  "split", caption, files)
