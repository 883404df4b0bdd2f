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

What differs between families (where the blocks are, which norm is final, how each side runs)
is the family adapter's (`laimco.models.families`).

What crosses the cut (`Crossing`): the raw inputs at s = 0; otherwise the hidden state and,
for text models, the attention mask; at s = L the final output.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from laimco.models.families import FamilyAdapter, family_adapter
from laimco.models.families.base import Crossing
from laimco.models.loading import LoadedModel

__all__ = ["Crossing", "DevicePart", "ServerPart", "SplitError", "SplitModel", "block_modules",
           "run_full", "split_model"]


class SplitError(ValueError):
    """A split point outside 0..L."""


def block_modules(model: nn.Module, family: str | FamilyAdapter) -> list[nn.Module]:
    """The transformer blocks of a model (or of one part of a split model), in order."""
    return family_adapter(family).block_modules(model)


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
        return self.part.adapter.device_forward(self.part.model, inputs)


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
        return self.part.adapter.server_forward(self.part.model, crossing)


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
            part.adapter.keep_blocks(part.model, 0, split - 1)
            part.adapter.drop_final_norm(part.model)
        return part
    if split == loaded.n_units:
        return None
    part = _clone(loaded)
    if split > 0:
        part.adapter.keep_blocks(part.model, split - 1, n_layers)
        part.adapter.bypass_embeddings(part.model)
    return part


def _clone(loaded: LoadedModel) -> LoadedModel:
    return LoadedModel(name=loaded.name, family=loaded.family, model=copy.deepcopy(loaded.model),
                       config=loaded.config, tokenizer=loaded.tokenizer, source=loaded.source)


def run_full(part: LoadedModel, inputs: Crossing) -> torch.Tensor:
    """The whole model's output: normalized mean-pooled embedding (encoders), logits
    (decoders), layer-normed [CLS] state (ViT)."""
    return part.adapter.run_full(part.model, inputs)


@dataclass(frozen=True)
class SplitModel:
    """Both parts of a split model together (for local end-to-end runs)."""

    device: DevicePart
    server: ServerPart

    def __call__(self, inputs: Crossing) -> torch.Tensor:
        with torch.no_grad():
            return self.server(self.device(inputs))
