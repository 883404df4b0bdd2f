"""`laimco analyze`: the theory checked on a real model's weights and outputs (docs/theory.md §3).

For a text encoder (the built-in MiniLM, or any BERT-style model directory) it measures:

1. how well each distortion law predicts magnitude pruning's parameter distortion, fitted by
   maximum likelihood or to the distortion curve, per weight matrix (docs/theory.md §3.11);
2. the output bound D_y ≤ K·D_w: K calibrated on calibration text (max of D_y/D_w over inputs
   and ratios) and checked on held-out text, next to an analytic Lipschitz estimate (§3.12);
3. per-side constants k_device, k_server (one side pruned at a time) and per-unit sensitivity;
4. output quality (cosine, retrieval agreement@10) for magnitude, Wanda and structured pruning;
5. the CPU forward time of structurally pruned blocks against the (1−ρ) FLOP prediction.

Everything lands in the output folder: figures (PNG + SVG), analysis.json with every number
behind them, analysis.md with each finding, and profile.json (the model's profile with the
distortion-curve fits and the measured k's, for scenario files).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from laimco.data import calibration_sentences, heldout_sentences
from laimco.experiments.analysis_figures import write_figures
from laimco.experiments.text_batches import text_batches
from laimco.measure.metrics import (
    mean_cosine_similarity,
    output_distortion_per_input,
    retrieval_agreement_at_k,
)
from laimco.models.loading import LoadedModel, load_model
from laimco.models.profiler import profile_model
from laimco.models.pruned import calibration_norms, prune_split_model
from laimco.models.sensitivity import lipschitz_estimate
from laimco.models.split import block_modules, run_full
from laimco.models.weight_stats import gennorm_mle
from laimco.theory.distortion import (
    EmpiricalLaw,
    GaussianLaw,
    GenNormLaw,
    LaplaceLaw,
    magnitude_pruning_distortion,
    magnitude_quantile_table,
)
from laimco.theory.law_fit import fit_gennorm_to_distortion, worst_relative_error

LAW_RATIOS = np.round(np.arange(0.05, 0.951, 0.05), 2)
OUTPUT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
QUICK_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)  # also the rule comparison's ratios
SIDE_RATIOS = (0.3, 0.6, 0.9)
STRUCTURED_RATIOS = (0.0, 0.25, 0.5, 0.75)
RETRIEVAL_K = 10


@dataclass(frozen=True)
class Texts:
    """Tokenized calibration and held-out batches."""

    calibration: list[dict[str, torch.Tensor]]
    heldout: list[dict[str, torch.Tensor]]


def _weights_by_matrix(loaded: LoadedModel) -> dict[str, np.ndarray]:
    from laimco.models.units import model_units, unit_parameters

    out: dict[str, np.ndarray] = {}
    for unit in unit_parameters(model_units(loaded)):
        for name, parameter in unit.prunable:
            out[name] = parameter.detach().double().numpy().ravel()
    return out


def law_accuracy(matrices: dict[str, np.ndarray]) -> dict[str, Any]:
    """Predicted vs measured magnitude-pruning distortion (each matrix pruned at ρ), for every
    law and fitting method, summed over matrices; and the pooled (global pruning) view."""
    rho = LAW_RATIOS
    sizes = {k: w.size for k, w in matrices.items()}
    measured = {k: magnitude_pruning_distortion(w, rho) for k, w in matrices.items()}
    predictions: dict[str, dict[str, np.ndarray]] = {
        "laplace (MLE)": {}, "gaussian (MLE)": {}, "gennorm (MLE)": {},
        "gennorm (fit to δ curve)": {}, "empirical (1001 quantiles)": {}}
    fits: dict[str, dict[str, float]] = {}
    for name, w in matrices.items():
        mle = gennorm_mle(w)
        curve = fit_gennorm_to_distortion(rho, measured[name], start=(mle.scale, mle.beta))
        fits[name] = {"gennorm_mle_beta": mle.beta, "gennorm_mle_scale": mle.scale,
                      "gennorm_curve_beta": curve.shape, "gennorm_curve_scale": curve.scale}
        p = predictions
        p["laplace (MLE)"][name] = LaplaceLaw(np.mean(np.abs(w))).delta(rho)
        p["gaussian (MLE)"][name] = GaussianLaw(np.sqrt(np.mean(w * w))).delta(rho)
        p["gennorm (MLE)"][name] = GenNormLaw(mle.scale, mle.beta).delta(rho)
        p["gennorm (fit to δ curve)"][name] = GenNormLaw(curve.scale, curve.shape).delta(rho)
        p["empirical (1001 quantiles)"][name] = EmpiricalLaw(
            magnitude_quantile_table(w), mean_square=np.mean(w * w)).delta(rho)
    total_measured = sum(measured[k] * sizes[k] for k in matrices)
    laws = {}
    for law, per_matrix in predictions.items():
        total = sum(per_matrix[k] * sizes[k] for k in matrices)
        worst, at = worst_relative_error(total, total_measured)
        per_matrix_worst = max(worst_relative_error(per_matrix[k], measured[k])[0]
                               for k in matrices)
        laws[law] = {"predicted": total.tolist(), "worst_relative_error": worst,
                     "worst_at_rho": float(rho[at]),
                     "worst_relative_error_any_matrix": per_matrix_worst,
                     "parameters_per_matrix": {"laplace (MLE)": 1, "gaussian (MLE)": 1,
                                               "gennorm (MLE)": 2,
                                               "gennorm (fit to δ curve)": 2,
                                               "empirical (1001 quantiles)": 1002}[law]}
    pooled = np.concatenate(list(matrices.values()))
    pooled_measured = magnitude_pruning_distortion(pooled, rho)
    pooled_laplace = LaplaceLaw(np.mean(np.abs(pooled))).delta(rho)
    return {
        "histogram": _histogram(pooled),
        "rho": rho.tolist(), "n_weights": int(pooled.size), "n_matrices": len(matrices),
        "measured": total_measured.tolist(), "laws": laws, "fits": fits,
        "pooled": {
            "mean_abs": float(np.mean(np.abs(pooled))), "std": float(np.std(pooled)),
            "excess_kurtosis": float(np.mean(pooled**4) / np.mean(pooled**2) ** 2 - 3),
            "global_measured_over_laplace": (pooled_measured / pooled_laplace).tolist(),
        },
    }


def _histogram(w: np.ndarray) -> dict[str, list[float]]:
    """Density of the pooled weights on a symmetric grid, with the ML fits' densities."""
    from scipy import stats

    edge = float(np.quantile(np.abs(w), 0.9999))
    edges = np.linspace(-edge, edge, 201)
    density, _ = np.histogram(w, bins=edges, density=True)
    centres = (edges[:-1] + edges[1:]) / 2
    mle = gennorm_mle(w)
    b = float(np.mean(np.abs(w)))
    sigma = float(np.sqrt(np.mean(w * w)))
    return {"centres": centres.tolist(), "density": density.tolist(),
            "laplace": stats.laplace.pdf(centres, scale=b).tolist(),
            "gaussian": stats.norm.pdf(centres, scale=sigma).tolist(),
            "gennorm": stats.gennorm.pdf(centres, mle.beta, scale=mle.scale).tolist(),
            "gennorm_beta": mle.beta}


