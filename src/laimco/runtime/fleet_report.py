"""The files of `laimco fleet-serve` (docs/runtime.md, "Serving a fleet"): fleet_serve.json (every
number), devices.csv (one line per device), latency.png and latency.svg (predicted vs measured
latency per device) and fleet_serve.md (short report)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("id", "class", "split", "rho_device", "rho_server", "activation_bits", "part",
               "bandwidth_hz", "rate_bps", "predicted_latency_s", "predicted_energy_j",
               "measured_latency_median_s", "measured_latency_p95_s", "mean_cosine",
               "activation_bytes_measured", "activation_bytes_predicted", "sent", "ok",
               "failed", "lost")


def csv_row(device: dict[str, Any]) -> dict[str, Any]:
    """One device's line of devices.csv."""
    measured = device["measured"]
    upload = measured["upload"] or {}
    return {**{key: device[key] for key in CSV_COLUMNS[:7]},
            "bandwidth_hz": device["bandwidth_hz"], "rate_bps": device["rate_bps"],
            "predicted_latency_s": device["predicted"]["latency_s"]["total"],
            "predicted_energy_j": device["predicted"]["energy_j"]["total"],
            "measured_latency_median_s": measured["latency"]["median_s"],
            "measured_latency_p95_s": measured["latency"]["p95_s"],
            "mean_cosine": (measured["quality"] or {}).get("mean_cosine"),
            "activation_bytes_measured": upload.get("activation_bytes_measured"),
            "activation_bytes_predicted": upload.get("activation_bytes_predicted"),
            **{key: device["requests"][key] for key in ("sent", "ok", "failed", "lost")}}


def write_figure(report: dict[str, Any], stem: Path) -> list[Path]:
    """Bars per device: predicted latency (its decision), measured median with the p95 as an
    error bar; written as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    devices = report["devices"]
    x = np.arange(len(devices))
    predicted = [d["predicted"]["latency_s"]["total"] * 1e3 for d in devices]
    median = [(d["measured"]["latency"]["median_s"] or 0.0) * 1e3 for d in devices]
    p95 = [(d["measured"]["latency"]["p95_s"] or 0.0) * 1e3 for d in devices]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(devices) + 2.0), 4.0))
    ax.bar(x - 0.2, predicted, 0.4, label="predicted (decision at its shares)",
           color="#4c72b0")
    ax.bar(x + 0.2, median, 0.4, label="measured median on this machine (p95 bar)",
           color="#dd8452", yerr=[np.zeros(len(x)), np.subtract(p95, median)], capsize=2)
    ax.set_xticks(x, [f"{d['id']}\n{d['part'] or 'local'}" for d in devices],
                  rotation=90 if len(devices) > 8 else 0, fontsize=7)
    ax.set_ylabel("latency per inference (ms)")
    ax.set_title(f"{report['fleet']}: {len(devices)} devices, {len(report['parts'])} server "
                 f"part(s), one server")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:.1f}"


def markdown(report: dict[str, Any]) -> str:
    """fleet_serve.md: the run in a few tables."""
    req = report["requests"]
    lines = [f"# fleet-serve: {report['fleet']}", "",
             f"{len(report['devices'])} devices served by one MLServer process hosting "
             f"{len(report['parts'])} server part(s) ({report['pruned_folders']} distinct pruned "
             f"folders); measured window {report['window_s']:.1f} s; status "
             f"**{report['status']}**.", "",
             f"Requests: {req.get('sent', 0)} sent, {req.get('ok', 0)} ok, "
             f"{req.get('failed', 0)} failed, {req.get('lost', 0)} lost "
             f"({req.get('failed_attempts', 0)} failed attempts retried).", "",
             "| part | devices | batching | requests | throughput (req/s) | batch sizes |",
             "|---|---|---|---|---|---|"]
    for part in report["parts"]:
        batching = (f"≤ {part['batching']['max_batch_size']}, "
                    f"{part['batching']['max_batch_time_s'] * 1e3:g} ms"
                    if part["batching"] else "off")
        sizes = ", ".join(f"{k}×{v}" for k, v in part["batch_sizes"].items())
        lines.append(f"| {part['name']} | {len(part['devices'])} | {batching} | "
                     f"{part['requests']} | {part['throughput_rps']:.2f} | {sizes} |")
    lines += ["", "| device | split | part | rate (Mbit/s) | predicted (ms) | measured median "
              "/ p95 (ms) | cosine vs dense | bytes measured / predicted | ok / failed / lost |",
              "|---|---|---|---|---|---|---|---|---|"]
    for d in report["devices"]:
        lat, quality = d["measured"]["latency"], d["measured"]["quality"] or {}
        upload = d["measured"]["upload"] or {}
        cosine = quality.get("mean_cosine")
        measured_b, predicted_b = (upload.get("activation_bytes_measured"),
                                   upload.get("activation_bytes_predicted"))
        bytes_text = ("—" if measured_b is None else
                      f"{measured_b:.0f} / {predicted_b:.0f}" if predicted_b is not None
                      else f"{measured_b:.0f} / —")
        lines.append(
            f"| {d['id']} | {d['split']} | {d['part'] or 'local'} | {d['rate_bps'] / 1e6:.2f} |"
            f" {_ms(d['predicted']['latency_s']['total'])} | {_ms(lat['median_s'])} / "
            f"{_ms(lat['p95_s'])} | {'—' if cosine is None else f'{cosine:.4f}'} | "
            f"{bytes_text} | {d['requests']['ok']} / {d['requests']['failed']} / "
            f"{d['requests']['lost']} |")
    if report["unserved"]:
        lines += ["", "Not served (infeasible at their shares): " + "; ".join(
            f"{u['id']} ({' '.join(u['reasons'])})" for u in report["unserved"])]
    lines += ["", "Latencies are measured on this machine (its CPU for every device part and "
              "the server, each upload shaped to the device's allocated rate), not emulated on "
              "the scenarios' hardware; the predicted ones are the decisions' own.", ""]
    return "\n".join(lines)


def write_fleet_report(report: dict[str, Any], folder: Path) -> list[Path]:
    """Write every file of the report into `folder`."""
    json_path = folder / "fleet_serve.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    csv_path = folder / "devices.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for device in report["devices"]:
            writer.writerow(csv_row(device))
    md_path = folder / "fleet_serve.md"
    md_path.write_text(markdown(report))
    return [json_path, csv_path, md_path, *write_figure(report, folder / "latency")]
