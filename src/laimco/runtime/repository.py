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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from laimco.runtime.protocol import Interface, Limits, interface_for, manifest_sha256

GUARD_FILE = "laimco-guard.json"
RUNTIME_CLASS = "laimco.runtime.server_model.ServerSubModel"
DEFAULT_MODEL_NAME = "laimco"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServeOptions:
    """Where and how the server listens. The host is loopback unless asked otherwise."""

    grpc_port: int
    http_port: int
    host: str = LOOPBACK
    model_name: str = DEFAULT_MODEL_NAME
    limits: Limits = field(default_factory=Limits)

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
    from laimco.models.pruned import read_manifest

    folder = Path(folder)
    return interface_for(read_manifest(folder), read_config(folder), manifest_sha256(folder))


def model_settings(folder: str | Path, options: ServeOptions) -> dict[str, Any]:
    """The model-settings.json of the server part of `folder`."""
    folder = Path(folder).resolve()
    iface = folder_interface(folder)
    return {
        "name": options.model_name,
        "implementation": RUNTIME_CLASS,
        "platform": "laimco-split-server",
        "versions": [iface.manifest_sha256],
        "inputs": [spec.metadata() for spec in iface.inputs],
        "outputs": [iface.output.metadata()],
        "parameters": {"uri": str(folder), "version": iface.manifest_sha256,
                       "extra": {"limits": asdict(options.limits), "model": iface.model,
                                 "split": iface.split}},
    }


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


def write_repository(folder: str | Path, out: str | Path, options: ServeOptions) -> Path:
    """Write the MLServer model repository serving the server part of `folder` into `out`."""
    out = Path(out)
    (out / options.model_name).mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(server_settings(options), indent=2) + "\n")
    (out / GUARD_FILE).write_text(json.dumps(
        {"max_request_bytes": options.limits.max_request_bytes}, indent=2) + "\n")
    (out / options.model_name / "model-settings.json").write_text(
        json.dumps(model_settings(folder, options), indent=2) + "\n")
    return out
