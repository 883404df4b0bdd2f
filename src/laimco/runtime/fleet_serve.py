"""`laimco fleet-serve`: a fleet's decisions served for real (docs/runtime.md, "Serving a fleet").

FleetSolution → every distinct decision pruned once (`fleet_parts`) → ONE MLServer process
hosting every distinct server part as its own model, with MLServer's adaptive batching on the
parts several devices share → one device client per device (a thread of this process, its own
gRPC channel, its own device part, its upload shaped to its allocated rate r_u through its own
`ShapedUplink`) sending held-out sentences for a duration or a count → per device predicted vs
measured latency, quality against the dense model (cosine, as `laimco deploy` measures it),
upload bytes against the prediction and every request's fate; per served part its requests,
throughput and the batch sizes the server formed (fleet_serve.json, devices.csv,
latency.png/.svg, fleet_serve.md, requests.jsonl, server.log).

Latencies are measured on this machine (its CPU for every device and the server, each device's
link shaped to its own rate), not emulated on the scenario's hardware as `laimco deploy` does:
what a fleet adds is the sharing — the queue and the batches at the one server.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from laimco.runtime.deploy_output import DeployError, staged_output
from laimco.runtime.fleet_parts import DevicePlan, FleetParts, build_parts

if TYPE_CHECKING:
    from laimco.fleet.solution import FleetSolution
    from laimco.models.split import Crossing
    from laimco.runtime.client import DeviceClient
    from laimco.runtime.request_log import RequestRecord

REPORT_FILE = "fleet_serve.json"


class FleetServeError(DeployError):
    """A fleet run that cannot start; the message names the option or key to change."""


@dataclass(frozen=True)
class FleetServeOptions:
    """What `laimco fleet-serve` runs."""

    duration_s: float = 60.0  # every client sends for this long ...
    requests_per_device: int | None = None  # ... or exactly this many requests
    devices: int | None = None  # the first K devices of the fleet (default: all)
    max_batch_size: int = 32  # MLServer adaptive batching on parts several devices share
    max_batch_time_s: float = 0.005
    shape_uplink: bool = True
    sentences: int = 64  # held-out inputs, sent round-robin
    calibration_sentences: int = 128  # for the Wanda rule
    warmup_requests: int = 1  # per device, before the measured window (counted in requests)
    overwrite: bool = False  # replace `out` when it holds an earlier fleet-serve run


def is_fleet_serve_output(folder: Path) -> bool:
    """Whether `folder` holds a report `laimco fleet-serve` wrote."""
    import json

    try:
        report = json.loads((folder / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"devices", "parts", "options"} <= set(report)


def check_devices(options: FleetServeOptions, n_devices: int) -> None:
    """FleetServeError unless --devices names 1..N of the fleet's devices."""
    if n_devices < 1:
        raise FleetServeError("the fleet has no devices: give a fleet file with at least one")
    if options.devices is not None and not 1 <= options.devices <= n_devices:
        raise FleetServeError(f"--devices {options.devices}: give 1..{n_devices} (the fleet's "
                              "devices; the first K are served)")


