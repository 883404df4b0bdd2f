"""GPT-2: a causal language model with learned absolute positions and fused q/k/v.

Units: `transformer.wte`, `transformer.wpe`; `transformer.h[i]`; the `lm_head` unit
(`transformer.ln_f`, `lm_head`, tied to `wte`). Weights are transformers' `Conv1D`, stored
(in, out). Head h: its d_h columns in each of the q, k, v blocks of attn.c_attn and its d_h rows
of attn.c_proj; neuron j: column j of mlp.c_fc and row j of mlp.c_proj (docs/profiling.md,
"Units"; `laimco.pruning.structured`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from laimco.models.families.base import (
    AttentionLayout,
    BlockDims,
    DecoderFamily,
    HeadCounts,
    head_dims,
)
from laimco.models.flop_constants import FLOPS_PER_ELEMENT as F


class ZeroPositions(nn.Module):
    """Learned absolute positions are added once, on the device: zero on the server."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*position_ids.shape, self.width)


class GPT2Family(DecoderFamily):
    name = "gpt2"
    model_types = ("gpt2",)
    backbone = "transformer"
    embedding_paths = ("transformer.wte", "transformer.wpe")
    blocks_path = "transformer.h"
    head_paths = ("transformer.ln_f", "lm_head")
    head_name = "lm_head"
    final_norm = "transformer.ln_f"
    # one fused Conv1D: q = k = v = attn.c_attn
    layout = AttentionLayout("attn", "attn.c_attn", "attn.c_attn", "attn.c_attn", "attn.c_proj",
                             ("mlp.c_fc",), "mlp.c_proj")

    def bypass_embeddings(self, model: nn.Module) -> None:
        model.transformer.wpe = ZeroPositions(model.config.n_embd)

    def activation_name(self, cfg: Any) -> str:
        return str(cfg.activation_function)

    def embeddings_flops(self, cfg: Any, dims: BlockDims, batch: int, tokens: int) -> int:
        """Token + position table, per hidden element."""
        return batch * tokens * F["position_add"] * dims.hidden

    def heads(self, block: nn.Module) -> HeadCounts:
        attn = block.get_submodule(self.layout.attention)
        return HeadCounts(attn.num_heads, attn.num_heads, attn.head_dim)

    def head_features(self, hd: HeadCounts, units: Sequence[int]
                      ) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
        """c_attn's output holds the q, k, v blocks of split_size = H·d_h features each."""
        q = head_dims(list(units), hd.head_dim)
        split = hd.n_q * hd.head_dim
        return [(self.layout.q, torch.cat([q, q + split, q + 2 * split]))], q

    def set_head_count(self, attention: nn.Module, n_q: int, head_dim: int) -> None:
        attention.num_heads = n_q
        attention.split_size = n_q * head_dim


ADAPTER = GPT2Family()
