"""Pruning, separate from the model: take weights (or a layer) and a rule, return masks or a
smaller layer (design.md §7). Unstructured masks in `masks`, head/neuron removal in `structured`.
"""

from laimco.pruning.masks import (
    InputNormCollector,
    apply_masks,
    conv1d_names,
    default_exclude,
    linear_modules,
    linear_weights,
    magnitude_masks,
    n_to_prune,
    parameter_distortion,
    sparsity,
    wanda_masks,
)
from laimco.pruning.structured import (
    StructuredPruneReport,
    head_importance,
    neuron_importance,
    prune_structured,
    removal_counts,
    shrink_layer,
)

__all__ = [
    "InputNormCollector",
    "StructuredPruneReport",
    "apply_masks",
    "conv1d_names",
    "default_exclude",
    "head_importance",
    "linear_modules",
    "linear_weights",
    "magnitude_masks",
    "n_to_prune",
    "neuron_importance",
    "parameter_distortion",
    "prune_structured",
    "removal_counts",
    "shrink_layer",
    "sparsity",
    "wanda_masks",
]
