"""Unstructured pruning masks over the weight matrices of one side of a split model (theory.md §3).

A mask is a boolean tensor of the weight's shape, True = keep. Rules:

- magnitude (least parameter distortion, docs/theory.md eq. (3.1)): remove the k weights of
  smallest |w|, with k = round(ρ·n) counted per matrix ("layer"), over all matrices together
  ("global") or per output row ("row"). The count and the tie order are those of
  `torch.nn.utils.prune` (`l1_unstructured`, `global_unstructured`): k = round(ρ·n) with
  Python's round (half to even), and the removed set is `torch.topk(|w|, k, largest=False)`.
- Wanda (Sun et al. 2023, "A simple and effective pruning approach for LLMs"): importance
  S_ij = |W_ij|·‖X_j‖₂, ‖X_j‖₂ the L2 norm of input feature j over all calibration tokens;
  remove the k smallest S per output row (the paper's default) or per matrix.

Weights are addressed by the qualified name of their module (`linear_weights`), so that the
input norms from `InputNormCollector` (keyed by the same module names) line up with them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from types import TracebackType
from typing import Literal

import torch
from torch import nn

Masks = dict[str, torch.Tensor]

HEAD_NAMES = ("lm_head", "classifier", "cls", "qa_outputs", "score", "pooler")


def default_exclude(name: str) -> bool:
    """Leave out task heads and the pooler: True when a path component is one of HEAD_NAMES."""
    return any(part in HEAD_NAMES for part in name.split("."))


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2): a linear map whose weight is stored (in, out), transposed."""
    pytorch_utils = sys.modules.get("transformers.pytorch_utils")
    return pytorch_utils is not None and isinstance(module, pytorch_utils.Conv1D)


def linear_modules(
    module: nn.Module,
    prefix: str = "",
    exclude: Callable[[str], bool] | None = default_exclude,
) -> dict[str, nn.Module]:
    """Every nn.Linear and transformers Conv1D inside `module`, by name (prefix + path)."""
    found: dict[str, nn.Module] = {}
    for path, sub in module.named_modules():
        if not (isinstance(sub, nn.Linear) or is_conv1d(sub)):
            continue
        name = f"{prefix}.{path}" if prefix and path else (prefix or path)
        if exclude is not None and exclude(name):
            continue
        found[name] = sub
    return found


def linear_weights(
    module: nn.Module,
    prefix: str = "",
    exclude: Callable[[str], bool] | None = default_exclude,
) -> dict[str, torch.Tensor]:
    """The weight tensors of every nn.Linear / Conv1D inside `module`, keyed by module name.

    The tensors are the parameters themselves (no copy), in their stored layout: (out, in) for
    nn.Linear, (in, out) for transformers' Conv1D (GPT-2 attn.c_attn, attn.c_proj, mlp.c_fc,
    mlp.c_proj). Magnitude masks do not depend on the layout; for Wanda pass the Conv1D names
    (`conv1d_names`) as `transposed`. `exclude(name)` drops modules (task heads by default).
    """
    return {name: sub.weight for name, sub in linear_modules(module, prefix, exclude).items()}


def conv1d_names(
    module: nn.Module,
    prefix: str = "",
    exclude: Callable[[str], bool] | None = default_exclude,
) -> set[str]:
    """Names (as in `linear_weights`) of the weights stored transposed, (in, out): the Conv1Ds."""
    return {n for n, sub in linear_modules(module, prefix, exclude).items() if is_conv1d(sub)}


def n_to_prune(ratio: float, numel: int) -> int:
    """Weights removed from a group of `numel` at ratio ρ: round(ρ·numel), as torch prune does."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"pruning ratio must lie in [0, 1], got {ratio}")
    return round(ratio * numel)


def _smallest_mask(importance: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask removing the k smallest entries of a flat importance (torch's topk order)."""
    mask = torch.ones(importance.numel(), dtype=torch.bool, device=importance.device)
    if k > 0:
        mask[torch.topk(importance, k=k, largest=False).indices] = False
    return mask


