"""`laimco evaluate`: every strategy's decision applied to the real model, predicted against
measured (docs/evaluate.md).

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
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from laimco.config import Scenario, load_scenario
from laimco.data import calibration_sentences, heldout_sentences
from laimco.experiments.text_batches import text_batches
from laimco.measure.metrics import (
    cosine_similarity,
    output_distortion,
    retrieval_agreement_at_k,
)
from laimco.models.loading import LoadedModel, load_model
from laimco.models.pruned import PrunedSplit, prune_split_model
from laimco.models.split import run_full
from laimco.optimize import solve
from laimco.optimize.decision import OperatingPoint
from laimco.optimize.strategies import STRATEGIES
from laimco.profile import ModelProfile, load_profile

# the generic-solver baselines (slsqp, alternating) decide as joint does to 1e-4 and take
# seconds per rule pair; the study reports their gap and time, --strategies adds them here
DEFAULT_STRATEGIES = tuple(name for name, spec in STRATEGIES.items() if not spec.generic)
LIMIT_TOLERANCE = 0.02  # a measured cost may exceed its limit by 2 % (timing noise) and hold
TIMING_ROUNDS = 15
OBJECTIVE_MARGIN = 0.05  # rank agreement: objectives at least 5 % apart ...
SIGNIFICANCE_SE = 3.0  # ... and measured losses more than 3 paired standard errors apart


class EvaluateError(ValueError):
    """Input `laimco evaluate` cannot use; the message says what to change."""


@dataclass(frozen=True)
class Measurement:
    """What one pruned split model does on held-out text and on this CPU."""

    loss_per_input: np.ndarray
    retrieval_at_10: float
    output_distortion: float
    device_time_ratio: float
    server_time_ratio: float
    device_stored_bytes: float


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


def _timing_ratios(pruned: PrunedSplit, dense: PrunedSplit, crossing: dict[str, torch.Tensor],
                   rounds: int) -> tuple[float, float]:
    """Median over rounds of t_pruned/t_dense for the device and the server part, run
    alternately on one thread and timed by the thread's CPU time (as the profile's execution
    section is, eq. 5.4: insensitive to other load on the machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ratios: dict[str, list[float]] = {"device": [], "server": []}
    try:
        with torch.no_grad():
            for round_ in range(rounds + 1):
                dense_hidden = dense.device(crossing)
                pruned_hidden = pruned.device(crossing)
                times = {}
                for name, part, arg in (("dense_device", dense.device, crossing),
                                        ("pruned_device", pruned.device, crossing),
                                        ("dense_server", dense.server, dense_hidden),
                                        ("pruned_server", pruned.server, pruned_hidden)):
                    started = time.thread_time()
                    part(arg)
                    times[name] = time.thread_time() - started
                if round_:  # round 0 warms up
                    for side in ("device", "server"):
                        d = times[f"dense_{side}"]
                        ratios[side].append(times[f"pruned_{side}"] / d if d > 0 else 1.0)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(ratios["device"]), statistics.median(ratios["server"])


def _stored_bytes(pruned: PrunedSplit, bytes_per_weight: float) -> float:
    """Bytes of the device part's weights as held for execution: every parameter tensor
    (masked matrices stay dense), CSR weights as values + indices."""
    from laimco.pruning.sparse_kernels import CsrLinear

    model = pruned.device.model
    if model is None:
        return 0.0
    total = 0.0
    for module in model.modules():
        if isinstance(module, CsrLinear):
            total += module.stored_bytes(bytes_per_weight)
        total += sum(p.numel() for p in module.parameters(recurse=False)) * bytes_per_weight
    return total


