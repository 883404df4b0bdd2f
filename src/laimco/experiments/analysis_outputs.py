"""The output-side measurements of `laimco analyze` on a real model (torch): the bound
D_y ≤ K̂·D_w on held-out text (docs/theory.md §3.12), per-side and per-block constants,
output quality per pruning rule (§3.13), and the CPU time of structurally pruned blocks
against the (1 − ρ) FLOP prediction (§5.3)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from rich.progress import Progress

from laimco.experiments.analysis_result import (
    BoundRow,
    OutputBound,
    QualityRow,
    RuleQuality,
    SideConstants,
    StructuredTiming,
    TimingRow,
)
from laimco.measure.metrics import (
    mean_cosine_similarity,
    output_distortion_per_input,
    retrieval_agreement_at_k,
)
from laimco.models.loading import LoadedModel
from laimco.models.pruned import calibration_norms, prune_split_model
from laimco.models.split import block_modules, run_full

SIDE_RATIOS = (0.3, 0.6, 0.9)
STRUCTURED_RATIOS = (0.0, 0.25, 0.5, 0.75)
RETRIEVAL_K = 10


@dataclass(frozen=True)
class Texts:
    """Tokenized calibration and held-out batches."""

    calibration: list[dict[str, torch.Tensor]]
    heldout: list[dict[str, torch.Tensor]]


def run_batches(model: Callable[[dict[str, torch.Tensor]], torch.Tensor],
         batches: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """The model's outputs on every batch, concatenated."""
    with torch.no_grad():
        return torch.cat([model(b) for b in batches])


def _pruned_outputs(loaded: LoadedModel, split: int, rho_device: float, rho_server: float,
                    rule: str, texts: Texts, batches: Sequence[dict[str, torch.Tensor]],
                    input_norms: Sequence[dict[str, torch.Tensor]] | None = None
                    ) -> tuple[torch.Tensor, float]:
    pruned = prune_split_model(loaded, split, rho_device, rho_server, rule,  # type: ignore[arg-type]
                               calibration=texts.calibration if rule == "wanda" else None,
                               input_norms=input_norms)
    d_w = sum(r.parameter_distortion for r in pruned.reports.values()
              if not math.isnan(r.parameter_distortion))
    return run_batches(pruned, batches), d_w


def output_bound(loaded: LoadedModel, texts: Texts, ratios: Sequence[float],
                 reference: dict[str, torch.Tensor], progress: Progress,
                 heldout_outputs: dict[float, torch.Tensor]) -> OutputBound:
    """D_y and D_w for whole-model magnitude pruning; K̂ from calibration, checked held-out.
    The held-out outputs are left in `heldout_outputs` (by ratio) for the rule comparison."""
    n = loaded.n_units
    measured = []
    task = progress.add_task("output bound (magnitude)", total=len(ratios))
    for rho in ratios:
        pruned = prune_split_model(loaded, n, rho, 0.0, "magnitude")
        d_w = pruned.reports["device"].parameter_distortion
        cal = output_distortion_per_input(reference["calibration"],
                                          run_batches(pruned, texts.calibration))
        heldout_outputs[rho] = run_batches(pruned, texts.heldout)
        held = output_distortion_per_input(reference["heldout"], heldout_outputs[rho])
        measured.append((rho, d_w, cal, held))
        progress.advance(task)
    k_hat = max(float(cal.max() / d_w) for _, d_w, cal, _ in measured)
    rows = [BoundRow(rho=rho, d_w=d_w, d_y_calibration_mean=float(cal.mean()),
                     d_y_calibration_max=float(cal.max()),
                     d_y_heldout_mean=float(held.mean()), d_y_heldout_max=float(held.max()),
                     k_calibration_max=float(cal.max() / d_w), k_hat_d_w=k_hat * d_w,
                     bound_holds_heldout_mean=float(held.mean()) <= k_hat * d_w,
                     bound_holds_every_heldout_input=float(held.max()) <= k_hat * d_w)
            for rho, d_w, cal, held in measured]
    return OutputBound(
        k_hat=k_hat, rows=rows,
        holds_on_heldout_mean_at_every_ratio=all(r.bound_holds_heldout_mean for r in rows),
        holds_for_every_heldout_input_at_every_ratio=all(
            r.bound_holds_every_heldout_input for r in rows),
        d_y_over_d_w_mean=[r.d_y_heldout_mean / r.d_w for r in rows])


def side_constants(loaded: LoadedModel, texts: Texts, reference: torch.Tensor, split: int,
                   progress: Progress) -> SideConstants:
    """k_device, k_server at one split (one side pruned at a time), and per-unit k_u (one block
    pruned at ρ = 0.5): max over ratios of mean held-out D_y / D_w."""
    by_ratio: dict[str, dict[float, float]] = {}
    task = progress.add_task("per-side and per-unit sensitivity",
                             total=2 * len(SIDE_RATIOS) + loaded.n_layers)
    for side in ("device", "server"):
        ks = []
        for rho in SIDE_RATIOS:
            rd, rs = (rho, 0.0) if side == "device" else (0.0, rho)
            y, d_w = _pruned_outputs(loaded, split, rd, rs, "magnitude", texts, texts.heldout)
            ks.append(float(output_distortion_per_input(reference, y).mean()) / d_w)
            progress.advance(task)
        by_ratio[side] = dict(zip(SIDE_RATIOS, ks, strict=True))
    per_unit = []
    for block in range(1, loaded.n_layers + 1):
        y, d_w = _single_block_outputs(loaded, block, 0.5, texts)
        per_unit.append(float(output_distortion_per_input(reference, y).mean()) / d_w)
        progress.advance(task)
    return SideConstants(split=split, k_device=max(by_ratio["device"].values()),
                         k_device_by_ratio=by_ratio["device"],
                         k_server=max(by_ratio["server"].values()),
                         k_server_by_ratio=by_ratio["server"], k_by_block=per_unit)


