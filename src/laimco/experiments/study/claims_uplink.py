"""The compressed uplink's claims (docs/theory.md §6; docs/study.md, "Compressed uplink"):
how much choosing the activation width moves the joint decision's split and lowers its
objective and its measured loss at equal budgets (the uplink sweeps and the study's held-out
measurement), and what `laimco evaluate` measured of it on the shipped scenarios (bytes on
the wire, distortion prediction, joint against joint with a float32 uplink)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from laimco.experiments.evaluate_targets import (
    CompressionTargets,
    JointVsFloat32,
    paired_difference,
)
from laimco.experiments.study.claim import Claim, ClaimId, Status, TextTable
from laimco.experiments.study.numbers import fmt_g, fmt_pct
from laimco.experiments.study.tables import Table, where
from laimco.experiments.study.uplink_quality import UplinkQuality

SE_LIMIT = 3.0  # a measured loss difference counts beyond 3 paired standard errors
PREDICTION_TARGET = 0.20  # D_q predicts the measured loss within 20 % for b ≥ 4 (issue 13)
PREDICTION_MIN_BITS = 4
BYTES_TARGET = 0.02  # bytes on the wire: exact for fixed widths, 2 % when entropy coded
BANDWIDTH = "channel.bandwidth_hz"


@dataclass(frozen=True)
class BandwidthComparison:
    """The joint decision at one bandwidth with the widths to choose among and float32 only;
    the measured numbers where the study executed both on held-out text."""

    bandwidth_hz: float
    split: float  # NaN: infeasible
    bits: float  # the chosen width; NaN where nothing crosses or infeasible
    split_float32: float
    objective: float
    objective_float32: float
    loss: float | None = None
    loss_float32: float | None = None
    loss_difference: float | None = None  # compressed − float32, mean over the same inputs
    paired_se: float | None = None


def _joint_by_bandwidth(table: Table) -> dict[float, tuple[float, float, float]]:
    rows = where(table, {"strategy": "joint"})
    return {float(b): (float(s), float(a), float(o)) for b, s, a, o in zip(
        table[BANDWIDTH][rows], table["split"][rows], table["activation_bits"][rows],
        table["objective"][rows], strict=True)}


def bandwidth_comparisons(compressed: Table, float32: Table,
                          quality: UplinkQuality | None) -> list[BandwidthComparison]:
    """One comparison per bandwidth of the compressed sweep that the float32 sweep has too."""
    with_bits, plain = _joint_by_bandwidth(compressed), _joint_by_bandwidth(float32)
    out = []
    for bandwidth in sorted(with_bits):
        if bandwidth not in plain:
            continue
        split, bits, objective = with_bits[bandwidth]
        split_f, _, objective_f = plain[bandwidth]
        measured: dict[str, float] = {}
        if quality is not None:
            a, b = quality.decision(bandwidth, True), quality.decision(bandwidth, False)
            if a is not None and b is not None:
                mean, se = paired_difference(np.asarray(a.loss_per_input),
                                             np.asarray(b.loss_per_input))
                measured = {"loss": a.loss_mean, "loss_float32": b.loss_mean,
                            "loss_difference": mean, "paired_se": se}
        out.append(BandwidthComparison(bandwidth, split, bits, split_f, objective,
                                       objective_f, **measured))
    return out


def compression_verdict(differences: Sequence[tuple[float, float]]) -> bool | None:
    """Does compression lower the measured loss at equal budgets? `differences`: (compressed −
    float32 mean loss, paired SE) per measured bandwidth. True when it is lower beyond
    SE_LIMIT standard errors somewhere and higher beyond them nowhere; None without data."""
    if not differences:
        return None
    worse = any(mean > SE_LIMIT * se for mean, se in differences)
    better = any(mean < -SE_LIMIT * se for mean, se in differences)
    return better and not worse


def prediction_errors(quality: UplinkQuality, min_bits: int = PREDICTION_MIN_BITS
                      ) -> dict[tuple[int, int], float]:
    """(split, bits) → D_q(s, b)/2 over the held-out loss, minus 1, for bits ≥ min_bits (and
    below 16, where the loss is float rounding)."""
    return {(q.split, q.bits): q.predicted_loss / q.loss_mean - 1 for q in quality.per_bits
            if min_bits <= q.bits < 16 and q.loss_mean > 0}


def _bits(value: float) -> str:
    return "float32" if math.isnan(value) else f"{value:g}"


def _decisions(r: BandwidthComparison) -> tuple[str, ...]:
    return (f"{r.split:g}", _bits(r.bits), f"{r.split_float32:g}")


def _split_text(rows: Sequence[BandwidthComparison]) -> str:
    feasible = [r for r in rows if not (math.isnan(r.split) or math.isnan(r.split_float32))]
    moved = [r for r in feasible if r.split != r.split_float32]
    ratios = [r.objective / r.objective_float32 for r in feasible if r.objective_float32 > 0]
    if not feasible:
        return "neither decision is feasible at any bandwidth"
    shift = [r.split - r.split_float32 for r in moved]
    direction = ("always earlier: fewer units on the device" if shift and max(shift) < 0 else
                 "always later: more units on the device" if shift and min(shift) > 0 else
                 "earlier and later")
    return (f"compression moves the joint split at {len(moved)} of {len(feasible)} bandwidths "
            + (f"({direction}, by {min(map(abs, shift)):g}–{max(map(abs, shift)):g} units)"
               if moved else "")
            + f"; the objective with compression is {fmt_g(min(ratios), 3)}–"
            f"{fmt_g(max(ratios), 3)} × the float32 one")


def claim_uplink(compressed: Table, float32: Table, quality: UplinkQuality | None) -> Claim:
    """Compression against float32 at equal budgets on the calibrated phone scenario: split,
    objective ratio, measured loss difference (paired); the D_q prediction's worst error.
    The table shows the measured bandwidths and those where a decision changes (the
    evidence holds every bandwidth)."""
    rows = bandwidth_comparisons(compressed, float32, quality)
    measured = [r for r in rows if r.loss_difference is not None and r.paired_se is not None]
    differences = [(r.loss_difference, r.paired_se) for r in measured
                   if r.loss_difference is not None and r.paired_se is not None]
    holds = compression_verdict(differences)
    verdict = _split_text(rows)
    errors = prediction_errors(quality) if quality is not None else {}
    worst = max(errors.values(), key=abs) if errors else None
    if measured:
        better = sum(m < -SE_LIMIT * s for m, s in differences)
        worse = sum(m > SE_LIMIT * s for m, s in differences)
        verdict += (f". Measured on {quality.sentences if quality else 0} held-out sentences at "
                    f"{len(measured)} bandwidths, the compressed decision's loss (1 − cos) is "
                    f"lower beyond {SE_LIMIT:g} paired standard errors at {better} and higher at "
                    f"{worse} (differences "
                    + ", ".join(fmt_g(m, 3) for m, _ in differences) + ")")
    else:
        verdict += ". Not measured on the real model here"
    if worst is not None:
        verdict += (f". The profile's D_q(s, b)/2 predicts the held-out loss of a quantized "
                    f"activation within {fmt_pct(abs(worst))} for every split and b = "
                    f"{PREDICTION_MIN_BITS}–8 bits (target {fmt_pct(PREDICTION_TARGET)})")
    shown = [r for i, r in enumerate(rows) if r.loss_difference is not None or i == 0
             or _decisions(r) != _decisions(rows[i - 1])]
    table = TextTable.of(
        ["bandwidth (MHz)", "split (bits)", "split float32", "objective ratio",
         "loss compressed", "loss float32", "difference ± paired SE"],
        [[fmt_g(r.bandwidth_hz / 1e6, 3),
          "—" if math.isnan(r.split) else f"{r.split:g} ({_bits(r.bits)})",
          "—" if math.isnan(r.split_float32) else f"{r.split_float32:g}",
          fmt_g(r.objective / r.objective_float32, 3) if r.objective_float32 > 0 else "—",
          fmt_g(r.loss, 4), fmt_g(r.loss_float32, 4),
          "—" if r.loss_difference is None else
          f"{fmt_g(r.loss_difference, 3)} ± {fmt_g(r.paired_se, 2)}"] for r in shown])
    return Claim.judged(
        ClaimId.UPLINK, "Compressing the uplink moves the split and lowers the distortion",
        "choosing the activation width b (docs/theory.md §6) lowers the distortion at equal "
        "budgets and moves the best split (issue 13)", verdict, holds, table,
        ["uplink_bandwidth", "uplink_split_vs_gain", "uplink_quality_vs_bits"],
        kind=Status.NOT_JUDGED if holds is None else None,
        bandwidths_hz=[r.bandwidth_hz for r in rows],
        split=[None if math.isnan(r.split) else r.split for r in rows],
        split_float32=[None if math.isnan(r.split_float32) else r.split_float32 for r in rows],
        objective_ratio=[r.objective / r.objective_float32 if r.objective_float32 > 0 else None
                         for r in rows],
        measured_bandwidths_hz=[r.bandwidth_hz for r in measured],
        loss_difference=[m for m, _ in differences], paired_se=[s for _, s in differences],
        dq_prediction_worst_error=worst)


def _nothing_crosses(row: JointVsFloat32) -> bool:
    """Both decisions send no activation (split 0 or L): there is nothing to compress."""
    return row.bits is None and row.split == row.split_float32


def _why_not(row: JointVsFloat32) -> str:
    if row.bits is None or row.bits == 32:
        return "the optimizer keeps float32 (the same decision)"
    if not row.holds_limits:
        return "the compressed decision breaks a limit when executed"
    if row.objective < row.objective_float32:
        return (f"the objective predicts {fmt_pct(1 - row.objective / row.objective_float32)} "
                "less distortion, the measured loss does not follow")
    return "the objective is not lower with compression"


def claim_uplink_executed(targets: Mapping[str, CompressionTargets],
                          mode: str = "calibrated") -> Claim | None:
    """The issue's compression targets as `laimco evaluate` measured them in `mode`: bytes on
    the wire against the prediction, the distortion prediction for b ≥ 4, and per shipped
    phone scenario whether compression lowers the joint decision's measured loss (and if
    not, by how much not and why). None when the report has no such targets."""
    t = targets.get(mode)
    if t is None:
        return None
    shipped_phones = {k: v for k, v in t.joint_vs_float32.items() if "phone" in k}
    phones = {k: v for k, v in shipped_phones.items() if not _nothing_crosses(v)}
    idle = sorted(set(shipped_phones) - set(phones))
    bytes_ok = (t.requests_measured_over_predicted_worst is not None
                and t.requests_measured_over_predicted_worst <= BYTES_TARGET)
    worst = t.worst_distortion_prediction_error
    prediction_ok = worst is None or worst <= PREDICTION_TARGET
    lowers = [v.compression_lowers_loss for v in phones.values()]
    holds = bytes_ok and prediction_ok and bool(lowers) and all(lowers)
    bytes_text = ("no compressed decision sent bytes" if t.requests_measured_over_predicted_worst
                  is None else f"bytes on the wire are within "
                  f"{fmt_pct(t.requests_measured_over_predicted_worst)} of the prediction "
                  f"({fmt_pct(t.exact_bytes_share or 0.0)} of requests exactly)")
    prediction_text = ("no decision sends b ≥ 4 bits" if worst is None else
                       f"the objective predicts the measured output distortion of the "
                       f"{len(t.distortion_prediction)} decisions sending b ≥ 4 bits within "
                       f"{fmt_pct(worst)} (target {fmt_pct(PREDICTION_TARGET)}")
    if t.distortion_prediction:
        label, p = max(t.distortion_prediction.items(), key=lambda i: abs(i[1].relative_error))
        prediction_text += (f"; worst {label} at {p.bits} bits: predicted {fmt_g(p.predicted, 3)}"
                            f", measured {fmt_g(p.measured, 3)})")
    elif worst is not None:
        prediction_text += ")"
    lowered = [k for k, v in phones.items() if v.compression_lowers_loss]
    verdict = (f"{mode} mode: {bytes_text}; {prediction_text}; compression lowers the joint "
               f"decision's measured loss beyond 3 paired SE on {len(lowered)} of {len(phones)} "
               "shipped phone scenarios where an activation crosses the link")
    not_lowered = [f"{k}: {fmt_g(v.loss_difference, 3)} ± {fmt_g(v.paired_se, 2)}, "
                   f"{_why_not(v)}" for k, v in phones.items() if not v.compression_lowers_loss]
    if not_lowered:
        verdict += " (not on " + "; ".join(not_lowered) + ")"
    if idle:
        verdict += (f"; on {', '.join(idle)} no activation crosses (split "
                    f"{', '.join(str(shipped_phones[k].split) for k in idle)} with and without "
                    "compression): nothing to compress")
    table = TextTable.of(
        ["scenario", "split (bits)", "split float32", "loss", "loss float32",
         "difference ± paired SE", "lower"],
        [[k, f"{v.split} ({'nothing crosses' if v.bits is None else v.bits})",
          str(v.split_float32), fmt_g(v.loss, 4), fmt_g(v.loss_float32, 4),
          f"{fmt_g(v.loss_difference, 3)} ± {fmt_g(v.paired_se, 2)}",
          "n/a" if _nothing_crosses(v) else "yes" if v.compression_lowers_loss else "NO"]
         for k, v in sorted(t.joint_vs_float32.items())])
    return Claim.judged(
        ClaimId.UPLINK_EXECUTED, "The compressed uplink holds when executed",
        "bytes on the wire as predicted, distortion predicted within 20 % for b ≥ 4, and "
        "compression lowers the joint decision's measured loss on the shipped phone scenarios "
        "(issue 13)", verdict, holds, table,
        bytes_worst_relative_error=t.requests_measured_over_predicted_worst,
        exact_bytes_share=t.exact_bytes_share, distortion_prediction_worst_error=worst,
        phone_scenarios=len(phones), lowered=lowered, nothing_crosses=idle)
