"""Time a real model's parts and blocks on one thread: the profile's "execution" section and
each pruning rule's execution line (docs/theory.md §5, eq. 5.4).

Times are the CPU time of the calling thread (`time.thread_time`) spent inside a part or a block
(forward hooks), one torch thread, round-robin over the timed variants so that drifting load
hits them all alike; the median over rounds, round 0 warming up.

- `measure_execution_times`: the dense device and server part of every split and every block
  inside the whole model (`ExecutionSection`), which the execution lines scale;
- `execution_lines`: every block of the whole model pruned by a rule at ρ ∈ {0} ∪ TIMING_RATIOS
  relative to the same block dense, and each block's fitted line b − a·ρ.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from laimco.models.loading import LoadedModel
from laimco.models.pruned import prune_split_model
from laimco.models.split import Crossing, block_modules
from laimco.profile_schema import UnitEntry
from laimco.rule_costs import ExecutionSection

TIMING_RATIOS = (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9)
TIMING_TOKENS = 128
# rules that run even an unpruned part on another kernel (so the time at ρ = 0 is fitted too)
CHANGES_KERNEL = frozenset({"magnitude-csr"})


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


def measure_execution_times(loaded: LoadedModel, units: Sequence[UnitEntry],
                            rounds: int = 15) -> ExecutionSection:
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
                for part_times in (*device, *server):
                    part_times.clear()
                blocks.clear()
        return device, server, blocks

    device, server, blocks = _on_one_thread(run)
    block_median = np.median(np.asarray(blocks), axis=0)
    unit_time = [0.0] * n
    for block_index, unit_index in enumerate(block_unit_indices(units)):
        unit_time[unit_index] = float(block_median[block_index])
    return ExecutionSection(
        clock="thread", threads=1, tokens=TIMING_TOKENS, rounds=rounds, unit_time_s=unit_time,
        device_part_time_s=[float(statistics.median(t)) for t in device],
        server_part_time_s=[float(statistics.median(t)) for t in server])


def block_unit_indices(units: Sequence[UnitEntry]) -> list[int]:
    """Profile unit index of each block: the units with prunable weights, in order."""
    return [i for i, u in enumerate(units) if u.n_prunable > 0]


@dataclass(frozen=True)
class ExecutionLines:
    """One rule's timed blocks and fitted lines (eq. 5.4), as written under the rule's
    "measured"."timing" in the profile (`json_data`)."""

    ratios: list[float]
    relative_time_by_block: list[list[float]]  # [block][ratio]: time over the dense block's
    slope_by_block: list[float]  # a_u
    intercept_by_block: list[float]  # b_u
    slope_significant: bool  # False: no saving beyond timing noise, every line a = 0, b = 1
    rounds: int
    threads: int
    tokens: int
    clock: Literal["thread"]

    def json_data(self) -> dict[str, object]:
        """The record's JSON object (a dict on purpose: it is the file's form)."""
        return asdict(self)


def execution_lines(loaded: LoadedModel, rule: str, calibration: Sequence[Crossing],
                    rounds: int) -> ExecutionLines:
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
    return ExecutionLines(ratios=list(ratios), relative_time_by_block=relative.T.tolist(),
                          slope_by_block=slopes.tolist(), intercept_by_block=intercepts.tolist(),
                          slope_significant=significant, rounds=rounds, threads=1,
                          tokens=TIMING_TOKENS, clock="thread")
