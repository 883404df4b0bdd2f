"""The uplink of `laimco deploy`: the decision's activation bits and coding, the in-process
run that sees the same dequantized activation as the server, and the comparison of the bytes
and the upload time measured through the shaped link with the prediction (docs/runtime.md,
"`laimco deploy`"; the quantizer: docs/theory.md §6).

Predicted bytes per request: payload_bits(n, H, settings) / 8 for the n real tokens of the
request (every position, padding included, in float32; exact for the fixed-width codes),
times the profile's measured zstd ratio with coding "zstd" (mean over requests within 2 % is
the target); predicted upload time: the bytes of every tensor sent (activation and mask) over
the decision's rate r(p, g).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from laimco.runtime.protocol import UplinkSettings
from laimco.uplink.quantizer import QuantizerSettings, payload_bits, round_trip

if TYPE_CHECKING:
    from laimco.models.pruned import PrunedSplit
    from laimco.models.split import Crossing
    from laimco.optimize.decision import Decision
    from laimco.profile import ModelProfile, SplitTable
    from laimco.runtime.request_log import RequestRecord

ZSTD_TOLERANCE = 0.02  # mean measured / predicted zstd bytes within 2 % (issue 13)


def _measured_uplink(profile: ModelProfile) -> Any:
    """The profile's "uplink" section (`ModelProfile.uplink`), None when it has none."""
    return getattr(profile, "uplink", None)


def decision_uplink(decision: Decision, profile: ModelProfile, n_units: int) -> UplinkSettings:
    """The decision's activation bits and coding (JSON contract keys `activation_bits`, null or
    absent = 32, and `coding`, absent = "none"), with the clip the profile measured for
    (split, bits) when it has an "uplink" section, else 1. Float32 where nothing is
    quantized (s = 0, s = L, 32 bits)."""
    data = decision.to_json_dict()
    split = int(data["split"])  # type: ignore[call-overload]
    bits = int(data.get("activation_bits") or 32)  # type: ignore[call-overload]
    if bits == 32 or not 0 < split < n_units:
        return UplinkSettings()
    measured = _measured_uplink(profile)
    settings = (measured.settings(split, bits) if measured is not None
                else QuantizerSettings(bits))
    return UplinkSettings(settings, str(data.get("coding") or "none"))  # type: ignore[arg-type]


def predicted_upload_bits(decision: Decision, table: SplitTable, split: int) -> float:
    """The decision's upload bits (`uplink_bits` of the JSON contract, all seq_len tokens),
    else the profile's float32 upload at the split."""
    decided = decision.to_json_dict().get("uplink_bits")
    return float(decided) if isinstance(decided, int | float) else float(
        table.upload_bits[split])


def zstd_ratio(profile: ModelProfile, split: int, bits: int) -> float | None:
    """The profile's mean zstd-compressed / raw payload ratio at (split, bits), or None."""
    measured = _measured_uplink(profile)
    if measured is None:
        return None
    try:  # UplinkCosts.coded_ratio: (L+1,) per width; a width it did not measure: ValueError
        ratio = float(measured.coded_ratio(bits)[split])
    except (IndexError, ValueError):
        return None
    return ratio if np.isfinite(ratio) and ratio > 0 else None


def run_pruned(pruned: PrunedSplit, batch: Crossing, uplink: UplinkSettings) -> Any:
    """The pruned parts in this process on what the server receives: the device part's real
    token rows through the quantizer's round trip, zeros at the padding positions."""
    import torch

    with torch.no_grad():
        crossing = pruned.device(batch)
        if uplink.quantized and "attention_mask" in crossing:
            hidden = crossing["hidden_states"].numpy()
            mask = crossing["attention_mask"].numpy().astype(bool)
            seen = np.zeros_like(hidden)
            seen[mask] = round_trip(hidden[mask], uplink.quantizer)
            crossing = {**crossing, "hidden_states": torch.from_numpy(seen)}
        return pruned.server(crossing)


@dataclass(frozen=True)
class UplinkComparison:
    """Measured against predicted upload of the successful requests (bytes per request, means;
    times, medians)."""

    activation_bits: int
    granularity: str
    clip: float
    coding: str
    requests: int
    activation_bytes_measured: float
    activation_bytes_predicted: float | None  # None: zstd without a measured ratio
    fixed_width_bytes: float  # payload_bits / 8 without coding
    exact_requests: int  # requests whose bytes equal the fixed-width prediction exactly
    measured_over_predicted: float | None
    within_tolerance: bool | None
    upload_s_measured: float  # rpc − server compute: link, protocol and server handling
    transfer_s_measured: float  # rpc − the whole call inside the server: link and gRPC only
    upload_s_predicted: float  # bytes of every tensor sent / r

    def as_dict(self) -> dict[str, Any]:  # the "uplink" object of the deploy report's JSON
        return asdict(self)


def _rows_sent(batch: Crossing, uplink: UplinkSettings) -> int:
    """Rows of H values sent: the real tokens of a quantized activation, every position
    (padding included) of a float32 one."""
    mask = np.asarray(batch["attention_mask"])
    return int(mask.sum()) if uplink.quantized else int(mask.size)


def compare_upload(records: list[RequestRecord], batches: list[Crossing], hidden: int,
                   uplink: UplinkSettings, profile: ModelProfile, split: int,
                   rate_bps: float) -> UplinkComparison:
    """Bytes and upload time of the requests that succeeded, against the prediction. The
    rows n of a request come from its attention mask (real tokens when quantized, every
    position in float32); at s = 0 (token ids) and for a crossing without a mask (ViT,
    float32) the prediction is the tensor as sent."""
    q = uplink.quantizer
    pairs = [(r, _rows_sent(b, uplink) if split > 0 and "attention_mask" in b else None)
             for r, b in zip(records, batches, strict=True) if r.status == "ok"]
    measured = [float(r.timings.activation_bytes) for r, _ in pairs]
    fixed = [payload_bits(n, hidden, q) / 8 if n is not None else m
             for (_, n), m in zip(pairs, measured, strict=True)]
    ratio = zstd_ratio(profile, split, q.bits) if uplink.coding == "zstd" else 1.0
    predicted = None if ratio is None else [f * ratio for f in fixed]
    mean = float(np.mean(measured))
    over = None if predicted is None else mean / float(np.mean(predicted))
    tolerance = 0.0 if uplink.coding == "none" else ZSTD_TOLERANCE
    # the other tensors (mask, ids) are sent as they are: their bytes are known exactly
    others = [r.timings.payload_bytes - r.timings.activation_bytes for r, _ in pairs]
    upload = [8 * (a + o) / rate_bps for a, o in zip(predicted or measured, others,
                                                       strict=True)] if rate_bps > 0 else [0.0]
    return UplinkComparison(
        activation_bits=q.bits, granularity=q.granularity, clip=q.clip, coding=uplink.coding,
        requests=len(pairs), activation_bytes_measured=mean,
        activation_bytes_predicted=None if predicted is None else float(np.mean(predicted)),
        fixed_width_bytes=float(np.mean(fixed)),
        exact_requests=sum(m == f for m, f in zip(measured, fixed, strict=True)),
        measured_over_predicted=over,
        within_tolerance=None if over is None else abs(over - 1) <= tolerance + 1e-12,
        upload_s_measured=float(statistics.median(r.timings.uplink_s for r, _ in pairs)),
        transfer_s_measured=float(statistics.median(
            r.timings.rpc_s - r.timings.server_call_s for r, _ in pairs)),
        upload_s_predicted=float(statistics.median(upload)))
