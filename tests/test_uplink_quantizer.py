"""The activation quantizer and the lossless coding of the uplink (docs/theory.md §6), checked
against independent computations: a bit-by-bit reference packing, the round-off bound Δ/2, the
Δ²/12 law on uniform data, a continuous search of the clip, numpy's float16 cast."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from laimco.uplink.coding import CodingError, decode, encode
from laimco.uplink.quantizer import (
    ACTIVATION_BITS,
    INTEGER_BITS,
    QuantizationError,
    QuantizedActivation,
    QuantizerSettings,
    best_clip,
    dequantize,
    measured_mse,
    payload_bits,
    predicted_mse,
    quantize,
    row_bytes,
)


def _reference_pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Bit by bit: code i of a row occupies stream bits i·b .. i·b + b − 1, stream bit j is bit
    j mod 8 of byte j // 8."""
    rows = []
    for row in codes:
        stream = [(int(v) >> k) & 1 for v in row for k in range(bits)]
        stream += [0] * (-len(stream) % 8)
        rows.append([sum(stream[8 * i + k] << k for k in range(8))
                     for i in range(len(stream) // 8)])
    return np.array(rows, dtype=np.uint8)


@pytest.mark.parametrize("bits", INTEGER_BITS)
@pytest.mark.parametrize("hidden", [384, 13, 8, 1])
def test_packing_matches_a_bit_by_bit_reference(bits: int, hidden: int) -> None:
    rng = np.random.default_rng(bits * 100 + hidden)
    x = rng.standard_normal((5, hidden)).astype(np.float32)
    settings = QuantizerSettings(bits)
    payload = quantize(x, settings)
    scales = payload.scales[:, None]
    m = settings.max_code
    codes = (np.clip(np.rint(x / scales), -m, m) + m).astype(np.uint8)
    assert np.array_equal(payload.codes, _reference_pack(codes, bits))
    assert payload.codes.shape == (5, -(-hidden * bits // 8))


@pytest.mark.parametrize("granularity", ["token", "tensor"])
@pytest.mark.parametrize("bits", INTEGER_BITS)
def test_round_off_is_at_most_half_a_step_inside_the_clip_range(bits: int,
                                                                granularity: str) -> None:
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal((40, 64)) * rng.uniform(0.1, 10, (40, 1))).astype(np.float32)
    clip = 0.7
    settings = QuantizerSettings(bits, granularity, clip)  # type: ignore[arg-type]
    y = dequantize(quantize(x, settings)).astype(np.float64)
    absmax = np.broadcast_to(np.abs(x).max(axis=1, keepdims=True) if granularity == "token"
                             else np.abs(x).max(), x.shape).astype(np.float64)
    step = clip * absmax / settings.max_code
    limit = step * settings.max_code
    inside = np.abs(x) <= limit
    err = np.abs(y - x)
    assert np.all(err[inside] <= step[inside] / 2 * (1 + 1e-4))
    # outside the range the value lands on ±limit
    np.testing.assert_allclose(y[~inside], np.sign(x[~inside]) * limit[~inside], rtol=1e-5)


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_mse_law_on_uniform_data_matches_step_squared_over_12(bits: int) -> None:
    """Monte Carlo: for values spread evenly over many steps the round-off is uniform on
    (−Δ/2, Δ/2), so the MSE is Δ²/12 (within 3 % for 2e5 samples)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (500, 400)).astype(np.float32)
    x[:, 0] = 1.0  # every token's max is 1: Δ = 1/m
    settings = QuantizerSettings(bits)
    step = 1.0 / settings.max_code
    assert measured_mse(x, settings) == pytest.approx(step ** 2 / 12, rel=0.03)
    assert predicted_mse(x, settings) == pytest.approx(step ** 2 / 12, rel=1e-5)


def test_float16_is_numpys_half_cast_and_float32_is_lossless() -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((9, 31)) * 100).astype(np.float32)
    half = dequantize(quantize(x, QuantizerSettings(16)))
    np.testing.assert_array_equal(half, x.astype(np.float16).astype(np.float32))
    assert np.array_equal(dequantize(quantize(x, QuantizerSettings(32))), x)
    assert measured_mse(x, QuantizerSettings(16)) == pytest.approx(
        predicted_mse(x, QuantizerSettings(16)), rel=0.1)


@pytest.mark.parametrize("bits", ACTIVATION_BITS)
@pytest.mark.parametrize("granularity", ["token", "tensor"])
def test_payload_bits_is_exactly_what_is_sent(bits: int, granularity: str) -> None:
    settings = QuantizerSettings(bits, granularity)  # type: ignore[arg-type]
    x = np.random.default_rng(3).standard_normal((17, 384)).astype(np.float32)
    payload = quantize(x, settings)
    sent = payload.codes.nbytes + payload.scales.nbytes
    assert payload_bits(17, 384, settings) == 8 * sent == payload.payload_bits
    # the counts written out: 384 values of b bits per token, plus the float32 scales
    scales = 0 if bits >= 16 else (17 if granularity == "token" else 1)
    assert 8 * sent == 17 * 384 * bits + 32 * scales


@pytest.mark.parametrize("bits", [4, 2])
def test_best_clip_is_near_the_continuous_optimum(bits: int) -> None:
    rng = np.random.default_rng(4)
    x = rng.laplace(size=(200, 96)).astype(np.float32)  # heavy tails: clipping pays
    clip = best_clip(x, bits)
    found = measured_mse(x, QuantizerSettings(bits, clip=clip))
    best = minimize_scalar(lambda c: measured_mse(x, QuantizerSettings(bits, clip=float(c))),
                           bounds=(0.2, 1.0), method="bounded", options={"xatol": 1e-3})
    assert found <= best.fun * 1.02
    assert found < measured_mse(x, QuantizerSettings(bits, clip=1.0))
    assert best_clip(x, 16) == 1.0


def test_bad_settings_and_payloads_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(QuantizationError, match="32, 16, 8, 6, 4, 2"):
        QuantizerSettings(5)
    with pytest.raises(QuantizationError, match=r"\(0, 1\]"):
        QuantizerSettings(8, clip=0.0)
    with pytest.raises(QuantizationError, match="tokens, hidden"):
        quantize(np.zeros((1, 2, 3), dtype=np.float32), QuantizerSettings(8))
    settings = QuantizerSettings(8)
    payload = quantize(np.ones((4, 10), dtype=np.float32), settings)
    with pytest.raises(QuantizationError, match="takes 10 bytes, got 9"):
        QuantizedActivation.from_wire(payload.codes[:, :9].copy(), payload.scales, settings, 10)
    with pytest.raises(QuantizationError, match="need 4 float32 scales"):
        QuantizedActivation.from_wire(payload.codes, payload.scales[:3], settings, 10)
    bad = payload.codes.copy()
    bad[0, 0] = 255
    with pytest.raises(QuantizationError, match=r"out of range: codes are 0\.\.254"):
        QuantizedActivation.from_wire(bad, payload.scales, settings, 10)
    nan_scales = payload.scales.copy()
    nan_scales[1] = np.nan
    with pytest.raises(QuantizationError, match="finite"):
        QuantizedActivation.from_wire(payload.codes, nan_scales, settings, 10)
    six = QuantizerSettings(6)
    sixes = quantize(np.ones((2, 8), dtype=np.float32), six)
    over = sixes.codes.copy()
    over[0, 0] |= 0b111111  # code 63 > 2·31
    with pytest.raises(QuantizationError, match=r"0\.\.62"):
        QuantizedActivation.from_wire(over, sixes.scales, six, 8)
    inf16 = np.full((1, 2), np.inf, dtype="<f2").view(np.uint8)
    with pytest.raises(QuantizationError, match="non-finite"):
        QuantizedActivation.from_wire(inf16, np.zeros(0, np.float32), QuantizerSettings(16), 2)
    ok = QuantizedActivation.from_wire(payload.codes, payload.scales, settings, 10)
    np.testing.assert_array_equal(dequantize(ok), dequantize(payload))


def test_zstd_round_trip_shrinks_codes_and_refuses_bad_frames() -> None:
    x = np.random.default_rng(5).standard_normal((128, 384)).astype(np.float32)
    raw = quantize(x, QuantizerSettings(8)).codes.tobytes()
    sent = encode(raw, "zstd")
    # an order-0 entropy coder reaches the empirical entropy of the bytes (≈ 7.2 bits here)
    counts = np.bincount(np.frombuffer(raw, dtype=np.uint8), minlength=256)
    p = counts[counts > 0] / len(raw)
    entropy_bytes = float(-(p * np.log2(p)).sum()) * len(raw) / 8
    assert len(sent) <= 1.03 * entropy_bytes + 1024 < len(raw)
    assert decode(sent, "zstd", len(raw)) == raw
    assert encode(raw, "none") == raw
    with pytest.raises(CodingError, match="at most 100 expected"):
        decode(sent, "zstd", 100)
    with pytest.raises(CodingError, match="corrupt or truncated"):
        decode(sent[:-20], "zstd", len(raw))
    with pytest.raises(CodingError, match="not a zstd frame"):
        decode(b"hello world", "zstd", len(raw))
    with pytest.raises(CodingError, match="none, zstd"):
        encode(raw, "lz5")  # type: ignore[arg-type]


def test_row_bytes_rounds_up_to_whole_bytes() -> None:
    assert [row_bytes(384, b) for b in (32, 16, 8, 6, 4, 2)] == [1536, 768, 384, 288, 192, 96]
    assert row_bytes(13, 6) == 10  # 78 bits
