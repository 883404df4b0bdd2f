"""The quantized uplink's tensors without a server: what the device sends for every width and
coding against the quantizer and a plain-numpy reference, the server's checks of a bad payload,
the manifest's uplink settings and `laimco prune`'s uplink options."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import transformers
import zstandard
from typer.testing import CliRunner

from laimco.runtime.protocol import (
    CrossingError,
    Limits,
    UplinkSettings,
    check_arrays,
    check_uplink,
    interface_for,
)
from laimco.runtime.pruned_folder import PrunedFolderError, read_checked_manifest
from laimco.runtime.uplink_wire import activation_bytes, activation_tensors, hidden_from_tensors
from laimco.uplink.quantizer import QuantizerSettings, payload_bits, round_trip

HIDDEN = 24
CONFIG = transformers.BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=3,
                                 num_attention_heads=2, intermediate_size=16)
MASK = np.array([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0, 0]])
N_REAL = int(MASK.sum())  # 13


def _iface(bits: int, coding: str = "none", granularity: str = "token", clip: float = 1.0):
    manifest = {"model": "tiny", "family": "bert", "split": 2, "n_units": 5,
                "activation_bits": bits, "activation_granularity": granularity,
                "activation_clip": clip, "coding": coding}
    return interface_for(manifest, CONFIG, "ab" * 32)


def _hidden(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_t(4, size=(*MASK.shape, HIDDEN)) * 2).astype(np.float32)


CASES = [(b, c, g) for b in (16, 8, 6, 4, 2) for c in ("none", "zstd")
         for g in (("token", "tensor") if b < 16 else ("token",))]


@pytest.mark.parametrize(("bits", "coding", "granularity"), CASES)
def test_server_sees_the_quantizer_round_trip_of_the_real_tokens_and_zeros_at_padding(
        bits: int, coding: str, granularity: str) -> None:
    iface = _iface(bits, coding, granularity, clip=0.9)
    hidden = _hidden()
    sent = activation_tensors(hidden, MASK, iface.uplink)
    check_arrays(iface, sent, Limits())
    received = hidden_from_tensors(sent, iface)
    real = MASK.astype(bool)
    expected = round_trip(hidden[real], iface.uplink.quantizer)
    np.testing.assert_array_equal(received[real], expected)
    assert not received[~real].any()
    exact = payload_bits(N_REAL, HIDDEN, iface.uplink.quantizer) // 8
    if coding == "none":
        assert activation_bytes(sent) == exact
    else:  # the frame decodes to exactly the fixed-width payload
        frame = sent["hidden_payload"].tobytes()
        assert len(zstandard.ZstdDecompressor().decompress(frame)) == exact
        assert activation_bytes(sent) == len(frame)


def test_eight_bit_codes_equal_a_plain_numpy_quantizer() -> None:
    """The formula a stock client uses (docs/runtime.md, "Quantized uplink")."""
    hidden = _hidden(1)
    rows = hidden[MASK.astype(bool)]
    scales = (np.abs(rows).max(axis=1) / 127).astype(np.float32)
    codes = (np.clip(np.rint(rows / scales[:, None]), -127, 127) + 127).astype(np.uint8)
    sent = activation_tensors(hidden, MASK, _iface(8).uplink)
    np.testing.assert_array_equal(sent["hidden_scales"], scales)
    np.testing.assert_array_equal(sent["hidden_codes"], codes)


def _refused(iface, arrays, pattern: str) -> None:
    with pytest.raises(CrossingError, match=pattern):
        check_arrays(iface, arrays, Limits())
        hidden_from_tensors(arrays, iface)


def test_bad_quantized_payloads_are_refused_with_what_was_expected() -> None:
    iface = _iface(8)
    good = activation_tensors(_hidden(), MASK, iface.uplink)
    _refused(iface, {**good, "hidden_codes": good["hidden_codes"][:-1]},
             "12 rows but the attention mask has 13 real tokens")
    _refused(iface, {**good, "hidden_scales": good["hidden_scales"][:5]},
             "need 13 float32 scales")
    scales = good["hidden_scales"].copy()
    scales[3] = np.nan
    _refused(iface, {**good, "hidden_scales": scales}, "NaN or infinite")
    codes = good["hidden_codes"].copy()
    codes[0, 0] = 255
    _refused(iface, {**good, "hidden_codes": codes}, r"out of range: codes are 0\.\.254")
    _refused(iface, {**good, "hidden_codes": good["hidden_codes"][:, :-1]},
             r"expected hidden_codes UINT8 \[\*, 24\]")
    _refused(iface, {**good, "hidden_states": np.zeros((3, 7, HIDDEN), np.float32)},
             "unexpected input 'hidden_states'")


def test_bad_zstd_payloads_are_refused_before_allocating() -> None:
    iface = _iface(4, "zstd")
    good = activation_tensors(_hidden(), MASK, iface.uplink)
    frame = good["hidden_payload"]
    exact = payload_bits(N_REAL, HIDDEN, iface.uplink.quantizer) // 8

    def payload(data: bytes) -> dict[str, np.ndarray]:
        return {**good, "hidden_payload": np.frombuffer(data, np.uint8)}

    _refused(iface, payload(frame.tobytes()[:-6]), "corrupt or truncated")
    _refused(iface, payload(b"not a zstd frame at all"), "not a zstd frame")
    huge = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(10**6))
    _refused(iface, payload(huge), f"declares 1000000 bytes; at most {exact}")
    short = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(exact - 4))
    _refused(iface, payload(short), f"decodes to {exact - 4} bytes")
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(exact))
    _refused(iface, payload(unsized), "declares")


def test_a_request_with_other_bits_than_the_manifest_is_refused_naming_both() -> None:
    with pytest.raises(CrossingError, match=r"activation_bits 4.*records activation_bits 8"):
        check_uplink(_iface(8), 4, "token")
    with pytest.raises(CrossingError, match=r"activation_bits 32.*records activation_bits 8"):
        check_uplink(_iface(8), None, None)
    with pytest.raises(CrossingError, match="granularity 'tensor'"):
        check_uplink(_iface(8), 8, "tensor")
    check_uplink(_iface(8), 8, "token")
    with pytest.raises(CrossingError, match="records activation_bits 32"):
        check_uplink(_iface(32), 8, "token")


def test_protocol_wire_format_and_manifest_check_import_without_torch() -> None:
    code = ("import sys, laimco.runtime.protocol, laimco.runtime.uplink_wire, "
            "laimco.runtime.pruned_folder; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _manifest_folder(tmp_path, **extra) -> object:
    manifest = {"model": "tiny", "family": "bert", "n_units": 5, "split": 2, "rule": "magnitude",
                "sides": {"device": {"ratio": 0.0}, "server": {"ratio": 0.0}},
                "files": {side: {"name": f"{side}.safetensors", "sha256": "0" * 64}
                          for side in ("device", "server")}, **extra}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_manifest_records_the_uplink_and_an_old_manifest_reads_as_float32(tmp_path) -> None:
    old = read_checked_manifest(_manifest_folder(tmp_path))
    assert old.uplink == UplinkSettings(QuantizerSettings(32), "none")
    new = read_checked_manifest(_manifest_folder(
        tmp_path, activation_bits=4, activation_granularity="tensor", activation_clip=0.8,
        coding="zstd"))
    assert new.uplink == UplinkSettings(QuantizerSettings(4, "tensor", 0.8), "zstd")
    for extra, message in (({"activation_bits": 5}, "choose one of 32, 16, 8, 6, 4, 2"),
                           ({"coding": "gzip"}, "coding"),
                           ({"activation_bits": 32, "coding": "zstd"}, "compresses a quantized"),
                           ({"family": "resnet"}, "laimco knows bert, gpt2, llama, vit")):
        with pytest.raises(PrunedFolderError, match=message):
            read_checked_manifest(_manifest_folder(tmp_path, **extra))


@pytest.mark.parametrize(("options", "message"), [
    (["--activation-bits", "5"], "--activation-bits 5 is not supported: choose one of 32, 16"),
    (["--activation-bits", "8", "--coding", "gzip"], "--coding 'gzip' is not supported"),
    (["--coding", "zstd"], "give --activation-bits 16, 8, 6, 4 or 2"),
    (["--activation-bits", "8", "--activation-clip", "1.5"], "--activation-clip 1.5: give"),
])
def test_prune_refuses_bad_uplink_options_before_loading(options, message, tmp_path) -> None:
    from laimco.cli import app

    result = CliRunner().invoke(app, ["prune", str(tmp_path / "no-model"), "--split", "2",
                                      "--out", str(tmp_path / "out"), *options])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_prune_refuses_quantizing_the_token_ids_at_split_zero(tmp_path) -> None:
    from laimco.cli import app

    result = CliRunner().invoke(app, ["prune", "minilm", "--split", "0", "--activation-bits",
                                      "8", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "never quantized" in " ".join(result.output.split())


class _Costs:
    """The two queries deploy makes of a profile's uplink section (`UplinkCosts`)."""

    def settings(self, split: int, bits: int) -> QuantizerSettings:
        return QuantizerSettings(bits, "token", 0.5 + split / 100)

    def coded_ratio(self, bits: int) -> np.ndarray:
        if bits == 2:
            raise ValueError("activation bits 2 was not measured")
        return np.array([1.0, 0.7, 0.8, 0.9, 1.0])


