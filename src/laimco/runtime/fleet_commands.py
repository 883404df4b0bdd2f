"""`laimco fleet-serve FLEET.toml --out DIR`: the fleet's decisions served by one edge server and
N device clients, measured against the prediction (docs/runtime.md, "Serving a fleet").
Registered by `laimco.runtime.commands.register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from laimco.runtime.commands import _fail, console


def _solution(fleet_file: Path, objective: str | None):  # type: ignore[no-untyped-def]
    """The fleet file loaded and solved (laimco.fleet: the fleet file and the solver)."""
    try:
        from laimco.fleet.fleet_file import load_fleet
        from laimco.fleet.solver import solve_fleet
    except ImportError as err:  # the fleet file loader / solver of this installation
        _fail(f"this installation cannot read fleet files yet ({err}); call "
              "laimco.runtime.fleet_serve.serve_fleet with a FleetSolution instead")

    return solve_fleet(load_fleet(fleet_file), objective)  # type: ignore[arg-type]


def fleet_serve(
    fleet_file: Annotated[Path, typer.Argument(help="fleet TOML file (see fleets/)")],
    out: Annotated[Path, typer.Option(help="folder for the report, pruned parts and logs")
                   ] = Path("runs/fleet"),
    duration_s: Annotated[float, typer.Option(help="seconds every client sends for")] = 60.0,
    requests: Annotated[int | None, typer.Option(
        help="send exactly this many requests per device instead of --duration-s")] = None,
    devices: Annotated[int | None, typer.Option(
        help="serve the first K devices of the fleet (default: all)")] = None,
    objective: Annotated[str | None, typer.Option(
        help="sum | max-min (default: the fleet file's)")] = None,
    max_batch_size: Annotated[int, typer.Option(
        help="adaptive batching on parts several devices share: most requests merged "
        "(1 = off)")] = 32,
    max_batch_time_s: Annotated[float, typer.Option(
        help="adaptive batching: longest wait for a batch to fill")] = 0.005,
    shape_uplink: Annotated[bool, typer.Option(
        help="pace each upload at the device's allocated rate")] = True,
    overwrite: Annotated[bool, typer.Option(
        help="replace --out when it holds an earlier `laimco fleet-serve` (nothing else)")
                         ] = False,
) -> None:
    """fleet → decisions → every distinct part pruned → one server, N clients → measured vs
    predicted per device, throughput per server part."""
    from laimco.models.pruned import PruningError
    from laimco.runtime.client import RuntimeClientError
    from laimco.runtime.fleet_serve import (
        FleetServeError,
        FleetServeOptions,
        check_fleet_options,
        serve_fleet,
    )
    from laimco.runtime.server import ServerStartError

    options = FleetServeOptions(duration_s=duration_s, requests_per_device=requests,
                                devices=devices, max_batch_size=max_batch_size,
                                max_batch_time_s=max_batch_time_s, shape_uplink=shape_uplink,
                                overwrite=overwrite)
    if objective not in (None, "sum", "max-min"):
        _fail(f"--objective {objective!r}: choose sum or max-min")
    try:
        check_fleet_options(options, out)  # before the fleet is solved or a model loaded
        solution = _solution(fleet_file, objective)
        report = serve_fleet(solution, out, options, progress=lambda m: console.print(
            f"· {escape(m)}", highlight=False))
    except (FleetServeError, PruningError, ServerStartError, RuntimeClientError,
            ValueError) as err:  # FleetError (the fleet file) is a ValueError
        _fail(str(err))
    except OSError as err:
        _fail(f"cannot write the run ({err.strerror}: {err.filename}); check --out")
    console.print((out / "fleet_serve.md").read_text(), markup=False, highlight=False)
    console.print(f"wrote {out / 'fleet_serve.json'}, {out / 'devices.csv'}, "
                  f"{out / 'latency.png'}, {out / 'fleet_serve.md'}", highlight=False,
                  markup=False)
    if report["status"] != "ok":
        raise typer.Exit(code=1)
