"""`laimco profile`, `prune` and `analyze`: the commands that touch real model weights, thin
shells over models/, pruning/ and experiments/analyze (README "Command line"). torch is
imported only inside the commands, after the model extra is checked. `register(app)` adds
them to laimco's typer app."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from laimco.terminal import RUNS, console, errors, fail, require_models

ModelArg = Annotated[str, typer.Argument(
    help="'minilm' (built in) or a Hugging Face model directory (safetensors weights)")]


def _check_output_file(output: Path, option: str) -> None:
    """An output file path: not a folder, not under a file."""
    if output.is_dir():
        fail(f"{option} {output}: is a folder; give a file path such as {output / 'p.json'}")
    for parent in output.parents:
        if parent.exists() and not parent.is_dir():
            fail(f"{option} {output}: {parent} is a file, not a folder; give a path under a "
                 "folder")


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
        fail("give either a model (built-in name or directory) or --config CONFIG.json")
    if name is not None and (not name.strip() or Path(name).name != name):
        fail(f"--name {name!r}: give a non-empty profile name without '/' (it also names the "
              "default output file)")
    if output is not None:
        _check_output_file(output, "-o/--output")
    require_models("profile")
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
                output = RUNS / "profiles" / f"{Path(result.name).name}.json"
                _check_output_file(output, "-o/--output")
            save_profile(result, output)
    except (ModelLoadError, ProfilerError, ValueError, OSError) as err:
        fail(str(err))
    table = Table(title=escape(f"{result.name} → {output}"), title_justify="left")
    for column in ("unit", "prunable", "fixed", "GFLOP prunable", "GFLOP fixed", "out Mbit",
                   "mean |w|"):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for u in result.units:
        table.add_row(escape(u.name), f"{u.n_prunable:,}", f"{u.n_fixed:,}",
                      f"{u.flops_prunable/1e9:.3f}", f"{u.flops_fixed/1e9:.3f}",
                      f"{u.out_bits/1e6:.3f}", f"{u.weight_mean_abs:.4g}")
    console.print(table)


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

    folder = out or RUNS / "pruned" / f"{Path(model).name}-split{split}-{rule}"
    # every option is checked before the model is loaded
    calibration_sentences = _checked_prune_options(rule, rho_device, rho_server,
                                                   calibration_sentences, folder, overwrite)
    require_models("prune")
    from laimco.models.loading import (
        BUILTIN_MODELS,
        ModelLoadError,
        builtin_model_dir,
        load_model,
        read_config,
    )
    from laimco.models.prune_request import PruningError
    from laimco.models.pruned import prune_split_model, save_pruned
    from laimco.models.split import SplitError

    try:
        source = builtin_model_dir(model) if model in BUILTIN_MODELS else Path(model)
        if not source.is_dir():
            fail(f"{model}: not a directory; give a Hugging Face model directory or a "
                 f"built-in name ({', '.join(BUILTIN_MODELS)})")
        n_units = int(read_config(source).num_hidden_layers) + 2
        if not 0 <= split <= n_units:
            fail(f"--split {split} is outside 0..{n_units} for {model} ({n_units} units: "
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
        fail(str(err))
    _print_pruned(pruned.reports, written)


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
    uplink: Annotated[bool, typer.Option(
        help="measure what quantizing the activation at each split to 16…2 bits costs "
        "(profile.json's \"uplink\" section)")] = True,
) -> None:
    """Check the theory on a real model: laws, output bound, sensitivities, pruning rules,
    uplink quantization."""
    folder = out or RUNS / "analyze" / Path(model).name
    if folder.exists() and not folder.is_dir():
        fail(f"--out {folder}: is a file; give a folder")
    require_models("analyze")
    from laimco.experiments.analyze import analyze as run_analysis
    from laimco.models.loading import ModelLoadError

    try:
        result = run_analysis(model, folder, quick=quick, split=split,
                              rules=[r.strip() for r in (rules or "").split(",") if r.strip()],
                              uplink=uplink)
    except (ModelLoadError, ValueError) as err:
        fail(str(err))
    console.print((folder / "analysis.md").read_text(), markup=False, highlight=False)
    console.print(escape(f"wrote {len(result.figures)} figures, analysis.json, analysis.md, "
                         f"profile.json to {folder} in {result.elapsed_s:.0f} s"),
                  highlight=False)


def _checked_prune_options(rule: str, rho_device: float, rho_server: float,
                           calibration_sentences: int | None, folder: Path,
                           overwrite: bool) -> int:
    """Check `laimco prune`'s options (exit 2 with one message); the number of calibration
    sentences to use."""
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

    try:
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
        fail(str(err))
    return calibration_sentences


def _print_pruned(reports: Any, written: Path) -> None:
    for side, report in reports.items():
        if not report.n_prunable:
            console.print(f"{side}: nothing to prune (ratio —)", highlight=False)
            continue
        distortion = ("— (shapes change)" if math.isnan(report.parameter_distortion)
                      else f"{report.parameter_distortion:.6g}")
        console.print(f"{side}: ratio {report.ratio:.3f}, sparsity {report.sparsity:.4f}, "
                      f"‖w − ŵ‖² = {distortion}", highlight=False)
    console.print(f"wrote {escape(str(written))}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the model commands to a typer app."""
    app.command()(profile)
    app.command()(prune)
    app.command()(analyze)
