"""Pruning a split model per side, saving and loading the parts, and the prune/profile CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from torch.nn.utils import prune as torch_prune
from typer.testing import CliRunner

from laimco.cli import app
from laimco.models.loading import ModelLoadError, model_from_config
from laimco.models.pruned import (
    PruningError,
    load_pruned,
    prune_split_model,
    save_pruned,
)
from laimco.models.split import run_full
from laimco.pruning import linear_modules

pytestmark = pytest.mark.slow  # prunes and saves torch models

runner = CliRunner()


def _bert() -> transformers.BertConfig:
    return transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3,
                                   num_attention_heads=4, intermediate_size=64,
                                   max_position_embeddings=64)


def _llama() -> transformers.LlamaConfig:
    return transformers.LlamaConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3,
                                    num_attention_heads=4, num_key_value_heads=2,
                                    intermediate_size=64, max_position_embeddings=64)


def _gpt2() -> transformers.GPT2Config:
    return transformers.GPT2Config(vocab_size=120, n_embd=32, n_layer=3, n_head=4,
                                   n_positions=64, bos_token_id=0, eos_token_id=0)


def _batches(n: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 120, (3, 9), generator=g)
        mask = torch.ones(3, 9, dtype=torch.long)
        mask[2, 6:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


@pytest.mark.parametrize("config", [_bert, _gpt2, _llama])
@pytest.mark.parametrize("rule", ["magnitude", "magnitude-global", "wanda", "structured"])
def test_pruned_parts_save_and_load_to_the_same_outputs(tmp_path: Path, config, rule) -> None:
    loaded = model_from_config(config(), seed=3)
    pruned = prune_split_model(loaded, 2, 0.5, 0.3, rule, calibration=_batches())
    batch = _batches(1)[0]
    out = pruned(batch)
    folder = save_pruned(pruned, tmp_path / "parts")
    again = load_pruned(folder)
    torch.testing.assert_close(again(batch), out, rtol=0, atol=0)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["split"] == 2 and manifest["rule"] == rule
    assert manifest["sides"]["device"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert manifest["sides"]["server"]["sparsity"] == pytest.approx(0.3, abs=0.05)


def _vit() -> transformers.ViTConfig:
    return transformers.ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=64, image_size=16, patch_size=4,
                                  num_channels=3)


def _pixel_batches(n: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    return [{"pixel_values": torch.randn(3, 3, 16, 16, generator=g)} for _ in range(n)]


@pytest.mark.parametrize("rule", ["magnitude", "magnitude-global", "wanda", "structured"])
def test_pruned_vit_parts_save_and_load_to_the_same_outputs(tmp_path: Path, rule) -> None:
    loaded = model_from_config(_vit(), seed=3)
    pruned = prune_split_model(loaded, 2, 0.5, 0.3, rule, calibration=_pixel_batches())
    batch = _pixel_batches(1)[0]
    out = pruned(batch)
    assert out.shape == run_full(loaded, batch).shape and torch.isfinite(out).all()
    folder = save_pruned(pruned, tmp_path / "parts")
    torch.testing.assert_close(load_pruned(folder)(batch), out, rtol=0, atol=0)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sides"]["device"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert manifest["sides"]["server"]["sparsity"] == pytest.approx(0.3, abs=0.05)


def test_side_magnitude_masks_equal_torch_prune_per_layer() -> None:
    loaded = model_from_config(_bert(), seed=4)
    pruned = prune_split_model(loaded, 3, 0.4, 0.0, "magnitude")
    device_copy = model_from_config(_bert(), seed=4)  # same weights, pruned by torch instead
    for name, module in linear_modules(device_copy.model).items():
        if name.startswith("encoder.layer.") and int(name.split(".")[2]) < 2:
            torch_prune.l1_unstructured(module, "weight", amount=0.4)
            assert torch.equal(module.weight_mask.bool(), pruned.masks["device"][name])


def test_pruning_only_one_side_leaves_the_other_identical() -> None:
    loaded = model_from_config(_bert(), seed=6)
    batch = _batches(1)[0]
    pruned = prune_split_model(loaded, 3, 0.0, 0.0, "magnitude")
    torch.testing.assert_close(pruned(batch), run_full(loaded, batch))
    assert pruned.reports["device"].parameter_distortion == 0.0


def test_bad_ratio_rule_and_missing_calibration_are_clear_errors() -> None:
    loaded = model_from_config(_bert())
    with pytest.raises(PruningError, match=r"\[0, 1\)"):
        prune_split_model(loaded, 2, 1.0, 0.0)
    with pytest.raises(PruningError, match="magnitude"):
        prune_split_model(loaded, 2, 0.1, 0.0, "random")  # type: ignore[arg-type]
    with pytest.raises(PruningError, match="calibration"):
        prune_split_model(loaded, 2, 0.1, 0.0, "wanda")


def test_a_changed_file_is_detected_and_a_failed_save_leaves_nothing(tmp_path: Path,
                                                                      monkeypatch) -> None:
    loaded = model_from_config(_bert())
    pruned = prune_split_model(loaded, 2, 0.2, 0.2)
    folder = save_pruned(pruned, tmp_path / "ok")
    with (folder / "server.safetensors").open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelLoadError, match="changed"):
        load_pruned(folder)

    import laimco.models.pruned as module

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(module, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_pruned(pruned, tmp_path / "half")
    assert not (tmp_path / "half").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ok"]


def test_cli_prune_and_profile_a_model_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "tiny"
    model_from_config(_bert(), seed=1).model.save_pretrained(model_dir)
    result = runner.invoke(app, ["prune", str(model_dir), "--split", "2", "--rho-device", "0.5",
                                 "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "manifest.json").is_file()
    profile = runner.invoke(app, ["profile", str(model_dir), "-o", str(tmp_path / "p.json"),
                                  "--seq-len", "16"])
    assert profile.exit_code == 0, profile.output
    data = json.loads((tmp_path / "p.json").read_text())
    assert [u["name"] for u in data["units"]][:2] == ["embeddings", "block1"]
    config_only = runner.invoke(app, ["profile", "--config", str(model_dir / "config.json"),
                                      "-o", str(tmp_path / "c.json"), "--seq-len", "32"])
    assert config_only.exit_code == 0, config_only.output
    bad = runner.invoke(app, ["prune", str(model_dir), "--split", "9"])
    assert bad.exit_code == 2
    assert runner.invoke(app, ["prune", str(tmp_path), "--split", "1"]).exit_code == 2
