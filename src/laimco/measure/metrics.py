"""Measured distortion and task quality of a pruned or split model against the original.

Conventions, the same for every function here:

* inputs are torch tensors whose first dimension indexes the inputs (sentences, images...);
  numpy arrays are accepted and converted with ``torch.as_tensor``;
* distances, similarities and averages are computed in float64 whatever the input dtype
  (``mean_pool`` and ``normalize`` excepted: they keep the dtype, as sentence-transformers does);
* a per-input result is a float64 tensor of shape (N,); an average is a Python ``float``;
* shapes that do not fit raise ``MetricInputError`` saying what to change.

Notation: y_n is the reference output for input n (the unpruned model), ŷ_n the output of the
model under test; both are flattened beyond the first dimension. The formulas are those of
docs/theory.md §3 (output distortion D_y, parameter distortion D_w) and §3.13.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional

TensorLike = torch.Tensor | np.ndarray[Any, Any]
Weights = TensorLike | Sequence[TensorLike] | Mapping[str, TensorLike]

MEAN_POOL_MIN_TOKENS = 1e-9  # clamp of the token count, as in sentence-transformers
NORMALIZE_EPS = 1e-12  # clamp of the norm, as in torch.nn.functional.normalize


class MetricInputError(ValueError):
    """The tensors given to a metric have shapes or values it cannot use."""


def _tensor(x: TensorLike, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(np.ascontiguousarray(x))  # numpy views may have negative strides
    except (TypeError, ValueError, RuntimeError) as err:
        raise MetricInputError(f"{name}: not a tensor or array ({err})") from None


def _pair(reference: TensorLike, other: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Both outputs as float64 (N, D) matrices, checked to have the same shape."""
    y, y_hat = _tensor(reference, "reference"), _tensor(other, "other")
    if y.shape != y_hat.shape:
        raise MetricInputError(f"reference has shape {tuple(y.shape)} but other has "
                               f"{tuple(y_hat.shape)}; give outputs of the same inputs")
    if y.dim() < 1 or y.shape[0] == 0:
        raise MetricInputError(f"need at least one input along dimension 0, got shape "
                               f"{tuple(y.shape)}")
    return y.reshape(y.shape[0], -1).double(), y_hat.reshape(y.shape[0], -1).double()


def mean_pool(hidden: TensorLike, attention_mask: TensorLike) -> torch.Tensor:
    """Sentence-transformers mean pooling of token embeddings, shape (B, T, H) → (B, H).

        e_b = Σ_t m_bt · h_bt / max(Σ_t m_bt, 1e-9)

    with m the 0/1 attention mask of shape (B, T): the average of the real (unpadded) tokens.
    The operations are those of the all-MiniLM-L6-v2 model card and of
    ``sentence_transformers.models.Pooling`` (``pooling_mode_mean_tokens``), in the dtype of
    ``hidden``, so the result matches theirs bit for bit."""
    h = _tensor(hidden, "hidden")
    m = _tensor(attention_mask, "attention_mask")
    if h.dim() != 3 or m.shape != h.shape[:2]:
        raise MetricInputError(f"hidden must be (batch, tokens, features) and attention_mask "
                               f"(batch, tokens); got {tuple(h.shape)} and {tuple(m.shape)}")
    mask = m.unsqueeze(-1).expand(h.size()).to(h.dtype)
    return torch.sum(h * mask, 1) / torch.clamp(mask.sum(1), min=MEAN_POOL_MIN_TOKENS)


def normalize(embeddings: TensorLike) -> torch.Tensor:
    """Unit-length rows: e / max(‖e‖₂, 1e-12) along the last dimension (dtype kept).

    This is ``torch.nn.functional.normalize(e, p=2, dim=-1)``, the final ``Normalize`` module of
    all-MiniLM-L6-v2."""
    return functional.normalize(_tensor(embeddings, "embeddings"), p=2.0, dim=-1, eps=NORMALIZE_EPS)


