"""The `laimco` command line: a thin shell over config, optimize and (later) models/runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
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
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
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
    # the command solves once per process: its time includes reading the profile and every
    # first-call cache (warm medians: benchmarks/RESULTS.md)
    table.add_row("solve time (first in this process)", f"{decision.solve_time_s*1e3:.2f} ms")
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


ModelArg = Annotated[str, typer.Argument(
    help="'minilm' (built in) or a Hugging Face model directory")]


@app.command()
def profile(
    model: Annotated[str | None, typer.Argument(
        help="'minilm' (built in) or a Hugging Face model directory")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="architecture only: a config.json (no weights are loaded)")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="profile JSON to write")] = Path(
        "profile.json"),
    seq_len: Annotated[int, typer.Option(help="tokens per input (text models)")] = 128,
    batch_size: Annotated[int, typer.Option(help="inputs per inference")] = 1,
    activation_bits: Annotated[int, typer.Option(help="bits per activation element")] = 32,
    image_size: Annotated[int | None, typer.Option(help="image side (ViT)")] = None,
    prunable_head: Annotated[bool, typer.Option(help="count the head's matrix as prunable")] = (
        False),
    name: Annotated[str | None, typer.Option(help="profile name")] = None,
) -> None:
    """Profile a model for the optimizer: per-unit weights, FLOPs, activation bits, statistics."""
    from laimco.models.loading import ModelLoadError, builtin_model_dir
    from laimco.models.profiler import (
        ProfilerError,
        profile_from_config,
        profile_safetensors_dir,
        save_profile,
    )

    if (model is None) == (config is None):
        _fail("give either a model (built-in name or directory) or --config CONFIG.json")
    options = {"seq_len": seq_len, "batch_size": batch_size, "activation_bits": activation_bits,
               "image_size": image_size, "prunable_head": prunable_head, "name": name}
    try:
        with console.status("profiling …"):
            if config is not None:
                result = profile_from_config(config, **options)
            else:
                assert model is not None
                folder = builtin_model_dir(model) if model == "minilm" else Path(model)
                if model == "minilm":
                    options["name"] = name or "minilm-l6"
                result = profile_safetensors_dir(folder, **options)
            save_profile(result, output)
    except (ModelLoadError, ProfilerError, ValueError) as err:
        _fail(str(err))
    table = Table(title=f"{result['name']} → {output}", title_justify="left")
    for column in ("unit", "prunable", "fixed", "GFLOP prunable", "GFLOP fixed", "out Mbit",
                   "mean |w|"):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for u in result["units"]:
        table.add_row(u["name"], f"{u['n_prunable']:,}", f"{u['n_fixed']:,}",
                      f"{u['flops_prunable']/1e9:.3f}", f"{u['flops_fixed']/1e9:.3f}",
                      f"{u['out_bits']/1e6:.3f}", f"{u['weight_mean_abs']:.4g}")
    console.print(table)


@app.command()
def prune(
    model: ModelArg,
    split: Annotated[int, typer.Option(help="units 1..split run on the device")],
    rho_device: Annotated[float, typer.Option(help="pruning ratio of the device part")] = 0.0,
    rho_server: Annotated[float, typer.Option(help="pruning ratio of the server part")] = 0.0,
    rule: Annotated[str, typer.Option(
        help="magnitude | magnitude-global | wanda | structured")] = "magnitude",
    out: Annotated[Path, typer.Option(help="folder to write the two parts into")] = Path(
        "pruned"),
    calibration_sentences: Annotated[int, typer.Option(
        help="calibration sentences for wanda (from the shipped corpus)")] = 128,
    overwrite: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
) -> None:
    """Split a model, prune each side at its ratio, save both parts (safetensors + manifest)."""
    from laimco.models.loading import ModelLoadError, load_model
    from laimco.models.pruned import PruningError, prune_split_model, save_pruned
    from laimco.models.split import SplitError

    try:
        with console.status(f"loading {model} …"):
            loaded = load_model(model)
        calibration = None
        if rule == "wanda":
            from laimco.data import calibration_sentences as sentences
            from laimco.experiments.text_batches import text_batches

            calibration = list(text_batches(loaded, sentences()[:calibration_sentences]))
        with console.status(f"pruning ({rule}) …"):
            pruned = prune_split_model(loaded, split, rho_device, rho_server, rule,  # type: ignore[arg-type]
                                       calibration=calibration)
            folder = save_pruned(pruned, out, overwrite=overwrite)
    except (ModelLoadError, PruningError, SplitError, ValueError) as err:
        _fail(str(err))
    for side, report in pruned.reports.items():
        console.print(f"{side}: ratio {report.ratio:.3f}, sparsity {report.sparsity:.4f}, "
                      f"‖w − ŵ‖² = {report.parameter_distortion:.6g}")
    console.print(f"wrote {folder}")


@app.command()
def analyze(
    model: ModelArg = "minilm",
    out: Annotated[Path, typer.Option(help="folder for figures, analysis.json/.md, profile")] = (
        Path("reports/minilm")),
    quick: Annotated[bool, typer.Option(help="fewer sentences and ratios (tests)")] = False,
    split: Annotated[int, typer.Option(help="split for the per-side constants")] = 3,
) -> None:
    """Check the theory on a real model: laws, output bound, sensitivities, pruning rules."""
    from laimco.experiments.analyze import analyze as run_analysis
    from laimco.models.loading import ModelLoadError

    try:
        result = run_analysis(model, out, quick=quick, split=split)
    except (ModelLoadError, ValueError) as err:
        _fail(str(err))
    console.print((out / "analysis.md").read_text(), highlight=False)
    console.print(f"wrote {len(result['figures'])} figures, analysis.json, analysis.md, "
                  f"profile.json to {out} in {result['elapsed_s']:.0f} s")


def _register_optional_commands() -> None:
    """Commands whose modules bring their own dependencies (the study's Dask, the runtime's
    MLServer) register themselves; they import those dependencies only when run."""
    from laimco.experiments.commands import register as register_study
    from laimco.runtime.commands import register as register_runtime

    register_study(app)
    register_runtime(app)


_register_optional_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
