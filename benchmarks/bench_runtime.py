"""Runtime benchmarks (issue: co-inference runtime). Prints ratios against references measured
in the same run; never part of the test suite. Run: python benchmarks/bench_runtime.py

Setup: all-MiniLM-L6-v2 cut and pruned as the default scenario's decision
(scenarios/minilm-phone.toml), served by one MLServer process on 127.0.0.1 (token on), clients
in this process.

1. **Load**: C = 1, 4, 16, 32 concurrent clients, each with its own gRPC connection, send
   MiniLM activations (1×128×384 FP32 + mask) back to back for a fixed time (60 s at C = 32).
   The activations are computed once beforehand: the clients share this machine's cores with
   the server, so running the device part in every client would measure CPU contention, not
   the server. Counted: requests started, ok, failed, lost (started but never accounted for);
   throughput and p50/p99 latency per level. Target: zero failed or lost.
2. **Overhead**: sequential end-to-end requests (tokenize, device part, upload, server part,
   answer) at sequence length 128; overhead = total − tokenize − device compute − server
   compute. Reference: a bare gRPC echo of the same two tensors (a grpc.aio server, same
   protocol messages, same tritonclient client, returns the activation) in its own process,
   one echo after each request (alternating, so a burst of load on the shared host hits
   both), each echo sent right after the same device forward as the request it follows (not
   timed), so both leave the client in the same state. Target: overhead ≤ 2× echo.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "minilm-phone.toml"
LEVELS = (1, 4, 16, 32)
TOKEN = "bench-token"


# ---------------------------------------------------------------- bare gRPC echo (reference)

def echo_server(port: int) -> None:
    """A gRPC server of the same protocol that returns the first input tensor as output."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    class Echo(service_pb2_grpc.GRPCInferenceServiceServicer):
        async def ServerReady(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            return service_pb2.ServerReadyResponse(ready=True)

        async def ModelInfer(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            response = service_pb2.ModelInferResponse(model_name=request.model_name,
                                                      id=request.id)
            first = request.inputs[0]
            response.outputs.add(name="output", datatype=first.datatype, shape=first.shape)
            response.raw_output_contents.append(request.raw_input_contents[0])
            return response

    async def run() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                          ("grpc.max_send_message_length", 64 << 20)])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


def start_echo() -> tuple[subprocess.Popen[bytes], str]:
    import tritonclient.grpc as grpcclient

    from laimco.runtime.server import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--echo-server", str(port)],
                               start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"127.0.0.1:{port}"
    client = grpcclient.InferenceServerClient(url)
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.is_server_ready(client_timeout=1.0):
                break
        except Exception:  # not up yet
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)
    client.close()
    return process, url


