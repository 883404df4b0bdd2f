"""The quantized uplink end to end: MiniLM split 2 served by a real MLServer process over real
sockets, the device client quantizing what it sends. One server hosts the 8-bit folder (bytes
on the wire against payload_bits exactly, through the shaped link; refusals, then a good
request on the same server; the stock tritonclient example of docs/runtime.md; `laimco
infer`), one the 16-bit zstd folder (frames decoded to the exact payload, bad frames refused)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import typer
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner

from laimco.models.loading import load_model
from laimco.models.pruned import load_pruned, prune_split_model, save_pruned
from laimco.runtime.client import DeviceClient, ServerConnection
from laimco.runtime.commands import register
from laimco.runtime.protocol import UplinkSettings, manifest_sha256
from laimco.runtime.server import start_server
from laimco.runtime.uplink_wire import activation_tensors
from laimco.uplink.quantizer import QuantizerSettings, payload_bits, round_trip

pytestmark = pytest.mark.slow  # starts two edge servers

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "uplink-secret-51c2"
HIDDEN = 384
SENTENCES = ["The return value is a new list.", "Raise an exception if the file is missing.",
             "Iterate over the keys of a mapping and print each of them in order.", "Short."]
EIGHT_BIT = QuantizerSettings(8, "token", 1.0)
SIXTEEN_BIT = QuantizerSettings(16)


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def _folder(minilm, root: Path, settings: QuantizerSettings, coding: str) -> Path:
    pruned = prune_split_model(minilm, 2, 0.0, 0.0)
    return save_pruned(pruned, root / f"pruned-{settings.bits}-{coding}", activation=settings,
                       coding=coding)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def folder8(tmp_path_factory, minilm) -> Path:
    return _folder(minilm, tmp_path_factory.mktemp("uplink"), EIGHT_BIT, "none")


@pytest.fixture(scope="module")
def folder16z(tmp_path_factory, minilm) -> Path:
    return _folder(minilm, tmp_path_factory.mktemp("uplink"), SIXTEEN_BIT, "zstd")


@pytest.fixture(scope="module")
def server8(folder8):
    with start_server(folder8, token=TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def server16z(folder16z):
    with start_server(folder16z, token=TOKEN) as running:
        yield running


def _reference(folder: Path, texts: list[str], settings: QuantizerSettings,
               pad_to: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The in-process pruned parts with the quantizer's round trip on the real tokens: what
    the served split must return; and the device part's crossing."""
    local = load_pruned(folder)
    batch = local.loaded.tokenizer(texts, return_tensors="pt", **(
        {"padding": "max_length", "max_length": pad_to} if pad_to else {"padding": True}))
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        crossing = {k: v.numpy() for k, v in local.device(inputs).items()}
        mask = crossing["attention_mask"].astype(bool)
        hidden = np.zeros_like(crossing["hidden_states"])
        hidden[mask] = round_trip(crossing["hidden_states"][mask], settings)
        output = local.server({"hidden_states": torch.from_numpy(hidden),
                               "attention_mask": torch.from_numpy(crossing["attention_mask"])})
    return output.numpy(), crossing


def test_bytes_on_the_wire_equal_the_prediction_exactly_through_the_shaped_link(
        server8, folder8) -> None:
    rate_bps = 4e6
    tokenizer = load_pruned(folder8).loaded.tokenizer
    with DeviceClient(folder8, server8.url, token=TOKEN, uplink_rate_bps=rate_bps) as client:
        replies = [client.infer([text]) for text in SENTENCES]
        padded = client.infer([SENTENCES[0]], max_length=128, pad_to_max_length=True)
        link_bytes = client.link.bytes_up if client.link else 0
    for reply, text in [*zip(replies, SENTENCES, strict=True), (padded, SENTENCES[0])]:
        n_real = len(tokenizer(text)["input_ids"])  # real tokens, counted by the tokenizer
        predicted = payload_bits(n_real, HIDDEN, EIGHT_BIT) // 8  # = n·(384 + 4)
        timings = reply.record.timings
        assert reply.record.status == "ok", reply.record
        assert timings.activation_bytes == predicted == n_real * (HIDDEN + 4)
        assert timings.server_activation_bytes == predicted  # counted by the server on receipt
    # the padded request sends the same activation bytes: padding rows never travel
    assert padded.record.timings.activation_bytes == replies[0].record.timings.activation_bytes
    sent = sum(r.record.timings.payload_bytes for r in [*replies, padded])
    assert sent <= link_bytes <= sent + 4096 * len(SENTENCES) + 20_000  # framing, metadata
    upload = padded.record.timings.uplink_s
    payload_s = 8 * padded.record.timings.payload_bytes / rate_bps
    assert payload_s * 0.9 <= upload <= payload_s * 1.1 + 0.03


