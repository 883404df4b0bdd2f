"""MLServer settings generated from a pruned folder: a model repository with `settings.json`
(server: address, ports, message limit) and `<name>/model-settings.json` (the runtime class,
the folder, the declared tensors with dynamic dimensions, the manifest SHA-256 as version).

    repository/
      settings.json           host 127.0.0.1 by default, gRPC + HTTP ports, no metrics server
      laimco-guard.json        request size limit read by the launcher's gRPC interceptor
      <name>/model-settings.json

The token is never written here: the launcher reads it from the environment variable
`LAIMCO_TOKEN` of the server process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from laimco.runtime.protocol import Interface, Limits, interface_for, manifest_sha256

GUARD_FILE = "laimco-guard.json"
RUNTIME_CLASS = "laimco.runtime.server_model.ServerSubModel"
DEFAULT_MODEL_NAME = "laimco"
LOOPBACK = "127.0.0.1"


MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
TEMPORARY_PREFIX = "laimco-serve-"
_TEMPORARY = re.compile(rf"^{TEMPORARY_PREFIX}(\d+)-")


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot be a served model's name (it becomes a folder of the repository and
    part of every URL), or None."""
    if MODEL_NAME_PATTERN.match(name) and ".." not in name:
        return None
    return (f"model name {name!r} is not allowed: use 1 to 63 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, without '..' (--model-name)")


@dataclass(frozen=True)
class ServeOptions:
    """Where and how the server listens. The host is loopback unless asked otherwise."""

    grpc_port: int
    http_port: int
    host: str = LOOPBACK
    model_name: str = DEFAULT_MODEL_NAME
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        problem = model_name_problem(self.model_name)
        if problem:
            raise ValueError(problem)
        for option, port in (("--port", self.grpc_port), ("--http-port", self.http_port)):
            if not 1 <= port <= 65535:
                raise ValueError(f"{option} {port} is not a TCP port: give 1..65535")
        if self.grpc_port == self.http_port:
            raise ValueError(f"--port and --http-port are both {self.grpc_port}: give two "
                             "different ports")

    @property
    def connect_url(self) -> str:
        """host:port for a client on this machine (loopback when listening on all
        interfaces)."""
        host = LOOPBACK if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{host}:{self.grpc_port}"

    def transport_limit_bytes(self) -> int:
        """gRPC's own message limit: well above the checked limit, so that a request somewhat
        over it is refused by the guard with a readable INVALID_ARGUMENT."""
        return 2 * self.limits.max_request_bytes + 2**20


def folder_interface(folder: str | Path) -> Interface:
    """The tensors and identity of a pruned folder's server part (no weights are loaded)."""
    from laimco.models.loading import read_config
    from laimco.runtime.pruned_folder import read_checked_manifest

    folder = Path(folder)
    manifest = read_checked_manifest(folder)
    return interface_for(manifest.model_dump(), read_config(folder), manifest_sha256(folder))


@dataclass(frozen=True)
class HostedModel:
    """One model of a repository: the pruned folder whose server part it serves, its name, the
    manifests of other folders with the same server part and wire format whose clients it
    also answers (a fleet's devices that share it), MLServer's adaptive batching (at most
    `max_batch_size` requests merged, waiting at most `max_batch_time_s` for them; 1 = off) and
    whether positions after a pass's last real token are skipped where the family allows it
    (`cut_padding`, laimco.runtime.padding; False runs every position sent)."""

    folder: Path
    name: str = DEFAULT_MODEL_NAME
    accepted_manifests: tuple[str, ...] = ()
    max_batch_size: int = 1
    max_batch_time_s: float = 0.0
    cut_padding: bool = True


