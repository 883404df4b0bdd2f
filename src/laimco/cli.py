"""The `laimco` command line: a thin shell over config, optimize, models and runtime. Every
message printed through rich is escaped (rich.markup.escape), so bracketed text such as
`laimco[models]` survives; bad input exits with code 2 and one message (README "Command line")."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import laimco
from laimco.config import Scenario, ScenarioError, load_scenario
from laimco.extras import MissingExtraError, extra_of_module, install_hint, require_extra
from laimco.optimize import STRATEGIES, Decision, StrategyError, StrategyOptions, solve
from laimco.profile import ProfileError
from laimco.system.pathloss import CARRIER_RANGE_GHZ, DISTANCE_RANGE_M, UT_HEIGHT_RANGE_M

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Pruning-aware co-inference of large AI models over wireless links.")
# a pipe or a CI log has no width: give tables room instead of folding them at 80 columns
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True)  # errors and progress: stdout stays clean for --json

# the strategies that read --ratio and --split (laimco.optimize.strategies)
RATIO_STRATEGIES = ("fixed-ratio",)
SPLIT_STRATEGIES = ("fixed-split",)
RUNS = Path("runs")  # default output root: never the repository's shipped folders
GENERIC_SOLVERS = ("slsqp", "alternating")  # what a user would do otherwise: slow references
ScenarioArg = Annotated[Path, typer.Argument(
    help="scenario TOML file (see scenarios/, or copy them with `laimco examples DEST`)")]


def _fail(message: str) -> None:
    """One message on stderr, exit code 2 (soft-wrapped: paths in it stay whole)."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _require_models(command: str) -> None:
    """Exit 2 with the install command when the model extra (torch, transformers,
    safetensors) is missing, before anything imports torch."""
    try:
        require_extra("models", f"laimco {command}")
    except MissingExtraError as err:
        _fail(str(err))


def _show_version(value: bool) -> None:
    if value:
        console.print(f"laimco {escape(laimco.__version__)}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="print laimco's version and exit")] = False) -> None:
    """Pruning-aware co-inference of large AI models over wireless links."""


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


def _prunable_sides(scenario: Scenario, split: int | None) -> tuple[bool, bool]:
    """Whether the device / server side of a split has weights to prune (a ratio of a side
    without any is shown as "—")."""
    if split is None:
        return True, True
    try:
        from laimco.profile import load_profile

        counts = load_profile(scenario.model.profile).column("n_prunable")
    except (ProfileError, OSError, ValueError):
        return True, True
    return bool(counts[:split].sum() > 0), bool(counts[split:].sum() > 0)


def _ratio(value: float | None, prunable: bool, digits: int) -> str:
    return f"{value:.{digits}f}" if prunable and value is not None else "—"


def _decision_table(decision: Decision, title: str, scenario: Scenario) -> Table:
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column("quantity", style="bold")
    table.add_column("value")
    table.add_row("status", decision.status)
    if not decision.success:
        for reason in decision.reasons:
            table.add_row("reason", escape(reason))
        return table
    assert decision.latency_s is not None and decision.energy_j is not None
    device_prunable, server_prunable = _prunable_sides(scenario, decision.split)
    table.add_row("split (units on device)", str(decision.split))
    table.add_row("pruning ratio device / server",
                  f"{_ratio(decision.rho_device, device_prunable, 4)} / "
                  f"{_ratio(decision.rho_server, server_prunable, 4)}")
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
    ratio: Annotated[float | None, typer.Option(
        help="pruning ratio of both sides, for fixed-ratio only (default 0.5)")] = None,
    split: Annotated[int | None, typer.Option(
        help="split, for fixed-split only (default L/2)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the decision as JSON")] = False,
) -> None:
    """Solve a scenario with one strategy and print the decision."""
    if strategy not in STRATEGIES:
        _fail(f"--strategy {strategy!r} is unknown: choose one of {', '.join(STRATEGIES)}")
    if ratio is not None and strategy not in RATIO_STRATEGIES:
        _fail(f"--ratio is read only by the strategies {', '.join(RATIO_STRATEGIES)}; "
              f"{strategy!r} chooses its ratios itself: drop --ratio or use --strategy "
              f"{RATIO_STRATEGIES[0]}")
    if split is not None and strategy not in SPLIT_STRATEGIES:
        _fail(f"--split is read only by the strategies {', '.join(SPLIT_STRATEGIES)}; "
              f"{strategy!r} chooses its split itself: drop --split or use --strategy "
              f"{SPLIT_STRATEGIES[0]}")
    sc = _load(scenario)
    options = StrategyOptions(split=split) if ratio is None else StrategyOptions(ratio=ratio,
                                                                                 split=split)
    with errors.status(escape(f"solving {scenario} ({strategy}) …")):
        decision = _run(sc, strategy, options)
    if as_json:
        sys.stdout.write(json.dumps(decision.to_json_dict(), indent=2) + "\n")
    else:
        console.print(_decision_table(decision, f"{strategy} — {scenario}", sc))


