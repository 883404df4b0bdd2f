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
  relative to the dense block, fitted as b − a·ρ (eq. 5.4).

`measure_execution_times` gives the profile's "execution" section: the dense time of every
block and of the device and server part of every split, which those lines scale.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from laimco.measure.metrics import output_distortion_per_input
from laimco.models.loading import LoadedModel
from laimco.models.pruned import prune_split_model
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
TIMING_RATIOS = (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9)
TIMING_TOKENS = 128
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


@dataclass(frozen=True)
class RuleCostMeasurement:
    """The profile's "rules" and "execution" sections (JSON-ready)."""

    rules: dict[str, Any]
    execution: dict[str, Any]


class _UnitClock:
    """CPU time of the calling thread spent inside each of some modules (forward hooks)."""

    def __init__(self, modules: Sequence[torch.nn.Module]) -> None:
        self.elapsed_s = [0.0] * len(modules)
        self._started = [0.0] * len(modules)
        for i, module in enumerate(modules):
            module.register_forward_pre_hook(self._start(i))
            module.register_forward_hook(self._stop(i))

    def _start(self, i: int) -> Any:
        def hook(*_: Any) -> None:
            self._started[i] = time.thread_time()
        return hook

    def _stop(self, i: int) -> Any:
        def hook(*_: Any) -> None:
            self.elapsed_s[i] += time.thread_time() - self._started[i]
        return hook

    def take(self) -> list[float]:
        out, self.elapsed_s = self.elapsed_s, [0.0] * len(self.elapsed_s)
        return out


