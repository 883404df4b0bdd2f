"""The first minutes with the command line: --version, `python -m laimco`, help and errors that
keep bracketed text, option combinations that would be silently ignored, the same limit names in
`compare` as in `optimize`, and the install command printed when the model extra is missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

import laimco
import laimco.extras
from laimco.cli import app
from laimco.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "scenarios" / "minilm-phone.toml"
runner = CliRunner()


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_version_flag_and_python_dash_m() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"laimco {laimco.__version__}"
    module = subprocess.run([sys.executable, "-m", "laimco", "--version"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert module.returncode == 0, module.stderr
    assert module.stdout.strip() == f"laimco {laimco.__version__}"


def _help_texts() -> list[tuple[str, str]]:
    """(where, help text) of every command and option of the whole command line."""
    root = typer.main.get_command(app)
    assert hasattr(root, "commands")
    texts = []
    for name, command in root.commands.items():
        texts.append((name, command.help or ""))
        texts += [(f"{name} {p.name}", getattr(p, "help", None) or "") for p in command.params]
    return texts


def test_every_help_text_survives_rich_markup() -> None:
    """Rich removes `[word]` it takes for a style tag: every help text must render to itself
    (with `\\[` escapes rendered as `[`)."""
    eaten = [(where, text) for where, text in _help_texts()
             if Text.from_markup(text).plain != text.replace("\\[", "[")]
    assert not eaten


def test_bracketed_help_and_errors_are_printed_whole() -> None:
    sweep_help = _flat(runner.invoke(app, ["sweep", "--help"]).output)
    assert "[quick] grids" in sweep_help
    result = runner.invoke(app, ["optimize", str(DEFAULT), "--strategy", "laimco[study]"])
    assert result.exit_code == 2
    assert "'laimco[study]'" in result.output


def test_compare_uses_the_binding_names_of_optimize() -> None:
    optimize = json.loads(runner.invoke(app, ["optimize", str(DEFAULT), "--json"]).stdout)
    compare = runner.invoke(app, ["compare", str(DEFAULT)])
    assert compare.exit_code == 0, compare.output
    joint_row = next(line for line in compare.output.splitlines() if line.startswith("│ joint"))
    assert [b.strip(" │") for b in joint_row.split("│")[10].split(",")] == optimize["binding"]
    for short in ("f_srv", "f_dev", "ρmax"):
        assert short not in compare.output
    assert not re.search(r"(?<![\w-])power(?![\w-])", compare.output)  # only tx_power


def test_compare_json_stdout_is_only_json() -> None:
    result = runner.invoke(app, ["compare", str(DEFAULT), "--json"])
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) >= 8  # progress went to stderr


@pytest.mark.parametrize(("args", "named", "takers"), [
    (["--ratio", "0.3"], "--ratio", "fixed-ratio"),
    (["--strategy", "tied", "--ratio", "0.3"], "--ratio", "fixed-ratio"),
    (["--split", "3"], "--split", "fixed-split"),
    (["--strategy", "fixed-ratio", "--split", "3"], "--split", "fixed-split"),
])
def test_options_a_strategy_ignores_are_refused(args: list[str], named: str,
                                                takers: str) -> None:
    result = runner.invoke(app, ["optimize", str(DEFAULT), *args])
    assert result.exit_code == 2
    message = _flat(result.output)
    assert named in message and takers in message


def test_options_a_strategy_reads_are_accepted() -> None:
    fixed = runner.invoke(app, ["optimize", str(DEFAULT), "--strategy", "fixed-ratio",
                                "--ratio", "0.4", "--json"])
    assert fixed.exit_code == 0, fixed.output
    data = json.loads(fixed.stdout)
    profile = load_profile("minilm-l6")
    side = profile.column("n_prunable")
    # the fixed ratio is applied to each side that has weights to prune
    if side[: data["split"]].sum() > 0:
        assert data["rho_device"] == pytest.approx(0.4)
    assert data["rho_server"] == pytest.approx(0.4)
    split = runner.invoke(app, ["optimize", str(DEFAULT), "--strategy", "fixed-split",
                                "--split", "4", "--json"])
    assert split.exit_code == 0 and json.loads(split.stdout)["split"] == 4


def test_ratio_of_a_side_with_nothing_to_prune_is_a_dash() -> None:
    counts = load_profile("minilm-l6").column("n_prunable")
    result = runner.invoke(app, ["compare", str(DEFAULT)])
    decisions = json.loads(runner.invoke(app, ["compare", str(DEFAULT), "--json"]).stdout)
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in result.output.splitlines() if line.startswith("│ ")
            and line.split("│")[1].strip()}
    checked = 0
    for d in decisions:
        if d["status"] != "optimal":
            continue
        split, rho_d, rho_s = rows[d["strategy"]]
        assert split == str(d["split"])
        assert (rho_d == "—") == (counts[: d["split"]].sum() == 0)
        assert (rho_s == "—") == (counts[d["split"]:].sum() == 0)
        checked += rho_d == "—" or rho_s == "—"
    assert checked >= 1  # on-device: nothing on the server
    on_device = runner.invoke(app, ["optimize", str(DEFAULT), "--strategy", "on-device"])
    line = next(ln for ln in on_device.output.splitlines() if "pruning ratio" in ln)
    assert line.split("│")[2].split("/")[1].strip() == "—"


@pytest.mark.parametrize("command", [
    ["profile", "minilm"], ["prune", "minilm", "--split", "2"], ["analyze", "minilm"]])
def test_a_missing_model_extra_prints_the_install_command(
        command: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = laimco.extras.importlib.util.find_spec

    def without_torch(name: str, *args: object):  # type: ignore[no-untyped-def]
        return None if name == "torch" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(laimco.extras.importlib.util, "find_spec", without_torch)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    message = _flat(result.output)
    assert "torch" in message and "pip install 'laimco[models]'" in message
    assert "torch==2.13.0" in message
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_readme_split_model_example_runs() -> None:
    """The README's Python example for splitting, run as written."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("import torch\n  from laimco.models.loading import load_model")
    block = textwrap.dedent(readme[start:readme.index("```", start)].replace("\n  ", "\n"))
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["same"] is True


@pytest.mark.parametrize(("module", "extra"), [("mlserver", "serve"), ("dask.distributed", "study"),
                                               ("torch", "models")])
def test_any_command_missing_an_extra_exits_2_with_the_install_command(
        module: str, extra: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import laimco.cli

    def missing() -> None:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    monkeypatch.setattr(laimco.cli, "app", missing)
    with pytest.raises(SystemExit) as exit_info:
        laimco.cli.main()
    assert exit_info.value.code == 2
    assert f"pip install 'laimco[{extra}]'" in _flat(capsys.readouterr().err)


def test_an_unrelated_missing_module_is_not_disguised(monkeypatch: pytest.MonkeyPatch) -> None:
    import laimco.cli

    def missing() -> None:
        raise ModuleNotFoundError("No module named 'nothing_of_ours'", name="nothing_of_ours")

    monkeypatch.setattr(laimco.cli, "app", missing)
    with pytest.raises(ModuleNotFoundError):
        laimco.cli.main()
