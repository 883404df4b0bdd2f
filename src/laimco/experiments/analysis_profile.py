"""The analyzed model's profile: its architecture profile with per-unit distortion-curve
fits (docs/theory.md §3.11) and the measured output sensitivities (§3.12), for scenarios."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from laimco.experiments.analysis_laws import LAW_RATIOS, weights_by_matrix
from laimco.experiments.analysis_result import LawAccuracy, OutputBound, SideConstants
from laimco.measure.rule_measurement import RuleCostMeasurement
from laimco.models.loading import LoadedModel
from laimco.models.profiler import profile_model
from laimco.profile_schema import OutputSensitivity
from laimco.theory.distortion import magnitude_pruning_distortion
from laimco.theory.law_fit import fit_gennorm_to_distortion
from laimco.uplink_costs import UplinkSection


def unit_index(matrix_name: str, loaded: LoadedModel) -> int:
    """Unit index (embeddings = 0, block i = i) of a prunable matrix by its parameter name."""
    from laimco.models.units import model_units, unit_parameters

    for index, unit in enumerate(unit_parameters(model_units(loaded))):
        if any(name == matrix_name for name, _ in unit.prunable):
            return index
    return -1


def export_profile(loaded: LoadedModel, laws: LawAccuracy, bound: OutputBound,
                   sides: SideConstants, rule_costs: RuleCostMeasurement | None,
                   path: Path, uplink: UplinkSection | None = None) -> str:
    """Write the profile with per-unit distortion-curve gennorm fits (pooled over the unit's
    matrices), the measured output sensitivities and, if measured, the rules' costs and the
    execution times (`rule_costs`, docs/theory.md §5) and the uplink quantization costs
    (`uplink`, §6); returns its path."""
    from laimco.models.profiler import save_profile

    profile = profile_model(loaded, name=f"{loaded.name}-analyzed")
    rho = LAW_RATIOS
    matrices = weights_by_matrix(loaded)
    units = []
    for index, unit in enumerate(profile.units):
        names = [k for k in laws.fits if unit_index(k, loaded) == index]
        if not names:
            units.append(unit)
            continue
        pooled = np.concatenate([matrices[k] for k in names])
        curve = fit_gennorm_to_distortion(rho, magnitude_pruning_distortion(pooled, rho))
        fitted: dict[str, object] = {
            "gennorm_beta": curve.shape, "gennorm_scale": curve.scale,
            "gennorm_fit": "distortion curve, ρ = 0.05…0.95 (laimco analyze)"}
        block = int(unit.name.removeprefix("block")) if unit.name.startswith("block") else 0
        if block:
            fitted["output_sensitivity"] = sides.k_by_block[block - 1]
        units.append(unit.model_copy(update=fitted))
    measured: dict[str, object] = {"units": units, "output_sensitivity": OutputSensitivity(
        k_device=sides.k_device, k_server=sides.k_server, at_split=sides.split,
        k_hat_whole_model=bound.k_hat)}
    if uplink is not None:
        measured["uplink"] = uplink.model_dump()
    profile = profile.model_copy(update=measured)
    if rule_costs is not None:
        profile = rule_costs.added_to(profile)
    save_profile(profile, path)
    return str(path)
