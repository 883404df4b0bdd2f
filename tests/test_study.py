"""`laimco reproduce --quick`: every figure and claim is written, and the claims the study
states are checked again here straight from its sweep tables — joint ≤ every baseline at every
feasible point, joint feasible wherever a baseline is, the split moving across device classes,
robust decisions within ε + 3 standard errors, alternating's gap per study scenario — each
claim says what kind of evidence it is, and its verdicts change when the data do."""

from __future__ import annotations

import copy
import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from figure_checks import assert_figure_is_drawn
from typer.testing import CliRunner

from laimco.experiments import study
from laimco.experiments.commands import register
from laimco.experiments.executors import PoolExecutor
from laimco.experiments.study import Status
from laimco.experiments.study.report import STATUS_LABELS
from laimco.experiments.sweep import read_columns, read_table

pytestmark = pytest.mark.slow  # runs laimco reproduce

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("bound_reliability", "objective_vs_latency", "objective_vs_energy",
           "objective_vs_bandwidth", "objective_vs_path_gain", "objective_vs_tx_power",
           "split_vs_device_class", "regimes", "fading_cdf", "fading_outage",
           "robust_violation", "solve_time", "model_size", "uplink_bandwidth",
           "uplink_split_vs_gain", "uplink_quality_vs_bits")
Tables = dict[str, dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Tables]:
    """One quick study per test session, shared by the pytest-xdist workers (the first to
    take the lock runs it; the others read what it wrote)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "laimco-quick-study"
    with (shared / "laimco-quick-study.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "study.json").is_file():
            with PoolExecutor(2) as pool:
                study.run_study(out, quick=True, executor=pool, progress=False)
    result = json.loads((out / "study.json").read_text())
    result["claims"] = json.loads((out / "claims.json").read_text())
    tables = {name: read_table(out / "sweeps" / name) for name in study.SWEEPS}
    return out, result, tables


def test_every_figure_is_drawn_as_png_and_svg_and_shown_in_the_report(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    """A smoke check of the files (figure_checks.py: each opens and is not blank) and of the
    report's links; the numbers behind the figures are checked by the table tests below."""
    out, _, _ = quick
    report = (out / "report.md").read_text()
    for name in FIGURES:
        assert_figure_is_drawn(out / "figures" / f"{name}.png", out / "figures" / f"{name}.svg")
        assert f"(figures/{name}.png)" in report and f"*Figure {name}*" in report


def test_report_states_every_computed_verdict_with_its_table(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    out, result, _ = quick
    report = (out / "report.md").read_text()
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c["id"] for c in result["claims"]]
    assert len(claims) >= 11
    for claim in claims:
        assert claim["verdict"] in report
        if claim["table"]:
            assert claim["table"] in report
    assert "minilm-iot" in report and "κf³ at f_max (W)" in report  # scenarios with sources


def _design_pairs(tables: Tables) -> list[tuple[str, int, str, bool, float, bool, float]]:
    """(sweep, point, baseline, joint feasible, joint objective, baseline feasible, its
    objective) for every baseline row of every design sweep."""
    out = []
    for sweep in study.DESIGN_SWEEPS:
        t = tables[sweep]
        for p in np.unique(t["point"]):
            at = t["point"] == p
            j = np.flatnonzero(at & (t["strategy"] == "joint"))[0]
            for i in np.flatnonzero(at & (t["strategy"] != "joint")):
                out.append((sweep, int(p), str(t["strategy"][i]), bool(t["feasible"][j]),
                            float(t["objective"][j]), bool(t["feasible"][i]),
                            float(t["objective"][i])))
    return out


