"""Cutting a model into a device part and a server part (docs/design.md §3, §7).

Units u = 1..L: the embeddings, each block, then the head (sentence pooling for encoders, the
LM head for decoders, the [CLS] layer norm for ViT). Split s runs units 1..s on the device and
s+1..L on the server. Each part is a deep copy of the model with the other side's blocks
removed, run through the model's own forward so that attention masks and position information
are prepared exactly as in the unsplit model:

- the device part stops before the final norm and returns the hidden state;
- the server part replaces the embedding lookup by a pass-through (it receives the hidden
  state as `inputs_embeds`; learned position embeddings that are *added* are zeroed on the
  server side, because the device already added them) and runs the remaining blocks and head.

What crosses the cut (`Crossing`): the raw inputs at s = 0; otherwise the hidden state and,
for text models, the attention mask; at s = L the final output.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from laimco.measure.metrics import mean_pool, normalize
from laimco.models.loading import LoadedModel

Crossing = dict[str, torch.Tensor]


class SplitError(ValueError):
    """A split point outside 0..L."""


class _PassThroughEmbeddings(nn.Module):
    """Stands in for the embedding lookup on the server: returns the hidden state it is given."""

    def forward(self, *args: Any, inputs_embeds: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        if inputs_embeds is None:
            raise ValueError("the server part needs the hidden state as inputs_embeds")
        return inputs_embeds


class _ZeroPositions(nn.Module):
    """Learned absolute positions are added once, on the device: zero on the server."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*position_ids.shape, self.width)


def _blocks(model: nn.Module, family: str) -> tuple[nn.Module, str]:
    """The module holding the block list and the list's attribute name."""
    if family == "bert":
        return model.encoder, "layer"
    if family == "gpt2":
        return model.transformer, "h"
    if family == "llama":
        return model.model, "layers"
    return model, "layers"  # vit


def block_modules(model: nn.Module, family: str) -> list[nn.Module]:
    """The transformer blocks of a model (or of one part of a split model), in order."""
    owner, attr = _blocks(model, family)
    return list(getattr(owner, attr))


def _keep_blocks(model: LoadedModel, start: int, stop: int) -> None:
    owner, attr = _blocks(model.model, model.family)
    blocks = getattr(owner, attr)
    setattr(owner, attr, nn.ModuleList(list(blocks)[start:stop]))


class DevicePart(nn.Module):
    """Units 1..s. forward(inputs) returns what crosses the cut."""

    def __init__(self, loaded: LoadedModel, split: int) -> None:
        super().__init__()
        self.family, self.split, self.n_units = loaded.family, split, loaded.n_units
        self.part = _copy_for(loaded, split, side="device")
        self.model = None if self.part is None else self.part.model

    def forward(self, inputs: Crossing) -> Crossing:
        if self.part is None:  # s = 0: the raw inputs are uploaded
            return dict(inputs)
        if self.split == self.n_units:
            return {"output": run_full(self.part, inputs)}
        return _device_forward(self.part, inputs)


class ServerPart(nn.Module):
    """Units s+1..L. forward(crossing) returns the model output."""

    def __init__(self, loaded: LoadedModel, split: int) -> None:
        super().__init__()
        self.family, self.split, self.n_units = loaded.family, split, loaded.n_units
        self.part = _copy_for(loaded, split, side="server")
        self.model = None if self.part is None else self.part.model

    def forward(self, crossing: Crossing) -> torch.Tensor:
        if self.part is None:  # s = L: the device already has the output
            return crossing["output"]
        if self.split == 0:
            return run_full(self.part, crossing)
        return _server_forward(self.part, crossing)


def split_model(loaded: LoadedModel, split: int) -> tuple[DevicePart, ServerPart]:
    """The device and server parts at split s ∈ 0..L; server(device(x)) equals the model."""
    if not 0 <= split <= loaded.n_units:
        raise SplitError(f"split {split} is outside 0..{loaded.n_units} for {loaded.name} "
                         f"({loaded.n_units} units: embeddings, {loaded.n_layers} blocks, head)")
    return DevicePart(loaded, split), ServerPart(loaded, split)


