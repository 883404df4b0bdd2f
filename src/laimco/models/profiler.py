"""Profile a model for split inference (design.md §3): per unit, the weights pruning may remove, the
work each side computes, and the bits that cross the cut. The counting rules are in
docs/profiling.md; the JSON schema is the one `laimco.profile` reads.

* parameter counts: the unit's real `nn.Module` parameters (`laimco.models.units`);
* matmul FLOPs: measured by `torch.utils.flop_counter.FlopCounterMode` over one forward pass
  with eager attention, per module, and checked against 2·B·T·n_prunable (linear layers) and
  2·2·B·T²·heads·head_dim (attention QKᵀ and A·V);
* element-wise FLOPs (norms, softmax, activations, biases, residuals, rotary, pooling):
  analytic, with the per-element constants of `laimco.models.flop_constants`; what differs
  between families (inputs, embeddings, head, norms) is the family adapter's
  (`laimco.models.families`);
* bits: element counts of the tensors of that forward pass times their bit widths;
* weight statistics: `laimco.models.weight_stats` on the prunable weights, or, for an
  architecture-only profile, the Gaussian of the config's `initializer_range`.

Three entry points, each returning the validated `laimco.profile_schema.ProfileFile`:
`profile_model` (a loaded model, or a meta-device skeleton with `stats=False`),
`profile_from_config` (architecture only, no weights in memory) and `profile_safetensors_dir`
(architecture on the meta device + statistics streamed from the checkpoint files, without
loading the model). `save_profile` writes one as JSON.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch.utils.flop_counter import FlopCounterMode

from laimco.models.families.base import BlockDims, ProfileInputError
from laimco.models.flop_constants import ACTIVATIONS, FLOPS_PER_ELEMENT
from laimco.models.loading import LoadedModel, check_weights, model_from_config, read_config
from laimco.models.units import (
    Unit,
    UnitParameters,
    model_units,
    uncovered_parameters,
    unit_parameters,
)
from laimco.models.weight_stats import (
    QUANTILE_LEVELS,
    SAMPLE_SIZE,
    WeightStats,
    checkpoint_renamer,
    safetensors_stats,
    tensor_stats,
)
from laimco.profile_schema import ProfileFile, describe_errors

SIGNIFICANT_DIGITS = 7  # float32 carries ~7 significant decimal digits


class ProfilerError(ValueError):
    """A model or option the profiler cannot measure honestly; the message says what to change."""


# Ranges of the profiling options (generous; the forward pass runs on the meta device when
# no statistics are measured, so these bound counts, not memory).
MAX_SEQ_LEN = 1 << 20
MAX_BATCH_SIZE = 1 << 16
MAX_ACTIVATION_BITS = 64
MAX_IMAGE_SIZE = 1 << 14


def check_options(*, seq_len: int, batch_size: int, activation_bits: int,
                  image_size: int | None) -> None:
    """Refuse option values no profile can have, naming the option and its allowed range."""
    for option, value, top in (("seq_len", seq_len, MAX_SEQ_LEN),
                               ("batch_size", batch_size, MAX_BATCH_SIZE),
                               ("activation_bits", activation_bits, MAX_ACTIVATION_BITS),
                               ("image_size", image_size, MAX_IMAGE_SIZE)):
        if value is None and option == "image_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ProfilerError(f"{option} = {value!r} is not allowed: give a whole number in "
                                f"1..{top}")


@dataclass(frozen=True)
class _Shapes:
    """What one instrumented forward pass saw."""

    batch: int
    tokens: int  # sequence length (text) or patches + 1 (ViT)
    image_size: int | None
    input_bits: int
    out_bits: list[int]  # per unit
    flops: dict[str, int]  # module path (relative to the model) → counted FLOPs; "" = total


def profile_model(loaded: LoadedModel, *, seq_len: int = 128, batch_size: int = 1,
                  activation_bits: int = 32, image_size: int | None = None,
                  prunable_head: bool = False, stats: bool = True, name: str | None = None,
                  source: str | None = None, sample_size: int = SAMPLE_SIZE) -> ProfileFile:
    """The profile of a loaded model (weights measured) or of a meta-device skeleton
    (`stats=False`: weight statistics assumed Gaussian with σ = config.initializer_range).

    `seq_len` is the token count of text models; ViT models take `image_size` (default: the
    config's). `prunable_head` makes the head's linear layer prunable (unless it is tied to the
    embeddings, which own it)."""
    check_options(seq_len=seq_len, batch_size=batch_size, activation_bits=activation_bits,
                  image_size=image_size)
    params = unit_parameters(model_units(loaded), prunable_head=prunable_head)
    if stats and _on_meta(loaded):
        raise ProfilerError("the model's weights are on the meta device: use stats=False "
                            "(assumed statistics) or profile_safetensors_dir (streamed weights)")
    statistics = (tensor_stats([[p for _, p in up.prunable] for up in params],
                               sample_size=sample_size) if stats else None)
    return _profile(loaded, params, statistics, seq_len=seq_len, batch_size=batch_size,
                    activation_bits=activation_bits, image_size=image_size, name=name,
                    source=source)


def profile_from_config(config: Any, *, seq_len: int = 128, batch_size: int = 1,
                        activation_bits: int = 32, image_size: int | None = None,
                        prunable_head: bool = False, name: str | None = None,
                        source: str | None = None) -> ProfileFile:
    """Architecture-only profile of a config (object, config.json or model directory), built
    on the meta device: no weight is allocated; statistics are assumed (`"weights": "assumed"`)."""
    check_options(seq_len=seq_len, batch_size=batch_size, activation_bits=activation_bits,
                  image_size=image_size)
    if isinstance(config, str | Path):
        source = source or str(config)
        config = read_config(config)
    skeleton = model_from_config(config, device="meta")
    return profile_model(skeleton, seq_len=seq_len, batch_size=batch_size,
                         activation_bits=activation_bits, image_size=image_size,
                         prunable_head=prunable_head, stats=False,
                         name=name or str(getattr(config, "model_type", "model")),
                         source=source or f"{type(config).__name__} (architecture only)")


def profile_safetensors_dir(folder: str | Path, *, seq_len: int = 128, batch_size: int = 1,
                            activation_bits: int = 32, image_size: int | None = None,
                            prunable_head: bool = False, name: str | None = None,
                            source: str | None = None,
                            sample_size: int = SAMPLE_SIZE) -> ProfileFile:
    """Profile of a Hugging Face model directory without loading the model: architecture on the
    meta device, weight statistics streamed tensor by tensor from its `*.safetensors` files."""
    check_options(seq_len=seq_len, batch_size=batch_size, activation_bits=activation_bits,
                  image_size=image_size)
    folder = Path(folder)
    if not folder.is_dir():
        raise ProfilerError(f"{folder}: not a directory; give a Hugging Face model directory")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ProfilerError(f"{folder}: no *.safetensors files (laimco never reads pickle "
                            "weights such as *.bin); for an architecture-only profile use "
                            "profile_from_config")
    check_weights(folder)  # a truncated or corrupt file fails here, before any statistics
    skeleton = model_from_config(read_config(folder), device="meta")
    _check_no_extra_block_weights(folder, files, skeleton)
    params = unit_parameters(model_units(skeleton), prunable_head=prunable_head)
    aliases: dict[int, list[str]] = {}
    for qualified, parameter in skeleton.model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(parameter), []).append(qualified)
    wanted = [[(n, *(a for a in aliases[id(p)] if a != n)) for n, p in up.prunable]
              for up in params]
    statistics = safetensors_stats(files, wanted, rename=checkpoint_renamer(skeleton.model),
                                   sample_size=sample_size)
    for up, s in zip(params, statistics, strict=True):
        if s.count != up.n_prunable:
            raise ProfilerError(f"{folder}: unit {up.unit.name} has {s.count} prunable weights "
                                f"in the checkpoint, {up.n_prunable} in config.json")
    return _profile(skeleton, params, statistics, seq_len=seq_len, batch_size=batch_size,
                    activation_bits=activation_bits, image_size=image_size,
                    name=name or folder.name, source=source or str(folder))


def _check_no_extra_block_weights(folder: Path, files: list[Path],
                                  skeleton: LoadedModel) -> None:
    """Refuse a checkpoint with more block weights than config.json gives the model (a layer
    count that is too small would otherwise profile a different, shorter model)."""
    from safetensors import safe_open

    from laimco.models.loading import block_weight_keys

    in_files = []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            in_files += block_weight_keys(handle.keys())
    in_model = block_weight_keys(n for n, _ in skeleton.model.named_parameters())
    if len(in_files) > len(in_model):
        raise ProfilerError(f"{folder}: the weight files hold {len(in_files)} block weights, "
                            f"the model config.json describes {len(in_model)}; fix "
                            "num_hidden_layers / n_layer in config.json")


def save_profile(profile: ProfileFile, path: str | Path) -> Path:
    """Write a profile as pretty-printed JSON, atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = profile.json_text()
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _profile(loaded: LoadedModel, params: list[UnitParameters],
             statistics: list[WeightStats] | None, *, seq_len: int, batch_size: int,
             activation_bits: int, image_size: int | None, name: str | None,
             source: str | None) -> ProfileFile:
    uncovered = uncovered_parameters(loaded, [up.unit for up in params])
    if uncovered:
        raise ProfilerError(f"{loaded.name}: parameters outside every unit ({uncovered[:5]}…); "
                            "laimco's units do not cover this architecture")
    shapes = _forward(loaded, seq_len=seq_len, batch_size=batch_size,
                      activation_bits=activation_bits, image_size=image_size)
    attributed = sum(shapes.flops.get(p, 0) for up in params for p in up.unit.module_paths)
    outside = shapes.flops[""] - attributed  # counted work outside every unit's modules
    units = []
    for i, up in enumerate(params):
        flops_prunable, counted_fixed = _counted_flops(loaded, up, shapes)
        flops_fixed = (counted_fixed + _elementwise_flops(loaded, up.unit, shapes)
                       + (outside if i == 0 else 0))
        weight_fields = (_measured_fields(statistics[i]) if statistics is not None
                         else _assumed_fields(loaded, up.n_prunable))
        units.append({"name": up.unit.name, "kind": up.unit.kind, "n_prunable": up.n_prunable,
                      "n_fixed": up.n_fixed, "flops_prunable": flops_prunable,
                      "flops_fixed": flops_fixed, "out_bits": shapes.out_bits[i],
                      "weights": "measured" if statistics is not None else "assumed",
                      **weight_fields})
    # the profile's JSON form, validated into a ProfileFile below
    header: dict[str, Any] = {
        "name": name or loaded.name,
        "source": source or f"{loaded.source or loaded.name}",
        "family": loaded.family,
        "batch_size": batch_size,
        "seq_len": shapes.tokens,
    }
    if shapes.image_size is not None:
        header["image_size"] = shapes.image_size
    header |= {"activation_bits": activation_bits, "input_bits": shapes.input_bits,
               "magnitude_quantile_levels": QUANTILE_LEVELS, "units": units}
    header["source"] += ", computed by laimco.models.profiler"
    try:
        return ProfileFile.model_validate(header)
    except ValidationError as err:  # a measurement outside the profile format's ranges
        raise ProfilerError(f"{header['name']}: the measured profile is not a valid profile:\n  "
                            f"{describe_errors(err)}") from None


def _on_meta(loaded: LoadedModel) -> bool:
    return any(p.is_meta for p in loaded.model.parameters())


def _forward(loaded: LoadedModel, *, seq_len: int, batch_size: int, activation_bits: int,
             image_size: int | None) -> _Shapes:
    """One forward pass under FlopCounterMode with eager attention; shapes and counted FLOPs."""
    model, adapter = loaded.model, loaded.adapter
    try:
        inputs = adapter.profile_inputs(loaded.config, seq_len=seq_len, batch_size=batch_size,
                                        image_size=image_size,
                                        device=next(model.parameters()).device)
    except ProfileInputError as err:
        raise ProfilerError(f"{loaded.name}: {err}") from None
    counter = FlopCounterMode(display=False)
    with _eager_attention(model), torch.no_grad(), counter:
        out = model(**inputs.kwargs)
        final = adapter.profile_output(out, inputs)
    root = type(model).__name__
    flops = {key.removeprefix(root).removeprefix("."): sum(ops.values())
             for key, ops in counter.get_flop_counts().items() if key != "Global"}
    flops[""] = counter.get_total_flops()
    mask_bits = adapter.crossing_mask_bits(batch_size, inputs.tokens)
    out_bits = [h.numel() * activation_bits + mask_bits for h in out.hidden_states]
    out_bits.append(final.numel() * activation_bits)
    return _Shapes(batch=batch_size, tokens=inputs.tokens, image_size=inputs.image_size,
                   input_bits=inputs.input_bits, out_bits=out_bits, flops=flops)


class _eager_attention:  # noqa: N801 (a context manager used like a function)
    """Switch a transformers model to eager attention for the duration of a block:
    FlopCounterMode sees eager's matmuls, not the CPU SDPA kernel."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.previous = getattr(model.config, "_attn_implementation", None)

    def __enter__(self) -> None:
        if self.previous != "eager":
            self.model.set_attn_implementation("eager")

    def __exit__(self, *exc: object) -> None:
        if self.previous not in (None, "eager"):
            self.model.set_attn_implementation(self.previous)


def _counted_flops(loaded: LoadedModel, up: UnitParameters, shapes: _Shapes) -> tuple[int, int]:
    """(prunable, fixed) FLOPs that FlopCounterMode measured in the unit's modules, checked."""
    total = sum(shapes.flops.get(path, 0) for path in up.unit.module_paths)
    prunable_layers = {name.rsplit(".", 1)[0] for name, _ in up.prunable}
    prunable = sum(shapes.flops.get(path, 0) for path in prunable_layers)
    expected = 2 * shapes.batch * shapes.tokens * up.n_prunable
    if prunable != expected:
        raise ProfilerError(f"{up.unit.name}: measured {prunable} FLOPs in the prunable linear "
                            f"layers, expected 2·B·T·n_prunable = {expected}")
    fixed = total - prunable
    if up.unit.kind == "block":
        dims = BlockDims.of(loaded.config)
        linear_other = sum(shapes.flops.get(path, 0) for path in up.unit.linear_layers()
                           if path not in prunable_layers)
        attention = 2 * 2 * shapes.batch * shapes.tokens**2 * dims.heads * dims.head_dim
        if fixed - linear_other != attention:
            raise ProfilerError(
                f"{up.unit.name}: counted {fixed - linear_other} attention FLOPs, expected "
                f"2·2·B·T²·heads·head_dim = {attention}; load the model with "
                "attn_implementation='eager'")
    return prunable, fixed


def _activation_flops(loaded: LoadedModel) -> int:
    name = loaded.adapter.activation_name(loaded.config)
    if name not in ACTIVATIONS:
        raise ProfilerError(f"activation {name!r} has no FLOP constant; known: "
                            f"{', '.join(sorted(ACTIVATIONS))}")
    return FLOPS_PER_ELEMENT[ACTIVATIONS[name]]


def _bias_outputs(unit: Unit) -> int:
    """Output features of the unit's linear layers that add a bias (per token)."""
    total = 0
    for layer in unit.linear_layers().values():
        bias = getattr(layer, "bias", None)
        if bias is not None:
            total += int(bias.numel())
    return total


def _elementwise_flops(loaded: LoadedModel, unit: Unit, shapes: _Shapes) -> int:
    """Analytic FLOPs of the unit's element-wise work, per the constants of FLOPS_PER_ELEMENT
    (what is specific to a family is its adapter's: embeddings, head, norms)."""
    adapter, f = loaded.adapter, FLOPS_PER_ELEMENT
    dims = BlockDims.of(loaded.config)
    B, T, H = shapes.batch, shapes.tokens, dims.hidden
    if unit.kind == "embeddings":
        return adapter.embeddings_flops(loaded.config, dims, B, T)
    if unit.kind == "head":
        return adapter.head_flops(dims, B, T, _bias_outputs(unit))
    per_score = (f["attention_scale"] + f["softmax"]
                 + (f["attention_mask_add"] if adapter.masked_attention else 0))
    per_token = (f["bias_add"] * _bias_outputs(unit) + 2 * f["residual_add"] * H
                 + _activation_flops(loaded) * dims.ffn + adapter.block_norm_flops(dims))
    return B * (per_score * dims.heads * T * T + T * per_token)


def _round(x: float) -> float:
    """Round to SIGNIFICANT_DIGITS significant digits."""
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


_NO_WEIGHTS = {"weight_mean_abs": 0.0, "weight_std": 0.0, "gennorm_beta": 1.0,
               "gennorm_scale": 0.0, "magnitude_quantiles": [], "weight_sample_size": 0}


def _measured_fields(stats: WeightStats) -> dict[str, Any]:
    """A unit's weight-statistics keys, in the profile's JSON form (see `_profile`)."""
    if not stats.count:
        return dict(_NO_WEIGHTS)
    fit = stats.gennorm()
    return {"weight_mean_abs": _round(stats.mean_abs), "weight_std": _round(stats.rms),
            "gennorm_beta": _round(fit.beta), "gennorm_scale": _round(fit.scale),
            "magnitude_quantiles": [_round(q) for q in stats.quantiles().tolist()],
            "weight_sample_size": int(stats.sample.size)}


def _assumed_fields(loaded: LoadedModel, n_prunable: int) -> dict[str, Any]:
    """Gaussian weights N(0, σ²), σ = config.initializer_range: E|w| = σ√(2/π), β = 2,
    α = σ√2 (the keys in the profile's JSON form, as `_measured_fields`)."""
    if not n_prunable:
        return dict(_NO_WEIGHTS)
    sigma = getattr(loaded.config, "initializer_range", None)
    if sigma is None:
        raise ProfilerError(f"{loaded.name}: the config has no initializer_range to assume "
                            "weight statistics from; profile the weights instead")
    sigma = float(sigma)
    return {"weight_mean_abs": _round(sigma * math.sqrt(2.0 / math.pi)),
            "weight_std": _round(sigma), "gennorm_beta": 2.0,
            "gennorm_scale": _round(sigma * math.sqrt(2.0)), "magnitude_quantiles": [],
            "weight_sample_size": 0}

