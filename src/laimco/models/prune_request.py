"""What a pruning request may ask for (README "Real models"), checked without torch so that
`laimco prune` refuses a bad rule, ratio or calibration count before it loads a model."""

from __future__ import annotations

from typing import Literal

Rule = Literal["magnitude", "magnitude-global", "wanda", "structured", "magnitude-csr"]
RULES: tuple[Rule, ...] = ("magnitude", "magnitude-global", "wanda", "structured",
                           "magnitude-csr")
CALIBRATED_RULES: tuple[Rule, ...] = ("wanda",)
DEFAULT_CALIBRATION_SENTENCES = 128


class PruningError(ValueError):
    """A pruning request that cannot be carried out; the message says what to change."""


def check_rule(rule: str, option: str = "rule") -> Rule:
    """`rule` if it is one of RULES, else PruningError."""
    if rule not in RULES:
        raise PruningError(f"{option} {rule!r} is unknown: choose one of {', '.join(RULES)}")
    return rule  # type: ignore[return-value,unused-ignore]


def check_ratio(name: str, ratio: float) -> None:
    """A pruning ratio is the fraction of weights removed: 0 ≤ ratio < 1."""
    if not 0.0 <= ratio < 1.0:  # NaN fails too
        raise PruningError(f"{name} = {ratio} is outside [0, 1): a pruning ratio is the "
                           "fraction of weights removed")


def check_calibration_count(rule: str, count: int, available: int,
                            option: str = "--calibration-sentences") -> None:
    """Calibration rules need 1..available sentences; others need none (0 or more allowed)."""
    if count < 0:
        raise PruningError(f"{option} = {count} is negative: give a number of sentences in "
                           f"0..{available}")
    if count > available:
        raise PruningError(f"{option} = {count}: the shipped corpus has {available} "
                           f"calibration sentences; give at most {available}")
    if rule in CALIBRATED_RULES and count == 0:
        raise PruningError(f"rule {rule!r} weighs |w| by input norms measured on calibration "
                           f"text: {option} must be in 1..{available}")
