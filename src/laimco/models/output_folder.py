"""Writing an output folder safely (README "Real models"): everything goes into a hidden staging
folder next to the target and is renamed into place, so an interrupted run leaves nothing
half-written; an existing folder is replaced only when laimco's manifest lists every file in it
(a folder laimco did not write, or one holding a file of the user's, is never deleted); staging
folders left behind by a killed process are removed by the next run.

Staging folders are named `.NAME.laimco-staging.PID.RANDOM` and hold a marker file with the
writer's host and process id; a staging folder is stale when that process no longer runs on this
host. A replaced folder is first renamed to `.NAME.laimco-old.PID.RANDOM`, then deleted."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any

STAGING_MARKER = ".laimco-staging"
_STAGING = "laimco-staging"
_OLD = "laimco-old"


class OutputFolderError(ValueError):
    """The output folder cannot be written or replaced; the message says what to change."""


def check_output_path(out: Path, option: str) -> None:
    """`out` must be a folder path whose existing ancestors are folders (not files)."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{option} {out}: is a file; give a folder path")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputFolderError(f"{option} {out}: {parent} is a file, not a folder; give "
                                    "a path under a folder")


def _written_by_laimco(out: Path, manifest_name: str) -> set[str] | None:
    """The file names laimco's manifest in `out` says laimco wrote (None: no such manifest)."""
    path = out / manifest_name
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or "laimco_version" not in manifest:
        return None
    written = manifest.get("written")
    if not isinstance(written, list) or not all(isinstance(n, str) for n in written):
        return None
    return {*written, manifest_name}


def check_replaceable(out: Path, *, overwrite: bool, manifest_name: str,
                      option: str = "--out", overwrite_option: str = "--overwrite") -> None:
    """Refuse to write into `out` unless it is missing or empty, or `overwrite` is set and
    laimco's manifest in it lists every file the folder holds."""
    check_output_path(out, option)
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise OutputFolderError(f"{option} {out}: exists and is not empty; choose another "
                                f"folder, or pass {overwrite_option} to replace a folder "
                                "laimco wrote")
    written = _written_by_laimco(out, manifest_name)
    if written is None:
        raise OutputFolderError(f"{option} {out}: has no laimco {manifest_name} listing its "
                                f"files, so {overwrite_option} will not delete it (laimco "
                                "replaces only folders it wrote); choose another folder")
    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()
                     if p.name not in written or not p.is_file() or p.is_symlink())
    if foreign:
        raise OutputFolderError(f"{option} {out}: holds files laimco did not write "
                                f"({', '.join(foreign[:5])}); {overwrite_option} never deletes "
                                "them: move them away or choose another folder")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _stale(folder: Path) -> bool:
    """True for a staging/old folder of a process of this host that no longer runs."""
    parts = folder.name.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    marker = folder / STAGING_MARKER
    if marker.is_file():
        try:
            owner = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
        if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
            return False
        pid = owner.get("pid", pid)
        if not isinstance(pid, int):
            return False
    elif _OLD not in folder.name:
        return False  # a staging folder without laimco's marker is not laimco's
    return pid != os.getpid() and not _pid_alive(pid)


def clean_stale_staging(out: Path) -> list[Path]:
    """Remove the staging (and replaced-folder) leftovers of `out` whose process is gone."""
    if not out.parent.is_dir():
        return []
    removed = []
    for kind in (_STAGING, _OLD):
        for folder in out.parent.glob(f".{out.name}.{kind}.*"):
            if folder.is_dir() and not folder.is_symlink() and _stale(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def new_staging(out: Path) -> Path:
    """A fresh staging folder next to `out` (stale ones of dead processes removed first)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out)
    staging = out.parent / f".{out.name}.{_STAGING}.{os.getpid()}.{secrets.token_hex(4)}"
    staging.mkdir()
    owner: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    (staging / STAGING_MARKER).write_text(json.dumps(owner), encoding="utf-8")
    return staging


def staged_files(staging: Path) -> list[str]:
    """The names of the files written into a staging folder (the marker excluded)."""
    return sorted(p.name for p in staging.iterdir() if p.name != STAGING_MARKER)


def commit_staging(staging: Path, out: Path, *, overwrite: bool, manifest_name: str,
                   option: str = "--out") -> None:
    """Move a finished staging folder to `out`, replacing a folder laimco wrote (checked
    again here) by two renames; the replaced folder is deleted afterwards."""
    check_replaceable(out, overwrite=overwrite, manifest_name=manifest_name, option=option)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.{_OLD}.{os.getpid()}.{secrets.token_hex(4)}"
        os.replace(out, old)
    (staging / STAGING_MARKER).unlink()
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (manifest checksums)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
