"""The runtime's commands: `laimco serve`, `laimco infer`, `laimco deploy` (and `laimco
fleet-serve`, in `fleet_commands`).

`register(app)` adds them to the `laimco` Typer app. Heavy imports (torch, MLServer,
tritonclient) happen inside the commands, so `laimco --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from laimco.runtime.protocol import Interface
    from laimco.runtime.repository import ServeOptions
    from laimco.runtime.request_log import Reply, RequestRecord

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


MAX_TOKEN_FILE_BYTES = 64 * 2**10


def _checked_secret(secret: str, source: str) -> str:
    secret = secret.strip()
    if not secret:
        _fail(f"{source} is empty: an empty secret would switch authentication off; give a "
              "non-empty secret, or leave --token, --token-file and LAIMCO_TOKEN all unset to "
              "run without one")
    if not all(" " <= ch <= "~" for ch in secret):
        _fail(f"{source} holds characters other than printable ASCII; a token travels in a "
              "gRPC header: use letters, digits and punctuation")
    return secret


def _token(token: str | None, token_file: Path | None) -> str | None:
    """The shared secret from --token (or LAIMCO_TOKEN) or --token-file; None without one.
    Exit 2 on an empty or unreadable secret: it must never silently mean 'no token'."""
    if token is not None and token_file is not None:
        _fail("give either --token (or LAIMCO_TOKEN) or --token-file, not both")
    if token_file is not None:
        try:
            size = token_file.stat().st_size
            if size > MAX_TOKEN_FILE_BYTES:
                _fail(f"--token-file {token_file} is {size} bytes; a token file holds one "
                      f"secret (at most {MAX_TOKEN_FILE_BYTES} bytes)")
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            _fail(f"cannot read --token-file {token_file}: {why}")
        return _checked_secret(text, f"--token-file {token_file}")
    if token is not None:
        return _checked_secret(token, "--token (or LAIMCO_TOKEN)")
    return None


def _listen_port(host: str, port: int, option: str) -> int:
    """`port` checked free on `host` (exit 2 naming `option` otherwise); 0 picks a free one."""
    from laimco.runtime.server import free_port, listen_problem

    problem = listen_problem(host, port, option)
    if problem:
        _fail(problem)
    return port or free_port(host)


def serve(
    folder: FolderArg,
    port: Annotated[int, typer.Option(min=0, max=65535,
                                      help="gRPC port (1..65535; 0 picks a free one)")] = 8001,
    host: Annotated[str, typer.Option(
        help="address to listen on; 127.0.0.1 keeps the server local to this machine")
    ] = "127.0.0.1",
    http_port: Annotated[int | None, typer.Option(
        min=0, max=65535,
        help="MLServer's REST port (health, metadata); default or 0: a free port")] = None,
    model_name: ModelNameOpt = "laimco",
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    max_batch: Annotated[int, typer.Option(min=1, help="inputs per request at most")] = 64,
    max_tokens: Annotated[int, typer.Option(min=1, help="tokens per input at most")] = 512,
    max_request_bytes: Annotated[int, typer.Option(
        min=1, help="bytes per request at most (gRPC message or REST body)")] = 32 * 2**20,
    repository: Annotated[Path | None, typer.Option(
        help="folder for the generated MLServer settings (default: a temporary folder, "
             "removed when the server ends)")] = None,
) -> None:
    """Serve the server part of a pruned folder (MLServer, gRPC, Open Inference Protocol v2)."""
    import shutil
    import signal

    from laimco.models.loading import ModelLoadError
    from laimco.runtime.launch import TOKEN_ENV, serve_repository
    from laimco.runtime.protocol import Limits
    from laimco.runtime.pruned_folder import check_pruned_folder
    from laimco.runtime.repository import (
        ServeOptions,
        folder_interface,
        model_name_problem,
        temporary_repository,
        write_repository,
    )

    secret = _token(token, token_file)
    problem = model_name_problem(model_name)
    if problem:
        _fail(problem)
    grpc_port = _listen_port(host, port, "--port")
    rest_port = _listen_port(host, http_port or 0, "--http-port")
    try:
        check_pruned_folder(folder)  # names inside the folder, SHA-256s: before anything runs
        iface = folder_interface(folder)
        options = ServeOptions(grpc_port=grpc_port, http_port=rest_port, host=host,
                               model_name=model_name,
                               limits=Limits(max_batch, max_tokens, max_request_bytes))
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    temporary = repository is None
    repo = temporary_repository() if repository is None else repository
    try:
        try:
            write_repository(folder, repo, options)
        except (OSError, ValueError) as err:
            _fail(str(err))
        _print_serving(iface, folder, options, repo, secret)
        if secret:
            os.environ[TOKEN_ENV] = secret
        else:
            os.environ.pop(TOKEN_ENV, None)
        # until MLServer installs its own handlers: SIGTERM ends through `finally` as well
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        code = serve_repository(repo)
    finally:
        if temporary:
            shutil.rmtree(repo, ignore_errors=True)
    if code:
        raise typer.Exit(code=code)


def _print_serving(iface: Interface, folder: Path, options: ServeOptions, repo: Path,
                   secret: str | None) -> None:
    """What `laimco serve` is about to serve, where, and how the activation crosses."""
    host = options.host
    if host not in ("127.0.0.1", "localhost", "::1") and secret is None:
        errors.print(f"[bold yellow]warning:[/] listening on {escape(host)} without a "
                     "token: anyone who reaches this port can use the server (give "
                     "--token or LAIMCO_TOKEN)")
    q = iface.uplink.quantizer
    uplink = (f"{q.bits}-bit activation ({q.granularity} scales, clip {q.clip:g}, coding "
              f"{iface.uplink.coding})" if iface.quantized else "float32 activation")
    console.print(f"serving {iface.model} split {iface.split} (units {iface.split + 1}.."
                  f"{iface.n_units}) from {folder}\n  gRPC {host}:{options.grpc_port}, REST "
                  f"{host}:{options.http_port}, model {options.model_name!r}, manifest "
                  f"{iface.manifest_sha256[:12]}…, token "
                  f"{'required' if secret else 'none'}\n  inputs: "
                  f"{iface.describe_inputs()} ({uplink})\n  settings: {repo}", markup=False,
                  highlight=False)


def _timings_table(records: list[RequestRecord]) -> Table:
    table = Table(title="per request (ms; activation: bytes of the activation tensors sent)",
                  title_justify="left")
    for column in ("#", "status", "attempts", "tokenize", "device", "uplink", "server",
                   "total", "payload kB", "activation B"):
        table.add_column(column, justify="left" if column in ("#", "status") else "right")
    for r in records:
        t = r.timings
        table.add_row(str(r.index), r.status, str(len(r.attempts)),
                      f"{t.tokenize_s * 1e3:.1f}", f"{t.device_s * 1e3:.1f}",
                      f"{t.uplink_s * 1e3:.1f}", f"{t.server_s * 1e3:.1f}",
                      f"{t.total_s * 1e3:.1f}", f"{t.payload_bytes / 1e3:.1f}",
                      str(t.activation_bytes))
    return table


def infer(
    folder: FolderArg,
    texts: Annotated[list[str], typer.Argument(help="texts to embed, one request each")],
    server: Annotated[str, typer.Option(help="edge server host:port")] = "127.0.0.1:8001",
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    model_name: ModelNameOpt = "laimco",
    timeout: Annotated[float, typer.Option(min=0.001, help="deadline of one attempt, s")
                       ] = 30.0,
    retries: Annotated[int, typer.Option(min=1, max=1000, help="attempts per request at most")
                       ] = 5,
    rate_bps: Annotated[float | None, typer.Option(
        min=1.0, help="shape the upload to this rate (bit/s), e.g. a decision's r(p, g)")
    ] = None,
    max_length: Annotated[int, typer.Option(min=1, help="tokens per text at most")] = 128,
    log: Annotated[Path | None, typer.Option(help="write the per-request log (JSON lines)")
                   ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print outputs and timings as JSON")
                       ] = False,
) -> None:
    """Run the device part here, the server part on the edge server; print outputs, times and
    the bytes of the activation sent."""
    from laimco.models.loading import ModelLoadError
    from laimco.runtime.client import DeviceClient, RetryPolicy, RuntimeClientError

    secret = _token(token, token_file)
    _check_infer_options(folder, server, model_name, log, max_length)
    try:
        client = DeviceClient(folder, server, token=secret,
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
        _print_replies(replies, texts, summary)
    if summary["failed"]:
        raise typer.Exit(code=1)


def _check_infer_options(folder: Path, server: str, model_name: str, log: Path | None,
                         max_length: int) -> None:
    """`laimco infer`'s options, checked before loading or connecting (exit 2 naming one)."""
    from laimco.models.families import family_adapter
    from laimco.models.loading import ModelLoadError, read_config
    from laimco.runtime.pruned_folder import check_pruned_folder
    from laimco.runtime.repository import model_name_problem

    problem = model_name_problem(model_name)
    if problem:
        _fail(problem)
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        _fail(f"--server {server!r} is not host:port with a port in 1..65535")
    if log is not None:
        if log.is_dir():
            _fail(f"--log {log} is a folder; give a file name (JSON lines)")
        if not log.parent.is_dir():
            _fail(f"--log {log}: the folder {log.parent} does not exist; create it first or "
                  "give another path")
    try:
        manifest = check_pruned_folder(folder, verify_weights=False)  # weights: by the client
        if not family_adapter(manifest.family).takes_text:
            _fail(f"{folder} holds a ViT model; `laimco infer` sends texts, which a vision "
                  "model cannot take (use laimco.runtime.client.DeviceClient with images)")
        config = read_config(folder)
    except (ModelLoadError, ValueError) as err:
        _fail(str(err))
    positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None)
    if positions and max_length > int(positions):
        _fail(f"--max-length {max_length} is more than the {positions} positions this model "
              f"has; give 1..{positions}")


