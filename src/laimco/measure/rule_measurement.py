"""Measure what each pruning rule costs on a real model: the "rules" section of a profile
(laimco.rule_costs, docs/theory.md §5).

Per rule and per block (unit with prunable weights):

- distortion curve D_u(ρ) on 101 levels, computed from the weights exactly as the rule removes
  them (eq. 5.2): magnitude per matrix, Σ of the round(ρ·n) smallest w² of each matrix; Wanda,
  Σ of the removed (w_ij·‖x_j‖)² per output row (the activation-weighted error Wanda ranks by);
  structured, Σ of the removed heads' and neurons' weight energy (the units' importance);
- sensitivity k_u: the block alone pruned at ρ ∈ CALIBRATION_RATIOS on calibration text, the
  geometric mean of measured output distortion over N_u·δ_u(ρ) (eq. 5.3);
- execution intercept b and slope a: the server part of split 1 (every block) pruned at
  ρ ∈ TIMING_RATIOS and timed round-robin against the dense part on one thread, fitted as
  t/t_dense = B − A·ρ and rescaled to the prunable FLOPs (eq. 5.4).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from laimco.measure.metrics import output_distortion_per_input
from laimco.models.loading import LoadedModel
from laimco.models.pruned import calibration_norms, prune_split_model
from laimco.models.split import block_modules, run_full
from laimco.pruning import (
    InputNormCollector,
    apply_masks,
    conv1d_names,
    head_importance,
    linear_weights,
    magnitude_masks,
    neuron_importance,
    prune_structured,
    removal_counts,
    wanda_masks,
)
from laimco.rule_costs import slope_table_from_curve
from laimco.theory.distortion import EmpiricalLaw

MEASURED_RULES = ("magnitude", "wanda", "structured", "magnitude-csr")
CURVE_LEVELS = np.linspace(0.0, 1.0, 101)
CALIBRATION_RATIOS = (0.1, 0.3, 0.5)
TIMING_RATIOS = (0.0, 0.25, 0.5, 0.75, 0.9)
STORAGE = {"magnitude": "dense", "wanda": "dense", "structured": "shrunk",
           "magnitude-csr": "csr"}
# rules that remove the same weights as another and differ only in how they execute
SAME_MASKS = {"magnitude-csr": "magnitude"}
# rules that run even an unpruned part on another kernel (so the time at ρ = 0 is fitted too)
CHANGES_KERNEL = frozenset({"magnitude-csr"})


def _sorted_cumulative(energy: torch.Tensor) -> np.ndarray:
    """Cumulative sums of the sorted last axis, with a leading 0 (float64)."""
    ordered = torch.sort(energy.to(torch.float64), dim=-1).values
    zeros = torch.zeros((*ordered.shape[:-1], 1), dtype=torch.float64)
    return torch.cat([zeros, torch.cumsum(ordered, dim=-1)], dim=-1).numpy()


def block_distortion_curve(block: torch.nn.Module, family: str, rule: str,
                           norms: dict[str, torch.Tensor], levels: np.ndarray) -> np.ndarray:
    """D(ρ) of pruning one block by `rule` at each level (see the module docstring)."""
    rule = SAME_MASKS.get(rule, rule)
    weights = linear_weights(block)
    curve = np.zeros(levels.size)
    with torch.no_grad():
        if rule == "structured":
            heads = torch.sort(head_importance(block, family)).values  # type: ignore[arg-type]
            neurons = torch.sort(neuron_importance(block, family)).values  # type: ignore[arg-type]
            head_sum = np.concatenate([[0.0], torch.cumsum(heads, 0).numpy()])
            neuron_sum = np.concatenate([[0.0], torch.cumsum(neurons, 0).numpy()])
            for i, rho in enumerate(levels):
                h, n = removal_counts(block, family, float(min(rho, 1.0)))  # type: ignore[arg-type]
                curve[i] = head_sum[h] + neuron_sum[n]
            return curve
        transposed = conv1d_names(block)
        for name, w in weights.items():
            matrix = w.detach().to(torch.float64)
            if rule == "magnitude":
                cumulative = _sorted_cumulative((matrix * matrix).flatten())
                counts = np.round(levels * matrix.numel()).astype(np.int64)
                curve += cumulative[counts]
            elif rule == "wanda":
                rows = matrix.T if name in transposed else matrix  # (out, in)
                x = norms[name].to(torch.float64)
                cumulative = _sorted_cumulative((rows * x[None, :]) ** 2)
                counts = np.round(levels * rows.shape[1]).astype(np.int64)
                curve += cumulative[:, counts].sum(axis=0)
            else:
                raise ValueError(f"no distortion curve for rule {rule!r}")
    return curve


def _prune_block(block: torch.nn.Module, family: str, rule: str, rho: float,
                 norms: dict[str, torch.Tensor]) -> None:
    weights = linear_weights(block)
    if SAME_MASKS.get(rule, rule) == "magnitude":
        apply_masks(block, magnitude_masks(weights, rho))
    elif rule == "wanda":
        apply_masks(block, wanda_masks(weights, norms, rho, transposed=conv1d_names(block)))
    else:
        prune_structured(block, family, rho)  # type: ignore[arg-type]


def _block_norms(loaded: LoadedModel, calibration: Sequence[dict[str, torch.Tensor]]
                 ) -> list[dict[str, torch.Tensor]]:
    """‖x_j‖₂ of every linear input of every block over calibration tokens (padding excluded),
    keyed by module path inside the block."""
    blocks = block_modules(loaded.model, loaded.family)
    collectors = [InputNormCollector(b) for b in blocks]
    for c in collectors:
        c.__enter__()
    try:
        with torch.no_grad():
            for batch in calibration:
                for c in collectors:
                    c.set_token_mask(batch["attention_mask"].bool())
                run_full(loaded, batch)
    finally:
        for c in collectors:
            c.__exit__(None, None, None)
    return [c.norms() for c in collectors]


def _outputs(loaded: LoadedModel, batches: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([run_full(loaded, b) for b in batches])


def _execution_slope(loaded: LoadedModel, rule: str, calibration: Sequence[dict[str, Any]],
                     rounds: int) -> dict[str, Any]:
    """Relative forward time of the pruned server part of split 1 (every block) against the
    dense one, round-robin on one thread; the median over rounds of each ratio, and the least
    squares line t/t_dense = B − A·ρ through them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hidden = torch.randn(1, 128, int(loaded.config.hidden_size),
                             generator=torch.Generator().manual_seed(0))
        crossing = {"hidden_states": hidden,
                    "attention_mask": torch.ones(1, 128, dtype=torch.long)}
        norms = None
        if rule == "wanda":
            dense = prune_split_model(loaded, 1, 0.0, 0.0)
            norms = calibration_norms([None, dense.server.model], calibration, dense.device,
                                      dense.server)
        dense_part = prune_split_model(loaded, 1, 0.0, 0.0).server
        parts = [dense_part] + [prune_split_model(loaded, 1, 0.0, rho, rule,  # type: ignore[arg-type]
                                                  input_norms=norms).server
                                for rho in TIMING_RATIOS]
        samples: list[list[float]] = [[] for _ in parts]
        with torch.no_grad():
            for round_ in range(rounds + 1):  # round 0 warms up
                for part, times in zip(parts, samples, strict=True):
                    started = time.perf_counter()
                    part(crossing)
                    if round_:
                        times.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    ratios = [statistics.median(t / d for t, d in zip(times, samples[0], strict=True))
              for times in samples[1:]]
    rho = np.asarray(TIMING_RATIOS)
    significant = True
    if rule in CHANGES_KERNEL:
        slope, intercept = np.polyfit(rho, np.asarray(ratios), 1)
        drop = -float(slope)
    else:  # at ρ = 0 the rule removes nothing: the part is the dense one, t/t_dense = 1
        per_round = (np.asarray(samples[1:]) / np.asarray(samples[0])).T  # (rounds, ratios)
        drops = (per_round - 1.0) @ -rho / float(rho @ rho)  # the slope of each round
        drop = float(np.mean(drops))
        se = float(np.std(drops, ddof=1)) / np.sqrt(drops.size) if drops.size > 1 else 0.0
        # a drop within 3 standard errors of 0 is timing noise, not a saving (eq. 5.4)
        significant = bool(abs(drop) > 3 * se)
        drop = drop if significant else 0.0
        intercept = 1.0
    return {"ratios": list(TIMING_RATIOS), "relative_time": ratios,
            "relative_time_slope": drop, "relative_time_intercept": float(intercept),
            "slope_significant": significant, "rounds": rounds, "threads": 1, "tokens": 128}