def _run(model: Callable[[dict[str, torch.Tensor]], torch.Tensor],
         batches: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(b) for b in batches])


def _pruned_outputs(loaded: LoadedModel, split: int, rho_device: float, rho_server: float,
                    rule: str, texts: Texts, batches: Sequence[dict[str, torch.Tensor]],
                    input_norms: Sequence[dict[str, torch.Tensor]] | None = None
                    ) -> tuple[torch.Tensor, float]:
    pruned = prune_split_model(loaded, split, rho_device, rho_server, rule,  # type: ignore[arg-type]
                               calibration=texts.calibration if rule == "wanda" else None,
                               input_norms=input_norms)
    d_w = sum(r.parameter_distortion for r in pruned.reports.values()
              if not math.isnan(r.parameter_distortion))
    return _run(pruned, batches), d_w


def output_bound(loaded: LoadedModel, texts: Texts, ratios: Sequence[float],
                 reference: dict[str, torch.Tensor], progress: Progress,
                 heldout_outputs: dict[float, torch.Tensor]) -> dict[str, Any]:
    """D_y and D_w for whole-model magnitude pruning; K̂ from calibration, checked held-out.
    The held-out outputs are left in `heldout_outputs` (by ratio) for the rule comparison."""
    n = loaded.n_units
    rows = []
    task = progress.add_task("output bound (magnitude)", total=len(ratios))
    for rho in ratios:
        pruned = prune_split_model(loaded, n, rho, 0.0, "magnitude")
        d_w = pruned.reports["device"].parameter_distortion
        cal = output_distortion_per_input(reference["calibration"],
                                          _run(pruned, texts.calibration))
        heldout_outputs[rho] = _run(pruned, texts.heldout)
        held = output_distortion_per_input(reference["heldout"], heldout_outputs[rho])
        rows.append({"rho": rho, "d_w": d_w, "d_y_calibration_mean": float(cal.mean()),
                     "d_y_calibration_max": float(cal.max()), "d_y_heldout_mean":
                     float(held.mean()), "d_y_heldout_max": float(held.max()),
                     "k_calibration_max": float(cal.max() / d_w)})
        progress.advance(task)
    k_hat = max(r["k_calibration_max"] for r in rows)
    for r in rows:
        r["k_hat_d_w"] = k_hat * r["d_w"]
        r["bound_holds_heldout_mean"] = r["d_y_heldout_mean"] <= r["k_hat_d_w"]
        r["bound_holds_every_heldout_input"] = r["d_y_heldout_max"] <= r["k_hat_d_w"]
    return {"k_hat": k_hat, "rows": rows,
            "holds_on_heldout_mean_at_every_ratio": all(r["bound_holds_heldout_mean"]
                                                        for r in rows),
            "holds_for_every_heldout_input_at_every_ratio": all(
                r["bound_holds_every_heldout_input"] for r in rows),
            "d_y_over_d_w_mean": [r["d_y_heldout_mean"] / r["d_w"] for r in rows]}


