"""The pruned folder the runtime serves or runs, checked before anything in it is trusted
(docs/runtime.md, "Pruned folders").

A pruned folder comes from `laimco prune` or `laimco deploy`, but by the time a server or a
client opens it, it is just files on disk. `check_pruned_folder` reads `manifest.json` through a
strict pydantic model (`PrunedManifest`) and refuses, with a message naming the key:

- a manifest that is not a JSON object of the expected shape (types, split outside 0..L, a
  family no adapter of `laimco.models.families` handles, sha256 that is not 64 hex digits,
  uplink settings the quantizer does not support), or larger than 1 MiB;
- a file name that is not a plain name inside the folder: `../x`, `/etc/passwd`, `a/b`, a
  symbolic link, anything but a regular file — the server never opens a file outside the folder;
- a missing weight file for a side that has units (the server part when s < L, the device part
  when s > 0);
- a weight file whose SHA-256 differs from the manifest's (tampered or truncated), or whose
  safetensors header does not parse.

Only then does `laimco.models.pruned.load_pruned` build the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from laimco.models.family_names import family_names
from laimco.models.output_folder import file_sha256
from laimco.runtime.protocol import UplinkSettings
from laimco.uplink.coding import Coding
from laimco.uplink.quantizer import Granularity

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 2**20


class PrunedFolderError(ValueError):
    """A pruned folder the runtime must not open; the message says what is wrong."""


class ManifestFile(BaseModel):
    """One file of the folder: a plain name inside it and its SHA-256."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
                or len(name) > 255):
            raise ValueError(f"{name!r} is not a plain file name inside the folder (no '/', "
                             "'..' or absolute paths)")
        return name


class ManifestSide(BaseModel):
    """What pruning did to one side (the runtime needs the structure of structured pruning)."""

    model_config = ConfigDict(extra="allow", strict=True)

    ratio: float = Field(ge=0.0, le=1.0)
    structure: list[dict[Literal["heads", "neurons"], list[int]]] = Field(default_factory=list)


class PrunedManifest(BaseModel):
    """manifest.json of a pruned folder, as `laimco.models.pruned.save_pruned` writes it."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=500)
    family: str
    n_units: int = Field(ge=1, le=100_000)
    split: int = Field(ge=0)
    rule: str = Field(min_length=1, max_length=100)
    sides: dict[Literal["device", "server"], ManifestSide]
    files: dict[Literal["device", "server", "masks"], ManifestFile]
    # the uplink (docs/runtime.md, "Quantized uplink"); a manifest without them: float32
    activation_bits: int = 32
    activation_granularity: Granularity = "token"
    activation_clip: float = 1.0
    coding: Coding = "none"

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        known = family_names()  # the family modules' names, read without importing torch
        if family not in known:
            raise ValueError(f"family {family!r} is not known: laimco knows {', '.join(known)}")
        return family

    @property
    def uplink(self) -> UplinkSettings:
        """How the activation crosses the link."""
        return UplinkSettings.from_manifest(self.model_dump())

    @model_validator(mode="after")
    def _consistent(self) -> PrunedManifest:
        if self.split > self.n_units:
            raise ValueError(f"split {self.split} is outside 0..n_units = {self.n_units}")
        needed = [side for side, has_units in (("device", self.split > 0),
                                               ("server", self.split < self.n_units))
                  if has_units]
        for side in needed:
            if side not in self.files:
                raise ValueError(f"files has no {side!r} entry, but the {side} part has units "
                                 f"(split {self.split} of {self.n_units})")
            if side not in self.sides:
                raise ValueError(f"sides has no {side!r} entry")
        self.uplink  # noqa: B018 -- QuantizationError / CodingError (ValueErrors) say what is allowed
        return self




def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {err.error_count() - 1} more problem(s))" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def read_checked_manifest(folder: str | Path) -> PrunedManifest:
    """The folder's manifest.json, parsed by `PrunedManifest` (no weight file is opened)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PrunedFolderError(f"{folder} is not a folder; give a folder written by "
                                "`laimco prune` or `laimco deploy`")
    path = folder / MANIFEST
    if path.is_symlink() or not path.is_file():
        raise PrunedFolderError(f"{folder}: no {MANIFEST} (a regular file); give a folder "
                                "written by `laimco prune` or `laimco deploy`")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise PrunedFolderError(f"{path} is {size} bytes; a manifest is at most "
                                f"{MAX_MANIFEST_BYTES} bytes")
    try:
        data: Any = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PrunedFolderError(f"{path}: not valid JSON ({err})") from None
    try:
        return PrunedManifest.model_validate(data)
    except ValidationError as err:
        raise PrunedFolderError(f"{path}: {_describe(err)}; re-run `laimco prune`") from None


def _check_weights(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError, ValueError) as err:
        raise PrunedFolderError(f"{path}: not a readable safetensors file ({err}); re-run "
                                "`laimco prune`") from None


def check_pruned_folder(folder: str | Path, *, verify_weights: bool = True) -> PrunedManifest:
    """The checked manifest of `folder`; with `verify_weights` every file it names is also a
    regular file inside the folder with the manifest's SHA-256 and a readable safetensors
    header. PrunedFolderError otherwise."""
    folder = Path(folder)
    manifest = read_checked_manifest(folder)
    root = folder.resolve()
    for key, entry in manifest.files.items():
        path = folder / entry.name
        if path.is_symlink() or path.resolve().parent != root:
            raise PrunedFolderError(f"{folder / MANIFEST}: files.{key}.name {entry.name!r} is a "
                                    "symbolic link or leaves the folder; the runtime only opens "
                                    "regular files inside it")
        if not path.is_file():
            raise PrunedFolderError(f"{path}: missing ({key} weights named by the manifest); "
                                    "re-run `laimco prune`")
        if verify_weights:
            if file_sha256(path) != entry.sha256:
                raise PrunedFolderError(f"{path}: changed since it was saved (SHA-256 differs "
                                        f"from the manifest's files.{key}.sha256); re-run "
                                        "`laimco prune`")
            _check_weights(path)
    return manifest
