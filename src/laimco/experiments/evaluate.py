"""`laimco evaluate`: every strategy's decision applied to the real model, predicted against
measured (README "Do decisions hold when executed?").

For each scenario and strategy: solve → prune the model with the decided rules and ratios →
split → run held-out text → measured loss 1 − cosine to the dense embedding (mean, 95 % CI),
retrieval agreement@10, output distortion; device and server time under the emulation rule of
docs/runtime.md (t = (t_pruned / t_dense)·F_dense / (flops_per_cycle·f), the ratio measured
round-robin on this CPU), uplink time = payload bits / Shannon rate, energies κ·f²·C and p·t;
stored bytes of the device part counted from its tensors. Decisions shared by several
strategies are measured once; each finished strategy is saved under `partial/`, so an
interrupted run resumes without redoing it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from laimco.config import Scenario, load_scenario
from laimco.experiments.evaluate_measure import (
    LIMIT_TOLERANCE,
    Evaluator,
    measured_costs,
    uplink_settings,
)
from laimco.experiments.evaluate_targets import UNCOMPRESSED_SUFFIX, rank_agreement, targets
from laimco.models.loading import LoadedModel, load_model
from laimco.optimize import solve
from laimco.optimize.problem import activation_bit_choices
from laimco.optimize.strategies import STRATEGIES
from laimco.profile import ModelProfile, load_profile

__all__ = ["DEFAULT_STRATEGIES", "EvaluateError", "evaluate", "rank_agreement"]

# the generic-solver baselines (slsqp, alternating) decide as joint does to 1e-4 and take
# seconds per rule pair; the study reports their gap and time, --strategies adds them here
DEFAULT_STRATEGIES = tuple(name for name, spec in STRATEGIES.items() if not spec.generic)
TIMING_ROUNDS = 15


class EvaluateError(ValueError):
    """Input `laimco evaluate` cannot use; the message says what to change."""


def scenario_files(path: Path) -> list[Path]:
    """A scenario file, or every *.toml in a folder (sorted)."""
    if path.is_dir():
        files = sorted(path.glob("*.toml"))
        if not files:
            raise EvaluateError(f"{path}: no scenario files (*.toml) in this folder")
        return files
    if not path.is_file():
        raise EvaluateError(f"{path}: no such scenario file or folder")
    return [path]


def _check_profile(profile: ModelProfile, loaded: LoadedModel, scenario_path: Path) -> None:
    if not profile.rules and profile.architecture_only:
        raise EvaluateError(f"{scenario_path}: profile {profile.name!r} is architecture-only "
                            "(no weights): evaluate applies decisions to a real model; use a "
                            "profile made from the model's weights")
    from laimco.models.split import block_modules
    from laimco.pruning import linear_weights

    blocks = block_modules(loaded.model, loaded.family)
    counts = [sum(w.numel() for w in linear_weights(b).values()) for b in blocks]
    prunable = [u.n_prunable for u in profile.units if u.n_prunable > 0]
    if profile.n_units != loaded.n_units or prunable != counts:
        raise EvaluateError(f"{scenario_path}: profile {profile.name!r} does not describe model "
                            f"{loaded.name!r} ({profile.n_units} units vs {loaded.n_units}); "
                            "pass the profile's model with --model")


def _scenario_digest(scenario_path: Path, scenario: Scenario, n_sentences: int) -> str:
    """The resume key of a scenario: its file, its profile (the file's bytes, or the built-in
    name) and the number of held-out sentences."""
    candidate = Path(scenario.model.profile)
    profile = candidate.read_bytes() if candidate.is_file() else scenario.model.profile.encode()
    return hashlib.sha256(scenario_path.read_bytes() + profile
                          + f"|{n_sentences}".encode()).hexdigest()


@dataclass(frozen=True)
class Run:
    """One row of the report: a label, the scenario it is solved on, the strategy."""

    label: str
    scenario: Scenario
    strategy: str


def runs_of(scenario: Scenario, profile: ModelProfile, strategies: Sequence[str]) -> list[Run]:
    """Every strategy on the scenario; and, when the scenario lets the optimizer compress the
    uplink, every strategy again with the activation sent as float32 (label
    "<strategy>-float32"), so each is measured with and without compression."""
    rows = [Run(name, scenario, name) for name in strategies]
    if activation_bit_choices(scenario, profile) != [32] or scenario.uplink.coding != "none":
        plain = scenario.replace(uplink={"activation_bits": [32], "coding": "none"})
        rows += [Run(name + UNCOMPRESSED_SUFFIX, plain, name) for name in strategies]
    return rows


def _measured_row(run: Run, profile: ModelProfile, evaluator: Evaluator) -> dict[str, Any]:
    """Solve and measure one run (the row saved under partial/)."""
    sc = run.scenario
    decision = solve(sc, run.strategy, profile=profile)
    row: dict[str, Any] = {"strategy": run.label, "decision": decision.to_json_dict(),
                           "measured": None}
    point = decision.point
    if point is not None:
        m = evaluator.measure(point, sc.model.bytes_per_weight,
                              uplink_settings(profile, point), point.coding)
        row["measured"] = measured_costs(sc, profile, point, m)
        row["loss_per_input"] = [float(v) for v in m.loss_per_input]
    return row


def _scenario_rows(path: Path, sc: Scenario, runs: Sequence[Run], partial: Path,
                   evaluator: Evaluator, n_sentences: int,
                   advance: Callable[[], None]) -> list[dict[str, Any]]:
    """The rows of one scenario, each read from partial/ when an earlier run saved it."""
    profile = load_profile(sc.model.profile)
    digest = _scenario_digest(path, sc, n_sentences)
    rows = []
    for run in runs:
        key = hashlib.sha256(f"{digest}|{run.label}".encode()).hexdigest()[:16]
        saved = partial / f"{path.stem}--{run.label}--{key}.json"
        if saved.is_file():
            row = json.loads(saved.read_text())
        else:
            row = _measured_row(run, profile, evaluator)
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps(row))
            tmp.replace(saved)
        row["partial"] = saved.name  # the per-input losses, for paired comparisons
        rows.append(row)
        advance()
    return rows


def evaluate(path: str | Path, out: str | Path, *, model: str = "minilm",
             strategies: Sequence[str] = DEFAULT_STRATEGIES, n_sentences: int = 256,
             timing_rounds: int = TIMING_ROUNDS, progress: bool = True) -> dict[str, Any]:
    """Evaluate every strategy on a scenario or a folder of scenarios; writes evaluate.json,
    evaluate.md and figures into `out` and returns the JSON object."""
    for name in strategies:
        if name not in STRATEGIES:
            raise EvaluateError(f"unknown strategy {name!r}: choose among {', '.join(STRATEGIES)}")
    if n_sentences < 2:
        raise EvaluateError(f"--sentences must be at least 2 (got {n_sentences})")
    files = scenario_files(Path(path))
    scenarios = [(f, load_scenario(f)) for f in files]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EvaluateError(f"--out {out} is a file: give a folder")
    partial = out / "partial"
    loaded = load_model(model)
    for f, sc in scenarios:
        _check_profile(load_profile(sc.model.profile), loaded, f)
    partial.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator(loaded, n_sentences, timing_rounds)
    results: list[dict[str, Any]] = []
    losses: dict[int, np.ndarray] = {}
    flat: list[dict[str, Any]] = []
    runs = {f: runs_of(sc, load_profile(sc.model.profile), strategies) for f, sc in scenarios}
    with Progress(disable=not progress) as bar:
        task = bar.add_task("evaluate", total=sum(len(r) for r in runs.values()))
        for f, sc in scenarios:
            rows = _scenario_rows(f, sc, runs[f], partial, evaluator, n_sentences,
                                  lambda: bar.advance(task))
            for row in rows:
                per_input = row.pop("loss_per_input", None)
                if row["measured"] is not None and per_input is not None:
                    ident = len(losses)
                    losses[ident] = np.asarray(per_input)
                    flat.append({"id": ident, "mode": sc.distortion.mode,
                                 "objective": row["decision"]["objective"],
                                 "loss": row["measured"]["loss_mean"],
                                 "label": f"{f.stem}:{row['strategy']}", "scenario": f.stem,
                                 "strategy": row["strategy"], "decision": row["decision"],
                                 "measured": row["measured"]})
            results.append({"scenario": str(f), "mode": sc.distortion.mode, "strategies": rows})
    report: dict[str, Any] = {"scenarios": results, "rank_agreement": rank_agreement(flat, losses),
                              "held_out_sentences": n_sentences,
                              "limit_tolerance": LIMIT_TOLERANCE}
    report["targets"] = targets(flat, losses)
    from laimco.experiments.evaluate_report import write_figures, write_markdown

    figures = write_figures(flat, out)
    (out / "evaluate.json").write_text(json.dumps(report, indent=1))
    (out / "evaluate.md").write_text(write_markdown(report, flat, figures))
    return report