def side_constants(loaded: LoadedModel, texts: Texts, reference: torch.Tensor, split: int,
                   progress: Progress) -> dict[str, Any]:
    """k_device, k_server at one split (one side pruned at a time), and per-unit k_u (one block
    pruned at ρ = 0.5): max over ratios of mean held-out D_y / D_w."""
    out: dict[str, Any] = {"split": split}
    task = progress.add_task("per-side and per-unit sensitivity",
                             total=2 * len(SIDE_RATIOS) + loaded.n_layers)
    for side in ("device", "server"):
        ks = []
        for rho in SIDE_RATIOS:
            rd, rs = (rho, 0.0) if side == "device" else (0.0, rho)
            y, d_w = _pruned_outputs(loaded, split, rd, rs, "magnitude", texts, texts.heldout)
            ks.append(float(output_distortion_per_input(reference, y).mean()) / d_w)
            progress.advance(task)
        out[f"k_{side}"] = max(ks)
        out[f"k_{side}_by_ratio"] = dict(zip(SIDE_RATIOS, ks, strict=True))
    per_unit = []
    for block in range(1, loaded.n_layers + 1):
        y, d_w = _single_block_outputs(loaded, block, 0.5, texts)
        per_unit.append(float(output_distortion_per_input(reference, y).mean()) / d_w)
        progress.advance(task)
    out["k_by_block"] = per_unit
    return out


def _single_block_outputs(loaded: LoadedModel, block: int, rho: float,
                          texts: Texts) -> tuple[torch.Tensor, float]:
    """Outputs with only block `block` (1-based) magnitude-pruned at ρ, and its D_w."""
    import copy

    from laimco.pruning import apply_masks, linear_weights, magnitude_masks, parameter_distortion

    clone = copy.copy(loaded)
    clone.model = copy.deepcopy(loaded.model)
    layer = block_modules(clone.model, clone.family)[block - 1]
    weights = linear_weights(layer)
    original = {k: w.detach().clone() for k, w in weights.items()}
    apply_masks(layer, magnitude_masks(weights, rho))
    d_w = parameter_distortion(original, linear_weights(layer))
    return _run(lambda b: run_full(clone, b), texts.heldout), d_w


