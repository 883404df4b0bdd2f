"""`laimco deploy`: the optimizer's decision run on real hardware (docs/design.md §7).

scenario → `solve` → `prune_split_model` → `save_pruned` (the decision's activation bits) → edge
server (MLServer, loopback, random token) → held-out sentences over gRPC, the upload shaped to
rate r(p, g) → measured latency, upload bytes and quality next to the predictions (deploy.json,
deploy.md, latency.png, requests.jsonl).

**Emulating the scenario's device and server.** Compute runs on this machine's CPU, not on the
scenario's phone or on its share of an edge server. The rule: this CPU's speed is measured on
the *dense* part, Θ_host = F_dense / t_dense (FLOP/s, F from the model profile), and every
measured time of that part is scaled by Θ_host / Θ_scenario, with Θ_device = flops_per_cycle·f_d
(the decision's frequency) and Θ_server = flops_per_cycle·f_s:

    t_emulated = t_measured · Θ_host / Θ_scenario = (t_measured / t_dense) · F_dense / Θ_scenario.

The ratio t_pruned / t_dense is measured in pairs: after each request over the network, the
dense and the pruned parts (device, then server) run back to back in this process on the same
input, so both see the same load from whatever else runs on the machine; the emulated time is
their median over requests, reported next to the live run's own compute times. For the dense
part this reproduces the model's F/Θ; for a pruned part it shows whatever speed-up pruning really
gave on a CPU (unstructured masks give none: the matrices stay dense, while the model assumes
(1 − ρ) of the prunable FLOPs). The uplink needs no scaling: it is measured through the shaped
link. Energies follow from the emulated times: e_compute = κ·f_d³·t_device (κ·C·f² with
C = t·f), e_uplink = p·t_uplink.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from laimco.profile import DEFAULT_SEQ_LEN
from laimco.runtime.deploy_measure import (
    PairedProbe,
    PairedTimes,
    compared_rows,
    held_out_inputs,
    per_token_output,
    quality_metrics,
)
from laimco.runtime.deploy_output import (
    DeployError,
    is_deploy_output,
    remove_stale_staging,
    staged_output,
)
from laimco.runtime.deploy_uplink import (
    compare_upload,
    decision_uplink,
    predicted_upload_bits,
    run_pruned,
)

if TYPE_CHECKING:
    from laimco.config import Scenario
    from laimco.models.loading import LoadedModel
    from laimco.models.split import Crossing
    from laimco.optimize.decision import Decision, OperatingPoint
    from laimco.profile import ModelProfile, SplitTable
    from laimco.runtime.protocol import UplinkSettings

__all__ = ["DeployError", "DeployOptions", "check_options", "decision_rules", "deploy",
           "remove_stale_staging"]
PROFILE_MODELS = {"minilm-l6": "minilm"}  # built-in profile → built-in model to load

@dataclass(frozen=True)
class DeployOptions:
    """What `laimco deploy` runs."""

    rule: str | None = None  # default: the decision's rule of each side (magnitude in paper mode)
    strategy: str = "joint"
    model: str | None = None  # default: the model behind the scenario's profile
    sentences: int = 64
    calibration_sentences: int = 128
    shape_uplink: bool = True
    retrieval_k: int = 10
    warmup_requests: int = 2
    overwrite: bool = False  # replace `out` when it holds an earlier deployment


def decision_rules(point: OperatingPoint, options: DeployOptions) -> tuple[str, str]:
    """The rule each side is pruned with: --rule when given, else the decision's (a side with
    nothing to prune keeps magnitude, which then removes nothing)."""
    if options.rule is not None:
        return options.rule, options.rule
    return point.rule_device or "magnitude", point.rule_server or "magnitude"


def check_options(options: DeployOptions, out: Path) -> None:
    """DeployError (naming the option) for anything that would fail later: checked before any
    model is loaded or any file written."""
    from laimco.data import calibration_sentences, heldout_sentences
    from laimco.models.pruned import RULES
    from laimco.optimize import STRATEGIES

    if options.rule is not None and options.rule not in RULES:
        raise DeployError(f"--rule {options.rule!r} is not a pruning rule: choose one of "
                          f"{', '.join(RULES)}")
    if options.strategy not in STRATEGIES:
        raise DeployError(f"--strategy {options.strategy!r} is not a strategy: choose one of "
                          f"{', '.join(STRATEGIES)}")
    n_heldout, n_calibration = len(heldout_sentences()), len(calibration_sentences())
    if not 2 <= options.sentences <= n_heldout:
        raise DeployError(f"--sentences {options.sentences}: give 2..{n_heldout} (the shipped "
                          "held-out set; quality compares at least two outputs)")
    if not 1 <= options.calibration_sentences <= n_calibration:
        raise DeployError(f"--calibration-sentences {options.calibration_sentences}: give "
                          f"1..{n_calibration} (the shipped calibration set)")
    if options.retrieval_k < 1 or options.warmup_requests < 0:
        raise DeployError("retrieval_k must be at least 1 and warmup_requests at least 0")
    if options.model is not None and options.model != "minilm":
        from laimco.models.loading import ModelLoadError, read_config

        try:
            read_config(options.model)
        except ModelLoadError as err:
            raise DeployError(f"--model: {err}") from None
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise DeployError(f"--out {out}: {parent} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not options.overwrite:
            raise DeployError(f"--out {out} exists and is not empty: choose another folder, or "
                              "give --overwrite to replace an earlier deployment there")
        if not is_deploy_output(out):
            raise DeployError(f"--out {out} was not written by `laimco deploy` (no deploy.json "
                              "of it): --overwrite only replaces an earlier deployment; choose "
                              "another folder")


def _positions(config: Any) -> int | None:
    value = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None)
    return int(value) if value else None


def deploy(scenario_path: str | Path, out: str | Path,
           options: DeployOptions | None = None,
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole chain and write the report into `out`; the report as a dict.

    Every option is checked before any model is loaded or any file written (DeployError);
    everything is written into a hidden staging folder next to `out` and renamed to `out` at
    the end, so a failure never leaves a partial folder."""
    from laimco.config import load_scenario
    from laimco.models.loading import load_model
    from laimco.optimize import solve
    from laimco.profile import load_profile

    options = options or DeployOptions()
    say = progress or (lambda message: None)
    out = Path(out)
    started = time.perf_counter()
    check_options(options, out)
    scenario = load_scenario(scenario_path)
    profile = load_profile(scenario.model.profile)
    decision = solve(scenario, options.strategy)
    report: dict[str, Any] = {"scenario": str(scenario_path), "options": asdict(options),
                              "decision": decision.to_json_dict()}
    if not decision.success:
        report["status"] = "infeasible"
        from laimco.runtime.deploy_report import write_report

        with staged_output(out, options.overwrite) as staging:
            write_report(report, staging)
        return report
    model_name = options.model or PROFILE_MODELS.get(profile.name)
    if model_name is None:
        raise DeployError(f"the scenario's profile {profile.name!r} is not a built-in model's: "
                          "give the model directory it was made from (--model DIR)")
    point = _optimal(decision)
    say(f"decision: split {point.split}, ρ_d {point.rho_device:.3f}, "
        f"ρ_s {point.rho_server:.3f}, p {point.power_w:.4g} W")
    loaded = load_model(model_name)
    if loaded.n_units != profile.n_units or profile.family not in (None, loaded.family):
        raise DeployError(f"{model_name} ({loaded.family}) has {loaded.n_units} units but the "
                          f"profile {profile.name!r} ({profile.family or 'family not given'}) "
                          f"has {profile.n_units}: give the matching model")
    seq_len = profile.seq_len or DEFAULT_SEQ_LEN  # tokens per input the upload size S assumes
    positions = _positions(loaded.config)
    if loaded.adapter.takes_text and positions is not None and seq_len > positions:
        raise DeployError(f"the profile's sequence length {seq_len} is more than the "
                          f"{positions} positions of {model_name}; profile it at a shorter "
                          "--seq-len")
    uplink = decision_uplink(decision, profile, loaded.n_units)
    with staged_output(out, options.overwrite) as staging:
        report = _run(scenario, decision, profile, loaded, model_name, seq_len, uplink,
                      options, report, staging, out, say)
        report["elapsed_s"] = time.perf_counter() - started
        from laimco.runtime.deploy_report import write_report

        write_report(report, staging)
    return report


