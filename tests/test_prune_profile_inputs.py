"""`laimco prune` and `laimco profile` on malformed input: exit code 2 and one message naming the
argument or file (never a traceback), checks before the model is loaded, and output folders that
only ever replace what laimco wrote."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import transformers
from typer.testing import CliRunner

import laimco.models.loading as loading
from laimco.cli import app
from laimco.models.loading import load_model, model_from_config
from laimco.models.output_folder import clean_stale_staging, new_staging
from laimco.models.pruned import load_pruned, prune_split_model, save_pruned

pytestmark = pytest.mark.slow  # loads torch models

runner = CliRunner()


def _bert() -> transformers.BertConfig:
    return transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3,
                                   num_attention_heads=4, intermediate_size=64,
                                   max_position_embeddings=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    model_from_config(_bert(), seed=1).model.save_pretrained(folder)
    return folder


def _copy(model_dir: Path, tmp_path: Path, name: str = "m") -> Path:
    target = tmp_path / name
    target.mkdir()
    for file in model_dir.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def _one_message(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def _edit_config(folder: Path, **changes: object) -> None:
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


# --- malformed models -------------------------------------------------------------------------

def test_config_that_is_not_an_object(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(model_dir, tmp_path)
    (folder / "config.json").write_text("5")
    for args in (["prune", str(folder), "--split", "1", "--out", str(tmp_path / "o")],
                 ["profile", str(folder), "-o", str(tmp_path / "p.json")],
                 ["profile", "--config", str(folder / "config.json"), "-o",
                  str(tmp_path / "p.json")]):
        message = _one_message(runner.invoke(app, args))
        assert "config.json" in message and "JSON object" in message


@pytest.mark.parametrize(("key", "value"), [("num_hidden_layers", "3"),
                                            ("num_hidden_layers", 2.5),
                                            ("num_attention_heads", True),
                                            ("hidden_size", -32),
                                            ("num_hidden_layers", 10**9)])
def test_layer_counts_must_be_whole_numbers_in_range(model_dir: Path, tmp_path: Path,
                                                     key: str, value: object) -> None:
    folder = _copy(model_dir, tmp_path)
    _edit_config(folder, **{key: value})
    message = _one_message(runner.invoke(app, ["profile", "--config", str(folder),
                                               "-o", str(tmp_path / "p.json")]))
    assert key in message and "whole number" in message


def test_weights_of_another_shape_than_the_config(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(model_dir, tmp_path)
    _edit_config(folder, hidden_size=64, intermediate_size=128)
    with pytest.raises(loading.CorruptWeightsError, match="shape"):
        load_model(folder)
    message = _one_message(runner.invoke(app, ["prune", str(folder), "--split", "1", "--out",
                                               str(tmp_path / "o")]))
    assert "config.json" in message and "shape" in message
    message = _one_message(runner.invoke(app, ["profile", str(folder), "-o",
                                               str(tmp_path / "p.json")]))
    assert "config.json" in message
    assert not (tmp_path / "o").exists() and not (tmp_path / "p.json").exists()


def test_a_config_describing_far_more_weights_is_refused_before_allocating(
        model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy(model_dir, tmp_path)
    _edit_config(folder, hidden_size=4096, intermediate_size=16384, num_hidden_layers=48,
                 num_attention_heads=32)  # ~10⁹ parameters against 40 k in the file

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("from_pretrained must not run")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", staticmethod(no_loading))
    with pytest.raises(loading.CorruptWeightsError, match="describes"):
        load_model(folder)


def test_pickle_weights_are_never_loaded(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((model_dir / "config.json").read_text())
    # not even a valid pickle: laimco must refuse by name, never open it
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not a pickle")
    for args in (["prune", str(folder), "--split", "1", "--out", str(tmp_path / "o")],
                 ["profile", str(folder), "-o", str(tmp_path / "p.json")]):
        message = _one_message(runner.invoke(app, args))
        assert "pytorch_model.bin" in message or "*.bin" in message
        assert "safetensors" in message


def test_truncated_safetensors_in_profile(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(model_dir, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    message = _one_message(runner.invoke(app, ["profile", str(folder), "-o",
                                               str(tmp_path / "p.json")]))
    assert "model.safetensors" in message and "safetensors" in message
    assert not (tmp_path / "p.json").exists()


# --- option values ----------------------------------------------------------------------------

@pytest.mark.parametrize(("option", "value"), [("--seq-len", "0"), ("--seq-len", "-5"),
                                               ("--batch-size", "0"),
                                               ("--activation-bits", "-1"),
                                               ("--activation-bits", "65"),
                                               ("--image-size", "0")])
def test_profile_option_ranges(model_dir: Path, tmp_path: Path, option: str,
                               value: str) -> None:
    result = runner.invoke(app, ["profile", str(model_dir), "-o", str(tmp_path / "p.json"),
                                 option, value])
    message = _one_message(result)
    assert option in message or option.lstrip("-").replace("-", "_") in message
    assert not (tmp_path / "p.json").exists()


def test_profile_output_that_is_a_folder_or_under_a_file(model_dir: Path,
                                                         tmp_path: Path) -> None:
    message = _one_message(runner.invoke(app, ["profile", str(model_dir), "-o", str(tmp_path)]))
    assert "-o" in message and "folder" in message
    (tmp_path / "f").write_text("mine")
    message = _one_message(runner.invoke(app, ["profile", str(model_dir), "-o",
                                               str(tmp_path / "f" / "p.json")]))
    assert "is a file" in message
    assert (tmp_path / "f").read_text() == "mine"


@pytest.mark.parametrize(("args", "named"), [
    (["--rule", "random"], "--rule"),
    (["--rho-device", "1.0"], "--rho-device"),
    (["--rho-server", "-0.1"], "--rho-server"),
    (["--rho-server", "nan"], "--rho-server"),
    (["--rule", "wanda", "--calibration-sentences", "0"], "--calibration-sentences"),
    (["--calibration-sentences", "-5"], "--calibration-sentences"),
    (["--rule", "wanda", "--calibration-sentences", "-5"], "--calibration-sentences"),
    (["--rule", "magnitude", "--calibration-sentences", "16"], "--rule wanda"),
    (["--rule", "wanda", "--calibration-sentences", "100000"], "--calibration-sentences"),
    (["--split", "9"], "--split"),
    (["--split", "-1"], "--split"),
])
def test_prune_options_are_checked_before_the_model_loads(
        model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
        named: str) -> None:
    def no_loading(*a: object, **k: object) -> None:
        raise AssertionError("the model must not be loaded for a bad option")

    monkeypatch.setattr(loading, "load_model", no_loading)
    full = ["prune", str(model_dir), "--out", str(tmp_path / "o"), *args]
    if "--split" not in args:
        full += ["--split", "1"]
    message = _one_message(runner.invoke(app, full))
    assert named in message
    assert not (tmp_path / "o").exists()


def test_prune_out_under_a_file(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("mine")
    for out in (tmp_path / "f", tmp_path / "f" / "under"):
        message = _one_message(runner.invoke(app, ["prune", str(model_dir), "--split", "1",
                                                   "--out", str(out)]))
        assert "--out" in message and "file" in message
    assert (tmp_path / "f").read_text() == "mine"


# --- output folders ---------------------------------------------------------------------------

def _prune(model_dir: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["prune", str(model_dir), "--split", "2", "--rho-device", "0.5",
                               "--out", str(out), *extra])


def test_overwrite_replaces_only_folders_laimco_wrote(model_dir: Path, tmp_path: Path) -> None:
    # a folder of the user's, with no laimco manifest: refused with and without --overwrite
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    assert "--overwrite" in _one_message(_prune(model_dir, user))
    assert "laimco" in _one_message(_prune(model_dir, user, "--overwrite"))
    assert (user / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    # a user's manifest.json that is not laimco's does not make the folder replaceable
    (user / "manifest.json").write_text('{"written": ["notes.txt"]}')
    _one_message(_prune(model_dir, user, "--overwrite"))
    assert (user / "notes.txt").read_text() == "precious"

    # a folder laimco wrote: replaced with --overwrite, refused without
    ours = tmp_path / "ours"
    assert _prune(model_dir, ours).exit_code == 0
    manifest = json.loads((ours / "manifest.json").read_text())
    assert sorted(manifest["written"]) == sorted(p.name for p in ours.iterdir())
    assert "--overwrite" in _one_message(_prune(model_dir, ours))
    assert _prune(model_dir, ours, "--overwrite").exit_code == 0

    # ... but not once the user has put a file of their own into it
    (ours / "my-results.csv").write_text("a,b\n")
    message = _one_message(_prune(model_dir, ours, "--overwrite"))
    assert "my-results.csv" in message
    assert (ours / "my-results.csv").read_text() == "a,b\n"
    assert (ours / "device.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from laimco.models.output_folder import new_staging
staging = new_staging(Path(sys.argv[1]))
(staging / "device.safetensors").write_bytes(b"x" * 1000)
print(staging, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_staging_left_by_a_killed_process_is_removed_by_the_next_run(
        model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    env = {**os.environ, "PYTHONPATH": str(Path(loading.__file__).parents[2])}
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    stale = Path(killed.stdout.strip())
    assert stale.is_dir() and stale.parent == tmp_path

    # a staging folder of a process that still runs, and a look-alike folder that is not
    # laimco's (no marker), must both survive
    sleeper = subprocess.Popen([sys.executable, "-c",
                                "import sys, time; from pathlib import Path;"
                                "from laimco.models.output_folder import new_staging;"
                                "print(new_staging(Path(sys.argv[1])), flush=True);"
                                "time.sleep(120)", str(out)],
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert sleeper.stdout is not None
        alive = Path(sleeper.stdout.readline().strip())
        look_alike = tmp_path / ".pruned.laimco-staging.1.abcd"
        look_alike.mkdir()
        (look_alike / "keep.txt").write_text("not laimco's")

        assert _prune(model_dir, out).exit_code == 0
        assert not stale.exists()
        assert alive.is_dir()
        assert (look_alike / "keep.txt").read_text() == "not laimco's"
    finally:
        sleeper.kill()
        sleeper.wait()
    time.sleep(0.1)
    assert clean_stale_staging(out) == [alive]
    assert sorted(p.name for p in tmp_path.iterdir()) == [look_alike.name, "pruned"]


def test_own_staging_is_not_stale(tmp_path: Path) -> None:
    staging = new_staging(tmp_path / "x")
    assert clean_stale_staging(tmp_path / "x") == []
    assert staging.is_dir()


def test_structured_manifest_is_strict_json(tmp_path: Path) -> None:
    loaded = model_from_config(_bert())
    pruned = prune_split_model(loaded, 2, 0.5, 0.25, "structured")
    assert math.isnan(pruned.reports["device"].parameter_distortion)
    folder = save_pruned(pruned, tmp_path / "s")

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    manifest = json.loads((folder / "manifest.json").read_text(), parse_constant=no_constants)
    assert manifest["sides"]["device"]["parameter_distortion"] is None
    assert math.isnan(load_pruned(folder).reports["device"].parameter_distortion)


def test_prune_prints_a_dash_for_a_side_without_prunable_weights(model_dir: Path,
                                                                 tmp_path: Path) -> None:
    result = runner.invoke(app, ["prune", str(model_dir), "--split", "0", "--rho-server", "0.3",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "device: nothing to prune (ratio —)" in result.output
    assert "server: ratio 0.300" in result.output


def test_wanda_with_no_calibration_batch_is_refused() -> None:
    from laimco.models.pruned import PruningError

    loaded = model_from_config(_bert())
    with pytest.raises(PruningError, match="at least one calibration batch"):
        prune_split_model(loaded, 2, 0.3, 0.3, "wanda", calibration=[])


@pytest.mark.parametrize(("changes", "expected"), [
    ({"model_type": "t5"}, "model_type 't5' is not supported"),
    ({"hidden_act": "weird"}, "does not build a model"),
    ({"hidden_size": 30}, "not a multiple of the number of attention heads"),
    ({"model_type": "llama", "num_key_value_heads": 3}, "num_key_value_heads"),
    ({"num_hidden_layers": None}, "num_hidden_layers"),
])
def test_inconsistent_configs_exit_2_in_every_command(model_dir: Path, tmp_path: Path,
                                                      changes: dict, expected: str) -> None:
    folder = _copy(model_dir, tmp_path)
    _edit_config(folder, **changes)
    for args in (["profile", "--config", str(folder), "-o", str(tmp_path / "c.json")],
                 ["profile", str(folder), "-o", str(tmp_path / "p.json")],
                 ["prune", str(folder), "--split", "1", "--out", str(tmp_path / "o")]):
        assert expected in _one_message(runner.invoke(app, args))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize(("layers", "expected"), [(2, "num_hidden_layers"), (5, "not in the")])
def test_a_layer_count_that_does_not_match_the_weights(model_dir: Path, tmp_path: Path,
                                                       layers: int, expected: str) -> None:
    """3 blocks in the weights: a config with 2 would silently drop one, with 5 would run two
    randomly initialised blocks."""
    folder = _copy(model_dir, tmp_path)
    _edit_config(folder, num_hidden_layers=layers)
    message = _one_message(runner.invoke(app, ["prune", str(folder), "--split", "1", "--out",
                                               str(tmp_path / "o")]))
    assert expected in message
    _one_message(runner.invoke(app, ["profile", str(folder), "-o", str(tmp_path / "p.json")]))
    assert not (tmp_path / "o").exists() and not (tmp_path / "p.json").exists()


def test_image_size_for_a_text_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    message = _one_message(runner.invoke(app, ["profile", str(model_dir), "-o",
                                               str(tmp_path / "p.json"), "--image-size", "224"]))
    assert "image_size" in message and "ViT" in message


def test_wanda_from_the_command_line_with_a_few_calibration_sentences(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prune", "minilm", "--split", "3", "--rho-device", "0.3",
                                 "--rho-server", "0.2", "--rule", "wanda",
                                 "--calibration-sentences", "4", "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["rule"] == "wanda"
    assert manifest["sides"]["device"]["sparsity"] == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("name", ["", "  ", "../../x", "a/b"])
def test_profile_name_cannot_escape_the_output_folder(model_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      name: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert "--name" in _one_message(runner.invoke(app, ["profile", str(model_dir),
                                                        "--name", name]))
    assert not list(tmp_path.iterdir())


def test_profile_writes_under_runs_by_default(model_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["profile", str(model_dir), "--seq-len", "8"])
    assert result.exit_code == 0, result.output
    assert [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()] == [
        "runs/profiles/tiny.json"]
