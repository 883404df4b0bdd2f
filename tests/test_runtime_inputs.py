"""Bad input to `laimco serve`, `laimco infer` and `laimco deploy` is refused before any work:
exit code 2 and one message naming the argument, no traceback, nothing written. No MLServer
process is started here (every refusal comes before the launch); the server-side refusals are
in test_runtime_robustness.py.

The pruned folder is a small random BERT (3 blocks, hidden 32) split at 2.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
import typer
from typer.testing import CliRunner

from laimco.models.loading import model_from_config
from laimco.models.pruned import prune_split_model, save_pruned
from laimco.runtime.commands import register
from laimco.runtime.deploy import remove_stale_staging
from laimco.runtime.pruned_folder import PrunedFolderError, check_pruned_folder
from laimco.runtime.repository import GUARD_FILE, remove_stale_repositories

pytestmark = pytest.mark.slow  # builds torch models and runs the runtime commands

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "minilm-phone.toml"


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(_app(), [str(a) for a in args], env=env or {"LAIMCO_TOKEN": ""})


def _refused(result, *needles: str) -> None:
    """Exit 2 with a message that names what to change, and no traceback. (Rich wraps long
    lines anywhere, so whitespace is ignored in the comparison.)"""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = "".join(result.output.split())
    for needle in needles:
        assert "".join(needle.split()) in text, (needle, result.output)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=40)
    pruned = prune_split_model(model_from_config(config, seed=5), 2, 0.3, 0.3)
    return save_pruned(pruned, tmp_path_factory.mktemp("inputs") / "pruned")


def _copy(folder: Path, tmp_path: Path, edit=None) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    if edit is not None:
        manifest = json.loads((copy / "manifest.json").read_text())
        edit(manifest)
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


# --- serve -----------------------------------------------------------------------------------

def test_an_empty_token_never_switches_authentication_off(folder, tmp_path) -> None:
    _refused(_run("serve", folder, "--token", ""), "--token", "empty")
    _refused(_run("serve", folder, "--token", "   "), "--token", "empty")
    _refused(_run("serve", folder, env={"LAIMCO_TOKEN": " \t"}), "LAIMCO_TOKEN", "empty")
    for content in ("", "\n", "  \n\t\n"):
        secret = tmp_path / "secret"
        secret.write_text(content)
        _refused(_run("serve", folder, "--token-file", secret), "--token-file", "empty")
    secret.write_text("ok-secret")
    _refused(_run("serve", folder, "--token-file", secret, "--token", "x"), "not both")
    _refused(_run("serve", folder, "--token", "snow☃man"), "--token", "printable ASCII")
    _refused(_run("serve", folder, "--token-file", tmp_path / "missing"), "--token-file",
             "cannot read")


@pytest.mark.parametrize("option", ["--port", "--http-port"])
@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_ports_outside_the_tcp_range_are_refused(folder, option: str, port: str) -> None:
    _refused(_run("serve", folder, option, port), option)


def test_a_port_another_server_listens_on_is_refused(folder) -> None:
    """Both a plain listener and one with SO_REUSEPORT (what gRPC sets, which let a second
    server share the port) make `serve` refuse the port."""
    for reuse_port in (False, True):
        with socket.socket() as listener:
            if reuse_port:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = str(listener.getsockname()[1])
            _refused(_run("serve", folder, "--port", port), "--port", port, "already listens")
            _refused(_run("serve", folder, "--port", "0", "--http-port", port), "--http-port",
                     "already listens")


def test_hosts_that_are_not_this_machine_are_refused(folder) -> None:
    _refused(_run("serve", folder, "--host", "256.1.1.1"), "--host", "does not resolve")
    _refused(_run("serve", folder, "--host", "no-such-host.invalid"), "--host")
    _refused(_run("serve", folder, "--host", "192.0.2.77"), "--host",  # TEST-NET-1
             "not an address of this machine")


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b", "", ".hidden", "x" * 64, "a..b"])
def test_model_names_that_are_not_safe_identifiers_are_refused(folder, name: str) -> None:
    _refused(_run("serve", folder, "--model-name", name), "--model-name")
    _refused(_run("infer", folder, "text", "--model-name", name), "--model-name")


MANIFEST_EDITS = {
    "parent path": (lambda m: m["files"]["server"].update(name="../outside.safetensors"),
                    "files.server.name"),
    "absolute path": (lambda m: m["files"]["server"].update(name="/etc/passwd"),
                      "files.server.name"),
    "sub folder": (lambda m: m["files"]["device"].update(name="sub/device.safetensors"),
                   "files.device.name"),
    "split as text": (lambda m: m.update(split="2"), "split"),
    "split beyond L": (lambda m: m.update(split=99), "split 99 is outside"),
    "files not a table": (lambda m: m.update(files=["server.safetensors"]), "files"),
    "no server file": (lambda m: m["files"].pop("server"), "no 'server' entry"),
    "unknown family": (lambda m: m.update(family="resnet"), "family"),
    "bad sha256": (lambda m: m["files"]["server"].update(sha256="abc"), "files.server.sha256"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_EDITS))
def test_malformed_manifests_are_refused_before_anything_is_opened(folder, tmp_path,
                                                                   case: str) -> None:
    edit, needle = MANIFEST_EDITS[case]
    copy = _copy(folder, tmp_path, edit)
    _refused(_run("serve", copy, "--port", "0"), "manifest.json", needle)
    with pytest.raises(PrunedFolderError, match=r"manifest\.json"):
        check_pruned_folder(copy)


def test_a_manifest_naming_a_system_file_is_never_read(folder, tmp_path) -> None:
    """A symbolic link inside the folder to a file outside is refused like a path."""
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((folder / "server.safetensors").read_bytes())
    copy = _copy(folder, tmp_path)
    (copy / "server.safetensors").unlink()
    (copy / "server.safetensors").symlink_to(outside)
    _refused(_run("serve", copy, "--port", "0"), "symbolic link")


def test_tampered_weights_and_manifests_exit_2(folder, tmp_path) -> None:
    copy = _copy(folder, tmp_path)
    weights = bytearray((copy / "server.safetensors").read_bytes())
    weights[-3] ^= 0xFF  # one flipped byte in a weight
    (copy / "server.safetensors").write_bytes(bytes(weights))
    _refused(_run("serve", copy, "--port", "0"), "server.safetensors", "SHA-256")
    (copy / "manifest.json").write_text("{not json")
    _refused(_run("serve", copy, "--port", "0"), "not valid JSON")
    (copy / "manifest.json").write_bytes(b"\xff\xfe\x00binary")
    _refused(_run("serve", copy, "--port", "0"), "manifest.json")


def test_a_repository_folder_laimco_did_not_write_is_left_alone(folder, tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "settings.json").write_text("user data")
    _refused(_run("serve", folder, "--port", "0", "--repository", mine), "--repository",
             "not empty")
    assert (mine / "settings.json").read_text() == "user data"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporary_repositories_of_dead_processes_are_removed(tmp_path) -> None:
    def repository(name: str, laimco: bool = True) -> Path:
        path = tmp_path / name
        (path / "laimco").mkdir(parents=True)
        (path / ("settings.json" if laimco else "notes.txt")).write_text("{}")
        if laimco:
            (path / GUARD_FILE).write_text("{}")
        return path

    dead = _dead_pid()
    stale = repository(f"laimco-serve-{dead}-abc")
    alive = repository(f"laimco-serve-{os.getppid()}-abc")  # our parent process runs
    foreign = repository(f"laimco-serve-{dead}-user", laimco=False)
    unrelated = repository("other-folder")
    assert remove_stale_repositories(tmp_path) == [stale]
    assert not stale.exists() and alive.exists() and foreign.exists() and unrelated.exists()


# --- infer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-5"])
def test_infer_refuses_a_max_length_below_one(folder, value: str) -> None:
    _refused(_run("infer", folder, "text", "--max-length", value), "--max-length")


def test_infer_refuses_a_max_length_beyond_the_models_positions(folder) -> None:
    _refused(_run("infer", folder, "text", "--max-length", "41"), "--max-length 41", "40")


def test_infer_refuses_bad_options_before_connecting(folder, tmp_path) -> None:
    """The server address is a closed port: every refusal below comes before a connection."""
    closed = "127.0.0.1:9"
    _refused(_run("infer", folder, "x", "--server", closed, "--log",
                  tmp_path / "missing" / "log.jsonl"), "--log", "does not exist")
    _refused(_run("infer", folder, "x", "--server", closed, "--log", tmp_path), "--log",
             "is a folder")
    _refused(_run("infer", folder, "x", "--timeout", "0"), "--timeout")
    _refused(_run("infer", folder, "x", "--retries", "0"), "--retries")
    _refused(_run("infer", folder, "x", "--rate-bps", "0"), "--rate-bps")
    _refused(_run("infer", folder, "x", "--server", "127.0.0.1:99999"), "--server")
    _refused(_run("infer", folder, "x", "--server", "no-port"), "--server")
    _refused(_run("infer", folder, "x", "--token", ""), "--token", "empty")
    assert not (tmp_path / "missing").exists()


# --- deploy ----------------------------------------------------------------------------------

def _nothing_written(out: Path) -> None:
    assert not out.exists()
    if out.parent.exists():
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.mark.parametrize(("args", "needle"), [
    (["--sentences", "1"], "--sentences 1"),
    (["--sentences", "100000"], "--sentences 100000"),
    (["--calibration-sentences", "0", "--rule", "wanda"], "--calibration-sentences 0"),
    (["--rule", "random"], "--rule 'random'"),
    (["--strategy", "best"], "--strategy 'best'"),
    (["--model", "/no/such/model"], "--model"),
])
def test_deploy_validates_every_option_before_any_work(tmp_path, args, needle) -> None:
    out = tmp_path / "runs" / "deploy"
    _refused(_run("deploy", SCENARIO, "--out", out, *args), needle)
    _nothing_written(out)
    assert not (tmp_path / "runs").exists()


def test_deploy_of_a_missing_scenario_leaves_no_folder(tmp_path) -> None:
    out = tmp_path / "run"
    result = _run("deploy", tmp_path / "missing.toml", "--out", out)
    _refused(result, "missing.toml")
    _nothing_written(out)


def test_deploy_never_writes_into_a_folder_it_did_not_make(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("user data")
    _refused(_run("deploy", SCENARIO, "--out", blocker), "--out", "is a file")
    _refused(_run("deploy", SCENARIO, "--out", blocker / "run"), "--out", "is a file")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("user data")
    _refused(_run("deploy", SCENARIO, "--out", mine), "--out", "--overwrite")
    _refused(_run("deploy", SCENARIO, "--out", mine, "--overwrite"), "not written by")
    assert (mine / "notes.txt").read_text() == "user data" and blocker.read_text() == "user data"


def test_stale_deploy_staging_of_dead_processes_is_removed(tmp_path) -> None:
    out = tmp_path / "run"
    stale = tmp_path / f".run.deploy-{_dead_pid()}-x"
    alive = tmp_path / f".run.deploy-{os.getppid()}-x"
    other = tmp_path / f".other.deploy-{_dead_pid()}-x"
    for path in (stale, alive, other):
        (path / "pruned").mkdir(parents=True)
    assert remove_stale_staging(out) == [stale]
    assert alive.exists() and other.exists()


def test_deploy_replaces_an_earlier_deployment_only_with_overwrite(tmp_path) -> None:
    """An infeasible scenario deploys nothing but writes its report: quick to run twice."""
    scenario = tmp_path / "tight.toml"
    scenario.write_text(SCENARIO.read_text().replace("latency_budget_s = 0.2",
                                                     "latency_budget_s = 0.001"))
    out = tmp_path / "run"
    first = _run("deploy", scenario, "--out", out)
    assert first.exit_code == 0, first.output
    written = (out / "deploy.json").read_text()
    _refused(_run("deploy", scenario, "--out", out), "--overwrite")
    assert (out / "deploy.json").read_text() == written
    again = _run("deploy", scenario, "--out", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert json.loads((out / "deploy.json").read_text())["status"] == "infeasible"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tight.toml"]
