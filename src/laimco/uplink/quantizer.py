"""Uniform quantization of the activation that crosses the split (docs/theory.md §6).

The device sends the hidden states after unit s as b-bit codes: 32 is float32 as it is, 16 a
float16 cast, and b ∈ {8, 6, 4, 2} symmetric uniform integers q ∈ [−m, m], m = 2^(b−1) − 1,
with one float32 scale per token (or per tensor), scale = clip·max|x| / m. The codes travel
offset-binary (q + m ∈ [0, 2m]), bit-packed little-endian row by row: a row of H codes takes
⌈H·b/8⌉ bytes. numpy only: the device client and the server both use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

ACTIVATION_BITS: tuple[int, ...] = (32, 16, 8, 6, 4, 2)
INTEGER_BITS: tuple[int, ...] = (8, 6, 4, 2)
Granularity = Literal["token", "tensor"]
GRANULARITIES: tuple[Granularity, ...] = ("token", "tensor")
SCALE_BITS = 32  # one float32 per scale
FLOAT16_MAX = float(np.finfo(np.float16).max)
# the clip ratios `best_clip` tries: fractions of the absolute maximum kept
CLIP_GRID: NDArray[np.float64] = np.round(np.arange(0.30, 1.0001, 0.02), 4)

FloatArray = NDArray[np.float32]
ByteArray = NDArray[np.uint8]


class QuantizationError(ValueError):
    """Settings or a payload the quantizer cannot use; the message says what is allowed."""


def _allowed_bits() -> str:
    return ", ".join(str(b) for b in ACTIVATION_BITS)


@dataclass(frozen=True)
class QuantizerSettings:
    """How an activation is quantized: bits per element, one scale per token or per tensor,
    and the fraction of the absolute maximum kept (clip ∈ (0, 1])."""

    bits: int
    granularity: Granularity = "token"
    clip: float = 1.0

    def __post_init__(self) -> None:
        if self.bits not in ACTIVATION_BITS:
            raise QuantizationError(f"activation bits {self.bits!r} is not supported: choose "
                                    f"one of {_allowed_bits()}")
        if self.granularity not in GRANULARITIES:
            raise QuantizationError(f"granularity {self.granularity!r} is not supported: "
                                    "choose 'token' or 'tensor'")
        if not (0 < self.clip <= 1) or not math.isfinite(self.clip):
            raise QuantizationError(f"clip = {self.clip!r}: give the fraction of the absolute "
                                    "maximum kept, in (0, 1]")

    @property
    def integer(self) -> bool:
        """True for the scaled integer widths (8, 6, 4, 2)."""
        return self.bits in INTEGER_BITS

    @property
    def max_code(self) -> int:
        """m = 2^(b−1) − 1, the largest |q| (integer widths)."""
        return int(2 ** (self.bits - 1) - 1)

    def n_scales(self, n_tokens: int) -> int:
        """How many float32 scales travel with n_tokens rows."""
        if not self.integer:
            return 0
        return n_tokens if self.granularity == "token" else 1


def row_bytes(hidden: int, bits: int) -> int:
    """Bytes of one packed row of `hidden` codes of `bits` bits."""
    return -(-hidden * bits // 8)


def payload_bits(n_tokens: int, hidden: int, settings: QuantizerSettings) -> int:
    """Exact bits on the wire for n_tokens rows of width `hidden`: packed codes and scales."""
    return 8 * n_tokens * row_bytes(hidden, settings.bits) + SCALE_BITS * settings.n_scales(
        n_tokens)


@dataclass(frozen=True)
class QuantizedActivation:
    """What the device sends: packed codes (n_tokens, row_bytes) and the float32 scales
    ((n_tokens,) per token, (1,) per tensor, (0,) for the float widths)."""

    settings: QuantizerSettings
    hidden: int
    codes: ByteArray
    scales: FloatArray

    @property
    def n_tokens(self) -> int:
        return int(self.codes.shape[0])

    @property
    def payload_bits(self) -> int:
        return 8 * int(self.codes.size) + SCALE_BITS * int(self.scales.size)

    @classmethod
    def from_wire(cls, codes: np.ndarray, scales: np.ndarray, settings: QuantizerSettings,
                  hidden: int) -> QuantizedActivation:
        """A received payload, checked: shapes and sizes against the settings, code range,
        finite non-negative scales. QuantizationError says what was expected."""
        if codes.dtype != np.uint8 or codes.ndim != 2:
            raise QuantizationError(f"codes must be a 2-D uint8 array (tokens, "
                                    f"{row_bytes(hidden, settings.bits)} bytes), got "
                                    f"{codes.dtype} of shape {codes.shape}")
        n_tokens, width = codes.shape
        expected = row_bytes(hidden, settings.bits)
        if width != expected:
            raise QuantizationError(f"each row of {hidden} codes at {settings.bits} bits takes "
                                    f"{expected} bytes, got {width}")
        n_scales = settings.n_scales(n_tokens)
        if scales.dtype != np.float32 or scales.shape != (n_scales,):
            raise QuantizationError(f"{settings.bits}-bit codes of {n_tokens} tokens with "
                                    f"{settings.granularity} scales need {n_scales} float32 "
                                    f"scales, got {scales.dtype} of shape {scales.shape}")
        if n_scales and not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise QuantizationError("scales must be finite and non-negative")
        received = cls(settings, hidden, codes, scales)
        if settings.integer:
            top = 2 * settings.max_code
            if n_tokens and int(_unpack(codes, hidden, settings.bits).max()) > top:
                raise QuantizationError(f"a {settings.bits}-bit code is out of range: codes are "
                                        f"0..{top} (offset binary)")
        elif n_tokens and not np.isfinite(dequantize(received)).all():
            raise QuantizationError(f"float{settings.bits} payload has non-finite values")
        return received


def _pack(codes: NDArray[np.uint8], bits: int) -> ByteArray:
    """(n, H) codes < 2^bits → (n, ⌈H·bits/8⌉) bytes, little-endian bit stream per row."""
    n, hidden = codes.shape
    if bits == 8:
        return codes
    if bits in (4, 2) and hidden % (8 // bits) == 0:  # fast path: whole bytes of codes
        packed = codes[:, 0::8 // bits].copy()
        for j in range(1, 8 // bits):
            packed |= codes[:, j::8 // bits] << np.uint8(j * bits)
        return packed
    if bits == 6 and hidden % 4 == 0:  # fast path: 4 codes in 3 bytes
        v0, v1, v2, v3 = (codes[:, j::4] for j in range(4))
        packed = np.empty((n, hidden // 4, 3), dtype=np.uint8)
        packed[..., 0] = v0 | (v1 << np.uint8(6))
        packed[..., 1] = (v1 >> np.uint8(2)) | (v2 << np.uint8(4))
        packed[..., 2] = (v2 >> np.uint8(4)) | (v3 << np.uint8(2))
        return packed.reshape(n, -1)
    planes = np.unpackbits(codes[..., None], axis=-1, count=bits, bitorder="little")
    return np.packbits(planes.reshape(n, hidden * bits), axis=-1, bitorder="little")


def _unpack(packed: ByteArray, hidden: int, bits: int) -> NDArray[np.uint8]:
    """The inverse of `_pack`."""
    n = packed.shape[0]
    if bits == 8:
        return packed
    mask = np.uint8((1 << bits) - 1)
    if bits in (4, 2) and hidden % (8 // bits) == 0:
        codes = np.empty((n, hidden), dtype=np.uint8)
        for j in range(8 // bits):
            codes[:, j::8 // bits] = (packed >> np.uint8(j * bits)) & mask
        return codes
    if bits == 6 and hidden % 4 == 0:
        b = packed.reshape(n, hidden // 4, 3)
        b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
        codes = np.empty((n, hidden), dtype=np.uint8)
        codes[:, 0::4] = b0 & mask
        codes[:, 1::4] = (b0 >> np.uint8(6)) | ((b1 << np.uint8(2)) & mask)
        codes[:, 2::4] = (b1 >> np.uint8(4)) | ((b2 << np.uint8(4)) & mask)
        codes[:, 3::4] = b2 >> np.uint8(2)
        return codes
    planes = np.unpackbits(packed, axis=-1, count=hidden * bits, bitorder="little")
    return np.packbits(planes.reshape(n, hidden, bits), axis=-1,
                       bitorder="little")[..., 0]


def _as_rows(x: np.ndarray) -> FloatArray:
    array = np.asarray(x)
    if array.ndim != 2:
        raise QuantizationError(f"quantize takes one (tokens, hidden) array, got shape "
                                f"{array.shape}: drop the padding rows and flatten the batch")
    if not np.isfinite(array).all():
        raise QuantizationError("the activation has non-finite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def scales_of(x: FloatArray, settings: QuantizerSettings) -> FloatArray:
    """The float32 scale of each token (or the tensor): clip·max|x| / m, 1 where max|x| = 0."""
    absmax = (np.abs(x).max(axis=1) if settings.granularity == "token"
              else np.abs(x).max(keepdims=True).reshape(1))
    scale = (settings.clip * absmax / settings.max_code).astype(np.float32)
    return np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)


def quantize(x: np.ndarray, settings: QuantizerSettings) -> QuantizedActivation:
    """The payload of a (tokens, hidden) activation (padding rows already dropped)."""
    rows = _as_rows(x)
    n, hidden = rows.shape
    if settings.bits == 32:
        return QuantizedActivation(settings, hidden, rows.view(np.uint8).reshape(n, -1),
                                   np.zeros(0, dtype=np.float32))
    if settings.bits == 16:
        half = np.clip(rows, -FLOAT16_MAX, FLOAT16_MAX).astype("<f2")
        return QuantizedActivation(settings, hidden, half.view(np.uint8).reshape(n, -1),
                                   np.zeros(0, dtype=np.float32))
    scales = scales_of(rows, settings)
    per_row = scales[:, None] if settings.granularity == "token" else scales[None, :]
    m = settings.max_code
    q = np.clip(np.rint(rows / per_row), -m, m)
    codes = (q + m).astype(np.uint8)
    return QuantizedActivation(settings, hidden, _pack(codes, settings.bits), scales)


def dequantize(payload: QuantizedActivation) -> FloatArray:
    """The (tokens, hidden) float32 activation the server runs on."""
    settings, n = payload.settings, payload.n_tokens
    if settings.bits == 32:
        return payload.codes.view(np.float32).reshape(n, payload.hidden)
    if settings.bits == 16:
        return payload.codes.view("<f2").reshape(n, payload.hidden).astype(np.float32)
    codes = _unpack(payload.codes, payload.hidden, settings.bits)
    q = codes.astype(np.float32) - np.float32(settings.max_code)
    per_row = (payload.scales[:, None] if settings.granularity == "token"
               else payload.scales[None, :])
    return np.asarray(q * per_row, dtype=np.float32)


def round_trip(x: np.ndarray, settings: QuantizerSettings) -> FloatArray:
    """dequantize(quantize(x)): what the server sees of x."""
    return dequantize(quantize(x, settings))


def predicted_mse(x: np.ndarray, settings: QuantizerSettings) -> float:
    """The mean squared error per element the uniform-noise law predicts (docs/theory.md
    §6.2): Δ²/12 for every element inside the clipping range (Δ = its token's scale) plus the
    exact squared excess (|x| − clip·max|x|)² of the clipped ones. 0 at 32 bits; float16 by
    the same law with Δ = 2^(e−10) of each element's binade."""
    rows = _as_rows(x)
    if settings.bits == 32 or rows.size == 0:
        return 0.0
    if settings.bits == 16:
        exponent = np.floor(np.log2(np.maximum(np.abs(rows), 2.0 ** -14)))
        step = 2.0 ** (exponent - 10)
        return float(np.mean(step ** 2 / 12))
    scales = scales_of(rows, settings).astype(np.float64)
    per_row = scales[:, None] if settings.granularity == "token" else scales[None, :]
    limit = per_row * settings.max_code
    inside = np.abs(rows) <= limit * (1 + 1e-6)  # a token's max sits on its limit
    granular = np.where(inside, per_row ** 2 / 12, 0.0)
    clipped = np.where(inside, 0.0, (np.abs(rows) - limit) ** 2)
    return float(np.mean(granular + clipped))


def measured_mse(x: np.ndarray, settings: QuantizerSettings) -> float:
    """The mean squared error per element of the round trip."""
    rows = _as_rows(x)
    return float(np.mean((round_trip(rows, settings).astype(np.float64) - rows) ** 2))


def best_clip(samples: np.ndarray, bits: int, granularity: Granularity = "token",
              grid: NDArray[np.float64] = CLIP_GRID) -> float:
    """The clip ratio on `grid` with the least round-trip MSE over the calibration rows
    `samples` (tokens, hidden); 1 for the float widths."""
    if bits not in INTEGER_BITS:
        QuantizerSettings(bits, granularity)  # checks the width
        return 1.0
    errors = [measured_mse(samples, QuantizerSettings(bits, granularity, float(c)))
              for c in grid]
    return float(grid[int(np.argmin(errors))])
