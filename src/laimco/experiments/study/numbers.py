"""How the study writes numbers in verdicts and tables."""

from __future__ import annotations

import math


def fmt_g(x: float | None, digits: int = 4) -> str:
    """`digits` significant digits; "—" for a missing or non-finite number."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}g}"


def fmt_pct(x: float) -> str:
    """A fraction as a percentage with 3 significant digits; "—" if not finite."""
    return "—" if not math.isfinite(x) else f"{100 * x:.3g} %"


def fmt_rate(count: float, seconds: float) -> str:
    """count/seconds, thousands separated above 100; "— (reused)" when nothing ran."""
    if seconds <= 0 or not count:
        return "— (reused)"
    rate = count / seconds
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def db(gain: float) -> float:
    """10·log10 of a power gain."""
    return 10 * math.log10(gain)
