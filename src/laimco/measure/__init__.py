"""Measurement of pruned and split models against the original (torch)."""

from laimco.measure.metrics import (
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

__all__ = [
    "MetricInputError",
    "cosine_similarity",
    "mean_cosine_similarity",
    "mean_pool",
    "normalize",
    "output_distortion",
    "output_distortion_per_input",
    "parameter_distortion",
    "perplexity",
    "retrieval_agreement_at_k",
    "top1_agreement",
]