def rule_quality(loaded: LoadedModel, texts: Texts, reference: torch.Tensor,
                 ratios: Sequence[float], progress: Progress,
                 magnitude_outputs: dict[float, torch.Tensor]) -> dict[str, Any]:
    """Cosine to the dense embedding, retrieval agreement@10 and D_y per rule and ratio
    (whole-model magnitude outputs are reused from the output-bound measurement)."""
    rules = ("magnitude", "wanda", "structured")
    out: dict[str, Any] = {"ratios": list(ratios)}
    # Wanda's input norms come from the dense model: measure them once for every ratio
    dense = prune_split_model(loaded, loaded.n_units, 0.0, 0.0)
    norms = calibration_norms([dense.device.model, None], texts.calibration, dense.device,
                              dense.server)
    task = progress.add_task("quality per pruning rule", total=len(rules) * len(ratios))
    for rule in rules:
        rows = []
        for rho in ratios:
            if rule == "magnitude" and rho in magnitude_outputs:
                y = magnitude_outputs[rho]
            else:
                y, _ = _pruned_outputs(loaded, loaded.n_units, rho, 0.0, rule, texts,
                                       texts.heldout, norms if rule == "wanda" else None)
            rows.append({"rho": rho,
                         "d_y": float(output_distortion_per_input(reference, y).mean()),
                         "cosine": mean_cosine_similarity(reference, y),
                         "retrieval_agreement_at_10": retrieval_agreement_at_k(
                             reference, y, RETRIEVAL_K)})
            progress.advance(task)
        out[rule] = rows
    at_half = {rule: next(r["d_y"] for r in out[rule] if abs(r["rho"] - 0.5) < 1e-9)
               for rule in rules if any(abs(r["rho"] - 0.5) < 1e-9 for r in out[rule])}
    if "wanda" in at_half:
        out["wanda_over_magnitude_d_y_at_0.5"] = at_half["wanda"] / at_half["magnitude"]
    return out


