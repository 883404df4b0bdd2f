"""The report's table of the device-class scenarios: the settings, and what they imply (peak
FLOP rate, CPU power κf³, energy per FLOP, UMi-LOS distance), read from the scenario files."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from laimco.experiments.study.claim import TextTable
from laimco.experiments.study.figures_style import umi_los_distance_m

DEVICE_CLASSES = ("minilm-iot", "minilm-phone", "minilm-laptop")
HEADER = ("scenario", "CPU GHz", "FLOPs/cycle", "peak GFLOP/s", "κ (J·s²)", "κf³ at f_max (W)",
          "pJ/FLOP at f_max", "P_max (dBm)", "B (MHz)", "path gain dB (UMi-LOS distance)",
          "N₀ (dBm/Hz)", "T (ms)", "E (mJ)", "memory (MB)", "server share GFLOP/s",
          "min_split")


def _row(name: str, sc: dict[str, dict[str, float]]) -> list[str]:
    d, s, c, t = sc["device"], sc["server"], sc["channel"], sc["task"]
    f, phi, kappa = d["cpu_freq_max_hz"], d["flops_per_cycle"], d["kappa"]
    g = c["path_gain"]
    return [
        name, f"{f / 1e9:.1f}", f"{phi:g}", f"{f * phi / 1e9:.1f}", f"{kappa:.0e}",
        f"{kappa * f**3:.2f}", f"{kappa * f**2 / phi * 1e12:.0f}",
        f"{10 * math.log10(d['tx_power_max_w'] * 1e3):.0f}", f"{c['bandwidth_hz'] / 1e6:g}",
        f"{10 * math.log10(g):.0f} ({umi_los_distance_m(g):.0f} m)",
        f"{10 * math.log10(c['noise_psd_w_per_hz'] * 1e3):.0f}",
        f"{t['latency_budget_s'] * 1e3:.0f}", f"{d['energy_budget_j'] * 1e3:g}",
        f"{d['memory_bytes'] / 1e6:.0f}" if "memory_bytes" in d else "∞",
        f"{s['cpu_freq_max_hz'] * s['flops_per_cycle'] / 1e9:.1f}", str(t.get("min_split", 0))]


def scenario_table(scenarios_dir: Path) -> TextTable:
    """One row per device class whose scenario file is in `scenarios_dir`."""
    rows = []
    for name in DEVICE_CLASSES:
        file = scenarios_dir / f"{name}.toml"
        if file.is_file():
            rows.append(_row(name, tomllib.loads(file.read_text())))
    return TextTable.of(HEADER, rows)