def output_distortion_per_input(reference: TensorLike, other: TensorLike) -> torch.Tensor:
    """Squared L2 error of each input, d_n = ‖y_n − ŷ_n‖² = Σ_i (y_n,i − ŷ_n,i)², shape (N,)."""
    y, y_hat = _pair(reference, other)
    return ((y - y_hat) ** 2).sum(dim=1)


def output_distortion(reference: TensorLike, other: TensorLike) -> float:
    """Output distortion D_y = (1/N) Σ_n ‖y_n − ŷ_n‖² (theory.md §3.13): mean over inputs of the
    squared L2 error, summed over all features of an input."""
    return float(output_distortion_per_input(reference, other).mean())


def cosine_similarity(reference: TensorLike, other: TensorLike) -> torch.Tensor:
    """Cosine similarity of each input's two outputs, shape (N,):

        c_n = ⟨y_n, ŷ_n⟩ / (max(‖y_n‖, 1e-12) · max(‖ŷ_n‖, 1e-12))

    (a zero output has similarity 0 with everything)."""
    y, y_hat = _pair(reference, other)
    return (normalize(y) * normalize(y_hat)).sum(dim=1)


def mean_cosine_similarity(reference: TensorLike, other: TensorLike) -> float:
    """Mean cosine similarity (1/N) Σ_n c_n; 1.0 when every output keeps its direction."""
    return float(cosine_similarity(reference, other).mean())


def _top_k_neighbours(embeddings: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (N, k) of each row's k most cosine-similar other rows, ties to the lower index."""
    unit = normalize(embeddings)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-torch.inf)  # a query is not its own neighbour
    return torch.argsort(similarity, dim=1, descending=True, stable=True)[:, :k]


def retrieval_agreement_at_k(
    reference_embeddings: TensorLike, other_embeddings: TensorLike, k: int
) -> float:
    """Agreement of top-k cosine retrieval under two embeddings of the same N sentences.

    Each sentence n queries the N − 1 others. With A_n (B_n) the set of its k nearest
    neighbours by cosine similarity under the reference (other) embeddings,

        agreement@k = (1/N) Σ_n |A_n ∩ B_n| / k   ∈ [0, 1],

    1.0 when both embeddings rank the top k identically (as sets). Exact ties in similarity
    are broken towards the lower index. Needs 1 ≤ k ≤ N − 1; memory O(N²)."""
    y, y_hat = _pair(reference_embeddings, other_embeddings)
    n = y.shape[0]
    if not 1 <= k <= n - 1:
        raise MetricInputError(f"k must be between 1 and N - 1 = {n - 1} (each of the {n} "
                               f"sentences is compared with the others); got k = {k}")
    in_reference = torch.zeros(n, n, dtype=torch.bool)
    in_reference.scatter_(1, _top_k_neighbours(y, k), True)
    shared = in_reference.gather(1, _top_k_neighbours(y_hat, k)).sum(dim=1)
    return float(shared.double().mean() / k)


def top1_agreement(
    reference_logits: TensorLike,
    other_logits: TensorLike,
    attention_mask: TensorLike | None = None,
) -> float:
    """Fraction of positions whose arg-max class is the same under both logits.

        agreement = Σ_p m_p · 1[argmax y_p = argmax ŷ_p] / Σ_p m_p

    over all positions p (every index but the last, the class dimension), with m the optional
    0/1 mask of real positions (shape = logits shape without the class dimension)."""
    y, y_hat = _tensor(reference_logits, "reference_logits"), _tensor(other_logits, "other_logits")
    if y.shape != y_hat.shape or y.dim() < 1:
        raise MetricInputError(f"logits must have the same shape, got {tuple(y.shape)} and "
                               f"{tuple(y_hat.shape)}")
    same = (y.argmax(dim=-1) == y_hat.argmax(dim=-1)).double()
    mask = torch.ones_like(same) if attention_mask is None else _tensor(
        attention_mask, "attention_mask").double()
    if mask.shape != same.shape:
        raise MetricInputError(f"attention_mask must have shape {tuple(same.shape)}, got "
                               f"{tuple(mask.shape)}")
    if mask.sum() == 0:
        raise MetricInputError("no position is unmasked; nothing to compare")
    return float((same * mask).sum() / mask.sum())


