"""What a model family must say about itself: the base class every family adapter extends.

An adapter owns everything that differs between architectures: where the blocks are, how a
split model runs each side (docs/design.md §3, the units u = 1..L), what one profiling forward
pass feeds and counts (docs/profiling.md, "Units", "FLOPs", "Bits") and where attention heads
and FFN neurons live for structured pruning (`laimco.pruning.structured`). The code that uses
an adapter never asks which family it has; it asks the adapter.

Shared behaviour lives here: `TextFamily` (token inputs, attention mask crossing the cut) and
`DecoderFamily` (causal language models returning logits per token).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from laimco.models.flop_constants import FLOPS_PER_ELEMENT

Crossing = dict[str, torch.Tensor]
# keyword arguments of a transformers call (model(...), from_pretrained): a dict by nature, used
# inside laimco.models only
CallKwargs = dict[str, Any]
TOKEN_BITS = 32  # token ids and attention-mask entries travel as int32
PIXEL_BITS = 8  # a raw image travels as 8-bit RGB


class ProfileInputError(ValueError):
    """A profiling option the family cannot take (image size of a text model, too many tokens)."""


@dataclass(frozen=True)
class AttentionLayout:
    """Where a block keeps its heads and neurons (module paths relative to the block)."""

    attention: str  # the attention module whose head counts follow the shapes
    q: str
    k: str
    v: str
    o: str
    up: tuple[str, ...]  # FFN input projections (one, or gate and up)
    down: str  # FFN output projection

    @property
    def prunable(self) -> set[str]:
        """Every linear layer whose rows or columns structured pruning removes."""
        return {self.q, self.k, self.v, self.o, *self.up, self.down}


@dataclass(frozen=True)
class HeadCounts:
    """Head structure of one block: H_q query heads, H_kv key/value heads, head size d_h."""

    n_q: int
    n_kv: int
    head_dim: int

    @property
    def group(self) -> int:
        """Query heads per key/value head (G = H_q / H_kv; 1 without grouped-query attention)."""
        return self.n_q // self.n_kv


@dataclass(frozen=True)
class BlockDims:
    """The sizes a block's element-wise FLOPs depend on (docs/profiling.md, "FLOPs")."""

    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, cfg: Any) -> BlockDims:
        """Read from a transformers config (FFN width: intermediate_size, n_inner or 4·H)."""
        hidden = int(cfg.hidden_size)
        heads = int(cfg.num_attention_heads)
        head_dim = getattr(cfg, "head_dim", None) or hidden // heads
        kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
        ffn = int(getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None)
                  or 4 * hidden)
        return cls(hidden=hidden, ffn=ffn, heads=heads, kv_heads=kv_heads,
                   head_dim=int(head_dim))


@dataclass(frozen=True)
class ProfileInputs:
    """What one profiling forward pass feeds the model, and the input's size."""

    kwargs: CallKwargs  # keyword arguments of model(...)
    input_bits: int  # bits of the raw input (uploaded at split 0)
    tokens: int  # sequence length (text) or patches + 1 (ViT)
    image_size: int | None  # image side (ViT), None for text
    mask: torch.Tensor | None  # the attention mask (text), for the pooling head


def _split_path(path: str) -> tuple[str, str]:
    owner, _, attr = path.rpartition(".")
    return owner, attr


