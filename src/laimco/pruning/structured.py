"""Structured pruning: remove whole attention heads and FFN neurons so that matrices shrink.

Works on one transformer layer of a stock transformers model, without editing the model code:
the kept rows/columns are copied into new, smaller weights and the attention module's
head-count attributes are updated so that its own forward runs on the smaller shapes.

What a head unit and a neuron are in each family (which rows of q, k, v and which columns of
the output projection; GPT-2's fused, transposed c_attn; LLaMA's KV groups) is the family
adapter's (`laimco.models.families`, its `layout`, `heads`, `head_features` and
`set_head_count`). For grouped-query attention the unit is a whole KV group, one key/value
head with its G query heads: removing whole groups keeps G, and so the model's repeat_kv,
unchanged (with plain multi-head attention G = 1 and a group is a head). Cross-attention, where
a block has it, is left alone.

Importance of a unit (smaller is removed first):

- "magnitude": I_u = Σ_{w ∈ u} w², the energy of the unit's weight rows and columns (biases not
  counted), which is the parameter distortion ‖w − ŵ‖² of removing it; removing the units of
  least I_u is the least parameter distortion for a given count of equal-size units (the
  structured analogue of docs/theory.md eq. (3.1)).
- "activation" (Wanda-style, output side): I_u = Σ_{j ∈ u} ‖W_{:,j}‖²·‖X_j‖², where W is the
  output projection (attention output / down projection) and ‖X_j‖₂ the norm of its input
  channel j over calibration tokens (`InputNormCollector`). The term is Σ_t ‖W_{:,j} x_{t,j}‖²,
  the energy that channel j adds to the layer output; cross-channel terms are ignored.

How many of each (`removal_counts`): with P_h the prunable weights of one head unit, P_n of one
neuron, H units, I neurons and P = H·P_h + I·P_n, heads take about the same ratio, h ≈ ρ·H
(whole units), and neurons absorb the rounding, n = round((ρ·P − h·P_h)/P_n), so the removed
fraction of the layer's prunable weights is within P_n/(2P) of ρ. h is the whole count nearest
ρ·H for which that holds (it moves off round(ρ·H) only when the neurons cannot absorb the rest).
At least one head unit and one neuron are always kept, so ρ near 1 removes less than ρ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from laimco.models.families import FamilyAdapter, family_adapter
from laimco.models.families.base import AttentionLayout, HeadCounts
from laimco.pruning.masks import is_conv1d

Family = str | FamilyAdapter  # a family name ("bert", "gpt2", ...) or its adapter
Importance = Literal["magnitude", "activation"]


@dataclass(frozen=True)
class StructuredPruneReport:
    """What `prune_structured` / `shrink_layer` did to one layer (indices are pre-pruning)."""

    family: str
    heads_before: int
    kept_heads: tuple[int, ...]
    kv_heads_before: int
    kept_kv_heads: tuple[int, ...]
    neurons_before: int
    kept_neurons: tuple[int, ...]
    prunable_before: int
    prunable_after: int
    params_before: int
    params_after: int

    @property
    def heads_kept(self) -> int:
        """Number of query heads left."""
        return len(self.kept_heads)

    @property
    def neurons_kept(self) -> int:
        """Number of FFN neurons left."""
        return len(self.kept_neurons)

    @property
    def removed_fraction(self) -> float:
        """Fraction of the layer's prunable (linear weight) entries removed."""
        return 1.0 - self.prunable_after / self.prunable_before


def _family(family: Family) -> FamilyAdapter:
    """The adapter of a family name; ValueError (UnknownFamilyError) listing the known ones."""
    return family_adapter(family)


def _out_in(module: nn.Module) -> torch.Tensor:
    """The weight in nn.Linear layout (out, in), whatever the storage."""
    w: torch.Tensor = module.weight
    return w.T if is_conv1d(module) else w


def _prunable(layer: nn.Module, adapter: FamilyAdapter) -> int:
    return sum(layer.get_submodule(n).weight.numel() for n in adapter.layout.prunable)


def _unit_sizes(layer: nn.Module, adapter: FamilyAdapter) -> tuple[int, int, int, int]:
    """(H units, weights per unit, I neurons, weights per neuron)."""
    geo = adapter.layout
    hd = adapter.heads(layer)
    d_model = _out_in(layer.get_submodule(geo.o)).shape[0]
    per_unit = d_model * hd.head_dim * (2 * hd.group + 2)
    n_neurons = _out_in(layer.get_submodule(geo.down)).shape[1]
    per_neuron = d_model * (len(geo.up) + 1)
    return hd.n_kv, per_unit, n_neurons, per_neuron