@app.command()
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
    names = [n for n in STRATEGIES if generic or n not in GENERIC_SOLVERS]
    with Progress(console=errors, transient=True) as progress:
        task = progress.add_task("solving", total=len(names))
        for name in names:
            progress.update(task, description=f"solving {name}")
            decisions.append(_run(sc, name, options))
            progress.advance(task)
    if as_json:
        sys.stdout.write(json.dumps([d.to_json_dict() for d in decisions], indent=2) + "\n")
        return
    best = min((d.objective for d in decisions if d.success and d.objective is not None),
               default=None)
    table = Table(title=escape(f"all strategies — {scenario}"), title_justify="left")
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
            device_prunable, server_prunable = _prunable_sides(sc, d.split)
            table.add_row(escape(d.strategy), str(d.split),
                          _ratio(d.rho_device, device_prunable, 3),
                          _ratio(d.rho_server, server_prunable, 3), f"{d.objective:.5g}",
                          times_joint, f"{d.latency_s['total']*1e3:.1f}",
                          f"{d.energy_j['total']*1e3:.2f}",
                          escape(", ".join(d.binding) or "none"), style=style)
        else:
            limits = ", ".join(r.split(":")[0] for r in d.reasons)
            table.add_row(escape(d.strategy), "—", "—", "—", "—", "—", "—", "—",
                          escape(f"infeasible: {limits}"), style="dim")
            notes += [f"{d.strategy}: {r}" for r in d.reasons]
    console.print(table)
    for note in notes:
        console.print(f"  {escape(note)}", style="dim", highlight=False)


@app.command()
def strategies() -> None:
    """List the strategies with a one-line description each."""
    table = Table(show_header=True)
    table.add_column("strategy", style="bold")
    table.add_column("what it does")
    for spec in STRATEGIES.values():
        table.add_row(escape(spec.name), escape(spec.description))
    console.print(table)


ModelArg = Annotated[str, typer.Argument(
    help="'minilm' (built in) or a Hugging Face model directory (safetensors weights)")]


def _check_output_file(output: Path, option: str) -> None:
    """An output file path: not a folder, not under a file."""
    if output.is_dir():
        _fail(f"{option} {output}: is a folder; give a file path such as {output / 'p.json'}")
    for parent in output.parents:
        if parent.exists() and not parent.is_dir():
            _fail(f"{option} {output}: {parent} is a file, not a folder; give a path under a "
                  "folder")


@app.command()
def profile(
    model: Annotated[str | None, typer.Argument(
        help="'minilm' (built in) or a Hugging Face model directory (safetensors weights)")
    ] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="architecture only: a config.json (no weights are loaded)")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="profile JSON to write (default runs/profiles/NAME.json)")
    ] = None,
    seq_len: Annotated[int, typer.Option(min=1, help="tokens per input (text models)")] = 128,
    batch_size: Annotated[int, typer.Option(min=1, help="inputs per inference")] = 1,
    activation_bits: Annotated[int, typer.Option(
        min=1, help="bits per activation element")] = 32,
    image_size: Annotated[int | None, typer.Option(min=1, help="image side (ViT)")] = None,
    prunable_head: Annotated[bool, typer.Option(help="count the head's matrix as prunable")] = (
        False),
    name: Annotated[str | None, typer.Option(help="profile name")] = None,
) -> None:
    """Profile a model for the optimizer: per-unit weights, FLOPs, activation bits, statistics."""
    if (model is None) == (config is None):
        _fail("give either a model (built-in name or directory) or --config CONFIG.json")
    if name is not None and (not name.strip() or Path(name).name != name):
        _fail(f"--name {name!r}: give a non-empty profile name without '/' (it also names the "
              "default output file)")
    if output is not None:
        _check_output_file(output, "-o/--output")
    _require_models("profile")
    from laimco.models.loading import ModelLoadError, builtin_model_dir
    from laimco.models.profiler import (
        ProfilerError,
        check_options,
        profile_from_config,
        profile_safetensors_dir,
        save_profile,
    )

    options = {"seq_len": seq_len, "batch_size": batch_size, "activation_bits": activation_bits,
               "image_size": image_size, "prunable_head": prunable_head, "name": name}
    try:
        check_options(seq_len=seq_len, batch_size=batch_size, activation_bits=activation_bits,
                      image_size=image_size)
        with errors.status(escape(f"profiling {model or config} …")):
            if config is not None:
                result = profile_from_config(config, **options)
            else:
                assert model is not None
                folder = builtin_model_dir(model) if model == "minilm" else Path(model)
                if model == "minilm":
                    options["name"] = name or "minilm-l6"
                result = profile_safetensors_dir(folder, **options)
            if output is None:
                output = RUNS / "profiles" / f"{Path(str(result['name'])).name}.json"
                _check_output_file(output, "-o/--output")
            save_profile(result, output)
    except (ModelLoadError, ProfilerError, ValueError, OSError) as err:
        _fail(str(err))
    table = Table(title=escape(f"{result['name']} → {output}"), title_justify="left")
    for column in ("unit", "prunable", "fixed", "GFLOP prunable", "GFLOP fixed", "out Mbit",
                   "mean |w|"):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for u in result["units"]:
        table.add_row(escape(u["name"]), f"{u['n_prunable']:,}", f"{u['n_fixed']:,}",
                      f"{u['flops_prunable']/1e9:.3f}", f"{u['flops_fixed']/1e9:.3f}",
                      f"{u['out_bits']/1e6:.3f}", f"{u['weight_mean_abs']:.4g}")
    console.print(table)


