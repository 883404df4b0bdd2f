"""Quantizer benchmark (issue 13): quantize + dequantize of one 1×128×384 float32 activation
(MiniLM's crossing at 128 tokens) for every width, against references measured in the same
run; never part of the test suite. Run: `python benchmarks/bench_quantizer.py`.

Times are the calling thread's CPU time (`time.thread_time_ns`), median over RUNS calls, so
that other work on the shared host does not count. References: a float32 copy of the same
tensor (`x.copy()`) and its serialization (`x.tobytes()`), what the float32 path does. Also
shown: quantize, zstd encode and decode of the payload (coding "zstd", no dequantize).
Target: quantize + dequantize ≤ 1 ms per width. Exit code 1 when it is missed.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from laimco.uplink.coding import decode, encode
from laimco.uplink.quantizer import (
    ACTIVATION_BITS,
    QuantizerSettings,
    dequantize,
    payload_bits,
    quantize,
)

TOKENS, HIDDEN = 128, 384
RUNS = 400
TARGET_S = 1e-3


def thread_median_s(func: Callable[[], object], runs: int = RUNS) -> float:
    for _ in range(10):  # warm-up: caches, allocator
        func()
    samples = []
    for _ in range(runs):
        start = time.thread_time_ns()
        func()
        samples.append(time.thread_time_ns() - start)
    return statistics.median(samples) / 1e9


def activation() -> np.ndarray:
    """A heavy-tailed activation like a transformer's hidden state (Student t, 4 d.o.f.,
    a few large outlier channels)."""
    rng = np.random.default_rng(13)
    x = rng.standard_t(4, size=(TOKENS, HIDDEN)).astype(np.float32)
    x[:, [7, 91, 300]] *= 12.0
    return x


def main() -> int:
    x = activation()
    copy_s = thread_median_s(x.copy)
    bytes_s = thread_median_s(x.tobytes)
    print(f"1×{TOKENS}×{HIDDEN} float32 activation, median thread time over {RUNS} calls")
    print(f"references: x.copy() {copy_s * 1e6:.1f} µs, x.tobytes() {bytes_s * 1e6:.1f} µs\n")
    print("| bits | quantize + dequantize µs | / copy | / tobytes | payload bytes | "
          "quantize + zstd encode + decode µs |")
    print("|---:|---:|---:|---:|---:|---:|")
    missed = []
    for bits in ACTIVATION_BITS:
        settings = QuantizerSettings(bits, "token", 0.9 if bits < 16 else 1.0)
        size = payload_bits(TOKENS, HIDDEN, settings) // 8

        def trip(s: QuantizerSettings = settings) -> object:
            return dequantize(quantize(x, s))

        def zstd_trip(s: QuantizerSettings = settings, n: int = size) -> object:
            q = quantize(x, s)
            frame = encode(q.codes.tobytes() + q.scales.tobytes(), "zstd")
            return decode(frame, "zstd", n)

        trip_s = thread_median_s(trip)
        coded = (f"{thread_median_s(zstd_trip) * 1e6:.1f}" if bits < 32 else
                 "— (float32 is sent as is)")
        if trip_s > TARGET_S:
            missed.append(bits)
        print(f"| {bits} | {trip_s * 1e6:.1f} | {trip_s / copy_s:.1f} | {trip_s / bytes_s:.1f} "
              f"| {size:,} | {coded} |")
    verdict = "met" if not missed else f"MISSED at {missed} bits"
    print(f"\ntarget quantize + dequantize ≤ {TARGET_S * 1e3:.0f} ms for every width: {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
