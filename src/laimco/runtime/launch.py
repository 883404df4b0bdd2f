"""`python -m laimco.runtime.launch REPOSITORY`: MLServer's own `mlserver start REPOSITORY`, with
laimco's gRPC interceptor (`laimco.runtime.guard`) installed in front of MLServer's servicer.

MLServer 1.7.1 has no setting for server interceptors; its gRPC server is built by
`mlserver.grpc.server.GRPCServer._create_server`, which calls `aio.server(...)` through the
module's `aio` name. The launcher replaces that one name by a proxy whose `server()` puts the
guard first in the interceptor list, then hands over to MLServer's command line unchanged. The
pin `mlserver==1.7.1` (pyproject `serve` extra) keeps this seam where it is; a test starts a
real server and checks the guard's answers, so a moved seam fails loudly.

MLServer's REST app gets the same token check (`guard.RestGuard`) by wrapping
`mlserver.rest.server.create_app` the same way.

The token comes from the environment variable LAIMCO_TOKEN (never from a file or argv).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from grpc import aio

from laimco.runtime.guard import Guard, RestGuard
from laimco.runtime.repository import GUARD_FILE

TOKEN_ENV = "LAIMCO_TOKEN"


class _GuardedAio:
    """Stands in for `grpc.aio` inside mlserver.grpc.server: adds the guard to aio.server()."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def server(self, *args: Any, interceptors: Any = (), options: Any = None,
               **kwargs: Any) -> aio.Server:
        # gRPC sets SO_REUSEPORT by default: a second server could then bind a port another
        # one listens on and take part of its traffic. Off: a taken port fails to bind.
        options = [*list(options or ()), ("grpc.so_reuseport", 0)]
        return aio.server(*args, interceptors=[self._guard, *list(interceptors or ())],
                          options=options, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(aio, name)


def install_guard(repository: str | Path) -> Guard:
    """Put the guard configured by `repository`'s laimco-guard.json (and LAIMCO_TOKEN) into
    MLServer's gRPC server factory."""
    import mlserver.grpc.server as mlserver_grpc

    limits = json.loads((Path(repository) / GUARD_FILE).read_text())
    guard = Guard(token=os.environ.get(TOKEN_ENV) or None,
                  max_request_bytes=int(limits["max_request_bytes"]))
    if not hasattr(mlserver_grpc, "aio"):
        raise RuntimeError("mlserver.grpc.server has no `aio` name: this MLServer version is not "
                           "the pinned 1.7.1; install laimco[serve]")
    mlserver_grpc.aio = _GuardedAio(guard)
    import mlserver.rest.server as mlserver_rest

    create_app = mlserver_rest.create_app

    def guarded_app(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.add_middleware(RestGuard, token=guard.token,
                           max_request_bytes=guard.max_request_bytes)
        return app

    mlserver_rest.create_app = guarded_app
    return guard


class _QuietLoadFailure(logging.Filter):
    """MLServer logs a model that fails to load with its whole traceback; a pruned folder the
    runtime refuses (`ServedFolderError`) is reported as its one-line message instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        from laimco.runtime.server_model import ServedFolderError

        if record.exc_info and isinstance(record.exc_info[1], ServedFolderError):
            record.msg, record.args = f"the model did not load: {record.exc_info[1]}", ()
            record.exc_info = None
        return True


class _QuietShutdownCancel(logging.Filter):
    """On SIGINT, uvicorn logs the cancellation of its lifespan task (a CancelledError
    traceback) although the shutdown is orderly; that record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("Traceback" in text and text.rstrip().endswith("CancelledError"))


def serve_repository(repository: str | Path) -> int:
    """Run MLServer on `repository` in this process until it stops; 0 after a normal shutdown,
    2 when the model failed to load (MLServer itself then stops and would return 0)."""
    install_guard(repository)
    from mlserver.cli.main import root

    from laimco.runtime import server_model

    logging.getLogger("mlserver").addFilter(_QuietLoadFailure())
    logging.getLogger("uvicorn.error").addFilter(_QuietShutdownCancel())
    try:
        root(["start", str(repository)], prog_name="mlserver", standalone_mode=False)
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as err:  # e.g. a port taken between the check and the bind
        print(f"error: the server could not start: {err}", file=sys.stderr)
        return 2
    if server_model.LOAD_FAILURES:
        print(f"error: the model did not load: {server_model.LOAD_FAILURES[-1]}",
              file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m laimco.runtime.launch REPOSITORY (written by "
                 "laimco.runtime.repository.write_repository)")
    sys.exit(serve_repository(args[0]))


if __name__ == "__main__":
    main()