def check_fleet_options(options: FleetServeOptions, out: Path) -> None:
    """FleetServeError naming the option, before any fleet or model is loaded or any file
    written."""
    from laimco.data import calibration_sentences, heldout_sentences

    if options.devices is not None and options.devices < 1:
        raise FleetServeError(f"--devices {options.devices}: give at least 1 (the first K "
                              "devices of the fleet are served)")
    if options.requests_per_device is None and not options.duration_s > 0:
        raise FleetServeError(f"--duration-s {options.duration_s}: give a positive duration")
    if options.requests_per_device is not None and options.requests_per_device < 1:
        raise FleetServeError(f"--requests {options.requests_per_device}: give at least 1")
    if options.max_batch_size < 1 or options.max_batch_time_s < 0:
        raise FleetServeError("--max-batch-size must be at least 1 and --max-batch-time-s at "
                              "least 0")
    if not 2 <= options.sentences <= len(heldout_sentences()):
        raise FleetServeError(f"--sentences {options.sentences}: give 2.."
                              f"{len(heldout_sentences())} (the shipped held-out set)")
    if not 1 <= options.calibration_sentences <= len(calibration_sentences()):
        raise FleetServeError("--calibration-sentences: give 1.."
                              f"{len(calibration_sentences())}")
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise FleetServeError(f"--out {out}: {parent} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not is_fleet_serve_output(out):
            raise FleetServeError(f"--out {out} is not empty and was not written by `laimco "
                                  f"fleet-serve` (no {REPORT_FILE}): choose another folder")
        if not options.overwrite:
            raise FleetServeError(f"--out {out} holds an earlier fleet-serve run: choose "
                                  "another folder, or give --overwrite to replace it")


@dataclass
class DeviceRun:
    """What one device client did: every request's record (warm-up first), the held-out input
    each request sent, and the output rows of the successful ones."""

    plan: DevicePlan
    records: list[RequestRecord] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    rows: dict[int, np.ndarray[Any, Any]] = field(default_factory=dict)  # request → rows
    warmup: int = 0
    error: str | None = None  # a client-side failure that ended the client


def serve_fleet(solution: FleetSolution, out: str | Path,
                options: FleetServeOptions | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Serve the fleet's decisions and write the report into `out` (staged: `out` is complete
    or absent); the report as a dict."""
    options = options or FleetServeOptions()
    say = progress or (lambda message: None)
    out = Path(out)
    check_fleet_options(options, out)
    check_devices(options, solution.fleet.n_devices)
    devices = list(range(options.devices or solution.fleet.n_devices))
    loaded, profile = load_fleet_model(solution, devices)
    started = time.perf_counter()
    with staged_output(out, options.overwrite, is_fleet_serve_output) as staging:
        report = _run(solution, devices, loaded, profile, options, staging, say)
        report["elapsed_s"] = time.perf_counter() - started
        from laimco.runtime.fleet_report import write_fleet_report

        write_fleet_report(report, staging)
    return report


def load_fleet_model(solution: FleetSolution, devices: list[int]) -> tuple[Any, Any]:
    """The one model every served device's scenario names (its profile's built-in model), and
    the profile."""
    from laimco.models.loading import load_model
    from laimco.profile import load_profile
    from laimco.runtime.deploy import PROFILE_MODELS

    fleet = solution.fleet
    names = sorted({fleet.classes[int(fleet.class_index[u])].scenario.model.profile
                    for u in devices})
    if len(names) != 1:
        raise FleetServeError(f"the devices' scenarios use the profiles {', '.join(names)}: "
                              "fleet-serve hosts one model; give a fleet of one model")
    profile = load_profile(names[0])
    model = PROFILE_MODELS.get(profile.name)
    if model is None:
        raise FleetServeError(f"the profile {profile.name!r} is not a built-in model's "
                              f"({', '.join(PROFILE_MODELS)}): fleet-serve serves those")
    return load_model(model), profile


def _run(solution: FleetSolution, devices: list[int], loaded: Any, profile: Any,
         options: FleetServeOptions, staging: Path, say: Callable[[str], None]
         ) -> dict[str, Any]:
    """prune → one server → N clients → the report's numbers."""
    import torch

    from laimco.models.split import run_full
    from laimco.profile import DEFAULT_SEQ_LEN
    from laimco.runtime.deploy_measure import compared_rows, held_out_inputs
    from laimco.runtime.fleet_measure import fleet_report

    seq_len = profile.seq_len or DEFAULT_SEQ_LEN
    needs_wanda = any(p is not None and "wanda" in (p.rule_device, p.rule_server)
                      for p in (solution.decisions[u].point for u in devices))
    calibration = (held_out_inputs(loaded, options.calibration_sentences, seq_len,
                                   calibration=True) if needs_wanda else None)
    parts, unserved = build_parts(solution, devices, loaded, profile, staging / "parts",
                                  calibration, say)
    inputs = held_out_inputs(loaded, options.sentences, seq_len)
    with torch.no_grad():
        dense = [compared_rows(run_full(loaded, b), b, loaded.family) for b in inputs]
    say(f"{len(parts.devices)} devices, {len(parts.folders)} distinct pruned folders, "
        f"{len(parts.parts)} server parts")
    runs, window_s, startup_s = _serve(parts, inputs, options, staging, say)
    return fleet_report(solution, parts, unserved, runs, inputs, dense, profile, loaded,
                        options, window_s, startup_s)


