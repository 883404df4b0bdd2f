"""Model families as adapter objects, one module per family, found by this registry.

A family module (bert.py, gpt2.py, llama.py, vit.py), named after its family, defines a
`FamilyAdapter` subclass and exposes one instance as `ADAPTER`; every module of this package
that does is registered, so adding a family is adding one file. `family_adapter("gpt2")`
returns the adapter of a family name (profiles, manifests); `adapter_for_model_type("mistral")`
that of a config.json model_type. Everything that differs between architectures (block lookup,
splitting, profiling hooks, head and neuron layout for structured pruning, which analyses apply)
is asked of the adapter.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import MappingProxyType

from laimco.models.families.base import FamilyAdapter

__all__ = ["FamilyAdapter", "UnknownFamilyError", "adapter_for_model_type", "family_adapter",
           "family_adapters", "known_families", "model_types"]


class UnknownFamilyError(ValueError):
    """A family name or model_type no adapter handles; the message lists the known ones."""


@functools.cache
def _registry() -> MappingProxyType[str, FamilyAdapter]:
    adapters: dict[str, FamilyAdapter] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        adapter = getattr(module, "ADAPTER", None)
        if isinstance(adapter, FamilyAdapter):
            if adapter.name != info.name:  # laimco.models.family_names reads module names
                raise RuntimeError(f"the family module {info.name}.py defines the family "
                                   f"{adapter.name!r}: name the module after its family")
            if adapter.name in adapters:
                raise RuntimeError(f"two family modules define the family {adapter.name!r}")
            adapters[adapter.name] = adapter
    return MappingProxyType(adapters)


def family_adapters() -> tuple[FamilyAdapter, ...]:
    """Every registered adapter, by family name."""
    return tuple(_registry().values())


def known_families() -> list[str]:
    """The family names laimco knows ("bert", "gpt2", ...), sorted."""
    return sorted(_registry())


@functools.cache
def model_types() -> MappingProxyType[str, str]:
    """config.json model_type → family name, for every registered adapter."""
    return MappingProxyType({t: a.name for a in family_adapters() for t in a.model_types})


def family_adapter(family: str | FamilyAdapter) -> FamilyAdapter:
    """The adapter of a family name (an adapter is returned as it is)."""
    if isinstance(family, FamilyAdapter):
        return family
    adapter = _registry().get(family)
    if adapter is None:
        raise UnknownFamilyError(f"family {family!r} is not known: laimco knows "
                                 f"{', '.join(known_families())}")
    return adapter


def adapter_for_model_type(model_type: object) -> FamilyAdapter:
    """The adapter of a config.json model_type ("mistral" → the llama family)."""
    family = model_types().get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise UnknownFamilyError(f"model_type {model_type!r} is not supported: laimco splits "
                                 f"{', '.join(sorted(model_types()))}")
    return _registry()[family]