def _optimal(decision: Decision) -> OperatingPoint:
    """The operating point of an optimal decision (`deploy` returns on an infeasible one)."""
    if decision.point is None:
        raise DeployError("the decision is infeasible: there is nothing to deploy")
    return decision.point


@dataclass
class _LiveRun:
    """What the requests over the network gave: per request its record, output rows (NaN for a
    failed request) and the paired in-process timing."""

    records: list[Any]
    rows: list[np.ndarray[Any, Any]]
    good: list[np.ndarray[Any, Any]]
    probes: list[PairedTimes]
    summary: dict[str, int]
    startup_s: float


def _run(scenario: Scenario, decision: Decision, profile: ModelProfile, loaded: LoadedModel,
         model_name: str, seq_len: int, uplink: UplinkSettings, options: DeployOptions,
         report: dict[str, Any], staging: Path, out: Path,
         say: Callable[[str], None]) -> dict[str, Any]:
    """prune → save → serve → run the held-out inputs → the report's numbers (into staging;
    paths in the report name the final folder `out`)."""
    import torch

    from laimco.models.pruned import prune_split_model, save_pruned
    from laimco.models.split import run_full

    point = _optimal(decision)
    split, family = point.split, loaded.family
    rule_device, rule_server = decision_rules(point, options)
    calibration = None
    if "wanda" in (rule_device, rule_server):
        calibration = held_out_inputs(loaded, options.calibration_sentences, seq_len,
                                      calibration=True)
    say(f"pruning ({rule_device} on the device, {rule_server} on the server) and saving")
    pruned = prune_split_model(loaded, split, point.rho_device, point.rho_server,
                               rule_device, calibration=calibration,  # type: ignore[arg-type]
                               rule_server=rule_server)  # type: ignore[arg-type]
    folder = save_pruned(pruned, staging / "pruned", activation=uplink.quantizer,
                         coding=uplink.coding)

    inputs = held_out_inputs(loaded, options.sentences, seq_len)
    with torch.no_grad():
        dense = np.concatenate([compared_rows(run_full(loaded, b), b, family) for b in inputs])
        local = np.concatenate([compared_rows(run_pruned(pruned, b, uplink), b, family)
                                for b in inputs])
    table = profile.split_table()
    channel = scenario.channel.to_channel()
    gain = channel.design_gain()
    rate = float(channel.rate_bps(point.power_w, gain))
    remote = split < loaded.n_units  # at s = L everything runs here: no server, no upload
    say("starting the edge server" if remote else
        f"split {split} = L: the whole model runs on the device, no server")
    live = _serve_and_send(folder, inputs, PairedProbe(loaded, split, pruned), dense.shape[1:],
                           family, rate if options.shape_uplink and remote else None, options,
                           staging, say)
    network, good = np.concatenate(live.rows), np.concatenate(live.good)
    payload_bits = 8.0 * float(statistics.median(
        [float(r.timings.payload_bytes) for r in live.records if r.status == "ok"]))
    hidden = int(getattr(loaded.config, "hidden_size", 0) or getattr(loaded.config, "n_embd", 0))
    upload = (compare_upload(live.records, inputs, hidden, uplink, profile, split, rate)
              if remote else None)
    report.update({
        "status": "ok" if live.summary["failed"] == 0 else "some requests failed",
        "model": model_name, "family": family, "rule": pruned.rule,
        "rule_server": pruned.server_rule,
        "pruned_folder": str(out / folder.name),
        "inputs": ("held-out sentences" if loaded.adapter.takes_text else
                   "synthetic images (seeded N(0, 1) pixels)"),
        "sequence_length": seq_len if loaded.adapter.takes_text else None,
        "n_sentences": len(inputs),
        "requests": live.summary, "server_startup_s": live.startup_s,
        "link": {"shaped": options.shape_uplink and remote, "rate_bps": rate,
                 "design_gain": gain, "payload_bits": payload_bits,
                 "predicted_upload_bits": predicted_upload_bits(decision, table, split),
                 "payload_over_rate_s": payload_bits / rate if rate > 0 else 0.0,
                 "uplink": None if upload is None else upload.as_dict()},
        **_emulation(scenario, decision, table, live, remote),
        "quality": {
            "compared": ("logits of the real tokens" if loaded.adapter.output_per_token else
                         "outputs"),
            "rows": int(dense.shape[0]),
            "network_vs_dense": quality_metrics(dense[good], network[good],
                                                options.retrieval_k, family),
            "local_vs_dense": quality_metrics(dense, local, options.retrieval_k, family),
            "network_vs_local_max_abs": float(np.abs(network[good] - local[good]).max()),
            "predicted_objective": point.objective,
        },
        "sparsity": {side: r.sparsity for side, r in pruned.reports.items()},
    })
    return report


