"""`laimco deploy` end to end on the default scenario: optimize → prune → save → serve → run
held-out sentences over gRPC through the shaped uplink → report (JSON, markdown, bar chart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from laimco.config import load_scenario
from laimco.optimize import solve
from laimco.runtime.commands import register

pytestmark = pytest.mark.slow  # deploys the real MiniLM over a served network path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "minilm-phone.toml"
N_SENTENCES = 12


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("deploy") / "run"
    result = CliRunner().invoke(_app(), ["deploy", str(SCENARIO), "--out", str(out),
                                         "--sentences", str(N_SENTENCES)])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "deploy.json").read_text())


def test_deploy_runs_the_optimizers_decision_over_the_network(deployed) -> None:
    out, report = deployed
    decision = solve(load_scenario(SCENARIO))
    assert report["decision"]["split"] == decision.point.split
    manifest = json.loads((out / "pruned" / "manifest.json").read_text())
    assert manifest["split"] == decision.point.split
    assert manifest["sides"]["device"]["ratio"] == pytest.approx(decision.point.rho_device)
    assert manifest["sides"]["server"]["ratio"] == pytest.approx(decision.point.rho_server)
    requests = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(requests) == report["requests"]["requests"] >= N_SENTENCES
    assert all(r["status"] == "ok" for r in requests) and report["status"] == "ok"


def test_deploy_outputs_over_the_network_equal_the_in_process_pruned_model(deployed) -> None:
    _, report = deployed
    quality = report["quality"]
    assert quality["network_vs_local_max_abs"] <= 1e-5
    net, local = quality["network_vs_dense"], quality["local_vs_dense"]
    assert net["output_distortion"] == pytest.approx(local["output_distortion"], rel=1e-4)
    assert 0.5 < net["mean_cosine"] < 1.0
    assert 0.0 <= net["retrieval_agreement_at_10"] <= 1.0


def test_deploy_reports_predicted_next_to_measured_latency(deployed) -> None:
    out, report = deployed
    decision = solve(load_scenario(SCENARIO))
    lat = report["latency_s"]
    assert lat["predicted"] == pytest.approx(decision.to_json_dict()["latency_s"])
    link = report["link"]
    assert link["rate_bps"] == pytest.approx(load_scenario(SCENARIO).channel.to_channel()
                                             .rate_bps(decision.point.power_w, 1e-7))
    # the upload is paced at r: never faster than S/r, and only protocol time slower
    assert link["payload_over_rate_s"] <= lat["measured_host"]["uplink"]
    assert lat["measured_host"]["uplink"] <= link["payload_over_rate_s"] + 0.05
    # the decision quantizes the uplink (docs/theory.md §6): real tokens only, each request's
    # bytes exactly eq. 6.1; the decision is costed for the longest request (128 tokens)
    upload = link["uplink"]
    bits = decision.point.activation_bits
    assert bits is not None and bits < 32 and upload["activation_bits"] == bits
    assert upload["activation_bytes_measured"] == upload["activation_bytes_predicted"]
    assert upload["exact_requests"] == upload["requests"] == N_SENTENCES
    assert 0 < link["payload_bits"] <= link["predicted_upload_bits"]
    emu, host = report["emulation"], report["host"]
    profile = ROOT / "src" / "laimco" / "profiles" / "minilm-l6.json"
    units = json.loads(profile.read_text())["units"]
    flops = [u["flops_prunable"] + u["flops_fixed"] for u in units]
    split = decision.point.split
    assert host["device_flops"] == pytest.approx(sum(flops[:split]))
    assert host["server_flops"] == pytest.approx(sum(flops[split:]))
    scenario = load_scenario(SCENARIO)
    theta_server = scenario.server.flops_per_cycle * decision.point.freq_server_hz
    assert lat["emulated"]["server"] == pytest.approx(
        emu["server_pruned_over_dense"] * sum(flops[split:]) / theta_server)
    assert emu["device_pruned_over_dense"] > 0 and emu["server_pruned_over_dense"] > 0
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "deploy.md").read_text()
    for needed in ("| device |", "| uplink |", "| server |", "| total |", "latency.png",
                   "Θ_host / Θ_scenario", "retrieval agreement", "(@10)"):
        assert needed in text


def test_an_infeasible_scenario_is_reported_without_deploying(tmp_path) -> None:
    scenario = tmp_path / "tight.toml"
    scenario.write_text(SCENARIO.read_text().replace("latency_budget_s = 0.2",
                                                     "latency_budget_s = 0.001"))
    out = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["deploy", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "deploy.json").read_text())
    assert report["status"] == "infeasible" and report["decision"]["reasons"]
    assert "infeasible" in (out / "deploy.md").read_text()
    assert not (out / "pruned").exists()


def test_deploy_at_split_l_runs_everything_on_the_device_without_a_server(tmp_path) -> None:
    """The on-device strategy picks s = L: nothing is served or uploaded, and the outputs are
    the in-process pruned model's."""
    out = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["deploy", str(SCENARIO), "--out", str(out),
                                         "--strategy", "on-device", "--sentences", "6"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "deploy.json").read_text())
    decision = solve(load_scenario(SCENARIO), "on-device")
    n_units = json.loads((out / "pruned" / "manifest.json").read_text())["n_units"]
    assert report["status"] == "ok"
    assert report["decision"]["split"] == decision.point.split == n_units
    requests = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert requests and all(r["status"] == "ok" for r in requests)
    assert all(r["timings"]["rpc_s"] == 0 and r["timings"]["server_s"] == 0 for r in requests)
    assert report["quality"]["network_vs_local_max_abs"] <= 1e-5
    assert report["latency_s"]["measured_host"]["server"] == 0


