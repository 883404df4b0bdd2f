"""The edge server's sub-model as an MLServer custom runtime (docs/runtime.md).

`ServerSubModel` loads the server part (units s+1..L) of a pruned folder written by
`laimco.models.pruned.save_pruned` and answers Open Inference Protocol requests: it checks the
request's identity (`manifest_sha256` parameter) and tensors (`laimco.runtime.protocol`), decodes
and dequantizes a quantized activation (`laimco.runtime.uplink_wire`; its bits must be the
manifest's), runs the forward pass (for a sentence-embedding model only up to the last real
token of the pass: `laimco.runtime.padding`), and returns the output with the server's compute
time in the response parameters (`server_compute_ns`, int64: the protocol's parameters carry no
floats in MLServer).

Where the forward runs (docs/runtime.md, "Protocol"): a pass predicted to take at most
INLINE_FORWARD_MAX_S (50 ms, from the last measured cost per position) runs on the event loop's
thread, as MLServer runs its own runtimes' predict — a worker thread would add ≈ 0.45 ms per
request; a longer one runs in a single worker thread, so that health checks and refusals are
answered while it runs (a 32 × 256-token pass held them 8–10 s before). Passes never overlap.

An output that is not finite (finite inputs that overflow, e.g. activations of 3e38) is
refused with INVALID_ARGUMENT, never returned as OK. A folder that cannot be served raises
`ServedFolderError` from `load` and is recorded in LOAD_FAILURES, which `launch` turns into
exit code 2 (MLServer 1.7.1 itself would stop with 0).

The model-settings that point MLServer here are written by `laimco.runtime.repository`.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from fastapi import status
from mlserver import MLModel
from mlserver.errors import InferenceError, MLServerError
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
    ResponseOutput,
    TensorData,
)

from laimco.runtime.guard import CALL_PARAMETER, PENDING_CALLS, BinaryCall
from laimco.runtime.padding import cut_to_positions, trims_padding, used_positions
from laimco.runtime.protocol import (
    ACTIVATION_BYTES_PARAMETER,
    BATCH_PARAMETER,
    BITS_PARAMETER,
    GRANULARITY_PARAMETER,
    HIDDEN,
    MANIFEST_PARAMETER,
    MASK,
    SERVER_COMPUTE_PARAMETER,
    SERVER_HANDLER_PARAMETER,
    CrossingError,
    IdentityError,
    Interface,
    Limits,
    check_arrays,
    check_header,
    check_identity,
    check_uplink,
    interface_for,
    manifest_sha256,
)
from laimco.runtime.uplink_wire import activation_bytes, hidden_from_tensors

_Prepared = tuple[BinaryCall, dict[str, np.ndarray[Any, Any]], int]  # call, arrays, bytes received
# messages of folders that failed to load in this process (read by `launch` for its exit code)
LOAD_FAILURES: list[str] = []
# a forward predicted to take longer than this runs in a worker thread (health stays answered)
INLINE_FORWARD_MAX_S = 0.05


class ServedFolderError(MLServerError):  # type: ignore[misc]
    """The pruned folder cannot be served (malformed manifest, changed or unreadable weights);
    the message says what to change."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status.HTTP_422_UNPROCESSABLE_ENTITY)


