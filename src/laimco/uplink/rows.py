"""The rows of a batch of hidden states that are sent: one request per input, its real tokens
only (docs/theory.md §6.1). Padding rows (attention mask 0) never cross the link; the receiver
puts the real rows back in place and zeros elsewhere, which the server part's attention mask
ignores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from laimco.uplink.coding import Coding, encode
from laimco.uplink.quantizer import QuantizerSettings, dequantize, quantize


@dataclass(frozen=True)
class SentRows:
    """What crossing the link did to a batch: the hidden states the server runs on, and per
    input the bytes of the activation payload sent (codes and scales, coded) and the number
    of real tokens."""

    received: NDArray[np.float32]
    bytes_sent: NDArray[np.int64]
    tokens: NDArray[np.int64]


def send_rows(hidden: np.ndarray, attention_mask: np.ndarray, settings: QuantizerSettings,
              coding: Coding = "none") -> SentRows:
    """Quantize each input's real-token rows of `hidden` (batch, tokens, H), as the device
    does per request, and return what the server reconstructs."""
    hidden = np.asarray(hidden, dtype=np.float32)
    mask = np.asarray(attention_mask).astype(bool)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"hidden states {hidden.shape} and attention mask {mask.shape} do not "
                         "match: give (batch, tokens, H) and (batch, tokens)")
    received = np.zeros_like(hidden)
    sent = np.zeros(hidden.shape[0], dtype=np.int64)
    for i in range(hidden.shape[0]):
        payload = quantize(hidden[i][mask[i]], settings)
        received[i][mask[i]] = dequantize(payload)
        raw = payload.codes.tobytes() + payload.scales.tobytes()
        sent[i] = len(encode(raw, coding))
    return SentRows(received=received, bytes_sent=sent,
                    tokens=mask.sum(axis=1).astype(np.int64))