def _print_replies(replies: list[Reply], texts: list[str], summary: dict[str, int]) -> None:
    """Each reply's output head, the per-request times and bytes, and the totals."""
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


def deploy(
    scenario: Annotated[Path, typer.Argument(help="scenario TOML file (see scenarios/)")],
    out: Annotated[Path, typer.Option(help="folder for the report, pruned parts and logs")
                   ] = Path("runs/deploy"),
    rule: Annotated[str | None, typer.Option(
        help="override the decision's pruning rule of both sides: magnitude | "
        "magnitude-global | wanda | structured (default: the decision's rules)")] = None,
    strategy: Annotated[str, typer.Option(help="optimizer strategy")] = "joint",
    model: Annotated[str | None, typer.Option(
        help="model to load (default: the built-in model of the scenario's profile)")] = None,
    sentences: Annotated[int, typer.Option(
        help="held-out sentences (ViT: synthetic images) to run, at least 2")] = 64,
    calibration_sentences: Annotated[int, typer.Option(help="calibration sentences (wanda)")
                                     ] = 128,
    shape_uplink: Annotated[bool, typer.Option(
        help="pace the upload at the decision's rate r(p, g)")] = True,
    overwrite: Annotated[bool, typer.Option(
        help="replace --out when it holds an earlier `laimco deploy` (nothing else)")] = False,
) -> None:
    """optimize → prune → split → serve → run held-out text → measured vs predicted report."""
    from laimco.config import ScenarioError
    from laimco.models.loading import ModelLoadError
    from laimco.models.pruned import PruningError
    from laimco.optimize import StrategyError
    from laimco.runtime.client import RuntimeClientError
    from laimco.runtime.deploy import DeployError, DeployOptions
    from laimco.runtime.deploy import deploy as run_deploy
    from laimco.runtime.server import ServerStartError

    options = DeployOptions(rule=rule, strategy=strategy, model=model, sentences=sentences,
                            calibration_sentences=calibration_sentences,
                            shape_uplink=shape_uplink, overwrite=overwrite)
    try:
        report = run_deploy(scenario, out, options,
                            progress=lambda m: console.print(f"· {escape(m)}", highlight=False))
    except (ScenarioError, StrategyError, ModelLoadError, PruningError, DeployError,
            ServerStartError, RuntimeClientError, ValueError) as err:
        _fail(str(err))
    except OSError as err:  # e.g. --out on a read-only or full disk: nothing is left behind
        _fail(f"cannot write the deployment ({err.strerror}: {err.filename}); check --out")
    console.print((out / "deploy.md").read_text(), markup=False, highlight=False)
    console.print(f"wrote {out / 'deploy.json'}, {out / 'deploy.md'}"
                  + ("" if report.get("status") == "infeasible" else
                     f", {out / 'latency.png'}, {out / 'requests.jsonl'}"), highlight=False,
                  markup=False)
    if report.get("status") not in ("ok", "infeasible"):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add serve, infer, deploy and fleet-serve to the `laimco` command line."""
    from laimco.runtime.fleet_commands import fleet_serve

    app.command("serve")(serve)
    app.command("infer")(infer)
    app.command("deploy")(deploy)
    app.command("fleet-serve")(fleet_serve)


if __name__ == "__main__":  # `python -m laimco.runtime.commands` without touching cli.py
    _app = typer.Typer(no_args_is_help=True, add_completion=False)
    register(_app)
    _app()
