"""The device side of split inference: run the device part, send what crosses the cut to the
edge server over gRPC (Open Inference Protocol, `tritonclient.grpc`), get the output back
(docs/design.md §7).

Two pieces:

- `ServerConnection` talks to one server: it checks once that the server is reachable, accepts
  the token and serves the same pruned folder (manifest SHA-256), then sends crossings with a
  per-attempt deadline, retries transient failures with exponential backoff, and records every
  request and every attempt in `log` — a request is either `ok` or `failed` with its attempts,
  never silently dropped.
- `DeviceClient` adds the device part: tokenize, run units 1..s, send, and time each step.

Times per request (`Timings`, seconds, wall clock on this machine):
`tokenize` + `device` (units 1..s) on the device; `rpc` the successful gRPC call; `server` the
server part's forward pass as the server reports it (`server_compute_ns`); `server_call` the
whole call inside the server process after gRPC delivered it (`server_call_ns`: MLServer's
handling, checks, forward pass, encoding); `uplink` = rpc − server: everything between the two
computations (serialization, network or emulated link, MLServer's handling, the response);
`total` from text to output.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from laimco.runtime.guard import bearer
from laimco.runtime.protocol import (
    ACTIVATION_BYTES_PARAMETER,
    BATCH_PARAMETER,
    BITS_PARAMETER,
    DATATYPE_OF,
    GRANULARITY_PARAMETER,
    MANIFEST_PARAMETER,
    OUTPUT_NAME,
    SERVER_CALL_PARAMETER,
    SERVER_COMPUTE_PARAMETER,
    SERVER_HANDLER_PARAMETER,
    UplinkSettings,
    manifest_sha256,
)
from laimco.runtime.repository import DEFAULT_MODEL_NAME
from laimco.runtime.request_log import Attempt, Reply, RequestRecord, RetryPolicy, Timings
from laimco.runtime.uplink_wire import activation_bytes, activation_tensors

if TYPE_CHECKING:
    from laimco.models.pruned import PrunedSplit
    from laimco.models.split import Crossing

__all__ = ["Attempt", "AuthenticationError", "DeviceClient", "ModelMismatchError", "Reply",
           "RequestRecord", "RetryPolicy", "RuntimeClientError", "ServerConnection",
           "ServerUnreachableError", "Timings"]

# gRPC codes that retrying cannot fix: the request or the client's setup is wrong
PERMANENT_CODES = frozenset({"INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED",
                             "FAILED_PRECONDITION", "UNIMPLEMENTED", "RESOURCE_EXHAUSTED",
                             "OUT_OF_RANGE"})
MAX_MESSAGE_BYTES = 2**31 - 1


class RuntimeClientError(RuntimeError):
    """Base class of the device client's errors."""


class ServerUnreachableError(RuntimeClientError):
    """No server answers at the address."""


class AuthenticationError(RuntimeClientError):
    """The server wants a token the client did not give (or gave wrong)."""


class ModelMismatchError(RuntimeClientError):
    """The server serves another model, split or pruning than the client's folder."""


def _code(error: Exception) -> str:
    status = getattr(error, "status", None)
    text = status() if callable(status) else None
    return str(text or "UNKNOWN").removeprefix("StatusCode.")


def _message(error: Exception) -> str:
    message = getattr(error, "message", None)
    text = message() if callable(message) else None
    return str(text or error)