def measure_rule_costs(loaded: LoadedModel, units: Sequence[dict[str, Any]],
                       calibration: Sequence[dict[str, torch.Tensor]],
                       rules: Sequence[str] = MEASURED_RULES, *, timing_rounds: int = 7,
                       progress: Progress | None = None) -> dict[str, Any]:
    """The profile's "rules" section for `loaded`, whose profile units are `units` (dicts
    with name, n_prunable, flops_prunable, flops_fixed; blocks are units 1..n_layers)."""
    for rule in rules:
        if rule not in MEASURED_RULES:
            raise ValueError(f"no measurement for rule {rule!r}: choose among "
                             f"{', '.join(MEASURED_RULES)}")
    family = loaded.family
    blocks = block_modules(loaded.model, family)
    block_units = [i for i, u in enumerate(units) if u["n_prunable"] > 0]
    if len(block_units) != len(blocks):
        raise ValueError(f"the profile has {len(block_units)} units with prunable weights but "
                         f"the model has {len(blocks)} blocks")
    norms = _block_norms(loaded, calibration)
    reference = _outputs(loaded, calibration)
    total = len(rules) * (len(blocks) * (1 + len(CALIBRATION_RATIOS)) + 1)
    task = progress.add_task("pruning-rule costs", total=total) if progress else None

    def advance() -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    section: dict[str, Any] = {}
    measured_k: dict[tuple[str, int], list[float]] = {}
    for rule in rules:
        timing = _execution_slope(loaded, rule, calibration, timing_rounds)
        advance()
        server_units = [units[i] for i in range(2, len(units))]
        f_total = sum(u["flops_prunable"] + u["flops_fixed"] for u in server_units)
        f_prunable = sum(u["flops_prunable"] for u in server_units)
        # the part's line B − A·ρ over its FLOPs F_total, as the prunable FLOPs' b − a·ρ
        scale = f_total / f_prunable
        intercept = max(1.0 + (timing["relative_time_intercept"] - 1.0) * scale, 0.0)
        slope = min(max(timing["relative_time_slope"] * scale, 0.0),
                    intercept + scale - 1.0)  # compute at ρ = 1 stays ≥ 0
        curves: list[dict[str, Any] | None] = [None] * len(units)
        raw_curves, raw_k = [], []
        for block_index, unit_index in enumerate(block_units):
            n_weights = float(units[unit_index]["n_prunable"])
            d = block_distortion_curve(blocks[block_index], family, rule, norms[block_index],
                                       CURVE_LEVELS)
            table = slope_table_from_curve(CURVE_LEVELS, d, n_weights)
            advance()
            law = EmpiricalLaw(np.sqrt(np.asarray(table)))
            masks_of = (SAME_MASKS.get(rule, rule), block_index)
            ratios_k: list[float] = list(measured_k.get(masks_of, []))
            for rho in CALIBRATION_RATIOS if masks_of not in measured_k else ():
                clone = copy.copy(loaded)
                clone.model = copy.deepcopy(loaded.model)
                _prune_block(block_modules(clone.model, family)[block_index], family, rule, rho,
                             norms[block_index])
                measured = float(output_distortion_per_input(
                    reference, _outputs(clone, calibration)).mean())
                predicted = n_weights * float(law.delta(rho))
                if predicted > 0 and measured > 0:
                    ratios_k.append(measured / predicted)
                advance()
            measured_k[masks_of] = ratios_k  # same masks, same outputs: measured once
            k = math.exp(statistics.fmean(math.log(r) for r in ratios_k)) if ratios_k else 0.0
            curves[unit_index] = {"slope_per_weight": table, "sensitivity": k,
                                  "execution_slope": slope, "execution_intercept": intercept}
            raw_curves.append([float(v) for v in d])
            raw_k.append(ratios_k)
        section[rule] = {"storage": STORAGE[rule], "units": curves, "measured": {
            "curve_levels": [float(v) for v in CURVE_LEVELS], "block_distortion": raw_curves,
            "calibration_ratios": list(CALIBRATION_RATIOS),
            "output_over_predicted_by_block": raw_k, "timing": timing,
            "calibration_inputs": int(reference.shape[0])}}
    return section
