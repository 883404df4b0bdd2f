"""The edge server's sub-model as an MLServer custom runtime (docs/runtime.md).

`ServerSubModel` loads the server part (units s+1..L) of a pruned folder written by
`laimco.models.pruned.save_pruned` and answers Open Inference Protocol requests: it checks the
request's identity (`manifest_sha256` parameter) and tensors (`laimco.runtime.protocol`), decodes
and dequantizes a quantized activation (`laimco.runtime.uplink_wire`; its bits must be the
manifest's), runs the forward pass, and returns the output with the server's compute time in
the response parameters (`server_compute_ns`, int64: the protocol's parameters carry no floats
in MLServer).

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

from laimco.runtime.guard import BINARY_CALL, BinaryCall
from laimco.runtime.protocol import (
    ACTIVATION_BYTES_PARAMETER,
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
            pruned = load_pruned(folder, verify=False)  # verified just above
        except (PrunedFolderError, ModelLoadError, FileNotFoundError) as err:
            raise ServedFolderError(str(err)) from None
        self._server = pruned.server
        self._server.eval()
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
            name=self.name, platform="laimco-split-server", versions=[iface.manifest_sha256],
            inputs=[MetadataTensor(**spec.metadata()) for spec in iface.inputs],
            outputs=[MetadataTensor(**iface.output.metadata())],
            parameters=Parameters(model=iface.model, family=iface.family, split=iface.split,
                                  n_units=iface.n_units, manifest_sha256=iface.manifest_sha256,
                                  **{BITS_PARAMETER: q.bits if iface.quantized else 32,
                                     GRANULARITY_PARAMETER: q.granularity,
                                     "coding": iface.uplink.coding}))

    def _decode(self, payload: InferenceRequest, call: BinaryCall | None
                ) -> dict[str, np.ndarray[Any, Any]]:
        """The request's tensors: binary ones as decoded by the guard, typed ones from
        MLServer's payload."""
        raw = call.inputs if call is not None else {}
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for inp in payload.inputs:
            if inp.name in arrays:
                raise CrossingError(f"input {inp.name!r} is given twice")
            spec = check_header(self._interface, inp.name, str(inp.datatype), list(inp.shape),
                                self._limits)
            if inp.name in raw:
                arrays[inp.name] = raw[inp.name]
                continue
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

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        call = BINARY_CALL.get()  # set by the guard for binary requests, None otherwise
        parameters = payload.parameters.model_dump() if payload.parameters else {}
        try:
            check_identity(self._interface, parameters.get(MANIFEST_PARAMETER))
            check_uplink(self._interface, parameters.get(BITS_PARAMETER),
                         parameters.get(GRANULARITY_PARAMETER))
            arrays = self._decode(payload, call)
            check_arrays(self._interface, arrays, self._limits)
            received = activation_bytes(arrays)
            if self._interface.quantized:
                arrays = {HIDDEN: hidden_from_tensors(arrays, self._interface),
                          MASK: arrays[MASK]}
        except IdentityError as err:
            raise MLServerError(str(err), status.HTTP_422_UNPROCESSABLE_ENTITY) from None
        except CrossingError as err:
            raise InferenceError(str(err)) from None
        output, compute_ns = await self._run_forward(arrays)
        try:
            self._check_output(output)
        except CrossingError as err:
            raise InferenceError(str(err)) from None
        name = self._interface.output.name
        if call is not None:  # a binary request: the guard sends the array back raw
            call.outputs[name] = output
            values: list[float] = []
        else:
            values = output.ravel().tolist()
        encoded = ResponseOutput.model_construct(  # trusted values: skip re-validation
            name=name, shape=list(output.shape), datatype="FP32", parameters=None,
            data=TensorData.model_construct(values))
        handler_ns = time.perf_counter_ns() - started
        return InferenceResponse(
            model_name=self.name, model_version=self.version, outputs=[encoded],
            parameters=Parameters(**{SERVER_COMPUTE_PARAMETER: int(compute_ns),
                                     SERVER_HANDLER_PARAMETER: int(handler_ns),
                                     ACTIVATION_BYTES_PARAMETER: received,
                                     MANIFEST_PARAMETER: self._interface.manifest_sha256}))
