"""What crosses the network between the device and the edge server, as Open Inference Protocol
(KServe v2) tensors, and the checks a request must pass (docs/design.md §7).

The server sub-model of a split s (units s+1..L) takes what `laimco.models.split.DevicePart`
returns:

| split | inputs (name, datatype, shape; -1 = any size) |
|---|---|
| s = 0 (text) | `input_ids` INT64 [-1, -1], `attention_mask` INT64 [-1, -1] |
| s = 0 (ViT) | `pixel_values` FP32 [-1, C, S, S] |
| 0 < s < L (text) | `hidden_states` FP32 [-1, -1, H], `attention_mask` INT64 [-1, -1] |
| 0 < s < L (ViT) | `hidden_states` FP32 [-1, -1, H] |

When the pruned folder's manifest sets `activation_bits` b < 32 (text models, 0 < s < L), the
hidden states travel quantized (`laimco.uplink.quantizer`, docs/theory.md §6), real tokens only
(the rows whose attention_mask is 1, batch-major), with `attention_mask` INT64 [-1, -1] as above:

| b, coding | activation tensors |
|---|---|
| 16, none | `hidden_states` FP16 [n, H] |
| 8/6/4/2, none | `hidden_codes` UINT8 [n, ⌈H·b/8⌉], `hidden_scales` FP32 [n] (token) or [1] |
| any b < 32, zstd | `hidden_payload` UINT8 [n_bytes]: one zstd frame of codes ‖ scales |

with n the number of real tokens; the request parameters `activation_bits` (int64) and
`activation_granularity` (string) must equal the manifest's (`laimco.runtime.uplink_wire`
encodes and decodes these tensors).

and returns one tensor `output` FP32: the normalized sentence embedding [-1, H] (BERT), the
logits [-1, -1, V] (GPT-2, LLaMA) or the [CLS] state [-1, H] (ViT). At s = L nothing is served:
the device holds the output.

A request also carries the parameter `manifest_sha256`: the SHA-256 of the `manifest.json` of
the pruned folder the client's device part came from. The server answers only requests built
for the folder it hosts, so a client never mixes its device part with another split, model or
pruning. This module is numpy only: both the server runtime and the client use it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laimco.uplink.coding import CODINGS, Coding, CodingError
from laimco.uplink.quantizer import QuantizerSettings, row_bytes

MANIFEST_PARAMETER = "manifest_sha256"
SERVER_COMPUTE_PARAMETER = "server_compute_ns"  # the server part's forward pass, in ns
SERVER_HANDLER_PARAMETER = "server_handler_ns"  # decode + checks + forward + encode, in ns
SERVER_CALL_PARAMETER = "server_call_ns"  # the whole call inside the server process, in ns
BITS_PARAMETER = "activation_bits"  # int64: bits per element of the activation sent
GRANULARITY_PARAMETER = "activation_granularity"  # "token" | "tensor"
ACTIVATION_BYTES_PARAMETER = "server_activation_bytes"  # bytes of activation tensors received
BATCH_PARAMETER = "server_batch_requests"  # requests in the forward pass that answered this one
HIDDEN, CODES, SCALES, PAYLOAD, MASK = ("hidden_states", "hidden_codes", "hidden_scales",
                                        "hidden_payload", "attention_mask")
ACTIVATION_TENSORS = (HIDDEN, CODES, SCALES, PAYLOAD)
OUTPUT_NAME = "output"
NUMPY_DTYPE: dict[str, np.dtype[Any]] = {"FP32": np.dtype(np.float32), "INT64": np.dtype(np.int64),
               "FP64": np.dtype(np.float64), "FP16": np.dtype(np.float16),
               "INT32": np.dtype(np.int32), "INT16": np.dtype(np.int16),
               "INT8": np.dtype(np.int8), "UINT8": np.dtype(np.uint8),
               "UINT16": np.dtype(np.uint16), "UINT32": np.dtype(np.uint32),
               "UINT64": np.dtype(np.uint64), "BOOL": np.dtype(np.bool_)}
DATATYPE_OF: dict[np.dtype[Any], str] = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64",
                                         np.dtype(np.float16): "FP16", np.dtype(np.uint8): "UINT8"}


class CrossingError(ValueError):
    """A request whose tensors do not fit the server part; the message says what was expected
    (sent back as INVALID_ARGUMENT)."""


class IdentityError(ValueError):
    """A request built for another pruned folder (split, model or pruning); sent back as
    FAILED_PRECONDITION."""


def manifest_sha256(folder: str | Path) -> str:
    """SHA-256 (hex) of a pruned folder's manifest.json: the identity of the split, the model,
    the pruning and (through the files' own SHA-256s in the manifest) the weights."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no manifest.json; give a folder written by "
                                "`laimco prune` (or `laimco deploy`)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


FLOAT32 = QuantizerSettings(32)  # the activation as it is


@dataclass(frozen=True)
class UplinkSettings:
    """How the activation crosses the link: the quantizer's settings (bits 32 = float32 as it
    is) and the lossless coding of the quantized payload."""

    quantizer: QuantizerSettings = FLOAT32
    coding: Coding = "none"

    def __post_init__(self) -> None:
        if self.coding not in CODINGS:
            raise CodingError(f"coding {self.coding!r} is not supported: choose one of "
                              f"{', '.join(CODINGS)}")
        if self.coding != "none" and self.quantizer.bits == 32:
            raise CodingError("coding 'zstd' compresses a quantized activation: give activation "
                              "bits 16, 8, 6, 4 or 2 with it, or coding 'none'")

    @property
    def quantized(self) -> bool:
        return self.quantizer.bits < 32

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> UplinkSettings:
        """The settings a manifest records (a manifest without them: float32, as before)."""
        return cls(QuantizerSettings(int(manifest.get("activation_bits", 32)),
                                     manifest.get("activation_granularity", "token"),
                                     float(manifest.get("activation_clip", 1.0))),
                   manifest.get("coding", "none"))


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the protocol: name, v2 datatype and shape (-1 = dynamic). `batched`: the
    first two dimensions are (batch, tokens); the quantized activation's are not."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    batched: bool = True

    @property
    def dtype(self) -> np.dtype[Any]:
        return NUMPY_DTYPE[self.datatype]

    def describe(self) -> str:
        dims = ", ".join("*" if d < 0 else str(d) for d in self.shape)
        return f"{self.name} {self.datatype} [{dims}]"

    def metadata(self) -> dict[str, Any]:
        """The model-settings / model-metadata form of the tensor."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Limits:
    """What one request may carry; larger requests are refused with INVALID_ARGUMENT."""

    max_batch: int = 64
    max_tokens: int = 512
    max_request_bytes: int = 32 * 2**20

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_tokens", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Interface:
    """The contract of one served sub-model: its inputs, output and identity."""

    model: str
    family: str
    split: int
    n_units: int
    manifest_sha256: str
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec
    vocab_size: int | None = None
    takes_text: bool = True  # the crossing carries the attention mask (text families)
    hidden: int = 0
    uplink: UplinkSettings = UplinkSettings()

    @property
    def quantized(self) -> bool:
        """Whether the activation crosses quantized (b < 32 at 0 < s < L)."""
        return 0 < self.split < self.n_units and self.uplink.quantized

    def describe_inputs(self) -> str:
        return ", ".join(spec.describe() for spec in self.inputs)


def activation_specs(uplink: UplinkSettings, hidden: int) -> tuple[TensorSpec, ...]:
    """The tensors that carry the hidden states across the cut (the mask aside)."""
    q = uplink.quantizer
    if not uplink.quantized:
        return (TensorSpec(HIDDEN, "FP32", (-1, -1, hidden)),)
    if uplink.coding == "zstd":
        return (TensorSpec(PAYLOAD, "UINT8", (-1,), batched=False),)
    if q.bits == 16:
        return (TensorSpec(HIDDEN, "FP16", (-1, hidden), batched=False),)
    scales = (-1,) if q.granularity == "token" else (1,)
    return (TensorSpec(CODES, "UINT8", (-1, row_bytes(hidden, q.bits)), batched=False),
            TensorSpec(SCALES, "FP32", scales, batched=False))


def interface_for(manifest: Mapping[str, Any], config: Any, sha: str) -> Interface:
    """The server part's tensors for a pruned folder's manifest and transformers config. The
    family's facts (text or pixels, logits per token) are asked of its adapter."""
    from laimco.models.families import family_adapter  # imported here: the adapters need torch

    family, split, n_units = str(manifest["family"]), int(manifest["split"]), int(
        manifest["n_units"])
    if not 0 <= split < n_units:
        raise ValueError(f"split {split} of {manifest['model']} runs every unit on the device "
                         f"(L = {n_units}): there is nothing to serve")
    adapter = family_adapter(family)
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0))
    vocab = getattr(config, "vocab_size", None)
    uplink = UplinkSettings.from_manifest(manifest)
    text = adapter.takes_text
    if uplink.quantized and split > 0 and not text:
        raise ValueError(f"{manifest['model']} ({family}) has no attention mask to cross the "
                         "cut with a quantized activation: quantized uplinks need a text "
                         "model; prune it with activation bits 32")
    inputs: tuple[TensorSpec, ...]
    if split == 0 and text:
        inputs = (TensorSpec("input_ids", "INT64", (-1, -1)), TensorSpec(MASK, "INT64", (-1, -1)))
    elif split == 0:
        channels, side = int(config.num_channels), int(config.image_size)
        inputs = (TensorSpec("pixel_values", "FP32", (-1, channels, side, side)),)
    else:
        inputs = activation_specs(uplink, hidden)
        if text:
            inputs += (TensorSpec(MASK, "INT64", (-1, -1)),)
    if adapter.output_per_token:
        output = TensorSpec(OUTPUT_NAME, "FP32", (-1, -1, int(vocab or 0)))
    else:
        output = TensorSpec(OUTPUT_NAME, "FP32", (-1, hidden))
    return Interface(model=str(manifest["model"]), family=family, split=split, n_units=n_units,
                     manifest_sha256=sha, inputs=inputs, output=output,
                     vocab_size=int(vocab) if vocab is not None else None, takes_text=text,
                     hidden=hidden, uplink=uplink)


