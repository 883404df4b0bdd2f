"""The compressed uplink's claims and figures on hand-made data: the verdict follows the
measured loss differences (both outcomes), the numbers in the evidence are the paired
differences computed here independently, evaluate's compression targets are read and judged,
and the three figures are drawn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from figure_checks import assert_figure_is_drawn

from laimco.experiments.evaluate_targets import CompressionTargets
from laimco.experiments.study import (
    Status,
    claim_uplink,
    claim_uplink_executed,
    compression_verdict,
)
from laimco.experiments.study.figures_uplink import (
    quality_bits_figure,
    split_bits_figure,
    uplink_bandwidth_figure,
)
from laimco.experiments.study.uplink_quality import (
    BitsQuality,
    DecisionQuality,
    UplinkQuality,
    measured_bandwidths,
)

BANDWIDTHS = np.array([1e5, 1e6, 1e7])


def _table(key: str, x: np.ndarray, split: list[float], bits: list[float],
           objective: list[float]) -> dict[str, np.ndarray]:
    n = len(x)
    return {"point": np.arange(n), "strategy": np.array(["joint"] * n), key: x.astype(float),
            "split": np.array(split, dtype=float), "activation_bits": np.array(bits, float),
            "objective": np.array(objective, dtype=float)}


COMPRESSED = _table("channel.bandwidth_hz", BANDWIDTHS, [2, 3, 3], [4, 6, 8], [0.4, 0.3, 0.2])
FLOAT32 = _table("channel.bandwidth_hz", BANDWIDTHS, [7, 3, 3], [32, 32, 32], [0.8, 0.4, 0.2])


def _quality(shift: float, rng: np.random.Generator) -> UplinkQuality:
    """Measured losses at the first two bandwidths: float32 ~ 0.3, compressed 0.3 + shift
    (same inputs, small paired noise)."""
    decisions = []
    for bandwidth in BANDWIDTHS[:2]:
        base = rng.uniform(0.2, 0.4, size=40)
        noisy = base + shift + rng.normal(0, 0.005, size=40)
        decisions += [DecisionQuality(bandwidth_hz=bandwidth, compressed=True, split=2,
                                      activation_bits=4, objective=0.4,
                                      loss_per_input=tuple(noisy)),
                      DecisionQuality(bandwidth_hz=bandwidth, compressed=False, split=7,
                                      activation_bits=None, objective=0.8,
                                      loss_per_input=tuple(base))]
    per_bits = [BitsQuality(split=s, bits=b, loss_mean=0.1 / b ** 2 * s,
                            loss_se=0.001 / b ** 2, predicted_loss=0.11 / b ** 2 * s)
                for s in (1, 2, 3) for b in (16, 8, 6, 4, 2)]
    return UplinkQuality(key="k", sentences=40, per_bits=tuple(per_bits),
                         decisions=tuple(decisions))


def test_compression_verdict_needs_a_lower_loss_somewhere_and_a_higher_one_nowhere() -> None:
    assert compression_verdict([(-0.1, 0.01), (0.0, 0.01)]) is True
    assert compression_verdict([(-0.1, 0.01), (0.05, 0.01)]) is False  # worse at one
    assert compression_verdict([(-0.02, 0.01), (0.02, 0.01)]) is False  # nothing beyond 3 SE
    assert compression_verdict([(0.0, 0.0)]) is False  # identical decisions
    assert compression_verdict([]) is None


@pytest.mark.parametrize("shift, holds", [(-0.05, True), (0.05, False)])
def test_uplink_claim_follows_the_measured_paired_differences(shift: float,
                                                              holds: bool) -> None:
    quality = _quality(shift, np.random.default_rng(1))
    claim = claim_uplink(COMPRESSED, FLOAT32, quality)
    assert claim.holds is holds
    assert claim.status == (Status.HOLDS if holds else Status.FAILS)
    ev = claim.evidence
    assert ev["split"] == [2, 3, 3] and ev["split_float32"] == [7, 3, 3]
    assert ev["objective_ratio"] == pytest.approx([0.5, 0.75, 1.0])
    assert ev["measured_bandwidths_hz"] == [1e5, 1e6]
    for i, bandwidth in enumerate(BANDWIDTHS[:2]):
        a = np.asarray(quality.decision(bandwidth, True).loss_per_input)  # type: ignore[union-attr]
        b = np.asarray(quality.decision(bandwidth, False).loss_per_input)  # type: ignore[union-attr]
        d = a - b
        assert ev["loss_difference"][i] == pytest.approx(d.mean(), rel=1e-12)  # type: ignore[index]
        se = math.sqrt(((d - d.mean()) ** 2).sum() / (d.size - 1) / d.size)
        assert ev["paired_se"][i] == pytest.approx(se, rel=1e-9)  # type: ignore[index]
    assert "moves the joint split at 1 of 3 bandwidths" in claim.verdict
    # D_q/2 over the measured loss is 1.1 for every (s, b ≥ 4) here: a 10 % error
    assert ev["dq_prediction_worst_error"] == pytest.approx(0.1)


def test_uplink_claim_without_measurement_is_not_judged() -> None:
    claim = claim_uplink(COMPRESSED, FLOAT32, None)
    assert claim.holds is None and claim.status == Status.NOT_JUDGED
    assert "moves the joint split at 1 of 3" in claim.verdict


def _targets(lowers: dict[str, tuple[bool, int | None]], worst: float = 0.1,
             bytes_error: float = 0.0) -> dict[str, CompressionTargets]:
    rows = {name: {"bits": bits, "split": 3, "split_float32": 4, "objective": 0.3,
                   "objective_float32": 0.4, "loss": 0.1 if lower else 0.2,
                   "loss_float32": 0.2, "loss_difference": -0.1 if lower else 0.0,
                   "paired_se": 0.01, "compression_lowers_loss": lower, "holds_limits": True}
            for name, (lower, bits) in lowers.items()}
    return {"calibrated": CompressionTargets.model_validate({
        "requests_measured_over_predicted_worst": bytes_error, "exact_bytes_share": 1.0,
        "distortion_prediction": {"minilm-phone:joint": {
            "bits": 6, "predicted": 0.3, "measured": 0.3 / (1 + worst),
            "relative_error": worst}},
        "worst_distortion_prediction_error": worst, "joint_vs_float32": rows})}


def test_executed_claim_holds_when_every_target_is_met_and_says_why_not_otherwise() -> None:
    good = claim_uplink_executed(_targets({"minilm-phone": (True, 6),
                                           "minilm-laptop": (False, 32)}))
    assert good is not None and good.holds is True  # only phone scenarios count
    assert "1 of 1 shipped phone scenarios" in good.verdict
    idle = _targets({"minilm-phone": (True, 6), "minilm-phone-no-privacy": (False, None)})
    row = idle["calibrated"].joint_vs_float32["minilm-phone-no-privacy"]
    idle["calibrated"].joint_vs_float32["minilm-phone-no-privacy"] = row.model_copy(
        update={"split": 0, "split_float32": 0})
    not_applicable = claim_uplink_executed(idle)  # split 0 both ways: nothing to compress
    assert not_applicable is not None and not_applicable.holds is True
    assert "minilm-phone-no-privacy no activation crosses" in not_applicable.verdict
    missed = claim_uplink_executed(_targets({"minilm-phone": (True, 6),
                                             "minilm-phone-good-channel": (False, 32)}))
    assert missed is not None and missed.holds is False and missed.status == Status.FAILS
    assert "minilm-phone-good-channel" in missed.verdict and "keeps float32" in missed.verdict
    bad_prediction = claim_uplink_executed(_targets({"minilm-phone": (True, 6)}, worst=0.3))
    assert bad_prediction is not None and bad_prediction.holds is False
    bad_bytes = claim_uplink_executed(_targets({"minilm-phone": (True, 6)}, bytes_error=0.05))
    assert bad_bytes is not None and bad_bytes.holds is False
    assert claim_uplink_executed({}) is None


def test_measured_bandwidths_spread_evenly_over_the_axis() -> None:
    values = [float(v) for v in np.geomspace(1e5, 1e7, 6)]
    assert measured_bandwidths(values, 4) == [values[0], values[2], values[3], values[5]]
    assert measured_bandwidths(values[:3], 4) == values[:3]


@pytest.mark.slow  # draws the figures with matplotlib (not the analytic core)
def test_uplink_figures_are_drawn(tmp_path: Path) -> None:
    quality = _quality(-0.05, np.random.default_rng(2))
    gains = np.geomspace(1e-13, 1e-5, 5)
    pathgain = _table("channel.path_gain", gains, [1, 3, 3, 3, 3],
                      [2, 4, 4, 6, float("nan")], [0.6, 0.4, 0.3, 0.25, 0.2])
    drawn = [(tmp_path, uplink_bandwidth_figure(COMPRESSED, FLOAT32, quality, tmp_path)),
             (tmp_path / "none", uplink_bandwidth_figure(COMPRESSED, FLOAT32, None,
                                                         tmp_path / "none")),
             (tmp_path, split_bits_figure(pathgain, tmp_path)),
             (tmp_path, quality_bits_figure(quality, tmp_path))]
    for folder, figure in drawn:  # files are named relative to the folder's parent
        png, svg = (folder.parent / f for f in figure.files)
        assert_figure_is_drawn(png, svg)
    figures = [f for _, f in drawn]
    assert "(1, 2)" in figures[2].caption and "(3, —)" in figures[2].caption
