"""The runtime's commands: `laimco serve`, `laimco infer`, `laimco deploy`.

`register(app)` adds them to the `laimco` Typer app. Heavy imports (torch, MLServer,
tritonclient) happen inside the commands, so `laimco --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True)

FolderArg = Annotated[Path, typer.Argument(help="pruned folder (written by `laimco prune` or "
                                                "`laimco deploy`)")]
TokenOpt = Annotated[str | None, typer.Option(
    envvar="LAIMCO_TOKEN", show_envvar=True,
    help="shared secret; prefer the environment variable to the command line")]
TokenFileOpt = Annotated[Path | None, typer.Option(help="read the shared secret from a file")]
ModelNameOpt = Annotated[str, typer.Option(help="model name on the server")]


def _fail(message: str, code: int = 2) -> None:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=code)


def _token(token: str | None, token_file: Path | None) -> str | None:
    if token_file is not None:
        try:
            return token_file.read_text().strip() or None
        except OSError as err:
            _fail(f"cannot read the token file {token_file}: {err.strerror}")
    return token or None


def serve(
    folder: FolderArg,
    port: Annotated[int, typer.Option(help="gRPC port")] = 8001,
    host: Annotated[str, typer.Option(
        help="address to listen on; 127.0.0.1 keeps the server local to this machine")
    ] = "127.0.0.1",
    http_port: Annotated[int | None, typer.Option(
        help="MLServer's REST port (health, metadata); default: a free port")] = None,
    model_name: ModelNameOpt = "laimco",
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    max_batch: Annotated[int, typer.Option(help="inputs per request at most")] = 64,
    max_tokens: Annotated[int, typer.Option(help="tokens per input at most")] = 512,
    max_request_bytes: Annotated[int, typer.Option(help="tensor bytes per request at most")
                                 ] = 32 * 2**20,
    repository: Annotated[Path | None, typer.Option(
        help="folder for the generated MLServer settings (default: a temporary folder)")
    ] = None,
) -> None:
    """Serve the server part of a pruned folder (MLServer, gRPC, Open Inference Protocol v2)."""
    from laimco.models.loading import ModelLoadError
    from laimco.runtime.launch import TOKEN_ENV, main
    from laimco.runtime.protocol import Limits
    from laimco.runtime.repository import ServeOptions, folder_interface, write_repository
    from laimco.runtime.server import free_port

    secret = _token(token, token_file)
    try:
        iface = folder_interface(folder)
        options = ServeOptions(grpc_port=port, http_port=http_port or free_port(host),
                               host=host, model_name=model_name,
                               limits=Limits(max_batch, max_tokens, max_request_bytes))
        repo = repository or Path(tempfile.mkdtemp(prefix="laimco-serve-"))
        write_repository(folder, repo, options)
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    if host not in ("127.0.0.1", "localhost", "::1") and secret is None:
        errors.print(f"[bold yellow]warning:[/] listening on {escape(host)} without a token: "
                     "anyone who reaches this port can use the server (give --token or "
                     "LAIMCO_TOKEN)")
    console.print(f"serving {iface.model} split {iface.split} (units {iface.split + 1}.."
                  f"{iface.n_units}) from {folder}\n  gRPC {host}:{port}, model "
                  f"{model_name!r}, manifest {iface.manifest_sha256[:12]}…, token "
                  f"{'required' if secret else 'none'}\n  inputs: "
                  f"{iface.describe_inputs()}\n  settings: {repo}", markup=False, highlight=False)
    if secret:
        os.environ[TOKEN_ENV] = secret
    else:
        os.environ.pop(TOKEN_ENV, None)
    main([str(repo)])


def _timings_table(records: list[object]) -> Table:
    table = Table(title="per request (ms)", title_justify="left")
    for column in ("#", "status", "attempts", "tokenize", "device", "uplink", "server",
                   "total", "payload kB"):
        table.add_column(column, justify="left" if column in ("#", "status") else "right")
    for r in records:
        t = r.timings  # type: ignore[attr-defined]
        table.add_row(str(r.index), r.status, str(len(r.attempts)),  # type: ignore[attr-defined]
                      f"{t.tokenize_s * 1e3:.1f}", f"{t.device_s * 1e3:.1f}",
                      f"{t.uplink_s * 1e3:.1f}", f"{t.server_s * 1e3:.1f}",
                      f"{t.total_s * 1e3:.1f}", f"{t.payload_bytes / 1e3:.1f}")
    return table


def infer(
    folder: FolderArg,
    texts: Annotated[list[str], typer.Argument(help="texts to embed, one request each")],
    server: Annotated[str, typer.Option(help="edge server host:port")] = "127.0.0.1:8001",
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    model_name: ModelNameOpt = "laimco",
    timeout: Annotated[float, typer.Option(help="deadline of one attempt, s")] = 30.0,
    retries: Annotated[int, typer.Option(help="attempts per request at most")] = 5,
    rate_bps: Annotated[float | None, typer.Option(
        help="shape the upload to this rate (bit/s), e.g. a decision's r(p, g)")] = None,
    max_length: Annotated[int, typer.Option(help="tokens per text at most")] = 128,
    log: Annotated[Path | None, typer.Option(help="write the per-request log (JSON lines)")
                   ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print outputs and timings as JSON")
                       ] = False,
) -> None:
    """Run the device part here, the server part on the edge server; print outputs and times."""
    from laimco.models.loading import ModelLoadError
    from laimco.runtime.client import DeviceClient, RetryPolicy, RuntimeClientError

    try:
        client = DeviceClient(folder, server, token=_token(token, token_file),
                              model_name=model_name, uplink_rate_bps=rate_bps,
                              retry=RetryPolicy(max_attempts=retries, timeout_s=timeout))
    except (RuntimeClientError, ModelLoadError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    with client:
        replies = [client.infer([text], max_length=max_length) for text in texts]
        if log is not None:
            client.connection.write_log(log)
        summary = client.connection.summary()
    if as_json:
        sys.stdout.write(json.dumps({
            "summary": summary,
            "requests": [{**r.record.as_dict(), "text": text,
                          "output": None if r.output is None else r.output.tolist()}
                         for r, text in zip(replies, texts, strict=True)]}) + "\n")
    else:
        for reply, text in zip(replies, texts, strict=True):
            if reply.output is None:
                console.print(f"[red]failed[/] {escape(repr(text))}: "
                              f"{escape(str(reply.record.error))}", highlight=False)
                continue
            vector = reply.output.reshape(-1)
            shown = ", ".join(f"{v:+.4f}" for v in vector[:6])
            console.print(f"{text!r} → output {list(reply.output.shape)} [{shown}, …]",
                          markup=False, highlight=False)
        console.print(_timings_table([r.record for r in replies]))
        console.print(f"{summary['ok']} ok, {summary['failed']} failed, "
                      f"{summary['failed_attempts']} failed attempts", highlight=False)
    if summary["failed"]:
        raise typer.Exit(code=1)


def deploy(
    scenario: Annotated[Path, typer.Argument(help="scenario TOML file (see scenarios/)")],
    out: Annotated[Path, typer.Option(help="folder for the report, pruned parts and logs")
                   ] = Path("runs/deploy"),
    rule: Annotated[str, typer.Option(
        help="pruning rule: magnitude | magnitude-global | wanda | structured")] = "magnitude",
    strategy: Annotated[str, typer.Option(help="optimizer strategy")] = "joint",
    model: Annotated[str | None, typer.Option(
        help="model to load (default: the built-in model of the scenario's profile)")] = None,
    sentences: Annotated[int, typer.Option(help="held-out sentences to run")] = 64,
    calibration_sentences: Annotated[int, typer.Option(help="calibration sentences (wanda)")
                                     ] = 128,
    shape_uplink: Annotated[bool, typer.Option(
        help="pace the upload at the decision's rate r(p, g)")] = True,
) -> None:
    """optimize → prune → split → serve → run held-out text → measured vs predicted report."""
    from laimco.config import ScenarioError
    from laimco.models.loading import ModelLoadError
    from laimco.models.pruned import PruningError
    from laimco.optimize import StrategyError
    from laimco.runtime.deploy import DeployError, DeployOptions
    from laimco.runtime.deploy import deploy as run_deploy
    from laimco.runtime.server import ServerStartError

    options = DeployOptions(rule=rule, strategy=strategy, model=model, sentences=sentences,
                            calibration_sentences=calibration_sentences,
                            shape_uplink=shape_uplink)
    try:
        report = run_deploy(scenario, out, options,
                            progress=lambda m: console.print(f"· {m}", markup=False,
                                                             highlight=False))
    except (ScenarioError, StrategyError, ModelLoadError, PruningError, DeployError,
            ServerStartError, ValueError) as err:
        _fail(str(err))
    console.print((out / "deploy.md").read_text(), markup=False, highlight=False)
    console.print(f"wrote {out / 'deploy.json'}, {out / 'deploy.md'}"
                  + ("" if report.get("status") == "infeasible" else
                     f", {out / 'latency.png'}, {out / 'requests.jsonl'}"), markup=False,
                  highlight=False)
    if report.get("status") not in ("ok", "infeasible"):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add serve, infer and deploy to the `laimco` command line."""
    app.command("serve")(serve)
    app.command("infer")(infer)
    app.command("deploy")(deploy)


if __name__ == "__main__":  # `python -m laimco.runtime.commands` without touching cli.py
    _app = typer.Typer(no_args_is_help=True, add_completion=False)
    register(_app)
    _app()