def check_uplink(interface: Interface, bits: object, granularity: object) -> None:
    """CrossingError unless the request's `activation_bits` (and granularity) are the
    manifest's; a request without them means float32."""
    want = interface.uplink.quantizer if interface.quantized else FLOAT32
    sent_bits = 32 if bits is None else bits
    if sent_bits != want.bits:
        raise CrossingError(f"the request sends activation_bits {sent_bits}, but this server's "
                            f"pruned folder (manifest) records activation_bits {want.bits}: "
                            f"quantize with {want.bits} bits, or serve a folder pruned with "
                            f"--activation-bits {sent_bits}")
    if want.integer and granularity not in (None, want.granularity):
        raise CrossingError(f"the request sends activation_granularity {granularity!r}, but "
                            f"the manifest records {want.granularity!r}")


def check_identity(interface: Interface, sent: object) -> None:
    """IdentityError unless the request names the manifest this server hosts."""
    hosted = (f"this server hosts {interface.model} split {interface.split} "
              f"(manifest {interface.manifest_sha256[:12]}…)")
    if not isinstance(sent, str) or not sent:
        raise IdentityError(f"the request has no '{MANIFEST_PARAMETER}' parameter; {hosted}: "
                            "send the SHA-256 of the manifest.json your device part came from")
    if sent != interface.manifest_sha256:
        raise IdentityError(f"the request was built for manifest {sent[:12]}…, but {hosted}; "
                            "run the device part of the same pruned folder as the server")