class ServerConnection:
    """A gRPC connection to one edge server, with retries and a per-request log."""

    _ids = itertools.count()

    def __init__(self, url: str, manifest_sha: str, *, model_name: str = DEFAULT_MODEL_NAME,
                 token: str | None = None, retry: RetryPolicy | None = None,
                 client_id: str | None = None, uplink: UplinkSettings | None = None) -> None:
        import tritonclient.grpc as grpcclient

        self.url, self.manifest_sha, self.model_name = url, manifest_sha, model_name
        self.parameters: dict[str, str | int] = {MANIFEST_PARAMETER: manifest_sha}
        if uplink is not None and uplink.quantized:  # the server checks them against its own
            self.parameters |= {BITS_PARAMETER: uplink.quantizer.bits,
                                GRANULARITY_PARAMETER: uplink.quantizer.granularity}
        self.retry = retry or RetryPolicy()
        self.headers = bearer(token) if token else {}
        self.client_id = client_id or f"{uuid.uuid4().hex[:8]}-{next(self._ids)}"
        self.log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(url, channel_args=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_retries", 0),  # every failure is seen, counted and retried here
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServerConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def check(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Make sure the server is up, accepts us and serves our folder; its model metadata
        (the server's JSON document as tritonclient returns it; read only inside runtime/)."""
        from tritonclient.utils import InferenceServerException

        try:
            live = self._client.is_server_live(headers=self.headers, client_timeout=timeout_s)
        except InferenceServerException as err:
            raise ServerUnreachableError(
                f"no server answers at {self.url} ({_code(err)}: {_message(err)}); start one "
                "with `laimco serve FOLDER --port PORT` and check host and port") from None
        if not live:
            raise ServerUnreachableError(f"the server at {self.url} says it is not live")
        try:
            meta = self._client.get_model_metadata(self.model_name, headers=self.headers,
                                                   client_timeout=timeout_s, as_json=True)
        except InferenceServerException as err:
            code = _code(err)
            if code == "UNAUTHENTICATED":
                raise AuthenticationError(f"the server at {self.url} refused us: "
                                          f"{_message(err)}") from None
            if code == "NOT_FOUND":
                raise ModelMismatchError(f"the server at {self.url} serves no model named "
                                         f"{self.model_name!r} ({_message(err)})") from None
            raise ServerUnreachableError(f"model metadata from {self.url} failed: {code}: "
                                         f"{_message(err)}") from None
        versions = list(meta.get("versions", []))
        if self.manifest_sha not in versions:
            served = versions[0][:12] + "…" if versions else "none"
            raise ModelMismatchError(
                f"the server at {self.url} serves {self.model_name!r} with manifest {served}, "
                f"but this client's pruned folder has manifest {self.manifest_sha[:12]}…: the "
                "server part and the device part come from different pruned folders (another "
                "model, split or pruning); serve the same folder the client uses")
        return dict(meta)

    def _inputs(self, crossing: dict[str, np.ndarray[Any, Any]]) -> tuple[list[Any], int]:
        inputs, size = [], 0
        for name, array in crossing.items():
            array = np.ascontiguousarray(array)
            datatype = DATATYPE_OF.get(array.dtype)
            if datatype is None:
                raise TypeError(f"crossing tensor {name!r} has dtype {array.dtype}; the protocol "
                                "sends float32/float16 activations, uint8 codes and int64 "
                                "ids/masks")
            tensor = self._grpc.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
            size += array.nbytes
        return inputs, size

    def send(self, crossing: dict[str, np.ndarray[Any, Any]],
             timings: Timings | None = None) -> Reply:
        """Send one crossing; retry transient failures; always log the request."""
        with self._lock:
            record = RequestRecord(index=len(self.log), request_id="")
            record.request_id = f"{self.client_id}-{record.index}"
            self.log.append(record)
        if timings is not None:
            record.timings = timings
        try:
            return self._attempts(record, crossing)
        except BaseException as err:  # a client-side fault: still accounted for in the log
            record.status = "failed"
            record.error = f"client error: {type(err).__name__}: {err}"
            raise

    def _attempts(self, record: RequestRecord,
                  crossing: dict[str, np.ndarray[Any, Any]]) -> Reply:
        from tritonclient.utils import InferenceServerException

        inputs, record.timings.payload_bytes = self._inputs(crossing)
        record.timings.activation_bytes = activation_bytes(crossing)
        for number in range(1, self.retry.max_attempts + 1):
            if number > 1:
                time.sleep(self.retry.delay_s(number - 1))
            started_unix, start = time.time(), time.perf_counter()
            try:
                result = self._client.infer(
                    self.model_name, inputs, request_id=record.request_id,
                    headers=self.headers, client_timeout=self.retry.timeout_s,
                    parameters=self.parameters)
            except InferenceServerException as err:
                code = _code(err)
                record.attempts.append(Attempt(number, started_unix,
                                               time.perf_counter() - start, code,
                                               _message(err)))
                if code in PERMANENT_CODES:
                    break
                continue
            rpc_s = time.perf_counter() - start
            record.attempts.append(Attempt(number, started_unix, rpc_s, "OK"))
            parameters = result.get_response().parameters
            record.timings.rpc_s = rpc_s
            record.timings.server_s = parameters[SERVER_COMPUTE_PARAMETER].int64_param / 1e9
            record.timings.server_handler_s = (
                parameters[SERVER_HANDLER_PARAMETER].int64_param / 1e9)
            if SERVER_CALL_PARAMETER in parameters:  # binary requests: set by the guard
                record.timings.server_call_s = parameters[SERVER_CALL_PARAMETER].int64_param / 1e9
            record.timings.server_activation_bytes = (
                parameters[ACTIVATION_BYTES_PARAMETER].int64_param)
            if BATCH_PARAMETER in parameters:
                record.timings.server_batch_requests = parameters[BATCH_PARAMETER].int64_param
            record.status = "ok"
            return Reply(result.as_numpy(OUTPUT_NAME), record)
        last = record.attempts[-1]
        record.status = "failed"
        record.error = (f"{last.code}: {last.message} (after {len(record.attempts)} "
                        f"attempt{'s' if len(record.attempts) > 1 else ''})")
        return Reply(None, record)

    def summary(self) -> dict[str, int]:
        """Requests by final status, and attempts that failed along the way."""
        return {"requests": len(self.log),
                "ok": sum(r.status == "ok" for r in self.log),
                "failed": sum(r.status == "failed" for r in self.log),
                "pending": sum(r.status == "pending" for r in self.log),
                "failed_attempts": sum(a.code != "OK" for r in self.log for a in r.attempts)}

    def write_log(self, path: str | Path) -> Path:
        """The per-request log as JSON lines (one request per line, with its attempts)."""
        path = Path(path)
        with path.open("w") as handle:
            for record in self.log:
                handle.write(json.dumps(record.as_dict()) + "\n")
        return path


class DeviceClient:
    """Runs the device part of a pruned folder and the server part through a `ServerConnection`.

    `url` is the server's host:port; with `uplink_rate_bps` the upload goes through a
    `ShapedUplink` (laimco.runtime.link) at that rate. `pruned`: the folder's parts already
    loaded (clients of one folder can share them), else they are loaded here."""

    def __init__(self, folder: str | Path, url: str, *, token: str | None = None,
                 model_name: str = DEFAULT_MODEL_NAME, retry: RetryPolicy | None = None,
                 uplink_rate_bps: float | None = None, check: bool = True,
                 pruned: PrunedSplit | None = None) -> None:
        import torch

        from laimco.models.pruned import load_pruned
        from laimco.runtime.pruned_folder import check_pruned_folder

        self.folder = Path(folder)
        manifest = check_pruned_folder(self.folder)  # names inside the folder, SHA-256s
        sha = manifest_sha256(self.folder)
        self.split, self.n_units = manifest.split, manifest.n_units
        self.uplink = manifest.uplink
        self.quantized = 0 < self.split < self.n_units and self.uplink.quantized
        self._torch = torch
        self.link = None
        target = url
        if uplink_rate_bps is not None:
            from laimco.runtime.link import ShapedUplink

            self.link = ShapedUplink(url, uplink_rate_bps)
            target = self.link.address
        self.connection = ServerConnection(target, sha, model_name=model_name, token=token,
                                           retry=retry, uplink=self.uplink)
        try:
            if check and self.split < self.n_units:
                self.connection.check()  # before loading weights: wrong setups fail fast
            self.pruned = pruned or load_pruned(self.folder, verify=False)  # verified above
        except BaseException:
            self.close()
            raise
        self.tokenizer = self.pruned.loaded.tokenizer

    @property
    def log(self) -> list[RequestRecord]:
        return self.connection.log

    def close(self) -> None:
        self.connection.close()
        if self.link is not None:
            self.link.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def tokenize(self, texts: Sequence[str], max_length: int = 128,
                 pad_to_max_length: bool = False) -> Crossing:
        """{input_ids, attention_mask} of a batch of texts."""
        if self.tokenizer is None:
            raise RuntimeClientError(f"{self.folder} has no tokenizer: give a text model folder")
        tokens = self.tokenizer(list(texts), truncation=True, max_length=max_length,
                                padding="max_length" if pad_to_max_length else True,
                                return_tensors="pt")
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def run_device(self, inputs: Crossing) -> tuple[dict[str, np.ndarray[Any, Any]], float]:
        """Units 1..s on this machine's CPU and, with a quantized uplink, the quantization of the
        real tokens' rows (docs/runtime.md, "Quantized uplink"): the tensors that cross the cut,
        and the time it took."""
        torch = self._torch
        start = time.perf_counter()
        with torch.no_grad():
            crossing = self.pruned.device(inputs)
        arrays = {name: tensor.detach().contiguous().numpy() for name, tensor in
                  crossing.items()}
        if self.quantized:
            arrays = activation_tensors(arrays["hidden_states"], arrays["attention_mask"],
                                        self.uplink)
        return arrays, time.perf_counter() - start

    def infer(self, texts: Sequence[str], *, max_length: int = 128,
              pad_to_max_length: bool = False) -> Reply:
        """One request: tokenize, device part, upload, server part; output and timings."""
        start = time.perf_counter()
        inputs = self.tokenize(texts, max_length, pad_to_max_length)
        return self.infer_inputs(inputs, _started=start)

    def infer_inputs(self, inputs: Crossing, *, _started: float | None = None) -> Reply:
        """One request from the model's own inputs ({input_ids, attention_mask} of a text
        model, {pixel_values} of a ViT): device part, upload, server part."""
        start = time.perf_counter() if _started is None else _started
        tokenized = time.perf_counter()
        crossing, device_s = self.run_device(inputs)
        timings = Timings(tokenize_s=tokenized - start, device_s=device_s)
        if self.split == self.n_units:  # everything ran here: nothing crosses the network
            with self.connection._lock:
                record = RequestRecord(index=len(self.log), request_id="local", status="ok",
                                       timings=timings)
                self.log.append(record)
            timings.total_s = time.perf_counter() - start
            return Reply(crossing["output"], record)
        reply = self.connection.send(crossing, timings)
        timings.total_s = time.perf_counter() - start
        return reply