def _serve_and_send(folder: Path, inputs: list[Crossing], probe: PairedProbe,
                    row_shape: tuple[int, ...], family: str, shaped_rate_bps: float | None,
                    options: DeployOptions, staging: Path,
                    say: Callable[[str], None]) -> _LiveRun:
    """Start the edge server (unless the split is L), send every input through the device
    client, and after each request time the dense and pruned parts in this process."""
    from laimco.runtime.client import DeviceClient, RetryPolicy
    from laimco.runtime.server import start_server

    remote = probe.split < probe.n_units
    token = secrets.token_urlsafe(24)
    live = _LiveRun(records=[], rows=[], good=[], probes=[], summary={}, startup_s=0.0)
    serving = start_server(folder, token=token) if remote else contextlib.nullcontext(None)
    with serving as server:
        client = DeviceClient(folder, server.url if server else "127.0.0.1:9", token=token,
                              check=remote, uplink_rate_bps=shaped_rate_bps,
                              retry=RetryPolicy(max_attempts=5, timeout_s=60.0))
        with client:
            for _ in range(options.warmup_requests):
                client.infer_inputs(inputs[0])
                probe.time(inputs[0])
            say(f"running {len(inputs)} held-out inputs through the split (each followed by "
                "the dense parts in-process, for the emulation)")
            for batch in inputs:
                reply = client.infer_inputs(batch)
                live.records.append(reply.record)
                n_rows = (int(batch["attention_mask"].sum()) if per_token_output(family)
                          else 1)
                rows = (compared_rows(reply.output, batch, family) if reply.output is not None
                        else np.full((n_rows, *row_shape), np.nan, np.float32))
                live.rows.append(rows)
                live.good.append(np.full(rows.shape[0], reply.output is not None))
                live.probes.append(probe.time(batch))
            client.connection.write_log(staging / "requests.jsonl")
            live.summary = client.connection.summary()
        if server is not None:
            live.startup_s = server.startup_s
            with contextlib.suppress(OSError):
                shutil.copyfile(server.log, staging / "server.log")
    if not any(r.status == "ok" for r in live.records):
        raise DeployError(f"no request succeeded: {live.records[0].error}")
    return live


