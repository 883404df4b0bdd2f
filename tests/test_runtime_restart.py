"""A server killed in the middle of a client run and started again (by `laimco serve`, as an
operator would): the client reports the failed attempts, retries with backoff, and finishes;
every request ends in the log as ok, none is dropped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from laimco.models.loading import load_model
from laimco.models.pruned import prune_split_model, save_pruned
from laimco.runtime.client import RetryPolicy, ServerConnection
from laimco.runtime.launch import TOKEN_ENV
from laimco.runtime.protocol import manifest_sha256
from laimco.runtime.server import start_server, wait_until_ready

pytestmark = pytest.mark.slow  # starts the edge server

TOKEN = "restart-secret"
N_REQUESTS = 40


@pytest.fixture(scope="module")
def folder_and_crossing(tmp_path_factory):
    loaded = load_model("minilm")
    pruned = prune_split_model(loaded, 3, 0.0, 0.0)
    folder = save_pruned(pruned, tmp_path_factory.mktemp("restart") / "pruned")
    batch = loaded.tokenizer(["Close the file when the block ends."], return_tensors="pt")
    with torch.no_grad():
        crossing = {k: v.numpy() for k, v in pruned.device(dict(batch)).items()}
        expected = pruned.server(pruned.device(dict(batch))).numpy()
    return folder, crossing, expected


def _serve_command(folder: Path, port: int, repo: Path) -> subprocess.Popen[bytes]:
    """`laimco serve` in its own process group (the test ends it by that group's id)."""
    log = (repo.parent / "serve.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "laimco.runtime.commands", "serve", str(folder), "--port",
         str(port), "--repository", str(repo)],
        env={**os.environ, TOKEN_ENV: TOKEN}, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)


def test_killed_and_restarted_server_loses_no_request(folder_and_crossing, tmp_path) -> None:
    folder, crossing, expected = folder_and_crossing
    first = start_server(folder, token=TOKEN)
    port = first.options.grpc_port
    retry = RetryPolicy(max_attempts=60, timeout_s=10.0, backoff_initial_s=0.05,
                        backoff_factor=2.0, backoff_max_s=1.0)
    connection = ServerConnection(first.url, manifest_sha256(folder), token=TOKEN, retry=retry)
    outputs: list[np.ndarray | None] = []

    def run() -> None:
        for _ in range(N_REQUESTS):
            outputs.append(connection.send(crossing).output)
            time.sleep(0.02)

    worker = threading.Thread(target=run)
    second = None
    try:
        worker.start()
        deadline = time.monotonic() + 60
        while sum(r.status == "ok" for r in connection.log) < 8:
            assert time.monotonic() < deadline, "the client made no progress"
            time.sleep(0.01)
        first.kill()  # SIGKILL: a crash, no graceful shutdown
        while not any(a.code != "OK" for r in connection.log for a in r.attempts):
            assert time.monotonic() < deadline, "the client saw no failure"
            time.sleep(0.01)
        second = _serve_command(folder, port, tmp_path / "repo")
        wait_until_ready(f"127.0.0.1:{port}", "laimco", 120, second)
        worker.join(timeout=120)
        assert not worker.is_alive()
    finally:
        first.stop()
        if second is not None:
            os.killpg(second.pid, signal.SIGTERM)
            try:
                second.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(second.pid, signal.SIGKILL)
                second.wait()
        connection.close()

    log = connection.write_log(tmp_path / "requests.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(N_REQUESTS))
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    hit = [r for r in records if len(r["attempts"]) > 1]
    assert hit, "no request needed a retry: the kill came too late"
    for record in hit:
        codes = [a["code"] for a in record["attempts"]]
        assert codes[-1] == "OK" and all(c != "OK" for c in codes[:-1])
        assert "UNAVAILABLE" in codes
    summary = connection.summary()
    assert summary == {"requests": N_REQUESTS, "ok": N_REQUESTS, "failed": 0, "pending": 0,
                       "failed_attempts": sum(len(r["attempts"]) - 1 for r in hit)}
    for output in outputs:
        assert output is not None
        np.testing.assert_allclose(output, expected, atol=1e-5, rtol=0)
