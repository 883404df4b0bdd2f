"""The edge server as a real MLServer process on 127.0.0.1, with real gRPC clients: declared
tensors and health, outputs against the in-process model, security, input validation, identity
checks, timeouts, the shaped uplink and the `infer` command.

One server (all-MiniLM-L6-v2 at split 2, unpruned, token required, 1 MB request limit) serves
every test of this module and is stopped at the end.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import typer
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner

from laimco.models.loading import load_model
from laimco.models.pruned import load_pruned, prune_split_model, save_pruned
from laimco.models.split import run_full
from laimco.runtime.client import (
    AuthenticationError,
    DeviceClient,
    ModelMismatchError,
    RetryPolicy,
    ServerConnection,
    ServerUnreachableError,
)
from laimco.runtime.commands import register
from laimco.runtime.link import ShapedUplink
from laimco.runtime.protocol import Limits, manifest_sha256
from laimco.runtime.repository import ServeOptions
from laimco.runtime.server import free_port, start_server

pytestmark = pytest.mark.slow  # starts the edge server

TOKEN = "test-secret-7f3a"
AUTH = {"authorization": f"Bearer {TOKEN}"}
LIMIT = 1_000_000
SENTENCES = ["The return value is a new list.", "Raise an exception if the file is missing.",
             "Iterate over the keys of a mapping.", "A short one."]


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, minilm) -> Path:
    pruned = prune_split_model(minilm, 2, 0.0, 0.0)
    return save_pruned(pruned, tmp_path_factory.mktemp("runtime") / "pruned")


@pytest.fixture(scope="module")
def server(folder):
    options = ServeOptions(grpc_port=free_port(), http_port=free_port(),
                           limits=Limits(max_request_bytes=LIMIT))
    with start_server(folder, options, token=TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def local(folder):
    return load_pruned(folder)


@pytest.fixture(scope="module")
def crossing(local):
    batch = local.loaded.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        sent = local.device(inputs)
        expected = local.server(sent)
    return {k: v.numpy() for k, v in sent.items()}, expected.numpy(), inputs


def _infer(url: str, arrays: dict[str, np.ndarray], datatypes: dict[str, str] | None = None,
           headers: dict[str, str] | None = AUTH, sha: str | None = "folder", folder=None):
    client = grpcclient.InferenceServerClient(url)
    inputs = []
    for name, array in arrays.items():
        datatype = (datatypes or {}).get(name) or {np.float32: "FP32", np.int64: "INT64",
                                                   np.float64: "FP64"}[array.dtype.type]
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    parameters = {} if sha is None else {
        "manifest_sha256": manifest_sha256(folder) if sha == "folder" else sha}
    try:
        return client.infer("laimco", inputs, headers=headers, parameters=parameters)
    finally:
        client.close()


def _refusal(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_server_listens_on_loopback_only(server) -> None:
    port = f"{server.options.grpc_port:04X}"
    loopback = {"0100007F",  # 127.0.0.1
                "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1 (gRPC's dual stack)
                "00000000000000000000000001000000"}  # ::1
    listening = [line.split()[1].rsplit(":", 1)[0]
                 for table in ("/proc/net/tcp", "/proc/net/tcp6")
                 for line in Path(table).read_text().splitlines()[1:]
                 if line.split()[1].endswith(":" + port) and line.split()[3] == "0A"]
    assert listening and set(listening) <= loopback, listening  # not 0.0.0.0 or ::
    settings = json.loads((server.repository / "settings.json").read_text())
    assert settings["host"] == "127.0.0.1"


def test_health_is_open_and_metadata_declares_dynamic_dims(server, folder) -> None:
    client = grpcclient.InferenceServerClient(server.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("laimco")
    meta = client.get_model_metadata("laimco", headers=AUTH, as_json=True)
    client.close()
    assert meta["versions"] == [manifest_sha256(folder)]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]] == [
        ("hidden_states", "FP32", [-1, -1, 384]), ("attention_mask", "INT64", [-1, -1])]
    assert [int(d) for d in meta["outputs"][0]["shape"]] == [-1, 384]
    url = f"http://127.0.0.1:{server.options.http_port}/v2/health/ready"
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200


def test_stock_tritonclient_gets_the_server_parts_output(server, folder, crossing) -> None:
    sent, expected, _ = crossing
    result = _infer(server.url, sent, folder=folder)
    np.testing.assert_allclose(result.as_numpy("output"), expected, atol=1e-6, rtol=0)
    parameters = result.get_response().parameters
    assert parameters["server_compute_ns"].int64_param > 0


def test_split_pipeline_at_rho_zero_reproduces_the_unsplit_model_over_the_network(
        server, folder, minilm, crossing) -> None:
    _, _, inputs = crossing
    with torch.no_grad():
        unsplit = run_full(minilm, inputs).numpy()
    with DeviceClient(folder, server.url, token=TOKEN) as client:
        reply = client.infer(SENTENCES)
    assert reply.record.status == "ok" and reply.output is not None
    np.testing.assert_allclose(reply.output, unsplit, atol=1e-5, rtol=0)
    timings = reply.record.timings
    assert timings.device_s > 0 and timings.server_s > 0 and timings.rpc_s > timings.server_s
    assert timings.total_s >= timings.device_s + timings.rpc_s


def test_calls_without_the_token_are_unauthenticated(server, folder, crossing) -> None:
    sent, _, _ = crossing
    for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        error = _refusal(lambda h=headers: _infer(server.url, sent, headers=h, folder=folder))
        assert error.status() == "StatusCode.UNAUTHENTICATED"
        assert "authorization: Bearer" in error.message()
    with pytest.raises(AuthenticationError, match="refused"):
        DeviceClient(folder, server.url, token="wrong")
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.options.http_port}/v2/models/laimco/infer", data=b"{}",
        method="POST", headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 401


def _bad_requests(sent: dict[str, np.ndarray]):
    hidden, mask = sent["hidden_states"], sent["attention_mask"]
    nan, inf = hidden.copy(), hidden.copy()
    nan[0, 1, 2], inf[1, 0, 0] = np.nan, -np.inf
    big = np.zeros((4, 200, 384), np.float32)  # 1.2 MB > the 1 MB limit
    return [
        ("wrong shape", {"hidden_states": hidden[..., :383].copy(), "attention_mask": mask},
         r"hidden_states FP32 \[\*, \*, 384\]"),
        ("wrong datatype", {"hidden_states": hidden.astype(np.float64), "attention_mask": mask},
         "datatype FP64; expected hidden_states FP32"),
        ("NaN", {"hidden_states": nan, "attention_mask": mask}, "NaN or infinite"),
        ("Inf", {"hidden_states": inf, "attention_mask": mask}, "NaN or infinite"),
        ("oversized", {"hidden_states": big, "attention_mask": np.ones((4, 200), np.int64)},
         f"at most {LIMIT} bytes"),
        ("token mismatch", {"hidden_states": hidden, "attention_mask": mask[:, :-1].copy()},
         "disagree"),
        ("missing mask", {"hidden_states": hidden}, "missing input"),
    ]


def test_malformed_requests_get_invalid_argument_and_the_server_keeps_serving(
        server, folder, crossing) -> None:
    sent, expected, _ = crossing
    for label, arrays, message in _bad_requests(sent):
        error = _refusal(lambda a=arrays: _infer(server.url, a, folder=folder))
        assert error.status() == "StatusCode.INVALID_ARGUMENT", label
        assert re.search(message, error.message()), (label, error.message())
    result = _infer(server.url, sent, folder=folder)
    np.testing.assert_allclose(result.as_numpy("output"), expected, atol=1e-6, rtol=0)


def test_a_truncated_raw_tensor_gets_invalid_argument(server, folder, crossing) -> None:
    sent, _, _ = crossing
    request = service_pb2.ModelInferRequest(model_name="laimco")
    for name, datatype in (("hidden_states", "FP32"), ("attention_mask", "INT64")):
        request.inputs.add(name=name, datatype=datatype, shape=list(sent[name].shape))
    request.raw_input_contents.extend([sent["hidden_states"].tobytes()[:-100],
                                       sent["attention_mask"].tobytes()])
    request.parameters["manifest_sha256"].string_param = manifest_sha256(folder)
    with grpc.insecure_channel(server.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, metadata=list(AUTH.items()), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected_bytes = sent["hidden_states"].nbytes
    assert f"needs {expected_bytes} bytes" in info.value.details()
    assert "truncated" in info.value.details()


def test_requests_for_another_manifest_are_refused(server, folder, crossing, tmp_path) -> None:
    sent, _, _ = crossing
    error = _refusal(lambda: _infer(server.url, sent, sha="0" * 64))
    assert error.status() == "StatusCode.FAILED_PRECONDITION"
    assert "built for manifest 000000000000" in error.message()
    error = _refusal(lambda: _infer(server.url, sent, sha=None))
    assert error.status() == "StatusCode.FAILED_PRECONDITION"
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["rule"] = "wanda"  # another pruning of the same weights: another identity
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelMismatchError, match="different pruned folders"):
        DeviceClient(other, server.url, token=TOKEN)


def test_an_unreachable_server_is_reported_clearly(folder) -> None:
    with pytest.raises(ServerUnreachableError, match="no server answers"):
        DeviceClient(folder, f"127.0.0.1:{free_port()}")


def test_timeouts_are_retried_with_backoff_and_every_attempt_is_logged(
        server, folder, crossing, tmp_path) -> None:
    sent, _, _ = crossing
    retry = RetryPolicy(max_attempts=3, timeout_s=1e-4, backoff_initial_s=0.05,
                        backoff_factor=2.0)
    with ServerConnection(server.url, manifest_sha256(folder), token=TOKEN,
                          retry=retry) as connection:
        reply = connection.send(sent)
        log = connection.write_log(tmp_path / "log.jsonl")
    assert reply.output is None and reply.record.status == "failed"
    assert [a.code for a in reply.record.attempts] == ["DEADLINE_EXCEEDED"] * 3
    starts = [a.started_unix_s for a in reply.record.attempts]
    gaps = np.diff(starts)
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # backoff 0.05 s, then 0.1 s
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["status"] == "failed" and len(lines[0]["attempts"]) == 3


def test_shaped_uplink_makes_upload_time_follow_s_over_r(server, folder, local) -> None:
    batch = local.loaded.tokenizer([SENTENCES[0]], padding="max_length", max_length=128,
                                   return_tensors="pt")
    with torch.no_grad():
        sent = {k: v.numpy() for k, v in local.device(dict(batch)).items()}
    bits = 8 * sum(a.nbytes for a in sent.values())  # 1×128×384 FP32 + 1×128 INT64: 1.58 Mbit
    for rate_bps in (3e6, 6e6, 12e6):  # S/r = 527, 264, 132 ms
        with ShapedUplink(server.url, rate_bps) as link, ServerConnection(
                link.address, manifest_sha256(folder), token=TOKEN) as connection:
            replies = [connection.send(sent) for _ in range(3)]
        assert all(r.record.status == "ok" for r in replies)
        upload = float(np.median([r.record.timings.uplink_s for r in replies]))
        assert upload == pytest.approx(bits / rate_bps, rel=0.10), rate_bps


def test_infer_command_prints_outputs_and_times(server, folder) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["infer", str(folder), "some text", "more text",
                                 "--server", server.url, "--token", TOKEN, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"]["ok"] == 2 and len(data["requests"][0]["output"][0]) == 384
    refused = runner.invoke(app, ["infer", str(folder), "x", "--server", server.url])
    assert refused.exit_code == 2 and "refused" in refused.output
