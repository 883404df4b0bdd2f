"""`laimco optimize`, `compare`, `strategies` and `path-gain`: the commands that make and show
decisions, thin shells over config and optimize (README "Command line"). `register(app)` adds
them to laimco's typer app."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from laimco.config import Scenario, ScenarioError, load_scenario
from laimco.optimize import STRATEGIES, Decision, StrategyError, StrategyOptions, solve
from laimco.optimize.decision import OperatingPoint
from laimco.profile import ProfileError
from laimco.system.pathloss import CARRIER_RANGE_GHZ, DISTANCE_RANGE_M, UT_HEIGHT_RANGE_M
from laimco.terminal import console, errors, fail

ScenarioArg = Annotated[Path, typer.Argument(
    help="scenario TOML file (see scenarios/, or copy them with `laimco examples DEST`)")]


def _reading(option: str) -> list[str]:
    """The strategies that read a StrategyOptions field (`ratio`, `split`)."""
    return [name for name, spec in STRATEGIES.items() if option in spec.reads]


def _load(path: Path) -> Scenario:
    try:
        return load_scenario(path)
    except ScenarioError as err:
        fail(str(err))


def _run(scenario: Scenario, strategy: str, options: StrategyOptions) -> Decision:
    try:
        return solve(scenario, strategy, options=options)
    except (ScenarioError, StrategyError, ProfileError, ValueError) as err:
        fail(str(err))


def _prunable_sides(scenario: Scenario, split: int) -> tuple[bool, bool]:
    """Whether the device / server side of a split has weights to prune (a ratio of a side
    without any is shown as "—")."""
    try:
        from laimco.profile import load_profile

        counts = load_profile(scenario.model.profile).column("n_prunable")
    except (ProfileError, OSError, ValueError):
        return True, True
    return bool(counts[:split].sum() > 0), bool(counts[split:].sum() > 0)


def _ratios(point: OperatingPoint, scenario: Scenario, digits: int) -> tuple[str, str]:
    sides = _prunable_sides(scenario, point.split)
    return tuple(f"{rho:.{digits}f}" if prunable else "—"  # type: ignore[return-value]
                 for rho, prunable in zip((point.rho_device, point.rho_server), sides,
                                          strict=True))


def _uplink_text(point: OperatingPoint) -> str:
    """What crosses the link: its width, coding and size (docs/theory.md §6)."""
    size = f"{point.uplink_bits / 1e6:.4g} Mbit"
    if point.activation_bits is None:
        return "nothing" if point.uplink_bits == 0 else f"the raw input, {size}"
    width = {32: "float32", 16: "float16"}.get(point.activation_bits,
                                               f"{point.activation_bits}-bit integers")
    coded = ", zstd" if point.coding == "zstd" else ""
    return f"{width}{coded}, {size}"


def _decision_table(decision: Decision, title: str, scenario: Scenario) -> Table:
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column("quantity", style="bold")
    table.add_column("value")
    table.add_row("status", decision.status)
    p = decision.point
    if p is None:
        for reason in decision.reasons:
            table.add_row("reason", escape(reason.message))
        return table
    c = p.costs
    rho_d, rho_s = _ratios(p, scenario, 4)
    table.add_row("split (units on device)", str(p.split))
    table.add_row("pruning ratio device / server", f"{rho_d} / {rho_s}")
    table.add_row("uplink (activation sent)", _uplink_text(p))
    table.add_row("transmit power", f"{p.power_w:.4g} W")
    table.add_row("CPU frequency device / server",
                  f"{p.freq_device_hz:.4g} Hz / {p.freq_server_hz:.4g} Hz")
    table.add_row("latency device + uplink + server + downlink",
                  f"{c.latency_device_s*1e3:.2f} + {c.latency_uplink_s*1e3:.2f} + "
                  f"{c.latency_server_s*1e3:.2f} + {c.latency_downlink_s*1e3:.2f} = "
                  f"{c.latency_total_s*1e3:.2f} ms")
    table.add_row("energy compute + uplink",
                  f"{c.energy_compute_j*1e3:.3f} + {c.energy_uplink_j*1e3:.3f} = "
                  f"{c.energy_total_j*1e3:.3f} mJ")
    table.add_row("device memory", f"{c.memory_bytes / 1e6:.1f} MB")
    table.add_row("objective (distortion bound)", f"{p.objective:.6g}")
    table.add_row("binding limits", ", ".join(p.binding) or "none")
    # the command solves once per process: its time includes reading the profile and every
    # first-call cache (warm medians: benchmarks/RESULTS.md)
    table.add_row("solve time (first in this process)", f"{decision.solve_time_s*1e3:.2f} ms")
    return table


def optimize(
    scenario: ScenarioArg,
    strategy: Annotated[str, typer.Option(help="strategy name (laimco strategies)")] = "joint",
    ratio: Annotated[float | None, typer.Option(
        help="pruning ratio of both sides, for fixed-ratio only (default 0.5)")] = None,
    split: Annotated[int | None, typer.Option(
        help="split, for fixed-split only (default L/2)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the decision as JSON")] = False,
) -> None:
    """Solve a scenario with one strategy and print the decision."""
    if strategy not in STRATEGIES:
        fail(f"--strategy {strategy!r} is unknown: choose one of {', '.join(STRATEGIES)}")
    for option, chosen, given in (("ratio", "ratios", ratio), ("split", "split", split)):
        readers = _reading(option)
        if given is not None and strategy not in readers:
            fail(f"--{option} is read only by the strategies {', '.join(readers)}; "
                 f"{strategy!r} chooses its {chosen} itself: drop --{option} or use "
                 f"--strategy {readers[0]}")
    sc = _load(scenario)
    options = StrategyOptions(split=split) if ratio is None else StrategyOptions(ratio=ratio,
                                                                                 split=split)
    with errors.status(escape(f"solving {scenario} ({strategy}) …")):
        decision = _run(sc, strategy, options)
    if as_json:
        sys.stdout.write(json.dumps(decision.to_json_dict(), indent=2) + "\n")
    else:
        console.print(_decision_table(decision, f"{strategy} — {scenario}", sc))


def compare(
    scenario: ScenarioArg,
    ratio: Annotated[float, typer.Option(help="pruning ratio of the fixed-ratio row")] = 0.5,
    split: Annotated[int | None, typer.Option(
        help="split of the fixed-split row (default L/2)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print all decisions as JSON")] = False,
    generic: Annotated[bool, typer.Option(
        "--generic-solvers", help="also run the generic-solver baselines slsqp and "
        "alternating (seconds to minutes: they solve every rule pair from several starts)")
    ] = False,
) -> None:
    """Every strategy side by side on one scenario (the generic-solver baselines with
    --generic-solvers)."""
    from rich.progress import Progress

    sc = _load(scenario)
    options = StrategyOptions(ratio=ratio, split=split)
    decisions = []
    names = [name for name, spec in STRATEGIES.items() if generic or not spec.generic]
    with Progress(console=errors, transient=True) as progress:
        task = progress.add_task("solving", total=len(names))
        for name in names:
            progress.update(task, description=f"solving {name}")
            decisions.append(_run(sc, name, options))
            progress.advance(task)
    if as_json:
        sys.stdout.write(json.dumps([d.to_json_dict() for d in decisions], indent=2) + "\n")
        return
    console.print(_compare_table(decisions, sc, f"all strategies — {scenario}"))
    for d in decisions:
        for reason in d.reasons:
            console.print(f"  {escape(f'{d.strategy}: {reason.message}')}", style="dim",
                          highlight=False)


# how `compare` names a reason that is not one limit (decision.ReasonKind)
_REASON_LABELS = {"several": "jointly too tight", "search": "no feasible point found",
                  "check": "internal check failed"}


def _compare_table(decisions: list[Decision], scenario: Scenario, title: str) -> Table:
    points = [d.point for d in decisions]
    best = min((p.objective for p in points if p is not None), default=None)
    joint = points[0].objective if points[0] is not None else None
    table = Table(title=escape(title), title_justify="left")
    for column in ("strategy", "split", "ρ_d", "ρ_s", "bits", "objective", "×joint", "T ms",
                   "E mJ", "binding (or why infeasible)"):
        table.add_column(column, justify="left" if column[:2] in ("st", "sp", "bi") else "right",
                         no_wrap=column != "binding (or why infeasible)")
    for d, p in zip(decisions, points, strict=True):
        if p is None:
            limits = ", ".join(dict.fromkeys(_REASON_LABELS.get(r.limit, r.limit)
                                             for r in d.reasons))
            table.add_row(escape(d.strategy), "—", "—", "—", "—", "—", "—", "—", "—",
                          escape(f"infeasible: {limits}"), style="dim")
            continue
        times_joint = f"{p.objective / joint:.3g}" if joint else "—"
        bits = "—" if p.activation_bits is None else str(p.activation_bits)
        table.add_row(escape(d.strategy), str(p.split), *_ratios(p, scenario, 3), bits,
                      f"{p.objective:.5g}", times_joint, f"{p.costs.latency_total_s*1e3:.1f}",
                      f"{p.costs.energy_total_j*1e3:.2f}",
                      escape(", ".join(p.binding) or "none"),
                      style="bold green" if p.objective == best else None)
    return table


def strategies() -> None:
    """List the strategies with a one-line description each."""
    table = Table(show_header=True)
    table.add_column("strategy", style="bold")
    table.add_column("what it does")
    for spec in STRATEGIES.values():
        table.add_row(escape(spec.name), escape(spec.description))
    console.print(table)


def path_gain(
    distance_m: Annotated[float, typer.Option(
        min=DISTANCE_RANGE_M[0], max=DISTANCE_RANGE_M[1],
        help="ground distance between device and base station, m")],
    carrier_ghz: Annotated[float, typer.Option(
        min=CARRIER_RANGE_GHZ[0], max=CARRIER_RANGE_GHZ[1], help="carrier frequency, GHz")
    ] = 3.5,
    ut_height_m: Annotated[float, typer.Option(
        min=UT_HEIGHT_RANGE_M[0], max=UT_HEIGHT_RANGE_M[1],
        help="device (user terminal) height, m")] = 1.5,
    nlos: Annotated[bool, typer.Option(
        "--nlos", help="non-line-of-sight (default: line of sight)")] = False,
) -> None:
    """channel.path_gain from a distance (3GPP TR 38.901 UMi street canyon, Table 7.4.1-1).

    Median path loss without antenna gains or shadow fading."""
    from laimco.system.pathloss import PathLossError, UmiStreetCanyon, gain_of_loss_db

    try:
        model = UmiStreetCanyon(carrier_ghz=carrier_ghz, ut_height_m=ut_height_m)
        loss_db = model.path_loss_db(distance_m, line_of_sight=not nlos)
    except PathLossError as err:
        fail(str(err))
    kind = "NLOS" if nlos else "LOS"
    console.print(escape(f"3GPP TR 38.901 UMi street canyon {kind}, {distance_m:g} m, "
                         f"{carrier_ghz:g} GHz, device at {ut_height_m:g} m (base station at "
                         f"10 m, breakpoint {model.breakpoint_distance_m:.0f} m): path loss "
                         f"{loss_db:.2f} dB"), highlight=False)
    console.print(escape(f"[channel]\npath_gain = {gain_of_loss_db(loss_db):.4e}"),
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add optimize, compare and strategies to a typer app (path-gain is added by cli.py,
    after the model commands, in the order of `laimco --help`)."""
    app.command()(optimize)
    app.command()(compare)
    app.command()(strategies)
