"""The study's claims that need measured quality, computed from a `laimco evaluate` report
(evaluate.json with per-input losses kept under `partial/`): does the joint design give the
best measured quality among decisions that meet their limits when executed, in the paper mode
and in the calibrated mode, and does a split beat both corners on measured quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ValidationError

from laimco.experiments.evaluate_targets import CompressionTargets, paired_difference
from laimco.experiments.study.claim import Claim, ClaimId, TextTable
from laimco.experiments.study.claims_corners import MeasuredGain
from laimco.experiments.study.errors import StudyError, first_problem
from laimco.experiments.study.numbers import fmt_g

SE_LIMIT = 3.0  # "within 3 paired standard errors of the best"
CORNERS = ("on-device", "on-server")
Losses = dict[tuple[str, str], np.ndarray]  # (scenario stem, strategy) → loss per input


class Measured(BaseModel):
    """What `laimco evaluate` measured for one executed decision (the part read here)."""

    loss_mean: float
    limits_hold: bool


class DecisionSplit(BaseModel):
    split: int | None = None


class StrategyRow(BaseModel):
    strategy: str
    decision: DecisionSplit
    measured: Measured | None = None  # None: infeasible, not executed
    partial: str = ""  # file under partial/ with the per-input losses


class ScenarioEntry(BaseModel):
    scenario: str
    mode: str
    strategies: list[StrategyRow]

    @property
    def stem(self) -> str:
        return Path(self.scenario).stem


class RankAgreement(BaseModel):
    pairs: int = 0
    agreeing: int = 0


class ModeTargets(BaseModel):
    compression: CompressionTargets | None = None


class Evaluation(BaseModel):
    """The part of evaluate.json the study's measured claims read."""

    scenarios: list[ScenarioEntry]
    rank_agreement: RankAgreement = RankAgreement()
    targets: dict[str, ModeTargets] = {}

    def compression_targets(self) -> dict[str, CompressionTargets]:
        """mode → what compressing the uplink did when executed (evaluate_targets)."""
        return {mode: t.compression for mode, t in self.targets.items()
                if t.compression is not None}


class _Partial(BaseModel):
    loss_per_input: list[float]


def load_losses(evaluation: Evaluation, evaluate_dir: Path) -> Losses:
    """Per-input losses of every measured (scenario, strategy), from the partial files the
    report names."""
    losses = {}
    for entry in evaluation.scenarios:
        for row in entry.strategies:
            file = evaluate_dir / "partial" / row.partial
            if row.measured is not None and file.is_file():
                saved = _Partial.model_validate_json(file.read_bytes())
                losses[(entry.stem, row.strategy)] = np.asarray(saved.loss_per_input)
    return losses


def evaluation_inputs(evaluate_dir: Path) -> tuple[Evaluation, Losses]:
    """evaluate.json and the per-input losses of a `laimco evaluate` output folder."""
    file = evaluate_dir / "evaluate.json"
    try:
        evaluation = Evaluation.model_validate_json(file.read_bytes())
        return evaluation, load_losses(evaluation, evaluate_dir)
    except (OSError, ValidationError) as err:
        raise StudyError(f"{file}: not a laimco evaluate report ({first_problem(err)}); run "
                         "`laimco evaluate scenarios/ --out DIR` to write one") from None


def _measured_rows(evaluation: Evaluation) -> list[tuple[str, str, StrategyRow]]:
    """(scenario stem, mode, strategy row) of every feasible, measured strategy."""
    return [(entry.stem, entry.mode, row) for entry in evaluation.scenarios
            for row in entry.strategies if row.measured is not None]


def _loss(row: StrategyRow) -> float:
    assert row.measured is not None  # only measured rows are compared
    return row.measured.loss_mean


def _holds(row: StrategyRow) -> bool:
    return row.measured is not None and row.measured.limits_hold


def measured_gains(evaluation: Evaluation, losses: Losses) -> list[MeasuredGain]:
    """Per scenario with a feasible corner and a feasible interior split (both meeting their
    limits when executed): best corner loss − best interior loss, paired 95 % CI."""
    gains = []
    rows = _measured_rows(evaluation)
    for scenario in sorted({s for s, _, _ in rows}):
        here = [r for s, _, r in rows if s == scenario and _holds(r)
                and (scenario, r.strategy) in losses]
        n_units = max((r.decision.split or 0 for r in here), default=0)
        corner = [r for r in here if r.strategy in CORNERS]
        interior = [r for r in here if r.strategy not in CORNERS
                    and 0 < (r.decision.split or 0) < n_units]
        if not corner or not interior:
            continue
        best_corner = min(corner, key=_loss)
        best_split = min(interior, key=_loss)
        mean, se = paired_difference(losses[(scenario, best_corner.strategy)],
                                     losses[(scenario, best_split.strategy)])
        gains.append(MeasuredGain(scenario, mean, (mean - 1.96 * se, mean + 1.96 * se)))
    return gains


def claim_execution(evaluation: Evaluation, losses: Losses) -> Claim:
    """The joint decision against the best measured decision that meets its limits when
    executed, per scenario and mode; plus how many decisions broke a limit when executed."""
    rows = _measured_rows(evaluation)
    table_rows = []
    verdicts: dict[str, list[bool]] = {}
    broken: dict[str, int] = {}
    for scenario in sorted({s for s, _, _ in rows}):
        mode = next(m for s, m, _ in rows if s == scenario)
        here = [r for s, _, r in rows if s == scenario and (scenario, r.strategy) in losses]
        broken[mode] = broken.get(mode, 0) + sum(not _holds(r) for r in here)
        holding = [r for r in here if _holds(r)]
        joint = [r for r in holding if r.strategy == "joint"]
        if not holding:
            continue
        best = min(holding, key=_loss)
        if not joint:
            table_rows.append([scenario, mode, "joint breaks a limit when executed",
                               best.strategy, "—", "—"])
            verdicts.setdefault(mode, []).append(False)
            continue
        mean, se = paired_difference(losses[(scenario, "joint")],
                                     losses[(scenario, best.strategy)])
        ok = mean <= SE_LIMIT * se + 1e-15
        verdicts.setdefault(mode, []).append(ok)
        table_rows.append([scenario, mode, fmt_g(_loss(joint[0]), 4), best.strategy,
                           fmt_g(mean, 3), "yes" if ok else "NO"])
    parts = []
    for mode, oks in sorted(verdicts.items()):
        parts.append(f"{mode} mode: joint is within {SE_LIMIT:g} paired standard errors of the "
                     f"best measured decision that meets its limits in {sum(oks)} of "
                     f"{len(oks)} scenarios; {broken.get(mode, 0)} decisions reported feasible "
                     "broke a limit by more than the timing tolerance when executed")
    agreement = evaluation.rank_agreement
    verdict = ("; ".join(parts) + f". The objective orders {agreement.agreeing} of "
               f"{agreement.pairs} clearly different, significantly different pairs "
               "of decisions as their measured loss does (laimco evaluate).")
    holds = bool(verdicts) and all(all(v) for v in verdicts.values())
    table = TextTable.of(["scenario", "mode", "joint loss (1 − cos)", "best measured feasible",
                          "joint − best loss", f"within {SE_LIMIT:g} SE"], table_rows)
    return Claim.judged(
        ClaimId.EXECUTION, "The joint design holds when executed",
        "the joint design gives the best quality within the limits", verdict, holds, table, [],
        pairs=agreement.pairs, agreeing=agreement.agreeing)