def _emulation(scenario: Scenario, decision: Decision, table: SplitTable, live: _LiveRun,
               remote: bool) -> dict[str, Any]:
    """The measured host times, the paired pruned/dense ratios and the emulated latency and
    energy on the scenario's device and server (the rule in the module docstring)."""
    point = _optimal(decision)
    predicted = decision.to_json_dict()  # the latency and energy parts as the report shows them
    split = point.split
    flops = (float(table.flops_prunable_device[split] + table.flops_fixed_device[split]),
             float(table.flops_prunable_server[split] + table.flops_fixed_server[split]))

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    ok = [r for r in live.records if r.status == "ok"]
    measured = {"device": med([r.timings.device_s for r in ok]),
                "uplink": med([r.timings.uplink_s for r in ok]),
                "server": med([r.timings.server_s for r in ok]),
                "total": med([r.timings.total_s for r in ok])}
    paired = [p for r, p in zip(live.records, live.probes, strict=True) if r.status == "ok"]
    theta_device = scenario.device.flops_per_cycle * point.freq_device_hz
    theta_server = scenario.server.flops_per_cycle * point.freq_server_hz
    host = {"device_dense_s": med([p.device_dense_s for p in paired]),
            "server_dense_s": med([p.server_dense_s for p in paired]),
            "device_pruned_in_process_s": med([p.device_pruned_s for p in paired]),
            "server_pruned_in_process_s": med([p.server_pruned_s for p in paired]),
            "device_flops": flops[0], "server_flops": flops[1]}
    host["device_flop_per_s"] = flops[0] / host["device_dense_s"] if split > 0 else 0.0
    host["server_flop_per_s"] = flops[1] / host["server_dense_s"] if remote else 0.0
    ratios = {side + "_pruned_over_dense": med([p.pruned_over_dense(side) for p in paired])
              if active else 0.0 for side, active in (("device", split > 0), ("server", remote))}
    emulated = {
        "device": ratios["device_pruned_over_dense"] * flops[0] / theta_device
        if theta_device > 0 else 0.0,
        "uplink": measured["uplink"],
        "server": ratios["server_pruned_over_dense"] * flops[1] / theta_server
        if theta_server > 0 else 0.0,
        "downlink": point.costs.latency_downlink_s}
    emulated["total"] = sum(emulated.values())
    energy_emulated = {"compute": scenario.device.kappa * point.freq_device_hz ** 3
                       * emulated["device"], "uplink": point.power_w * emulated["uplink"]}
    energy_emulated["total"] = energy_emulated["compute"] + energy_emulated["uplink"]
    return {
        "host": host,
        "emulation": {"rule": "t_emulated = (t_pruned / t_dense) · F_dense / Θ_scenario, i.e. "
                              "t_pruned · Θ_host / Θ_scenario with Θ_host = F_dense / t_dense "
                              "and Θ = flops_per_cycle · f; t_pruned / t_dense: both parts back "
                              "to back in one process on the same input after each request, "
                              "median over requests",
                      **ratios,
                      "theta_device_flop_per_s": theta_device,
                      "theta_server_flop_per_s": theta_server},
        "latency_s": {"predicted": predicted["latency_s"], "measured_host": measured,
                      "emulated": emulated},
        "energy_j": {"predicted": predicted["energy_j"], "emulated": energy_emulated},
    }
