"""Loading and splitting real and small random models: server(device(x)) equals the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_configs import TINY_CONFIGS

from laimco.models.loading import (
    CorruptWeightsError,
    NotAModelError,
    UnsupportedArchitectureError,
    load_model,
    model_from_config,
    read_config,
)
from laimco.models.split import SplitError, run_full, split_model

pytestmark = pytest.mark.slow  # loads torch models of every family

CONFIGS = TINY_CONFIGS


def _inputs(family: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    if family == "vit":
        return {"pixel_values": torch.randn(2, 3, 16, 16, generator=generator)}
    ids = torch.randint(0, 120, (3, 11), generator=generator)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 6:] = 0  # right padding
    mask[2, 9:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_every_split_reproduces_the_unsplit_model(family: str) -> None:
    loaded = model_from_config(CONFIGS[family](), seed=1)
    inputs = _inputs(family)
    with torch.no_grad():
        reference = run_full(loaded, inputs)
        if family == "vit":  # the reference itself is the library's own forward
            assert torch.equal(reference, loaded.model(**inputs).last_hidden_state[:, 0])
        for split in range(loaded.n_units + 1):
            device, server = split_model(loaded, split)
            crossing = device(inputs)
            output = server(crossing)
            torch.testing.assert_close(output, reference, rtol=1e-5, atol=1e-6)
            if 0 < split < loaded.n_units:
                assert crossing["hidden_states"].shape[-1] == 32
                if family != "vit":  # the mask crosses the cut with the hidden state
                    assert torch.equal(crossing["attention_mask"], inputs["attention_mask"])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoder_reference_is_the_library_forward(family: str) -> None:
    loaded = model_from_config(CONFIGS[family](), seed=2)
    inputs = _inputs(family)
    with torch.no_grad():
        library = loaded.model(**inputs).logits
        torch.testing.assert_close(run_full(loaded, inputs), library)


def test_minilm_split_matches_sentence_transformers() -> None:
    """The packaged model, split anywhere, gives sentence-transformers' own embeddings."""
    from sentence_transformers import SentenceTransformer

    loaded = load_model("minilm")
    sentences = ["A man is eating food.", "The committee postponed its decision until May."]
    tokens = loaded.tokenizer(sentences, padding=True, return_tensors="pt")
    inputs = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    reference = SentenceTransformer(str(loaded.source), device="cpu").encode(
        sentences, convert_to_tensor=True, normalize_embeddings=True)
    with torch.no_grad():
        for split in (0, 1, 4, loaded.n_units):
            device, server = split_model(loaded, split)
            torch.testing.assert_close(server(device(inputs)), reference, rtol=1e-4, atol=1e-5)


def test_split_outside_the_model_is_an_error() -> None:
    loaded = model_from_config(CONFIGS["bert"]())
    for bad in (-1, loaded.n_units + 1):
        with pytest.raises(SplitError, match=r"0\.\.5"):
            split_model(loaded, bad)


def test_a_directory_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(NotAModelError, match=r"config\.json"):
        load_model(tmp_path)


def test_unsupported_architecture_names_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    assert read_config(tmp_path).model_type == "t5"  # a valid config, just not splittable
    with pytest.raises(UnsupportedArchitectureError, match="bert"):
        load_model(tmp_path)


def test_corrupt_safetensors_is_reported(tmp_path: Path) -> None:
    CONFIGS["bert"]().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(CorruptWeightsError, match="safetensors"):
        load_model(tmp_path)