def structured_timing(loaded: LoadedModel, progress: Progress, rounds: int = 9
                      ) -> dict[str, Any]:
    """CPU forward time of all blocks, structurally pruned at ρ, relative to dense (one thread,
    a fixed batch of 4 × 128 tokens), against the FLOP prediction.

    The models run round-robin (dense, then each ratio, in every round) and the reported ratio
    is the median over rounds of time/dense within the round: a burst of load on a shared
    machine slows a whole round, not one model, so it cancels in the ratio."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hidden = torch.randn(4, 128, int(loaded.config.hidden_size),
                             generator=torch.Generator().manual_seed(0))
        crossing = {"hidden_states": hidden, "attention_mask": torch.ones(4, 128,
                                                                          dtype=torch.long)}
        models = [prune_split_model(loaded, 1, 0.0, rho, "structured")
                  for rho in STRUCTURED_RATIOS]
        samples: list[list[float]] = [[] for _ in models]
        task = progress.add_task("structured pruning timing", total=rounds + 1)
        with torch.no_grad():
            for round_ in range(rounds + 1):  # round 0 warms up
                for model, times in zip(models, samples, strict=True):
                    started = time.perf_counter()
                    model.server(crossing)
                    if round_:
                        times.append(time.perf_counter() - started)
                progress.advance(task)
    finally:
        torch.set_num_threads(threads)
    dense = samples[0]
    rows = []
    for rho, model, times in zip(STRUCTURED_RATIOS, models, samples, strict=True):
        removed = model.reports["server"].sparsity
        rows.append({"rho": rho, "removed_fraction": removed,
                     "median_s": statistics.median(times),
                     "time_ratio": statistics.median(t / d for t, d in zip(times, dense,
                                                                            strict=True)),
                     "predicted_ratio_linear_only": 1 - removed})
    return {"rows": rows, "threads": 1, "batch": [4, 128], "rounds": rounds}


def analyze(model: str = "minilm", out: str | Path = "reports/minilm", *, quick: bool = False,
            split: int = 3, rules: Sequence[str] = ()) -> dict[str, Any]:
    """Run the whole analysis and write figures, analysis.json, analysis.md and profile.json;
    `rules` adds the measured costs of those pruning rules to profile.json (docs/theory.md §5),
    which the calibrated scenario mode needs."""
    from laimco.measure.rule_measurement import MEASURED_RULES

    for rule in rules:
        if rule not in MEASURED_RULES:
            raise ValueError(f"--rules: no measurement for {rule!r}; choose among "
                             f"{', '.join(MEASURED_RULES)}")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    loaded = load_model(model)
    if loaded.family != "bert":
        raise ValueError(f"laimco analyze measures sentence embeddings: {loaded.name} is a "
                         f"{loaded.family} model; use a BERT-style encoder")
    # 160 calibration and 320 held-out sentences (≈ 13 k sentence forwards, compute-bound:
    # ≈ 2 s per 320 sentences on 2 cores) keep the whole analysis near 2 minutes of wall time
    # (benchmarks/bench_analyze.py); --quick uses 64 and 128
    cal = calibration_sentences()[:64 if quick else 160]
    held = heldout_sentences()[:128 if quick else 320]
    # batches of similar lengths carry little padding (order does not matter to any metric)
    cal, held = sorted(cal, key=len), sorted(held, key=len)
    texts = Texts(calibration=list(text_batches(loaded, cal)),
                  heldout=list(text_batches(loaded, held)))
    ratios = QUICK_RATIOS if quick else OUTPUT_RATIOS
    result: dict[str, Any] = {"model": loaded.name, "n_calibration": len(cal),
                              "n_heldout": len(held), "quick": quick}
    timings: dict[str, float] = {}

    def timed(name: str, func: Callable[[], Any]) -> Any:
        begun = time.perf_counter()
        value = func()
        timings[name] = time.perf_counter() - begun
        return value

    with Progress(transient=True) as progress:
        t = progress.add_task("weights: law fits", total=1)
        result["laws"] = timed("laws", lambda: law_accuracy(_weights_by_matrix(loaded)))
        progress.advance(t)
        reference = timed("dense", lambda: {
            "calibration": _run(lambda b: run_full(loaded, b), texts.calibration),
            "heldout": _run(lambda b: run_full(loaded, b), texts.heldout)})
        magnitude_outputs: dict[float, torch.Tensor] = {}
        result["bound"] = timed("bound", lambda: output_bound(
            loaded, texts, ratios, reference, progress, magnitude_outputs))
        result["bound"]["lipschitz"] = timed("lipschitz", lambda: lipschitz_estimate(
            loaded, texts.calibration))
        result["sides"] = timed("sides", lambda: side_constants(
            loaded, texts, reference["heldout"], split, progress))
        result["quality"] = timed("quality", lambda: rule_quality(
            loaded, texts, reference["heldout"], QUICK_RATIOS, progress, magnitude_outputs))
        result["structured_timing"] = timed("structured", lambda: structured_timing(
            loaded, progress))
        if rules:
            from laimco.measure.rule_measurement import measure_rule_costs

            result["rule_costs"] = timed("rules", lambda: measure_rule_costs(
                loaded, profile_model(loaded)["units"], texts.calibration, rules,
                progress=progress))
        result["profile"] = timed("profile", lambda: _export_profile(
            loaded, result, out / "profile.json"))
    result["timings_s"] = timings
    result["elapsed_s"] = time.perf_counter() - started
    result["figures"] = write_figures(result, out)
    (out / "analysis.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    (out / "analysis.md").write_text(report_markdown(result))
    return result


def _export_profile(loaded: LoadedModel, result: dict[str, Any], path: Path) -> str:
    """The model's profile with per-unit distortion-curve gennorm fits (pooled over the unit's
    matrices) and the measured output sensitivities, for scenarios to use."""
    from laimco.models.profiler import save_profile

    profile = profile_model(loaded, name=f"{loaded.name}-analyzed")
    fits = result["laws"]["fits"]
    rho = LAW_RATIOS
    matrices = _weights_by_matrix(loaded)
    for index, unit in enumerate(profile["units"]):
        names = [k for k in fits if _unit_index(k, loaded) == index]
        if not names:
            continue
        pooled = np.concatenate([matrices[k] for k in names])
        curve = fit_gennorm_to_distortion(rho, magnitude_pruning_distortion(pooled, rho))
        unit["gennorm_beta"], unit["gennorm_scale"] = curve.shape, curve.scale
        unit["gennorm_fit"] = "distortion curve, ρ = 0.05…0.95 (laimco analyze)"
        block = int(unit["name"].removeprefix("block")) if unit["name"].startswith("block") else 0
        if block:
            unit["output_sensitivity"] = result["sides"]["k_by_block"][block - 1]
    profile["output_sensitivity"] = {
        "k_device": result["sides"]["k_device"], "k_server": result["sides"]["k_server"],
        "at_split": result["sides"]["split"], "k_hat_whole_model": result["bound"]["k_hat"]}
    if "rule_costs" in result:
        costs = result.pop("rule_costs")
        profile["rules"], profile["execution"] = costs.rules, costs.execution
    save_profile(profile, path)
    return str(path)


def _unit_index(matrix_name: str, loaded: LoadedModel) -> int:
    """Unit index (embeddings = 0, block i = i) of a prunable matrix by its parameter name."""
    from laimco.models.units import model_units, unit_parameters

    for index, unit in enumerate(unit_parameters(model_units(loaded))):
        if any(name == matrix_name for name, _ in unit.prunable):
            return index
    return -1


def report_markdown(result: dict[str, Any]) -> str:
    """analysis.md: each finding stated with its number."""
    laws = result["laws"]
    best_param = min((v["worst_relative_error"], k) for k, v in laws["laws"].items()
                     if v["parameters_per_matrix"] <= 3)
    bound = result["bound"]
    sides = result["sides"]
    quality = result["quality"]
    timing = result["structured_timing"]["rows"]
    every_input = bound["holds_for_every_heldout_input_at_every_ratio"]
    rho = laws["rho"]
    lines = [
        f"# Theory on real weights: {result['model']}",
        "",
        f"{laws['n_weights']:,} prunable weights in {laws['n_matrices']} matrices; "
        f"{result['n_calibration']} calibration and {result['n_heldout']} held-out sentences "
        f"(shipped corpus); run took {result['elapsed_s']:.0f} s"
        + (" (quick mode)." if result["quick"] else "."),
        "",
        "## 1. Distortion laws against measured magnitude pruning",
        "",
        "Each matrix pruned at ρ, parameter distortion summed over matrices, ρ = "
        f"{rho[0]}…{rho[-1]}.",
        "",
        "| law | parameters per matrix | worst error (total) | at ρ | worst error (any matrix) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, v in laws["laws"].items():
        lines.append(f"| {name} | {v['parameters_per_matrix']} | "
                     f"{v['worst_relative_error']:.2%} | {v['worst_at_rho']:.2f} | "
                     f"{v['worst_relative_error_any_matrix']:.2%} |")
    pooled = laws["pooled"]
    lines += [
        "",
        f"- Best law with ≤ 3 parameters per matrix: **{best_param[1]}**, worst error "
        f"{best_param[0]:.2%} over ρ ∈ [0.05, 0.95] (target ≤ 3%: "
        f"{'met' if best_param[0] <= 0.03 else 'NOT met'}).",
        f"- Pooled weights: mean |w| = {pooled['mean_abs']:.4f}, std {pooled['std']:.4f}, "
        f"excess kurtosis {pooled['excess_kurtosis']:.1f}. Global magnitude pruning over the "
        f"Laplace closed form: ×{pooled['global_measured_over_laplace'][1]:.2f} at ρ = 0.1, "
        f"×{pooled['global_measured_over_laplace'][9]:.2f} at 0.5, "
        f"×{pooled['global_measured_over_laplace'][17]:.2f} at 0.9 — Laplace is tight only at "
        "high ratios.",
        "- Maximum likelihood fits the bulk and the heavy tail of the weights together; the "
        "curve fit targets δ(ρ) itself, which pruning at ρ ≤ 0.95 never takes from the tail.",
        "",
        "## 2. Output bound D_y ≤ K·D_w",
        "",
        f"K̂ = {bound['k_hat']:.4g} (max over calibration inputs and ratios of D_y/D_w). "
        f"Held out, mean D_y ≤ K̂·D_w at every ratio: "
        f"**{'yes' if bound['holds_on_heldout_mean_at_every_ratio'] else 'NO'}**; for every "
        f"single held-out input: {'yes' if every_input else 'no'}.",
        "",
        "| ρ | D_w | mean D_y held out | K̂·D_w | mean D_y / D_w |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in bound["rows"]:
        lines.append(f"| {r['rho']:.1f} | {r['d_w']:.4g} | {r['d_y_heldout_mean']:.4g} | "
                     f"{r['k_hat_d_w']:.4g} | {r['d_y_heldout_mean'] / r['d_w']:.3g} |")
    lip = bound["lipschitz"]
    tight = [(r["rho"], r["d_y_heldout_mean"] / r["k_hat_d_w"]) for r in bound["rows"]]
    lines += [
        "",
        f"- D_y/D_w goes from {bound['d_y_over_d_w_mean'][0]:.3g} at ρ = "
        f"{bound['rows'][0]['rho']} to {bound['d_y_over_d_w_mean'][-1]:.3g} at ρ = "
        f"{bound['rows'][-1]['rho']}. Tightness D_y/(K̂·D_w) is {tight[0][1]:.2f} at ρ = "
        f"{tight[0][0]} and {tight[-1][1]:.2f} at ρ = {tight[-1][0]}: the bound is tightest "
        f"at {'low' if tight[0][1] > tight[-1][1] else 'high'} ratios here. (The embeddings "
        "are L2-normalized, so D_y saturates at high ratios while D_w keeps growing; the "
        "paper reports the bound tight at high ratios for unnormalized outputs.)",
        f"- Analytic estimate from per-layer spectral norms and measured input norms: "
        f"K_lip = {lip['k_lipschitz']:.3g}, {lip['k_lipschitz'] / bound['k_hat']:.3g}× the "
        "calibrated K̂ (not a proven bound: attention and LayerNorm are only locally "
        "Lipschitz; see docs/theory.md §3.12).",
        "",
        f"## 3. Per-side constants at split {sides['split']}",
        "",
        f"- k_device = {sides['k_device']:.4g}, k_server = {sides['k_server']:.4g} "
        "(max over ρ ∈ {0.3, 0.6, 0.9} of mean held-out D_y/D_w, one side pruned).",
        "- Per-block sensitivity (block pruned alone at ρ = 0.5): "
        + ", ".join(f"block {i + 1}: {k:.3g}" for i, k in enumerate(sides["k_by_block"])),
        "",
        "## 4. Pruning rules",
        "",
        "| rule | ρ | cosine | retrieval agreement@10 | D_y |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rule in ("magnitude", "wanda", "structured"):
        for r in quality[rule]:
            lines.append(f"| {rule} | {r['rho']:.1f} | {r['cosine']:.4f} | "
                         f"{r['retrieval_agreement_at_10']:.3f} | {r['d_y']:.4g} |")
    if "wanda_over_magnitude_d_y_at_0.5" in quality:
        ratio = quality["wanda_over_magnitude_d_y_at_0.5"]
        lines += ["", f"- Wanda's output distortion at ρ = 0.5 is {ratio:.3f}× magnitude's "
                  f"(target ≤ 0.5: {'met' if ratio <= 0.5 else 'NOT met'})."]
    lines += [
        "",
        "## 5. Structured pruning: real speed-up",
        "",
        "| ρ | weights removed | forward time / dense | (1 − removed) |",
        "| --- | --- | --- | --- |",
    ]
    for r in timing:
        lines.append(f"| {r['rho']:.2f} | {r['removed_fraction']:.3f} | "
                     f"{r['time_ratio']:.3f} | {r['predicted_ratio_linear_only']:.3f} |")
    lines += ["", "Figures: " + ", ".join(f"`{Path(f).name}`" for f in result["figures"]), ""]
    return "\n".join(lines)
