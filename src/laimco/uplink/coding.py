"""Optional lossless coding of the uplink payload with zstandard (docs/theory.md §6.4).

The codes of a quantized activation are far from uniform (most values sit near the middle
code), so a general-purpose entropy coder shrinks them; zstandard is a well-kept library with a
frame header that states the decoded size, which `decode` checks before allocating.
"""

from __future__ import annotations

from typing import Literal

import zstandard

Coding = Literal["none", "zstd"]
CODINGS: tuple[Coding, ...] = ("none", "zstd")
ZSTD_LEVEL = 3  # zstandard's default: fast, most of the gain


class CodingError(ValueError):
    """A coding name or an encoded payload that cannot be used."""


def check_coding(coding: str) -> Coding:
    """The coding name, checked."""
    if coding not in CODINGS:
        raise CodingError(f"coding {coding!r} is not supported: choose one of "
                          f"{', '.join(CODINGS)}")
    return coding


def encode(data: bytes, coding: Coding) -> bytes:
    """The bytes sent for `data` under a coding."""
    if check_coding(coding) == "none":
        return data
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(data)


def decode(data: bytes, coding: Coding, max_size: int) -> bytes:
    """The payload of received bytes; refuses a frame that does not state its size or states
    more than `max_size` bytes (before allocating), and a corrupt or truncated frame."""
    if check_coding(coding) == "none":
        if len(data) > max_size:
            raise CodingError(f"payload of {len(data)} bytes exceeds the {max_size} expected")
        return data
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as err:
        raise CodingError(f"not a zstd frame: {err}") from None
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN or size > max_size:
        raise CodingError(f"zstd frame declares {size} bytes; at most {max_size} expected")
    try:
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=max_size)
    except zstandard.ZstdError as err:
        raise CodingError(f"corrupt or truncated zstd payload: {err}") from None
    if len(out) != size:
        raise CodingError(f"zstd payload decoded to {len(out)} bytes, its frame says {size}")
    return out
