"""The device classes of a fleet file: each `scenario` reference resolved to a scenario file (a
packaged scenario name, or a path relative to the fleet file) and loaded once; the distinct
files are the classes, named after their files (docs/fleet.md "Scenarios, classes and ids")."""

from __future__ import annotations

import re
from pathlib import Path

from laimco.config import ScenarioError, load_scenario
from laimco.fleet.fleet import DeviceClass

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # one safe path component


def scenario_file(reference: str, base_dir: Path) -> Path:
    """The scenario file a fleet names: a packaged scenario when `reference` is a bare name
    (no '/', no '.toml'), else a path relative to `base_dir` (the fleet file's folder)."""
    from laimco.examples import scenarios_dir

    if "/" in reference or "\\" in reference or reference.endswith(".toml"):
        file = base_dir / reference
        if not file.is_file():
            raise ScenarioError(f"scenario file {str(file)!r} does not exist")
        return file
    file = scenarios_dir() / f"{reference}.toml"
    if not file.is_file():
        names = ", ".join(sorted(p.stem for p in scenarios_dir().glob("*.toml")))
        raise ScenarioError(f"{reference!r} is not a packaged scenario (they are: {names}); "
                            "for a file of your own give its path ending in .toml")
    return file


class ClassCatalog:
    """The fleet's device classes, one per distinct scenario file, in order of appearance."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.classes: list[DeviceClass] = []
        self._by_file: dict[Path, int] = {}
        self._by_reference: dict[str, int] = {}

    def number(self, reference: str) -> int:
        """The class number of the scenario `reference`, loaded on first use; ScenarioError
        when it does not exist, does not validate, or its file name cannot name a class."""
        if reference not in self._by_reference:
            self._by_reference[reference] = self._add(reference)
        return self._by_reference[reference]

    def _add(self, reference: str) -> int:
        file = scenario_file(reference, self.base_dir).resolve()
        if file in self._by_file:
            return self._by_file[file]
        scenario = load_scenario(file)
        name = file.stem
        if not re.fullmatch(NAME_PATTERN, name):
            raise ScenarioError(f"the scenario file name {name!r} is not a safe class name "
                                "(letters, digits, '_', '-', '.'): rename the file")
        if any(c.name == name for c in self.classes):
            raise ScenarioError(f"another scenario file is also named {name!r}: device classes "
                                "are named after their files, so rename one")
        self._by_file[file] = len(self.classes)
        self.classes.append(DeviceClass(name=name, scenario=scenario))
        return self._by_file[file]
