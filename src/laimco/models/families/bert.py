"""BERT-style encoders (BERT, RoBERTa, XLM-R, MiniLM as all-MiniLM-L6-v2): sentence embeddings.

Units: `embeddings` (word + position + token type, LayerNorm), `encoder.layer[i]`, and the
`pooling` head of sentence-transformers (mean over real tokens, L2 norm; no parameters, the
BERT pooler is not loaded). Heads: rows h·d_h..(h+1)·d_h−1 of attention.self.query/key/value
and the same columns of attention.output.dense; neuron j: row j of intermediate.dense and column
j of output.dense (docs/profiling.md, "Units"; `laimco.pruning.structured`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from laimco.measure.metrics import mean_pool, normalize
from laimco.models.families.base import (
    AttentionLayout,
    BlockDims,
    CallKwargs,
    Crossing,
    HeadCounts,
    ProfileInputs,
    TextFamily,
)
from laimco.models.flop_constants import FLOPS_PER_ELEMENT as F


class PassThroughEmbeddings(nn.Module):
    """Stands in for the embedding lookup on the server: returns the hidden state it is given
    (positions and token types were already added on the device)."""

    def forward(self, *args: Any, inputs_embeds: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        if inputs_embeds is None:
            raise ValueError("the server part needs the hidden state as inputs_embeds")
        return inputs_embeds


class BertFamily(TextFamily):
    name = "bert"
    model_types = ("bert", "roberta", "xlm-roberta")
    load_kwargs: ClassVar[CallKwargs] = {"add_pooling_layer": False}
    embedding_paths = ("embeddings",)
    blocks_path = "encoder.layer"
    head_paths = ()
    head_name = "pooling"
    sentence_embeddings = True
    lipschitz_estimate = True
    layout = AttentionLayout("attention.self", "attention.self.query", "attention.self.key",
                             "attention.self.value", "attention.output.dense",
                             ("intermediate.dense",), "output.dense")

    def bypass_embeddings(self, model: nn.Module) -> None:
        model.embeddings = PassThroughEmbeddings()

    def run_full(self, model: nn.Module, inputs: Crossing) -> torch.Tensor:
        """The normalized mean-pooled sentence embedding."""
        hidden = model(**self.text_inputs(inputs)).last_hidden_state
        return normalize(mean_pool(hidden, inputs["attention_mask"]))

    def device_forward(self, model: nn.Module, inputs: Crossing) -> Crossing:
        hidden = model(**self.text_inputs(inputs)).last_hidden_state
        return {"hidden_states": hidden, "attention_mask": inputs["attention_mask"]}

    def server_forward(self, model: nn.Module, crossing: Crossing) -> torch.Tensor:
        mask = crossing["attention_mask"]
        out = model(inputs_embeds=crossing["hidden_states"], attention_mask=mask)
        return normalize(mean_pool(out.last_hidden_state, mask))

    def profile_output(self, out: Any, inputs: ProfileInputs) -> torch.Tensor:
        assert inputs.mask is not None
        return normalize(mean_pool(out.last_hidden_state, inputs.mask))

    def embeddings_flops(self, cfg: Any, dims: BlockDims, batch: int, tokens: int) -> int:
        """Word + position + token-type sum, then LayerNorm, per hidden element."""
        return batch * tokens * (F["embedding_sum"] + F["layernorm"]) * dims.hidden

    def head_flops(self, dims: BlockDims, batch: int, tokens: int, bias_outputs: int) -> int:
        """Mean pooling (mask multiply + accumulate, token count, divide), then L2 norm."""
        H = dims.hidden
        return batch * (F["mean_pool"] * tokens * H + tokens + H + F["l2_normalize"] * H + 1)

    def heads(self, block: nn.Module) -> HeadCounts:
        attn = block.get_submodule(self.layout.attention)
        return HeadCounts(attn.num_attention_heads, attn.num_attention_heads,
                          attn.attention_head_size)

    def set_head_count(self, attention: nn.Module, n_q: int, head_dim: int) -> None:
        attention.num_attention_heads = n_q
        attention.all_head_size = n_q * head_dim


ADAPTER = BertFamily()
