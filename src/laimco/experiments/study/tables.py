"""The sweep tables as the study reads them: one numpy column per name, row selection, and
comparison of objectives within the solver's tolerance (docs/theory.md §4.4)."""

from __future__ import annotations

from typing import Any

import numpy as np

from laimco.optimize.tolerances import ACTIVE_TOL

Table = dict[str, np.ndarray]
STRATEGY_ORDER = ("joint", "tied", "slsqp", "alternating", "max-frequency", "max-power",
                  "fixed-split", "fixed-ratio", "on-device", "on-server", "no-pruning")
REL_TOL = ACTIVE_TOL  # objectives equal within the solver's tolerance (docs/theory.md §4.4)
ABS_TOL = 1e-9


def no_worse(a: float, b: float) -> bool:
    """a ≤ b within the solver's tolerance."""
    return bool(a <= b * (1 + REL_TOL) + ABS_TOL)


def mask(table: Table, **equal: Any) -> np.ndarray:
    """Rows whose columns equal the given values (keys with dots: use `where`)."""
    keep = np.ones(len(table["point"]), dtype=bool)
    for key, value in equal.items():
        keep &= table[key] == value
    return keep


def where(table: Table, conditions: dict[str, Any]) -> np.ndarray:
    """Rows whose columns equal the given values."""
    return mask(table, **conditions)


def present_strategies(table: Table) -> list[str]:
    """The table's strategies in the study's order."""
    found = set(table["strategy"].tolist())
    return [s for s in STRATEGY_ORDER if s in found]


def rows_by_point(table: Table) -> dict[int, dict[str, int]]:
    """point → strategy → row index."""
    out: dict[int, dict[str, int]] = {}
    for i, (p, s) in enumerate(zip(table["point"].tolist(), table["strategy"].tolist(),
                                   strict=True)):
        out.setdefault(p, {})[s] = i
    return out
