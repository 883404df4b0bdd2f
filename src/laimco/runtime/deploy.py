"""`laimco deploy`: the optimizer's decision run on real hardware (SPEC §5).

scenario → `laimco.optimize.solve` → `prune_split_model` (rule configurable) → `save_pruned` →
edge server (MLServer, loopback, random token) → held-out sentences through the real split
over gRPC, the upload shaped to the decision's rate r(p, g) → measured latency breakdown and
output quality next to the model's predictions (deploy.json, deploy.md, latency.png,
requests.jsonl).

**Emulating the scenario's device and server.** Compute runs on this machine's CPU, not on the
scenario's phone or on its share of an edge server. The rule: this CPU's speed is measured on
the *dense* part, Θ_host = F_dense / t_dense (FLOP/s, F from the model profile), and every
measured time of that part is scaled by Θ_host / Θ_scenario, with Θ_device = flops_per_cycle·f_d
(the decision's frequency) and Θ_server = flops_per_cycle·f_s:

    t_emulated = t_measured · Θ_host / Θ_scenario = (t_measured / t_dense) · F_dense / Θ_scenario.

The ratio t_pruned / t_dense is measured in pairs: after each request over the network, the
dense and the pruned parts (device, then server) run back to back in this process on the same
input, so both see the same load from whatever else runs on the machine. The emulated time is
the median of the paired values over requests. The times measured in the live run (the
client's device compute, the server process's compute) are reported next to it. For the dense
part this reproduces the model's F/Θ; for a pruned part it shows whatever speed-up pruning really
gave on a CPU (unstructured masks give none: the matrices stay dense, while the model assumes
(1 − ρ) of the prunable FLOPs). The uplink needs no scaling: it is measured through the shaped
link. Energies follow from the emulated times: e_compute = κ·f_d³·t_device (κ·C·f² with
C = t·f), e_uplink = p·t_uplink.
"""

from __future__ import annotations

import contextlib
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_MODELS = {"minilm-l6": "minilm"}  # built-in profile → built-in model to load


class DeployError(RuntimeError):
    """A deployment that cannot run; the message says what to change."""


@dataclass(frozen=True)
class DeployOptions:
    """What `laimco deploy` runs."""

    rule: str = "magnitude"
    strategy: str = "joint"
    model: str | None = None  # default: the model behind the scenario's profile
    sentences: int = 64
    calibration_sentences: int = 128
    shape_uplink: bool = True
    retrieval_k: int = 10
    warmup_requests: int = 2


class _PairedProbe:
    """Times the dense and the pruned parts back to back in this process on one input (which
    of the two goes first alternates between calls)."""

    def __init__(self, loaded: Any, split: int, pruned: Any) -> None:
        from laimco.models.split import split_model

        dense_device, dense_server = split_model(loaded, split)
        self.parts = {"dense": (dense_device, dense_server),
                      "pruned": (pruned.device, pruned.server)}
        self.calls = 0

    def time(self, batch: dict[str, Any]) -> dict[str, float]:
        import torch

        order = ("dense", "pruned") if self.calls % 2 == 0 else ("pruned", "dense")
        self.calls += 1
        times = {}
        with torch.no_grad():
            for kind in order:
                device, server = self.parts[kind]
                start = time.perf_counter()
                crossing = device(batch)
                middle = time.perf_counter()
                server(crossing)
                times[f"device_{kind}_s"] = middle - start
                times[f"server_{kind}_s"] = time.perf_counter() - middle
        return times


def _metrics(reference: Any, other: Any, k: int) -> dict[str, float]:
    from laimco.measure.metrics import (
        mean_cosine_similarity,
        output_distortion,
        retrieval_agreement_at_k,
    )

    out = {"output_distortion": output_distortion(reference, other),
           "mean_cosine": mean_cosine_similarity(reference, other)}
    n = int(reference.shape[0])
    if n >= 2:
        out[f"retrieval_agreement_at_{min(k, n - 1)}"] = retrieval_agreement_at_k(
            reference, other, min(k, n - 1))
    return out


