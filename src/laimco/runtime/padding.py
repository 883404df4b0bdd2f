"""The positions the server part runs: up to the last real token of a batch (docs/runtime.md,
"Protocol", "Padding").

A device pads its input to the profile's sequence length T (every request of a shared part then
has the same shape and can be batched) but sends only the rows of its real tokens; the server
puts them back into a zero (batch, T, H) tensor. The positions after the last real token of
every request of a pass are padding everywhere: in a family whose attention masks the padding
keys and whose output pools over the real tokens only (a sentence embedding: mean over the
mask), no output depends on them, and running them is pure waste (a MiniLM request of 16 real
tokens padded to 128 computes 8× the positions it uses). They are cut before the forward pass.
The result is the same up to float rounding (the softmax of a masked key is exactly 0 either
way); language models (logits per padding position are part of the output) and ViTs (no mask)
run every position as sent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from laimco.runtime.protocol import MASK

Arrays = dict[str, np.ndarray[Any, Any]]


def trims_padding(family: str) -> bool:
    """Whether a server part of `family` may skip trailing padding positions: a text family
    with masked attention whose output is pooled over the mask (not one row per position)."""
    from laimco.models.families import family_adapter

    adapter = family_adapter(family)
    return adapter.takes_text and adapter.masked_attention and not adapter.output_per_token


def used_positions(masks: list[np.ndarray[Any, Any]]) -> int:
    """1 + the last position that is a real token in any of `masks` (each (batch, T), same
    T); at least 1, so a pass is never empty."""
    last = 0
    for mask in masks:
        real = np.flatnonzero(np.asarray(mask).any(axis=0))
        if real.size:
            last = max(last, int(real[-1]) + 1)
    return max(last, 1)


def cut_to_positions(arrays: Arrays, positions: int) -> Arrays:
    """The tensors of one request with the sequence axis (axis 1, of the mask's length) cut to
    its first `positions` entries (views: the concatenation that follows copies once)."""
    length = int(arrays[MASK].shape[1])
    if positions >= length:
        return arrays
    return {name: array[:, :positions] if array.ndim >= 2 and array.shape[1] == length
            else array for name, array in arrays.items()}
