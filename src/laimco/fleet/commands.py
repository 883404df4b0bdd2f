"""`laimco fleet`: a fleet file solved — every device's shares and decision, the fleet
objective and its certificate (docs/fleet.md)."""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from laimco.fleet.solution import FleetSolution
from laimco.terminal import console, errors, fail

# devices listed in the table (all of them are in --json)
TABLE_ROWS = 25


def fleet(
    fleet_file: Annotated[Path, typer.Argument(help="fleet TOML file (see fleets/)")],
    objective: Annotated[Literal["sum", "max-min"] | None, typer.Option(
        help="weighted sum of the devices' distortion, or the worst device's (default: the "
             "file's objective)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer as JSON")] = False,
    gap: Annotated[float, typer.Option(
        min=0.0, help="stop when the certified relative gap is at most this")] = 1e-3,
    max_rounds: Annotated[int, typer.Option(
        min=0, help="refinement rounds at most")] = 20,
) -> None:
    """Divide a fleet's band and server among its devices and decide for every device."""
    from laimco.config import ScenarioError
    from laimco.fleet.fleet_file import FleetError, load_fleet
    from laimco.fleet.solver import solve_fleet
    from laimco.profile import ProfileError

    try:
        loaded = load_fleet(fleet_file)
    except FleetError as err:
        fail(str(err))
    try:
        with errors.status(escape(f"solving {fleet_file} ({loaded.n_devices} devices) …")
                           ) as status:
            solution = solve_fleet(loaded, objective, gap=gap, max_rounds=max_rounds,
                                   progress=lambda text: status.update(escape(text)))
    except (ScenarioError, ProfileError) as err:
        fail(str(err))
    if as_json:
        sys.stdout.write(json.dumps(solution.to_json_dict(), indent=2) + "\n")
        return
    _print(solution, str(fleet_file))


def _print(solution: FleetSolution, title: str) -> None:
    fl = solution.fleet
    res = fl.resources
    console.print(escape(
        f"{title}: {fl.n_devices} devices, {solution.status}; objective "
        f"({solution.objective_kind}) {solution.objective:.6g}, lower bound "
        f"{solution.dual_bound:.6g}, certified gap {solution.relative_gap:.2e}; solved in "
        f"{solution.solve_time_s:.2f} s"), highlight=False)
    console.print(escape(
        f"band used {solution.bandwidth_hz.sum() / 1e6:.4g} of {res.bandwidth_hz / 1e6:.4g} MHz, "
        f"server {solution.server_cycles_per_s.sum() / 1e9:.4g} of "
        f"{res.server_cycles_per_s / 1e9:.4g} Gcycles/s"), highlight=False)
    memory = solution.server_memory
    limit = "no limit" if memory.limit_bytes is None else f"{memory.limit_bytes / 1e9:.4g} GB"
    console.print(escape(f"server hosts {memory.parts} distinct parts, "
                         f"{memory.used_bytes / 1e9:.4g} GB ({limit})"), highlight=False,
                  style=None if memory.fits else "bold red")
    if not memory.fits:
        console.print("the server's memory is too small for these parts: raise "
                      "resources.server_memory_bytes (the solver does not divide memory yet)",
                      style="bold red")
    console.print(_class_table(solution))
    table = Table(title=f"devices with the largest band shares (of {fl.n_devices}; all with "
                        "--json)" if fl.n_devices > TABLE_ROWS else "devices")
    for name in ("device", "class", "split", "ρ_d", "ρ_s", "bits", "band MHz", "server Gc/s",
                 "latency ms", "energy mJ", "objective"):
        table.add_column(name, justify="left" if name in ("device", "class") else "right",
                         no_wrap=name in ("device", "class"))
    order = np.argsort(-solution.bandwidth_hz, kind="stable")[:TABLE_ROWS]
    for u in order:
        table.add_row(*_row(solution, int(u)))
    console.print(table)
    unserved = np.flatnonzero(~solution.served)
    for u in unserved[:TABLE_ROWS]:
        for reason in solution.decisions[u].reasons:
            console.print(escape(f"  {fl.ids[u]}: {reason.message}"), style="dim",
                          highlight=False)


def _class_table(solution: FleetSolution) -> Table:
    """Per device class: how many devices, served, offloading, their splits and mean shares."""
    fl = solution.fleet
    table = Table(title="per class")
    for name in ("class", "devices", "served", "offload", "splits (count)", "mean band MHz",
                 "mean server Gc/s", "mean objective"):
        table.add_column(name, justify="left" if name in ("class", "splits (count)") else "right",
                         no_wrap=name == "class")
    for number, device_class in enumerate(fl.classes):
        members = fl.members(number)
        if members.size == 0:
            continue
        splits = [point.split for u in members
                  if (point := solution.decisions[u].point) is not None]
        split_counts = collections.Counter(splits)
        served = solution.served[members]
        objective = solution.device_objective[members][served]
        table.add_row(device_class.name, str(members.size), str(int(served.sum())),
                      str(int((solution.bandwidth_hz[members] > 0).sum())),
                      " ".join(f"{s}({c})" for s, c in sorted(split_counts.items())),
                      f"{solution.bandwidth_hz[members].mean() / 1e6:.4g}",
                      f"{solution.server_cycles_per_s[members].mean() / 1e9:.4g}",
                      f"{objective.mean():.4g}" if objective.size else "—")
    return table


def _row(solution: FleetSolution, u: int) -> list[str]:
    fl = solution.fleet
    decision = solution.decisions[u]
    head = [fl.ids[u], fl.classes[int(fl.class_index[u])].name]
    point = decision.point
    if point is None:
        return [*head, "—", "—", "—", "—", "0", "0", "—", "—", "infeasible"]
    return [*head, str(point.split), f"{point.rho_device:.3f}", f"{point.rho_server:.3f}",
            "—" if point.activation_bits is None else str(point.activation_bits),
            f"{solution.bandwidth_hz[u] / 1e6:.4g}",
            f"{solution.server_cycles_per_s[u] / 1e9:.4g}",
            f"{point.costs.latency_total_s * 1e3:.2f}", f"{point.costs.energy_total_j * 1e3:.3g}",
            f"{point.objective:.4g}"]


def register(app: typer.Typer) -> None:
    app.command()(fleet)
