"""GPT-2, LLaMA (grouped-query) and ViT split models served over the network: small random
models, each pruned by a different rule, saved, served by a real MLServer process, and driven by
the device client. Reference: the same pruned folder run in-process (load_pruned)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from laimco.models.loading import model_from_config
from laimco.models.pruned import load_pruned, prune_split_model, save_pruned
from laimco.runtime.client import DeviceClient
from laimco.runtime.server import start_server

pytestmark = pytest.mark.slow  # starts the edge server

TOKEN = "families-secret"


def _text_batch(vocab: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, 7), generator=torch.Generator().manual_seed(11))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0  # one padded sequence: the mask must cross the cut too
    return {"input_ids": ids, "attention_mask": mask}


def _pixel_batch() -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(11))}


CASES: dict[str, tuple[Callable[[], Any], str, Callable[[], dict[str, torch.Tensor]]]] = {
    "gpt2": (lambda: transformers.GPT2Config(vocab_size=96, n_embd=32, n_layer=3, n_head=4,
                                             n_positions=32, bos_token_id=0, eos_token_id=0),
             "wanda", lambda: _text_batch(96)),
    "llama": (lambda: transformers.LlamaConfig(vocab_size=96, hidden_size=32, num_hidden_layers=3,
                                               num_attention_heads=4, num_key_value_heads=2,
                                               intermediate_size=64, max_position_embeddings=32),
              "structured", lambda: _text_batch(96)),
    "vit": (lambda: transformers.ViTConfig(hidden_size=32, num_hidden_layers=3,
                                           num_attention_heads=4, intermediate_size=64,
                                           image_size=16, patch_size=4, num_channels=3),
            "magnitude", _pixel_batch),
}


@pytest.mark.parametrize("family", sorted(CASES))
def test_family_split_served_over_grpc_matches_the_in_process_model(family: str,
                                                                     tmp_path: Path) -> None:
    config, rule, batch_of = CASES[family]
    loaded = model_from_config(config(), seed=2)
    batch = batch_of()
    pruned = prune_split_model(loaded, 2, 0.4, 0.3, rule, calibration=[batch])  # type: ignore[arg-type]
    folder = save_pruned(pruned, tmp_path / "parts")
    with torch.no_grad():
        expected = load_pruned(folder)(batch).numpy()
    with start_server(folder, token=TOKEN) as server, \
            DeviceClient(folder, server.url, token=TOKEN) as client:
        crossing, device_s = client.run_device(batch)
        reply = client.connection.send(crossing)
    assert reply.record.status == "ok", reply.record.error
    assert reply.output is not None and reply.output.shape == expected.shape
    np.testing.assert_allclose(reply.output, expected, atol=1e-5, rtol=0)
    assert device_s > 0 and reply.record.timings.server_s > 0
    if family != "vit":  # text models send the attention mask across the cut
        assert set(crossing) == {"hidden_states", "attention_mask"}
