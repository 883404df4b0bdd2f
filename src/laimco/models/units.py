"""The units u = 1..L of a model (docs/design.md §3): embeddings, each block, the head.

The same cut as `laimco.models.split`: a split after unit s runs units 1..s on the device.
Each family adapter names the modules of its units (`embedding_paths`, `blocks_path`,
`head_paths`, `head_name`; table in docs/profiling.md, "Units").

Prunable weights are the weight matrices of `nn.Linear` layers (and of transformers' `Conv1D`,
GPT-2's transposed linear layer) inside the blocks, and inside the head when asked for. Every
other parameter is fixed. A parameter shared by two units (GPT-2's `lm_head.weight` is tied to
`wte.weight`) is counted once, in the first unit that holds it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from laimco.models.loading import LoadedModel

UnitKind = Literal["embeddings", "block", "head"]


@dataclass(frozen=True)
class Unit:
    """One unit: its modules and their paths relative to `LoadedModel.model`."""

    name: str
    kind: UnitKind
    modules: tuple[nn.Module, ...]
    module_paths: tuple[str, ...]

    def named_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """Every module of the unit (submodules included), by path relative to the model."""
        for path, module in zip(self.module_paths, self.modules, strict=True):
            yield from module.named_modules(prefix=path)

    def linear_layers(self) -> dict[str, nn.Module]:
        """The `nn.Linear` / `Conv1D` layers of the unit, by path relative to the model."""
        return {path: m for path, m in self.named_modules() if is_linear_layer(m)}


@dataclass(frozen=True)
class UnitParameters:
    """The parameters a unit owns, split into prunable and fixed, by qualified name."""

    unit: Unit
    prunable: tuple[tuple[str, nn.Parameter], ...]
    fixed: tuple[tuple[str, nn.Parameter], ...]

    @property
    def n_prunable(self) -> int:
        return sum(p.numel() for _, p in self.prunable)

    @property
    def n_fixed(self) -> int:
        return sum(p.numel() for _, p in self.fixed)


def is_linear_layer(module: nn.Module) -> bool:
    """`nn.Linear` or transformers' `Conv1D` (a linear layer storing its weight as in × out)."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, nn.Linear | Conv1D)


def model_units(loaded: LoadedModel) -> list[Unit]:
    """The units of a model of any registered family, in execution order."""
    adapter, model = loaded.adapter, loaded.model
    units = [_unit(model, "embeddings", "embeddings", adapter.embedding_paths)]
    blocks = adapter.blocks_path
    n_blocks = len(list(model.get_submodule(blocks).children()))
    units += [_unit(model, f"block{i + 1}", "block", [f"{blocks}.{i}"]) for i in range(n_blocks)]
    units.append(_unit(model, adapter.head_name, "head", adapter.head_paths))
    return units


def unit_parameters(units: list[Unit], *, prunable_head: bool = False) -> list[UnitParameters]:
    """Each unit's parameters; a shared parameter belongs to the first unit that holds it."""
    seen: set[int] = set()
    result = []
    for unit in units:
        prunable_layers = unit.linear_layers() if (
            unit.kind == "block" or (unit.kind == "head" and prunable_head)) else {}
        prunable_ids = {id(m.weight) for m in prunable_layers.values()}
        prunable: list[tuple[str, nn.Parameter]] = []
        fixed: list[tuple[str, nn.Parameter]] = []
        for path, module in zip(unit.module_paths, unit.modules, strict=True):
            for name, parameter in module.named_parameters(prefix=path):
                if id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                (prunable if id(parameter) in prunable_ids else fixed).append((name, parameter))
        result.append(UnitParameters(unit, tuple(prunable), tuple(fixed)))
    return result


def uncovered_parameters(loaded: LoadedModel, units: list[Unit]) -> list[str]:
    """Parameters of the model that belong to no unit (a model laimco does not cut fully)."""
    covered = {id(p) for unit in units for m in unit.modules for p in m.parameters()}
    return [name for name, p in loaded.model.named_parameters() if id(p) not in covered]


def _unit(model: nn.Module, name: str, kind: UnitKind, paths: Sequence[str]) -> Unit:
    return Unit(name=name, kind=kind, modules=tuple(model.get_submodule(p) for p in paths),
                module_paths=tuple(paths))
