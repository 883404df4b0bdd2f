"""Runs of equal labels in a sorted array — the fleet's items, boxes and points sorted by
device: where each run begins and each element's rank within its run."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.intp]


def run_starts(sorted_labels: IntArray) -> NDArray[np.bool_]:
    """True where a run of equal labels begins."""
    if sorted_labels.size == 0:
        return np.zeros(0, dtype=bool)
    return np.concatenate([[True], sorted_labels[1:] != sorted_labels[:-1]])


def rank_within(sorted_labels: IntArray) -> IntArray:
    """0, 1, 2, … within each run of equal labels."""
    if sorted_labels.size == 0:
        return sorted_labels
    first_index = np.maximum.accumulate(np.where(run_starts(sorted_labels),
                                                 np.arange(sorted_labels.size), 0))
    return np.arange(sorted_labels.size) - first_index