def test_served_split_returns_the_in_process_model_on_the_dequantized_activation(
        server8, folder8) -> None:
    expected, _ = _reference(folder8, SENTENCES, EIGHT_BIT)
    unquantized, _ = _reference(folder8, SENTENCES, QuantizerSettings(32))
    with DeviceClient(folder8, server8.url, token=TOKEN) as client:
        reply = client.infer(SENTENCES)
    np.testing.assert_allclose(reply.output, expected, atol=2e-5, rtol=0)
    # the comparison can tell: 8-bit codes move the embedding far more than the tolerance
    assert np.abs(unquantized - expected).max() > 20 * 2e-5
    cosine = np.sum(unquantized * reply.output, axis=1)  # unit-norm embeddings
    assert cosine.min() > 0.999


def _raw_infer(url: str, folder: Path, tensors: dict[str, np.ndarray],
               parameters: dict[str, object]):
    datatypes = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32",
                 np.dtype(np.int64): "INT64", np.dtype(np.float16): "FP16"}
    inputs = []
    for name, array in tensors.items():
        tensor = grpcclient.InferInput(name, list(array.shape), datatypes[array.dtype])
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        inputs.append(tensor)
    client = grpcclient.InferenceServerClient(url)
    try:
        return client.infer("laimco", inputs, headers={"authorization": f"Bearer {TOKEN}"},
                            parameters={"manifest_sha256": manifest_sha256(folder),
                                        **parameters})
    finally:
        client.close()


def test_bad_quantized_requests_get_invalid_argument_and_the_server_keeps_serving(
        server8, folder8) -> None:
    expected, crossing = _reference(folder8, SENTENCES[:2], EIGHT_BIT)
    good = activation_tensors(crossing["hidden_states"], crossing["attention_mask"],
                              UplinkSettings(EIGHT_BIT))
    bits8 = {"activation_bits": 8, "activation_granularity": "token"}
    out_of_range = good["hidden_codes"].copy()
    out_of_range[1, 7] = 255
    float32 = {"hidden_states": crossing["hidden_states"],
               "attention_mask": crossing["attention_mask"]}
    cases = [
        ("other bits", good, {"activation_bits": 4}, "activation_bits 4.*activation_bits 8"),
        ("no bits", good, {}, "activation_bits 32.*activation_bits 8"),
        ("float32 tensors", float32, {}, "activation_bits 32.*activation_bits 8"),
        ("rows", {**good, "hidden_codes": good["hidden_codes"][1:]}, bits8, "real tokens"),
        ("scales", {**good, "hidden_scales": good["hidden_scales"][:1]}, bits8,
         "float32 scales"),
        ("range", {**good, "hidden_codes": out_of_range}, bits8, "out of range"),
        ("width", {**good, "hidden_codes": good["hidden_codes"][:, :100]}, bits8,
         r"expected hidden_codes UINT8 \[\*, 384\]"),
    ]
    for label, tensors, parameters, message in cases:
        with pytest.raises(InferenceServerException) as info:
            _raw_infer(server8.url, folder8, tensors, parameters)
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT", label
        assert re.search(message, info.value.message()), (label, info.value.message())
    result = _raw_infer(server8.url, folder8, good, bits8)
    np.testing.assert_allclose(result.as_numpy("output"), expected, atol=2e-5, rtol=0)


def _docs_example() -> dict[str, object]:
    text = (ROOT / "docs" / "runtime.md").read_text()
    code = re.search(r"```python\n(.*?def quantized_request.*?)```", text, re.S)
    assert code, "docs/runtime.md lost its tritonclient example"
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "docs/runtime.md", "exec"), namespace)
    return namespace


def test_the_stock_tritonclient_example_of_the_docs_gets_the_servers_output(
        server8, folder8) -> None:
    expected, crossing = _reference(folder8, SENTENCES, EIGHT_BIT)
    quantized_request = _docs_example()["quantized_request"]
    output = quantized_request(server8.url, manifest_sha256(folder8),  # type: ignore[operator]
                               crossing["hidden_states"], crossing["attention_mask"],
                               token=TOKEN)
    np.testing.assert_allclose(output, expected, atol=2e-5, rtol=0)


