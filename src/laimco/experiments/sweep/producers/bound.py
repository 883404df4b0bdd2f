"""Bound sweeps: one row per pruning ratio of the real model (torch): the measured parameter and
output distortions D_w, D_y and task quality next to the D_w each distortion law predicts
(docs/theory.md §3); the only axis is "rho" (docs/study.md, "Kinds and their rows")."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from laimco.experiments.sweep.producers.registry import Producer, register
from laimco.experiments.sweep.tables import RowBuilder

if TYPE_CHECKING:
    from laimco.experiments.sweep.expansion import ChunkTask


@functools.lru_cache(maxsize=1)
def _bound_context(model: str, n_calibration: int, n_heldout: int) -> Any:
    """The loaded model, its tokenized texts and unpruned outputs (once per process)."""
    import torch

    from laimco.data import calibration_sentences, heldout_sentences
    from laimco.experiments.text_batches import text_batches
    from laimco.models.loading import load_model
    from laimco.models.split import run_full

    torch.manual_seed(0)
    loaded = load_model(model)
    calibration = list(text_batches(loaded, calibration_sentences()[:n_calibration]))
    heldout = list(text_batches(loaded, heldout_sentences()[:n_heldout]))
    with torch.no_grad():
        reference = (torch.cat([run_full(loaded, b) for b in calibration]),
                     torch.cat([run_full(loaded, b) for b in heldout]))
    return loaded, calibration, heldout, reference


def _predicted_distortions(profile: Any, rho: float) -> dict[str, float]:
    """Each law's D_w of the whole model pruned at ratio `rho` (NaN without a profile)."""
    from laimco.theory.distortion_bound import LAW_NAMES, SplitDistortionBound

    if profile is None:
        return {f"law_{law}": float("nan") for law in LAW_NAMES}
    rho_all = np.full(profile.n_units + 1, rho)
    return {f"law_{law}": float(SplitDistortionBound(profile, law, 1.0, 1.0).device(
        rho_all)[profile.n_units]) for law in LAW_NAMES}


def bound_rows(task: ChunkTask, rows: RowBuilder) -> None:
    import torch

    from laimco.measure.metrics import (
        mean_cosine_similarity,
        output_distortion_per_input,
        retrieval_agreement_at_k,
    )
    from laimco.models.pruned import prune_split_model
    from laimco.profile import load_profile

    loaded, calibration, heldout, (ref_cal, ref_held) = _bound_context(
        task.model, task.calibration_sentences, task.heldout_sentences)
    profile = load_profile("minilm-l6") if task.model == "minilm" else None
    for point in task.points:
        rho = float(point.coords[0])
        pruned = prune_split_model(loaded, loaded.n_units, rho, 0.0, "magnitude")
        with torch.no_grad():
            y_cal = torch.cat([pruned(b) for b in calibration])
            y_held = torch.cat([pruned(b) for b in heldout])
        d_cal = output_distortion_per_input(ref_cal, y_cal)
        d_held = output_distortion_per_input(ref_held, y_held)
        rows.add(1, point=point.index, rho=rho,
                 d_w=pruned.reports["device"].parameter_distortion,
                 sparsity=pruned.reports["device"].sparsity,
                 d_y_calibration_mean=float(d_cal.mean()),
                 d_y_calibration_max=float(d_cal.max()),
                 d_y_heldout_mean=float(d_held.mean()), d_y_heldout_max=float(d_held.max()),
                 cosine_heldout=mean_cosine_similarity(ref_held, y_held),
                 retrieval_at_10_heldout=retrieval_agreement_at_k(
                     ref_held, y_held, min(10, ref_held.shape[0] - 1)),
                 **_predicted_distortions(profile, rho))


PRODUCER = register(Producer("bound", bound_rows, chunk_points=1, in_process=True))
