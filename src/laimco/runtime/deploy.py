"""`laimco deploy`: the optimizer's decision run on real hardware (docs/design.md §7).

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
import json
import os
import re
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_MODELS = {"minilm-l6": "minilm"}  # built-in profile → built-in model to load
LANGUAGE_MODELS = ("gpt2", "llama")  # outputs are logits per token
IMAGE_SEED = 20240607  # the synthetic held-out / calibration images of a ViT deployment


class DeployError(RuntimeError):
    """A deployment that cannot run; the message says what to change."""


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


def decision_rules(decision: Any, options: DeployOptions) -> tuple[str, str]:
    """The rule each side is pruned with: --rule when given, else the decision's (a side with
    nothing to prune keeps magnitude, which then removes nothing)."""
    if options.rule is not None:
        return options.rule, options.rule
    return decision.rule_device or "magnitude", decision.rule_server or "magnitude"


def is_deploy_output(folder: Path) -> bool:
    """Whether `folder` is a report folder `laimco deploy` wrote (its deploy.json)."""
    try:
        report = json.loads((folder / "deploy.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"scenario", "decision", "options"} <= set(report)


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


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.deploy-"


def remove_stale_staging(out: Path) -> list[Path]:
    """Staging folders of `out` (.NAME.deploy-<pid>-…) whose process no longer runs, left by a
    SIGKILL; removed, and returned."""
    from laimco.runtime.repository import process_alive

    pattern = re.compile(rf"^{re.escape(_staging_prefix(out))}(\d+)-")
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for path in out.parent.iterdir():
            match = pattern.match(path.name)
            if match and path.is_dir() and not path.is_symlink() and not process_alive(
                    int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def staged_output(out: Path, replace: bool) -> Any:
    """A hidden sibling folder of `out` to write everything into; renamed to `out` when the
    block ends normally (replacing an earlier deployment only with `replace`), removed when it
    fails. So a failed or interrupted deploy never leaves a partial `out`."""
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(out)}{os.getpid()}-",
                                    dir=out.parent))
    try:
        yield staging
        if out.exists():
            if not (replace and (is_deploy_output(out) or not any(out.iterdir()))):
                raise DeployError(f"--out {out} appeared while deploying; it is left untouched")
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # the parents this call made, innermost first, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


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


def _positions(config: Any) -> int | None:
    value = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None)
    return int(value) if value else None


def held_out_inputs(loaded: Any, count: int, seq_len: int, *, calibration: bool = False
                    ) -> list[dict[str, Any]]:
    """One input per request, exactly as the device sends it: a text model's held-out (or
    calibration) sentences, each tokenized and padded to `seq_len` (the profile's sequence
    length, so the upload is the profile's S); for a ViT, `count` seeded N(0, 1) images (no
    image set is shipped; a deployment measures the split, not the task)."""
    import torch

    from laimco.data import calibration_sentences, heldout_sentences

    if loaded.family == "vit":
        config = loaded.config
        generator = torch.Generator().manual_seed(IMAGE_SEED + int(calibration))
        images = torch.randn(count, int(config.num_channels), int(config.image_size),
                             int(config.image_size), generator=generator)
        return [{"pixel_values": images[i:i + 1]} for i in range(count)]
    if loaded.tokenizer is None:
        raise DeployError(f"{loaded.name} has no tokenizer: deploy a text model from a folder "
                          "with its tokenizer files")
    texts = (calibration_sentences() if calibration else heldout_sentences())[:count]
    inputs = []
    for text in texts:
        tokens = loaded.tokenizer([text], padding="max_length", truncation=True,
                                  max_length=seq_len, return_tensors="pt")
        inputs.append({"input_ids": tokens["input_ids"],
                       "attention_mask": tokens["attention_mask"]})
    return inputs


def compared_rows(output: Any, batch: dict[str, Any], family: str) -> np.ndarray[Any, Any]:
    """What the quality metrics compare, one row per item: the output itself (embedding or
    [CLS] state, [B, H]), or for a language model the logits of the real tokens only
    ([tokens, V]: padding positions carry no prediction, and their logits differ between
    paddings)."""
    array = np.asarray(output, dtype=np.float32)
    if family in LANGUAGE_MODELS:
        mask = np.asarray(batch["attention_mask"]).astype(bool)
        return np.asarray(array[mask])
    return array


def _metrics(reference: Any, other: Any, k: int, family: str) -> dict[str, float]:
    from laimco.measure.metrics import (
        mean_cosine_similarity,
        output_distortion,
        retrieval_agreement_at_k,
        top1_agreement,
    )

    out = {"output_distortion": output_distortion(reference, other),
           "mean_cosine": mean_cosine_similarity(reference, other)}
    n = int(reference.shape[0])
    if family in LANGUAGE_MODELS:
        out["top1_agreement"] = top1_agreement(reference, other)
    elif n >= 2:
        out[f"retrieval_agreement_at_{min(k, n - 1)}"] = retrieval_agreement_at_k(
            reference, other, min(k, n - 1))
    return out


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
    say(f"decision: split {decision.split}, ρ_d {decision.rho_device:.3f}, "
        f"ρ_s {decision.rho_server:.3f}, p {decision.power_w:.4g} W")
    loaded = load_model(model_name)
    if loaded.n_units != profile.n_units:
        raise DeployError(f"{model_name} has {loaded.n_units} units but the profile "
                          f"{profile.name!r} has {profile.n_units}: give the matching model")
    seq_len = profile.seq_len or 128  # tokens per input the upload size S assumes
    positions = _positions(loaded.config)
    if loaded.family != "vit" and positions is not None and seq_len > positions:
        raise DeployError(f"the profile's sequence length {seq_len} is more than the "
                          f"{positions} positions of {model_name}; profile it at a shorter "
                          "--seq-len")
    with staged_output(out, options.overwrite) as staging:
        report = _run(scenario, decision, profile, loaded, model_name, seq_len, options,
                      report, staging, out, say)
        report["elapsed_s"] = time.perf_counter() - started
        from laimco.runtime.deploy_report import write_report

        write_report(report, staging)
    return report


def _run(scenario: Any, decision: Any, profile: Any, loaded: Any, model_name: str,
         seq_len: int, options: DeployOptions, report: dict[str, Any], staging: Path,
         out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """prune → save → serve → run the held-out inputs → the report's numbers (into staging;
    paths in the report name the final folder `out`)."""
    import torch

    from laimco.models.pruned import prune_split_model, save_pruned
    from laimco.models.split import run_full
    from laimco.runtime.client import DeviceClient, RetryPolicy
    from laimco.runtime.server import start_server

    assert decision.split is not None and decision.rho_device is not None
    assert decision.rho_server is not None and decision.power_w is not None
    assert decision.freq_device_hz is not None and decision.freq_server_hz is not None
    assert decision.latency_s is not None and decision.energy_j is not None
    split, family = decision.split, loaded.family
    rule_device, rule_server = decision_rules(decision, options)
    calibration = None
    if "wanda" in (rule_device, rule_server):
        calibration = held_out_inputs(loaded, options.calibration_sentences, seq_len,
                                      calibration=True)
    say(f"pruning ({rule_device} on the device, {rule_server} on the server) and saving")
    pruned = prune_split_model(loaded, split, decision.rho_device, decision.rho_server,
                               rule_device, calibration=calibration,  # type: ignore[arg-type]
                               rule_server=rule_server)  # type: ignore[arg-type]
    folder = save_pruned(pruned, staging / "pruned")

    inputs = held_out_inputs(loaded, options.sentences, seq_len)
    with torch.no_grad():
        dense = np.concatenate([compared_rows(run_full(loaded, b), b, family) for b in inputs])
        local = np.concatenate([compared_rows(pruned(b), b, family) for b in inputs])
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
    good_rows: list[np.ndarray[Any, Any]] = []
    records = []
    probes: list[dict[str, float]] = []
    remote = split < loaded.n_units  # at s = L everything runs here: no server, no upload
    serving = start_server(folder, token=token) if remote else contextlib.nullcontext(None)
    with serving as server:
        client = DeviceClient(folder, server.url if server else "127.0.0.1:9", token=token,
                              check=remote,
                              uplink_rate_bps=rate if options.shape_uplink and remote
                              else None,
                              retry=RetryPolicy(max_attempts=5, timeout_s=60.0))
        with client:
            for _ in range(options.warmup_requests):
                client.infer_inputs(inputs[0])
                probe.time(inputs[0])
            say(f"running {len(inputs)} held-out inputs through the split (each followed by "
                "the dense parts in-process, for the emulation)")
            for batch in inputs:
                reply = client.infer_inputs(batch)
                records.append(reply.record)
                n_rows = (int(batch["attention_mask"].sum()) if family in LANGUAGE_MODELS
                          else 1)
                rows = (compared_rows(reply.output, batch, family) if reply.output is not None
                        else np.full((n_rows, *dense.shape[1:]), np.nan, np.float32))
                outputs.append(rows)
                good_rows.append(np.full(rows.shape[0], reply.output is not None))
                probes.append(probe.time(batch))
            client.connection.write_log(staging / "requests.jsonl")
            summary = client.connection.summary()
        startup_s = server.startup_s if server else 0.0
        if server is not None:
            with contextlib.suppress(OSError):
                shutil.copyfile(server.log, staging / "server.log")
    network = np.concatenate(outputs)
    ok = [r for r in records if r.status == "ok"]
    if not ok:
        raise DeployError(f"no request succeeded: {records[0].error}")
    good = np.concatenate(good_rows)

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
        "model": model_name, "family": family, "rule": pruned.rule,
        "rule_server": pruned.server_rule,
        "pruned_folder": str(out / folder.name),
        "inputs": ("synthetic images (seeded N(0, 1) pixels)" if family == "vit" else
                   "held-out sentences"),
        "sequence_length": seq_len if family != "vit" else None, "n_sentences": len(inputs),
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
            "compared": ("logits of the real tokens" if family in LANGUAGE_MODELS else
                         "outputs"),
            "rows": int(dense.shape[0]),
            "network_vs_dense": _metrics(dense[good], network[good], options.retrieval_k,
                                         family),
            "local_vs_dense": _metrics(dense, local, options.retrieval_k, family),
            "network_vs_local_max_abs": float(np.abs(network[good] - local[good]).max()),
            "predicted_objective": decision.objective,
        },
        "sparsity": {side: r.sparsity for side, r in pruned.reports.items()},
    })
    return report
