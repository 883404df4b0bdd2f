"""Measured quality of the compressed uplink for the study (docs/study.md, "Compressed
uplink"; docs/theory.md §6): held-out loss 1 − cosine of

- the joint decision of the calibrated phone scenario at a few uplink bandwidths, with the
  activation width chosen by the optimizer and with float32 only, each applied to the real
  model as `laimco evaluate` applies it (`evaluate_measure.Evaluator`: pruned split, crossing
  activation sent through the quantizer, real tokens only);
- the dense model split at s with only the crossing activation quantized to b bits (real
  tokens, as the device client sends it), for every split and every width the profile
  measured, next to the profile's D_q(s, b) / 2 (D_y = 2·(1 − cos) per input, so D_q / 2 is
  the loss it predicts).

Needs torch and the MiniLM weights. The result is cached in one JSON file under the key of
its inputs, so a rerun of the study measures nothing again."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

CACHE_VERSION = 1  # part of the cache key: bump when what is measured changes meaning


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BitsQuality(_Frozen):
    """The dense model with only the activation at `split` quantized to `bits` bits."""

    split: int
    bits: int
    loss_mean: float  # held-out 1 − cosine against the dense float32 output
    loss_se: float  # its standard error over held-out inputs
    predicted_loss: float  # the profile's D_q(s, b) / 2 (measured on calibration text)


class DecisionQuality(_Frozen):
    """The joint decision at one bandwidth, executed on held-out text."""

    bandwidth_hz: float
    compressed: bool  # True: widths chosen by the optimizer; False: float32 only
    split: int
    activation_bits: int | None  # None: nothing crosses (s = 0 or L)
    objective: float
    loss_per_input: tuple[float, ...]

    @property
    def loss_mean(self) -> float:
        return math.fsum(self.loss_per_input) / len(self.loss_per_input)


class UplinkQuality(_Frozen):
    """Everything the study measures of the compressed uplink on the real model."""

    key: str
    sentences: int
    per_bits: tuple[BitsQuality, ...]
    decisions: tuple[DecisionQuality, ...]

    def decision(self, bandwidth_hz: float, compressed: bool) -> DecisionQuality | None:
        return next((d for d in self.decisions if d.compressed == compressed
                     and math.isclose(d.bandwidth_hz, bandwidth_hz, rel_tol=1e-9)), None)


def measured_bandwidths(values: Iterable[float], count: int = 4) -> list[float]:
    """`count` bandwidths spread evenly (by index) over a sweep's sorted axis values."""
    unique = sorted(set(float(v) for v in values))
    if len(unique) <= count:
        return unique
    picks = sorted({round(i * (len(unique) - 1) / (count - 1)) for i in range(count)})
    return [unique[i] for i in picks]


def _cache_key(scenario_file: Path, bandwidths: Sequence[float], n_sentences: int,
               widths: Sequence[int] | None) -> str:
    from laimco.config import load_scenario
    from laimco.profile import resolve_profile_text

    scenario = load_scenario(scenario_file)
    profile_text = resolve_profile_text(scenario.model.profile)
    data = {"version": CACHE_VERSION, "scenario": scenario.model_dump(mode="json"),
            "profile": hashlib.sha256(profile_text.encode()).hexdigest(),
            "bandwidths": [float(b) for b in bandwidths], "sentences": n_sentences,
            "widths": None if widths is None else sorted(widths)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def measure_uplink_quality(scenario_file: Path, bandwidths: Sequence[float], n_sentences: int,
                           cache: Path, widths: Sequence[int] | None = None) -> UplinkQuality:
    """Measure (or read from `cache`, a JSON file) the study's compressed-uplink quality;
    `widths`: the widths of the per-split measurement (default: every width the profile
    measured below 32)."""
    key = _cache_key(scenario_file, bandwidths, n_sentences, widths)
    if cache.is_file():
        try:
            saved = UplinkQuality.model_validate_json(cache.read_bytes())
            if saved.key == key:
                return saved
        except ValidationError:
            pass  # an older or damaged file: measure again
    result = _measure(scenario_file, bandwidths, n_sentences, key, widths)
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_suffix(".tmp")
    temporary.write_text(result.model_dump_json())
    temporary.replace(cache)
    return result


def _measure(scenario_file: Path, bandwidths: Sequence[float], n_sentences: int,
             key: str, widths: Sequence[int] | None) -> UplinkQuality:
    import torch

    from laimco.config import load_scenario
    from laimco.experiments.evaluate_measure import Evaluator, uplink_settings
    from laimco.measure.metrics import cosine_similarity
    from laimco.models.loading import load_model
    from laimco.models.pruned import prune_split_model
    from laimco.optimize import solve
    from laimco.profile import load_profile
    from laimco.uplink.rows import send_rows

    base = load_scenario(scenario_file)
    profile = load_profile(base.model.profile)
    if profile.uplink is None:
        raise ValueError(f"{scenario_file}: its profile has no measured uplink section")
    evaluator = Evaluator(load_model("minilm"), n_sentences, timing_rounds=0)  # quality only
    decisions = []
    for bandwidth in bandwidths:
        for compressed in (True, False):
            scenario = base.replace(channel={"bandwidth_hz": float(bandwidth)})
            if not compressed:
                scenario = scenario.replace(uplink={"activation_bits": [32], "coding": "none"})
            point = solve(scenario, "joint", profile=profile).point
            if point is None:
                continue
            m = evaluator.measure(point, scenario.model.bytes_per_weight,
                                  uplink_settings(profile, point),
                                  "zstd" if point.coding == "zstd" else "none")
            decisions.append(DecisionQuality(
                bandwidth_hz=float(bandwidth), compressed=compressed, split=point.split,
                activation_bits=point.activation_bits, objective=point.objective,
                loss_per_input=tuple(float(v) for v in m.loss_per_input)))
    per_bits = []
    for split in range(1, profile.n_units):
        dense = prune_split_model(evaluator.loaded, split, 0.0, 0.0)
        with torch.no_grad():
            crossings = [dense.device(batch) for batch in evaluator.batches]
        for bits in profile.uplink.bits:
            if bits >= 32 or (widths is not None and bits not in widths):
                continue
            settings = profile.uplink.settings(split, bits)
            outputs = []
            with torch.no_grad():
                for crossing in crossings:
                    sent = dict(crossing)
                    rows = send_rows(crossing["hidden_states"].numpy(),
                                     crossing["attention_mask"].numpy(), settings)
                    sent["hidden_states"] = torch.from_numpy(rows.received)
                    outputs.append(dense.server(sent))
            loss = (1 - cosine_similarity(evaluator.reference, torch.cat(outputs))).double()
            se = float(loss.std()) / math.sqrt(loss.numel())
            predicted = float(profile.uplink.distortion(bits)[split]) / 2
            per_bits.append(BitsQuality(split=split, bits=bits, loss_mean=float(loss.mean()),
                                        loss_se=se, predicted_loss=predicted))
    return UplinkQuality(key=key, sentences=n_sentences, per_bits=tuple(per_bits),
                         decisions=tuple(decisions))