@app.command()
def prune(
    model: ModelArg,
    split: Annotated[int, typer.Option(help="units 1..split run on the device (0..L)")],
    rho_device: Annotated[float, typer.Option(
        help="pruning ratio of the device part, in [0, 1)")] = 0.0,
    rho_server: Annotated[float, typer.Option(
        help="pruning ratio of the server part, in [0, 1)")] = 0.0,
    rule: Annotated[str, typer.Option(
        help="magnitude | magnitude-global | wanda | structured")] = "magnitude",
    out: Annotated[Path | None, typer.Option(
        help="folder to write the two parts into (default runs/pruned/MODEL-splitS-RULE)")
    ] = None,
    calibration_sentences: Annotated[int | None, typer.Option(
        help="calibration sentences for --rule wanda (from the shipped corpus; default 128)")
    ] = None,
    overwrite: Annotated[bool, typer.Option(
        help="replace an existing folder that laimco prune wrote (never any other folder)")
    ] = False,
) -> None:
    """Split a model, prune each side at its ratio, save both parts (safetensors + manifest)."""
    from laimco.data import calibration_sentences as shipped_sentences
    from laimco.models.output_folder import OutputFolderError, check_replaceable
    from laimco.models.prune_request import (
        CALIBRATED_RULES,
        DEFAULT_CALIBRATION_SENTENCES,
        PruningError,
        check_calibration_count,
        check_ratio,
        check_rule,
    )

    folder = out or RUNS / "pruned" / f"{Path(model).name}-split{split}-{rule}"
    try:  # every option is checked before the model is loaded
        check_rule(rule, "--rule")
        check_ratio("--rho-device", rho_device)
        check_ratio("--rho-server", rho_server)
        if calibration_sentences is not None and rule not in CALIBRATED_RULES:
            raise PruningError(f"--calibration-sentences is read only by --rule "
                               f"{' / '.join(CALIBRATED_RULES)}; rule {rule!r} uses no "
                               "calibration text: drop the option")
        if calibration_sentences is None:
            calibration_sentences = DEFAULT_CALIBRATION_SENTENCES
        check_calibration_count(rule, calibration_sentences, len(shipped_sentences()))
        check_replaceable(folder, overwrite=overwrite, manifest_name="manifest.json")
    except (PruningError, OutputFolderError) as err:
        _fail(str(err))
    _require_models("prune")
    from laimco.models.loading import (
        BUILTIN_MODELS,
        ModelLoadError,
        builtin_model_dir,
        load_model,
        read_config,
    )
    from laimco.models.pruned import prune_split_model, save_pruned
    from laimco.models.split import SplitError

    try:
        source = builtin_model_dir(model) if model in BUILTIN_MODELS else Path(model)
        if not source.is_dir():
            _fail(f"{model}: not a directory; give a Hugging Face model directory or a "
                  f"built-in name ({', '.join(BUILTIN_MODELS)})")
        n_units = int(read_config(source).num_hidden_layers) + 2
        if not 0 <= split <= n_units:
            _fail(f"--split {split} is outside 0..{n_units} for {model} ({n_units} units: "
                  "embeddings, blocks, head)")
        with errors.status(escape(f"loading {model} …")) as status:
            loaded = load_model(model)
            calibration = None
            if rule == "wanda":
                from laimco.experiments.text_batches import text_batches

                status.update(f"tokenizing {calibration_sentences} calibration sentences …")
                calibration = list(text_batches(
                    loaded, shipped_sentences()[:calibration_sentences]))
            status.update(escape(f"pruning ({rule}) …"))
            pruned = prune_split_model(loaded, split, rho_device, rho_server, rule,  # type: ignore[arg-type]
                                       calibration=calibration)
            status.update(escape(f"saving to {folder} …"))
            written = save_pruned(pruned, folder, overwrite=overwrite)
    except (ModelLoadError, PruningError, SplitError, ValueError, OSError) as err:
        _fail(str(err))
    for side, report in pruned.reports.items():
        if not report.n_prunable:
            console.print(f"{side}: nothing to prune (ratio —)", highlight=False)
            continue
        distortion = ("— (shapes change)" if math.isnan(report.parameter_distortion)
                      else f"{report.parameter_distortion:.6g}")
        console.print(f"{side}: ratio {report.ratio:.3f}, sparsity {report.sparsity:.4f}, "
                      f"‖w − ŵ‖² = {distortion}", highlight=False)
    console.print(f"wrote {escape(str(written))}", highlight=False)


