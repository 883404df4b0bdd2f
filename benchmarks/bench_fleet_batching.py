"""MLServer adaptive batching on a server part many devices share (issue 14: throughput at 32
clients sharing one part ≥ 2.5× the one-client throughput, measured in the same run). Prints
ratios against references measured in the same run; never part of the test suite.
Run: python benchmarks/bench_fleet_batching.py [--seq-lens 128 16] [--seconds 20]

Setup: all-MiniLM-L6-v2 pruned as the default phone scenario's decision
(scenarios/minilm-phone.toml), its server part hosted TWICE by one MLServer process (token on,
127.0.0.1): model "batched" with adaptive batching (max_batch_size 32, max_batch_time 10 ms)
and model "unbatched" without. Clients are threads of this process, each with its own gRPC
connection and no link shaping (the server is the bottleneck), sending the device part's
crossings (computed once beforehand, so the clients do not compete with the server for the
cores by running device parts) back to back for a fixed time. For each sequence length and
model: 1 client, then 32; counted: requests ok, failed, lost (started, never accounted for),
throughput, p50 latency and the mean number of requests per forward pass the server reported.
Exit code 1 when a request failed or was lost.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench_runtime import TOKEN, load_level  # the same load loop as the runtime benchmark

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "minilm-phone.toml"
MODELS = ("unbatched", "batched")
CLIENTS = (1, 32)


def prepare(root: Path) -> tuple[Path, str]:
    """Prune the phone's decision into `root`; the folder and what its decision was."""
    from laimco.config import load_scenario
    from laimco.models.loading import load_model
    from laimco.models.pruned import prune_split_model, save_pruned
    from laimco.optimize import solve
    from laimco.profile import load_profile
    from laimco.runtime.deploy_uplink import decision_uplink

    scenario = load_scenario(SCENARIO)
    decision = solve(scenario)
    point = decision.point
    assert point is not None
    loaded = load_model("minilm")
    uplink = decision_uplink(decision, load_profile(scenario.model.profile), loaded.n_units)
    pruned = prune_split_model(loaded, point.split, point.rho_device, point.rho_server,
                               point.rule_device or "magnitude",
                               rule_server=point.rule_server or "magnitude")
    folder = save_pruned(pruned, root / "pruned", activation=uplink.quantizer,
                         coding=uplink.coding)
    return folder, (f"split {point.split}, ρ_d {point.rho_device:.3f} "
                    f"({point.rule_device}), ρ_s {point.rho_server:.3f}, "
                    f"{uplink.quantizer.bits}-bit uplink")


def crossings(folder: Path, url: str, seq_len: int, count: int = 16) -> list[dict]:
    """The device part's crossings of `count` held-out sentences padded to `seq_len`."""
    from laimco.data import heldout_sentences
    from laimco.runtime.client import DeviceClient

    with DeviceClient(folder, url, token=TOKEN, model_name="batched") as client:
        return [client.run_device(client.tokenize([text], seq_len, pad_to_max_length=True))[0]
                for text in heldout_sentences()[:count]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 16])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-batch-time-s", type=float, default=0.01)
    args = parser.parse_args()
    import torch

    from laimco.runtime.protocol import manifest_sha256
    from laimco.runtime.pruned_folder import read_checked_manifest
    from laimco.runtime.repository import HostedModel
    from laimco.runtime.server import start_models

    print(f"torch {torch.__version__}, {os.cpu_count()} cores; load average before start "
          f"{os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        folder, described = prepare(Path(tmp))
        sha = manifest_sha256(folder)
        uplink = read_checked_manifest(folder).uplink
        print(f"scenario {SCENARIO.relative_to(ROOT)}: {described}")
        hosted = [HostedModel(folder, "unbatched"),
                  HostedModel(folder, "batched", (), 32, args.max_batch_time_s)]
        rows = []
        with start_models(hosted, token=TOKEN) as server:
            print(f"server with both models started in {server.startup_s:.1f} s\n")
            for seq_len in args.seq_lens:
                sent = crossings(folder, server.url, seq_len)
                for model in MODELS:
                    load_level(server.url, sha, sent, 1, 2.0, model_name=model,
                               uplink=uplink)  # warm-up
                    for clients in CLIENTS:
                        row = load_level(server.url, sha, sent, clients, args.seconds,
                                         model_name=model, uplink=uplink)
                        rows.append({"seq_len": seq_len, "model": model, **row})
    return report(rows, args.max_batch_time_s)


def report(rows: list[dict], batch_time_s: float) -> int:
    """The table and the ratios; 1 when a request failed or was lost."""
    print("| tokens | model | clients | duration s | ok | failed | lost | throughput /s | "
          "p50 ms | requests per forward |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['seq_len']} | {r['model']} | {r['clients']} | {r['duration_s']:.1f} | "
              f"{r['ok']} | {r['failed']} | {r['lost']} | {r['throughput_per_s']:.2f} | "
              f"{r['p50_ms']:.1f} | {r['batch']:.2f} |")
    print()
    by = {(r["seq_len"], r["model"], r["clients"]): r["throughput_per_s"] for r in rows}
    for seq_len in sorted({r["seq_len"] for r in rows}, reverse=True):
        on = by[seq_len, "batched", 32] / by[seq_len, "batched", 1]
        off = by[seq_len, "unbatched", 32] / by[seq_len, "unbatched", 1]
        gain = by[seq_len, "batched", 32] / by[seq_len, "unbatched", 32]
        best = by[seq_len, "batched", 32] / max(by[seq_len, "batched", 1],
                                                by[seq_len, "unbatched", 1])
        print(f"- {seq_len} tokens: batched 32 clients / 1 client = **{on:.2f}×** (target ≥ "
              f"2.5×: {'met' if on >= 2.5 else 'missed'}); against the faster one-client "
              f"throughput of the two models (a lone request on the batched model waits up to "
              f"max_batch_time for company) {best:.2f}×; unbatched 32 / 1 = {off:.2f}×; "
              f"batched / unbatched at 32 clients = {gain:.2f}×")
    bad = sum(r["failed"] + r["lost"] for r in rows)
    print(f"- failed + lost requests over all levels: {bad} (target 0: "
          f"{'met' if bad == 0 else 'missed'}); max_batch_time {batch_time_s * 1e3:g} ms")
    print(f"- load average at the end {os.getloadavg()[0]:.2f} (other work shares the cores)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
