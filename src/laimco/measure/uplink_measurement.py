"""Measure what quantizing the uplink does to a real model: the "uplink" section of a profile
(laimco.uplink_costs, docs/theory.md §6) and the additivity of pruning and quantization
distortion at the output (§6.3).

The activation crossing split s = 1..L−1 is the output of unit s: the embeddings module for
s = 1, block s−1 (1-based) for s = 2..L−1. A forward hook on that module captures it, or
replaces it by what the server would see (`round_trip` of each input's real-token rows;
padding rows, attention mask 0, are never sent and stay untouched). Per split and width:

- clip: `best_clip` on the calibration rows (all inputs' real tokens together);
- activation MSE, measured and by the Δ²/12 law, per element over the calibration rows, each
  input quantized as its own request (its own scale with granularity "tensor");
- D_q(s, b): mean over calibration inputs of the output distortion D_y of the dense model with
  only that activation quantized (`output_distortion_per_input`, the rules' metric);
- zstd ratio: mean over inputs of zstd-coded over raw payload bytes (codes + scales).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from laimco.measure.metrics import output_distortion_per_input
from laimco.models.families.base import Crossing
from laimco.models.loading import LoadedModel
from laimco.models.pruned import prune_split_model
from laimco.models.split import block_modules, run_full
from laimco.uplink import coding
from laimco.uplink.quantizer import (
    ACTIVATION_BITS,
    Granularity,
    QuantizerSettings,
    best_clip,
    measured_mse,
    predicted_mse,
    quantize,
    round_trip,
)
from laimco.uplink_costs import UplinkCosts, UplinkSection

Batches = Sequence[dict[str, torch.Tensor]]


class UplinkMeasurementError(ValueError):
    """A model or input the uplink measurement cannot use."""


def crossing_module(model: nn.Module, loaded: LoadedModel, split: int) -> nn.Module:
    """The module of `model` (the whole model of `loaded`) whose output crosses split s."""
    if not 1 <= split <= loaded.n_units - 1:
        raise UplinkMeasurementError(f"no activation crosses split {split}: one crosses at "
                                     f"1..{loaded.n_units - 1}")
    if split == 1:
        paths = loaded.adapter.embedding_paths
        if len(paths) != 1:
            raise UplinkMeasurementError(f"{loaded.family} models sum several embedding "
                                         "modules: the uplink measurement needs one")
        return model.get_submodule(paths[0])
    return block_modules(model, loaded.family)[split - 2]


def _hidden_of(output: Any) -> torch.Tensor:
    hidden: torch.Tensor = output[0] if isinstance(output, tuple) else output
    return hidden


class _CrossingHook:
    """A forward hook on the crossing module: captures each input's real-token rows, or
    replaces them by their quantize–dequantize round trip (padding rows untouched)."""

    def __init__(self, settings: QuantizerSettings | None = None) -> None:
        self.settings = settings
        self.mask: torch.Tensor | None = None  # (batch, tokens) bool, set before each forward
        self.captured: list[np.ndarray] = []  # one (n_real_tokens, H) array per input

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        hidden = _hidden_of(output)
        assert self.mask is not None
        if self.settings is None:
            for row, real in zip(hidden, self.mask, strict=True):
                self.captured.append(row[real].detach().float().numpy().copy())
            return None
        changed = hidden.clone()
        for b, real in enumerate(self.mask):
            rows = hidden[b, real].detach().float().numpy()
            changed[b, real] = torch.from_numpy(round_trip(rows, self.settings)).to(hidden.dtype)
        return (changed, *output[1:]) if isinstance(output, tuple) else changed


@contextmanager
def _hooked(modules: Sequence[nn.Module], hooks: Sequence[_CrossingHook]
            ) -> Iterator[None]:
    handles = [m.register_forward_hook(h) for m, h in zip(modules, hooks, strict=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _run(loaded: LoadedModel, batches: Batches, hooks: Sequence[_CrossingHook]
         ) -> torch.Tensor:
    outputs = []
    with torch.no_grad():
        for batch in batches:
            for hook in hooks:
                hook.mask = batch["attention_mask"].bool()
            outputs.append(run_full(loaded, batch))
    return torch.cat(outputs)


def capture_crossings(loaded: LoadedModel, batches: Batches) -> list[list[np.ndarray]]:
    """The real-token rows crossing every split: [s − 1][input] → (n_tokens, H) float32."""
    n = loaded.n_units
    hooks = [_CrossingHook() for _ in range(1, n)]
    modules = [crossing_module(loaded.model, loaded, s) for s in range(1, n)]
    with _hooked(modules, hooks):
        _run(loaded, batches, hooks)
    return [h.captured for h in hooks]


def quantized_outputs(loaded: LoadedModel, batches: Batches, split: int,
                      settings: QuantizerSettings) -> torch.Tensor:
    """The dense model's outputs with only the activation at `split` quantized."""
    hook = _CrossingHook(settings)
    with _hooked([crossing_module(loaded.model, loaded, split)], [hook]):
        return _run(loaded, batches, [hook])


