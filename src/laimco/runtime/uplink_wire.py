"""The quantized activation as Open Inference Protocol tensors (docs/runtime.md, "Quantized
uplink"; the quantizer: docs/theory.md §6).

The device drops the padding rows (attention_mask = 0) of the hidden states (batch, T, H),
quantizes the n real rows, batch-major, with `laimco.uplink.quantizer.quantize` and sends

- b = 16: `hidden_states` FP16 [n, H];
- b ∈ {8, 6, 4, 2}: `hidden_codes` UINT8 [n, ⌈H·b/8⌉] (offset-binary codes, bit-packed
  little-endian per row) and `hidden_scales` FP32 [n] (one per token) or [1] (per tensor);
- coding "zstd" (any b < 32): `hidden_payload` UINT8 [n_bytes], one zstd frame (with its content
  size) of the codes' bytes, row-major, followed by the scales as little-endian float32
  (none at b = 16): exactly payload_bits(n, H, settings) / 8 bytes once decoded;

with `attention_mask` INT64 [batch, T] as for float32. The server counts n in the mask, checks
every size against it before decoding (`QuantizedActivation.from_wire`, `coding.decode` with the
expected size as its limit), dequantizes and puts the rows back into a zero (batch, T, H)
tensor. numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from laimco.runtime.protocol import (
    ACTIVATION_TENSORS,
    CODES,
    HIDDEN,
    MASK,
    PAYLOAD,
    SCALES,
    CrossingError,
    Interface,
    UplinkSettings,
)
from laimco.uplink.coding import CodingError, decode, encode
from laimco.uplink.quantizer import (
    QuantizationError,
    QuantizedActivation,
    dequantize,
    payload_bits,
    quantize,
    row_bytes,
)

Arrays = dict[str, np.ndarray[Any, Any]]


def activation_tensors(hidden: np.ndarray[Any, Any], mask: np.ndarray[Any, Any],
                       uplink: UplinkSettings) -> Arrays:
    """The tensors the device sends for hidden states (batch, T, H) and their mask."""
    rows = np.asarray(hidden, dtype=np.float32)[np.asarray(mask).astype(bool)]
    sent = quantize(rows, uplink.quantizer)
    tensors: Arrays
    if uplink.coding == "zstd":
        raw = sent.codes.tobytes() + sent.scales.astype("<f4").tobytes()
        tensors = {PAYLOAD: np.frombuffer(encode(raw, "zstd"), dtype=np.uint8)}
    elif uplink.quantizer.bits == 16:
        tensors = {HIDDEN: sent.codes.view("<f2").reshape(sent.n_tokens, sent.hidden)}
    else:
        tensors = {CODES: sent.codes, SCALES: sent.scales}
    return {**tensors, MASK: np.ascontiguousarray(mask, dtype=np.int64)}


def activation_bytes(tensors: Arrays) -> int:
    """Bytes of the tensors that carry the activation (the attention mask aside)."""
    return sum(int(tensors[name].nbytes) for name in ACTIVATION_TENSORS if name in tensors)


def _received(arrays: Arrays, interface: Interface, n_tokens: int) -> QuantizedActivation:
    """The payload of a request, every size checked against the n real tokens of its mask."""
    settings, hidden = interface.uplink.quantizer, interface.hidden
    expected = payload_bits(n_tokens, hidden, settings) // 8
    if PAYLOAD in arrays:
        try:
            raw = decode(arrays[PAYLOAD].tobytes(), "zstd", expected)
        except CodingError as err:
            raise CrossingError(f"input {PAYLOAD!r}: {err}") from None
        if len(raw) != expected:
            raise CrossingError(f"input {PAYLOAD!r} decodes to {len(raw)} bytes; {n_tokens} real "
                                f"tokens at {settings.bits} bits need {expected}")
        split = n_tokens * row_bytes(hidden, settings.bits)
        codes = np.frombuffer(raw[:split], dtype=np.uint8).reshape(n_tokens, -1)
        scales = np.frombuffer(raw[split:], dtype="<f4").astype(np.float32)
    elif settings.bits == 16:
        half = np.ascontiguousarray(arrays[HIDDEN])
        codes = half.view(np.uint8).reshape(half.shape[0], -1)
        scales = np.zeros(0, dtype=np.float32)
    else:
        codes, scales = arrays[CODES], arrays[SCALES]
    if codes.shape[0] != n_tokens:
        raise CrossingError(f"the activation has {codes.shape[0]} rows but the attention mask "
                            f"has {n_tokens} real tokens: send the rows whose mask is 1")
    try:
        return QuantizedActivation.from_wire(codes, scales, settings, hidden)
    except QuantizationError as err:
        raise CrossingError(f"quantized activation: {err}") from None


def hidden_from_tensors(arrays: Arrays, interface: Interface) -> np.ndarray[Any, Any]:
    """The (batch, T, H) float32 hidden states of a checked request: dequantized real rows,
    zeros at the padding positions."""
    mask = np.asarray(arrays[MASK]).astype(bool)
    rows = dequantize(_received(arrays, interface, int(mask.sum())))
    out = np.zeros((*mask.shape, interface.hidden), dtype=np.float32)
    out[mask] = rows
    return out
