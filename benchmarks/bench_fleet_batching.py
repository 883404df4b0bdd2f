"""MLServer adaptive batching on a server part many devices share (issue 14: throughput at 32
clients sharing one part ≥ 2.5× the one-client throughput, measured in the same run). Prints
ratios against references measured in the same run; never part of the test suite.
Run: python benchmarks/bench_fleet_batching.py [--seq-lens 128 16] [--seconds 20]

Setup: all-MiniLM-L6-v2 pruned as the default phone scenario's decision
(scenarios/minilm-phone.toml), its server part hosted three times by one MLServer process (token on,
127.0.0.1): model "batched" with adaptive batching (max_batch_size 32, max_batch_time 10 ms),
model "unbatched" without, and model "batched-all" as "batched" but running every position
sent (`cut_padding=False`: no cut of the positions after the last real token,
laimco.runtime.padding). Clients are threads of this process, each with its own gRPC
connection and no link shaping (the server is the bottleneck), sending the device part's
crossings (computed once beforehand, so the clients do not compete with the server for the
cores by running device parts) back to back for a fixed time. For each sequence length and
model: 1 client, then 32; counted: requests ok, failed, lost (started, never accounted for),
throughput, p50 latency, the mean number of requests per forward pass the server reported and
the server's own median forward time per pass. Exit code 1 when a request failed or was lost.

Sequence lengths: `laimco fleet-serve` pads every sentence to the profile's sequence length
(128) and its devices send the rows of the real tokens only (11–53 for the held-out sentences,
median 16) with the 128-long mask; at 16 the sentences are cut to 16 tokens. The real tokens of
the 16 sentences sent are printed per length.

Forward reference (the most batching can give): after the load levels of a length, a fresh
process of the same interpreter and environment as the server (torch's default thread count,
the same niceness) loads the same pruned folder's server part and runs exactly what the server
runs for these crossings — dequantized, put back into (batch, T, H), positions cut as the
server cuts them (laimco.runtime.padding), concatenated — at batch 1, k (the mean requests per
forward the server reported at 32 clients, rounded) and 32, batch sizes interleaved in rounds
so that a burst of load hits all alike; median forward time per request. Also without the cut
(all T positions). Printed next to the server's ratios, with the one-client request time
split into the forward pass and everything else.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
from bench_runtime import TOKEN, load_level  # the same load loop as the runtime benchmark

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "minilm-phone.toml"
MODELS = ("unbatched", "batched", "batched-all")
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


def real_tokens(sent: list[dict]) -> str:
    """min / median / max real tokens of the crossings (their masks) and T."""
    counts = [int(np.asarray(c["attention_mask"]).sum()) for c in sent]
    return (f"{min(counts)} / {int(np.median(counts))} / {max(counts)} real tokens of "
            f"T = {int(np.asarray(sent[0]['attention_mask']).shape[1])}")


def forward_reference(folder: str, sent: list[dict], batch_sizes: list[int], cut: bool,
                      rounds: int, threads: int | None) -> dict:
    """In a fresh process: the server part's forward (as ServerSubModel runs it) per request, ms,
    median over `rounds` rounds of every batch size, at `threads` torch threads (None: torch's
    default, as in the server); and the thread count."""
    import time

    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    from laimco.models.pruned import load_pruned
    from laimco.runtime.padding import cut_to_positions, used_positions
    from laimco.runtime.protocol import MASK
    from laimco.runtime.repository import folder_interface
    from laimco.runtime.uplink_wire import hidden_from_tensors

    interface = folder_interface(folder)
    server = load_pruned(folder, verify=False).server.eval()
    arrays = [{"hidden_states": hidden_from_tensors(c, interface), MASK: c[MASK]}
              if interface.quantized else c for c in sent]
    times: dict[int, list[float]] = {k: [] for k in batch_sizes}
    with torch.no_grad():
        for r in range(rounds + 2):  # 2 warm-up rounds
            for k in batch_sizes:
                for j in range(4 if k == 1 else 1):  # batch 1: 4 sentences a round
                    start = (r * 5 + j) % len(arrays)
                    members = [arrays[(start + i) % len(arrays)] for i in range(k)]
                    if cut:
                        keep = used_positions([m[MASK] for m in members])
                        members = [cut_to_positions(m, keep) for m in members]
                    merged = {name: torch.from_numpy(np.concatenate([m[name] for m in members]))
                              for name in members[0]}
                    t0 = time.perf_counter()
                    server(merged)
                    if r >= 2:
                        times[k].append((time.perf_counter() - t0) / k * 1e3)
    return {"threads": torch.get_num_threads(),
            "ms_per_request": {k: float(np.median(v)) for k, v in times.items()}}


def reference_in_fresh_process(folder: Path, sent: list[dict], batch_sizes: list[int],
                               rounds: int) -> dict:
    """forward_reference with and without the cut, at torch's default thread count (the
    server's) and at one thread, each in a spawned process."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    out: dict = {"load": os.getloadavg()[0]}
    for cut in (True, False):
        for threads in (None, 1):
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                out["cut" if cut else "all", threads] = pool.submit(
                    forward_reference, str(folder), sent, batch_sizes, cut, rounds,
                    threads).result()
    out["load"] = max(out["load"], os.getloadavg()[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 16])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-batch-time-s", type=float, default=0.01)
    parser.add_argument("--reference-rounds", type=int, default=8)
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
                  HostedModel(folder, "batched", (), 32, args.max_batch_time_s),
                  HostedModel(folder, "batched-all", (), 32, args.max_batch_time_s,
                              cut_padding=False)]
        rows, references = [], {}
        with start_models(hosted, token=TOKEN) as server:
            print(f"server with the three models started in {server.startup_s:.1f} s\n")
            for seq_len in args.seq_lens:
                sent = crossings(folder, server.url, seq_len)
                print(f"- {seq_len} tokens: {real_tokens(sent)}")
                for model in MODELS:
                    load_level(server.url, sha, sent, 1, 2.0, model_name=model,
                               uplink=uplink)  # warm-up
                    for clients in CLIENTS:
                        row = load_level(server.url, sha, sent, clients, args.seconds,
                                         model_name=model, uplink=uplink)
                        rows.append({"seq_len": seq_len, "model": model,
                                     "load": os.getloadavg()[0], **row})
                k = max(1, round(next(r["batch"] for r in rows if r["seq_len"] == seq_len
                                      and r["model"] == "batched" and r["clients"] == 32)))
                references[seq_len] = reference_in_fresh_process(
                    folder, sent, sorted({1, k, 32}), args.reference_rounds)
                references[seq_len]["k"] = k
        print()
    return report(rows, references, args.max_batch_time_s)