def _per_input_mse(inputs: Sequence[np.ndarray], settings: QuantizerSettings
                   ) -> tuple[float, float]:
    """(measured, Δ²/12 law) MSE per element over all inputs, each input its own request."""
    sizes = np.array([x.size for x in inputs], dtype=np.float64)
    measured = np.array([measured_mse(x, settings) for x in inputs])
    law = np.array([predicted_mse(x, settings) for x in inputs])
    return float(measured @ sizes / sizes.sum()), float(law @ sizes / sizes.sum())


def zstd_ratio(inputs: Sequence[np.ndarray], settings: QuantizerSettings) -> float:
    """Mean over inputs of len(zstd(codes + scales)) / len(codes + scales)."""
    ratios = []
    for x in inputs:
        payload = quantize(x, settings)
        raw = payload.codes.tobytes() + payload.scales.tobytes()
        ratios.append(len(coding.encode(raw, "zstd")) / len(raw))
    return float(np.mean(ratios))


def measure_uplink_costs(loaded: LoadedModel, calibration: Batches, *,
                         bits: Sequence[int] = ACTIVATION_BITS,
                         granularity: Granularity = "token",
                         progress: Progress | None = None) -> UplinkSection:
    """The profile's "uplink" section of `loaded` on calibration batches (module docstring);
    `section.model_dump()` is its JSON form."""
    for b in bits:
        QuantizerSettings(b, granularity)  # checks the width and granularity
    crossings = capture_crossings(loaded, calibration)
    reference = _run(loaded, calibration, [])
    task = (progress.add_task("uplink quantization", total=len(crossings) * len(bits))
            if progress else None)
    splits = []
    for split, inputs in enumerate(crossings, start=1):
        rows = np.concatenate(inputs)
        values: dict[str, list[float]] = {k: [] for k in (
            "clip", "activation_mse", "activation_mse_law", "output_distortion", "zstd_ratio")}
        for b in bits:
            settings = QuantizerSettings(b, granularity, best_clip(rows, b, granularity))
            mse, law = _per_input_mse(inputs, settings) if b != 32 else (0.0, 0.0)
            distortion = 0.0 if b == 32 else float(output_distortion_per_input(
                reference, quantized_outputs(loaded, calibration, split, settings)).mean())
            values["clip"].append(settings.clip)
            values["activation_mse"].append(mse)
            values["activation_mse_law"].append(law)
            values["output_distortion"].append(distortion)
            values["zstd_ratio"].append(zstd_ratio(inputs, settings))
            if progress is not None and task is not None:
                progress.advance(task)
        splits.append({"split": split, "hidden": int(rows.shape[1]), **values})
    return UplinkSection.model_validate({
        "granularity": granularity, "calibration_inputs": int(reference.shape[0]),
        "calibration_tokens": int(sum(x.shape[0] for x in crossings[0])),
        "bits": list(bits), "splits": splits})


