"""The family registry and its adapters, checked against transformers' own configs and models;
one profile resolver for every command; a `ModelProfile` that carries every header field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from tiny_configs import TINY_CONFIGS
from typer.testing import CliRunner

from laimco.cli import app
from laimco.models.families import (
    UnknownFamilyError,
    adapter_for_model_type,
    family_adapter,
    family_adapters,
    known_families,
)
from laimco.models.family_names import family_names
from laimco.models.loading import UnsupportedArchitectureError, family_of, model_from_config
from laimco.models.profiler import profile_from_config, profile_model
from laimco.models.sensitivity import lipschitz_estimate
from laimco.models.split import split_model
from laimco.models.units import model_units
from laimco.profile import profile_from_dict, resolve_profile_text
from laimco.pruning import linear_weights, prune_structured

pytestmark = pytest.mark.slow  # torch models and a CLI solve on a config:gpt2 profile
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = TINY_CONFIGS


def test_every_family_the_tests_build_is_registered() -> None:
    assert known_families() == sorted(CONFIGS)
    assert [a.name for a in family_adapters()] == known_families()


def test_the_torch_free_family_names_are_the_registered_families() -> None:
    # profile_schema checks a profile's family against family_names() without importing torch
    assert list(family_names()) == known_families()


def test_a_family_without_the_lipschitz_layout_is_refused_naming_those_with_it() -> None:
    assert [a.name for a in family_adapters() if a.lipschitz_estimate] == ["bert"]
    loaded = model_from_config(CONFIGS["gpt2"]())
    with pytest.raises(ValueError, match=r"knows the block layout of the bert famil.*gpt2 model"):
        lipschitz_estimate(loaded, [])


def test_an_unknown_family_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownFamilyError) as info:
        family_adapter("t5")
    message = str(info.value)
    assert "'t5'" in message
    for name in CONFIGS:
        assert name in message
    loaded = model_from_config(CONFIGS["bert"]())
    layer = loaded.adapter.block_modules(loaded.model)[0]
    with pytest.raises(ValueError, match="laimco knows bert, gpt2, llama, vit"):
        prune_structured(layer, "t5", 0.5)


def test_an_unknown_model_type_lists_the_supported_ones() -> None:
    with pytest.raises(UnknownFamilyError, match=r"mistral.*qwen2"):
        adapter_for_model_type("t5")
    with pytest.raises(UnsupportedArchitectureError, match="roberta"):
        family_of(transformers.T5Config())


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_every_model_type_of_an_adapter_maps_back_to_it(family: str) -> None:
    adapter = family_adapter(family)
    for model_type in adapter.model_types:
        config = transformers.AutoConfig.for_model(model_type)
        assert family_of(config) == family
        assert adapter_for_model_type(model_type) is adapter


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_adapter_blocks_and_heads_match_the_transformers_config(family: str) -> None:
    config = CONFIGS[family]()
    loaded = model_from_config(config, seed=0)
    adapter = loaded.adapter
    blocks = adapter.block_modules(loaded.model)
    assert len(blocks) == config.num_hidden_layers
    units = model_units(loaded)
    assert [u.kind for u in units] == ["embeddings"] + ["block"] * len(blocks) + ["head"]
    assert units[-1].name == adapter.head_name
    heads = config.num_attention_heads
    for block in blocks:
        counts = adapter.heads(block)
        assert counts.n_q == heads
        assert counts.n_kv == (getattr(config, "num_key_value_heads", None) or heads)
        assert counts.head_dim == config.hidden_size // heads
        # the layout names every linear layer of the block: its matrices are all a structured
        # pruner may shrink (linear_weights finds them by type, independently of the layout)
        in_layout = sum(block.get_submodule(p).weight.numel() for p in adapter.layout.prunable)
        assert in_layout == sum(w.numel() for w in linear_weights(block).values())


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_adapter_splitting_hands_each_side_its_blocks(family: str) -> None:
    config = CONFIGS[family]()
    loaded = model_from_config(config, seed=0)
    n_layers = config.num_hidden_layers
    block_ids = [id(p) for b in loaded.adapter.block_modules(loaded.model) for p in b.parameters()]
    assert block_ids
    for split in range(1, loaded.n_units):
        device, server = split_model(loaded, split)
        on_device = loaded.adapter.block_modules(device.model)
        on_server = loaded.adapter.block_modules(server.model)
        assert len(on_device) == min(split - 1, n_layers)
        assert len(on_server) == n_layers - (split - 1)
        if split < loaded.n_units - 1:  # the device part ends with the hidden state, unnormed
            assert device.model is not None
            width = sum(p.numel() for p in device.model.parameters())
            assert width < sum(p.numel() for p in loaded.model.parameters())


def test_profile_of_a_vit_config_carries_every_header_field() -> None:
    data = profile_from_config(CONFIGS["vit"](), batch_size=2)
    profile = profile_from_dict(json.loads(data.json_text()))
    assert profile.family == "vit"
    assert profile.seq_len == (16 // 4) ** 2 + 1  # patches + [CLS]
    assert profile.image_size == 16
    assert profile.batch_size == 2
    assert profile.activation_bits == 32
    assert profile.input_bits == 2 * 3 * 16 * 16 * 8  # two 8-bit RGB images
    assert profile.source is not None and "architecture only" in profile.source
    assert [u.kind for u in profile.units] == ["embeddings", "block", "block", "block", "head"]
    assert profile.architecture_only


def test_a_measured_profile_is_not_architecture_only() -> None:
    loaded = model_from_config(CONFIGS["gpt2"](), seed=0)
    profile = profile_from_dict(profile_model(loaded, seq_len=8).json_data())
    assert profile.family == "gpt2" and profile.seq_len == 8 and profile.image_size is None
    assert not profile.architecture_only
    assert {u.weights for u in profile.units} == {"measured"}


def _optimize_json(scenario: Path) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["optimize", str(scenario), "--json"])
    assert result.exit_code == 0, result.output
    decision: dict[str, Any] = json.loads(result.stdout)
    decision.pop("solve_time_s", None)
    return decision


def test_optimize_resolves_config_names_like_a_sweep(tmp_path: Path) -> None:
    """`laimco optimize` on a scenario naming "config:gpt2" decides exactly as on the profile
    file a sweep caches for that name (the sweep's resolution, written to disk)."""
    text = (ROOT / "scenarios" / "paper-minilm-phone-good-channel.toml").read_text()
    text = text.replace("latency_budget_s = 0.2", "latency_budget_s = 20.0")
    cached = resolve_profile_text("config:gpt2", cache_dir=tmp_path / "cache")
    cached_file = next((tmp_path / "cache").iterdir())
    assert cached_file.read_text() == cached
    by_name, by_file = tmp_path / "by-name.toml", tmp_path / "by-file.toml"
    by_name.write_text(text.replace('profile = "minilm-l6"', 'profile = "config:gpt2"'))
    by_file.write_text(text.replace('profile = "minilm-l6"', f'profile = "{cached_file}"'))
    decision = _optimize_json(by_name)
    assert decision["status"] == "optimal"
    assert 0 <= decision["split"] <= len(json.loads(cached)["units"])
    assert decision == _optimize_json(by_file)  # same profile values, same deterministic solve


def test_structured_pruning_through_the_adapter_keeps_a_runnable_model() -> None:
    """Each family's layout removes heads and neurons so that its own forward still runs and
    the removed fraction of prunable weights is near the ratio (within one neuron)."""
    for family, make in CONFIGS.items():
        loaded = model_from_config(make(), seed=0)
        block = loaded.adapter.block_modules(loaded.model)[0]
        before = sum(w.numel() for w in linear_weights(block).values())
        report = prune_structured(block, family, 0.5)
        after = sum(w.numel() for w in linear_weights(block).values())
        assert report.prunable_before == before and report.prunable_after == after
        d = make().hidden_size
        per_neuron = d * (3 if family == "llama" else 2)
        assert abs((before - after) / before - 0.5) <= per_neuron / (2 * before) + 1e-12
        inputs: dict[str, torch.Tensor] = (
            {"pixel_values": torch.zeros(1, 3, 16, 16)} if family == "vit" else
            {"input_ids": torch.zeros(1, 5, dtype=torch.long),
             "attention_mask": torch.ones(1, 5, dtype=torch.long)})
        with torch.no_grad():
            out = loaded.adapter.run_full(loaded.model, inputs)
        assert torch.isfinite(out).all()
