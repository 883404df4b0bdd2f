"""The `laimco` command line: a thin shell over config, optimize and (later) models/runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from laimco.config import Scenario, ScenarioError, load_scenario
from laimco.optimize import STRATEGIES, Decision, StrategyError, StrategyOptions, solve
from laimco.profile import ProfileError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Pruning-aware co-inference of large AI models over wireless links.")
# a pipe or a CI log has no width: give tables room instead of folding them at 80 columns
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True)

_SHORT = {"cpu_freq_device": "f_dev", "cpu_freq_server": "f_srv", "tx_power": "power",
          "rho_max_device": "ρmax_d", "rho_max_server": "ρmax_s"}
ScenarioArg = Annotated[Path, typer.Argument(help="scenario TOML file (see scenarios/)")]


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def _load(path: Path) -> Scenario:
    try:
        return load_scenario(path)
    except ScenarioError as err:
        _fail(str(err))
        raise  # unreachable, keeps type checkers calm


def _run(scenario: Scenario, strategy: str, options: StrategyOptions) -> Decision:
    try:
        return solve(scenario, strategy, options=options)
    except (ScenarioError, StrategyError, ProfileError, ValueError) as err:
        _fail(str(err))
        raise


def _decision_table(decision: Decision, title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("quantity", style="bold")
    table.add_column("value")
    table.add_row("status", decision.status)
    if not decision.success:
        for reason in decision.reasons:
            table.add_row("reason", reason)
        return table
    assert decision.latency_s is not None and decision.energy_j is not None
    table.add_row("split (units on device)", str(decision.split))
    table.add_row("pruning ratio device / server",
                  f"{decision.rho_device:.4f} / {decision.rho_server:.4f}")
    table.add_row("transmit power", f"{decision.power_w:.4g} W")
    table.add_row("CPU frequency device / server",
                  f"{decision.freq_device_hz:.4g} Hz / {decision.freq_server_hz:.4g} Hz")
    lat = decision.latency_s
    table.add_row("latency device + uplink + server + downlink",
                  f"{lat['device']*1e3:.2f} + {lat['uplink']*1e3:.2f} + {lat['server']*1e3:.2f} "
                  f"+ {lat['downlink']*1e3:.2f} = {lat['total']*1e3:.2f} ms")
    en = decision.energy_j
    table.add_row("energy compute + uplink",
                  f"{en['compute']*1e3:.3f} + {en['uplink']*1e3:.3f} = {en['total']*1e3:.3f} mJ")
    table.add_row("device memory", f"{decision.memory_bytes / 1e6:.1f} MB")
    table.add_row("objective (distortion bound)", f"{decision.objective:.6g}")
    table.add_row("binding limits", ", ".join(decision.binding) or "none")
    table.add_row("solve time", f"{decision.solve_time_s*1e3:.2f} ms")
    return table


@app.command()
def optimize(
    scenario: ScenarioArg,
    strategy: Annotated[str, typer.Option(help="strategy name (laimco strategies)")] = "joint",
    ratio: Annotated[float, typer.Option(help="pruning ratio for fixed-ratio")] = 0.5,
    split: Annotated[int | None, typer.Option(help="split for fixed-split")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the decision as JSON")] = False,
) -> None:
    """Solve a scenario with one strategy and print the decision."""
    decision = _run(_load(scenario), strategy, StrategyOptions(ratio=ratio, split=split))
    if as_json:
        sys.stdout.write(json.dumps(decision.to_json_dict(), indent=2) + "\n")
    else:
        console.print(_decision_table(decision, f"{strategy} — {scenario}"))


@app.command()
def compare(
    scenario: ScenarioArg,
    ratio: Annotated[float, typer.Option(help="pruning ratio for fixed-ratio")] = 0.5,
    split: Annotated[int | None, typer.Option(help="split for fixed-split")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print all decisions as JSON")] = False,
) -> None:
    """Every strategy side by side on one scenario."""
    sc = _load(scenario)
    options = StrategyOptions(ratio=ratio, split=split)
    decisions = [_run(sc, name, options) for name in STRATEGIES]
    if as_json:
        sys.stdout.write(json.dumps([d.to_json_dict() for d in decisions], indent=2) + "\n")
        return
    best = min((d.objective for d in decisions if d.success and d.objective is not None),
               default=None)
    table = Table(title=f"all strategies — {scenario}", title_justify="left")
    for column in ("strategy", "split", "ρ_d", "ρ_s", "objective", "×joint", "T ms", "E mJ",
                   "binding (or why infeasible)"):
        table.add_column(column, justify="left" if column[0] in "sb" else "right",
                         no_wrap=column != "binding (or why infeasible)")
    joint = decisions[0].objective if decisions[0].success else None
    notes = []
    for d in decisions:
        if d.success:
            assert d.latency_s is not None and d.energy_j is not None
            assert d.objective is not None
            times_joint = f"{d.objective / joint:.3g}" if joint else "—"
            style = "bold green" if d.objective == best else None
            table.add_row(d.strategy, str(d.split), f"{d.rho_device:.3f}",
                          f"{d.rho_server:.3f}", f"{d.objective:.5g}", times_joint,
                          f"{d.latency_s['total']*1e3:.1f}", f"{d.energy_j['total']*1e3:.2f}",
                          ", ".join(_SHORT.get(b, b) for b in d.binding) or "none",
                          style=style)
        else:
            limits = ", ".join(r.split(":")[0] for r in d.reasons)
            table.add_row(d.strategy, "—", "—", "—", "—", "—", "—", "—",
                          f"infeasible: {limits}", style="dim")
            notes += [f"{d.strategy}: {r}" for r in d.reasons]
    console.print(table)
    for note in notes:
        console.print(f"  {note}", style="dim", highlight=False)


@app.command()
def strategies() -> None:
    """List the strategies with a one-line description each."""
    table = Table(show_header=True)
    table.add_column("strategy", style="bold")
    table.add_column("what it does")
    for spec in STRATEGIES.values():
        table.add_row(spec.name, spec.description)
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