class Evaluator:
    """Measures decisions on one loaded model, each distinct decision once."""

    def __init__(self, loaded: LoadedModel, n_sentences: int, timing_rounds: int) -> None:
        self.loaded = loaded
        self.timing_rounds = timing_rounds
        sentences = heldout_sentences()[:n_sentences]
        self.batches = list(text_batches(loaded, sentences))
        self.calibration = list(text_batches(loaded, calibration_sentences()[:64]))
        with torch.no_grad():
            self.reference = torch.cat([run_full(loaded, b) for b in self.batches])
        tokens = loaded.tokenizer(sentences[:1], padding="max_length", truncation=True,
                                  max_length=128, return_tensors="pt")
        self.crossing = {"input_ids": tokens["input_ids"],
                         "attention_mask": tokens["attention_mask"]}
        self._dense: dict[int, PrunedSplit] = {}
        self._cache: dict[tuple[Any, ...], Measurement] = {}

    def measure(self, decision: OperatingPoint, bytes_per_weight: float) -> Measurement:
        rho_d, rho_s = decision.rho_device, decision.rho_server
        rule_d = decision.rule_device or "magnitude"
        rule_s = decision.rule_server or "magnitude"
        key = (decision.split, rule_d if rho_d > 0 else "-", rule_s if rho_s > 0 else "-",
               round(rho_d, 9), round(rho_s, 9), bytes_per_weight)
        if key not in self._cache:
            self._cache[key] = self._measure(decision.split, rule_d, rule_s, rho_d, rho_s,
                                             bytes_per_weight)
        return self._cache[key]

    def _measure(self, split: int, rule_d: str, rule_s: str, rho_d: float, rho_s: float,
                 bytes_per_weight: float) -> Measurement:
        pruned = prune_split_model(
            self.loaded, split, rho_d, rho_s, rule_d,  # type: ignore[arg-type]
            calibration=self.calibration if "wanda" in (rule_d, rule_s) else None,
            rule_server=rule_s)  # type: ignore[arg-type]
        if split not in self._dense:
            self._dense[split] = prune_split_model(self.loaded, split, 0.0, 0.0)
        with torch.no_grad():
            outputs = torch.cat([pruned(b) for b in self.batches])
        loss = (1 - cosine_similarity(self.reference, outputs)).double().numpy()
        # a side pruned at ratio 0 runs exactly the dense part: its time ratio is 1 by definition
        ratio_d, ratio_s = 1.0, 1.0
        if rho_d > 0 or rho_s > 0:
            ratio_d, ratio_s = _timing_ratios(pruned, self._dense[split], self.crossing,
                                              self.timing_rounds)
            ratio_d = ratio_d if rho_d > 0 else 1.0
            ratio_s = ratio_s if rho_s > 0 else 1.0
        return Measurement(
            loss_per_input=loss,
            retrieval_at_10=float(retrieval_agreement_at_k(self.reference, outputs, 10)),
            output_distortion=output_distortion(self.reference, outputs),
            device_time_ratio=ratio_d, server_time_ratio=ratio_s,
            device_stored_bytes=_stored_bytes(pruned, bytes_per_weight))


