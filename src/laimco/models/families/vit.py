"""ViT (transformers ≥ 5): image encoders; the output is the layer-normed [CLS] state.

Units: `embeddings` (patch conv, [CLS], positions); `layers[i]`; the `cls_head` unit
(`layernorm`). No attention mask: the inputs are pixels and nothing but the hidden state crosses
the cut. Head h: rows h·d_h..(h+1)·d_h−1 of attention.q_proj/k_proj/v_proj (with their biases)
and the same columns of attention.o_proj; neuron j: row j of mlp.fc1 and column j of mlp.fc2
(docs/profiling.md, "Units"; `laimco.pruning.structured`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn

from laimco.models.families.base import (
    PIXEL_BITS,
    AttentionLayout,
    BlockDims,
    CallKwargs,
    Crossing,
    FamilyAdapter,
    ProfileInputError,
    ProfileInputs,
)
from laimco.models.flop_constants import FLOPS_PER_ELEMENT as F


def _blocks(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """ViT blocks one after the other, as ViTModel.forward runs them (no attention mask)."""
    for layer in model.layers:
        hidden = layer(hidden, None)
    return hidden


class ViTFamily(FamilyAdapter):
    name = "vit"
    model_types = ("vit",)
    inputs: ClassVar[Literal["tokens", "pixels"]] = "pixels"
    load_kwargs: ClassVar[CallKwargs] = {"add_pooling_layer": False}
    embedding_paths = ("embeddings",)
    blocks_path = "layers"
    head_paths = ("layernorm",)
    head_name = "cls_head"
    masked_attention = False
    layout = AttentionLayout("attention", "attention.q_proj", "attention.k_proj",
                             "attention.v_proj", "attention.o_proj", ("mlp.fc1",), "mlp.fc2")

    def run_full(self, model: nn.Module, inputs: Crossing) -> torch.Tensor:
        return model(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 0]

    def device_forward(self, model: nn.Module, inputs: Crossing) -> Crossing:
        return {"hidden_states": _blocks(model, model.embeddings(inputs["pixel_values"]))}

    def server_forward(self, model: nn.Module, crossing: Crossing) -> torch.Tensor:
        return model.layernorm(_blocks(model, crossing["hidden_states"]))[:, 0]

    def profile_inputs(self, cfg: Any, *, seq_len: int, batch_size: int,
                       image_size: int | None, device: torch.device) -> ProfileInputs:
        """Zero images of `image_size` (default: the config's); another size interpolates the
        position embeddings, whose cost is not counted."""
        size = image_size or int(cfg.image_size)
        patch, channels = int(cfg.patch_size), int(cfg.num_channels)
        if size % patch:
            raise ProfileInputError(f"image_size {size} is not a multiple of the patch size "
                                    f"{patch}")
        kwargs = {"output_hidden_states": True,
                  "pixel_values": torch.zeros(batch_size, channels, size, size, device=device),
                  "interpolate_pos_encoding": size != int(cfg.image_size)}
        return ProfileInputs(kwargs=kwargs, input_bits=batch_size * channels * size**2
                             * PIXEL_BITS, tokens=(size // patch) ** 2 + 1, image_size=size,
                             mask=None)

    def profile_output(self, out: Any, inputs: ProfileInputs) -> torch.Tensor:
        return out.last_hidden_state[:, 0]  # type: ignore[no-any-return]

    def embeddings_flops(self, cfg: Any, dims: BlockDims, batch: int, tokens: int) -> int:
        """Conv bias on every patch, position embeddings on every token."""
        H = dims.hidden
        return batch * (F["bias_add"] * (tokens - 1) * H + F["position_add"] * tokens * H)

    def head_flops(self, dims: BlockDims, batch: int, tokens: int, bias_outputs: int) -> int:
        """The final LayerNorm over every token (the [CLS] row is then taken)."""
        return batch * tokens * (F["layernorm"] * dims.hidden + F["bias_add"] * bias_outputs)

    def set_head_count(self, attention: nn.Module, n_q: int, head_dim: int) -> None:
        attention.num_attention_heads = n_q  # the forward infers it from the shapes; kept in step


ADAPTER = ViTFamily()