def report(rows: list[dict], references: dict[int, dict], batch_time_s: float) -> int:
    """The tables and the ratios; 1 when a request failed or was lost."""
    print("| tokens | model | clients | duration s | ok | failed | lost | throughput /s | "
          "p50 ms | requests per forward | server forward ms (median) | load average |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['seq_len']} | {r['model']} | {r['clients']} | {r['duration_s']:.1f} | "
              f"{r['ok']} | {r['failed']} | {r['lost']} | {r['throughput_per_s']:.2f} | "
              f"{r['p50_ms']:.1f} | {r['batch']:.2f} | {r['compute_ms']:.1f} | "
              f"{r['load']:.1f} |")
    print()
    reference_table(rows, references)
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
              f"batched / unbatched at 32 clients = {gain:.2f}×; every position run "
              f"(batched-all) 32 / 1 = "
              f"{by[seq_len, 'batched-all', 32] / by[seq_len, 'batched-all', 1]:.2f}×, "
              f"batched / batched-all at 32 clients = "
              f"{by[seq_len, 'batched', 32] / by[seq_len, 'batched-all', 32]:.2f}×")
    bound_lines(rows, references)
    bad = sum(r["failed"] + r["lost"] for r in rows)
    print(f"- failed + lost requests over all levels: {bad} (target 0: "
          f"{'met' if bad == 0 else 'missed'}); max_batch_time {batch_time_s * 1e3:g} ms")
    print(f"- load average at the end {os.getloadavg()[0]:.2f} (other work shares the cores)")
    return 1 if bad else 0


def bound_lines(rows: list[dict], references: dict[int, dict]) -> None:
    """Per length and way of running the positions: the forward pass per request at batch 1
    and at the server's batch size, in the server (as it timed its passes) and in a fresh
    process; the one-client request split into forward and everything else."""
    row = {(r["seq_len"], r["model"], r["clients"]): r for r in rows}
    for seq_len in sorted(references, reverse=True):
        ref, k = references[seq_len], references[seq_len]["k"]
        for mode, model, label in (("cut", "batched", "positions cut"),
                                   ("all", "batched-all", "every position")):
            one, many = row[seq_len, model, 1], row[seq_len, model, 32]
            alone = row[seq_len, "unbatched", 1] if mode == "cut" else None
            fresh, single = (ref[mode, None]["ms_per_request"],
                             ref[mode, 1]["ms_per_request"])
            a, b = one["compute_per_request_ms"], many["compute_per_request_ms"]
            ceiling = 1e3 / b / one["throughput_per_s"]
            print(f"- {seq_len} tokens, {label} ({model}): forward per request in the server "
                  f"{a:.1f} ms alone, {b:.1f} ms in its passes of {many['batch']:.1f} at 32 "
                  f"clients: **{a / b:.2f}×**; in a fresh process batch 1 / {k} / 32 = "
                  f"{fresh[1]:.1f} / {fresh[k]:.1f} / {fresh[32]:.1f} ms "
                  f"({fresh[1] / fresh[k]:.2f}×, {fresh[1] / fresh[32]:.2f}×), at one thread "
                  f"{single[1]:.1f} / {single[k]:.1f} / {single[32]:.1f} ms "
                  f"({single[1] / single[k]:.2f}×, {single[1] / single[32]:.2f}×). One client: "
                  f"p50 {one['p50_ms']:.1f} ms = forward {a:.1f} + everything else "
                  f"{one['p50_ms'] - a:.1f} (waiting up to max_batch_time included)"
                  + ("" if alone is None else
                     f"; unbatched p50 {alone['p50_ms']:.1f} = forward "
                     f"{alone['compute_per_request_ms']:.1f} + everything else "
                     f"{alone['p50_ms'] - alone['compute_per_request_ms']:.1f}")
                  + f". With nothing but the batched forward left per request, 32 / 1 "
                  f"would be at most {ceiling:.2f}×")


def reference_table(rows: list[dict], references: dict[int, dict]) -> None:
    """The forward-alone reference per length and batch size, next to the server's numbers."""
    print("| tokens | positions run | torch threads | batch | forward ms per request | "
          "batch 1 / this | load average |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for seq_len in sorted(references, reverse=True):
        ref = references[seq_len]
        for (mode, label), threads in itertools.product(
                (("cut", "to the last real token (the server)"), ("all", f"all {seq_len}")),
                (None, 1)):
            one = ref[mode, threads]
            ms = one["ms_per_request"]
            for k, value in sorted(ms.items()):
                print(f"| {seq_len} | {label} | {one['threads']} | {k} | {value:.2f} | "
                      f"{ms[1] / value:.2f}× | {ref['load']:.1f} |")
    print()


if __name__ == "__main__":
    raise SystemExit(main())
