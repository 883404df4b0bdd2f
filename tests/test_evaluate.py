"""`laimco evaluate`: decisions applied to the real model (docs/theory.md §5, README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from figure_checks import assert_figure_is_drawn

from laimco.experiments.evaluate import EvaluateError, evaluate, rank_agreement

pytestmark = pytest.mark.slow  # prunes, splits and runs the real MiniLM

ROOT = Path(__file__).resolve().parents[1]
LAPTOP = ROOT / "scenarios" / "minilm-laptop.toml"


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The laptop with a budget so large that nothing needs pruning."""
    text = LAPTOP.read_text().replace("latency_budget_s = 0.03", "latency_budget_s = 5.0")
    assert "latency_budget_s = 5.0" in text
    path = tmp_path_factory.mktemp("scenario") / "roomy.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def run(roomy: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("eval")
    report = evaluate(roomy, out, strategies=("joint", "on-server", "fixed-ratio"),
                      n_sentences=12, timing_rounds=1, progress=False)
    return out, report


def test_report_follows_the_contract(run: tuple[Path, dict[str, Any]]) -> None:
    out, report = run
    on_disk = json.loads((out / "evaluate.json").read_text())
    assert on_disk["rank_agreement"] == report["rank_agreement"]
    assert set(on_disk["rank_agreement"]) >= {"pairs", "agreeing"}
    (scenario,) = on_disk["scenarios"]
    names = [s["strategy"] for s in scenario["strategies"]]
    # every strategy also runs with a float32 uplink: what compression changes
    assert names == ["joint", "on-server", "fixed-ratio", "joint-float32", "on-server-float32",
                     "fixed-ratio-float32"]
    for row in scenario["strategies"]:
        assert set(row) >= {"strategy", "decision", "measured"}
        if row["decision"]["status"] == "infeasible":
            assert row["measured"] is None
            continue
        m = row["measured"]
        assert set(m) >= {"loss_mean", "loss_ci95", "retrieval_at_10", "output_distortion",
                          "latency_s", "energy_j", "limits_hold"}
        assert set(m["latency_s"]) == {"device", "uplink", "server", "downlink", "total"}
        assert set(m["energy_j"]) == {"compute", "uplink", "total"}
        assert m["loss_ci95"][0] <= m["loss_mean"] <= m["loss_ci95"][1]
    markdown = (out / "evaluate.md").read_text()
    assert all(f"{name}" in markdown for name in names)
    for name in ("latency", "objective_vs_loss"):  # smoke check: the figures open, not blank
        assert_figure_is_drawn(out / f"{name}.png", out / f"{name}.svg")


def test_an_unpruned_decision_measures_no_loss_and_the_predicted_latency(
        run: tuple[Path, dict[str, Any]]) -> None:
    """With nothing pruned the executed model is the dense one: loss 0 (to float32 rounding),
    every retrieval neighbour kept, and under the emulation rule t = (t/t_dense)·F/Θ = F/Θ,
    which is the optimizer's prediction (eq. 2.2) — so measured and predicted latency agree to
    rounding, whatever this CPU's speed."""
    _, report = run
    joint = report["scenarios"][0]["strategies"][0]
    d, m = joint["decision"], joint["measured"]
    assert d["rho_device"] == pytest.approx(0.0, abs=1e-9)
    assert d["rho_server"] == pytest.approx(0.0, abs=1e-9)
    assert m["loss_mean"] < 1e-5 and m["retrieval_at_10"] == pytest.approx(1.0)
    assert m["latency_s"]["total"] == pytest.approx(d["latency_s"]["total"], rel=1e-6)
    assert m["energy_j"]["total"] == pytest.approx(d["energy_j"]["total"], rel=1e-6)
    assert m["limits_hold"]


def test_pruning_costs_measured_quality(run: tuple[Path, dict[str, Any]]) -> None:
    """fixed-ratio prunes both sides at 0.5: the measured loss is clearly above the dense one's
    (analysis: cosine ≈ 0.73 for magnitude at 0.5 on the whole model)."""
    _, report = run
    rows = {r["strategy"]: r for r in report["scenarios"][0]["strategies"]}
    pruned = rows["fixed-ratio"]["measured"]
    assert pruned["loss_mean"] > 0.01
    assert pruned["loss_ci95"][0] > rows["joint"]["measured"]["loss_ci95"][1]


