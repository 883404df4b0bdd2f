"""The checks the edge server makes on every gRPC call before MLServer decodes it (docs/runtime.md).

A `grpc.aio` server interceptor:

- **shared secret**: when a token is configured, every call except the health checks
  (ServerLive, ServerReady, ModelReady) must carry the gRPC metadata
  `authorization: Bearer <token>`; otherwise it ends with UNAUTHENTICATED. Tokens are compared
  in constant time (`hmac.compare_digest`).
- **raw tensors**: for ModelInfer, each binary tensor in `raw_input_contents` must hold exactly
  prod(shape)·itemsize bytes and there must be one per input; a truncated or padded tensor
  ends with INVALID_ARGUMENT naming the input, the expected and the received size. (MLServer
  1.7.1 would otherwise fail inside `struct.unpack` and answer INTERNAL.)
- **size**: a ModelInfer message larger than `max_request_bytes` ends with INVALID_ARGUMENT
  saying the limit. The transport limit (`grpc_max_message_length`) is set above it, so only
  absurdly large messages are cut by gRPC itself (RESOURCE_EXHAUSTED).

Binary tensors that pass are decoded here, once, with `np.frombuffer` (a 1×128×384 activation in
about 0.05 ms; MLServer 1.7.1 would turn every element into a Python float, `struct.unpack` then a
list: 6.4 ms for the same activation, more than the whole gRPC round trip), handed to the runtime
in a `BinaryCall` and removed from the message. The call is registered in `PENDING_CALLS` under a
fresh id that every input tensor of the message carries as its parameter `laimco_call` (same
process: the server runs with `parallel_workers = 0`). The id survives MLServer's adaptive
batching, which concatenates the requests of a batch and merges each input's parameter into a list
in request order (`mlserver.batching.requests`), so the runtime finds every request of a merged
batch, checks each on its own and leaves each its own output rows, reply parameters or error. The
runtime leaves its output arrays in the same `BinaryCall` (and an empty typed tensor in MLServer's
response), so the answer goes back as `raw_output_contents` (as `tritonclient` reads it) without a
round trip through Python floats either. A request without binary tensors (typed `contents`) takes
MLServer's own path unchanged; typed outputs of a binary request are made binary here. The
response gets the parameter `server_call_ns`: the time from the guard's decode to the finished
response, i.e. everything the server process spent on the call after gRPC delivered the message.

MLServer also serves the same protocol over REST (it cannot be switched off in 1.7.1);
`RestGuard`, an ASGI middleware, asks the same token there (401 otherwise), with the same
health endpoints exempt, and refuses a body larger than `max_request_bytes` with 413 before
MLServer parses it (by its Content-Length, or while reading a chunked body).

Before any tensor is decoded, every input's header must have rank 1..8, dimensions ≥ 1 and at
most `max_request_bytes` of values (`protocol.shape_problem`): a header like [10⁹, 0, 10⁹] or a
100-dimensional shape is refused with INVALID_ARGUMENT instead of reaching numpy.

Everything semantic (names, datatypes, dimensions, NaN/Inf, identity) is checked by the runtime
(`laimco.runtime.server_model`), where the model's interface is known.
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from grpc import aio

from laimco.runtime.protocol import (
    NUMPY_DTYPE,
    SERVER_CALL_PARAMETER,
    raw_size_problem,
    shape_problem,
)

SERVICE = "/inference.GRPCInferenceService/"
HEALTH_METHODS = frozenset(SERVICE + m for m in ("ServerLive", "ServerReady", "ModelReady"))
INFER_METHOD = SERVICE + "ModelInfer"
TOKEN_HEADER = "authorization"


CALL_PARAMETER = "laimco_call"  # input-tensor parameter: the id of the call in PENDING_CALLS


@dataclass
class BinaryCall:
    """One binary ModelInfer call: its input tensors as the guard decoded them (with their
    declared datatypes and the request's parameters), and what the runtime leaves for its
    answer: the output tensors to be sent back raw (by output name), the int64 response
    parameters of this call (they replace a batch's shared ones) or the error that ends it."""

    inputs: dict[str, np.ndarray[Any, Any]]
    outputs: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    datatypes: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    reply: dict[str, int] = field(default_factory=dict)
    error: tuple[grpc.StatusCode, str] | None = None


# the binary ModelInfer calls being handled, by the id their tensors carry (CALL_PARAMETER)
PENDING_CALLS: dict[str, BinaryCall] = {}
_CALL_IDS = itertools.count()


def request_parameters(request: Any) -> dict[str, Any]:
    """A ModelInferRequest's parameters as Python values."""
    return {key: getattr(value, value.WhichOneof("parameter_choice"))
            for key, value in request.parameters.items()
            if value.WhichOneof("parameter_choice")}


def bearer(token: str) -> dict[str, str]:
    """The gRPC metadata a client sends to present `token`."""
    return {TOKEN_HEADER: f"Bearer {token}"}


def _presented_token(metadata: Any) -> str | None:
    for item in metadata or ():
        key, value = item if isinstance(item, tuple) else (item.key, item.value)
        if key == TOKEN_HEADER and isinstance(value, str) and value.startswith("Bearer "):
            return value.removeprefix("Bearer ")
    return None


def request_problem(request: Any, max_request_bytes: int) -> str | None:
    """Why a ModelInferRequest protobuf cannot be decoded or is too large, or None."""
    size = request.ByteSize()
    if size > max_request_bytes:
        return (f"the request is {size} bytes; this server takes at most {max_request_bytes} "
                "bytes per request (--max-request-bytes)")
    names = [tensor.name for tensor in request.inputs]
    for name in names:
        if names.count(name) > 1:
            return f"input {name!r} is given twice"
    for tensor in request.inputs:
        problem = shape_problem(tensor.name, tensor.datatype, list(tensor.shape),
                                max_request_bytes)
        if problem:
            return problem
    raw = list(request.raw_input_contents)
    if not raw:
        return None
    if len(raw) != len(request.inputs):
        return (f"the request has {len(request.inputs)} inputs but {len(raw)} raw tensor "
                "contents; send one raw content per input")
    for tensor, content in zip(request.inputs, raw, strict=True):
        problem = raw_size_problem(tensor.name, tensor.datatype, list(tensor.shape),
                                   len(content))
        if problem:
            return problem
    return None


def take_raw_tensors(request: Any) -> dict[str, np.ndarray[Any, Any]]:
    """Decode a checked request's binary tensors (by input name) and remove them from it."""
    arrays = {tensor.name: np.frombuffer(content, dtype=NUMPY_DTYPE[tensor.datatype])
              .reshape(tuple(tensor.shape)).copy()  # writable: torch.from_numpy needs that
              for tensor, content in zip(request.inputs, request.raw_input_contents,
                                         strict=True)}
    del request.raw_input_contents[:]
    return arrays


TYPED_FIELD = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
               "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
               "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
               "FP32": "fp32_contents", "FP64": "fp64_contents"}


def make_raw_outputs(response: Any,
                     arrays: dict[str, np.ndarray[Any, Any]] | None = None) -> Any:
    """Move every output tensor of a ModelInferResponse into raw_output_contents: the array
    the runtime left for it in `arrays` (by name) where there is one, else its typed values."""
    arrays = arrays or {}
    raw = []
    for output in response.outputs:
        array = arrays.get(output.name)
        if array is None:
            values = getattr(output.contents, TYPED_FIELD[output.datatype])
            array = np.asarray(values, dtype=NUMPY_DTYPE[output.datatype])
        else:  # the array's own shape (a batch's split answer may state another)
            del output.shape[:]
            output.shape.extend(array.shape)
        raw.append(np.ascontiguousarray(array, dtype=NUMPY_DTYPE[output.datatype]).tobytes())
        output.ClearField("contents")
    response.raw_output_contents.extend(raw)
    return response


def _aborting(handler: grpc.RpcMethodHandler, code: grpc.StatusCode,
              details: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that ends the call with `code`."""

    async def unary(request: Any, context: aio.ServicerContext) -> Any:
        await context.abort(code, details)

    async def streaming(request: Any, context: aio.ServicerContext) -> Any:
        await context.abort(code, details)
        yield  # pragma: no cover - makes this an async generator

    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming, **kwargs)


class Guard(aio.ServerInterceptor):  # type: ignore[misc]
    """Token check and raw-tensor checks for MLServer's gRPC server."""

    def __init__(self, token: str | None, max_request_bytes: int) -> None:
        self.token = token
        self.max_request_bytes = max_request_bytes

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        if self.token is not None and method not in HEALTH_METHODS:
            presented = _presented_token(handler_call_details.invocation_metadata)
            if not token_matches(presented, self.token):
                why = "no token" if presented is None else "a wrong token"
                return _aborting(handler, grpc.StatusCode.UNAUTHENTICATED,
                                 f"the call carried {why}: this server needs the metadata "
                                 f"'{TOKEN_HEADER}: Bearer <token>' (laimco infer --token)")
        if method != INFER_METHOD or not handler.unary_unary:
            return handler
        inner = handler.unary_unary
        limit = self.max_request_bytes

        async def checked(request: Any, context: aio.ServicerContext) -> Any:
            problem = request_problem(request, limit)
            if problem:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            if not request.raw_input_contents:
                return await inner(request, context)
            start = time.perf_counter_ns()
            call_id = f"{next(_CALL_IDS)}"
            call = BinaryCall(inputs=take_raw_tensors(request),
                              datatypes={t.name: t.datatype for t in request.inputs},
                              parameters=request_parameters(request))
            for tensor in request.inputs:
                tensor.parameters[CALL_PARAMETER].string_param = call_id
            PENDING_CALLS[call_id] = call
            try:
                response = await inner(request, context)
            finally:
                PENDING_CALLS.pop(call_id, None)
            if call.error is not None:
                await context.abort(*call.error)
            response = make_raw_outputs(response, call.outputs)
            for key, value in call.reply.items():
                response.parameters[key].int64_param = value
            response.parameters[SERVER_CALL_PARAMETER].int64_param = (
                time.perf_counter_ns() - start)
            return response

        return grpc.unary_unary_rpc_method_handler(
            checked, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


REST_HEALTH = re.compile(r"^/v2/health/(live|ready)$|^/v2/models/[^/]+(/versions/[^/]+)?/ready$")


def token_matches(presented: str | None, token: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


class RestGuard:
    """ASGI middleware for MLServer's REST app: the shared secret on every path but health,
    and the request size limit on every body (413 before MLServer parses any of it)."""

    def __init__(self, app: Any, token: str | None, max_request_bytes: int | None = None
                 ) -> None:
        self.app = app
        self.token = token
        self.max_request_bytes = max_request_bytes

    @staticmethod
    async def _answer(send: Any, status: int, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *(headers or [])]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if self.token is not None and not REST_HEALTH.match(scope.get("path", "")):
            value = headers.get(TOKEN_HEADER, "")
            presented = value.removeprefix("Bearer ") if value.startswith("Bearer ") else None
            if not token_matches(presented, self.token):
                await self._answer(send, 401, "this server needs the header 'authorization: "
                                              "Bearer <token>'",
                                   [(b"www-authenticate", b"Bearer")])
                return
        limit = self.max_request_bytes
        if limit is None:
            await self.app(scope, receive, send)
            return
        too_large = (f"the request body is larger than {limit} bytes, the most this server "
                     "takes per request (--max-request-bytes)")
        declared = headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > limit:
            await self._answer(send, 413, too_large)  # refused before reading the body
            return
        chunks: list[bytes] = []
        size = 0
        while True:  # read at most `limit` bytes, then hand the body to MLServer in one piece
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._answer(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)