def _single_block_outputs(loaded: LoadedModel, block: int, rho: float,
                          texts: Texts) -> tuple[torch.Tensor, float]:
    """Outputs with only block `block` (1-based) magnitude-pruned at ρ, and its D_w."""
    import copy

    from laimco.pruning import apply_masks, linear_weights, magnitude_masks, parameter_distortion

    clone = copy.copy(loaded)
    clone.model = copy.deepcopy(loaded.model)
    layer = block_modules(clone.model, clone.family)[block - 1]
    weights = linear_weights(layer)
    original = {k: w.detach().clone() for k, w in weights.items()}
    apply_masks(layer, magnitude_masks(weights, rho))
    d_w = parameter_distortion(original, linear_weights(layer))
    return run_batches(lambda b: run_full(clone, b), texts.heldout), d_w


def rule_quality(loaded: LoadedModel, texts: Texts, reference: torch.Tensor,
                 ratios: Sequence[float], progress: Progress,
                 magnitude_outputs: dict[float, torch.Tensor]) -> RuleQuality:
    """Cosine to the dense embedding, retrieval agreement@10 and D_y per rule and ratio
    (whole-model magnitude outputs are reused from the output-bound measurement)."""
    rules = ("magnitude", "wanda", "structured")
    out: dict[str, list[QualityRow]] = {}
    # Wanda's input norms come from the dense model: measure them once for every ratio
    dense = prune_split_model(loaded, loaded.n_units, 0.0, 0.0)
    norms = calibration_norms([dense.device.model, None], texts.calibration, dense.device,
                              dense.server)
    task = progress.add_task("quality per pruning rule", total=len(rules) * len(ratios))
    for rule in rules:
        rows = []
        for rho in ratios:
            if rule == "magnitude" and rho in magnitude_outputs:
                y = magnitude_outputs[rho]
            else:
                y, _ = _pruned_outputs(loaded, loaded.n_units, rho, 0.0, rule, texts,
                                       texts.heldout, norms if rule == "wanda" else None)
            rows.append(QualityRow(
                rho=rho, d_y=float(output_distortion_per_input(reference, y).mean()),
                cosine=mean_cosine_similarity(reference, y),
                retrieval_agreement_at_10=retrieval_agreement_at_k(reference, y,
                                                                   RETRIEVAL_K)))
            progress.advance(task)
        out[rule] = rows
    at_half = {rule: next(r.d_y for r in out[rule] if abs(r.rho - 0.5) < 1e-9)
               for rule in rules if any(abs(r.rho - 0.5) < 1e-9 for r in out[rule])}
    ratio = (at_half["wanda"] / at_half["magnitude"] if "wanda" in at_half
             else None)
    return RuleQuality.model_validate({
        "ratios": list(ratios), "magnitude": out["magnitude"], "wanda": out["wanda"],
        "structured": out["structured"], "wanda_over_magnitude_d_y_at_0.5": ratio})


def structured_timing(loaded: LoadedModel, progress: Progress, rounds: int = 9
                      ) -> StructuredTiming:
    """CPU forward time of all blocks, structurally pruned at ρ, relative to dense (one thread,
    a fixed batch of 4 × 128 tokens), against the FLOP prediction.

    The models run round-robin (dense, then each ratio, in every round) and the reported ratio
    is the median over rounds of time/dense within the round: a burst of load on a shared
    machine slows a whole round, not one model, so it cancels in the ratio."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hidden = torch.randn(4, 128, int(loaded.config.hidden_size),
                             generator=torch.Generator().manual_seed(0))
        crossing = {"hidden_states": hidden, "attention_mask": torch.ones(4, 128,
                                                                          dtype=torch.long)}
        models = [prune_split_model(loaded, 1, 0.0, rho, "structured")
                  for rho in STRUCTURED_RATIOS]
        samples: list[list[float]] = [[] for _ in models]
        task = progress.add_task("structured pruning timing", total=rounds + 1)
        with torch.no_grad():
            for round_ in range(rounds + 1):  # round 0 warms up
                for model, times in zip(models, samples, strict=True):
                    started = time.perf_counter()
                    model.server(crossing)
                    if round_:
                        times.append(time.perf_counter() - started)
                progress.advance(task)
    finally:
        torch.set_num_threads(threads)
    dense = samples[0]
    rows = []
    for rho, model, times in zip(STRUCTURED_RATIOS, models, samples, strict=True):
        removed = model.reports["server"].sparsity
        rows.append(TimingRow(
            rho=rho, removed_fraction=removed, median_s=statistics.median(times),
            time_ratio=statistics.median(t / d for t, d in zip(times, dense, strict=True)),
            predicted_ratio_linear_only=1 - removed))
    return StructuredTiming(rows=rows, threads=1, batch=[4, 128], rounds=rounds)