class _Profile:
    uplink = _Costs()


class _Decision:
    def __init__(self, **json) -> None:
        self.json = {"split": 2, **json}

    def to_json_dict(self) -> dict:
        return self.json


def test_deploy_takes_the_decisions_bits_and_the_profiles_clip() -> None:
    from laimco.runtime.deploy_uplink import decision_uplink

    assert decision_uplink(_Decision(activation_bits=8, coding="zstd"), _Profile(), 5) == (
        UplinkSettings(QuantizerSettings(8, "token", 0.52), "zstd"))
    assert decision_uplink(_Decision(activation_bits=8), object(), 5) == UplinkSettings(
        QuantizerSettings(8))  # no uplink section: clip 1
    for decision in (_Decision(), _Decision(activation_bits=None, coding="zstd"),
                     _Decision(activation_bits=8, split=5), _Decision(activation_bits=8,
                                                                      split=0)):
        assert decision_uplink(decision, _Profile(), 5) == UplinkSettings()


def test_deploy_predicts_bytes_per_request_from_the_real_tokens_and_the_zstd_ratio() -> None:
    from laimco.runtime.deploy_uplink import compare_upload
    from laimco.runtime.request_log import RequestRecord, Timings

    masks = [np.array([[1] * n + [0] * (8 - n)]) for n in (3, 5, 8)]
    fixed = [n * (HIDDEN + 4) for n in (3, 5, 8)]  # 8-bit codes + one float32 scale per token

    def records(sent: list[int]) -> list[RequestRecord]:
        return [RequestRecord(i, str(i), "ok", timings=Timings(
            rpc_s=0.02, server_s=0.005, server_call_s=0.006, activation_bytes=b,
            payload_bytes=b + 64)) for i, b in enumerate(sent)]

    batches = [{"attention_mask": m} for m in masks]
    exact = compare_upload(records(fixed), batches, HIDDEN, UplinkSettings(QuantizerSettings(8)),
                           _Profile(), 2, 1e6)
    assert exact.exact_requests == 3 and exact.measured_over_predicted == 1.0
    assert exact.activation_bytes_predicted == pytest.approx(np.mean(fixed))
    assert exact.upload_s_predicted == pytest.approx(8 * (fixed[1] + 64) / 1e6)
    assert exact.transfer_s_measured == pytest.approx(0.014)
    coded = [int(f * 0.8 * 1.015) for f in fixed]  # 1.5 % over the profile's ratio at s = 2
    zstd = compare_upload(records(coded), batches, HIDDEN,
                          UplinkSettings(QuantizerSettings(8), "zstd"), _Profile(), 2, 1e6)
    assert zstd.activation_bytes_predicted == pytest.approx(0.8 * np.mean(fixed))
    assert zstd.measured_over_predicted == pytest.approx(np.mean(coded) / (0.8 * np.mean(fixed)))
    assert 1.0 < zstd.measured_over_predicted < 1.02
    assert zstd.within_tolerance
    unmeasured = compare_upload(records(coded), batches, HIDDEN,
                                UplinkSettings(QuantizerSettings(2), "zstd"), _Profile(), 2, 1e6)
    assert unmeasured.activation_bytes_predicted is None and unmeasured.within_tolerance is None
    float32 = compare_upload(records([8 * HIDDEN * 4] * 3), batches, HIDDEN, UplinkSettings(),
                             _Profile(), 2, 1e6)  # float32 sends every position, padding too
    assert float32.exact_requests == 3