class EchoClient:
    """A stock tritonclient client of the echo server; `time` sends one request of the given
    tensors (built the way laimco's client builds them) and returns its round-trip time."""

    def __init__(self, url: str) -> None:
        import tritonclient.grpc as grpcclient

        self._grpcclient = grpcclient
        self._client = grpcclient.InferenceServerClient(url)

    def time(self, crossing: dict[str, np.ndarray]) -> float:
        grpcclient = self._grpcclient
        start = time.perf_counter()
        inputs = []
        for name, array in crossing.items():
            tensor = grpcclient.InferInput(name, list(array.shape),
                                           "FP32" if array.dtype == np.float32 else "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = self._client.infer("echo", inputs)
        result.as_numpy("output")
        return time.perf_counter() - start

    def close(self) -> None:
        self._client.close()


# ---------------------------------------------------------------- load test

def load_level(url: str, sha: str, crossings: list[dict[str, np.ndarray]], clients: int,
               duration_s: float, *, model_name: str = "laimco",
               uplink: object = None) -> dict[str, float]:
    """`clients` threads, each with its own connection, sending back to back for
    `duration_s` (also used by bench_fleet_batching.py, with a model name and an uplink)."""
    from laimco.runtime.client import RetryPolicy, ServerConnection

    connections = [ServerConnection(url, sha, token=TOKEN, model_name=model_name,
                                    uplink=uplink,  # type: ignore[arg-type]
                                    retry=RetryPolicy(max_attempts=5, timeout_s=60.0))
                   for _ in range(clients)]
    started = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def run(k: int) -> None:
        barrier.wait()
        i = k
        while time.monotonic() < stop_at[0]:
            started[k] += 1
            t0 = time.perf_counter()
            connections[k].send(crossings[i % len(crossings)])
            latencies[k].append(time.perf_counter() - t0)
            i += clients

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + duration_s
    t_start = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t_start
    records = [r for c in connections for r in c.log]
    for c in connections:
        c.close()
    ok = sum(r.status == "ok" for r in records)
    failed = sum(r.status == "failed" for r in records)
    all_latencies = np.array([x for xs in latencies for x in xs])
    return {"clients": clients, "duration_s": elapsed, "started": sum(started), "ok": ok,
            "failed": failed, "lost": sum(started) - ok - failed,
            "retried": sum(len(r.attempts) > 1 for r in records),
            "throughput_per_s": ok / elapsed,
            "p50_ms": float(np.percentile(all_latencies, 50) * 1e3),
            "p99_ms": float(np.percentile(all_latencies, 99) * 1e3),
            "batch": float(np.mean([r.timings.server_batch_requests for r in records
                                    if r.status == "ok"] or [0.0])),
            # the forward pass as the server timed it, and the whole call in its process
            "compute_ms": float(np.median([r.timings.server_s for r in records
                                           if r.status == "ok"] or [0.0]) * 1e3),
            "call_ms": float(np.median([r.timings.server_call_s for r in records
                                        if r.status == "ok"] or [0.0]) * 1e3),
            "compute_per_request_ms": float(np.median(
                [r.timings.server_s / max(r.timings.server_batch_requests, 1)
                 for r in records if r.status == "ok"] or [0.0]) * 1e3)}


def load_figure(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = [r["clients"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    left.plot(c, [r["throughput_per_s"] for r in rows], "o-")
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent clients")
    left.set_ylabel("throughput (requests/s)")
    left.set_ylim(bottom=0)
    right.plot(c, [r["p50_ms"] for r in rows], "o-", label="p50")
    right.plot(c, [r["p99_ms"] for r in rows], "s--", label="p99")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("concurrent clients")
    right.set_ylabel("latency per request (ms)")
    right.legend()
    fig.suptitle("MiniLM split 2, 1×128×384 activation, one MLServer process, 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds per load level below 32 clients")
    parser.add_argument("--duration-max", type=float, default=60.0,
                        help="seconds at the highest level (32 clients)")
    parser.add_argument("--overhead-requests", type=int, default=200)
    parser.add_argument("--figure", type=Path, default=ROOT / "benchmarks" / "runtime_load.png")
    args = parser.parse_args()
    if args.echo_server:
        echo_server(args.echo_server)
        return 0

    import torch

    from laimco.config import load_scenario
    from laimco.data import heldout_sentences
    from laimco.models.loading import load_model
    from laimco.models.pruned import prune_split_model, save_pruned
    from laimco.optimize import solve
    from laimco.runtime.client import DeviceClient
    from laimco.runtime.protocol import manifest_sha256
    from laimco.runtime.server import start_server

    decision = solve(load_scenario(SCENARIO)).point
    assert decision is not None, "the benchmark scenario must be feasible"
    loaded = load_model("minilm")
    work = Path(tempfile.mkdtemp(prefix="laimco-bench-"))
    folder = save_pruned(prune_split_model(loaded, decision.split, decision.rho_device,
                                           decision.rho_server), work / "pruned")
    sentences = heldout_sentences()[:64]
    print(f"# Runtime benchmarks\n\nscenario {SCENARIO.relative_to(ROOT)}: split "
          f"{decision.split}, ρ_d {decision.rho_device:.3f}, ρ_s {decision.rho_server:.3f}; "
          f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} "
          f"cores; load average before start {os.getloadavg()[0]:.2f}\n")
    echo, echo_url = start_echo()
    server = start_server(folder, token=TOKEN, repository=work / "server")
    try:
        print(f"server started in {server.startup_s:.1f} s\n")
        with DeviceClient(folder, server.url, token=TOKEN) as client:
            crossings = []
            for s in sentences:
                crossing, _ = client.run_device(client.tokenize([s], 128, True))
                crossings.append(crossing)
            # 2. overhead vs echo, interleaved in rounds so both see the same conditions
            for s in sentences[:3]:
                client.infer([s], pad_to_max_length=True)  # warm-up
            echo_client = EchoClient(echo_url)
            for _ in range(20):
                echo_client.time(crossings[0])
            overheads, echoes, rpcs, inside, transport = [], [], [], [], []
            # one request each, alternating, so that both see the same moment of a noisy host;
            # the echo is sent right after the same device forward as the real request (not
            # timed), so both start from the same state of the client (torch's compute threads
            # spin for a while after a forward, sharing the 2 cores with gRPC)
            for k in range(args.overhead_requests):
                sentence = sentences[k % len(sentences)]
                reply = client.infer([sentence], pad_to_max_length=True)
                t = reply.record.timings
                overheads.append(t.overhead_s)
                rpcs.append(t.rpc_s - t.server_s)
                inside.append(t.server_call_s - t.server_s)
                transport.append(t.rpc_s - t.server_call_s)
                crossing, _ = client.run_device(client.tokenize([sentence], 128, True))
                echoes.append(echo_client.time(crossing))
            # and the echo on its own, back to back (no torch work anywhere near it)
            hot_echoes = [echo_client.time(crossings[k % len(crossings)])
                          for k in range(args.overhead_requests)]
            echo_client.close()
            overhead_summary = client.connection.summary()
        med_over, med_echo = statistics.median(overheads), statistics.median(echoes)
        print("## Overhead vs a bare gRPC echo (sequence length 128, sequential)\n")
        print("| quantity | median ms | p90 ms |")
        print("| --- | ---: | ---: |")
        for label, values in (("end-to-end − device − server compute", overheads),
                              ("  of which rpc − server compute", rpcs),
                              ("    in the server process besides compute", inside),
                              ("    client, gRPC and transfer (rpc − server call)", transport),
                              ("bare gRPC echo of the same tensors, after the same device "
                               "forward", echoes),
                              ("bare gRPC echo, back to back (no forward before it)",
                               hot_echoes)):
            print(f"| {label} | {statistics.median(values) * 1e3:.2f} | "
                  f"{np.percentile(values, 90) * 1e3:.2f} |")
        ratio = med_over / med_echo
        hot_ratio = med_over / statistics.median(hot_echoes)
        print(f"\n- overhead / echo after the same device forward = **{ratio:.2f}×** (target "
              f"≤ 2×: {'met' if ratio <= 2 else 'NOT met'}); {len(overheads)} requests each, "
              f"{overhead_summary['failed']} failed")
        print(f"- overhead / back-to-back echo = {hot_ratio:.2f}× (the echo is faster when "
              "no torch forward has just run in the client: its compute threads keep spinning "
              "on the shared cores for a while)\n")

        # 1. load
        rows = []
        for level in LEVELS:
            duration = args.duration_max if level == max(LEVELS) else args.duration
            rows.append(load_level(server.url, manifest_sha256(folder), crossings, level,
                                   duration))
        print("## Load: concurrent clients against one server\n")
        print("| clients | duration s | requests | ok | failed | lost | retried | "
              "throughput /s | p50 ms | p99 ms |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in rows:
            print(f"| {row['clients']} | {row['duration_s']:.1f} | {row['started']} | "
                  f"{row['ok']} | {row['failed']} | {row['lost']} | {row['retried']} | "
                  f"{row['throughput_per_s']:.2f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
        load_figure(rows, args.figure)
        bad = sum(r["failed"] + r["lost"] for r in rows)
        base = rows[0]["throughput_per_s"]
        print(f"\n- failed + lost requests over all levels: {bad} (target 0: "
              f"{'met' if bad == 0 else 'NOT met'})")
        print(f"- throughput at {rows[-1]['clients']} clients / at 1 client: "
              f"{rows[-1]['throughput_per_s'] / base:.2f}×")
        shown = args.figure.relative_to(ROOT) if args.figure.is_relative_to(ROOT) else args.figure
        print(f"- figure: {shown}")
        print(f"- load average at the end {os.getloadavg()[0]:.2f} (other work on the machine "
              "shares its 2 cores)")
        (work / "results.json").write_text(json.dumps(
            {"overhead_s": overheads, "echo_s": echoes, "load": rows}, indent=1))
        return 0 if bad == 0 and ratio <= 2 else 1
    finally:
        server.stop()
        os.killpg(echo.pid, signal.SIGTERM)
        echo.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
