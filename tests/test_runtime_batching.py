"""The server runtime under MLServer's adaptive batching, in process (no sockets): requests
merged by MLServer's own `BatchedRequests` (the code its AdaptiveBatcher runs) are answered by
one `ServerSubModel.predict`, and each request gets exactly the rows it gets alone — checked
against the unbatched predict and against the in-process pruned parts (independent of the
runtime), for an 8-bit quantized uplink, requests of different token counts, and a bad request
inside a batch."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from mlserver.batching.requests import BatchedRequests
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest, Parameters, RequestInput

from laimco.models.pruned import load_pruned, prune_split_model, save_pruned
from laimco.runtime.deploy_uplink import run_pruned
from laimco.runtime.guard import CALL_PARAMETER, PENDING_CALLS, BinaryCall
from laimco.runtime.protocol import (
    BATCH_PARAMETER,
    BITS_PARAMETER,
    DATATYPE_OF,
    GRANULARITY_PARAMETER,
    MANIFEST_PARAMETER,
    UplinkSettings,
    manifest_sha256,
)
from laimco.runtime.server_model import ServerSubModel
from laimco.runtime.uplink_wire import activation_tensors
from laimco.uplink.quantizer import QuantizerSettings

pytestmark = pytest.mark.slow  # loads MiniLM and MLServer

SENTENCES = ["The return value is a new list.", "Raise an exception if the file is missing.",
             "Short.", "Iterate over the keys of a mapping and print each of them in order.",
             "Open the file, read every line and close it again."]
UPLINK = UplinkSettings(QuantizerSettings(8, "token", 1.0))
TOLERANCE = 1e-5  # float32 rows of one pass vs another pass over other rows (BLAS blocking)
_ids = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from laimco.models.loading import load_model

    pruned = prune_split_model(load_model("minilm"), 2, 0.3, 0.5)
    return save_pruned(pruned, tmp_path_factory.mktemp("batching") / "pruned",
                       activation=UPLINK.quantizer)


@pytest.fixture(scope="module")
def model(folder) -> ServerSubModel:
    settings = ModelSettings(name="part", implementation=ServerSubModel,
                             parameters=ModelParameters(uri=str(folder),
                                                        version=manifest_sha256(folder)))
    served = ServerSubModel(settings)
    asyncio.run(served.load())
    return served


def _crossings(folder: Path, pad_to: int | None) -> tuple[list[dict], np.ndarray]:
    """Each sentence as its own request (what the device client sends), and the in-process
    pruned parts' outputs for it (the reference)."""
    local = load_pruned(folder)
    crossings, reference = [], []
    for text in SENTENCES:
        batch = local.loaded.tokenizer([text], return_tensors="pt", **(
            {"padding": "max_length", "max_length": pad_to} if pad_to else {}))
        with torch.no_grad():
            cut = local.device(dict(batch))
            reference.append(np.asarray(run_pruned(local, dict(batch), UPLINK)))
        crossings.append(activation_tensors(cut["hidden_states"].numpy(),
                                            cut["attention_mask"].numpy(), UPLINK))
    return crossings, np.concatenate(reference)


def _request(arrays: dict, sha: str) -> tuple[InferenceRequest, BinaryCall]:
    """What the guard makes of one binary gRPC request: the registered call and MLServer's
    request whose tensors carry the call's id (and no data)."""
    call_id = f"test-{next(_ids)}"
    call = BinaryCall(inputs=dict(arrays),
                      datatypes={n: DATATYPE_OF[a.dtype] for n, a in arrays.items()},
                      parameters={MANIFEST_PARAMETER: sha, BITS_PARAMETER: 8,
                                  GRANULARITY_PARAMETER: "token"})
    PENDING_CALLS[call_id] = call
    inputs = [RequestInput(name=n, shape=list(a.shape), datatype=DATATYPE_OF[a.dtype], data=[],
                           parameters=Parameters(**{CALL_PARAMETER: call_id}))
              for n, a in arrays.items()]
    return InferenceRequest(inputs=inputs, parameters=Parameters(manifest_sha256=sha)), call


def _batched(model, requests: list[InferenceRequest]) -> BatchedRequests:
    batched = BatchedRequests({f"r{i}": r for i, r in enumerate(requests)})
    response = asyncio.run(model.predict(batched.merged_request))
    assert len(batched.split_response(response)) == len(requests)  # MLServer's split runs
    return batched


@pytest.mark.parametrize("pad_to", [64, None], ids=["same-length", "different-lengths"])
def test_batched_predict_gives_each_request_its_own_rows(model, folder, pad_to):
    sha = manifest_sha256(folder)
    crossings, reference = _crossings(folder, pad_to)
    alone = []
    for arrays in crossings:
        request, call = _request(arrays, sha)
        asyncio.run(model.predict(request))
        alone.append(call.outputs["output"])
        assert call.reply[BATCH_PARAMETER] == 1
    pairs = [_request(arrays, sha) for arrays in crossings]
    _batched(model, [request for request, _ in pairs])
    for (_, call), single, ref in zip(pairs, alone, reference, strict=True):
        assert call.error is None
        np.testing.assert_allclose(call.outputs["output"], single, atol=TOLERANCE)
        np.testing.assert_allclose(call.outputs["output"][0], ref, atol=TOLERANCE)
    sizes = [call.reply[BATCH_PARAMETER] for _, call in pairs]
    if pad_to:  # one shape: one forward pass for all five
        assert sizes == [len(SENTENCES)] * len(SENTENCES)
    else:  # one pass per token count: "Short." alone, the others by length
        lengths = [int(c["attention_mask"].shape[1]) for c in crossings]
        assert sizes == [lengths.count(t) for t in lengths]


def test_a_bad_request_in_a_batch_fails_alone(model, folder):
    sha = manifest_sha256(folder)
    crossings, reference = _crossings(folder, 64)
    pairs = [_request(arrays, sha) for arrays in crossings[:3]]
    pairs[1][1].parameters[MANIFEST_PARAMETER] = "0" * 64  # another folder's request
    bad = dict(crossings[2])
    bad["hidden_scales"] = np.full_like(bad["hidden_scales"], np.nan)
    pairs.append(_request(bad, sha))
    _batched(model, [request for request, _ in pairs])
    codes = [None if call.error is None else call.error[0].name for _, call in pairs]
    assert codes == [None, "FAILED_PRECONDITION", None, "INVALID_ARGUMENT"]
    for index in (0, 2):
        np.testing.assert_allclose(pairs[index][1].outputs["output"][0], reference[index],
                                   atol=TOLERANCE)
        assert pairs[index][1].reply[BATCH_PARAMETER] == 2
