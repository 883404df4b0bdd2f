"""The study's claims that need measured quality, computed from a `laimco evaluate` report
(evaluate.json with per-input losses kept under `partial/`): does the joint design give the
best measured quality among decisions that meet their limits when executed, in the paper mode
and in the calibrated mode, and does a split beat both corners on measured quality."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laimco.experiments.evaluate import paired_difference
from laimco.experiments.study import MeasuredGain, _claim, _g, _md_table

SE_LIMIT = 3.0  # "within 3 paired standard errors of the best"
CORNERS = ("on-device", "on-server")


def load_losses(evaluation: dict[str, Any], evaluate_dir: Path
                ) -> dict[tuple[str, str], np.ndarray]:
    """Per-input losses of every measured (scenario, strategy), from the partial files the
    report names."""
    losses = {}
    for entry in evaluation["scenarios"]:
        for row in entry["strategies"]:
            file = evaluate_dir / "partial" / row.get("partial", "")
            if row["measured"] is not None and file.is_file():
                saved = json.loads(file.read_text())
                losses[(Path(entry["scenario"]).stem, row["strategy"])] = np.asarray(
                    saved["loss_per_input"])
    return losses


def _rows(evaluation: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(scenario stem, mode, strategy row) of every feasible, measured strategy."""
    out = []
    for entry in evaluation["scenarios"]:
        stem = Path(entry["scenario"]).stem
        for row in entry["strategies"]:
            if row["measured"] is not None:
                out.append((stem, entry["mode"], row))
    return out


def measured_gains(evaluation: dict[str, Any],
                   losses: dict[tuple[str, str], np.ndarray]) -> list[MeasuredGain]:
    """Per scenario with a feasible corner and a feasible interior split (both meeting their
    limits when executed): best corner loss − best interior loss, paired 95 % CI."""
    gains = []
    rows = _rows(evaluation)
    for scenario in sorted({s for s, _, _ in rows}):
        here = [r for s, _, r in rows if s == scenario and r["measured"]["limits_hold"]
                and (scenario, r["strategy"]) in losses]
        n_units = max((r["decision"]["split"] for r in here), default=0)
        corner = [r for r in here if r["strategy"] in CORNERS]
        interior = [r for r in here if r["strategy"] not in CORNERS
                    and 0 < r["decision"]["split"] < n_units]
        if not corner or not interior:
            continue
        best_corner = min(corner, key=lambda r: r["measured"]["loss_mean"])
        best_split = min(interior, key=lambda r: r["measured"]["loss_mean"])
        mean, se = paired_difference(losses[(scenario, best_corner["strategy"])],
                           losses[(scenario, best_split["strategy"])])
        gains.append(MeasuredGain(scenario, mean, (mean - 1.96 * se, mean + 1.96 * se)))
    return gains


def claim_execution(evaluation: dict[str, Any],
                    losses: dict[tuple[str, str], np.ndarray]) -> dict[str, Any]:
    """The joint decision against the best measured decision that meets its limits when
    executed, per scenario and mode; plus how many decisions broke a limit when executed."""
    rows = _rows(evaluation)
    table_rows = []
    verdicts: dict[str, list[bool]] = {}
    broken: dict[str, int] = {}
    for scenario in sorted({s for s, _, _ in rows}):
        mode = next(m for s, m, _ in rows if s == scenario)
        here = [r for s, _, r in rows if s == scenario and (scenario, r["strategy"]) in losses]
        broken[mode] = broken.get(mode, 0) + sum(not r["measured"]["limits_hold"] for r in here)
        holding = [r for r in here if r["measured"]["limits_hold"]]
        joint = [r for r in holding if r["strategy"] == "joint"]
        if not holding:
            continue
        best = min(holding, key=lambda r: r["measured"]["loss_mean"])
        if not joint:
            table_rows.append([scenario, mode, "joint breaks a limit when executed",
                               best["strategy"], "—", "—"])
            verdicts.setdefault(mode, []).append(False)
            continue
        mean, se = paired_difference(losses[(scenario, "joint")],
                                     losses[(scenario, best["strategy"])])
        ok = mean <= SE_LIMIT * se + 1e-15
        verdicts.setdefault(mode, []).append(ok)
        table_rows.append([scenario, mode, _g(joint[0]["measured"]["loss_mean"], 4),
                           best["strategy"], _g(mean, 3), "yes" if ok else "NO"])
    parts = []
    for mode, oks in sorted(verdicts.items()):
        parts.append(f"{mode} mode: joint is within {SE_LIMIT:g} paired standard errors of the "
                     f"best measured decision that meets its limits in {sum(oks)} of "
                     f"{len(oks)} scenarios; {broken.get(mode, 0)} decisions reported feasible "
                     "broke a limit by more than the timing tolerance when executed")
    agreement = evaluation.get("rank_agreement", {})
    verdict = ("; ".join(parts) + f". The objective orders {agreement.get('agreeing', 0)} of "
               f"{agreement.get('pairs', 0)} clearly different, significantly different pairs "
               "of decisions as their measured loss does (laimco evaluate).")
    holds = bool(verdicts) and all(all(v) for v in verdicts.values())
    table = _md_table(["scenario", "mode", "joint loss (1 − cos)", "best measured feasible",
                       "joint − best loss", f"within {SE_LIMIT:g} SE"], table_rows)
    return _claim("execution", "The joint design holds when executed",
                  "the joint design gives the best quality within the limits", verdict, holds,
                  table, [], pairs=agreement.get("pairs", 0),
                  agreeing=agreement.get("agreeing", 0))


def evaluation_inputs(evaluate_dir: Path) -> tuple[dict[str, Any],
                                                  dict[tuple[str, str], np.ndarray]]:
    """evaluate.json and the per-input losses of a `laimco evaluate` output folder."""
    evaluation = json.loads((evaluate_dir / "evaluate.json").read_text())
    return evaluation, load_losses(evaluation, evaluate_dir)


__all__: Sequence[str] = ("claim_execution", "evaluation_inputs", "measured_gains")