def test_a_quantized_uplink_sends_exactly_the_predicted_bytes(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The default phone scenario compresses its uplink: per held-out request the bytes of
    codes and scales are ⌈H·b/8⌉ per real token plus a float32 scale (eq. 6.1, counted here
    from the tokenizer's own token counts), and a request of the profile's 128 tokens sends
    exactly the decision's uplink_bits (the attention mask counted as the profile does)."""
    from laimco.data import heldout_sentences
    from laimco.models.loading import load_model

    out = tmp_path_factory.mktemp("eval-phone")
    report = evaluate(ROOT / "scenarios" / "minilm-phone.toml", out, strategies=("joint",),
                      n_sentences=12, timing_rounds=1, progress=False)
    rows = {r["strategy"]: r for r in report["scenarios"][0]["strategies"]}
    d, m = rows["joint"]["decision"], rows["joint"]["measured"]
    bits = d["activation_bits"]
    assert bits is not None and bits < 32 and d["coding"] == "none"
    tokenizer = load_model("minilm").tokenizer
    tokens = [len(tokenizer(s, truncation=True, max_length=128)["input_ids"])
              for s in heldout_sentences()[:12]]
    hidden = 384
    expected = [n * (-(-hidden * bits // 8) + 4) for n in tokens]
    assert m["upload_bytes"]["measured_mean"] == pytest.approx(sum(expected) / 12, rel=1e-12)
    assert m["upload_bytes"]["exact_requests"] == 1.0
    assert m["uplink_bits"] == pytest.approx(d["uplink_bits"], rel=1e-12)
    assert rows["joint-float32"]["decision"]["activation_bits"] in (32, None)
    versus = report["targets"]["calibrated"]["compression"]["joint_vs_float32"]
    assert versus["minilm-phone"]["bits"] == bits


def test_a_rerun_resumes_without_measuring_again(roomy: Path, run: tuple[Path, dict[str, Any]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out, first = run
    from laimco.experiments import evaluate as module

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a finished strategy was measured again")

    monkeypatch.setattr(module.Evaluator, "measure", refuse)
    again = evaluate(roomy, out, strategies=("joint", "on-server", "fixed-ratio"),
                     n_sentences=12, timing_rounds=1, progress=False)
    assert again["scenarios"][0]["strategies"] == first["scenarios"][0]["strategies"]


def test_rank_agreement_counts_only_clear_and_significant_pairs() -> None:
    """Four decisions with known losses: a and b differ in objective by 50 % and in loss by
    many standard errors (counted, agreeing); c's objective is within 5 % of a's (not counted);
    d is ordered against its loss (counted, disagreeing)."""
    rng = np.random.default_rng(0)
    base = rng.normal(0.1, 0.01, 400)
    losses = {0: base, 1: base + 0.05, 2: base + 0.2, 3: base - 0.02}
    rows = [{"id": 0, "mode": "m", "objective": 1.0, "label": "a"},
            {"id": 1, "mode": "m", "objective": 1.5, "label": "b"},
            {"id": 2, "mode": "m", "objective": 1.02, "label": "c"},
            {"id": 3, "mode": "x", "objective": 9.0, "label": "d"}]
    result = rank_agreement(rows, losses)
    # pairs in mode m: (a, b) agree; (a, c) objectives within 5 %; (b, c) 1.5 vs 1.02: c has
    # the lower objective but the higher loss → disagree; d is alone in its mode
    assert result["pairs"] == 2 and result["agreeing"] == 1
    assert result["disagreeing_pairs"] == [["b", "c"]]


def test_architecture_only_profile_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "arch.toml"
    scenario.write_text((ROOT / "scenarios" / "paper-minilm-phone.toml").read_text().replace(
        'profile = "minilm-l6"', 'profile = "config:bert-base"'))
    with pytest.raises(EvaluateError, match=r"architecture-only"):
        evaluate(scenario, tmp_path / "out", strategies=("joint",), n_sentences=4,
                 timing_rounds=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_bad_input_exits_2_with_one_message(tmp_path: Path) -> None:
    for args, named in ((["evaluate", str(tmp_path / "missing.toml")], "no such scenario"),
                        (["evaluate", str(LAPTOP), "--strategies", "best"], "unknown strategy"),
                        (["evaluate", str(LAPTOP), "--sentences", "1"], "--sentences")):
        proc = subprocess.run([sys.executable, "-m", "laimco.cli", *args], capture_output=True,
                              text=True, check=False, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        message = " ".join(proc.stderr.split())  # the console folds long lines
        assert named in message and "Traceback" not in message
