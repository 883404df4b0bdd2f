"""Small random configurations of every supported model family (3 blocks, width 32), shared by
the tests that build, split, profile or prune real transformers modules without weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import transformers

TINY_CONFIGS: dict[str, Callable[[], Any]] = {
    "bert": lambda: transformers.BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64),
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=120, n_embd=32, n_layer=3, n_head=4, n_positions=64, bos_token_id=0,
        eos_token_id=0),
    "llama": lambda: transformers.LlamaConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64),
    "vit": lambda: transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        image_size=16, patch_size=4),
}
