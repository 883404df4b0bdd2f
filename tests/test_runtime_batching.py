"""The server runtime under MLServer's adaptive batching, in a child process (MLServer's and
tritonclient's protobuf modules cannot share one process, and other test modules import
tritonclient): requests merged by MLServer's own `BatchedRequests` (the code its
AdaptiveBatcher runs) are answered by one `ServerSubModel.predict`, and each request gets
exactly the rows it gets alone — checked against the unbatched predict and against the
in-process pruned parts (independent of the runtime), for an 8-bit quantized uplink, requests
of the same and of different token counts, and bad requests inside a batch; a pass runs the
positions up to its last real token only (laimco.runtime.padding), or every one when
`cut_padding` is off, with the same answers."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # loads MiniLM and MLServer (in a child process)

SENTENCES = ["The return value is a new list.", "Raise an exception if the file is missing.",
             "Short.", "Iterate over the keys of a mapping and print each of them in order.",
             "Open the file, read every line and close it again."]
TOLERANCE = 1e-5  # float32 rows of one pass vs another pass over other rows (BLAS blocking)
_ids = itertools.count()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, np.ndarray]:
    """What the child measured (see `child`)."""
    out = tmp_path_factory.mktemp("batching")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(np.load(out / "results.npz"))


def test_batched_predict_gives_each_request_its_own_rows(results):
    for case in ("same", "different"):
        alone, batched = results[f"{case}_alone"], results[f"{case}_batched"]
        np.testing.assert_allclose(batched, alone, atol=TOLERANCE)
        np.testing.assert_allclose(batched, results[f"{case}_reference"], atol=TOLERANCE)
        assert (results[f"{case}_alone_sizes"] == 1).all()
    assert results["same_sizes"].tolist() == [len(SENTENCES)] * len(SENTENCES)  # one pass
    lengths = results["different_lengths"].tolist()  # one pass per token count
    assert results["different_sizes"].tolist() == [lengths.count(t) for t in lengths]
    assert len(set(lengths)) > 1


def test_a_pass_runs_the_positions_up_to_its_last_real_token(results):
    # padded to 64: each request alone runs its own real tokens, a batch the longest one's,
    # and the answers are still those of the pruned parts over all 64 positions (above)
    real = results["same_real_tokens"]
    assert real.max() < 64
    assert results["same_alone_positions"].tolist() == real.tolist()
    assert results["same_batched_positions"].tolist() == [real.max()]
    # cut_padding off: every position sent is run, with the same answers
    assert results["every_positions"].tolist() == [64]
    np.testing.assert_allclose(results["every_batched"], results["same_reference"],
                               atol=TOLERANCE)
    np.testing.assert_allclose(results["every_batched"], results["same_batched"],
                               atol=TOLERANCE)


def test_a_bad_request_in_a_batch_fails_alone(results):
    assert results["bad_codes"].tolist() == ["", "FAILED_PRECONDITION", "", "INVALID_ARGUMENT"]
    np.testing.assert_allclose(results["bad_good_rows"], results["bad_reference"],
                               atol=TOLERANCE)
    assert results["bad_good_sizes"].tolist() == [2, 2]


# ------------------------------------------------------------------ the child process

def make_folder(root: Path) -> Path:
    from laimco.models.loading import load_model
    from laimco.models.pruned import prune_split_model, save_pruned

    pruned = prune_split_model(load_model("minilm"), 2, 0.3, 0.5)
    return save_pruned(pruned, root / "pruned", activation=uplink().quantizer)


def uplink():  # type: ignore[no-untyped-def]
    from laimco.runtime.protocol import UplinkSettings
    from laimco.uplink.quantizer import QuantizerSettings

    return UplinkSettings(QuantizerSettings(8, "token", 1.0))


def make_model(folder: Path, cut_padding: bool = True):  # type: ignore[no-untyped-def]
    from mlserver.settings import ModelParameters, ModelSettings

    from laimco.runtime.protocol import manifest_sha256
    from laimco.runtime.server_model import ServerSubModel

    settings = ModelSettings(name="part", implementation=ServerSubModel,
                             parameters=ModelParameters(uri=str(folder),
                                                        version=manifest_sha256(folder),
                                                        extra={"cut_padding": cut_padding}))
    served = ServerSubModel(settings)
    asyncio.run(served.load())
    return served


def recording(model) -> list[int]:  # type: ignore[no-untyped-def]
    """The number of positions of every forward pass `model` runs from now on."""
    positions: list[int] = []
    inner = model._server

    def run(crossing):  # type: ignore[no-untyped-def]
        positions.append(int(crossing["attention_mask"].shape[1]))
        return inner(crossing)

    model._server = run
    return positions


def crossings(folder: Path, pad_to: int | None) -> tuple[list[dict], np.ndarray]:
    """Each sentence as its own request (what the device client sends), and the in-process
    pruned parts' outputs for it (the reference)."""
    import torch

    from laimco.models.pruned import load_pruned
    from laimco.runtime.deploy_uplink import run_pruned
    from laimco.runtime.uplink_wire import activation_tensors

    local = load_pruned(folder)
    sent, reference = [], []
    for text in SENTENCES:
        batch = local.loaded.tokenizer([text], return_tensors="pt", **(
            {"padding": "max_length", "max_length": pad_to} if pad_to else {}))
        with torch.no_grad():
            cut = local.device(dict(batch))
            reference.append(np.asarray(run_pruned(local, dict(batch), uplink())))
        sent.append(activation_tensors(cut["hidden_states"].numpy(),
                                       cut["attention_mask"].numpy(), uplink()))
    return sent, np.concatenate(reference)


