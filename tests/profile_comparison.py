"""Comparing two profile dictionaries computed by different code paths (or on different
machines): structure, names, integers and strings exactly; floats within one unit in the last
digit the profiler keeps.

The profiler rounds every statistic to SIGNIFICANT_DIGITS = 7 significant digits
(src/laimco/models/profiler.py). Two paths whose unrounded values differ by a few ulps (another
summation order, another CPU's SIMD width) round to the same 7 digits, or to neighbours one
unit in the 7th digit apart: a relative difference of at most 10⁻⁶ (at 1.000000 vs 1.000001;
less for larger leading digits). No looser bound is allowed.
"""

from __future__ import annotations

import math
from typing import Any

SIGNIFICANT_DIGITS = 7  # = laimco.models.profiler.SIGNIFICANT_DIGITS (test_profiler checks;
# not imported, so profile tests without torch can use this module)
ROUNDED_REL = 10.0 ** -(SIGNIFICANT_DIGITS - 1)


def profile_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON-like values differ beyond the rounding bound (empty when they match)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path or '(top)'}: keys {sorted(set(a) ^ set(b))} in only one"]
        return [d for key in a for d in profile_differences(a[key], b[key], f"{path}.{key}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in profile_differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float) \
                or not isinstance(b, int | float):
            return [f"{path}: {a!r} vs {b!r}"]
        if math.isclose(a, b, rel_tol=ROUNDED_REL, abs_tol=0.0):
            return []
        return [f"{path}: {a!r} vs {b!r} (more than {ROUNDED_REL:g} relative)"]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} vs {b!r}"]


def assert_same_profile(a: Any, b: Any) -> None:
    differences = profile_differences(a, b)
    assert not differences, "\n".join(differences[:20])
