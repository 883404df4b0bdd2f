"""The targets `laimco evaluate` reports (README "Do decisions hold when executed?"):
predicted against measured costs, decisions that hold when executed, the objective's order
against the measured order, and what compressing the uplink changes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

OBJECTIVE_MARGIN = 0.05  # rank agreement: objectives at least 5 % apart ...
SIGNIFICANCE_SE = 3.0  # ... and measured losses more than 3 paired standard errors apart


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a − b over the same inputs and its standard error (0 for one input)."""
    diff = a - b
    se = float(diff.std(ddof=1)) / math.sqrt(diff.size) if diff.size > 1 else 0.0
    return float(diff.mean()), se


def rank_agreement(rows: Sequence[dict[str, Any]],
                   losses: dict[int, np.ndarray]) -> dict[str, Any]:
    """Pairs of decisions of the same objective mode whose objectives differ by more than 5 %
    and whose paired measured losses differ by more than 3 standard errors: how often the
    objective's order is the measured order."""
    pairs = agreeing = 0
    disagreements = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if a["mode"] != b["mode"]:
                continue
            lo, hi = sorted((a["objective"], b["objective"]))
            if hi <= lo * (1 + OBJECTIVE_MARGIN):
                continue
            mean, se = paired_difference(losses[a["id"]], losses[b["id"]])
            if abs(mean) <= SIGNIFICANCE_SE * se:
                continue
            pairs += 1
            if (a["objective"] < b["objective"]) == (mean < 0):
                agreeing += 1
            else:
                disagreements.append([a["label"], b["label"]])
    return {"pairs": pairs, "agreeing": agreeing, "disagreeing_pairs": disagreements[:50]}


def targets(flat: Sequence[dict[str, Any]], losses: dict[int, np.ndarray]) -> dict[str, Any]:
    """The issue's targets per objective mode: predicted vs measured cost, feasibility when
    executed, and the joint decision against the best measured decision that meets its limits
    when executed (joint must meet its own)."""
    out: dict[str, Any] = {}
    for mode in sorted({r["mode"] for r in flat}):
        rows = [r for r in flat if r["mode"] == mode]
        worst_latency = worst_energy = 0.0
        broken = []
        for r in rows:
            pred, meas = r["decision"], r["measured"]
            worst_latency = max(worst_latency, abs(meas["latency_s"]["total"]
                                                   / pred["latency_s"]["total"] - 1))
            if pred["energy_j"]["total"] > 0:
                worst_energy = max(worst_energy, abs(meas["energy_j"]["total"]
                                                     / pred["energy_j"]["total"] - 1))
            if max(meas["limit_usage"].values()) > 1.10:
                broken.append(r["label"])
        joint_gaps = {}
        for scenario in sorted({r["scenario"] for r in rows}):
            here = [r for r in rows if r["scenario"] == scenario]
            holding = [r for r in here if r["measured"]["limits_hold"]]
            joint = [r for r in here if r["strategy"] == "joint"]
            if not holding or not joint:
                continue
            best = min(holding, key=lambda r: r["loss"])
            mean, se = paired_difference(losses[joint[0]["id"]], losses[best["id"]])
            holds = bool(joint[0]["measured"]["limits_hold"])
            joint_gaps[scenario] = {"best_strategy": best["strategy"],
                                    "joint_holds_its_limits": holds,
                                    "joint_minus_best_loss": mean, "paired_se": se,
                                    "within_3_se": holds and mean <= 3 * se + 1e-15}
        out[mode] = {"decisions": len(rows), "worst_latency_relative_error": worst_latency,
                     "worst_energy_relative_error": worst_energy,
                     "broken_by_more_than_10_percent": broken,
                     "joint_vs_best_measured": joint_gaps,
                     "compression": compression_targets(rows, losses).model_dump()}
    return out


COMPRESSED_MIN_BITS = 4  # the distortion prediction target covers b ≥ 4 (issue 13)
# a strategy's decision with the activation sent as float32 is labelled "<strategy>-float32"
UNCOMPRESSED_SUFFIX = "-float32"


class DistortionPrediction(BaseModel):
    bits: int
    predicted: float
    measured: float
    relative_error: float


class JointVsFloat32(BaseModel):
    bits: int | None = None
    split: int | None = None
    split_float32: int | None = None
    objective: float
    objective_float32: float
    loss: float
    loss_float32: float
    loss_difference: float
    paired_se: float
    compression_lowers_loss: bool
    holds_limits: bool


class CompressionTargets(BaseModel):
    """`targets.<mode>.compression` of evaluate.json: written here, read by the study."""

    requests_measured_over_predicted_worst: float | None = None
    exact_bytes_share: float | None = None
    distortion_prediction: dict[str, DistortionPrediction] = {}
    worst_distortion_prediction_error: float | None = None
    joint_vs_float32: dict[str, JointVsFloat32] = {}


def compression_targets(rows: Sequence[dict[str, Any]],
                        losses: dict[int, np.ndarray]) -> CompressionTargets:
    """What the compressed uplink does, from the measured rows: bytes on the wire against the
    prediction, the predicted output distortion (objective) against the measured one for
    decisions sending b ≥ 4 bits, and per scenario joint against joint with a float32 uplink
    at the same budgets (paired measured loss)."""
    sent = [r["measured"]["upload_bytes"] for r in rows if r["measured"].get("upload_bytes")]
    bytes_error = max((abs(u["measured_over_predicted"] - 1) for u in sent), default=None)
    prediction = {}
    for r in rows:
        bits = r["decision"].get("activation_bits")
        if bits is not None and bits < 32 and bits >= COMPRESSED_MIN_BITS:
            measured = r["measured"]["output_distortion"]
            prediction[r["label"]] = DistortionPrediction(
                bits=bits, predicted=r["objective"], measured=measured,
                relative_error=r["objective"] / measured - 1 if measured > 0 else math.inf)
    versus = {}
    for scenario in sorted({r["scenario"] for r in rows}):
        joint = [r for r in rows if r["scenario"] == scenario and r["strategy"] == "joint"]
        plain = [r for r in rows
                 if r["scenario"] == scenario and r["strategy"] == "joint" + UNCOMPRESSED_SUFFIX]
        if not joint or not plain:
            continue
        mean, se = paired_difference(losses[joint[0]["id"]], losses[plain[0]["id"]])
        versus[scenario] = JointVsFloat32(
            bits=joint[0]["decision"].get("activation_bits"),
            split=joint[0]["decision"]["split"], split_float32=plain[0]["decision"]["split"],
            objective=joint[0]["objective"], objective_float32=plain[0]["objective"],
            loss=joint[0]["loss"], loss_float32=plain[0]["loss"], loss_difference=mean,
            paired_se=se, compression_lowers_loss=mean < -3 * se,
            holds_limits=bool(joint[0]["measured"]["limits_hold"]))
    return CompressionTargets(
        requests_measured_over_predicted_worst=bytes_error,
        exact_bytes_share=(float(np.mean([u["exact_requests"] for u in sent])) if sent
                           else None),
        distortion_prediction=prediction,
        worst_distortion_prediction_error=max(
            (abs(p.relative_error) for p in prediction.values()), default=None),
        joint_vs_float32=versus)
