"""The study's claim functions on small hand-built tables whose verdicts are worked out by
hand here (not read from an earlier run), the status rule, the report writer's Markdown, the
citations file beside the scenarios, and the analysis.json reader's errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from laimco.experiments.law_fits import LawFit
from laimco.experiments.study import (
    Claim,
    ClaimId,
    Status,
    StudyError,
    TextTable,
    bound_from_analysis,
    claim_dominance,
    claim_feasibility,
    claim_robust,
)
from laimco.experiments.study.citations import load_citations
from laimco.experiments.study.claims_execution import (
    Evaluation,
    claim_execution,
    measured_gains,
)
from laimco.experiments.study.report import claim_record, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def _design_table(joint_at_0: float) -> dict[str, np.ndarray]:
    """Two points. Point 0: joint `joint_at_0`, tied 1.0, on-device 2.0 (all feasible).
    Point 1: joint 3.0, tied infeasible, on-device 4.0."""
    return {"point": np.array([0, 0, 0, 1, 1, 1]),
            "strategy": np.array(["joint", "tied", "on-device"] * 2),
            "objective": np.array([joint_at_0, 1.0, 2.0, 3.0, np.nan, 4.0]),
            "feasible": np.array([True, True, True, True, False, True])}


def test_dominance_counts_and_verdict_match_a_hand_count() -> None:
    # feasible (point, baseline) pairs: (0, tied), (0, on-device), (1, on-device) = 3; joint
    # is no worse at all 3; clearly better (> 0.1 %) at (0, on-device) and (1, on-device);
    # joint alone is feasible at (1, tied); baseline/joint ratios: tied 1.0, on-device 2, 4/3
    claim = claim_dominance({"latency": _design_table(1.0)})
    assert claim.holds is True and claim.status == Status.BY_CONSTRUCTION
    assert claim.evidence == {"pairs": 3, "no_worse": 3, "worse": 0}
    rows = {row[0]: row for row in claim.tables[0].rows}
    assert rows["tied"] == ("tied", "1", "1", "0", "1", "1", "1")
    assert rows["on-device"] == ("on-device", "2", "2", "2", f"{(2 + 4 / 3) / 2:.3g}", "2",
                                 "0")
    assert "at 3 of 3 feasible (point, baseline) pairs (100 %) over 2 points" in claim.verdict


def test_dominance_fails_when_joint_is_worse_than_a_baseline() -> None:
    # joint 1.5 against tied 1.0 at point 0: worse beyond the 1e-6 tolerance
    claim = claim_dominance({"latency": _design_table(1.5)})
    assert claim.holds is False and claim.status == Status.FAILS
    assert claim.evidence["worse"] == 1
    assert "worse at 1: first ('latency', 0, 'tied', 1.5, 1.0)" in claim.verdict
    # equal within the solver's tolerance is not worse
    assert claim_dominance({"latency": _design_table(1.0 + 1e-7)}).holds is True


def test_feasibility_fails_where_a_baseline_is_feasible_and_joint_is_not() -> None:
    table = _design_table(1.0)
    assert claim_feasibility({"latency": table}).holds is True
    table["feasible"][3] = False  # joint infeasible at point 1, on-device feasible
    claim = claim_feasibility({"latency": table})
    assert claim.holds is False and claim.status == Status.FAILS
    assert claim.evidence == {"points": 2, "missing": 1}


def _robust_table(rate: float) -> dict[str, np.ndarray]:
    """One outage design at ε = 0.1 over 100 realizations with violation rate `rate`, and
    the mean-gain design at the same ε breaking its limits in 60 %."""
    return {"point": np.array([0, 0]), "strategy": np.array(["joint", "joint"]),
            "design": np.array(["outage", "mean"]),
            "channel.outage_prob": np.array([0.1, 0.1]), "feasible": np.array([True, True]),
            "realizations": np.array([100, 100]),
            "violations": np.array([round(100 * rate), 60]),
            "violation_rate": np.array([rate, 0.6])}


def test_robust_limit_is_epsilon_plus_three_standard_errors() -> None:
    # ε + 3·√(ε(1−ε)/n) = 0.1 + 3·√(0.09/100) = 0.1 + 0.09 = 0.19
    inside = claim_robust(_robust_table(0.18))
    assert inside.holds is True and inside.status == Status.ANALYTIC
    assert inside.tables[0].rows[0][5] == "0.1900"
    outside = claim_robust(_robust_table(0.20))
    assert outside.holds is False and outside.status == Status.FAILS
    assert "within ε + 3 standard errors at 0 of 1" in outside.verdict


def _evaluation(fixed_split_losses: list[float]) -> tuple[Evaluation, dict]:
    """One paper-mode scenario "s": joint (split 2), fixed-split (split 3) and on-device
    (split 6, a corner), all feasible and within their limits when executed."""
    losses = {"joint": [0.1, 0.2, 0.3], "fixed-split": fixed_split_losses,
              "on-device": [0.3, 0.5, 0.4]}
    splits = {"joint": 2, "fixed-split": 3, "on-device": 6}
    rows = [{"strategy": s, "decision": {"split": splits[s]},
             "measured": {"loss_mean": float(np.mean(v)), "limits_hold": True},
             "partial": f"{s}.json"} for s, v in losses.items()]
    evaluation = Evaluation.model_validate(
        {"scenarios": [{"scenario": "scenarios/s.toml", "mode": "paper", "strategies": rows}],
         "rank_agreement": {"pairs": 10, "agreeing": 9}})
    return evaluation, {("s", s): np.array(v) for s, v in losses.items()}


def test_measured_gain_is_the_paired_difference_of_best_corner_and_best_split() -> None:
    # corner on-device − best interior split (joint, mean 0.2): differences 0.2, 0.3, 0.1,
    # mean 0.2, sample std 0.1, standard error 0.1/√3; CI = 0.2 ± 1.96·0.1/√3
    evaluation, losses = _evaluation([0.2, 0.25, 0.3])
    (gain,) = measured_gains(evaluation, losses)
    se = 0.1 / math.sqrt(3)
    assert gain.scenario == "s" and gain.gain == pytest.approx(0.2, abs=1e-12)
    assert gain.ci95 == pytest.approx((0.2 - 1.96 * se, 0.2 + 1.96 * se), abs=1e-12)


def test_execution_claim_is_within_three_paired_standard_errors_of_the_best() -> None:
    # best measured: fixed-split [0.1, 0.15, 0.3] (mean 0.1833); joint − it = 0, 0.05, 0:
    # mean 0.01667, standard error 0.01667, 3 SE = 0.05 ≥ mean → within
    evaluation, losses = _evaluation([0.1, 0.15, 0.3])
    claim = claim_execution(evaluation, losses)
    assert claim.holds is True and claim.status == Status.HOLDS
    assert claim.tables[0].rows[0][3:] == ("fixed-split", "0.0167", "yes")
    # fixed-split [0.0, 0.05, 0.2] (mean 0.0833): joint − it = 0.1, 0.15, 0.1: mean 0.1167,
    # standard error 0.01667, 3 SE = 0.05 < mean → not within
    evaluation, losses = _evaluation([0.0, 0.05, 0.2])
    claim = claim_execution(evaluation, losses)
    assert claim.holds is False and claim.status == Status.FAILS
    assert "in 0 of 1 scenarios" in claim.verdict and "orders 9 of 10" in claim.verdict


def test_a_failed_check_of_any_kind_is_reported_as_failing() -> None:
    failed = Claim.judged(ClaimId.FADING, "t", "p", "v", False, None,
                          kind=Status.BY_CONSTRUCTION)
    assert failed.status == Status.FAILS
    assert Claim.judged(ClaimId.FADING, "t", "p", "v", True, None,
                        kind=Status.BY_CONSTRUCTION).status == Status.BY_CONSTRUCTION
    assert Claim.judged(ClaimId.REGIMES, "t", "p", "v", None, None).status == Status.MEASURED
    assert Claim.judged(ClaimId.SPLIT, "t", "p", "v", True, None).status == Status.HOLDS


def test_report_writer_renders_tables_and_claim_records() -> None:
    table = TextTable.of(["a", "b"], [[1, "x"], [2.5, "y"]])
    assert markdown_table(table) == "| a | b |\n| --- | --- |\n| 1 | x |\n| 2.5 | y |"
    claim = Claim.judged(ClaimId.SPLIT, "t", "p", "v", True, [table, table], ["fig"], n=1)
    record = claim_record(claim)
    assert record["status"] == "holds" and record["numbers"] == {"n": 1}
    assert record["table"] == markdown_table(table) + "\n\n" + markdown_table(table)
    assert json.loads(json.dumps(record))["figures"] == ["fig"]


def test_shipped_citations_name_real_scenario_settings_and_files() -> None:
    citations = load_citations(ROOT / "scenarios")
    assert len(citations.sources) == 8
    keys = {k for s in citations.sources for k in s.keys}
    assert {"device.kappa", "channel.path_gain", "device.tx_power_max_w"} <= keys


def test_citations_with_an_unknown_key_or_scenario_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("")
    source = {"text": "t", "scenarios": ["a"], "keys": ["device.cpu_freq_hz"]}
    (tmp_path / "citations.json").write_text(json.dumps({"sources": [source]}))
    with pytest.raises(StudyError, match=r"device\.cpu_freq_hz: not a scenario setting"):
        load_citations(tmp_path)
    source.update(keys=["device.kappa"], scenarios=["phone*"])
    (tmp_path / "citations.json").write_text(json.dumps({"sources": [source]}))
    with pytest.raises(StudyError, match=r"'phone\*' matches no scenario file"):
        load_citations(tmp_path)


def test_analysis_json_law_keys_are_identifiers_not_labels(tmp_path: Path) -> None:
    row = {"rho": 0.5, "d_w": 2.0, "d_y_calibration_mean": 0.1, "d_y_calibration_max": 0.2,
           "d_y_heldout_mean": 0.1, "d_y_heldout_max": 0.3}
    file = tmp_path / "analysis.json"
    file.write_text(json.dumps({"bound": {"rows": [row]}, "laws": {
        "rho": [0.4, 0.6], "laws": {LawFit.LAPLACE_MLE: {"predicted": [1.0, 3.0]}}}}))
    bound = bound_from_analysis(file)
    assert bound["law_laplace"] == pytest.approx([2.0])  # interpolated at ρ = 0.5
    assert np.isnan(bound["law_gennorm"]).all()
    file.write_text(json.dumps({"bound": {"rows": [row]}, "laws": {
        "rho": [0.4, 0.6], "laws": {LawFit.LAPLACE_MLE.label: {"predicted": [1.0, 3.0]}}}}))
    with pytest.raises(StudyError, match=r"laws\.laws\.laplace \(MLE\)"):
        bound_from_analysis(file)


def test_reproduce_names_an_unreadable_evaluate_report(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from laimco.experiments.commands import register

    app = typer.Typer()
    register(app)
    (tmp_path / "evaluate.json").write_text(json.dumps({"scenarios": [{"mode": "paper"}]}))
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(tmp_path / "out"),
                                      "--evaluation", str(tmp_path), "--workers", "1"])
    assert result.exit_code == 2
    assert "not a laimco evaluate report" in result.output and "scenarios.0" in result.output