def check_header(interface: Interface, name: str, datatype: str, shape: list[int],
                 limits: Limits) -> TensorSpec:
    """Check one input's name, datatype and shape (before its values are decoded)."""
    specs = {spec.name: spec for spec in interface.inputs}
    if name not in specs:
        raise CrossingError(f"unexpected input {name!r}; this server part (split "
                            f"{interface.split}) takes {interface.describe_inputs()}")
    spec = specs[name]
    if datatype != spec.datatype:
        raise CrossingError(f"input {name!r} has datatype {datatype}; expected "
                            f"{spec.describe()}")
    if len(shape) != len(spec.shape) or any(
            want >= 0 and got != want for got, want in zip(shape, spec.shape, strict=False)):
        raise CrossingError(f"input {name!r} has shape {list(shape)}; expected "
                            f"{spec.describe()}")
    if any(d < 1 for d in shape):
        raise CrossingError(f"input {name!r} has shape {list(shape)}; every dimension must be "
                            "at least 1")
    if spec.batched and shape[0] > limits.max_batch:
        raise CrossingError(f"input {name!r} has a batch of {shape[0]}; this server takes at "
                            f"most {limits.max_batch} inputs per request (--max-batch)")
    rows = limits.max_batch * limits.max_tokens
    if not spec.batched and name != PAYLOAD and shape[0] > rows:
        raise CrossingError(f"input {name!r} has {shape[0]} rows; this server takes at most "
                            f"{rows} tokens per request (--max-batch × --max-tokens)")
    if spec.batched and interface.takes_text and len(shape) >= 2 and shape[1] > limits.max_tokens:
        raise CrossingError(f"input {name!r} has {shape[1]} tokens; this server takes at most "
                            f"{limits.max_tokens} tokens per input (--max-tokens)")
    return spec