@app.command()
def analyze(
    model: ModelArg = "minilm",
    out: Annotated[Path | None, typer.Option(
        help="folder for figures, analysis.json/.md, profile (default runs/analyze/MODEL)")
    ] = None,
    quick: Annotated[bool, typer.Option(help="fewer sentences and ratios (tests)")] = False,
    split: Annotated[int, typer.Option(help="split for the per-side constants")] = 3,
    rules: Annotated[str | None, typer.Option(
        help="comma-separated pruning rules whose measured costs go into profile.json "
        "(magnitude,wanda,structured,magnitude-csr): what the calibrated scenario mode uses")
    ] = None,
) -> None:
    """Check the theory on a real model: laws, output bound, sensitivities, pruning rules."""
    folder = out or RUNS / "analyze" / Path(model).name
    if folder.exists() and not folder.is_dir():
        _fail(f"--out {folder}: is a file; give a folder")
    _require_models("analyze")
    from laimco.experiments.analyze import analyze as run_analysis
    from laimco.models.loading import ModelLoadError

    try:
        result = run_analysis(model, folder, quick=quick, split=split,
                              rules=[r.strip() for r in (rules or "").split(",") if r.strip()])
    except (ModelLoadError, ValueError) as err:
        _fail(str(err))
    console.print((folder / "analysis.md").read_text(), markup=False, highlight=False)
    console.print(escape(f"wrote {len(result.figures)} figures, analysis.json, analysis.md, "
                         f"profile.json to {folder} in {result.elapsed_s:.0f} s"),
                  highlight=False)


@app.command()
def examples(
    dest: Annotated[Path, typer.Argument(
        help="folder to copy the shipped scenarios/ and sweeps/ into (created if missing)")],
) -> None:
    """Copy the shipped example scenarios and sweep files into a folder (never overwrites)."""
    from laimco.examples import ExamplesError, copy_examples

    try:
        written = copy_examples(dest)
    except (ExamplesError, OSError) as err:
        _fail(str(err))
    console.print(escape(f"copied {len(written)} files to {dest}: scenarios/ and sweeps/ "
                         f"(try: laimco optimize {dest / 'scenarios' / 'minilm-phone.toml'})"),
                  highlight=False)


@app.command("path-gain")
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
    from laimco.system.pathloss import PathLossError, UmiStreetCanyon

    try:
        model = UmiStreetCanyon(carrier_ghz=carrier_ghz, ut_height_m=ut_height_m)
        loss_db = model.path_loss_db(distance_m, line_of_sight=not nlos)
    except PathLossError as err:
        _fail(str(err))
    gain = 10.0 ** (-loss_db / 10.0)
    kind = "NLOS" if nlos else "LOS"
    console.print(escape(f"3GPP TR 38.901 UMi street canyon {kind}, {distance_m:g} m, "
                         f"{carrier_ghz:g} GHz, device at {ut_height_m:g} m (base station at "
                         f"10 m, breakpoint {model.breakpoint_distance_m:.0f} m): path loss "
                         f"{loss_db:.2f} dB"), highlight=False)
    console.print(escape(f"[channel]\npath_gain = {gain:.4e}"), highlight=False)


def _register_optional_commands() -> None:
    """Commands whose modules bring their own dependencies (the study's Dask, the runtime's
    MLServer) register themselves; they import those dependencies only when run."""
    from laimco.experiments.commands import register as register_study
    from laimco.runtime.commands import register as register_runtime

    register_study(app)
    register_runtime(app)


_register_optional_commands()


def main() -> None:
    """The console script: the typer app, with an optional dependency that is missing anywhere
    (serve's MLServer, the study's Dask, the models' torch) reported as the command that
    installs it (exit 2) instead of a traceback."""
    try:
        app()
    except ModuleNotFoundError as err:
        extra = extra_of_module(err.name or "")
        if extra is None:
            raise
        _print_missing(err.name or "", extra)
        sys.exit(2)


def _print_missing(module: str, extra: str) -> None:
    errors.print(f"[bold red]error:[/] {escape(module)} is not installed: "
                 f"{escape(install_hint(extra))}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
