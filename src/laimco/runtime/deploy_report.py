"""The files of `laimco deploy`: deploy.json (every number), deploy.md (short report) and
latency.png (predicted vs measured per latency component)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COMPONENTS = ("device", "uplink", "server", "total")



def _rules(report: dict[str, Any]) -> str:
    """'structured' or 'structured/wanda' (device/server) when the sides differ."""
    device, server = report["rule"], report.get("rule_server", report["rule"])
    return device if device == server else f"{device}/{server} (device/server)"

def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:.1f}"


def _pair_ms(values: list[float]) -> str:
    return " / ".join(f"{v * 1e3:.1f}" for v in values)


def _ratio(measured: float | None, predicted: float | None) -> str:
    if measured is None or not predicted:
        return "—"
    return f"{measured / predicted:.2f}"


def write_figure(report: dict[str, Any], path: Path) -> Path:
    """Grouped bars per component: predicted, emulated (scaled to the scenario's hardware) and
    measured on this machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lat = report["latency_s"]
    series = [("predicted (model)", lat["predicted"], "#4c72b0"),
              ("emulated scenario hardware", lat["emulated"], "#dd8452"),
              ("measured on this machine", lat["measured_host"], "#8c8c8c")]
    x = np.arange(len(COMPONENTS))
    width = 0.27
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for i, (label, values, color) in enumerate(series):
        heights = [values.get(c, 0.0) * 1e3 for c in COMPONENTS]
        ax.bar(x + (i - 1) * width, heights, width, label=label, color=color)
    ax.set_xticks(x, list(COMPONENTS))
    ax.set_ylabel("latency per inference (ms)")
    decision = report["decision"]
    ax.set_title(f"split {decision['split']}, ρ_d {decision['rho_device']:.3f}, "
                 f"ρ_s {decision['rho_server']:.3f} ({_rules(report)} pruning)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def markdown(report: dict[str, Any]) -> str:
    """The short human-readable report."""
    decision = report["decision"]
    lines = [f"# laimco deploy — {report['scenario']}", ""]
    if report.get("status") == "infeasible":
        lines += ["The scenario is **infeasible**; nothing was deployed.", ""]
        lines += [f"- {reason}" for reason in decision.get("reasons", [])]
        return "\n".join(lines) + "\n"
    req = report["requests"]
    lines += [
        f"Decision ({decision['strategy']}): split **{decision['split']}**, "
        f"ρ_device **{decision['rho_device']:.4f}**, ρ_server **{decision['rho_server']:.4f}**, "
        f"p = {decision['power_w']:.4g} W, f_d = {decision['freq_device_hz']:.4g} Hz, "
        f"f_s = {decision['freq_server_hz']:.4g} Hz.",
        f"Model {report['model']}, {_rules(report)} pruning (achieved sparsity device "
        f"{report['sparsity']['device']:.4f}, server {report['sparsity']['server']:.4f}), "
        + (f"{report['n_sentences']} held-out sentences at {report['sequence_length']} tokens, "
           "batch 1." if report.get("sequence_length") else
           f"{report['n_sentences']} {report.get('inputs', 'inputs')}, batch 1."),
        f"Requests: {req['ok']} ok, {req['failed']} failed, {req['failed_attempts']} failed "
        "attempts (every request and attempt is in requests.jsonl).",
        "",
        "## Latency per inference (median)",
        "",
        "| component | predicted ms | emulated ms | emulated / predicted | measured here ms |",
        "|---|---:|---:|---:|---:|",
    ]
    lat = report["latency_s"]
    for c in COMPONENTS:
        p, e, m = lat["predicted"].get(c), lat["emulated"].get(c), lat["measured_host"].get(c)
        lines.append(f"| {c} | {_ms(p)} | {_ms(e)} | {_ratio(e, p)} | {_ms(m)} |")
    lines += _hardware_section(report)
    lines += _quality_section(report)
    return "\n".join(lines) + "\n"


def _hardware_section(report: dict[str, Any]) -> list[str]:
    """Energy, and how the scenario's uplink, device and server are emulated."""
    link, host, emu = report["link"], report["host"], report["emulation"]
    uploads = link["predicted_upload_bits"] > 0  # nothing is sent only at s = L
    energy = report["energy_j"]
    return [
        "",
        "![latency](latency.png)",
        "",
        f"Energy per inference: predicted {energy['predicted']['total'] * 1e3:.2f} mJ "
        f"(compute {energy['predicted']['compute'] * 1e3:.2f}, uplink "
        f"{energy['predicted']['uplink'] * 1e3:.2f}); emulated "
        f"{energy['emulated']['total'] * 1e3:.2f} mJ (compute "
        f"{energy['emulated']['compute'] * 1e3:.2f}, uplink "
        f"{energy['emulated']['uplink'] * 1e3:.2f}).",
        "",
        "## How the scenario's hardware is emulated",
        "",
        (f"- **Uplink**: the upload goes through a relay that paces the serialized gRPC stream "
         f"at r(p, g) = B·log₂(1+pg/(N₀B)) = {link['rate_bps'] / 1e6:.3f} Mbit/s "
         f"({'shaped' if link['shaped'] else 'NOT shaped: raw loopback'}). Payload "
         f"{link['payload_bits'] / 1e6:.3f} Mbit (model: "
         f"{link['predicted_upload_bits'] / 1e6:.3f} Mbit), S/r = "
         f"{link['payload_over_rate_s'] * 1e3:.1f} ms. The measured uplink is rpc time − server "
         "compute, so it also holds serialization and MLServer's handling."
         + _activation_line(link.get("uplink"))
         if uploads else
         "- **Uplink**: none — the split is s = L, the whole model runs on the device and "
         "nothing is sent."),
        f"- **Device and server compute**: {emu['rule']}. Dense parts on this CPU (median): "
        f"device {host['device_dense_s'] * 1e3:.1f} ms ({host['device_flop_per_s'] / 1e9:.2f}"
        f" GFLOP/s), server {host['server_dense_s'] * 1e3:.1f} ms "
        f"({host['server_flop_per_s'] / 1e9:.2f} GFLOP/s); the scenario's device does "
        f"{emu['theta_device_flop_per_s'] / 1e9:.2f} GFLOP/s and its server share "
        f"{emu['theta_server_flop_per_s'] / 1e9:.2f} GFLOP/s. Pruned / dense time on this "
        f"CPU (paired, back to back): device {emu['device_pruned_over_dense']:.2f}, server "
        f"{emu['server_pruned_over_dense']:.2f}. The live run's own compute times (client "
        "device part, server process) are the 'measured here' column. The calibrated mode "
        "predicts a pruned part's time from times measured on the kernels laimco runs "
        "(docs/theory.md §5.3); the paper mode assumes 1 − ρ of the prunable FLOPs, which "
        "masks on dense matrices do not save. Other load on "
        "this machine slows a pruned and a dense run taken back to back alike, so the paired "
        "ratio stays meaningful where the absolute times do not.",
        "",
    ]


def _activation_line(upload: dict[str, Any] | None) -> str:
    """The activation's measured bytes and upload time against the prediction."""
    if not upload:
        return ""
    form = ("float32" if upload["activation_bits"] == 32 else
            f"{upload['activation_bits']}-bit codes ({upload['granularity']} scales, clip "
            f"{upload['clip']:g}, coding {upload['coding']})")
    predicted = upload["activation_bytes_predicted"]
    bytes_part = (f"predicted {predicted:,.0f} B (measured / predicted "
                  f"{upload['measured_over_predicted']:.4f})" if predicted is not None else
                  "no prediction (the profile has no measured zstd ratio)")
    return (f" Activation sent as {form}: {upload['activation_bytes_measured']:,.0f} B per "
            f"request (mean of {upload['requests']}), {bytes_part}; fixed-width "
            f"payload_bits/8 = {upload['fixed_width_bytes']:,.0f} B, met exactly by "
            f"{upload['exact_requests']} of {upload['requests']} requests. Upload time "
            f"(medians): predicted (tensor bytes / r) {upload['upload_s_predicted'] * 1e3:.1f} "
            f"ms, measured {upload['transfer_s_measured'] * 1e3:.1f} ms on the wire (rpc − the "
            f"call inside the server), {upload['upload_s_measured'] * 1e3:.1f} ms with the "
            "server's handling (rpc − compute).")


def _quality_section(report: dict[str, Any]) -> list[str]:
    """Output quality of the deployed and the in-process parts against the dense model."""
    quality = report["quality"]
    uploads = report["link"]["predicted_upload_bits"] > 0
    lines = [
        "## Output quality vs the dense (unsplit, unpruned) model",
        "",
        f"Compared: {quality.get('compared', 'outputs')}"
        + (" (per token: distortion, cosine and top-1 agreement of the next-token choice)."
           if "top1" in " ".join(quality["local_vs_dense"]) else "."),
        "",
        "| outputs | distortion D_y | mean cosine | retrieval agreement / top-1 |",
        "|---|---:|---:|---:|",
    ]
    deployed_label = "over the network" if uploads else "deployed (s = L: all on the device)"
    for label, key in ((deployed_label, "network_vs_dense"),
                       ("in-process (same pruned parts)", "local_vs_dense")):
        q = quality[key]
        agreement = next(((k, v) for k, v in q.items() if k.startswith("retrieval")), None)
        shown = f"{agreement[1]:.3f} (@{agreement[0].rsplit('_', 1)[1]})" if agreement else (
            f"{q['top1_agreement']:.3f} (top-1)" if "top1_agreement" in q else "—")
        lines.append(f"| {label} | {q['output_distortion']:.4g} | {q['mean_cosine']:.5f} | "
                     f"{shown} |")
    lines += [
        "",
        f"Network and in-process outputs differ by at most "
        f"{quality['network_vs_local_max_abs']:.2e} (max |Δ|). The optimizer's objective (a "
        f"bound on the output distortion, in the units of its k constants) is "
        f"{quality['predicted_objective']:.6g}.",
        "",
        f"Server startup {report['server_startup_s']:.1f} s; whole run "
        f"{report['elapsed_s']:.1f} s.",
    ]
    return lines


def write_report(report: dict[str, Any], out: Path) -> None:
    """deploy.json, deploy.md and (for a deployed decision) latency.png in `out`."""
    (out / "deploy.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    if report.get("status") != "infeasible":
        write_figure(report, out / "latency.png")
    (out / "deploy.md").write_text(markdown(report))
