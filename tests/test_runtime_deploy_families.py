"""`laimco deploy --model DIR` for every family: small random GPT-2, LLaMA (grouped-query) and
ViT directories, each profiled, put into a scenario, deployed at the fixed split L/2 over a real
MLServer process. A failure after the work began leaves no folder behind.

The optimizer prunes nothing on models this small (ρ = 0), so the outputs that came over the
network must equal the dense *unsplit* model's (run in the deploy process by another code
path) up to float noise; for the language models only the real tokens' logits are compared,
as many rows as the tokenizer gives real tokens (counted here independently).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import transformers
import typer
from typer.testing import CliRunner

from laimco.data import heldout_sentences
from laimco.models.loading import builtin_model_dir, model_from_config
from laimco.models.profiler import profile_safetensors_dir, save_profile
from laimco.runtime.commands import register

pytestmark = pytest.mark.slow  # deploys torch models over a served network path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "paper-minilm-phone.toml"
SEQ_LEN = 16
N_INPUTS = 3
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "special_tokens_map.json")
CONFIGS = {  # the MiniLM tokenizer (vocabulary 30522) stands in for the text models' own
    "gpt2": lambda: transformers.GPT2Config(vocab_size=30522, n_embd=32, n_layer=3, n_head=4,
                                            n_positions=64, bos_token_id=0, eos_token_id=0),
    "llama": lambda: transformers.LlamaConfig(vocab_size=30522, hidden_size=32,
                                              num_hidden_layers=3, num_attention_heads=4,
                                              num_key_value_heads=2, intermediate_size=64,
                                              max_position_embeddings=64),
    "vit": lambda: transformers.ViTConfig(hidden_size=32, num_hidden_layers=3,
                                          num_attention_heads=4, intermediate_size=64,
                                          image_size=16, patch_size=4, num_channels=3),
}


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _model_and_scenario(root: Path, family: str) -> tuple[Path, Path]:
    """A random model directory (with a tokenizer for text), its profile and a scenario."""
    model = root / family
    loaded = model_from_config(CONFIGS[family](), seed=3)
    loaded.model.save_pretrained(model, safe_serialization=True)
    if family != "vit":
        for name in TOKENIZER_FILES:
            shutil.copy(builtin_model_dir("minilm") / name, model / name)
    profile = profile_safetensors_dir(model, seq_len=SEQ_LEN, name=f"tiny-{family}",
                                      image_size=16 if family == "vit" else None)
    save_profile(profile, root / f"{family}.json")
    scenario = root / f"{family}.toml"
    scenario.write_text(SCENARIO.read_text().replace(
        'profile = "minilm-l6"', f'profile = "{root / (family + ".json")}"'))
    return model, scenario


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_deploy_runs_every_family_over_the_network(family: str, tmp_path: Path) -> None:
    model, scenario = _model_and_scenario(tmp_path, family)
    out = tmp_path / "run"
    result = CliRunner().invoke(_app(), [
        "deploy", str(scenario), "--model", str(model), "--out", str(out), "--strategy",
        "fixed-split", "--sentences", str(N_INPUTS)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "deploy.json").read_text())
    assert report["status"] == "ok" and report["family"] == family
    decision = report["decision"]
    assert decision["split"] == 2 and decision["rho_device"] == decision["rho_server"] == 0
    requests = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(requests) == N_INPUTS + 2 and all(r["status"] == "ok" for r in requests)
    assert all(r["timings"]["server_s"] > 0 for r in requests)
    quality = report["quality"]
    assert quality["network_vs_local_max_abs"] <= 1e-5
    assert quality["network_vs_dense"]["output_distortion"] <= 1e-8
    assert quality["network_vs_dense"]["mean_cosine"] == pytest.approx(1.0, abs=1e-6)
    if family == "vit":
        assert quality["rows"] == N_INPUTS and "retrieval_agreement_at_2" in quality[
            "network_vs_dense"]
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(model))
        real = sum(len(tokenizer(text, truncation=True, max_length=SEQ_LEN)["input_ids"])
                   for text in heldout_sentences()[:N_INPUTS])
        assert quality["rows"] == real
        assert quality["network_vs_dense"]["top1_agreement"] == 1.0
    manifest = json.loads((out / "pruned" / "manifest.json").read_text())
    assert manifest["family"] == family and report["pruned_folder"] == str(out / "pruned")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]  # no staging left


def test_a_deploy_that_fails_midway_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    """The server fails to start after pruning and saving: the pruned parts were written into
    a staging folder, which is removed; `--out` never appears."""
    from laimco.runtime import server

    model, scenario = _model_and_scenario(tmp_path, "gpt2")

    def broken(*args, **kwargs):
        raise server.ServerStartError("the server exited with code 1 while starting")

    monkeypatch.setattr(server, "start_server", broken)
    out = tmp_path / "runs" / "run"
    result = CliRunner().invoke(_app(), [
        "deploy", str(scenario), "--model", str(model), "--out", str(out), "--strategy",
        "fixed-split", "--sentences", "2"])
    assert result.exit_code == 2 and "while starting" in result.output
    assert not out.exists() and not (tmp_path / "runs").exists()