def test_deploy_with_wanda_prunes_by_activations_and_serves_the_result(tmp_path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["deploy", str(SCENARIO), "--out", str(out),
                                         "--rule", "wanda", "--sentences", "6",
                                         "--calibration-sentences", "16"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "deploy.json").read_text())
    manifest = json.loads((out / "pruned" / "manifest.json").read_text())
    assert report["status"] == "ok" and manifest["rule"] == "wanda" == report["rule"]
    assert report["quality"]["network_vs_local_max_abs"] <= 1e-5
    requests = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert requests and all(r["status"] == "ok" and r["timings"]["server_s"] > 0
                            for r in requests)


class _WithUplink:
    """The optimizer's decision with the JSON contract's uplink keys set (until the optimizer
    chooses them itself): everything else is the real decision's."""

    def __init__(self, decision, bits: int, coding: str) -> None:
        self._decision, self._uplink = decision, {"activation_bits": bits, "coding": coding}

    def __getattr__(self, name: str):
        return getattr(self._decision, name)

    def to_json_dict(self) -> dict:
        return {**self._decision.to_json_dict(), **self._uplink}


def test_deploy_sends_the_decisions_8_bit_activation_and_meets_the_byte_prediction(
        tmp_path, monkeypatch) -> None:
    import laimco.optimize

    real_solve = laimco.optimize.solve
    monkeypatch.setattr(laimco.optimize, "solve",
                        lambda *a, **k: _WithUplink(real_solve(*a, **k), 8, "none"))
    out = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["deploy", str(SCENARIO), "--out", str(out),
                                         "--sentences", "8"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "deploy.json").read_text())
    manifest = json.loads((out / "pruned" / "manifest.json").read_text())
    assert manifest["activation_bits"] == 8 and manifest["coding"] == "none"
    upload = report["link"]["uplink"]
    assert upload["activation_bits"] == 8 and upload["requests"] == 8
    # every request's activation bytes = payload_bits(n_real, 384, 8-bit token) / 8 exactly
    assert upload["exact_requests"] == 8 and upload["measured_over_predicted"] == 1.0
    assert upload["activation_bytes_measured"] < 128 * (384 + 4)  # real tokens only
    # the upload through the shaped link takes the bytes over r, plus protocol time
    assert upload["upload_s_predicted"] <= upload["upload_s_measured"]
    assert upload["upload_s_measured"] <= upload["upload_s_predicted"] * 1.1 + 0.03
    # the server and the in-process parts saw the same dequantized activation
    assert report["quality"]["network_vs_local_max_abs"] <= 1e-5
    assert report["quality"]["network_vs_dense"]["mean_cosine"] > 0.5
    assert "8-bit codes (token scales" in (out / "deploy.md").read_text()