def _timing_inputs(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    """One calibration sentence padded to TIMING_TOKENS (padding is computed like any token);
    fixed random token ids for a model without a tokenizer."""
    from laimco.data import calibration_sentences

    if loaded.tokenizer is None:
        ids = torch.randint(0, int(loaded.config.vocab_size), (1, TIMING_TOKENS),
                            generator=torch.Generator().manual_seed(0))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    tokens = loaded.tokenizer(calibration_sentences()[:1], padding="max_length",
                              truncation=True, max_length=TIMING_TOKENS, return_tensors="pt")
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


def _on_one_thread(run: Any) -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return run()
    finally:
        torch.set_num_threads(threads)


def measure_execution_times(loaded: LoadedModel, units: Sequence[dict[str, Any]],
                            rounds: int = 15) -> dict[str, Any]:
    """The profile's "execution" section (eq. 5.4): the dense device and server part of every
    split and every block inside the whole model, timed round-robin on one thread by the
    thread's CPU time; the median over rounds (round 0 warms up)."""
    inputs = _timing_inputs(loaded)
    n = loaded.n_units
    parts = [prune_split_model(loaded, s, 0.0, 0.0) for s in range(n + 1)]
    whole = parts[n].device
    clock = _UnitClock(block_modules(whole.model, loaded.family))  # type: ignore[arg-type]

    def run() -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
        crossings = [p.device(inputs) for p in parts]
        device: list[list[float]] = [[] for _ in parts]
        server: list[list[float]] = [[] for _ in parts]
        blocks: list[list[float]] = []
        for round_ in range(rounds + 1):
            for s, part in enumerate(parts):
                for side, times, arg in (("device", device, inputs),
                                         ("server", server, crossings[s])):
                    module = part.device if side == "device" else part.server
                    if module.part is None:  # an empty part takes no time
                        times[s].append(0.0)
                        continue
                    started = time.thread_time()
                    module(arg)
                    times[s].append(time.thread_time() - started)
                    if module is whole:
                        blocks.append(clock.take())
            if not round_:
                for times in (*device, *server):
                    times.clear()
                blocks.clear()
        return device, server, blocks

    device, server, blocks = _on_one_thread(run)
    block_median = np.median(np.asarray(blocks), axis=0)
    unit_time = [0.0] * n
    for block_index, unit_index in enumerate(_block_units(units)):
        unit_time[unit_index] = float(block_median[block_index])
    return {"clock": "thread", "threads": 1, "tokens": TIMING_TOKENS, "rounds": rounds,
            "unit_time_s": unit_time,
            "device_part_time_s": [float(statistics.median(t)) for t in device],
            "server_part_time_s": [float(statistics.median(t)) for t in server]}


def _block_units(units: Sequence[dict[str, Any]]) -> list[int]:
    """Profile unit index of each block: the units with prunable weights, in order."""
    return [i for i, u in enumerate(units) if u["n_prunable"] > 0]


def _execution_lines(loaded: LoadedModel, rule: str, calibration: Sequence[dict[str, Any]],
                     rounds: int) -> dict[str, Any]:
    """Time of every block of the whole model pruned by `rule` at ρ ∈ {0} ∪ TIMING_RATIOS
    relative to the same block dense (thread CPU time inside the block, one thread,
    round-robin, median over rounds), and each block's least-squares line b − a·ρ (eq. 5.4):
    over ρ > 0 for rules that keep the kernel (at ρ = 0 they run the dense part), over every ρ
    for rules that change it (CSR). A mean slope through (0, 1) within 3 standard errors of 0
    (over rounds) is timing noise and reads as a = 0, b = 1."""
    inputs = _timing_inputs(loaded)
    n = loaded.n_units
    batches = list(calibration) if rule == "wanda" else None
    ratios = (0.0, *TIMING_RATIOS)
    dense = prune_split_model(loaded, n, 0.0, 0.0).device  # the reference: dense kernels
    parts = [dense] + [prune_split_model(loaded, n, rho, 0.0, rule,  # type: ignore[arg-type]
                                         calibration=batches).device for rho in ratios]
    clocks = [_UnitClock(block_modules(p.model, loaded.family))  # type: ignore[arg-type]
              for p in parts]

    def run() -> np.ndarray:
        samples = []
        for round_ in range(rounds + 1):
            row = []
            for part, clock in zip(parts, clocks, strict=True):
                part(inputs)
                row.append(clock.take())
            if round_:
                samples.append(row)
        return np.asarray(samples)  # (rounds, 1 + ratios, blocks)

    samples = _on_one_thread(run)
    per_round = samples[:, 1:, :] / samples[:, :1, :]  # (rounds, ratios, blocks)
    relative = np.median(per_round, axis=0)  # (ratios, blocks)
    rho = np.asarray(ratios)
    significant = True
    pruned = rho > 0
    # the slope of each round, blocks pooled, through (0, 1): is there any saving at all?
    drops = (1.0 - per_round.mean(axis=2)) @ rho / float(rho @ rho)
    se = float(np.std(drops, ddof=1)) / np.sqrt(drops.size) if drops.size > 1 else 0.0
    significant = rule in CHANGES_KERNEL or bool(abs(float(np.mean(drops))) > 3 * se)
    if significant:
        # a line per block, intercept free: a kernel-changing rule runs its own kernel even at
        # ρ = 0 (every point is fitted); any other rule is the dense part at ρ = 0 exactly, and
        # its line is fitted where it prunes (ρ > 0), so b − 1 is the cost of running pruned
        # shapes at all
        points = np.ones_like(pruned) if rule in CHANGES_KERNEL else pruned
        fits = [np.polyfit(rho[points], relative[points, b], 1)
                for b in range(relative.shape[1])]
        slopes = np.array([-f[0] for f in fits])
        intercepts = np.array([f[1] for f in fits])
    else:  # within 3 standard errors of no saving: timing noise (eq. 5.4)
        slopes, intercepts = np.zeros(relative.shape[1]), np.ones(relative.shape[1])
    intercepts = np.maximum(intercepts, 0.0)
    slopes = np.clip(slopes, 0.0, intercepts)  # the time at ρ = 1 stays ≥ 0
    return {"ratios": list(ratios),
            "relative_time_by_block": relative.T.tolist(),
            "slope_by_block": slopes.tolist(), "intercept_by_block": intercepts.tolist(),
            "slope_significant": significant, "rounds": rounds, "threads": 1,
            "tokens": TIMING_TOKENS, "clock": "thread"}


def measure_rule_costs(loaded: LoadedModel, units: Sequence[dict[str, Any]],
                       calibration: Sequence[dict[str, torch.Tensor]],
                       rules: Sequence[str] = MEASURED_RULES, *, timing_rounds: int = 7,
                       progress: Progress | None = None) -> RuleCostMeasurement:
    """The profile's "rules" section for `loaded`, whose profile units are `units` (dicts
    with name, n_prunable, flops_prunable, flops_fixed; blocks are units 1..n_layers): the
    "rules" and the "execution" sections."""
    for rule in rules:
        if rule not in MEASURED_RULES:
            raise ValueError(f"no measurement for rule {rule!r}: choose among "
                             f"{', '.join(MEASURED_RULES)}")
    family = loaded.family
    blocks = block_modules(loaded.model, family)
    block_units = _block_units(units)
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

    section: dict[str, Any] = {}
    measured_k: dict[tuple[str, int], list[float]] = {}
    for rule in rules:
        timing = _execution_lines(loaded, rule, calibration, timing_rounds)
        advance()
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
            curves[unit_index] = {
                "slope_per_weight": table, "sensitivity": k,
                "execution_slope": float(timing["slope_by_block"][block_index]),
                "execution_intercept": float(timing["intercept_by_block"][block_index])}
            raw_curves.append([float(v) for v in d])
            raw_k.append(ratios_k)
        section[rule] = {"storage": STORAGE[rule], "units": curves, "measured": {
            "curve_levels": [float(v) for v in CURVE_LEVELS], "block_distortion": raw_curves,
            "calibration_ratios": list(CALIBRATION_RATIOS),
            "output_over_predicted_by_block": raw_k, "timing": timing,
            "calibration_inputs": int(reference.shape[0])}}
    execution = measure_execution_times(loaded, units, 3 * timing_rounds)
    advance()
    return RuleCostMeasurement(rules=section, execution=execution)


def retime_rule_costs(loaded: LoadedModel, profile: dict[str, Any],
                      calibration: Sequence[dict[str, torch.Tensor]], *,
                      timing_rounds: int = 15) -> None:
    """Measure again, in place, only what depends on the machine: every rule's execution lines
    and the "execution" section of a profile whose "rules" were measured on `loaded` (the
    distortion curves and sensitivities do not change with the CPU)."""
    units = profile["units"]
    blocks = _block_units(units)
    for rule, section in profile["rules"].items():
        timing = _execution_lines(loaded, rule, calibration, timing_rounds)
        for block_index, unit_index in enumerate(blocks):
            curve = section["units"][unit_index]
            curve["execution_slope"] = float(timing["slope_by_block"][block_index])
            curve["execution_intercept"] = float(timing["intercept_by_block"][block_index])
        section["measured"]["timing"] = timing
    profile["execution"] = measure_execution_times(loaded, units, 3 * timing_rounds)