def _measured_costs(scenario: Scenario, profile: ModelProfile, decision: OperatingPoint,
                    m: Measurement) -> dict[str, Any]:
    """Emulated latency and energy of a measured decision (docs/runtime.md emulation rule)."""
    s = decision.split
    table = profile.split_table()
    dense_device = float(table.flops_prunable_device[s] + table.flops_fixed_device[s])
    dense_server = float(table.flops_prunable_server[s] + table.flops_fixed_server[s])
    f_d, f_s = decision.freq_device_hz, decision.freq_server_hz
    t_device = (m.device_time_ratio * dense_device / (scenario.device.flops_per_cycle * f_d)
                if dense_device > 0 else 0.0)
    t_server = (m.server_time_ratio * dense_server / (scenario.server.flops_per_cycle * f_s)
                if dense_server > 0 else 0.0)
    channel = scenario.channel.to_channel()
    bits = float(profile.split_table().upload_bits[s])
    power = decision.power_w
    t_up = float(channel.upload_time_s(bits, power, channel.design_gain())) if bits > 0 else 0.0
    t_down = scenario.task.downlink_s if s < profile.n_units else 0.0  # eq. 2.13
    total = t_device + t_up + t_server + t_down
    e_compute = scenario.device.kappa * f_d ** 2 * t_device * f_d
    e_up = power * t_up
    usage = {"latency": total / scenario.task.latency_budget_s,
             "energy": (e_compute + e_up) / scenario.device.energy_budget_j}
    if scenario.device.memory_bytes is not None:
        usage["memory"] = m.device_stored_bytes / scenario.device.memory_bytes
    n = m.loss_per_input.size
    mean = float(m.loss_per_input.mean())
    half = 1.96 * float(m.loss_per_input.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return {
        "loss_mean": mean, "loss_ci95": [mean - half, mean + half],
        "retrieval_at_10": m.retrieval_at_10, "output_distortion": m.output_distortion,
        "latency_s": {"device": t_device, "uplink": t_up, "server": t_server,
                      "downlink": t_down, "total": total},
        "energy_j": {"compute": e_compute, "uplink": e_up, "total": e_compute + e_up},
        "device_stored_bytes": m.device_stored_bytes,
        "time_ratio": {"device": m.device_time_ratio, "server": m.server_time_ratio},
        "limit_usage": usage,
        "limits_hold": all(u <= 1 + LIMIT_TOLERANCE for u in usage.values()),
    }


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a − b over the same inputs and its standard error (0 for one input)."""
    diff = a - b
    se = float(diff.std(ddof=1)) / math.sqrt(diff.size) if diff.size > 1 else 0.0
    return float(diff.mean()), se


def _scenario_digest(scenario_path: Path, scenario: Scenario, n_sentences: int) -> str:
    """The resume key of a scenario: its file, its profile (the file's bytes, or the built-in
    name) and the number of held-out sentences."""
    candidate = Path(scenario.model.profile)
    profile = candidate.read_bytes() if candidate.is_file() else scenario.model.profile.encode()
    return hashlib.sha256(scenario_path.read_bytes() + profile
                          + f"|{n_sentences}".encode()).hexdigest()


def rank_agreement(rows: Sequence[dict[str, Any]],
                   losses: dict[int, np.ndarray]) -> dict[str, Any]:
    """Pairs of decisions of the same objective mode whose objectives differ by more than 5 %
    and whose paired measured losses differ by more than 3 standard errors: how often the
    objective's order is the measured order."""
    pairs = agreeing = 0
    disagreements = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if a["mode"] != b["mode"]:
                continue
            lo, hi = sorted((a["objective"], b["objective"]))
            if hi <= lo * (1 + OBJECTIVE_MARGIN):
                continue
            mean, se = paired_difference(losses[a["id"]], losses[b["id"]])
            if abs(mean) <= SIGNIFICANCE_SE * se:
                continue
            pairs += 1
            if (a["objective"] < b["objective"]) == (mean < 0):
                agreeing += 1
            else:
                disagreements.append([a["label"], b["label"]])
    return {"pairs": pairs, "agreeing": agreeing, "disagreeing_pairs": disagreements[:50]}


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
    with Progress(disable=not progress) as bar:
        task = bar.add_task("evaluate", total=len(scenarios) * len(strategies))
        for f, sc in scenarios:
            profile = load_profile(sc.model.profile)
            entry: dict[str, Any] = {"scenario": str(f), "mode": sc.distortion.mode,
                                     "strategies": []}
            digest = _scenario_digest(f, sc, n_sentences)
            for strategy in strategies:
                key = hashlib.sha256(f"{digest}|{strategy}".encode()).hexdigest()[:16]
                saved = partial / f"{f.stem}--{strategy}--{key}.json"
                if saved.is_file():
                    row = json.loads(saved.read_text())
                else:
                    decision = solve(sc, strategy, profile=profile)
                    row = {"strategy": strategy, "decision": decision.to_json_dict(),
                           "measured": None}
                    if decision.point is not None:
                        m = evaluator.measure(decision.point, sc.model.bytes_per_weight)
                        row["measured"] = _measured_costs(sc, profile, decision.point, m)
                        row["loss_per_input"] = [float(v) for v in m.loss_per_input]
                    tmp = saved.with_suffix(".tmp")
                    tmp.write_text(json.dumps(row))
                    tmp.replace(saved)
                per_input = row.pop("loss_per_input", None)
                row["partial"] = saved.name  # the per-input losses, for paired comparisons
                if row["measured"] is not None and per_input is not None:
                    ident = len(losses)
                    losses[ident] = np.asarray(per_input)
                    flat.append({"id": ident, "mode": sc.distortion.mode,
                                 "objective": row["decision"]["objective"],
                                 "loss": row["measured"]["loss_mean"],
                                 "label": f"{f.stem}:{strategy}", "scenario": f.stem,
                                 "strategy": strategy, "decision": row["decision"],
                                 "measured": row["measured"]})
                entry["strategies"].append(row)
                bar.advance(task)
            results.append(entry)
    report: dict[str, Any] = {"scenarios": results, "rank_agreement": rank_agreement(flat, losses),
                              "held_out_sentences": n_sentences,
                              "limit_tolerance": LIMIT_TOLERANCE}
    report["targets"] = _targets(flat, losses)
    from laimco.experiments.evaluate_report import write_figures, write_markdown

    figures = write_figures(flat, out)
    (out / "evaluate.json").write_text(json.dumps(report, indent=1))
    (out / "evaluate.md").write_text(write_markdown(report, flat, figures))
    return report


def _targets(flat: Sequence[dict[str, Any]], losses: dict[int, np.ndarray]) -> dict[str, Any]:
    """The issue's targets per objective mode: predicted vs measured cost, feasibility when
    executed, and the joint decision against the best measured decision that meets its limits
    when executed (joint must meet its own)."""
    out: dict[str, Any] = {}
    for mode in sorted({r["mode"] for r in flat}):
        rows = [r for r in flat if r["mode"] == mode]
        worst_latency = worst_energy = 0.0
        broken = []
        for r in rows:
            pred, meas = r["decision"], r["measured"]
            worst_latency = max(worst_latency, abs(meas["latency_s"]["total"]
                                                   / pred["latency_s"]["total"] - 1))
            if pred["energy_j"]["total"] > 0:
                worst_energy = max(worst_energy, abs(meas["energy_j"]["total"]
                                                     / pred["energy_j"]["total"] - 1))
            if max(meas["limit_usage"].values()) > 1.10:
                broken.append(r["label"])
        joint_gaps = {}
        for scenario in sorted({r["scenario"] for r in rows}):
            here = [r for r in rows if r["scenario"] == scenario]
            holding = [r for r in here if r["measured"]["limits_hold"]]
            joint = [r for r in here if r["strategy"] == "joint"]
            if not holding or not joint:
                continue
            best = min(holding, key=lambda r: r["loss"])
            mean, se = paired_difference(losses[joint[0]["id"]], losses[best["id"]])
            holds = bool(joint[0]["measured"]["limits_hold"])
            joint_gaps[scenario] = {"best_strategy": best["strategy"],
                                    "joint_holds_its_limits": holds,
                                    "joint_minus_best_loss": mean, "paired_se": se,
                                    "within_3_se": holds and mean <= 3 * se + 1e-15}
        out[mode] = {"decisions": len(rows), "worst_latency_relative_error": worst_latency,
                     "worst_energy_relative_error": worst_energy,
                     "broken_by_more_than_10_percent": broken,
                     "joint_vs_best_measured": joint_gaps}
    return out
