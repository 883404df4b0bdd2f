"""The numbers of a `laimco fleet-serve` run (docs/runtime.md, "Serving a fleet"): per device the
predicted latency and energy (its decision at its shares) next to the measured latency (median,
p95, over the measured window), the quality against the dense model (`deploy_measure`'s
metrics), the upload bytes against the prediction (`deploy_uplink.compare_upload`) and every
request's fate; per served part its devices, requests, throughput and the batch sizes the
server formed."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from laimco.fleet.solution import FleetSolution
    from laimco.models.split import Crossing
    from laimco.runtime.fleet_parts import FleetParts, ServedPart
    from laimco.runtime.fleet_serve import DeviceRun, FleetServeOptions

RETRIEVAL_K = 10


def request_counts(run: DeviceRun) -> dict[str, int]:
    """Every request the client sent (warm-up included) by its final status; `lost`: sent and
    never answered nor failed (a client that died mid-request)."""
    return {"sent": len(run.records),
            "ok": sum(r.status == "ok" for r in run.records),
            "failed": sum(r.status == "failed" for r in run.records),
            "lost": sum(r.status == "pending" for r in run.records),
            "failed_attempts": sum(a.code != "OK" for r in run.records for a in r.attempts)}


def _latency(run: DeviceRun) -> dict[str, float | None]:
    ok = [r for r in run.records[run.warmup:] if r.status == "ok"]
    if not ok:
        return {"median_s": None, "p95_s": None, "device_median_s": None,
                "uplink_median_s": None, "server_median_s": None}
    totals = [r.timings.total_s for r in ok]
    return {"median_s": float(statistics.median(totals)),
            "p95_s": float(np.percentile(totals, 95)),
            "device_median_s": float(statistics.median(r.timings.device_s for r in ok)),
            "uplink_median_s": float(statistics.median(r.timings.uplink_s for r in ok)),
            "server_median_s": float(statistics.median(r.timings.server_s for r in ok))}


def _quality(run: DeviceRun, dense: list[np.ndarray[Any, Any]],
             family: str) -> dict[str, float] | None:
    """The outputs that came back against the dense model's for the same inputs."""
    from laimco.runtime.deploy_measure import quality_metrics

    answered = sorted(run.rows)
    if not answered:
        return None
    network = np.concatenate([run.rows[i] for i in answered])
    reference = np.concatenate([dense[run.inputs[i]] for i in answered])
    return quality_metrics(reference, network, RETRIEVAL_K, family)


def device_row(solution: FleetSolution, run: DeviceRun, part: ServedPart | None,
               inputs: list[Crossing], dense: list[np.ndarray[Any, Any]], profile: Any,
               loaded: Any) -> dict[str, Any]:
    """One device's line of the report."""
    from laimco.runtime.deploy_uplink import compare_upload

    plan, point = run.plan, run.plan.point
    decision = solution.decisions[plan.index].to_json_dict()
    hidden = int(getattr(loaded.config, "hidden_size", 0) or getattr(loaded.config, "n_embd", 0))
    counts = request_counts(run)
    upload = None
    if plan.remote and counts["ok"]:
        upload = asdict(compare_upload(run.records, [inputs[i] for i in run.inputs], hidden,
                                       plan.uplink, profile, point.split, plan.rate_bps))
    fleet = solution.fleet
    return {
        "id": plan.device_id, "index": plan.index,
        "class": fleet.classes[int(fleet.class_index[plan.index])].name,
        "split": point.split, "rho_device": point.rho_device, "rho_server": point.rho_server,
        "rule_device": point.rule_device, "rule_server": point.rule_server,
        "activation_bits": plan.uplink.quantizer.bits if plan.remote else None,
        "bandwidth_hz": float(solution.bandwidth_hz[plan.index]),
        "server_cycles_per_s": float(solution.server_cycles_per_s[plan.index]),
        "power_w": point.power_w, "rate_bps": plan.rate_bps,
        "part": part.name if part else None,
        "predicted": {"latency_s": decision["latency_s"], "energy_j": decision["energy_j"],
                      "objective": point.objective},
        "measured": {"latency": _latency(run),
                     "quality": _quality(run, dense, loaded.family),
                     "upload": upload},
        "requests": counts, "client_error": run.error,
    }


def part_row(part: ServedPart, runs: list[DeviceRun], options: FleetServeOptions,
             window_s: float) -> dict[str, Any]:
    """One served model's line: its devices, the requests they got answered in the measured
    window, the throughput and the batch sizes seen (requests per forward pass, as the server
    reported them to each request)."""
    mine = [r for r in runs if r.plan.index in part.devices]
    ok = [rec for r in mine for rec in r.records[r.warmup:] if rec.status == "ok"]
    sizes = Counter(rec.timings.server_batch_requests for rec in ok)
    hosted = part.hosted(options.max_batch_size, options.max_batch_time_s)
    return {"name": part.name, "devices": [r.plan.device_id for r in mine],
            "folders": len(part.manifests),
            "batching": ({"max_batch_size": hosted.max_batch_size,
                          "max_batch_time_s": hosted.max_batch_time_s}
                         if hosted.max_batch_size > 1 else None),
            "requests": len(ok),
            "throughput_rps": len(ok) / window_s if window_s > 0 else 0.0,
            "batch_sizes": {str(size): count for size, count in sorted(sizes.items())},
            "mean_batch_requests": (float(np.mean([rec.timings.server_batch_requests
                                                   for rec in ok])) if ok else None)}


def fleet_report(solution: FleetSolution, parts: FleetParts, unserved: list[int],
                 runs: list[DeviceRun], inputs: list[Crossing],
                 dense: list[np.ndarray[Any, Any]], profile: Any, loaded: Any,
                 options: FleetServeOptions, window_s: float,
                 startup_s: float) -> dict[str, Any]:
    """The whole report (fleet_serve.json)."""
    devices = [device_row(solution, run, parts.part_of(run.plan), inputs, dense, profile,
                          loaded) for run in runs]
    totals = Counter[str]()
    for row in devices:
        totals.update(row["requests"])
    errors = [row["id"] for row in devices if row["client_error"]]
    clean = totals["failed"] == 0 and totals["lost"] == 0 and not errors
    return {
        "status": "ok" if clean else "some requests failed",
        "fleet": solution.fleet.name, "method": solution.method,
        "objective_kind": solution.objective_kind, "objective": solution.objective,
        "options": asdict(options), "model": loaded.name, "sequence_length": int(
            inputs[0]["attention_mask"].shape[1]) if "attention_mask" in inputs[0] else None,
        "window_s": window_s, "server_startup_s": startup_s,
        "requests": dict(totals), "clients_with_errors": errors,
        "pruned_folders": len(parts.folders),
        "parts": [part_row(part, runs, options, window_s) for part in parts.parts],
        "devices": devices,
        "unserved": [{"id": solution.fleet.ids[u],
                      "reasons": [reason.message for reason in solution.decisions[u].reasons]}
                     for u in unserved],
    }
