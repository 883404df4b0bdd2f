"""LLaMA-style decoders (LLaMA, Mistral, Qwen2): RMSNorm, rotary positions, gated SiLU MLP,
grouped-query attention.

Units: `model.embed_tokens` (and the rotary cos/sin table, computed once per forward);
`model.layers[i]`; the `lm_head` unit (`model.norm`, `lm_head`). The structured-pruning unit is
a whole KV group: one key/value head with its G = num_attention_heads / num_key_value_heads query
heads (rows of k_proj, v_proj, the group's rows of q_proj, columns of o_proj), which keeps G and
the model's repeat_kv unchanged; neuron j: row j of gate_proj and up_proj, column j of
down_proj. q/k/v biases, where present, are cut with their rows (docs/profiling.md, "Units";
`laimco.pruning.structured`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from laimco.models.families.base import AttentionLayout, BlockDims, DecoderFamily
from laimco.models.flop_constants import FLOPS_PER_ELEMENT as F


class LlamaFamily(DecoderFamily):
    name = "llama"
    model_types = ("llama", "mistral", "qwen2")
    backbone = "model"
    embedding_paths = ("model.embed_tokens",)
    blocks_path = "model.layers"
    head_paths = ("model.norm", "lm_head")
    head_name = "lm_head"
    final_norm = "model.norm"
    checks_positions = False  # rotary positions: no table bounds the sequence length
    final_norm_flops: ClassVar[int] = F["rmsnorm"]
    layout = AttentionLayout("self_attn", "self_attn.q_proj", "self_attn.k_proj",
                             "self_attn.v_proj", "self_attn.o_proj",
                             ("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj")

    def embeddings_flops(self, cfg: Any, dims: BlockDims, batch: int, tokens: int) -> int:
        """The rotary cos/sin table, shared by every block: per (position, frequency)."""
        return batch * tokens * (F["rotary_table"] * dims.head_dim // 2)

    def block_norm_flops(self, dims: BlockDims) -> int:
        """Two RMSNorms, the gate multiply and rotary on every query and key element."""
        return (2 * F["rmsnorm"] * dims.hidden + F["gate_multiply"] * dims.ffn
                + F["rotary"] * (dims.heads + dims.kv_heads) * dims.head_dim)


ADAPTER = LlamaFamily()