def perplexity(
    logits: TensorLike, input_ids: TensorLike, attention_mask: TensorLike | None = None
) -> float:
    """Perplexity of a causal language model on a padded batch.

    Position t of sequence b predicts token t + 1. With m the 0/1 attention mask (all ones if
    not given), a prediction is scored when both its context position and its target are real
    tokens, s_bt = m_bt · m_b,t+1, so left and right padding both give the perplexity of the
    unpadded sequences. With p_bt the softmax of logits[b, t]:

        PPL = exp( Σ_bt s_bt · (−log p_bt(x_b,t+1)) / Σ_bt s_bt )

    the exponential of the token-averaged next-token cross entropy (nats). Uniform logits over
    V classes give PPL = V. Logits (B, T, V), input_ids and attention_mask (B, T)."""
    z = _tensor(logits, "logits")
    ids = _tensor(input_ids, "input_ids").long()
    if z.dim() != 3 or ids.shape != z.shape[:2]:
        raise MetricInputError(f"logits must be (batch, tokens, vocab) and input_ids (batch, "
                               f"tokens); got {tuple(z.shape)} and {tuple(ids.shape)}")
    mask = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else _tensor(
        attention_mask, "attention_mask").bool()
    if mask.shape != ids.shape:
        raise MetricInputError(f"attention_mask must have shape {tuple(ids.shape)}, got "
                               f"{tuple(mask.shape)}")
    scored = mask[:, :-1] & mask[:, 1:]
    if not scored.any():
        raise MetricInputError("no sequence has two consecutive real tokens; perplexity needs "
                               "at least one next-token prediction")
    scored_logits = z[:, :-1][scored]
    scored_logits = scored_logits.to(torch.promote_types(scored_logits.dtype, torch.float32))
    nll = functional.cross_entropy(scored_logits, ids[:, 1:][scored], reduction="none")
    return float(torch.exp(nll.double().mean()))


def _named_weights(weights: Weights, name: str) -> dict[str, torch.Tensor]:
    """Tensors by name: mapping keys, or positions "0", "1"... of a sequence or single tensor."""
    if isinstance(weights, Mapping):
        return {str(key): _tensor(value, f"{name}[{key!r}]") for key, value in weights.items()}
    if isinstance(weights, torch.Tensor | np.ndarray):
        return {"0": _tensor(weights, name)}
    return {str(i): _tensor(w, f"{name}[{i}]") for i, w in enumerate(weights)}


def parameter_distortion(weights_a: Weights, weights_b: Weights) -> float:
    """Parameter distortion D_w = ‖w − ŵ‖² = Σ_tensors Σ_i (w_i − ŵ_i)² (docs/theory.md §3).

    ``weights_a`` and ``weights_b`` are one tensor each, two sequences of tensors paired by
    position, or two mappings (e.g. state dicts) paired by key; paired tensors must have the
    same shape. Accumulated in float64."""
    if isinstance(weights_a, Mapping) != isinstance(weights_b, Mapping):
        raise MetricInputError("give both weights as mappings (paired by name), or neither")
    a, b = _named_weights(weights_a, "weights_a"), _named_weights(weights_b, "weights_b")
    if a.keys() != b.keys():
        raise MetricInputError(f"the weights do not pair up: only in weights_a "
                               f"{sorted(a.keys() - b.keys())}, only in weights_b "
                               f"{sorted(b.keys() - a.keys())}")
    total = 0.0
    for key, wa in a.items():
        wb = b[key]
        if wa.shape != wb.shape:
            raise MetricInputError(f"weight {key}: shapes {tuple(wa.shape)} and "
                                   f"{tuple(wb.shape)} differ")
        total += float(((wa.double() - wb.double()) ** 2).sum())
    return total