def removal_counts(layer: nn.Module, family: Family, ratio: float) -> tuple[int, int]:
    """(head units, neurons) to remove at ratio ρ, so that h·P_h + n·P_n ≈ ρ·P.

    For each h in 0..H−1 the neurons absorb the rest, n(h) = round((ρP − h·P_h)/P_n) clamped
    to 0..I−1; h is the count closest to ρ·H among those that land within P_n/2 of ρP (else
    the one that lands closest). At least one head unit and one neuron are kept.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"pruning ratio must lie in [0, 1], got {ratio}")
    n_units, per_unit, n_neurons, per_neuron = _unit_sizes(layer, _family(family))
    target = ratio * (n_units * per_unit + n_neurons * per_neuron)

    def plan(h: int) -> tuple[bool, float, float, int, int]:
        n = max(0, min(round((target - h * per_unit) / per_neuron), n_neurons - 1))
        error = abs(h * per_unit + n * per_neuron - target)
        return error > per_neuron / 2 + 1e-9, abs(h - ratio * n_units), error, h, n

    _, _, _, h, n = min(plan(h) for h in range(n_units))
    return h, n


def _require_norms(input_norms: Mapping[str, torch.Tensor] | None, name: str) -> torch.Tensor:
    if input_norms is None or name not in input_norms:
        raise ValueError(f"importance='activation' needs input_norms[{name!r}] "
                         "(InputNormCollector over the layer on calibration inputs)")
    return input_norms[name]


def head_importance(
    layer: nn.Module,
    family: Family,
    importance: Importance = "magnitude",
    input_norms: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Importance of each head unit (KV group for llama), float64; see the module docstring.

    `input_norms` is keyed by module path relative to the layer (`InputNormCollector(layer)`).
    """
    adapter = _family(family)
    geo, hd = adapter.layout, adapter.heads(layer)
    with torch.no_grad():
        w_o = _out_in(layer.get_submodule(geo.o)).to(torch.float64)
        col_energy = (w_o * w_o).sum(dim=0)  # ‖W_o[:, j]‖²
        if importance == "activation":
            x = _require_norms(input_norms, geo.o).to(torch.float64)
            per_feature = col_energy * x * x
        elif importance == "magnitude":
            per_feature = col_energy.clone()
        else:
            raise ValueError(f"importance must be 'magnitude' or 'activation', got {importance!r}")
        scores = per_feature.view(hd.n_kv, -1).sum(dim=1)
        if importance == "magnitude":
            for u in range(hd.n_kv):
                for name, rows_idx in adapter.head_features(hd, [u])[0]:
                    rows = _out_in(layer.get_submodule(name))[rows_idx].to(torch.float64)
                    scores[u] += (rows * rows).sum()
    return scores