def check_arrays(interface: Interface, arrays: Mapping[str, np.ndarray[Any, Any]],
                 limits: Limits) -> None:
    """Check a whole request: every input present with the right header, consistent batch and
    token dimensions, finite floats, 0/1 masks and token ids inside the vocabulary."""
    missing = [spec.name for spec in interface.inputs if spec.name not in arrays]
    if missing:
        raise CrossingError(f"missing input(s) {', '.join(missing)}; this server part takes "
                            f"{interface.describe_inputs()}")
    total = 0
    for name, array in arrays.items():
        check_header(interface, name, DATATYPE_OF.get(array.dtype, str(array.dtype)),
                     list(array.shape), limits)
        total += array.nbytes
    if total > limits.max_request_bytes:
        raise CrossingError(f"the request carries {total} bytes of tensors; this server takes "
                            f"at most {limits.max_request_bytes} (--max-request-bytes)")
    batched = {spec.name for spec in interface.inputs if spec.batched}
    lead = {name: array.shape[:2] if interface.takes_text else array.shape[:1]
            for name, array in arrays.items() if name in batched}
    if len(set(lead.values())) > 1:
        shown = ", ".join(f"{n} {list(s)}" for n, s in lead.items())
        raise CrossingError(f"the inputs disagree on (batch, tokens): {shown}; they must "
                            "describe the same sequences")
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            raise CrossingError(f"input {name!r} has {bad} NaN or infinite value(s); expected "
                                "finite FP32 activations")
    mask = arrays.get("attention_mask")
    if mask is not None and not ((mask == 0) | (mask == 1)).all():
        raise CrossingError("input 'attention_mask' must hold only 0 (padding) and 1 (token)")
    ids = arrays.get("input_ids")
    if ids is not None and interface.vocab_size is not None and (
            ids.min() < 0 or ids.max() >= interface.vocab_size):
        raise CrossingError(f"input 'input_ids' must lie in 0..{interface.vocab_size - 1} "
                            f"(the vocabulary); got {int(ids.min())}..{int(ids.max())}")


MAX_RANK = 8  # the protocol's tensors have rank 2..4; numpy itself stops at 64


def shape_problem(name: str, datatype: str, shape: list[int],
                  max_request_bytes: int) -> str | None:
    """Why a tensor header cannot be decoded at all, or None: rank 1..MAX_RANK, every dimension
    at least 1, and (for a fixed-size datatype) at most `max_request_bytes` of values. Checked
    on the header alone, before anything is allocated."""
    if not 1 <= len(shape) <= MAX_RANK:
        return (f"input {name!r} has {len(shape)} dimensions; tensors of this protocol have "
                f"1 to {MAX_RANK}")
    if any(d < 1 for d in shape):
        return (f"input {name!r} has shape {list(shape)}; every dimension must be at least 1")
    dtype = NUMPY_DTYPE.get(datatype)
    if dtype is not None and math.prod(shape) * dtype.itemsize > max_request_bytes:
        return (f"input {name!r} with shape {list(shape)} {datatype} would hold "
                f"{math.prod(shape) * dtype.itemsize} bytes; this server takes at most "
                f"{max_request_bytes} bytes per request (--max-request-bytes)")
    return None


def raw_size_problem(name: str, datatype: str, shape: list[int], n_bytes: int) -> str | None:
    """Why a raw (binary) tensor of `n_bytes` cannot have this datatype and shape, or None."""
    if datatype not in NUMPY_DTYPE:
        return f"input {name!r} has datatype {datatype!r}, which is not a fixed-size v2 datatype"
    if any(d < 0 for d in shape):
        return f"input {name!r} has a negative dimension in its shape {list(shape)}"
    expected = math.prod(shape) * NUMPY_DTYPE[datatype].itemsize
    if expected != n_bytes:
        cut = " (truncated message?)" if n_bytes < expected else ""
        return (f"input {name!r}: shape {list(shape)} {datatype} needs {expected} bytes of raw "
                f"content, got {n_bytes}{cut}")
    return None
