"""An analytic estimate of the output-sensitivity constant K in D_y ≤ K·D_w for BERT-style
encoders with mean-pooled, L2-normalized embeddings (docs/theory.md §3.12).

Pruning linear layer l changes its output by ΔW_l·x for each token x. Pushed to the final
embedding through the rest of the network with gain g_l (a Lipschitz estimate), and summed over
layers with Cauchy–Schwarz,

    D_y ≤ (Σ_l g_l·‖x_l‖_max·‖ΔW_l‖_F)² ≤ (Σ_l g_l²‖x_l‖²_max)·Σ_l ‖ΔW_l‖_F² = K_lip·D_w.

g_l multiplies spectral norms of the linear maps downstream of l, the LayerNorm gains
max|γ|/σ_min (σ_min the least pre-norm standard deviation seen on calibration text), GELU's
Lipschitz constant 1.13, and 1/‖pooled‖_min for the final normalization. Attention's softmax is
taken as a fixed averaging (its dependence on the input is ignored) — so this is an estimate
from local linearization, not a proven bound; the analysis reports how far it is from the
calibrated K̂.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from laimco.models.families import family_adapters
from laimco.models.loading import LoadedModel

GELU_LIPSCHITZ = 1.13


def lipschitz_estimate(loaded: LoadedModel, calibration: Sequence[dict[str, torch.Tensor]]
                       ) -> dict[str, Any]:
    """K_lip and its per-layer terms for a BERT-style encoder (see module docstring)."""
    if not loaded.adapter.lipschitz_estimate:
        known = [a.name for a in family_adapters() if a.lipschitz_estimate]
        raise ValueError(f"the analytic K estimate knows the block layout of the "
                         f"{', '.join(known)} families only: {loaded.name} is a "
                         f"{loaded.family} model")
    model = loaded.model
    layers = list(model.encoder.layer)
    norms_2 = {id(m): float(torch.linalg.matrix_norm(m.weight.detach(), ord=2))
               for m in model.modules() if isinstance(m, nn.Linear)}

    def _spectral(linear: nn.Module) -> float:
        """Largest singular value of a linear layer's matrix."""
        return norms_2[id(linear)]

    max_input, min_std, pooled_min = _calibration_extremes(model, calibration)

    def ln_gain(prefix: str, module: nn.LayerNorm) -> float:
        return float(module.weight.detach().abs().max()) / min_std[prefix]

    blocks = []
    for i, layer in enumerate(layers):
        p = f"encoder.layer.{i}"
        attn = (_spectral(layer.attention.self.value) * _spectral(layer.attention.output.dense))
        ffn = (GELU_LIPSCHITZ * _spectral(layer.intermediate.dense)
               * _spectral(layer.output.dense))
        blocks.append({
            "ln1": ln_gain(f"{p}.attention.output.LayerNorm", layer.attention.output.LayerNorm),
            "ln2": ln_gain(f"{p}.output.LayerNorm", layer.output.LayerNorm),
            "attn": attn, "ffn": ffn})
    block_gain = [(1 + b["attn"]) * b["ln1"] * (1 + b["ffn"]) * b["ln2"] for b in blocks]
    terms = []
    for i, layer in enumerate(layers):
        b = blocks[i]
        after = 1.0
        for g in block_gain[i + 1:]:
            after *= g
        after /= pooled_min
        p = f"encoder.layer.{i}"
        rest_attention = b["ln1"] * (1 + b["ffn"]) * b["ln2"] * after
        gains = {
            f"{p}.attention.self.query": _spectral(layer.attention.output.dense) * rest_attention,
            f"{p}.attention.self.key": _spectral(layer.attention.output.dense) * rest_attention,
            f"{p}.attention.self.value": _spectral(layer.attention.output.dense) * rest_attention,
            f"{p}.attention.output.dense": rest_attention,
            f"{p}.intermediate.dense": GELU_LIPSCHITZ * _spectral(layer.output.dense) * b["ln2"]
            * after,
            f"{p}.output.dense": b["ln2"] * after,
        }
        for name, gain in gains.items():
            terms.append({"layer": name, "gain": gain, "input_norm_max": max_input[name],
                          "term": gain**2 * max_input[name] ** 2})
    return {"k_lipschitz": sum(t["term"] for t in terms), "terms": terms,
            "block_gain": block_gain, "pooled_norm_min": pooled_min}


def _calibration_extremes(model: nn.Module, calibration: Sequence[dict[str, torch.Tensor]]
                          ) -> tuple[dict[str, float], dict[str, float], float]:
    """Over the calibration batches: the largest input norm ‖x‖ of every linear layer, the
    least pre-norm standard deviation of every LayerNorm, and the least mean-pooled norm."""
    max_input: dict[str, float] = {}
    min_std: dict[str, float] = {}
    handles = []

    def watch_input(name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            norms = args[0].detach().norm(dim=-1)
            max_input[name] = max(max_input.get(name, 0.0), float(norms.max()))
        return hook

    def watch_norm(name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            std = args[0].detach().std(dim=-1, unbiased=False)
            min_std[name] = min(min_std.get(name, float("inf")), float(std.min()))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_pre_hook(watch_input(name)))
        elif isinstance(module, nn.LayerNorm):
            handles.append(module.register_forward_pre_hook(watch_norm(name)))
    pooled_min = float("inf")
    try:
        with torch.no_grad():
            for batch in calibration:
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1)
                pooled_min = min(pooled_min, float(pooled.norm(dim=-1).min()))
    finally:
        for h in handles:
            h.remove()
    return max_input, min_std, pooled_min
