"""The example scenarios, sweep files and fleet files shipped inside the package (README
"Scenarios", docs/study.md, docs/fleet.md), so that an installed laimco runs without a checkout.
The repository's top-level `scenarios/`, `sweeps/` and `fleets/` link here; `laimco examples
DEST` copies the three folders out."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE_FOLDERS = ("scenarios", "sweeps", "fleets")


class ExamplesError(ValueError):
    """The examples cannot be copied there; the message says what to change."""


def examples_dir() -> Path:
    """The folder holding `scenarios/`, `sweeps/` and `fleets/` in the installed package."""
    return Path(__file__).resolve().parent


def scenarios_dir() -> Path:
    """The shipped scenario files (`*.toml`)."""
    return examples_dir() / "scenarios"


def sweeps_dir() -> Path:
    """The shipped sweep files (`*.toml`); their `base` paths point at `../scenarios/`."""
    return examples_dir() / "sweeps"


def fleets_dir() -> Path:
    """The shipped fleet files (`*.toml`); they name packaged scenarios, so they load from
    anywhere."""
    return examples_dir() / "fleets"


def example_files() -> list[Path]:
    """Every shipped example file, relative to `examples_dir()`."""
    root = examples_dir()
    return sorted(file.relative_to(root) for folder in EXAMPLE_FOLDERS
                  for file in (root / folder).glob("*.toml"))


def copy_examples(dest: str | Path) -> list[Path]:
    """Copy `scenarios/`, `sweeps/` and `fleets/` into `dest` (created if missing), keeping the
    layout the sweep files' relative `base` paths need. Nothing is overwritten: if any target
    file exists, nothing is copied and ExamplesError names the files."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ExamplesError(f"{dest} is a file: give a folder to copy the examples into")
    for parent in dest.parents:
        if parent.exists() and not parent.is_dir():
            raise ExamplesError(f"{dest}: {parent} is a file, not a folder; give a folder "
                                "path")
    files = example_files()
    existing = [str(dest / f) for f in files if (dest / f).exists() or (dest / f).is_symlink()]
    if existing:
        shown = ", ".join(existing[:3]) + (" …" if len(existing) > 3 else "")
        raise ExamplesError(f"{len(existing)} example file(s) already exist ({shown}): laimco "
                            "never overwrites them; choose an empty folder or remove them")
    written = []
    for file in files:
        target = dest / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(examples_dir() / file, target)
        written.append(target)
    return written