class ServerSubModel(MLModel):  # type: ignore[misc]
    """MLServer runtime hosting the server part of one pruned split model."""

    async def load(self) -> bool:
        try:
            self._load()
        except Exception as err:
            lines = str(err).splitlines()
            message = str(err) if isinstance(err, ServedFolderError) else (
                f"{type(err).__name__}: {' '.join(lines[:2])}{' …' if len(lines) > 2 else ''}"
                " (do config.json and the weights come from the same `laimco prune`?)")
            LOAD_FAILURES.append(message)
            raise ServedFolderError(message) from None
        return True

    def _load(self) -> None:
        import torch

        from laimco.models.loading import ModelLoadError, read_config
        from laimco.models.pruned import load_pruned
        from laimco.runtime.pruned_folder import PrunedFolderError, check_pruned_folder

        parameters = self.settings.parameters
        if parameters is None or not parameters.uri:
            raise ServedFolderError("model-settings need parameters.uri: the pruned folder to "
                                    "serve")
        folder = Path(parameters.uri)
        try:
            manifest = check_pruned_folder(folder)  # names, SHA-256s, headers: before loading
            sha = manifest_sha256(folder)
            if parameters.version and parameters.version != sha:
                raise ServedFolderError(f"{folder}/manifest.json changed since the "
                                        "model-settings were written (version mismatch); "
                                        "regenerate them with `laimco serve`")
            extra = dict(parameters.extra or {})
            self._limits = Limits(**extra.get("limits", {}))
            self._interface = interface_for(manifest.model_dump(), read_config(folder), sha)
            self._manifests = frozenset([sha, *extra.get("accepted_manifests", [])])
            pruned = load_pruned(folder, verify=False)  # verified just above
        except (PrunedFolderError, ModelLoadError, FileNotFoundError) as err:
            raise ServedFolderError(str(err)) from None
        self._server = pruned.server
        self._server.eval()
        self._trim_padding = (bool(extra.get("cut_padding", True))  # runtime/padding.py
                              and trims_padding(self._interface.family))
        self._torch = torch
        self._forward_lock = asyncio.Lock()  # one forward at a time, inline or in the thread
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="laimco-forward")
        self._ns_per_position: float | None = None  # last measured cost, for the next choice

    async def unload(self) -> bool:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False)
        return True

    @property
    def interface(self) -> Interface:
        return self._interface

    async def metadata(self) -> MetadataModelResponse:
        iface = self._interface
        q = iface.uplink.quantizer
        return MetadataModelResponse(
            name=self.name, platform="laimco-split-server",
            versions=[iface.manifest_sha256, *sorted(self._manifests - {iface.manifest_sha256})],
            inputs=[MetadataTensor(**spec.metadata()) for spec in iface.inputs],
            outputs=[MetadataTensor(**iface.output.metadata())],
            parameters=Parameters(model=iface.model, family=iface.family, split=iface.split,
                                  n_units=iface.n_units, manifest_sha256=iface.manifest_sha256,
                                  **{BITS_PARAMETER: q.bits if iface.quantized else 32,
                                     GRANULARITY_PARAMETER: q.granularity,
                                     "coding": iface.uplink.coding}))

    def _decode(self, payload: InferenceRequest) -> dict[str, np.ndarray[Any, Any]]:
        """The tensors of a request with typed contents (binary ones come decoded by the
        guard)."""
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for inp in payload.inputs:
            if inp.name in arrays:
                raise CrossingError(f"input {inp.name!r} is given twice")
            spec = check_header(self._interface, inp.name, str(inp.datatype), list(inp.shape),
                                self._limits)
            data = getattr(inp.data, "root", inp.data)
            flat = np.asarray(data, dtype=spec.dtype)
            if flat.size != int(np.prod(inp.shape)):
                raise CrossingError(f"input {inp.name!r}: shape {list(inp.shape)} needs "
                                    f"{int(np.prod(inp.shape))} values, got {flat.size}")
            arrays[inp.name] = flat.reshape(inp.shape)
        return arrays

    def _forward(self, arrays: dict[str, np.ndarray[Any, Any]]) -> tuple[np.ndarray[Any, Any],
                                                                          int]:
        torch = self._torch
        crossing = {name: torch.from_numpy(array) for name, array in arrays.items()}
        start = time.perf_counter_ns()
        with torch.no_grad():
            output = self._server(crossing)
        elapsed = time.perf_counter_ns() - start
        return output.detach().to(torch.float32).contiguous().numpy(), elapsed

    async def _run_forward(self, arrays: dict[str, np.ndarray[Any, Any]]
                           ) -> tuple[np.ndarray[Any, Any], int]:
        """The forward pass, on the event loop's thread when the last measured cost per
        position predicts at most INLINE_FORWARD_MAX_S (no thread hand-over for the usual small
        request), else in the worker thread so that health checks and refusals are answered
        while it runs. The first request, with nothing measured yet, goes to the thread."""
        first = next(iter(arrays.values()))
        positions = int(np.prod(first.shape[:2])) if first.ndim >= 2 else int(first.shape[0])
        per = self._ns_per_position
        inline = per is not None and per * positions <= INLINE_FORWARD_MAX_S * 1e9
        async with self._forward_lock:
            if inline:
                output, elapsed = self._forward(arrays)
            else:
                loop = asyncio.get_running_loop()
                output, elapsed = await loop.run_in_executor(self._executor, self._forward,
                                                             arrays)
        self._ns_per_position = elapsed / max(positions, 1)
        return output, elapsed

    @staticmethod
    def _check_output(output: np.ndarray[Any, Any]) -> None:
        finite = np.isfinite(output)
        if not finite.all():
            raise CrossingError(
                f"the server part's output has {int(output.size - finite.sum())} NaN or "
                "infinite value(s) for these inputs: the activations are finite but too large "
                "for FP32 arithmetic (overflow); send the device part's own activations")

    def _check_request(self, parameters: dict[str, Any]) -> None:
        """The request's identity and uplink settings (IdentityError / CrossingError)."""
        check_identity(self._interface, self._accepted(parameters.get(MANIFEST_PARAMETER)))
        check_uplink(self._interface, parameters.get(BITS_PARAMETER),
                     parameters.get(GRANULARITY_PARAMETER))

    def _checked(self, arrays: dict[str, np.ndarray[Any, Any]]
                 ) -> tuple[dict[str, np.ndarray[Any, Any]], int]:
        """One request's tensors checked; the arrays the server part takes (a quantized
        activation dequantized into its (batch, T, H) positions) and the activation bytes
        received (CrossingError says what is wrong)."""
        check_arrays(self._interface, arrays, self._limits)
        received = activation_bytes(arrays)
        if self._interface.quantized:
            arrays = {HIDDEN: hidden_from_tensors(arrays, self._interface), MASK: arrays[MASK]}
        return arrays, received

    def _accepted(self, sent: object) -> object:
        """The hosted manifest when the request names one of the folders whose server part
        this model is (a fleet's devices that share it, `accepted_manifests`), else as sent."""
        return self._interface.manifest_sha256 if sent in self._manifests else sent

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Answer one request, or a batch MLServer's adaptive batching merged: the binary calls
        the guard registered (their ids in the inputs' `laimco_call` parameter, in request
        order) are checked one by one, run together (one forward per tensor shape) and each
        gets its own output rows (docs/runtime.md, "Serving a fleet")."""
        started = time.perf_counter_ns()
        calls = self._pending_calls(payload)
        if not calls:  # typed contents: MLServer's own path, the (merged) request as one
            parameters = payload.parameters.model_dump() if payload.parameters else {}
            try:
                self._check_request(parameters)
                arrays, received = self._checked(self._decode(payload))
            except IdentityError as err:
                raise MLServerError(str(err), status.HTTP_422_UNPROCESSABLE_ENTITY) from None
            except CrossingError as err:
                raise InferenceError(str(err)) from None
            call = BinaryCall(inputs={})
            await self._run_group([(call, arrays, received)])
            if call.error is not None:
                raise InferenceError(call.error[1])
            return self._response(call.outputs[self._interface.output.name], call.reply,
                                  started, typed=True)
        first = payload.inputs[0]
        if sum(int(c.inputs[first.name].shape[0]) if first.name in c.inputs else 0
               for c in calls) != int(first.shape[0]):  # typed requests batched with binary ones
            raise InferenceError("requests with typed contents were batched with binary ones on "
                                 "this model: send every request's tensors binary (as "
                                 "tritonclient's set_data_from_numpy does)")
        ready = [self._prepare(call, single=len(calls) == 1) for call in calls]
        groups: dict[tuple[Any, ...], list[_Prepared]] = {}
        for item in ready:
            if item is not None:
                key = tuple((name, array.shape[1:]) for name, array in item[1].items())
                groups.setdefault(key, []).append(item)
        for members in groups.values():
            await self._run_group(members)
        if len(calls) == 1 and calls[0].error is not None:
            raise InferenceError(calls[0].error[1])
        handler_ns = time.perf_counter_ns() - started
        for call in calls:
            call.reply[SERVER_HANDLER_PARAMETER] = handler_ns
        answered = next((c for c in calls if c.error is None), calls[0])
        rows = sum(int(next(iter(c.outputs.values())).shape[0]) for c in calls if c.outputs)
        empty = np.zeros((rows, *self._output_tail(answered)), np.float32)
        return self._response(empty, answered.reply, started, typed=False)

    def _pending_calls(self, payload: InferenceRequest) -> list[BinaryCall]:
        """The guard's binary calls behind this (possibly merged) request, in request order."""
        if not payload.inputs or payload.inputs[0].parameters is None:
            return []
        tag = payload.inputs[0].parameters.model_dump().get(CALL_PARAMETER)
        ids = [tag] if isinstance(tag, str) else list(tag or [])
        return [PENDING_CALLS[i] for i in ids if i in PENDING_CALLS]

    def _prepare(self, call: BinaryCall, single: bool) -> _Prepared | None:
        """A call checked and decoded, or None with its error recorded (a lone request raises
        as MLServer expects, so its status code is MLServer's)."""
        try:
            self._check_request(call.parameters)
            for name, array in call.inputs.items():
                check_header(self._interface, name, call.datatypes.get(name, ""),
                             list(array.shape), self._limits)
            arrays, received = self._checked(call.inputs)
        except IdentityError as err:
            if single:
                raise MLServerError(str(err), status.HTTP_422_UNPROCESSABLE_ENTITY) from None
            call.error = (grpc.StatusCode.FAILED_PRECONDITION, str(err))
            return None
        except CrossingError as err:
            if single:
                raise InferenceError(str(err)) from None
            call.error = (grpc.StatusCode.INVALID_ARGUMENT, str(err))
            return None
        return call, arrays, received

    async def _run_group(self, members: list[_Prepared]) -> None:
        """One forward pass over requests of the same tensor shapes (rows concatenated along
        the first axis, positions after the pass's last real token cut where the family allows:
        runtime/padding.py); each call gets its own rows and reply parameters, or its error."""
        names = list(members[0][1])
        tensors = [arrays for _, arrays, _ in members]
        if self._trim_padding and MASK in tensors[0]:  # no pass over trailing padding
            keep = used_positions([arrays[MASK] for arrays in tensors])
            tensors = [cut_to_positions(arrays, keep) for arrays in tensors]
        merged = {name: np.concatenate([arrays[name] for arrays in tensors]) for name in names}
        output, compute_ns = await self._run_forward(merged)
        sizes = [int(arrays[names[0]].shape[0]) for _, arrays, _ in members]
        pieces = np.split(output, np.cumsum(sizes)[:-1])
        for (call, _, received), rows in zip(members, pieces, strict=True):
            try:
                self._check_output(rows)
            except CrossingError as err:
                call.error = (grpc.StatusCode.INVALID_ARGUMENT, str(err))
                continue
            call.outputs[self._interface.output.name] = rows
            call.reply = {SERVER_COMPUTE_PARAMETER: int(compute_ns),
                          ACTIVATION_BYTES_PARAMETER: received,
                          BATCH_PARAMETER: len(members)}

    def _output_tail(self, call: BinaryCall) -> tuple[int, ...]:
        if call.outputs:
            return tuple(next(iter(call.outputs.values())).shape[1:])
        return (1,)

    def _response(self, output: np.ndarray[Any, Any], reply: dict[str, int], started: int,
                  typed: bool) -> InferenceResponse:
        """The response: the output's values for a typed request, else an empty typed tensor
        (the guard sends each call's own array raw) and the parameters of the first call."""
        values = output.ravel().tolist() if typed else []
        encoded = ResponseOutput.model_construct(  # trusted values: skip re-validation
            name=self._interface.output.name, shape=list(output.shape), datatype="FP32",
            parameters=None, data=TensorData.model_construct(values))
        parameters = {SERVER_HANDLER_PARAMETER: time.perf_counter_ns() - started, **reply,
                      MANIFEST_PARAMETER: self._interface.manifest_sha256}
        return InferenceResponse(model_name=self.name, model_version=self.version,
                                 outputs=[encoded], parameters=Parameters(**parameters))
