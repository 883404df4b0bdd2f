"""Apply a decision to a real model: prune each side of a split model at its own ratio, and
save or load the two pruned parts (safetensors + JSON manifest) (docs/design.md §7).

Rules:
- "magnitude": per weight matrix, the ratio of smallest |w| (docs/theory.md eq. 3.1);
- "magnitude-global": the ratio of smallest |w| over all of one side's matrices together;
- "wanda": per output row, smallest |w|·‖x‖ with input norms from calibration text;
- "structured": whole attention heads and FFN neurons of each block, so the matrices shrink.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from safetensors.torch import load_model as load_module_weights
from safetensors.torch import save_model as save_module_weights
from torch import nn

import laimco
from laimco.models.families import family_adapter
from laimco.models.loading import LoadedModel, ModelLoadError, model_from_config, read_config
from laimco.models.output_folder import (
    OutputFolderError,
    check_replaceable,
    commit_staging,
    file_sha256,
    new_staging,
    staged_files,
)
from laimco.models.prune_request import RULES, PruningError, Rule, check_ratio, check_rule
from laimco.models.split import Crossing, DevicePart, ServerPart, split_model
from laimco.pruning import (
    InputNormCollector,
    apply_masks,
    linear_weights,
    magnitude_masks,
    parameter_distortion,
    prune_structured,
    shrink_layer,
    sparsity,
    wanda_masks,
)
from laimco.pruning.masks import conv1d_names
from laimco.pruning.sparse_kernels import to_csr_linears
from laimco.uplink.coding import Coding, check_coding
from laimco.uplink.quantizer import QuantizerSettings

MANIFEST = "manifest.json"
__all__ = ["MANIFEST", "RULES", "PrunedSplit", "PruningError", "Rule", "SideReport",
           "load_pruned", "prune_split_model", "save_pruned"]


@dataclass
class SideReport:
    """What pruning did to one side: achieved sparsity, ‖w − ŵ‖², and structure."""

    ratio: float
    sparsity: float = 0.0
    parameter_distortion: float = 0.0
    n_prunable: int = 0
    structure: list[dict[str, list[int]]] = field(default_factory=list)


@dataclass
class PrunedSplit:
    """A split model with both parts pruned, ready to run or save."""

    loaded: LoadedModel
    split: int
    rule: Rule
    device: DevicePart
    server: ServerPart
    reports: dict[str, SideReport]
    masks: dict[str, dict[str, torch.Tensor]]
    rule_server: Rule | None = None  # the server part's rule when it differs from `rule`

    @property
    def server_rule(self) -> Rule:
        return self.rule if self.rule_server is None else self.rule_server

    def __call__(self, inputs: Crossing) -> torch.Tensor:
        with torch.no_grad():
            return self.server(self.device(inputs))


def _blocks_of(part: nn.Module | None, family: str) -> list[nn.Module]:
    return [] if part is None else family_adapter(family).block_modules(part)


def calibration_norms(parts: Sequence[nn.Module | None], run: Iterable[Crossing],
                      device: DevicePart, server: ServerPart
                      ) -> list[dict[str, torch.Tensor]]:
    """Input norms ‖x_j‖₂ of every linear layer of each part over calibration batches, run
    through the dense split pipeline (padding tokens excluded via the attention mask)."""
    collectors = [InputNormCollector(p) if p is not None else None for p in parts]
    for c in collectors:
        if c is not None:
            c.__enter__()
    try:
        with torch.no_grad():
            for batch in run:
                mask = batch.get("attention_mask")
                for c in collectors:
                    if c is not None:
                        c.set_token_mask(None if mask is None else mask.bool())
                server(device(batch))
    finally:
        for c in collectors:
            if c is not None:
                c.__exit__(None, None, None)
    return [c.norms() if c is not None else {} for c in collectors]


def _prune_part(part: nn.Module | None, family: str, ratio: float, rule: Rule,
                norms: dict[str, torch.Tensor]) -> tuple[SideReport, dict[str, torch.Tensor]]:
    report = SideReport(ratio=ratio)
    if part is None:
        return report, {}
    weights = linear_weights(part)
    report.n_prunable = sum(w.numel() for w in weights.values())
    original = {k: w.detach().clone() for k, w in weights.items()}
    if rule == "magnitude-csr":  # executed with CSR kernels at every ratio, 0 included
        masks = magnitude_masks(weights, ratio) if ratio > 0 else {}
        if masks:
            apply_masks(part, masks)
            report.sparsity = sparsity(masks)
            report.parameter_distortion = parameter_distortion(original, linear_weights(part))
        to_csr_linears(part)
        return report, masks
    if ratio == 0.0 or not weights:
        return report, {}
    if rule == "structured":
        kept_before = report.n_prunable
        for layer in _blocks_of(part, family):
            r = prune_structured(layer, family, ratio)
            report.structure.append({"heads": list(r.kept_kv_heads),
                                     "neurons": list(r.kept_neurons)})
        kept = sum(w.numel() for w in linear_weights(part).values())
        report.sparsity = 1.0 - kept / kept_before
        report.parameter_distortion = float("nan")  # shapes change: see docs
        return report, {}
    if rule == "wanda":
        masks = wanda_masks(weights, norms, ratio, transposed=conv1d_names(part))
    else:
        masks = magnitude_masks(weights, ratio,
                                scope="global" if rule == "magnitude-global" else "layer")
    apply_masks(part, masks)
    report.sparsity = sparsity(masks)
    report.parameter_distortion = parameter_distortion(original, linear_weights(part))
    return report, masks


def prune_split_model(loaded: LoadedModel, split: int, rho_device: float, rho_server: float,
                      rule: Rule = "magnitude",
                      calibration: Iterable[Crossing] | None = None,
                      input_norms: Sequence[dict[str, torch.Tensor]] | None = None,
                      rule_server: Rule | None = None) -> PrunedSplit:
    """Split `loaded` at s and prune each part at its ratio by `rule` (the server part by
    `rule_server` when given). Wanda needs calibration batches (dicts of model inputs), or the
    (device, server) input norms they give, computed once by `calibration_norms` when the same
    split is pruned at several ratios."""
    server_rule = rule if rule_server is None else rule_server
    check_rule(rule)
    check_rule(server_rule)
    check_ratio("rho_device", rho_device)
    check_ratio("rho_server", rho_server)
    device, server = split_model(loaded, split)
    parts = [device.model, server.model]
    norms: list[dict[str, torch.Tensor]] = [{}, {}]
    wanda = "wanda" in (rule, server_rule)
    if wanda and input_norms is not None:
        norms = list(input_norms)
    elif wanda:
        if calibration is None:
            raise PruningError("rule 'wanda' needs calibration inputs (it weighs |w| by the "
                               "norm of each input feature)")
        calibration = list(calibration)
        if not calibration:
            raise PruningError("rule 'wanda' needs at least one calibration batch (it weighs "
                               "|w| by the norm of each input feature)")
        norms = calibration_norms(parts, calibration, device, server)
    reports, masks = {}, {}
    for side, part, ratio, side_rule, norm in (
            ("device", device.model, rho_device, rule, norms[0]),
            ("server", server.model, rho_server, server_rule, norms[1])):
        reports[side], masks[side] = _prune_part(part, loaded.family, ratio, side_rule, norm)
    return PrunedSplit(loaded=loaded, split=split, rule=rule, device=device, server=server,
                       reports=reports, masks=masks, rule_server=server_rule)




def _report_json(report: SideReport) -> dict[str, Any]:  # a part of the manifest's JSON
    """A side report as strict JSON: NaN (structured pruning's ‖w − ŵ‖², undefined when shapes
    change) is written as null."""
    data = dict(vars(report))
    if isinstance(data["parameter_distortion"], float) and not math.isfinite(
            data["parameter_distortion"]):
        data["parameter_distortion"] = None
    return data


def _uplink_fields(pruned: PrunedSplit, activation: QuantizerSettings | None,
                   coding: Coding) -> dict[str, Any]:  # a part of the manifest's JSON
    """The manifest's uplink settings (docs/runtime.md, "Quantized uplink"); float32 when no
    activation crosses (s = 0 uploads token ids, s = L nothing)."""
    check_coding(coding)
    crosses = 0 < pruned.split < pruned.loaded.n_units
    if activation is None or not crosses or activation.bits == 32:
        activation, coding = QuantizerSettings(32), "none"
    elif not pruned.loaded.adapter.takes_text:
        raise PruningError(f"{pruned.loaded.name} ({pruned.loaded.family}) sends no attention "
                           "mask with its activation: quantized uplinks need a text model; "
                           "use activation bits 32")
    return {"activation_bits": activation.bits,
            "activation_granularity": activation.granularity,
            "activation_clip": activation.clip, "coding": coding}


def save_pruned(pruned: PrunedSplit, out: str | Path, *, overwrite: bool = False,
                activation: QuantizerSettings | None = None, coding: Coding = "none") -> Path:
    """Write both pruned parts, their masks, the base config/tokenizer and a manifest into
    `out`; the manifest records how the activation crosses the link (`activation`, default
    float32, and `coding`). Everything is written to a staging folder first and renamed into
    place, so an interrupted save leaves nothing half-written (laimco.models.output_folder).
    `overwrite`
    replaces only a folder whose manifest lists every file in it (one this function wrote);
    any other existing, non-empty folder is refused."""
    out = Path(out)
    uplink = _uplink_fields(pruned, activation, coding)
    try:
        check_replaceable(out, overwrite=overwrite, manifest_name=MANIFEST)
    except OutputFolderError as err:
        raise PruningError(str(err)) from None
    staging = new_staging(out)
    try:
        files: dict[str, str] = {}
        for side, part in (("device", pruned.device.model), ("server", pruned.server.model)):
            if part is not None:
                save_module_weights(part, str(staging / f"{side}.safetensors"))
                files[side] = f"{side}.safetensors"
        flat_masks = {f"{side}/{name}": m.to(torch.uint8).contiguous()
                      for side, ms in pruned.masks.items() for name, m in ms.items()}
        if flat_masks:
            save_file(flat_masks, str(staging / "masks.safetensors"))
            files["masks"] = "masks.safetensors"
        pruned.loaded.config.save_pretrained(str(staging))
        if pruned.loaded.tokenizer is not None:
            pruned.loaded.tokenizer.save_pretrained(str(staging))
        manifest = {
            "laimco_version": laimco.__version__,
            "model": pruned.loaded.name,
            "source": str(pruned.loaded.source) if pruned.loaded.source else None,
            "family": pruned.loaded.family,
            "n_units": pruned.loaded.n_units,
            "split": pruned.split,
            "rule": pruned.rule,
            "rule_server": pruned.server_rule,
            "sides": {side: _report_json(report) for side, report in pruned.reports.items()},
            **uplink,
            "files": {key: {"name": name, "sha256": file_sha256(staging / name)}
                      for key, name in files.items()},
            "written": [*staged_files(staging), MANIFEST],  # what --overwrite may replace
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
        commit_staging(staging, out, overwrite=overwrite, manifest_name=MANIFEST)
    except OutputFolderError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise PruningError(str(err)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a saved pruned model, checked for presence and format: the JSON object,
    read only by `load_pruned` (the runtime reads it typed, as
    `laimco.runtime.pruned_folder.PrunedManifest`)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"{folder}: no {MANIFEST}; give a folder written by `laimco prune`")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path}: not valid JSON ({err})") from None
    return manifest


def load_pruned(folder: str | Path, *, verify: bool = True) -> PrunedSplit:
    """Rebuild both pruned parts from a folder written by `save_pruned`."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if verify:
        for key, entry in manifest["files"].items():
            path = folder / entry["name"]
            if not path.is_file() or file_sha256(path) != entry["sha256"]:
                raise ModelLoadError(f"{path}: missing or changed since it was saved ({key}); "
                                     "re-run `laimco prune`")
    config = read_config(folder)
    base = model_from_config(config)
    base.name = manifest["model"]
    base.tokenizer = _tokenizer(folder, base.family)
    base.source = folder
    device, server = split_model(base, int(manifest["split"]))
    for side, part in (("device", device.model), ("server", server.model)):
        structure = manifest["sides"][side].get("structure") or []
        for layer, kept in zip(_blocks_of(part, base.family), structure, strict=False):
            shrink_layer(layer, base.family, kept["heads"], kept["neurons"])
        if part is not None:
            load_module_weights(part, str(folder / manifest["files"][side]["name"]))
            part.eval()
            rule = manifest.get("rule_server", manifest["rule"]) if side == "server" else (
                manifest["rule"])
            if rule == "magnitude-csr":
                to_csr_linears(part)
    masks: dict[str, dict[str, torch.Tensor]] = {"device": {}, "server": {}}
    if "masks" in manifest["files"]:
        for key, value in load_file(str(folder / manifest["files"]["masks"]["name"])).items():
            side, name = key.split("/", 1)
            masks[side][name] = value.bool()
    reports = {side: SideReport(**{k: (math.nan if k == "parameter_distortion" and v is None
                                        else v) for k, v in report.items()})
               for side, report in manifest["sides"].items()}
    return PrunedSplit(loaded=base, split=int(manifest["split"]), rule=manifest["rule"],
                       device=device, server=server, reports=reports, masks=masks,
                       rule_server=manifest.get("rule_server", manifest["rule"]))


def _tokenizer(folder: Path, family: str) -> Any | None:
    if not family_adapter(family).takes_text:
        return None
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        return None