def request(arrays: dict, sha: str):  # type: ignore[no-untyped-def]
    """What the guard makes of one binary gRPC request: the registered call and MLServer's
    request whose tensors carry the call's id (and no data)."""
    from mlserver.types import InferenceRequest, Parameters, RequestInput

    from laimco.runtime.guard import CALL_PARAMETER, PENDING_CALLS, BinaryCall
    from laimco.runtime.protocol import DATATYPE_OF

    call_id = f"test-{next(_ids)}"
    call = BinaryCall(inputs=dict(arrays),
                      datatypes={n: DATATYPE_OF[a.dtype] for n, a in arrays.items()},
                      parameters={"manifest_sha256": sha, "activation_bits": 8,
                                  "activation_granularity": "token"})
    PENDING_CALLS[call_id] = call
    inputs = [RequestInput(name=n, shape=list(a.shape), datatype=DATATYPE_OF[a.dtype], data=[],
                           parameters=Parameters(**{CALL_PARAMETER: call_id}))
              for n, a in arrays.items()]
    return InferenceRequest(inputs=inputs, parameters=Parameters(manifest_sha256=sha)), call


def run_batched(model, requests: list) -> None:  # type: ignore[no-untyped-def]
    """MLServer's merge, one predict, MLServer's split (which must run on the answer)."""
    from mlserver.batching.requests import BatchedRequests

    batched = BatchedRequests({f"r{i}": r for i, r in enumerate(requests)})
    response = asyncio.run(model.predict(batched.merged_request))
    assert len(batched.split_response(response)) == len(requests)


def child(out: Path) -> None:
    """Measure each request alone and in one batch (same and different token counts), and a
    batch with two bad requests; save the numbers the tests assert on."""
    from laimco.runtime.protocol import BATCH_PARAMETER, manifest_sha256

    folder = make_folder(out)
    model, sha = make_model(folder), manifest_sha256(folder)
    positions = recording(model)
    saved: dict[str, np.ndarray] = {}
    for case, pad_to in (("same", 64), ("different", None)):
        sent, saved[f"{case}_reference"] = crossings(folder, pad_to)
        alone, sizes = [], []
        for arrays in sent:
            one, call = request(arrays, sha)
            asyncio.run(model.predict(one))
            alone.append(call.outputs["output"])
            sizes.append(call.reply[BATCH_PARAMETER])
        saved[f"{case}_alone_positions"] = np.array(positions)
        positions.clear()
        pairs = [request(arrays, sha) for arrays in sent]
        run_batched(model, [r for r, _ in pairs])
        assert all(call.error is None for _, call in pairs)
        saved |= {f"{case}_alone": np.concatenate(alone), f"{case}_alone_sizes": np.array(sizes),
                  f"{case}_batched": np.concatenate([c.outputs["output"] for _, c in pairs]),
                  f"{case}_sizes": np.array([c.reply[BATCH_PARAMETER] for _, c in pairs]),
                  f"{case}_lengths": np.array([a["attention_mask"].shape[1] for a in sent]),
                  f"{case}_real_tokens": np.array([int(a["attention_mask"].sum())
                                                   for a in sent]),
                  f"{case}_batched_positions": np.array(positions)}
        positions.clear()
    every = make_model(folder, cut_padding=False)  # runs every position sent
    every_positions = recording(every)
    pairs = [request(arrays, sha) for arrays in crossings(folder, 64)[0]]
    run_batched(every, [r for r, _ in pairs])
    saved |= {"every_batched": np.concatenate([c.outputs["output"] for _, c in pairs]),
              "every_positions": np.array(every_positions)}
    sent, reference = crossings(folder, 64)
    pairs = [request(arrays, sha) for arrays in sent[:3]]
    pairs[1][1].parameters["manifest_sha256"] = "0" * 64  # another folder's request
    bad = dict(sent[2])
    bad["hidden_scales"] = np.full_like(bad["hidden_scales"], np.nan)
    pairs.append(request(bad, sha))
    run_batched(model, [r for r, _ in pairs])
    good = [pairs[0][1], pairs[2][1]]
    saved |= {"bad_codes": np.array(["" if c.error is None else c.error[0].name
                                     for _, c in pairs]),
              "bad_good_rows": np.concatenate([c.outputs["output"] for c in good]),
              "bad_reference": reference[[0, 2]],
              "bad_good_sizes": np.array([c.reply[BATCH_PARAMETER] for c in good])}
    np.savez(out / "results.npz", **saved)


if __name__ == "__main__":
    child(Path(sys.argv[1]))
