"""Starting and stopping the edge server: MLServer in a child process on loopback ports.

`start_server(folder)` writes the model repository for the pruned folder, starts
`python -m laimco.runtime.launch REPOSITORY` (MLServer's `start` with laimco's guard) in its
own process group, waits until the gRPC endpoint says the server and the model are ready, and
returns a `ServerProcess` that stops it (SIGTERM, then SIGKILL after a grace period). The
child's output goes to `server.log` in the repository folder; a server that dies while starting
raises `ServerStartError` with the end of that log.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from laimco.runtime.launch import TOKEN_ENV
from laimco.runtime.repository import (
    LOOPBACK,
    HostedModel,
    ServeOptions,
    temporary_repository,
    write_models_repository,
)

LOG_FILE = "server.log"


class ServerStartError(RuntimeError):
    """The server process exited or did not become ready in time; the message has its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.bind(address)
        return int(sock.getsockname()[1])


def listen_problem(host: str, port: int, option: str = "--port") -> str | None:
    """Why a server cannot listen on host:port right now, or None: the host does not resolve
    or is not an address of this machine, or another process listens on the port. The probe
    binds without SO_REUSEPORT (which gRPC would otherwise set, letting a second server share a
    port another one listens on) but with SO_REUSEADDR, as servers do, so that connections of
    a server that just ended do not block a restart."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        return f"--host {host!r} does not resolve to an address ({err}); give an IP or a name"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return (f"{option} {port}: another process already listens on {host}:{port}; "
                        f"stop it or choose another port ({option} 0 picks a free one)")
            if err.errno == errno.EADDRNOTAVAIL:
                return f"--host {host!r} is not an address of this machine ({err.strerror})"
            if err.errno == errno.EACCES:
                return (f"{option} {port}: not allowed to listen on it ({err.strerror}); ports "
                        "below 1024 need privileges, choose a higher one")
            return f"cannot listen on {host}:{port} ({option}): {err.strerror}"
    return None


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until_ready(url: str, model_name: str | list[str], timeout_s: float,
                     process: subprocess.Popen[bytes] | None = None,
                     log: Path | None = None) -> float:
    """Poll the gRPC health endpoints until the server and the model (every model of a list)
    are ready; the time it took."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    start = time.monotonic()
    names = [model_name] if isinstance(model_name, str) else list(model_name)
    client = grpcclient.InferenceServerClient(url)
    try:
        while True:
            if process is not None and process.poll() is not None:
                raise ServerStartError(f"the server exited with code {process.returncode} "
                                       f"while starting; its log ends with:\n"
                                       f"{_log_tail(log) if log else ''}")
            try:
                if client.is_server_ready(client_timeout=1.0) and all(
                        client.is_model_ready(name, client_timeout=1.0) for name in names):
                    return time.monotonic() - start
            except InferenceServerException:
                pass
            if time.monotonic() - start > timeout_s:
                raise ServerStartError(f"the server at {url} was not ready after {timeout_s:.0f}"
                                       f" s; its log ends with:\n"
                                       f"{_log_tail(log) if log else ''}")
            time.sleep(0.1)
    finally:
        client.close()


@dataclass
class ServerProcess:
    """A running edge server (child process). Use as a context manager or call stop()."""

    folder: Path
    repository: Path
    options: ServeOptions
    process: subprocess.Popen[bytes]
    startup_s: float = 0.0
    _tmp: Path | None = field(default=None, repr=False)  # a temporary repository to remove

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the server's gRPC endpoint."""
        return self.options.connect_url

    @property
    def log(self) -> Path:
        return self.repository / LOG_FILE

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)  # its own group: the server and nothing else

    def kill(self) -> None:
        """End the server abruptly (SIGKILL), as a crash would."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM (MLServer shuts down gracefully), SIGKILL after `grace_s`."""
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_server(folder: str | Path, options: ServeOptions | None = None, *,
                 token: str | None = None, repository: str | Path | None = None,
                 ready_timeout_s: float = 120.0) -> ServerProcess:
    """Start MLServer serving the server part of `folder` and wait until it is ready.

    Without `options` the server listens on 127.0.0.1 on two free ports (gRPC, HTTP). Without
    `repository` the settings go to a temporary folder (laimco-serve-<pid>-…) removed by stop();
one left behind by a killed process is removed by the next start."""
    options = options or ServeOptions(grpc_port=free_port(), http_port=free_port())
    return start_models([HostedModel(Path(folder), options.model_name)], options, token=token,
                        repository=repository, ready_timeout_s=ready_timeout_s)


def start_models(models: list[HostedModel], options: ServeOptions | None = None, *,
                 token: str | None = None, repository: str | Path | None = None,
                 ready_timeout_s: float = 120.0) -> ServerProcess:
    """Start one MLServer process hosting every model of `models` (a fleet's distinct server
    parts, docs/runtime.md "Serving a fleet") and wait until all are ready; as start_server."""
    if options is None:
        options = ServeOptions(grpc_port=free_port(), http_port=free_port())
    tmp = None
    if repository is None:
        tmp = repository = temporary_repository()  # named after this process: see stop()
    try:
        repo = write_models_repository(models, Path(repository).absolute(), options)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(TOKEN_ENV, None)
    if token:
        env[TOKEN_ENV] = token
    log = repo / LOG_FILE
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "laimco.runtime.launch", str(repo)], cwd=repo, env=env,
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    server = ServerProcess(folder=models[0].folder, repository=repo, options=options,
                           process=process, _tmp=tmp)
    try:
        server.startup_s = wait_until_ready(options.connect_url, [m.name for m in models],
                                            ready_timeout_s, process, log)
    except BaseException:
        server.stop(grace_s=2.0)  # the exception already holds the log's end
        raise
    return server
