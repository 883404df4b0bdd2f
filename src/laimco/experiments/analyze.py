"""`laimco analyze`: the theory checked on a real model's weights and outputs (docs/theory.md
§3.11–§3.13, and §5 for the measured rule costs).

For a text encoder (the built-in MiniLM, or any BERT-style model directory) it measures:

1. how well each distortion law predicts magnitude pruning's parameter distortion, fitted by
   maximum likelihood or to the distortion curve, per weight matrix (§3.11, analysis_laws.py);
2. the output bound D_y ≤ K·D_w: K calibrated on calibration text (max of D_y/D_w over inputs
   and ratios) and checked on held-out text, next to an analytic Lipschitz estimate (§3.12);
3. per-side constants k_device, k_server (one side pruned at a time) and per-unit sensitivity;
4. output quality (cosine, retrieval agreement@10) for magnitude, Wanda and structured pruning;
5. the CPU forward time of structurally pruned blocks against the (1−ρ) FLOP prediction
   (2–5: analysis_outputs.py);
6. what quantizing the activation crossing each split to 16…2 bits does to it and to the
   output (docs/theory.md §6, measure/uplink_measurement.py), on the first 64 calibration
   sentences (16 with --quick): the profile's "uplink" section.

Everything lands in the output folder: figures (PNG + SVG, analysis_figures.py),
analysis.json with every number behind them (`Analysis`, analysis_result.py), analysis.md with
each finding (analysis_report.py), and profile.json (the model's profile with the
distortion-curve fits and the measured k's, for scenario files; analysis_profile.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from rich.progress import Progress

from laimco.data import calibration_sentences, heldout_sentences
from laimco.experiments.analysis_figures import write_figures
from laimco.experiments.analysis_laws import law_accuracy, weights_by_matrix
from laimco.experiments.analysis_outputs import (
    Texts,
    output_bound,
    rule_quality,
    run_batches,
    side_constants,
    structured_timing,
)
from laimco.experiments.analysis_profile import export_profile
from laimco.experiments.analysis_report import report_markdown
from laimco.experiments.analysis_result import Analysis
from laimco.experiments.text_batches import text_batches
from laimco.models.families import family_adapters
from laimco.models.loading import LoadedModel, load_model
from laimco.models.profiler import profile_model
from laimco.models.sensitivity import lipschitz_estimate
from laimco.models.split import run_full

if TYPE_CHECKING:
    from laimco.measure.rule_measurement import RuleCostMeasurement

OUTPUT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
QUICK_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)  # also the rule comparison's ratios
UPLINK_CALIBRATION_SENTENCES = 64  # as the shipped profile (scripts/build_minilm_profile.py)
QUICK_UPLINK_SENTENCES = 16  # --quick: ≈ 15 s instead of ≈ 1 minute
T = TypeVar("T")


def _texts(loaded: LoadedModel, quick: bool) -> tuple[Texts, int, int]:
    """Tokenized calibration and held-out text, and how many sentences each has."""
    # 160 calibration and 320 held-out sentences (≈ 13 k sentence forwards, compute-bound:
    # ≈ 2 s per 320 sentences on 2 cores) keep the whole analysis near 2 minutes of wall time
    # (benchmarks/bench_analyze.py); --quick uses 64 and 128
    cal = calibration_sentences()[:64 if quick else 160]
    held = heldout_sentences()[:128 if quick else 320]
    # batches of similar lengths carry little padding (order does not matter to any metric)
    cal, held = sorted(cal, key=len), sorted(held, key=len)
    return Texts(calibration=list(text_batches(loaded, cal)),
                 heldout=list(text_batches(loaded, held))), len(cal), len(held)


def _check_rules(rules: Sequence[str]) -> None:
    from laimco.measure.rule_measurement import MEASURED_RULES

    for rule in rules:
        if rule not in MEASURED_RULES:
            raise ValueError(f"--rules: no measurement for {rule!r}; choose among "
                             f"{', '.join(MEASURED_RULES)}")


def analyze(model: str = "minilm", out: str | Path = "reports/minilm", *, quick: bool = False,
            split: int = 3, rules: Sequence[str] = (), uplink: bool = True) -> Analysis:
    """Run the whole analysis and write figures, analysis.json, analysis.md and profile.json;
    `rules` adds the measured costs of those pruning rules to profile.json (docs/theory.md §5),
    which the calibrated scenario mode needs; `uplink` the measured costs of quantizing the
    activation at each split (§6)."""
    _check_rules(rules)
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    loaded = load_model(model)
    if not loaded.adapter.sentence_embeddings:
        known = [a.name for a in family_adapters() if a.sentence_embeddings]
        raise ValueError(f"laimco analyze measures sentence embeddings: {loaded.name} is a "
                         f"{loaded.family} model; use a model of the {', '.join(known)} "
                         f"family (a BERT-style encoder)")
    texts, n_calibration, n_heldout = _texts(loaded, quick)
    ratios = QUICK_RATIOS if quick else OUTPUT_RATIOS
    timings: dict[str, float] = {}

    def timed(name: str, func: Callable[[], T]) -> T:
        begun = time.perf_counter()
        value = func()
        timings[name] = time.perf_counter() - begun
        return value

    def full(batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        return run_batches(lambda b: run_full(loaded, b), batches)

    rule_costs: RuleCostMeasurement | None = None
    with Progress(transient=True) as progress:
        t = progress.add_task("weights: law fits", total=1)
        laws = timed("laws", lambda: law_accuracy(weights_by_matrix(loaded)))
        progress.advance(t)
        reference = timed("dense", lambda: {"calibration": full(texts.calibration),
                                            "heldout": full(texts.heldout)})
        magnitude_outputs: dict[float, torch.Tensor] = {}
        bound = timed("bound", lambda: output_bound(
            loaded, texts, ratios, reference, progress, magnitude_outputs))
        lipschitz = timed("lipschitz", lambda: lipschitz_estimate(loaded, texts.calibration))
        bound = bound.model_copy(update={"lipschitz": lipschitz})
        sides = timed("sides", lambda: side_constants(
            loaded, texts, reference["heldout"], split, progress))
        quality = timed("quality", lambda: rule_quality(
            loaded, texts, reference["heldout"], QUICK_RATIOS, progress, magnitude_outputs))
        structured = timed("structured", lambda: structured_timing(loaded, progress))
        if rules:
            from laimco.measure.rule_measurement import measure_rule_costs

            rule_costs = timed("rules", lambda: measure_rule_costs(
                loaded, profile_model(loaded).units,
                texts.calibration, rules, progress=progress))
        uplink_costs = None
        if uplink:
            from laimco.measure.uplink_measurement import measure_uplink_costs

            count = QUICK_UPLINK_SENTENCES if quick else UPLINK_CALIBRATION_SENTENCES
            uplink_batches = list(text_batches(loaded, calibration_sentences()[:count]))
            uplink_costs = timed("uplink", lambda: measure_uplink_costs(
                loaded, uplink_batches, progress=progress))
        profile = timed("profile", lambda: export_profile(
            loaded, laws, bound, sides, rule_costs, out / "profile.json", uplink_costs))
    result = Analysis(model=loaded.name, n_calibration=n_calibration, n_heldout=n_heldout,
                      quick=quick, laws=laws, bound=bound,
                      sides=sides, quality=quality, structured_timing=structured,
                      profile=profile, timings_s=timings)
    result = result.model_copy(update={"elapsed_s": time.perf_counter() - started})
    result = result.model_copy(update={"figures": write_figures(result, out)})
    (out / "analysis.json").write_text(json.dumps(
        result.model_dump(mode="json", by_alias=True, exclude_none=True), indent=1) + "\n")
    (out / "analysis.md").write_text(report_markdown(result))
    return result
