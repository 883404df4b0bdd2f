"""Measure what each pruning rule costs on a real model: the "rules" section of a profile
(laimco.rule_costs, docs/theory.md §5).

Per rule and per block (unit with prunable weights):

- distortion curve D_u(ρ) on 101 levels, computed from the weights exactly as the rule removes
  them (eq. 5.2): magnitude per matrix, Σ of the round(ρ·n) smallest w² of each matrix; Wanda,
  Σ of the removed (w_ij·‖x_j‖)² per output row (the activation-weighted error Wanda ranks by);
  structured, Σ of the removed heads' and neurons' weight energy (the units' importance);
- sensitivity k_u: the block alone pruned at ρ ∈ CALIBRATION_RATIOS on calibration text, the
  geometric mean of measured output distortion over N_u·δ_u(ρ) (eq. 5.3);
- execution intercept b and slope a: every block of the whole model pruned at
  ρ ∈ TIMING_RATIOS, its time (thread CPU time inside the block, one thread, round-robin)
  relative to the dense block, fitted as b − a·ρ (eq. 5.4; `laimco.measure.execution_timing`).

The "execution" section, the dense time of every block and of the device and server part of
every split which those lines scale, is timed by `laimco.measure.execution_timing` too.

Units come in as the profile's typed `UnitEntry` objects; the sections go out as the
`laimco.rule_costs` models (`RuleSection`, `ExecutionSection`) that validate them in a profile.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import Progress

from laimco.measure.execution_timing import (
    block_unit_indices,
    execution_lines,
    measure_execution_times,
)
from laimco.measure.metrics import output_distortion_per_input
from laimco.models.loading import LoadedModel
from laimco.models.split import block_modules, run_full
from laimco.profile_schema import ProfileFile, UnitEntry
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
from laimco.rule_costs import (
    ExecutionSection,
    RuleSection,
    Storage,
    UnitRuleCurve,
    slope_table_from_curve,
)
from laimco.theory.distortion import EmpiricalLaw

MEASURED_RULES = ("magnitude", "wanda", "structured", "magnitude-csr")
CURVE_LEVELS = np.linspace(0.0, 1.0, 101)
CALIBRATION_RATIOS = (0.1, 0.3, 0.5)
STORAGE: dict[str, Storage] = {"magnitude": "dense", "wanda": "dense", "structured": "shrunk",
                               "magnitude-csr": "csr"}
# rules that remove the same weights as another and differ only in how they execute
SAME_MASKS = {"magnitude-csr": "magnitude"}


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
            heads = torch.sort(head_importance(block, family)).values
            neurons = torch.sort(neuron_importance(block, family)).values
            head_sum = np.concatenate([[0.0], torch.cumsum(heads, 0).numpy()])
            neuron_sum = np.concatenate([[0.0], torch.cumsum(neurons, 0).numpy()])
            for i, rho in enumerate(levels):
                h, n = removal_counts(block, family, float(min(rho, 1.0)))
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
        prune_structured(block, family, rho)


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


@dataclass(frozen=True)
class RuleCostMeasurement:
    """The profile's "rules" section (one `RuleSection` per rule name) and its "execution"
    section."""

    rules: dict[str, RuleSection]
    execution: ExecutionSection

    def added_to(self, profile: ProfileFile) -> ProfileFile:
        """`profile` with these two sections (in the JSON form `ProfileFile` keeps them in)."""
        return profile.model_copy(update={
            "rules": {name: section.model_dump() for name, section in self.rules.items()},
            "execution": self.execution.model_dump()})


def measure_rule_costs(loaded: LoadedModel, units: Sequence[UnitEntry],
                       calibration: Sequence[dict[str, torch.Tensor]],
                       rules: Sequence[str] = MEASURED_RULES, *, timing_rounds: int = 7,
                       progress: Progress | None = None) -> RuleCostMeasurement:
    """The profile's "rules" and "execution" sections for `loaded`, whose profile units are
    `units` (the blocks are the units with prunable weights)."""
    for rule in rules:
        if rule not in MEASURED_RULES:
            raise ValueError(f"no measurement for rule {rule!r}: choose among "
                             f"{', '.join(MEASURED_RULES)}")
    family = loaded.family
    blocks = block_modules(loaded.model, family)
    block_units = block_unit_indices(units)
    if len(block_units) != len(blocks):
        raise ValueError(f"the profile has {len(block_units)} units with prunable weights but "
                         f"the model has {len(blocks)} blocks")
    norms = _block_norms(loaded, calibration)
    reference = _outputs(loaded, calibration)
    total = len(rules) * (len(blocks) * (1 + len(CALIBRATION_RATIOS)) + 1) + 1
    task = progress.add_task("pruning-rule costs", total=total) if progress else None

    def advance() -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    section: dict[str, RuleSection] = {}
    measured_k: dict[tuple[str, int], list[float]] = {}
    for rule in rules:
        timing = execution_lines(loaded, rule, calibration, timing_rounds)
        advance()
        curves: list[UnitRuleCurve | None] = [None] * len(units)
        raw_curves, raw_k = [], []
        for block_index, unit_index in enumerate(block_units):
            n_weights = float(units[unit_index].n_prunable)
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
            curves[unit_index] = UnitRuleCurve(
                slope_per_weight=table, sensitivity=k,
                execution_slope=float(timing.slope_by_block[block_index]),
                execution_intercept=float(timing.intercept_by_block[block_index]))
            raw_curves.append([float(v) for v in d])
            raw_k.append(ratios_k)
        section[rule] = RuleSection(storage=STORAGE[rule], units=curves, measured={
            "curve_levels": [float(v) for v in CURVE_LEVELS], "block_distortion": raw_curves,
            "calibration_ratios": list(CALIBRATION_RATIOS),
            "output_over_predicted_by_block": raw_k, "timing": timing.json_data(),
            "calibration_inputs": int(reference.shape[0])})
    execution = measure_execution_times(loaded, units, 3 * timing_rounds)
    advance()
    return RuleCostMeasurement(rules=section, execution=execution)


def retime_rule_costs(loaded: LoadedModel, profile: ProfileFile,
                      calibration: Sequence[dict[str, torch.Tensor]], *,
                      timing_rounds: int = 15) -> ProfileFile:
    """`profile`, whose "rules" were measured on `loaded`, with only what depends on the
    machine measured again: every rule's execution lines and the "execution" section (the
    distortion curves and sensitivities do not change with the CPU)."""
    if profile.rules is None:
        raise ValueError(f"profile {profile.name!r} has no \"rules\" section to time again: "
                         "measure the rules first (laimco analyze --rules)")
    blocks = block_unit_indices(profile.units)
    rules: dict[str, RuleSection] = {}
    for rule, raw in profile.rules.items():
        section = RuleSection.model_validate(raw)
        timing = execution_lines(loaded, rule, calibration, timing_rounds)
        curves = list(section.units)
        for block_index, unit_index in enumerate(blocks):
            curve = curves[unit_index]
            if curve is None:
                raise ValueError(f"profile key rules.{rule}.units[{unit_index}] is null but the "
                                 "unit has prunable weights: measure the rules again")
            curves[unit_index] = curve.model_copy(update={
                "execution_slope": float(timing.slope_by_block[block_index]),
                "execution_intercept": float(timing.intercept_by_block[block_index])})
        rules[rule] = section.model_copy(update={
            "units": curves, "measured": {**section.measured, "timing": timing.json_data()}})
    execution = measure_execution_times(loaded, profile.units, 3 * timing_rounds)
    return RuleCostMeasurement(rules=rules, execution=execution).added_to(profile)