def model_settings(folder: str | Path, options: ServeOptions,
                   hosted: HostedModel | None = None) -> dict[str, Any]:
    """The model-settings.json of the server part of `folder` (named and batched as `hosted`
    says; default: `options.model_name`, no batching)."""
    folder = Path(folder).resolve()
    hosted = hosted or HostedModel(folder, options.model_name)
    iface = folder_interface(folder)
    others = [sha for sha in hosted.accepted_manifests if sha != iface.manifest_sha256]
    settings: dict[str, Any] = {
        "name": hosted.name,
        "implementation": RUNTIME_CLASS,
        "platform": "laimco-split-server",
        "versions": [iface.manifest_sha256, *others],
        "inputs": [spec.metadata() for spec in iface.inputs],
        "outputs": [iface.output.metadata()],
        "parameters": {"uri": str(folder), "version": iface.manifest_sha256,
                       "extra": {"limits": asdict(options.limits), "model": iface.model,
                                 "split": iface.split, "accepted_manifests": others,
                                 "cut_padding": hosted.cut_padding}},
    }
    if hosted.max_batch_size > 1:
        settings |= {"max_batch_size": hosted.max_batch_size,
                     "max_batch_time": hosted.max_batch_time_s}
    return settings


def server_settings(options: ServeOptions) -> dict[str, Any]:
    """MLServer's settings.json: one process, no debug access log, no metrics server."""
    return {
        "host": options.host,
        "grpc_port": options.grpc_port,
        "http_port": options.http_port,
        "grpc_max_message_length": options.transport_limit_bytes(),
        "parallel_workers": 0,
        "debug": False,
        "metrics_endpoint": None,
        "load_models_at_startup": True,
        "server_name": "laimco-edge",
    }


def is_repository(folder: Path) -> bool:
    """Whether `folder` is a model repository laimco wrote (it holds laimco-guard.json)."""
    return (folder / GUARD_FILE).is_file() and (folder / "settings.json").is_file()


def write_repository(folder: str | Path, out: str | Path, options: ServeOptions) -> Path:
    """Write the MLServer model repository serving the server part of `folder` into `out`.

    `out` must be missing, empty, or a repository laimco wrote before (ValueError otherwise):
    nothing laimco did not write is overwritten."""
    return write_models_repository([HostedModel(Path(folder), options.model_name)], out,
                                   options)


def write_models_repository(models: list[HostedModel], out: str | Path,
                            options: ServeOptions) -> Path:
    """Write one MLServer model repository hosting every model of `models` (one folder of
    model-settings each) into `out`, which must be missing, empty or laimco's."""
    names = [model.name for model in models]
    for name in names:
        problem = model_name_problem(name)
        if problem or names.count(name) > 1:
            raise ValueError(problem or f"model name {name!r} is given twice")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--repository {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not is_repository(out):
        raise ValueError(f"--repository {out} is not empty and was not written by laimco "
                         f"(no {GUARD_FILE}); give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(server_settings(options), indent=2) + "\n")
    (out / GUARD_FILE).write_text(json.dumps(
        {"max_request_bytes": options.limits.max_request_bytes}, indent=2) + "\n")
    for model in models:
        (out / model.name).mkdir(exist_ok=True)
        (out / model.name / "model-settings.json").write_text(
            json.dumps(model_settings(model.folder, options, model), indent=2) + "\n")
    return out


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_repositories(parent: str | Path | None = None) -> list[Path]:
    """Remove the temporary repositories (laimco-serve-<pid>-*) of processes that no longer
    run — left behind by a SIGKILL — from `parent` (the system's temporary folder by default).
    Only folders laimco wrote are touched; the ones removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = list(parent.iterdir())
    except OSError:
        return removed
    for path in candidates:
        match = _TEMPORARY.match(path.name)
        if not match or path.is_symlink() or not path.is_dir():
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or process_alive(pid):
            continue
        if not is_repository(path) and any(path.iterdir()):
            continue  # not laimco's (or not finished): leave it
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def temporary_repository() -> Path:
    """A new empty folder for a repository, named after this process (laimco-serve-<pid>-…) so
    that a later run can tell whether its owner still runs; stale ones are removed first."""
    remove_stale_repositories()
    return Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-"))
