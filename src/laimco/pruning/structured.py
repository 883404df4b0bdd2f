"""Structured pruning: remove whole attention heads and FFN neurons so that matrices shrink.

Works on one transformer layer of a stock transformers model, without editing the model code:
the kept rows/columns are copied into new, smaller weights and the attention module's
head-count attributes are updated so that its own forward runs on the smaller shapes.

Families and what a unit is:

- "bert" (BertLayer): head h = rows h·d_h..(h+1)·d_h−1 of attention.self.query/key/value and
  the same columns of attention.output.dense; neuron j = row j of intermediate.dense and column
  j of output.dense. Cross-attention (decoder BERT) is left alone.
- "gpt2" (GPT2Block, Conv1D weights stored (in, out)): head h = its d_h columns in each of the
  q, k, v blocks of attn.c_attn and its d_h rows of attn.c_proj; neuron j = column j of
  mlp.c_fc and row j of mlp.c_proj. Cross-attention, if any, is left alone.
- "llama" (LlamaDecoderLayer, grouped-query attention): the unit is a whole KV group, i.e. one
  key/value head with its G = num_attention_heads / num_key_value_heads query heads (rows of
  k_proj, v_proj, the group's rows of q_proj, columns of o_proj). Removing whole groups keeps
  G, and so `num_key_value_groups` and the model's repeat_kv, unchanged: the simplest correct
  rule (with plain multi-head attention, G = 1 and a group is a head). Neuron j = row j of
  gate_proj and up_proj and column j of down_proj. Any layer with these module names
  (Mistral, Qwen2, ...) fits; q/k/v biases, where present, are cut with their rows.
- "vit" (ViTLayer of transformers ≥ 5): head h = rows h·d_h..(h+1)·d_h−1 of
  attention.q_proj/k_proj/v_proj (with their biases) and the same columns of
  attention.o_proj; neuron j = row j of mlp.fc1 and column j of mlp.fc2.

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

from laimco.pruning.masks import is_conv1d

Family = Literal["bert", "gpt2", "llama", "vit"]
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


@dataclass(frozen=True)
class _Geometry:
    """Where a family keeps its heads and neurons (module paths relative to the layer)."""

    attention: str
    q: str
    k: str
    v: str
    o: str
    up: tuple[str, ...]
    down: str


_GEOMETRY: dict[str, _Geometry] = {
    "bert": _Geometry("attention.self", "attention.self.query", "attention.self.key",
                      "attention.self.value", "attention.output.dense",
                      ("intermediate.dense",), "output.dense"),
    # GPT-2 fuses q, k, v into one Conv1D; q = k = v = attn.c_attn.
    "gpt2": _Geometry("attn", "attn.c_attn", "attn.c_attn", "attn.c_attn", "attn.c_proj",
                      ("mlp.c_fc",), "mlp.c_proj"),
    "llama": _Geometry("self_attn", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                       "self_attn.o_proj", ("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),
    # ViT (transformers ≥ 5): separate q/k/v/o projections with biases, fc1/fc2 MLP
    "vit": _Geometry("attention", "attention.q_proj", "attention.k_proj", "attention.v_proj",
                     "attention.o_proj", ("mlp.fc1",), "mlp.fc2"),
}


def _geometry(family: str) -> _Geometry:
    if family not in _GEOMETRY:
        raise ValueError(f"family must be one of {sorted(_GEOMETRY)}, got {family!r}")
    return _GEOMETRY[family]


def _out_in(module: nn.Module) -> torch.Tensor:
    """The weight in nn.Linear layout (out, in), whatever the storage."""
    w: torch.Tensor = module.weight
    return w.T if is_conv1d(module) else w


@dataclass(frozen=True)
class _Heads:
    """Head structure of one layer: H_q query heads, H_kv key/value heads, head size d_h."""

    n_q: int
    n_kv: int
    head_dim: int

    @property
    def group(self) -> int:
        return self.n_q // self.n_kv


def _heads(layer: nn.Module, family: str) -> _Heads:
    attn = layer.get_submodule(_geometry(family).attention)
    if family == "bert":
        return _Heads(attn.num_attention_heads, attn.num_attention_heads, attn.attention_head_size)
    if family == "gpt2":
        return _Heads(attn.num_heads, attn.num_heads, attn.head_dim)
    d_h = attn.head_dim
    n_q = layer.get_submodule(_geometry(family).q).weight.shape[0] // d_h
    n_kv = layer.get_submodule(_geometry(family).k).weight.shape[0] // d_h
    return _Heads(n_q, n_kv, d_h)


def _dims(heads: Sequence[int], d_h: int) -> torch.Tensor:
    """Feature indices of the given heads: h·d_h .. (h+1)·d_h − 1 for each h."""
    idx = torch.arange(d_h)
    return torch.cat([h * d_h + idx for h in heads]) if heads else torch.zeros(0, dtype=torch.long)


def _unit_index(
    family: str, hd: _Heads, units: Sequence[int]
) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
    """For the given head units: (module path, output features) of q, k, v; input features of o."""
    geo = _geometry(family)
    q_heads = [u * hd.group + g for u in units for g in range(hd.group)]
    q = _dims(q_heads, hd.head_dim)
    if family == "gpt2":  # one fused Conv1D: q, k, v blocks of split_size = H·d_h features each
        split = hd.n_q * hd.head_dim
        return [(geo.q, torch.cat([q, q + split, q + 2 * split]))], q
    kv = _dims(list(units), hd.head_dim)
    return [(geo.q, q), (geo.k, kv), (geo.v, kv)], q


def _prunable(layer: nn.Module, family: str) -> int:
    geo = _geometry(family)
    names = {geo.q, geo.k, geo.v, geo.o, *geo.up, geo.down}
    return sum(layer.get_submodule(n).weight.numel() for n in names)


def _unit_sizes(layer: nn.Module, family: str) -> tuple[int, int, int, int]:
    """(H units, weights per unit, I neurons, weights per neuron)."""
    geo = _geometry(family)
    hd = _heads(layer, family)
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
    n_units, per_unit, n_neurons, per_neuron = _unit_sizes(layer, family)
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
    geo = _geometry(family)
    hd = _heads(layer, family)
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
                for name, rows_idx in _unit_index(family, hd, [u])[0]:
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
    geo = _geometry(family)
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


def _shrink_attention(layer: nn.Module, family: str, hd: _Heads, units: list[int]) -> None:
    geo = _geometry(family)
    outputs, o_idx = _unit_index(family, hd, units)
    for name, idx in outputs:
        _keep_outputs(layer.get_submodule(name), idx)
    _keep_inputs(layer.get_submodule(geo.o), o_idx)
    attn = layer.get_submodule(geo.attention)
    n_q = len(units) * hd.group
    if family == "bert":
        attn.num_attention_heads = n_q
        attn.all_head_size = n_q * hd.head_dim
    elif family == "gpt2":
        attn.num_heads = n_q
        attn.split_size = n_q * hd.head_dim
    elif family == "vit":  # the forward infers the head count from the shapes; kept in step
        attn.num_attention_heads = n_q
    # llama: the forward infers head counts from the shapes; num_key_value_groups is unchanged.


def _shrink_mlp(layer: nn.Module, family: str, neurons: list[int]) -> None:
    geo = _geometry(family)
    idx = torch.tensor(neurons, dtype=torch.long)
    for name in geo.up:
        _keep_outputs(layer.get_submodule(name), idx)
    _keep_inputs(layer.get_submodule(geo.down), idx)
    mlp = layer.get_submodule(geo.down.rsplit(".", 1)[0])
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
    geo = _geometry(family)
    hd = _heads(layer, family)
    n_neurons = _out_in(layer.get_submodule(geo.down)).shape[1]
    units = sorted(set(keep_heads))
    neurons = sorted(set(keep_neurons))
    if not units or units[0] < 0 or units[-1] >= hd.n_kv:
        raise ValueError(f"keep_heads must be a non-empty subset of 0..{hd.n_kv - 1}")
    if not neurons or neurons[0] < 0 or neurons[-1] >= n_neurons:
        raise ValueError(f"keep_neurons must be a non-empty subset of 0..{n_neurons - 1}")
    prunable_before = _prunable(layer, family)
    params_before = sum(p.numel() for p in layer.parameters())
    if len(units) < hd.n_kv:
        _shrink_attention(layer, family, hd, units)
    if len(neurons) < n_neurons:
        _shrink_mlp(layer, family, neurons)
    kept_q = tuple(u * hd.group + g for u in units for g in range(hd.group))
    return StructuredPruneReport(
        family=family,
        heads_before=hd.n_q,
        kept_heads=kept_q,
        kv_heads_before=hd.n_kv,
        kept_kv_heads=tuple(units),
        neurons_before=n_neurons,
        kept_neurons=tuple(neurons),
        prunable_before=prunable_before,
        prunable_after=_prunable(layer, family),
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
