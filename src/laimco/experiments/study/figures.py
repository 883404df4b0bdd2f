"""Every figure of the study, drawn from the sweep tables into one folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laimco.experiments.study.figures_channel import (
    fading_cdf_figure,
    outage_figure,
    robust_figure,
)
from laimco.experiments.study.figures_design import (
    bound_figure,
    device_class_figure,
    regimes_figure,
    resource_figure,
)
from laimco.experiments.study.figures_solvers import model_size_figure, solve_time_figure
from laimco.experiments.study.figures_style import GAIN_DB_LABEL, Figure
from laimco.experiments.study.figures_uplink import (
    quality_bits_figure,
    split_bits_figure,
    uplink_bandwidth_figure,
)
from laimco.experiments.study.tables import Table
from laimco.experiments.study.uplink_quality import UplinkQuality


@dataclass(frozen=True)
class ResourcePlot:
    """One objective-against-a-resource figure of a design sweep."""

    sweep: str
    name: str
    key: str  # the resource's sweep key (the x axis)
    label: str
    title: str
    what: str  # "the latency budget", for the caption
    secondary: tuple[str, Callable[[Any], Any], Callable[[Any], Any]] | None = None
    panels: tuple[str, list[Any]] | None = None


def _dbm(p: Any) -> Any:
    return 10 * np.log10(np.maximum(p, 1e-12) * 1e3)


def _watts(dbm: Any) -> Any:
    return 10 ** (np.clip(np.asarray(dbm, dtype=float), -100, 100) / 10) / 1e3


RESOURCE_PLOTS = (
    ResourcePlot("latency", "objective_vs_latency", "task.latency_budget_s",
                 "latency budget T (s)", "Objective vs latency budget",
                 "the latency budget (left: privacy, min_split = 1; right: the raw text may be "
                 "uploaded)", panels=("task.min_split", [1, 0])),
    ResourcePlot("energy", "objective_vs_energy", "device.energy_budget_j",
                 "device energy budget per inference E (J)",
                 "Objective vs device energy budget", "the device's energy budget"),
    ResourcePlot("bandwidth", "objective_vs_bandwidth", "channel.bandwidth_hz",
                 "uplink bandwidth B (Hz)", "Objective vs bandwidth", "the uplink bandwidth"),
    ResourcePlot("pathgain", "objective_vs_path_gain", "channel.path_gain", GAIN_DB_LABEL,
                 "Objective vs path gain (distance)", "the mean channel gain in dB (top: the "
                 "3GPP UMi-LOS distance at 3.5 GHz that gives it)"),
    ResourcePlot("txpower", "objective_vs_tx_power", "device.tx_power_max_w",
                 "maximum transmit power (W)", "Objective vs maximum transmit power",
                 "the maximum transmit power at −100 dB path gain",
                 secondary=("maximum transmit power (dBm)", _dbm, _watts)),
)


def draw_figures(tables: dict[str, Table], bound: Table, k_hat: float, bound_source: str,
                 timings: Table, folder: Path, uplink_quality: UplinkQuality | None = None
                 ) -> list[Figure]:
    """Every figure (PNG + SVG) into `folder`, in the report's order."""
    out = [bound_figure(bound, k_hat, folder, bound_source)]
    for plot in RESOURCE_PLOTS:
        if plot.sweep in tables:
            out.append(resource_figure(
                tables[plot.sweep], folder, name=plot.name, x_key=plot.key,
                x_label=plot.label, title=plot.title, what=plot.what,
                secondary=plot.secondary, panels=plot.panels,
                x_in_db=plot.key == "channel.path_gain"))
    out.append(device_class_figure(tables["device_class"], folder))
    out.append(regimes_figure(tables["regimes"], folder))
    out.append(fading_cdf_figure(tables["fading"], folder))
    out.append(outage_figure(tables["fading"], folder))
    out.append(robust_figure(tables["robust"], folder))
    out.append(solve_time_figure(tables["solve_time"], timings, folder))
    out.append(model_size_figure(tables["model_size"], folder))
    out.append(uplink_bandwidth_figure(tables["uplink_bandwidth"],
                                       tables["uplink_bandwidth_float32"], uplink_quality,
                                       folder))
    out.append(split_bits_figure(tables["uplink_pathgain"], folder))
    if uplink_quality is not None:
        out.append(quality_bits_figure(uplink_quality, folder))
    return out