def test_infer_command_reports_the_activation_bytes_sent(server8, folder8) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["infer", str(folder8), SENTENCES[0], "--server",
                                      server8.url, "--token", TOKEN, "--json"])
    assert result.exit_code == 0, result.output
    request = json.loads(result.stdout)["requests"][0]
    n_real = len(load_pruned(folder8).loaded.tokenizer(SENTENCES[0])["input_ids"])
    assert request["timings"]["activation_bytes"] == n_real * (HIDDEN + 4)
    table = CliRunner().invoke(app, ["infer", str(folder8), SENTENCES[0], "--server",
                                     server8.url, "--token", TOKEN])
    assert table.exit_code == 0 and "activation B" in table.output
    assert str(n_real * (HIDDEN + 4)) in table.output


def test_zstd_frames_carry_the_exact_payload_and_bad_frames_are_refused(
        server16z, folder16z) -> None:
    expected, crossing = _reference(folder16z, SENTENCES, SIXTEEN_BIT, pad_to=64)
    uplink = UplinkSettings(SIXTEEN_BIT, "zstd")
    with ServerConnection(server16z.url, manifest_sha256(folder16z), token=TOKEN,
                          uplink=uplink) as connection:
        tensors = activation_tensors(crossing["hidden_states"], crossing["attention_mask"],
                                     uplink)
        reply = connection.send(tensors)
    assert reply.record.status == "ok", reply.record.error
    np.testing.assert_allclose(reply.output, expected, atol=2e-5, rtol=0)
    frame = tensors["hidden_payload"]
    n_real = int(crossing["attention_mask"].sum())
    assert reply.record.timings.activation_bytes == frame.size
    assert reply.record.timings.server_activation_bytes == frame.size
    assert frame.size < payload_bits(n_real, HIDDEN, SIXTEEN_BIT) // 8  # fp16 rows compress
    bits16 = {"activation_bits": 16, "activation_granularity": "token"}
    for label, data, message in (("truncated", frame[:-50], "corrupt or truncated"),
                                 ("garbage", frame[::-1].copy(), "not a zstd frame")):
        with pytest.raises(InferenceServerException) as info:
            _raw_infer(server16z.url, folder16z, {**tensors, "hidden_payload": data}, bits16)
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT", label
        assert message in info.value.message(), (label, info.value.message())
    result = _raw_infer(server16z.url, folder16z, tensors, bits16)
    np.testing.assert_allclose(result.as_numpy("output"), expected, atol=2e-5, rtol=0)


def test_zstd_bytes_on_held_out_text_are_within_2_percent_of_the_calibrated_ratio(
        minilm) -> None:
    """The zstd target of issue 13: the mean compressed / fixed-width ratio measured on
    calibration text predicts the mean bytes sent for held-out text within 2 % (MiniLM
    split 4, the default decision's, 128-token padding; only real tokens are sent)."""
    from laimco.data import calibration_sentences, heldout_sentences
    from laimco.models.split import split_model
    from laimco.runtime.uplink_wire import activation_bytes

    device, _ = split_model(minilm, 4)

    def crossings(texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for text in texts:
            batch = minilm.tokenizer([text], padding="max_length", max_length=128,
                                     truncation=True, return_tensors="pt")
            with torch.no_grad():
                crossing = device(dict(batch))
            out.append((crossing["hidden_states"].numpy(), crossing["attention_mask"].numpy()))
        return out

    def sizes(data, uplink: UplinkSettings) -> tuple[np.ndarray, np.ndarray]:
        sent = [activation_bytes(activation_tensors(h, m, uplink)) for h, m in data]
        fixed = [payload_bits(int(m.sum()), HIDDEN, uplink.quantizer) / 8 for _, m in data]
        return np.array(sent, float), np.array(fixed)

    calibration = crossings(calibration_sentences()[:40])
    held_out = crossings(heldout_sentences()[:40])
    for bits in (16, 8, 6, 4):
        uplink = UplinkSettings(QuantizerSettings(bits), "zstd")
        sent, fixed = sizes(calibration, uplink)
        ratio = float(np.mean(sent / fixed))
        held_sent, held_fixed = sizes(held_out, uplink)
        assert np.mean(held_sent) == pytest.approx(np.mean(held_fixed) * ratio, rel=0.02), bits
        assert ratio < 1, bits  # the codes do compress
