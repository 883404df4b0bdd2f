"""The sources of the shipped scenarios' numbers, kept as data beside the scenarios they
justify (`citations.json` in the scenarios folder) and validated here: every key names a
scenario setting, every scenario pattern matches a scenario file of that folder."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from laimco.config import Scenario
from laimco.experiments.study.errors import StudyError, first_problem

CITATIONS_FILE = "citations.json"


def _scenario_keys() -> set[str]:
    """Every "section.field" a scenario file may set."""
    keys = set()
    for section, info in Scenario.model_fields.items():
        fields = getattr(info.annotation, "model_fields", {})
        keys |= {f"{section}.{name}" for name in fields}
    return keys


class Citation(BaseModel):
    """One source and what it justifies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str  # Markdown
    scenarios: tuple[str, ...]  # shell patterns on scenario file stems
    keys: tuple[str, ...]  # scenario settings it supports, "section.field"

    @field_validator("keys")
    @classmethod
    def _known_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(keys) - _scenario_keys())
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a scenario setting (section.field)")
        return keys


class Citations(BaseModel):
    """The citations file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str = ""
    sources: tuple[Citation, ...]


def load_citations(scenarios_dir: Path) -> Citations:
    """The citations beside the scenarios in `scenarios_dir`; the shipped ones if that folder
    has none (e.g. a copy made by `laimco examples`)."""
    from laimco.examples import scenarios_dir as shipped

    file = scenarios_dir / CITATIONS_FILE
    if not file.is_file():
        file = shipped() / CITATIONS_FILE
    try:
        citations = Citations.model_validate_json(file.read_bytes())
    except (OSError, ValidationError) as err:
        raise StudyError(f"{file}: not a valid citations file ({first_problem(err)})") from None
    stems = [f.stem for f in file.parent.glob("*.toml")]
    for number, source in enumerate(citations.sources):
        for pattern in source.scenarios:
            if not fnmatch.filter(stems, pattern):
                raise StudyError(f"{file}: sources[{number}].scenarios: {pattern!r} matches "
                                 f"no scenario file in {file.parent}")
    return citations
