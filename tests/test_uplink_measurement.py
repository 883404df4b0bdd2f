"""Measured uplink quantization costs on the packaged MiniLM (laimco.measure.uplink_measurement):
the hook against an independent path through the split model, the properties of the measured
section, and the additivity of pruning and quantization distortion on held-out text."""

from __future__ import annotations

import itertools
import json
from importlib import resources
from typing import Any

import numpy as np
import pytest
import torch

from laimco.data import calibration_sentences, heldout_sentences
from laimco.experiments.text_batches import text_batches
from laimco.measure.metrics import output_distortion_per_input
from laimco.measure.uplink_measurement import (
    _CrossingHook,
    measure_additivity,
    measure_uplink_costs,
    quantized_outputs,
)
from laimco.models.loading import LoadedModel, load_model
from laimco.models.split import run_full, split_model
from laimco.profile import load_profile
from laimco.uplink.quantizer import QuantizerSettings, dequantize, quantize, round_trip
from laimco.uplink_costs import UplinkSection

pytestmark = pytest.mark.slow  # loads and runs the real MiniLM

N_SENTENCES = 8


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One torch thread: on a loaded 2-core machine two threads spin-wait (×10 slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return load_model("minilm")


@pytest.fixture(scope="module")
def batches(minilm: LoadedModel) -> list[dict[str, torch.Tensor]]:
    # sentences of different lengths: the batch carries padding rows
    found = list(text_batches(minilm, calibration_sentences()[:N_SENTENCES]))
    assert (found[0]["attention_mask"] == 0).any()
    return found


@pytest.fixture(scope="module")
def section(minilm: LoadedModel, batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    measured: dict[str, Any] = measure_uplink_costs(minilm, batches).model_dump()
    return measured


def test_the_hook_replaces_real_token_rows_by_their_round_trip_and_keeps_padding() -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 16, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    settings = QuantizerSettings(4, "tensor", 0.8)  # per-tensor: each input is its own request
    hook = _CrossingHook(settings)
    hook.mask = mask
    out = hook(torch.nn.Identity(), (), hidden)
    assert torch.equal(out[0, 3:], hidden[0, 3:])  # padding untouched
    for b, n in ((0, 3), (1, 5)):
        expected = dequantize(quantize(hidden[b, :n].numpy(), settings))
        np.testing.assert_array_equal(out[b, :n].numpy(), expected)
    assert not torch.equal(out[0, :3], hidden[0, :3])


@pytest.mark.parametrize("split", [1, 3, 7])
def test_hooked_distortion_equals_quantizing_between_the_split_parts(
        minilm: LoadedModel, batches: list[dict[str, torch.Tensor]], split: int) -> None:
    """Independent path: the device part, its real rows quantized by hand and the padding
    rows zeroed (as the runtime re-inserts them), the server part."""
    settings = QuantizerSettings(4, "token", 0.74)
    with torch.no_grad():
        reference = torch.cat([run_full(minilm, b) for b in batches])
    hooked = output_distortion_per_input(
        reference, quantized_outputs(minilm, batches, split, settings))
    device, server = split_model(minilm, split)
    by_hand = []
    with torch.no_grad():
        for batch in batches:
            crossing = device(batch)
            hidden, real = crossing["hidden_states"], batch["attention_mask"].bool()
            sent = torch.zeros_like(hidden)
            for b in range(hidden.shape[0]):
                rows = hidden[b, real[b]].numpy()
                sent[b, real[b]] = torch.from_numpy(dequantize(quantize(rows, settings)))
            by_hand.append(server({**crossing, "hidden_states": sent}))
    split_path = output_distortion_per_input(reference, torch.cat(by_hand))
    assert float(hooked.mean()) > 0
    np.testing.assert_allclose(hooked.numpy(), split_path.numpy(), rtol=1e-6, atol=1e-12)


def test_section_shape_and_calibration_counts(
        section: dict[str, Any], batches: list[dict[str, torch.Tensor]]) -> None:
    UplinkSection.model_validate(section)
    assert section["bits"] == [32, 16, 8, 6, 4, 2]
    assert [e["split"] for e in section["splits"]] == list(range(1, 8))
    assert section["calibration_inputs"] == N_SENTENCES
    assert section["calibration_tokens"] == int(batches[0]["attention_mask"].sum())
    for entry in section["splits"]:
        assert entry["hidden"] == 384
        assert entry["output_distortion"][0] == entry["activation_mse"][0] == 0.0


def test_output_distortion_falls_with_every_added_bit_at_every_split(
        section: dict[str, Any]) -> None:
    """D_q(16) < D_q(8) < D_q(6) < D_q(4) < D_q(2): a property of the data, checked."""
    for entry in section["splits"]:
        d = entry["output_distortion"][1:]  # 16, 8, 6, 4, 2
        assert all(a < b for a, b in itertools.pairwise(d)), (entry["split"], d)


def test_measured_mse_matches_the_uniform_noise_law_where_it_holds(
        section: dict[str, Any]) -> None:
    """Δ²/12 law over measured MSE on the shipped profile (docs/profile_minilm.md): 0.96–1.04
    at 16 and 8 bits; at 6 and 4 bits, 1.01–1.34: an upper bound, most elements of a token
    sit in the zero cell around its outlier features, where the error is below Δ²/12. The
    tolerances: ±6 % and [0.95, 1.45] (8 calibration sentences instead of 64)."""
    for entry in section["splits"]:
        ratio = np.array(entry["activation_mse_law"][1:5]) / np.array(
            entry["activation_mse"][1:5])  # 16, 8, 6, 4
        assert np.all(np.abs(ratio[:2] - 1) <= 0.06), (entry["split"], ratio)
        assert np.all((ratio[2:] >= 0.95) & (ratio[2:] <= 1.45)), (entry["split"], ratio)


def test_measured_mse_is_the_mean_squared_error_of_the_round_trip(
        minilm: LoadedModel, batches: list[dict[str, torch.Tensor]],
        section: dict[str, Any]) -> None:
    """At split 1 (the embeddings' output, computed here directly from the embedding module)
    with the section's clip: brute force over the real rows."""
    entry = section["splits"][0]
    with torch.no_grad():
        hidden = minilm.model.embeddings(input_ids=batches[0]["input_ids"])
    rows = hidden[batches[0]["attention_mask"].bool()].numpy()
    for column, bits in enumerate(section["bits"]):
        if bits == 32:
            continue
        settings = QuantizerSettings(bits, "token", entry["clip"][column])
        brute = float(np.mean((round_trip(rows, settings).astype(np.float64) - rows) ** 2))
        assert entry["activation_mse"][column] == pytest.approx(brute, rel=1e-6)


def test_shipped_profile_uplink_is_what_the_measurement_gives(minilm: LoadedModel) -> None:
    """The 4-bit column of the shipped section, measured again on its 64 sentences."""
    shipped = json.loads((resources.files("laimco") / "profiles" / "minilm-l6.json")
                         .read_text())["uplink"]
    calibration = list(text_batches(minilm, calibration_sentences()[:64]))
    fresh = measure_uplink_costs(minilm, calibration, bits=(4,)).model_dump()
    assert fresh["calibration_tokens"] == shipped["calibration_tokens"]
    column = shipped["bits"].index(4)
    for old, new in zip(shipped["splits"], fresh["splits"], strict=True):
        for key in ("clip", "activation_mse", "activation_mse_law", "output_distortion",
                    "zstd_ratio"):
            assert new[key][0] == pytest.approx(old[key][column], rel=1e-6), (old["split"], key)


def test_pruning_and_quantization_distortion_add_at_the_output(minilm: LoadedModel) -> None:
    """Held-out text, split 3: D_y(pruned and quantized) against D_y(pruned) + D_y(quantized).
    Measured for b ≥ 4, ρ ≤ 0.6 (docs/profile_minilm.md): the sum exceeds the joint
    distortion by at most 3.8 % on 128 held-out sentences, 5.0 % on 64, 6.8 % on 32 (sampling
    noise of the cross term), and never falls below it by more than 0.13 %. Tolerance here
    (64 sentences): −8 % … +1 %. The profile's D_q (calibration text) predicts the held-out
    one within 8.3 %; tolerance 20 % (the issue's target)."""
    heldout = list(text_batches(minilm, heldout_sentences()[:64]))
    costs = load_profile("minilm-l6").uplink
    assert costs is not None
    result = measure_additivity(minilm, costs, heldout, 3, ["structured", "magnitude"],
                                [(0.3, 0.3), (0.6, 0.6)], [8, 4])
    assert result.n_inputs == 64 and len(result.cases) == 8
    for case in result.cases:
        assert case.pruned > 0 and case.quantized > 0
        assert -0.08 <= case.relative_error <= 0.01, case
        assert abs(case.quantized_prediction_error) <= 0.20, case