def _copy_for(loaded: LoadedModel, split: int, side: str) -> LoadedModel | None:
    """A deep copy holding only one side's units (None when that side has no unit)."""
    n_layers = loaded.n_layers
    if side == "device":
        if split == 0:
            return None
        part = _clone(loaded)
        if split < loaded.n_units:
            _keep_blocks(part, 0, split - 1)
            _drop_final_norm(part)
        return part
    if split == loaded.n_units:
        return None
    part = _clone(loaded)
    if split > 0:
        _keep_blocks(part, split - 1, n_layers)
        _bypass_embeddings(part)
    return part


def _clone(loaded: LoadedModel) -> LoadedModel:
    return LoadedModel(name=loaded.name, family=loaded.family, model=copy.deepcopy(loaded.model),
                       config=loaded.config, tokenizer=loaded.tokenizer, source=loaded.source)


def _drop_final_norm(part: LoadedModel) -> None:
    m = part.model
    if part.family == "gpt2":
        m.transformer.ln_f = nn.Identity()
    elif part.family == "llama":
        m.model.norm = nn.Identity()


def _bypass_embeddings(part: LoadedModel) -> None:
    m = part.model
    if part.family == "bert":
        m.embeddings = _PassThroughEmbeddings()
    elif part.family == "gpt2":
        m.transformer.wpe = _ZeroPositions(m.config.n_embd)
    # llama: inputs_embeds skips the lookup and positions are rotary (computed per layer);
    # vit: the server runs its blocks directly from the hidden state


def _text_inputs(inputs: Crossing) -> dict[str, torch.Tensor]:
    return {k: inputs[k] for k in ("input_ids", "attention_mask") if k in inputs}


def run_full(part: LoadedModel, inputs: Crossing) -> torch.Tensor:
    """The whole model's output: normalized mean-pooled embedding (encoders), logits
    (decoders), layer-normed [CLS] state (ViT)."""
    m = part.model
    if part.family == "bert":
        hidden = m(**_text_inputs(inputs)).last_hidden_state
        return normalize(mean_pool(hidden, inputs["attention_mask"]))
    if part.family in ("gpt2", "llama"):
        return m(**_text_inputs(inputs), use_cache=False).logits
    return m(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 0]


def _vit_blocks(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """ViT blocks one after the other, as ViTModel.forward runs them (no attention mask)."""
    for layer in model.layers:
        hidden = layer(hidden, None)
    return hidden


def _device_forward(part: LoadedModel, inputs: Crossing) -> Crossing:
    m = part.model
    if part.family == "vit":
        return {"hidden_states": _vit_blocks(m, m.embeddings(inputs["pixel_values"]))}
    if part.family == "bert":
        hidden = m(**_text_inputs(inputs)).last_hidden_state
    elif part.family == "gpt2":
        hidden = m.transformer(**_text_inputs(inputs), use_cache=False).last_hidden_state
    else:
        hidden = m.model(**_text_inputs(inputs), use_cache=False).last_hidden_state
    return {"hidden_states": hidden, "attention_mask": inputs["attention_mask"]}


def _server_forward(part: LoadedModel, crossing: Crossing) -> torch.Tensor:
    m = part.model
    hidden = crossing["hidden_states"]
    if part.family == "vit":
        return m.layernorm(_vit_blocks(m, hidden))[:, 0]
    mask = crossing["attention_mask"]
    if part.family == "bert":
        return normalize(mean_pool(m(inputs_embeds=hidden, attention_mask=mask).last_hidden_state,
                                   mask))
    return m(inputs_embeds=hidden, attention_mask=mask, use_cache=False).logits


@dataclass(frozen=True)
class SplitModel:
    """Both parts of a split model together (for local end-to-end runs)."""

    device: DevicePart
    server: ServerPart

    def __call__(self, inputs: Crossing) -> torch.Tensor:
        with torch.no_grad():
            return self.server(self.device(inputs))