def neuron_importance(
    layer: nn.Module,
    family: Family,
    importance: Importance = "magnitude",
    input_norms: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Importance of each FFN neuron, float64; see the module docstring."""
    geo = _family(family).layout
    with torch.no_grad():
        w_down = _out_in(layer.get_submodule(geo.down)).to(torch.float64)
        scores = (w_down * w_down).sum(dim=0)
        if importance == "activation":
            x = _require_norms(input_norms, geo.down).to(torch.float64)
            return scores * x * x
        if importance != "magnitude":
            raise ValueError(f"importance must be 'magnitude' or 'activation', got {importance!r}")
        for name in geo.up:
            w_up = _out_in(layer.get_submodule(name)).to(torch.float64)
            scores += (w_up * w_up).sum(dim=1)
    return scores


def _keep_outputs(module: nn.Module, idx: torch.Tensor) -> None:
    """Keep output features `idx` of an nn.Linear / Conv1D (weight rows or Conv1D columns)."""
    with torch.no_grad():
        if is_conv1d(module):
            module.weight = nn.Parameter(module.weight[:, idx].clone())
            module.nf = len(idx)
        else:
            module.weight = nn.Parameter(module.weight[idx].clone())
            module.out_features = len(idx)
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias[idx].clone())


def _keep_inputs(module: nn.Module, idx: torch.Tensor) -> None:
    """Keep input features `idx` of an nn.Linear / Conv1D (weight columns or Conv1D rows)."""
    with torch.no_grad():
        if is_conv1d(module):
            module.weight = nn.Parameter(module.weight[idx].clone())
            module.nx = len(idx)
        else:
            module.weight = nn.Parameter(module.weight[:, idx].clone())
            module.in_features = len(idx)


def _shrink_attention(layer: nn.Module, adapter: FamilyAdapter, hd: HeadCounts,
                      units: list[int]) -> None:
    outputs, o_idx = adapter.head_features(hd, units)
    for name, idx in outputs:
        _keep_outputs(layer.get_submodule(name), idx)
    _keep_inputs(layer.get_submodule(adapter.layout.o), o_idx)
    adapter.set_head_count(layer.get_submodule(adapter.layout.attention),
                           len(units) * hd.group, hd.head_dim)


def _shrink_mlp(layer: nn.Module, layout: AttentionLayout, neurons: list[int]) -> None:
    idx = torch.tensor(neurons, dtype=torch.long)
    for name in layout.up:
        _keep_outputs(layer.get_submodule(name), idx)
    _keep_inputs(layer.get_submodule(layout.down), idx)
    mlp = layer.get_submodule(layout.down.rsplit(".", 1)[0])
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = len(neurons)


def shrink_layer(
    layer: nn.Module,
    family: Family,
    keep_heads: Sequence[int],
    keep_neurons: Sequence[int],
) -> StructuredPruneReport:
    """Keep only the given head units (KV groups for llama) and FFN neurons, in place.

    Indices refer to the layer as it is now; order is preserved. Keeping everything leaves
    the layer untouched (bit-identical output).
    """
    adapter = _family(family)
    hd = adapter.heads(layer)
    n_neurons = _out_in(layer.get_submodule(adapter.layout.down)).shape[1]
    units = sorted(set(keep_heads))
    neurons = sorted(set(keep_neurons))
    if not units or units[0] < 0 or units[-1] >= hd.n_kv:
        raise ValueError(f"keep_heads must be a non-empty subset of 0..{hd.n_kv - 1}")
    if not neurons or neurons[0] < 0 or neurons[-1] >= n_neurons:
        raise ValueError(f"keep_neurons must be a non-empty subset of 0..{n_neurons - 1}")
    prunable_before = _prunable(layer, adapter)
    params_before = sum(p.numel() for p in layer.parameters())
    if len(units) < hd.n_kv:
        _shrink_attention(layer, adapter, hd, units)
    if len(neurons) < n_neurons:
        _shrink_mlp(layer, adapter.layout, neurons)
    kept_q = tuple(u * hd.group + g for u in units for g in range(hd.group))
    return StructuredPruneReport(
        family=adapter.name,
        heads_before=hd.n_q,
        kept_heads=kept_q,
        kv_heads_before=hd.n_kv,
        kept_kv_heads=tuple(units),
        neurons_before=n_neurons,
        kept_neurons=tuple(neurons),
        prunable_before=prunable_before,
        prunable_after=_prunable(layer, adapter),
        params_before=params_before,
        params_after=sum(p.numel() for p in layer.parameters()),
    )


def _least(scores: torch.Tensor, n_remove: int) -> list[int]:
    """Indices kept after removing the n_remove smallest scores (ties: lower index first)."""
    order = torch.argsort(scores, stable=True)
    return sorted(int(i) for i in order[n_remove:])


def prune_structured(
    layer: nn.Module,
    family: Family,
    ratio: float,
    importance: Importance = "magnitude",
    input_norms: Mapping[str, torch.Tensor] | None = None,
) -> StructuredPruneReport:
    """Remove the least important head units and neurons of one layer at ratio ρ, in place.

    Counts from `removal_counts` (heads at about ρ·H, neurons absorb the rounding); units
    ranked by `head_importance` / `neuron_importance`. For importance="activation" pass
    `input_norms` from `InputNormCollector(layer)` run on calibration inputs.
    """
    h, n = removal_counts(layer, family, ratio)
    keep_heads = _least(head_importance(layer, family, importance, input_norms), h)
    keep_neurons = _least(neuron_importance(layer, family, importance, input_norms), n)
    return shrink_layer(layer, family, keep_heads, keep_neurons)
