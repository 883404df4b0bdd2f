"""The names of the model families laimco knows, found without importing torch.

Every family is one module of `laimco.models.families` named after the family (bert.py holds
the "bert" adapter; the registry there refuses a module whose adapter has another name), so the
names are the module names: a profile's `family` can be checked by the torch-free analytic core.
"""

from __future__ import annotations

import functools
import pkgutil
from pathlib import Path

_FAMILY_DIR = Path(__file__).resolve().parent / "families"
_NOT_FAMILIES = frozenset({"base"})  # the package's shared base classes


@functools.cache
def family_names() -> tuple[str, ...]:
    """The registered family names ("bert", "gpt2", ...), sorted."""
    return tuple(sorted(info.name for info in pkgutil.iter_modules([str(_FAMILY_DIR)])
                        if info.name not in _NOT_FAMILIES))
