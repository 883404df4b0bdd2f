"""Packaging: the wheel ships the example scenarios and sweeps, an installed copy (no checkout,
no editable install) solves a shipped example from a folder outside the repository, and
`laimco examples` copies them without overwriting anything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from laimco.cli import app
from laimco.config import load_scenario
from laimco.examples import copy_examples, scenarios_dir, sweeps_dir
from laimco.optimize import solve

pytestmark = pytest.mark.slow  # builds and installs the wheel

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _repository_examples() -> list[str]:
    """The example files as the repository's top-level folders list them."""
    return sorted(f"{folder}/{p.name}" for folder in ("scenarios", "sweeps", "fleets")
                  for p in (ROOT / folder).glob("*.toml"))


def test_top_level_folders_are_the_packaged_ones() -> None:
    assert (ROOT / "scenarios").resolve() == scenarios_dir()
    assert (ROOT / "sweeps").resolve() == sweeps_dir()
    from laimco.experiments.study import default_sweeps_dir

    assert default_sweeps_dir() == sweeps_dir()
    assert len(list(default_sweeps_dir().glob("*.toml"))) >= 12


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (nothing written into the repository) and
    installed with --no-deps into a bare target folder."""
    pytest.importorskip("setuptools", reason="builds the wheel without build isolation (offline)")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(work / "dist"), str(source)], check=True, cwd=work,
                   capture_output=True, timeout=300)
    wheel = next((work / "dist").glob("laimco-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"laimco/examples/{f}" for f in _repository_examples()} <= names
    assert "laimco/__main__.py" in names
    assert "laimco/profiles/minilm-l6.json" in names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)],
                   check=True, cwd=work, capture_output=True, timeout=300)
    return work / "site"


def _laimco(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m laimco ARGS` with only the installed copy of laimco importable (the other
    dependencies come from this interpreter's site-packages)."""
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    return subprocess.run([sys.executable, "-m", "laimco", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_installed_wheel_solves_a_shipped_example_outside_the_repository(
        installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed), "PYTHONSAFEPATH": "1"}
    where = subprocess.run([sys.executable, "-c", "import laimco, laimco.experiments.study as s;"
                            "print(laimco.__file__); print(s.default_sweeps_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    module_file, sweeps = where.stdout.split()
    assert Path(module_file).is_relative_to(installed)  # not the checkout
    assert sorted(p.name for p in Path(sweeps).glob("*.toml")) == sorted(
        p.name for p in (ROOT / "sweeps").glob("*.toml"))

    example = installed / "laimco" / "examples" / "scenarios" / "minilm-phone.toml"
    result = _laimco(installed, elsewhere, "optimize", str(example), "--json")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    reference = solve(load_scenario(ROOT / "scenarios" / "minilm-phone.toml"))
    assert decision["status"] == "optimal"
    assert decision["split"] == reference.point.split
    assert decision["objective"] == pytest.approx(reference.point.objective, rel=1e-9)

    copied = _laimco(installed, elsewhere, "examples", "mine")
    assert copied.returncode == 0, copied.stderr
    result = _laimco(installed, elsewhere, "optimize", "mine/scenarios/minilm-iot.toml", "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["mine"]  # nothing else written
    version = _laimco(installed, elsewhere, "--version")
    assert version.returncode == 0 and version.stdout.split() == ["laimco", "0.1.0"]


def test_copied_sweeps_find_their_base_scenarios(tmp_path: Path) -> None:
    from laimco.experiments.sweep import load_sweep

    written = copy_examples(tmp_path / "ex")
    assert sorted(str(p.relative_to(tmp_path / "ex")) for p in written) == _repository_examples()
    spec = load_sweep(tmp_path / "ex" / "sweeps" / "latency.toml")
    assert spec.base == (tmp_path / "ex" / "scenarios" / "paper-minilm-phone.toml").resolve()


def test_examples_never_overwrites(tmp_path: Path) -> None:
    dest = tmp_path / "ex"
    (dest / "scenarios").mkdir(parents=True)
    mine = dest / "scenarios" / "minilm-phone.toml"
    mine.write_text("# my own edits\n")
    result = runner.invoke(app, ["examples", str(dest)])
    assert result.exit_code == 2
    assert "minilm-phone.toml" in result.output and "never overwrites" in result.output
    assert mine.read_text() == "# my own edits\n"
    assert sorted(p.name for p in dest.rglob("*")) == ["minilm-phone.toml", "scenarios"]
    (tmp_path / "file").write_text("x")
    assert runner.invoke(app, ["examples", str(tmp_path / "file")]).exit_code == 2
    assert runner.invoke(app, ["examples", str(tmp_path / "file" / "under")]).exit_code == 2
    fresh = runner.invoke(app, ["examples", str(tmp_path / "new")])
    assert fresh.exit_code == 0, fresh.output
    assert (tmp_path / "new" / "sweeps" / "latency.toml").read_text() == (
        ROOT / "sweeps" / "latency.toml").read_text()


def test_default_outputs_go_under_runs_not_into_the_shipped_reports() -> None:
    import inspect

    from laimco.experiments.commands import reproduce

    assert inspect.signature(reproduce).parameters["out"].default == Path("runs/study")
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"/runs/", "/profiles/", "/pruned/"} <= set(ignored)
    result = runner.invoke(app, ["analyze", "--help"])
    assert "runs/analyze" in result.output