def quantize_crossing(crossing: Crossing, settings: QuantizerSettings) -> Crossing:
    """What the server of a split model receives: the crossing's hidden states with each
    input's real-token rows replaced by their round trip (the runtime's path)."""
    hidden = crossing["hidden_states"]
    mask = crossing["attention_mask"].bool()
    changed = hidden.clone()
    for b, real in enumerate(mask):
        changed[b, real] = torch.from_numpy(round_trip(hidden[b, real].numpy(), settings))
    return {**crossing, "hidden_states": changed}


@dataclass(frozen=True)
class AdditivityCase:
    """Output distortion D_y (held-out text) of one split pruned and quantized, each alone and
    together (docs/theory.md §6.3)."""

    split: int
    rule: str
    rho_device: float
    rho_server: float
    bits: int
    pruned: float  # D_y, pruned only
    quantized: float  # D_y, dense with the activation quantized
    both: float  # D_y, pruned and quantized
    profile_quantized: float  # D_q(s, b) of the profile (calibration text)

    @property
    def relative_error(self) -> float:
        """both / (pruned + quantized) − 1: how far the sum is from the joint distortion."""
        return self.both / (self.pruned + self.quantized) - 1.0

    @property
    def quantized_prediction_error(self) -> float:
        """profile D_q over held-out D_q − 1."""
        return self.profile_quantized / self.quantized - 1.0


@dataclass(frozen=True)
class AdditivityResult:
    """Every case measured on `n_inputs` held-out inputs."""

    cases: tuple[AdditivityCase, ...]
    n_inputs: int

    @property
    def max_relative_error(self) -> float:
        return max(abs(c.relative_error) for c in self.cases)


def _split_outputs(device: nn.Module, server: nn.Module, batches: Batches,
                   settings: Sequence[QuantizerSettings | None]) -> list[torch.Tensor]:
    """Outputs of a split model for each entry of `settings` (None: nothing quantized)."""
    outputs: list[list[torch.Tensor]] = [[] for _ in settings]
    with torch.no_grad():
        for batch in batches:
            crossing = device(batch)
            for i, s in enumerate(settings):
                outputs[i].append(server(crossing if s is None
                                         else quantize_crossing(crossing, s)))
    return [torch.cat(o) for o in outputs]


def measure_additivity(loaded: LoadedModel, costs: UplinkCosts, heldout: Batches, split: int,
                       rules: Sequence[str], ratios: Sequence[tuple[float, float]],
                       bits: Sequence[int], *, calibration: Batches | None = None,
                       progress: Progress | None = None) -> AdditivityResult:
    """D_y of the split model pruned at each (ρ_d, ρ_s) by each rule, quantized at each width
    with the profile's clip, alone and together, on held-out batches (Wanda needs
    `calibration`)."""
    reference = _run(loaded, heldout, [])
    settings = [costs.settings(split, b) for b in bits]
    task = (progress.add_task("additivity", total=1 + len(rules) * len(ratios))
            if progress else None)

    def distortion(outputs: torch.Tensor) -> float:
        return float(output_distortion_per_input(reference, outputs).mean())

    def advance() -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    dense = prune_split_model(loaded, split, 0.0, 0.0)
    quantized = [distortion(y) for y in _split_outputs(dense.device, dense.server, heldout,
                                                       settings)]
    advance()
    cases = []
    for rule in rules:
        for rho_d, rho_s in ratios:
            pruned = prune_split_model(loaded, split, rho_d, rho_s, rule,  # type: ignore[arg-type]
                                       calibration=calibration)
            outputs = _split_outputs(pruned.device, pruned.server, heldout, [None, *settings])
            alone = distortion(outputs[0])
            for i, b in enumerate(bits):
                cases.append(AdditivityCase(
                    split=split, rule=rule, rho_device=rho_d, rho_server=rho_s, bits=b,
                    pruned=alone, quantized=quantized[i], both=distortion(outputs[1 + i]),
                    profile_quantized=float(costs.distortion(b)[split])))
            advance()
    return AdditivityResult(cases=tuple(cases), n_inputs=int(reference.shape[0]))