def _serve(parts: FleetParts, inputs: list[Crossing], options: FleetServeOptions,
           staging: Path, say: Callable[[str], None]
           ) -> tuple[list[DeviceRun], float, float]:
    """Start the server (when any device has a server part), run every client; the runs, the
    measured window (s) and the server's start-up time."""
    from laimco.runtime.server import start_models

    token = secrets.token_urlsafe(24)
    hosted = [p.hosted(options.max_batch_size, options.max_batch_time_s) for p in parts.parts]
    serving = (start_models(hosted, token=token) if hosted else contextlib.nullcontext(None))
    with serving as server:
        url = server.url if server is not None else "127.0.0.1:9"
        say(f"server up with {len(hosted)} model(s); starting {len(parts.devices)} clients")
        runs, window_s = _run_clients(parts, url, token, inputs, options, staging)
        startup_s = server.startup_s if server is not None else 0.0
        if server is not None:
            with contextlib.suppress(OSError):
                shutil.copyfile(server.log, staging / "server.log")
    return runs, window_s, startup_s


def _run_clients(parts: FleetParts, url: str, token: str, inputs: list[Crossing],
                 options: FleetServeOptions, staging: Path) -> tuple[list[DeviceRun], float]:
    """One client per device, each in its own thread, all released together after their
    warm-up; the runs and the length of the measured window."""
    import torch

    from laimco.models.pruned import load_pruned
    from laimco.runtime.client import DeviceClient, RetryPolicy

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # N device parts in parallel threads: one core each, no spinning
    shared = {i: load_pruned(f.path, verify=False) for i, f in enumerate(parts.folders)}
    runs = [DeviceRun(plan) for plan in parts.devices]
    clients: list[DeviceClient] = []
    try:
        for plan in parts.devices:
            part = parts.part_of(plan)
            shaped = options.shape_uplink and plan.remote and plan.rate_bps > 0
            clients.append(DeviceClient(
                parts.folders[plan.folder].path, url, token=token,
                model_name=part.name if part else "laimco", check=plan.remote,
                uplink_rate_bps=plan.rate_bps if shaped else None,
                retry=RetryPolicy(max_attempts=5, timeout_s=120.0),
                pruned=shared[plan.folder]))
        start = threading.Barrier(len(runs) + 1)
        threads = [threading.Thread(target=_drive, args=(c, r, inputs, options, start),
                                    name=f"device-{r.plan.device_id}", daemon=True)
                   for c, r in zip(clients, runs, strict=True)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        window_s = time.perf_counter() - began
        with (staging / "requests.jsonl").open("w") as log:
            for client, run in zip(clients, runs, strict=True):
                for record in client.log:
                    log.write(json_line(run.plan.device_id, record))
    finally:
        for client in clients:
            client.close()
        torch.set_num_threads(threads_before)
    return runs, window_s


def json_line(device_id: str, record: RequestRecord) -> str:
    import json

    return json.dumps({"device": device_id, **record.as_dict()}) + "\n"


def _drive(client: DeviceClient, run: DeviceRun, inputs: list[Crossing],
           options: FleetServeOptions, start: threading.Barrier) -> None:
    """Warm up, wait for every client, then send inputs round-robin (each device from its own
    offset, so that a batch mixes different sentences) until the duration is over or the count
    is sent; any client-side exception ends this client and is recorded."""
    from laimco.runtime.deploy_measure import compared_rows

    def send(k: int) -> None:
        index = (k + run.plan.index) % len(inputs)
        batch = inputs[index]
        reply = client.infer_inputs(batch)
        run.records.append(reply.record)
        run.inputs.append(index)
        if reply.output is not None:
            run.rows[len(run.records) - 1] = compared_rows(reply.output, batch,
                                                           client.pruned.loaded.family)

    try:
        for k in range(options.warmup_requests):
            send(k)
        run.warmup = len(run.records)
    except Exception as err:  # recorded, and the barrier still released
        run.error = f"{type(err).__name__}: {err}"
    start.wait()
    if run.error is not None:
        return
    deadline = time.perf_counter() + options.duration_s
    k = 0
    try:
        while (k < options.requests_per_device if options.requests_per_device is not None
               else time.perf_counter() < deadline):
            send(k)
            k += 1
    except Exception as err:
        run.error = f"{type(err).__name__}: {err}"