def _row_smallest_mask(importance: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep-mask removing round(ρ·columns) smallest entries of every row of a 2-D importance."""
    k = n_to_prune(ratio, importance.shape[1])
    mask = torch.ones(importance.shape, dtype=torch.bool, device=importance.device)
    if k > 0:
        mask.scatter_(1, torch.topk(importance, k=k, dim=1, largest=False).indices, False)
    return mask


def magnitude_masks(
    weights: Mapping[str, torch.Tensor],
    ratio: float,
    scope: Literal["layer", "global", "row"] = "layer",
) -> Masks:
    """Magnitude pruning: remove the smallest |w| (least ‖w − ŵ‖², docs/theory.md eq. (3.1)).

    "layer": each matrix loses round(ρ·numel) weights (= prune.l1_unstructured(amount=ρ));
    "global": round(ρ·N) over all matrices concatenated in the mapping's order
    (= prune.global_unstructured(L1Unstructured, amount=ρ)); "row": round(ρ·in) per row of a
    2-D (out, in) matrix (the Wanda grouping with uniform input norms).
    """
    if scope == "global":
        flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
        keep = _smallest_mask(flat, n_to_prune(ratio, flat.numel()))
        masks: Masks = {}
        start = 0
        for name, w in weights.items():
            masks[name] = keep[start:start + w.numel()].view(w.shape)
            start += w.numel()
        return masks
    if scope == "layer":
        return {name: _smallest_mask(w.detach().abs().reshape(-1),
                                     n_to_prune(ratio, w.numel())).view(w.shape)
                for name, w in weights.items()}
    if scope == "row":
        return {name: _row_smallest_mask(w.detach().abs(), ratio) for name, w in weights.items()}
    raise ValueError(f"scope must be 'layer', 'global' or 'row', got {scope!r}")


def wanda_masks(
    weights: Mapping[str, torch.Tensor],
    input_norms: Mapping[str, torch.Tensor],
    ratio: float,
    group: Literal["row", "layer"] = "row",
    transposed: Collection[str] = (),
) -> Masks:
    """Wanda: importance S_ij = |W_ij|·‖X_j‖₂; remove the round(ρ·n) smallest S per group.

    `input_norms[name]` holds ‖X_j‖₂ for the in_features of matrix `name` (from
    `InputNormCollector`). group="row": per output neuron, n = in_features (the paper's
    default); "layer": per matrix, n = numel. Names in `transposed` are stored (in, out)
    (Conv1D): their output neuron is a column; the mask comes back in the stored layout.
    """
    masks: Masks = {}
    for name, w in weights.items():
        if name not in input_norms:
            raise KeyError(f"no input norms for {name!r}: run InputNormCollector over it first")
        w_out_in = w.detach().T if name in transposed else w.detach()
        norms = input_norms[name].to(device=w.device, dtype=w.dtype)
        if norms.shape != (w_out_in.shape[1],):
            raise ValueError(f"{name!r}: {norms.shape[0]} input norms for a weight of shape "
                             f"{tuple(w.shape)} (transposed={name in transposed})")
        importance = w_out_in.abs() * norms
        if group == "row":
            keep = _row_smallest_mask(importance, ratio)
        elif group == "layer":
            keep = _smallest_mask(importance.reshape(-1),
                                  n_to_prune(ratio, importance.numel())).view(importance.shape)
        else:
            raise ValueError(f"group must be 'row' or 'layer', got {group!r}")
        masks[name] = keep.T if name in transposed else keep
    return masks


class InputNormCollector:
    """Accumulates Σ_t x_{t,j}² of the inputs of named linear modules; norms() = its square root.

    Inside `with InputNormCollector(model) as c:` every forward pass adds, for each watched
    module (all nn.Linear / Conv1D in `model` by default, or `names`), the squared inputs of all
    tokens: the input of shape (..., in_features) is flattened to (tokens, in_features).
    Padding is not its concern: pass unpadded batches, or call `set_token_mask(mask)` before a
    batch with a bool mask of the input's leading shape (e.g. the attention mask, (batch, seq))
    so that only True tokens count. Accumulation is in float64.
    """

    def __init__(
        self,
        model: nn.Module,
        names: Collection[str] | None = None,
        prefix: str = "",
    ) -> None:
        modules = linear_modules(model, prefix, exclude=None)
        if names is not None:
            missing = set(names) - set(modules)
            if missing:
                raise KeyError(f"no nn.Linear/Conv1D named {sorted(missing)}")
            modules = {n: modules[n] for n in names}
        self._modules = modules
        self._sums: dict[str, torch.Tensor] = {}
        self._tokens: dict[str, int] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._token_mask: torch.Tensor | None = None

    def set_token_mask(self, token_mask: torch.Tensor | None) -> None:
        """Count only tokens where `token_mask` (bool, the input's leading shape) is True."""
        self._token_mask = None if token_mask is None else token_mask.to(torch.bool)

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach()
            if self._token_mask is not None:
                if self._token_mask.shape != x.shape[:-1]:
                    raise ValueError(f"token mask of shape {tuple(self._token_mask.shape)} for "
                                     f"{name!r} input of shape {tuple(x.shape)}")
                x = x[self._token_mask]
            x = x.reshape(-1, x.shape[-1]).to(torch.float64)
            sq = (x * x).sum(dim=0)
            self._sums[name] = self._sums[name] + sq if name in self._sums else sq
            self._tokens[name] = self._tokens.get(name, 0) + x.shape[0]
        return hook

    def __enter__(self) -> InputNormCollector:
        for name, module in self._modules.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def norms(self) -> dict[str, torch.Tensor]:
        """‖X_j‖₂ = sqrt(Σ_t x_{t,j}²) per watched module that has seen input (float64)."""
        return {name: s.sqrt() for name, s in self._sums.items()}

    def tokens(self) -> dict[str, int]:
        """Number of tokens accumulated per module."""
        return dict(self._tokens)


def _iter_masked(module: nn.Module, masks: Mapping[str, torch.Tensor],
                 prefix: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    weights = linear_weights(module, prefix, exclude=None)
    for name, mask in masks.items():
        if name not in weights:
            raise KeyError(f"{name!r} is not an nn.Linear/Conv1D here (prefix={prefix!r})")
        if mask.shape != weights[name].shape:
            raise ValueError(f"mask of shape {tuple(mask.shape)} for {name!r} of shape "
                             f"{tuple(weights[name].shape)}")
        yield weights[name], mask


def apply_masks(module: nn.Module, masks: Mapping[str, torch.Tensor], prefix: str = "") -> None:
    """Zero the removed weights in place, w ← w ⊙ m (names as in `linear_weights`)."""
    with torch.no_grad():
        for weight, mask in _iter_masked(module, masks, prefix):
            weight.mul_(mask.to(device=weight.device, dtype=weight.dtype))


def parameter_distortion(
    original_weights: Mapping[str, torch.Tensor],
    masked_weights: Mapping[str, torch.Tensor],
) -> float:
    """D_w = Σ ‖w − ŵ‖² over all matrices (docs/theory.md §3.1), accumulated in float64."""
    total = 0.0
    for name, w in original_weights.items():
        diff = w.detach().to(torch.float64) - masked_weights[name].detach().to(torch.float64)
        total += float((diff * diff).sum())
    return total


def sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of removed weights over all masks: Σ(1 − m) / Σ numel."""
    numel = sum(m.numel() for m in masks.values())
    if numel == 0:
        return 0.0
    removed = sum(int(m.numel() - m.count_nonzero()) for m in masks.values())
    return removed / numel
