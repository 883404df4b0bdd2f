"""What `laimco evaluate` measures of one decision on the real model (README "Do decisions
hold when executed?"): the pruned split run on held-out text, the crossing activation sent
through the quantizer as the device client sends it, part times relative to dense on one
thread, stored bytes; and the emulated latency and energy they give."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from laimco.config import Scenario
from laimco.data import calibration_sentences, heldout_sentences
from laimco.experiments.text_batches import text_batches
from laimco.measure.metrics import (
    cosine_similarity,
    output_distortion,
    retrieval_agreement_at_k,
)
from laimco.models.loading import LoadedModel
from laimco.models.pruned import PrunedSplit, prune_split_model
from laimco.models.split import run_full
from laimco.optimize.decision import OperatingPoint
from laimco.profile import ModelProfile
from laimco.uplink.coding import Coding
from laimco.uplink.quantizer import QuantizerSettings, payload_bits
from laimco.uplink.rows import send_rows

LIMIT_TOLERANCE = 0.02  # a measured cost may exceed its limit by 2 % (timing noise) and hold


@dataclass(frozen=True)
class Measurement:
    """What one pruned split model does on held-out text and on this CPU."""

    loss_per_input: np.ndarray
    retrieval_at_10: float
    output_distortion: float
    device_time_ratio: float
    server_time_ratio: float
    device_stored_bytes: float
    # the uplink: bytes of the activation payload per held-out input and their real tokens,
    # and the bytes of one request of the profile's sequence length (what the costs are for)
    upload_bytes_per_input: np.ndarray | None = None
    tokens_per_input: np.ndarray | None = None
    upload_bytes_at_design: float | None = None


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
        self._long: dict[str, torch.Tensor] | None = None
        self._cache: dict[tuple[Any, ...], Measurement] = {}

    def measure(self, decision: OperatingPoint, bytes_per_weight: float,
                uplink: QuantizerSettings | None = None, coding: Coding = "none"
                ) -> Measurement:
        """Measure a decision; `uplink` quantizes the activation crossing the split as the
        device client does (real tokens only, one request per input; None: float32 as is)."""
        rho_d, rho_s = decision.rho_device, decision.rho_server
        rule_d = decision.rule_device or "magnitude"
        rule_s = decision.rule_server or "magnitude"
        key = (decision.split, rule_d if rho_d > 0 else "-", rule_s if rho_s > 0 else "-",
               round(rho_d, 9), round(rho_s, 9), bytes_per_weight, uplink, coding)
        if key not in self._cache:
            self._cache[key] = self._measure(decision.split, rule_d, rule_s, rho_d, rho_s,
                                             bytes_per_weight, uplink, coding)
        return self._cache[key]

    def _outputs(self, pruned: PrunedSplit, uplink: QuantizerSettings | None,
                 coding: Coding) -> tuple[torch.Tensor, np.ndarray | None, np.ndarray | None]:
        """The pruned split's outputs on the held-out batches, the crossing activation sent
        through the quantizer when `uplink` is given, with the bytes sent per input."""
        if uplink is None:
            with torch.no_grad():
                return torch.cat([pruned(b) for b in self.batches]), None, None
        outputs, sent, tokens = [], [], []
        with torch.no_grad():
            for batch in self.batches:
                crossing = dict(pruned.device(batch))
                rows = send_rows(crossing["hidden_states"].numpy(),
                                 crossing["attention_mask"].numpy(), uplink, coding)
                crossing["hidden_states"] = torch.from_numpy(rows.received)
                outputs.append(pruned.server(crossing))
                sent.append(rows.bytes_sent)
                tokens.append(rows.tokens)
        return torch.cat(outputs), np.concatenate(sent), np.concatenate(tokens)

    def _design_request_bytes(self, pruned: PrunedSplit, uplink: QuantizerSettings,
                              coding: Coding) -> float:
        """Bytes sent for one request of 128 real tokens (held-out text run together), the
        request size the decision's costs are for."""
        if self._long is None:
            text = " ".join(heldout_sentences())
            self._long = dict(self.loaded.tokenizer([text], truncation=True, max_length=128,
                                                    return_tensors="pt"))
        with torch.no_grad():
            crossing = pruned.device(self._long)
        rows = send_rows(crossing["hidden_states"].numpy(), crossing["attention_mask"].numpy(),
                         uplink, coding)
        return float(rows.bytes_sent[0])

    def _measure(self, split: int, rule_d: str, rule_s: str, rho_d: float, rho_s: float,
                 bytes_per_weight: float, uplink: QuantizerSettings | None = None,
                 coding: Coding = "none") -> Measurement:
        pruned = prune_split_model(
            self.loaded, split, rho_d, rho_s, rule_d,  # type: ignore[arg-type]
            calibration=self.calibration if "wanda" in (rule_d, rule_s) else None,
            rule_server=rule_s)  # type: ignore[arg-type]
        outputs, sent, tokens = self._outputs(pruned, uplink, coding)
        design_bytes = (None if uplink is None
                        else self._design_request_bytes(pruned, uplink, coding))
        loss = (1 - cosine_similarity(self.reference, outputs)).double().numpy()
        # a side pruned at ratio 0 runs exactly the dense part: its time ratio is 1 by definition;
        # timing_rounds = 0 measures quality only (time ratios reported as 1)
        ratio_d, ratio_s = 1.0, 1.0
        if (rho_d > 0 or rho_s > 0) and self.timing_rounds > 0:
            if split not in self._dense:
                self._dense[split] = prune_split_model(self.loaded, split, 0.0, 0.0)
            ratio_d, ratio_s = _timing_ratios(pruned, self._dense[split], self.crossing,
                                              self.timing_rounds)
            ratio_d = ratio_d if rho_d > 0 else 1.0
            ratio_s = ratio_s if rho_s > 0 else 1.0
        return Measurement(
            loss_per_input=loss,
            retrieval_at_10=float(retrieval_agreement_at_k(self.reference, outputs, 10)),
            output_distortion=output_distortion(self.reference, outputs),
            device_time_ratio=ratio_d, server_time_ratio=ratio_s,
            device_stored_bytes=_stored_bytes(pruned, bytes_per_weight),
            upload_bytes_per_input=sent, tokens_per_input=tokens,
            upload_bytes_at_design=design_bytes)


