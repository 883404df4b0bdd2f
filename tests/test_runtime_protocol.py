"""The runtime's pieces that need no server: the tensor contract and its checks, the guard's
raw-tensor checks, retry backoff, and the shaped uplink measured on a bare TCP socket."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import transformers
from tritonclient.grpc import service_pb2

from laimco.runtime.client import RetryPolicy
from laimco.runtime.guard import make_raw_outputs, request_problem, take_raw_tensors
from laimco.runtime.link import ShapedUplink
from laimco.runtime.protocol import (
    CrossingError,
    IdentityError,
    Limits,
    check_arrays,
    check_identity,
    interface_for,
    raw_size_problem,
)

pytestmark = pytest.mark.slow  # opens sockets and shapes a real uplink

CONFIG = transformers.BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=3,
                                 num_attention_heads=2, intermediate_size=16)


def _manifest(split: int, family: str = "bert") -> dict[str, object]:
    return {"model": "tiny", "family": family, "split": split, "n_units": 5}


def _iface(split: int = 2):
    return interface_for(_manifest(split), CONFIG, "ab" * 32)


def _good(batch: int = 2, tokens: int = 5) -> dict[str, np.ndarray]:
    return {"hidden_states": np.zeros((batch, tokens, 8), np.float32),
            "attention_mask": np.ones((batch, tokens), np.int64)}


def test_interface_declares_the_crossing_with_dynamic_batch_and_token_dims() -> None:
    inner, first = _iface(2), _iface(0)
    assert [(s.name, s.datatype, s.shape) for s in inner.inputs] == [
        ("hidden_states", "FP32", (-1, -1, 8)), ("attention_mask", "INT64", (-1, -1))]
    assert [(s.name, s.datatype, s.shape) for s in first.inputs] == [
        ("input_ids", "INT64", (-1, -1)), ("attention_mask", "INT64", (-1, -1))]
    assert inner.output.shape == (-1, 8)
    with pytest.raises(ValueError, match="nothing to serve"):
        interface_for(_manifest(5), CONFIG, "x")


def test_a_well_formed_crossing_passes_every_check() -> None:
    check_arrays(_iface(), _good(), Limits())


@pytest.mark.parametrize(("change", "expected"), [
    (lambda a: a.update(hidden_states=np.zeros((2, 5, 7), np.float32)), r"\[\*, \*, 8\]"),
    (lambda a: a.update(hidden_states=np.zeros((2, 5, 8), np.float64)), "FP32"),
    (lambda a: a.update(hidden_states=np.zeros((2, 5), np.float32)), r"\[\*, \*, 8\]"),
    (lambda a: a["hidden_states"].__setitem__((0, 1, 2), np.nan), "NaN or infinite"),
    (lambda a: a["hidden_states"].__setitem__((1, 0, 0), np.inf), "NaN or infinite"),
    (lambda a: a.update(attention_mask=np.ones((2, 4), np.int64)), "disagree"),
    (lambda a: a["attention_mask"].__setitem__((0, 0), 7), "only 0"),
    (lambda a: a.pop("attention_mask"), "missing input"),
    (lambda a: a.update(extra=np.zeros((2, 5), np.int64)), "unexpected input 'extra'"),
])
def test_malformed_crossings_are_refused_saying_what_was_expected(change, expected) -> None:
    arrays = _good()
    change(arrays)
    with pytest.raises(CrossingError, match=expected):
        check_arrays(_iface(), arrays, Limits())


def test_limits_refuse_oversized_requests() -> None:
    with pytest.raises(CrossingError, match="at most 1 inputs"):
        check_arrays(_iface(), _good(batch=2), Limits(max_batch=1))
    with pytest.raises(CrossingError, match="at most 4 tokens"):
        check_arrays(_iface(), _good(tokens=5), Limits(max_tokens=4))
    size = sum(a.nbytes for a in _good().values())
    with pytest.raises(CrossingError, match=f"carries {size} bytes"):
        check_arrays(_iface(), _good(), Limits(max_request_bytes=size - 1))


def test_token_ids_outside_the_vocabulary_are_refused() -> None:
    ids = {"input_ids": np.array([[1, 100]]), "attention_mask": np.ones((1, 2), np.int64)}
    with pytest.raises(CrossingError, match=r"0\.\.99"):
        check_arrays(_iface(0), ids, Limits())


def test_identity_must_name_the_hosted_manifest() -> None:
    check_identity(_iface(), "ab" * 32)
    with pytest.raises(IdentityError, match="no 'manifest_sha256'"):
        check_identity(_iface(), None)
    with pytest.raises(IdentityError, match="built for manifest cdcdcdcdcdcd"):
        check_identity(_iface(), "cd" * 32)


def _request(hidden: bytes, shape: list[int]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="hidden_states", datatype="FP32", shape=shape)
    request.raw_input_contents.append(hidden)
    return request


def test_raw_tensor_sizes_must_match_shape_times_itemsize() -> None:
    data = np.arange(24, dtype=np.float32)
    assert request_problem(_request(data.tobytes(), [1, 3, 8]), 10**6) is None
    problem = request_problem(_request(data.tobytes()[:-5], [1, 3, 8]), 10**6)
    assert problem is not None and "needs 96 bytes" in problem and "truncated" in problem
    assert "at most 50 bytes" in str(request_problem(_request(data.tobytes(), [1, 3, 8]), 50))
    assert raw_size_problem("x", "BYTES", [1], 4) is not None
    assert "negative" in str(raw_size_problem("x", "FP32", [-1, 2], 8))


def test_guard_decodes_raw_tensors_and_makes_typed_outputs_raw() -> None:
    data = np.arange(24, dtype=np.float32).reshape(1, 3, 8)
    request = _request(data.tobytes(), [1, 3, 8])
    arrays = take_raw_tensors(request)
    np.testing.assert_array_equal(arrays["hidden_states"], data)
    assert arrays["hidden_states"].flags.writeable and not request.raw_input_contents
    response = service_pb2.ModelInferResponse()
    out = response.outputs.add(name="output", datatype="FP32", shape=[1, 3])
    out.contents.fp32_contents.extend([1.5, -2.0, 3.25])
    make_raw_outputs(response)
    assert not response.outputs[0].HasField("contents")
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], np.float32),
                                  [1.5, -2.0, 3.25])
    # an array the runtime left for the output goes out as is (no typed values needed)
    left = np.array([[0.25, 7.0, -1.0]], dtype=np.float32)
    response = service_pb2.ModelInferResponse()
    response.outputs.add(name="output", datatype="FP32", shape=[1, 3])
    make_raw_outputs(response, {"output": left})
    assert not response.outputs[0].HasField("contents")
    assert response.raw_output_contents[0] == left.tobytes()


def test_retry_backoff_grows_exponentially_up_to_its_cap() -> None:
    policy = RetryPolicy(backoff_initial_s=0.1, backoff_factor=2.0, backoff_max_s=0.5)
    assert [policy.delay_s(k) for k in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def _sink() -> tuple[socket.socket, dict[str, float], threading.Event]:
    """A TCP server that records when the last of `expected` bytes arrived."""
    server = socket.create_server(("127.0.0.1", 0))
    state: dict[str, float] = {"bytes": 0}
    done = threading.Event()

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            while state["bytes"] < state["expected"]:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                state["bytes"] += len(chunk)
            state["arrived"] = time.perf_counter()
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return server, state, done


@pytest.mark.parametrize("rate_bps", [2e6, 4e6, 8e6])
def test_shaped_uplink_delivers_s_bits_in_s_over_r(rate_bps: float) -> None:
    payload = bytes(200_000)  # S = 1.6 Mbit: 800, 400, 200 ms
    server, state, done = _sink()
    state["expected"] = len(payload)
    with server, ShapedUplink(f"127.0.0.1:{server.getsockname()[1]}", rate_bps) as link:
        host, port = link.address.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as client:
            start = time.perf_counter()
            client.sendall(payload)
            assert done.wait(10)
    elapsed = state["arrived"] - start
    assert elapsed == pytest.approx(8 * len(payload) / rate_bps, rel=0.05)
