"""Where `laimco deploy` writes: a hidden staging folder next to `--out`, renamed into place
when the deployment ends, so a failed or interrupted deploy never leaves a partial folder
(docs/runtime.md, "`laimco deploy`"); and `DeployError`, the error of every deploy step."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


class DeployError(RuntimeError):
    """A deployment that cannot run; the message says what to change."""


def is_deploy_output(folder: Path) -> bool:
    """Whether `folder` is a report folder `laimco deploy` wrote (its deploy.json)."""
    try:
        report = json.loads((folder / "deploy.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"scenario", "decision", "options"} <= set(report)


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.deploy-"


def remove_stale_staging(out: Path) -> list[Path]:
    """Staging folders of `out` (.NAME.deploy-<pid>-…) whose process no longer runs, left by a
    SIGKILL; removed, and returned."""
    from laimco.runtime.repository import process_alive

    pattern = re.compile(rf"^{re.escape(_staging_prefix(out))}(\d+)-")
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for path in out.parent.iterdir():
            match = pattern.match(path.name)
            if match and path.is_dir() and not path.is_symlink() and not process_alive(
                    int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def staged_output(out: Path, replace: bool,
                  is_ours: Callable[[Path], bool] = is_deploy_output) -> Iterator[Path]:
    """A hidden sibling folder of `out` to write everything into; renamed to `out` when the
    block ends normally (replacing an earlier deployment only with `replace`), removed when it
    fails. So a failed or interrupted deploy never leaves a partial `out`."""
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(out)}{os.getpid()}-",
                                    dir=out.parent))
    try:
        yield staging
        if out.exists():
            if not (replace and (is_ours(out) or not any(out.iterdir()))):
                raise DeployError(f"--out {out} appeared while deploying; it is left untouched")
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # the parents this call made, innermost first, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