class FamilyAdapter(ABC):
    """One model family. Subclasses set the class attributes and the forward methods; one
    module per family in `laimco.models.families`, each exposing `ADAPTER`."""

    name: ClassVar[str]  # "bert", "gpt2", ...: the `family` of profiles and manifests
    model_types: ClassVar[tuple[str, ...]]  # config.json model_type values of the family
    inputs: ClassVar[Literal["tokens", "pixels"]]
    output_per_token: ClassVar[bool] = False  # logits per token (language models)
    auto_model: ClassVar[str] = "AutoModel"  # the transformers Auto class that builds it
    load_kwargs: ClassVar[CallKwargs] = {}  # extra from_pretrained / from_config arguments
    # units (docs/profiling.md, "Units"): module paths relative to the model
    embedding_paths: ClassVar[tuple[str, ...]]
    blocks_path: ClassVar[str]
    head_paths: ClassVar[tuple[str, ...]]
    head_name: ClassVar[str]
    final_norm: ClassVar[str | None] = None  # dropped on the device side of a split
    masked_attention: ClassVar[bool] = True  # scores get an additive (padding/causal) mask
    checks_positions: ClassVar[bool] = True  # a learned position table bounds seq_len
    # the output is a sentence embedding (mean-pooled, L2-normalized): what `laimco analyze`
    # measures distortion on
    sentence_embeddings: ClassVar[bool] = False
    # the analytic estimate of K (laimco.models.sensitivity, docs/theory.md §3.12) knows the
    # family's block layout
    lipschitz_estimate: ClassVar[bool] = False
    layout: ClassVar[AttentionLayout]

    @property
    def takes_text(self) -> bool:
        """Whether the model reads tokens (and has a tokenizer) rather than pixels."""
        return self.inputs == "tokens"

    def __repr__(self) -> str:
        return f"<{self.name} family adapter>"

    # loading --------------------------------------------------------------------------------

    def model_class(self) -> Any:
        """The transformers Auto class that builds a model of this family."""
        import transformers

        return getattr(transformers, self.auto_model)

    # blocks and splitting (docs/design.md §3, §7) ------------------------------------------

    def blocks(self, model: nn.Module) -> tuple[nn.Module, str]:
        """The module holding the block list and the list's attribute name."""
        owner, attr = _split_path(self.blocks_path)
        return (model.get_submodule(owner) if owner else model), attr

    def block_modules(self, model: nn.Module) -> list[nn.Module]:
        """The transformer blocks of a model (or of one part of a split model), in order."""
        owner, attr = self.blocks(model)
        return list(getattr(owner, attr))

    def keep_blocks(self, model: nn.Module, start: int, stop: int) -> None:
        """Keep blocks start..stop−1 only (in place)."""
        owner, attr = self.blocks(model)
        setattr(owner, attr, nn.ModuleList(list(getattr(owner, attr))[start:stop]))

    def drop_final_norm(self, model: nn.Module) -> None:
        """The device part stops before the final norm and returns the hidden state."""
        if self.final_norm is not None:
            owner, attr = _split_path(self.final_norm)
            setattr(model.get_submodule(owner), attr, nn.Identity())

    def bypass_embeddings(self, model: nn.Module) -> None:  # noqa: B027 (optional hook)
        """Make the server part take the hidden state instead of the raw input (default:
        nothing to change, the model's forward already skips the lookup for inputs_embeds)."""

    @abstractmethod
    def run_full(self, model: nn.Module, inputs: Crossing) -> torch.Tensor:
        """The whole model's output (the head included)."""

    @abstractmethod
    def device_forward(self, model: nn.Module, inputs: Crossing) -> Crossing:
        """Embeddings and the device's blocks: what crosses the cut."""

    @abstractmethod
    def server_forward(self, model: nn.Module, crossing: Crossing) -> torch.Tensor:
        """The server's blocks and the head, from what crossed the cut."""

    # profiling (docs/profiling.md) -----------------------------------------------------------

    @abstractmethod
    def profile_inputs(self, cfg: Any, *, seq_len: int, batch_size: int,
                       image_size: int | None, device: torch.device) -> ProfileInputs:
        """The inputs of one profiling forward pass (zeros: only shapes matter)."""

    @abstractmethod
    def profile_output(self, out: Any, inputs: ProfileInputs) -> torch.Tensor:
        """The head's output computed from the model's output (the last unit's tensor)."""

    def crossing_mask_bits(self, batch: int, tokens: int) -> int:
        """Bits of the attention mask that crosses the cut with the hidden state."""
        return batch * tokens * TOKEN_BITS if self.takes_text else 0

    def activation_name(self, cfg: Any) -> str:
        """The config's name of the FFN activation."""
        return str(cfg.hidden_act)

    @abstractmethod
    def embeddings_flops(self, cfg: Any, dims: BlockDims, batch: int, tokens: int) -> int:
        """Element-wise FLOPs of the embeddings unit."""

    @abstractmethod
    def head_flops(self, dims: BlockDims, batch: int, tokens: int, bias_outputs: int) -> int:
        """Element-wise FLOPs of the head unit (`bias_outputs`: biased outputs per token)."""

    def block_norm_flops(self, dims: BlockDims) -> int:
        """Per-token FLOPs of a block's norms and family-specific element-wise work (default:
        two LayerNorms)."""
        return 2 * FLOPS_PER_ELEMENT["layernorm"] * dims.hidden

    # structured pruning (laimco.pruning.structured) ------------------------------------------

    def heads(self, block: nn.Module) -> HeadCounts:
        """Head counts of one block (default: read from the q/k projection shapes)."""
        attention: Any = block.get_submodule(self.layout.attention)
        q: Any = block.get_submodule(self.layout.q)
        k: Any = block.get_submodule(self.layout.k)
        d_h = int(attention.head_dim)
        return HeadCounts(int(q.weight.shape[0]) // d_h, int(k.weight.shape[0]) // d_h, d_h)

    def head_features(self, hd: HeadCounts, units: Sequence[int]
                      ) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
        """For the given head units (KV groups): (module path, output features) of q, k, v,
        and the input features of o (default: separate q, k, v projections)."""
        q = head_dims([u * hd.group + g for u in units for g in range(hd.group)], hd.head_dim)
        kv = head_dims(list(units), hd.head_dim)
        lay = self.layout
        return [(lay.q, q), (lay.k, kv), (lay.v, kv)], q

    def set_head_count(self, attention: nn.Module, n_q: int, head_dim: int) -> None:  # noqa: B027
        """Keep the attention module's head-count attributes in step with its shrunk shapes
        (default: nothing, the forward infers the counts from the shapes)."""


def head_dims(heads: Sequence[int], head_dim: int) -> torch.Tensor:
    """Feature indices of the given heads: h·d_h .. (h+1)·d_h − 1 for each h."""
    idx = torch.arange(head_dim)
    return (torch.cat([h * head_dim + idx for h in heads]) if heads
            else torch.zeros(0, dtype=torch.long))


class TextFamily(FamilyAdapter):
    """Models that read token ids with an attention mask; the mask crosses the cut."""

    inputs: ClassVar[Literal["tokens", "pixels"]] = "tokens"

    def profile_inputs(self, cfg: Any, *, seq_len: int, batch_size: int,
                       image_size: int | None, device: torch.device) -> ProfileInputs:
        if image_size is not None:
            raise ProfileInputError(f"image_size applies to image models (ViT) only; a "
                                    f"{self.name}-family model reads text: use seq_len")
        limit = getattr(cfg, "max_position_embeddings", None)
        if self.checks_positions and limit is not None and seq_len > int(limit):
            raise ProfileInputError(f"seq_len {seq_len} exceeds the model's {limit} positions")
        mask = torch.ones(batch_size, seq_len, dtype=torch.long, device=device)
        kwargs: CallKwargs = {
            "output_hidden_states": True,
            "input_ids": torch.zeros(batch_size, seq_len, dtype=torch.long, device=device)}
        return ProfileInputs(kwargs=kwargs, input_bits=2 * batch_size * seq_len * TOKEN_BITS,
                             tokens=seq_len, image_size=None, mask=mask)

    @staticmethod
    def text_inputs(inputs: Crossing) -> dict[str, torch.Tensor]:
        """The token ids and attention mask of a batch (whatever else it carries)."""
        return {k: inputs[k] for k in ("input_ids", "attention_mask") if k in inputs}


class DecoderFamily(TextFamily):
    """Causal language models: the output is the logits of every token."""

    output_per_token: ClassVar[bool] = True
    auto_model: ClassVar[str] = "AutoModelForCausalLM"
    backbone: ClassVar[str]  # the module under the LM head that runs the blocks
    final_norm_flops: ClassVar[int] = FLOPS_PER_ELEMENT["layernorm"]  # per hidden element

    def profile_inputs(self, cfg: Any, *, seq_len: int, batch_size: int,
                       image_size: int | None, device: torch.device) -> ProfileInputs:
        base = super().profile_inputs(cfg, seq_len=seq_len, batch_size=batch_size,
                                      image_size=image_size, device=device)
        # Decoders get the (all-ones) mask: without one, transformers inspects position ids
        # for packed sequences, which a meta tensor cannot answer. Encoders get none: with one,
        # transformers checks whether it can skip it (same problem). The counted matmuls are
        # the same either way; the mask's own cost is charged analytically.
        kwargs = base.kwargs | {"attention_mask": base.mask, "use_cache": False}
        return ProfileInputs(kwargs=kwargs, input_bits=base.input_bits, tokens=base.tokens,
                             image_size=None, mask=base.mask)

    def profile_output(self, out: Any, inputs: ProfileInputs) -> torch.Tensor:
        return out.logits  # type: ignore[no-any-return]

    def run_full(self, model: nn.Module, inputs: Crossing) -> torch.Tensor:
        return model(**self.text_inputs(inputs), use_cache=False).logits  # type: ignore[no-any-return]

    def device_forward(self, model: nn.Module, inputs: Crossing) -> Crossing:
        backbone = model.get_submodule(self.backbone)
        hidden = backbone(**self.text_inputs(inputs), use_cache=False).last_hidden_state
        return {"hidden_states": hidden, "attention_mask": inputs["attention_mask"]}

    def server_forward(self, model: nn.Module, crossing: Crossing) -> torch.Tensor:
        return model(inputs_embeds=crossing["hidden_states"],  # type: ignore[no-any-return]
                     attention_mask=crossing["attention_mask"], use_cache=False).logits

    def head_flops(self, dims: BlockDims, batch: int, tokens: int, bias_outputs: int) -> int:
        """The final norm over every token, then the LM head's biases."""
        f = FLOPS_PER_ELEMENT
        return batch * tokens * (self.final_norm_flops * dims.hidden + f["bias_add"] * bias_outputs)