def measured_costs(scenario: Scenario, profile: ModelProfile, decision: OperatingPoint,
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
    # a float32 activation is sent as is: its size is the profile's; a quantized one as
    # measured for a request of the profile's length (docs/theory.md §6.1)
    bits = float(profile.split_table().upload_bits[s])
    if m.upload_bytes_at_design is not None:  # the measured payload and the attention mask
        assert profile.uplink is not None and profile.seq_len is not None
        hidden_bits = profile.seq_len * int(profile.uplink.hidden[s]) * 32
        bits = 8 * m.upload_bytes_at_design + max(bits - hidden_bits, 0.0)
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
        "loss_mean": mean, "loss_ci95": [mean - half, mean + half], "uplink_bits": bits,
        "upload_bytes": _upload_bytes(profile, decision, m),
        "retrieval_at_10": m.retrieval_at_10, "output_distortion": m.output_distortion,
        "latency_s": {"device": t_device, "uplink": t_up, "server": t_server,
                      "downlink": t_down, "total": total},
        "energy_j": {"compute": e_compute, "uplink": e_up, "total": e_compute + e_up},
        "device_stored_bytes": m.device_stored_bytes,
        "time_ratio": {"device": m.device_time_ratio, "server": m.server_time_ratio},
        "limit_usage": usage,
        "limits_hold": all(u <= 1 + LIMIT_TOLERANCE for u in usage.values()),
    }


def uplink_settings(profile: ModelProfile, decision: OperatingPoint) -> QuantizerSettings | None:
    """How the decision's activation is quantized (the profile's measured clip); None when it
    is sent as float32 without coding, or when no activation crosses."""
    bits = decision.activation_bits
    if bits is None or (bits == 32 and decision.coding == "none"):
        return None
    assert profile.uplink is not None  # the optimizer offers other widths only with it
    return profile.uplink.settings(decision.split, bits)


def _upload_bytes(profile: ModelProfile, decision: OperatingPoint,
                  m: Measurement) -> dict[str, float] | None:
    """Measured bytes per held-out request against the prediction at each request's real
    tokens (exact for fixed widths; the profile's mean zstd ratio when coded)."""
    settings = uplink_settings(profile, decision)
    if settings is None or m.upload_bytes_per_input is None or m.tokens_per_input is None:
        return None
    assert profile.uplink is not None
    hidden = int(profile.uplink.hidden[decision.split])
    ratio = (float(profile.uplink.coded_ratio(settings.bits)[decision.split])
             if decision.coding == "zstd" else 1.0)
    predicted = np.array([payload_bits(int(n), hidden, settings) / 8 * ratio
                          for n in m.tokens_per_input])
    measured = m.upload_bytes_per_input.astype(np.float64)
    return {"measured_mean": float(measured.mean()), "predicted_mean": float(predicted.mean()),
            "measured_over_predicted": float(measured.mean() / predicted.mean()),
            "exact_requests": float(np.mean(measured == predicted)),
            "tokens_mean": float(m.tokens_per_input.mean())}