def deploy(scenario_path: str | Path, out: str | Path,
           options: DeployOptions | None = None,
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole chain and write the report into `out`; the report as a dict."""
    import torch

    from laimco.config import load_scenario
    from laimco.data import calibration_sentences, heldout_sentences
    from laimco.experiments.text_batches import text_batches
    from laimco.models.loading import load_model
    from laimco.models.pruned import prune_split_model, save_pruned
    from laimco.models.split import run_full
    from laimco.optimize import solve
    from laimco.profile import load_profile
    from laimco.runtime.client import DeviceClient, RetryPolicy
    from laimco.runtime.deploy_report import write_report
    from laimco.runtime.server import start_server

    options = options or DeployOptions()
    say = progress or (lambda message: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scenario = load_scenario(scenario_path)
    decision = solve(scenario, options.strategy)
    report: dict[str, Any] = {"scenario": str(scenario_path), "options": asdict(options),
                              "decision": decision.to_json_dict()}
    if not decision.success:
        report["status"] = "infeasible"
        write_report(report, out)
        return report
    assert decision.split is not None and decision.rho_device is not None
    assert decision.rho_server is not None and decision.power_w is not None
    assert decision.freq_device_hz is not None and decision.freq_server_hz is not None
    assert decision.latency_s is not None and decision.energy_j is not None
    profile = load_profile(scenario.model.profile)
    model_name = options.model or PROFILE_MODELS.get(profile.name)
    if model_name is None:
        raise DeployError(f"the scenario's profile {profile.name!r} is not a built-in model's: "
                          "give the model directory it was made from (--model DIR)")
    say(f"decision: split {decision.split}, ρ_d {decision.rho_device:.3f}, "
        f"ρ_s {decision.rho_server:.3f}, p {decision.power_w:.4g} W")
    loaded = load_model(model_name)
    if loaded.n_units != profile.n_units:
        raise DeployError(f"{model_name} has {loaded.n_units} units but the profile "
                          f"{profile.name!r} has {profile.n_units}: give the matching model")
    split = decision.split
    seq_len = profile.seq_len or 128  # tokens per input the upload size S assumes
    calibration = None
    if options.rule == "wanda":
        calibration = list(text_batches(loaded, calibration_sentences()[
            :options.calibration_sentences], max_length=seq_len))
    say(f"pruning ({options.rule}) and saving")
    pruned = prune_split_model(loaded, split, decision.rho_device, decision.rho_server,
                               options.rule, calibration=calibration)  # type: ignore[arg-type]
    folder = save_pruned(pruned, out / "pruned", overwrite=True)

    sentences = heldout_sentences()[:options.sentences]
    if len(sentences) < 2:
        raise DeployError("deploy needs at least 2 held-out sentences (--sentences)")
    with torch.no_grad():
        batches = list(text_batches(loaded, sentences, 64, seq_len))
        dense = torch.cat([run_full(loaded, b) for b in batches]).numpy()
        local = torch.cat([pruned(b) for b in batches]).numpy()
    table = profile.split_table()
    flops = (float(table.flops_prunable_device[split] + table.flops_fixed_device[split]),
             float(table.flops_prunable_server[split] + table.flops_fixed_server[split]))
    probe = _PairedProbe(loaded, split, pruned)

    channel = scenario.channel.to_channel()
    gain = channel.design_gain()
    rate = float(channel.rate_bps(decision.power_w, gain))
    token = secrets.token_urlsafe(24)
    say("starting the edge server" if split < loaded.n_units else
        f"split {split} = L: the whole model runs on the device, no server")
    outputs: list[np.ndarray[Any, Any]] = []
    records = []
    probes: list[dict[str, float]] = []
    remote = split < loaded.n_units  # at s = L everything runs here: no server, no upload
    serving = (start_server(folder, token=token, repository=out / "server") if remote
               else contextlib.nullcontext(None))
    with serving as server:
        client = DeviceClient(folder, server.url if server else "127.0.0.1:9", token=token,
                              check=remote,
                              uplink_rate_bps=rate if options.shape_uplink and remote
                              else None,
                              retry=RetryPolicy(max_attempts=5, timeout_s=60.0))
        with client:
            for _ in range(options.warmup_requests):
                client.infer([sentences[0]], max_length=seq_len, pad_to_max_length=True)
                probe.time(client.tokenize([sentences[0]], seq_len, True))
            say(f"running {len(sentences)} held-out sentences through the split (each "
                "followed by the dense parts in-process, for the emulation)")
            for sentence in sentences:
                reply = client.infer([sentence], max_length=seq_len, pad_to_max_length=True)
                records.append(reply.record)
                outputs.append(reply.output if reply.output is not None
                               else np.full((1, dense.shape[1]), np.nan, np.float32))
                probes.append(probe.time(client.tokenize([sentence], seq_len, True)))
            client.connection.write_log(out / "requests.jsonl")
            summary = client.connection.summary()
        startup_s = server.startup_s if server else 0.0
    network = np.concatenate(outputs)
    ok = [r for r in records if r.status == "ok"]
    if not ok:
        raise DeployError(f"no request succeeded; see {out / 'requests.jsonl'}")
    good = np.array([r.status == "ok" for r in records])

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    measured = {"device": med([r.timings.device_s for r in ok]),
                "uplink": med([r.timings.uplink_s for r in ok]),
                "server": med([r.timings.server_s for r in ok]),
                "total": med([r.timings.total_s for r in ok])}
    paired = [(r.timings, p) for r, p in zip(records, probes, strict=True) if r.status == "ok"]
    theta_device = scenario.device.flops_per_cycle * decision.freq_device_hz
    theta_server = scenario.server.flops_per_cycle * decision.freq_server_hz
    host = {"device_dense_s": med([p["device_dense_s"] for _, p in paired]),
            "server_dense_s": med([p["server_dense_s"] for _, p in paired]),
            "device_pruned_in_process_s": med([p["device_pruned_s"] for _, p in paired]),
            "server_pruned_in_process_s": med([p["server_pruned_s"] for _, p in paired]),
            "device_flops": flops[0], "server_flops": flops[1]}
    host["device_flop_per_s"] = flops[0] / host["device_dense_s"] if split > 0 else 0.0
    host["server_flop_per_s"] = flops[1] / host["server_dense_s"] if remote else 0.0
    ratios = {side + "_pruned_over_dense": med([p[f"{side}_pruned_s"] / p[f"{side}_dense_s"]
                                                for _, p in paired]) if active else 0.0
              for side, active in (("device", split > 0), ("server", remote))}
    emulated = {
        "device": ratios["device_pruned_over_dense"] * flops[0] / theta_device
        if theta_device > 0 else 0.0,
        "uplink": measured["uplink"],
        "server": ratios["server_pruned_over_dense"] * flops[1] / theta_server
        if theta_server > 0 else 0.0,
        "downlink": decision.latency_s["downlink"]}
    emulated["total"] = sum(emulated.values())
    kappa = scenario.device.kappa
    energy_emulated = {"compute": kappa * decision.freq_device_hz ** 3 * emulated["device"],
                       "uplink": decision.power_w * emulated["uplink"]}
    energy_emulated["total"] = energy_emulated["compute"] + energy_emulated["uplink"]
    payload_bits = 8.0 * med([float(r.timings.payload_bytes) for r in ok])
    report.update({
        "status": "ok" if summary["failed"] == 0 else "some requests failed",
        "model": model_name, "rule": options.rule, "pruned_folder": str(folder),
        "sequence_length": seq_len, "n_sentences": len(sentences),
        "requests": summary, "server_startup_s": startup_s,
        "link": {"shaped": options.shape_uplink and remote, "rate_bps": rate,
                 "design_gain": gain, "payload_bits": payload_bits,
                 "predicted_upload_bits": float(table.upload_bits[split]),
                 "payload_over_rate_s": payload_bits / rate if rate > 0 else 0.0},
        "host": host,
        "emulation": {"rule": "t_emulated = (t_pruned / t_dense) · F_dense / Θ_scenario, i.e. "
                              "t_pruned · Θ_host / Θ_scenario with Θ_host = F_dense / t_dense "
                              "and Θ = flops_per_cycle · f; t_pruned / t_dense: both parts back "
                              "to back in one process on the same input after each request, "
                              "median over requests",
                      **ratios,
                      "theta_device_flop_per_s": theta_device,
                      "theta_server_flop_per_s": theta_server},
        "latency_s": {"predicted": decision.latency_s, "measured_host": measured,
                      "emulated": emulated},
        "energy_j": {"predicted": decision.energy_j, "emulated": energy_emulated},
        "quality": {
            "network_vs_dense": _metrics(dense[good], network[good], options.retrieval_k),
            "local_vs_dense": _metrics(dense, local, options.retrieval_k),
            "network_vs_local_max_abs": float(np.abs(network[good] - local[good]).max()),
            "predicted_objective": decision.objective,
        },
        "sparsity": {side: r.sparsity for side, r in pruned.reports.items()},
        "elapsed_s": time.perf_counter() - started,
    })
    write_report(report, out)
    return report