def test_joint_objective_is_at_most_every_baselines_at_every_feasible_point(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    pairs = [p for p in _design_pairs(quick[2]) if p[3] and p[5]]
    assert len(pairs) > 200
    worse = [p for p in pairs if p[4] > p[6] * (1 + 1e-6) + 1e-9]
    assert not worse
    fading = quick[2]["fading"]
    joint = fading["strategy"] == "joint"
    for name in set(fading["strategy"].tolist()) - {"joint"}:
        other = fading["strategy"] == name
        both = fading["feasible"][joint] & fading["feasible"][other]
        assert np.all(fading["objective"][joint][both]
                      <= fading["objective"][other][both] * (1 + 1e-6) + 1e-9), name


def test_joint_is_feasible_wherever_any_baseline_is(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    pairs = _design_pairs(quick[2])
    assert [p for p in pairs if p[5] and not p[3]] == []
    assert any(p[3] and not p[5] for p in pairs)  # and sometimes where a baseline is not
    fading = quick[2]["fading"]
    joint_ok = fading["feasible"][fading["strategy"] == "joint"]
    for name in set(fading["strategy"].tolist()) - {"joint"}:
        assert not np.any(fading["feasible"][fading["strategy"] == name] & ~joint_ok), name


def test_the_split_changes_across_device_classes(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    t = quick[2]["device_class"]
    joint = (t["strategy"] == "joint") & t["feasible"]
    differing = 0
    for g in np.unique(t["channel.path_gain"]):
        splits = {int(s) for s in t["split"][joint & (t["channel.path_gain"] == g)]}
        differing += len(splits) > 1
    assert differing >= 1
    r = quick[2]["regimes"]
    at_home = {b: int(r["split"][(r["base"] == b) & (r["strategy"] == "joint")][0])
               for b in ("paper-minilm-iot", "paper-minilm-phone", "paper-minilm-laptop")}
    assert len(set(at_home.values())) == 3, at_home


def test_robust_violation_rate_is_within_three_standard_errors_of_epsilon(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    t = quick[2]["robust"]
    rows = np.flatnonzero((t["design"] == "outage") & t["feasible"])
    assert rows.size >= 8
    for i in rows:
        eps, n = float(t["channel.outage_prob"][i]), int(t["realizations"][i])
        rate = t["violations"][i] / n
        assert rate <= eps + 3 * math.sqrt(eps * (1 - eps) / n), (eps, rate)
    mean_design = t["violation_rate"][(t["design"] == "mean") & t["feasible"]]
    assert np.all(mean_design > 0.5)  # designing for the mean gain breaks the limits often


def test_verdicts_follow_the_data(quick: tuple[Path, dict[str, Any], Tables]) -> None:
    tables = copy.deepcopy(quick[2])
    assert study.claim_dominance(tables).holds and study.claim_feasibility(tables).holds
    t = tables["latency"]
    j = np.flatnonzero((t["strategy"] == "joint") & t["feasible"] & (t["objective"] > 0))[0]
    t["objective"][j] *= 1.5
    dominance = study.claim_dominance(tables)
    assert dominance.holds is False and "; worse at " in dominance.verdict
    assert dominance.status == Status.FAILS  # a broken by-construction check shows
    robust = tables["robust"]
    robust["violation_rate"][robust["design"] == "outage"] *= 3
    assert study.claim_robust(robust).holds is False
    classes = tables["device_class"]
    classes["split"][:] = 2
    assert study.claim_split(classes, None).holds is False


def test_model_configs_load_and_match_published_parameter_counts(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    import transformers

    published_m = {"bert-base": 110, "bert-large": 340, "gpt2": 124, "gpt2-medium": 355,
                   "gpt2-large": 774, "gpt2-xl": 1558, "llama-1b": 1100, "llama-7b": 6738}
    configs = sorted((ROOT / "src" / "laimco" / "configs").glob("*.json"))
    assert {c.stem for c in configs} == set(published_m)
    for config in configs:
        data = json.loads(config.read_text())
        transformers.AutoConfig.for_model(**data)
    t = quick[2]["model_size"]
    for label, params in zip(t["model.profile"], t["params_total"], strict=True):
        name = str(label).removeprefix("config:")
        if name in published_m:  # BERT's counts exclude the pooler (not a split unit)
            assert params / 1e6 == pytest.approx(published_m[name], rel=0.025), name


def test_bound_numbers_can_come_from_an_analysis_json(tmp_path: Path,
                                                      quick: tuple[Path, dict[str, Any],
                                                                   Tables]) -> None:
    bound = quick[2]["bound"]
    rows = [{k: float(bound[k][i]) for k in ("rho", "d_w", "d_y_calibration_mean",
                                              "d_y_calibration_max", "d_y_heldout_mean",
                                              "d_y_heldout_max")}
            for i in range(len(bound["rho"]))]
    law = {"rho": bound["rho"].tolist(), "laws": {"laplace_mle": {
        "predicted": bound["law_laplace"].tolist()}}}
    file = tmp_path / "analysis.json"
    file.write_text(json.dumps({"bound": {"rows": rows}, "laws": law}))
    converted = study.bound_from_analysis(file)
    assert study.k_hat(converted) == pytest.approx(study.k_hat(bound), rel=1e-12)
    np.testing.assert_allclose(converted["law_laplace"], bound["law_laplace"])
    assert study.claim_bound(converted, str(file)).holds == study.claim_bound(
        bound, "sweep").holds


def test_reproduce_command_names_a_missing_sweep_folder(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(tmp_path),
                                      "--sweeps", str(tmp_path / "nowhere"), "--workers", "1"])
    assert result.exit_code == 2
    assert "missing sweep file" in result.output


def test_claims_say_what_kind_of_evidence_they_are(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    """Checks that cannot fail unless the code is wrong are labelled so, not "holds"; the
    robust row states the analytic fact; "split beats both corners" is not judged without
    measured quality."""
    out, result, _ = quick
    by_id = {c["id"]: c for c in result["claims"]}
    for cid in ("dominance", "feasibility", "fading"):
        assert by_id[cid]["status"] == Status.BY_CONSTRUCTION, cid
    robust = by_id["robust"]
    assert robust["status"] == Status.ANALYTIC
    assert "g_ε = −ḡ·ln(1−ε)" in robust["verdict"] and "= ε exactly" in robust["verdict"]
    corners = by_id["corners"]
    assert corners["status"] == Status.NOT_JUDGED and corners["holds"] is None
    assert by_id["bound"]["status"] in (Status.HOLDS, Status.FAILS)
    report = (out / "report.md").read_text()
    assert f"**Verdict ({STATUS_LABELS[Status.BY_CONSTRUCTION]}):**" in report
    assert f"**Verdict ({STATUS_LABELS[Status.NOT_JUDGED]}):**" in report
    assert all(c["status"] in set(Status) for c in result["claims"])


def test_corners_are_judged_on_a_measured_gain_when_one_is_given(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    tables = quick[2]
    better = [study.MeasuredGain("a", 0.02, (0.01, 0.03)),
              study.MeasuredGain("b", 0.0, (-0.01, 0.01))]
    judged = study.claim_corners(tables, better)
    assert judged.holds is True and judged.status == Status.HOLDS
    assert "significantly at 1 of 2 scenarios" in judged.verdict
    worse = [*better, study.MeasuredGain("c", -0.05, (-0.07, -0.03))]
    judged = study.claim_corners(tables, worse)
    assert judged.holds is False and judged.status == Status.FAILS
    assert "(c)" in judged.verdict


def test_alternating_row_reports_every_study_scenario_from_the_tables(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    """One row per shipped scenario (regimes sweep) and per solve-time point, with the gap
    recomputed here from the tables' objectives; alternating is never below joint (by
    construction: joint is exact) and the verdict moves when the data do."""
    out, result, tables = quick
    claim = {c["id"]: c for c in result["claims"]}["alternating"]
    shipped = len(set(tables["regimes"]["base"].tolist()))
    timed = len(np.unique(tables["solve_time"]["point"]))
    assert shipped == len(list((ROOT / "scenarios").glob("paper-*.toml")))
    assert claim["numbers"]["scenarios"] == shipped + timed
    gaps = _alternating_gaps(tables)
    assert min(gaps) >= -1e-6
    assert claim["numbers"]["max_gap"] == pytest.approx(max(gaps), rel=1e-9, abs=1e-12)
    assert claim["table"] in (out / "report.md").read_text()
    changed = copy.deepcopy(tables)
    t = changed["regimes"]
    t["objective"][(t["strategy"] == "alternating") & (t["objective"] > 0)] *= 1.5
    timings = {name: read_columns(out / "sweeps" / name / "timings.parquet")
               for name in study.ALTERNATING_SWEEPS}
    moved = study.claim_alternating(changed, timings)
    expected = max(_alternating_gaps(changed))
    assert expected > 0.5 - 1e-9
    assert moved.evidence["max_gap"] == pytest.approx(expected, rel=1e-9)
    assert f"at most {100 * expected:.3g} %" in moved.verdict


def _alternating_gaps(tables: Tables) -> list[float]:
    """(alternating / joint − 1) wherever joint needs pruning, straight from the tables."""
    gaps = []
    for sweep in ("regimes", "solve_time"):
        t = tables[sweep]
        for p in np.unique(t["point"]):
            j = (t["point"] == p) & (t["strategy"] == "joint")
            a = (t["point"] == p) & (t["strategy"] == "alternating")
            assert t["feasible"][a][0] == t["feasible"][j][0]
            if t["feasible"][j][0] and t["objective"][j][0] > 0:
                gaps.append(float(t["objective"][a][0] / t["objective"][j][0] - 1))
    return gaps


def test_uplink_claim_reads_the_uplink_sweeps_and_is_a_finding(
        quick: tuple[Path, dict[str, Any], Tables]) -> None:
    """The claim's splits and objective ratios are the uplink sweeps' joint rows; with the
    held-out measurement it is judged (holds or fails), never left unjudged."""
    out, result, tables = quick
    claim = next(c for c in result["claims"] if c["id"] == "uplink")
    assert claim["status"] in (Status.HOLDS, Status.FAILS)
    a, b = tables["uplink_bandwidth"], tables["uplink_bandwidth_float32"]
    order_a = np.argsort(a["channel.bandwidth_hz"])
    order_b = np.argsort(b["channel.bandwidth_hz"])
    assert claim["numbers"]["split"] == [float(s) for s in a["split"][order_a]]
    np.testing.assert_allclose(claim["numbers"]["objective_ratio"],
                               a["objective"][order_a] / b["objective"][order_b], rtol=1e-12)
    assert len(claim["numbers"]["loss_difference"]) == study.run.UPLINK_BANDWIDTHS[True]
    assert (out / "uplink" / "quality.json").is_file()
