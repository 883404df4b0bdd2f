"""How well each distortion law predicts magnitude pruning's parameter distortion on a real
model's weights, fitted by maximum likelihood or to the distortion curve, per weight matrix
(docs/theory.md §3.11)."""

from __future__ import annotations

import numpy as np

from laimco.experiments.analysis_result import (
    Histogram,
    LawAccuracy,
    LawPrediction,
    MatrixFit,
    PooledWeights,
)
from laimco.experiments.law_fits import LawFit
from laimco.models.loading import LoadedModel
from laimco.models.weight_stats import gennorm_mle
from laimco.theory.distortion import (
    EmpiricalLaw,
    GaussianLaw,
    GenNormLaw,
    LaplaceLaw,
    magnitude_pruning_distortion,
    magnitude_quantile_table,
)
from laimco.theory.law_fit import fit_gennorm_to_distortion, worst_relative_error

LAW_RATIOS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def weights_by_matrix(loaded: LoadedModel) -> dict[str, np.ndarray]:
    """Every prunable weight matrix of the model, flattened, by parameter name."""
    from laimco.models.units import model_units, unit_parameters

    out: dict[str, np.ndarray] = {}
    for unit in unit_parameters(model_units(loaded)):
        for name, parameter in unit.prunable:
            out[name] = parameter.detach().double().numpy().ravel()
    return out


def _predictions(w: np.ndarray, measured: np.ndarray, rho: np.ndarray
                 ) -> tuple[dict[LawFit, np.ndarray], MatrixFit]:
    """Each law's predicted δ(ρ) for one matrix, and its generalized-Gaussian fits."""
    mle = gennorm_mle(w)
    curve = fit_gennorm_to_distortion(rho, measured, start=(mle.scale, mle.beta))
    fit = MatrixFit(gennorm_mle_beta=mle.beta, gennorm_mle_scale=mle.scale,
                    gennorm_curve_beta=curve.shape, gennorm_curve_scale=curve.scale)
    return {
        LawFit.LAPLACE_MLE: LaplaceLaw(np.mean(np.abs(w))).delta(rho),
        LawFit.GAUSSIAN_MLE: GaussianLaw(np.sqrt(np.mean(w * w))).delta(rho),
        LawFit.GENNORM_MLE: GenNormLaw(mle.scale, mle.beta).delta(rho),
        LawFit.GENNORM_CURVE: GenNormLaw(curve.scale, curve.shape).delta(rho),
        LawFit.EMPIRICAL: EmpiricalLaw(magnitude_quantile_table(w),
                                       mean_square=np.mean(w * w)).delta(rho),
    }, fit


def law_accuracy(matrices: dict[str, np.ndarray]) -> LawAccuracy:
    """Predicted vs measured magnitude-pruning distortion (each matrix pruned at ρ), for every
    law and fitting method, summed over matrices; and the pooled (global pruning) view."""
    rho = LAW_RATIOS
    sizes = {k: w.size for k, w in matrices.items()}
    measured = {k: magnitude_pruning_distortion(w, rho) for k, w in matrices.items()}
    predictions: dict[LawFit, dict[str, np.ndarray]] = {law: {} for law in LawFit}
    fits: dict[str, MatrixFit] = {}
    for name, w in matrices.items():
        per_law, fits[name] = _predictions(w, measured[name], rho)
        for law, values in per_law.items():
            predictions[law][name] = values
    total_measured = np.asarray(sum(measured[k] * sizes[k] for k in matrices))
    laws = {}
    for law, per_matrix in predictions.items():
        total = np.asarray(sum(per_matrix[k] * sizes[k] for k in matrices))
        worst, at = worst_relative_error(total, total_measured)
        per_matrix_worst = max(worst_relative_error(per_matrix[k], measured[k])[0]
                               for k in matrices)
        laws[law] = LawPrediction(predicted=total.tolist(), worst_relative_error=worst,
                                  worst_at_rho=float(rho[at]),
                                  worst_relative_error_any_matrix=per_matrix_worst,
                                  parameters_per_matrix=law.parameters_per_matrix)
    pooled = np.concatenate(list(matrices.values()))
    pooled_measured = magnitude_pruning_distortion(pooled, rho)
    pooled_laplace = LaplaceLaw(np.mean(np.abs(pooled))).delta(rho)
    return LawAccuracy(
        histogram=histogram(pooled), rho=rho.tolist(), n_weights=int(pooled.size),
        n_matrices=len(matrices), measured=total_measured.tolist(), laws=laws, fits=fits,
        pooled=PooledWeights(
            mean_abs=float(np.mean(np.abs(pooled))), std=float(np.std(pooled)),
            excess_kurtosis=float(np.mean(pooled**4) / np.mean(pooled**2) ** 2 - 3),
            global_measured_over_laplace=(pooled_measured / pooled_laplace).tolist()))


def histogram(w: np.ndarray) -> Histogram:
    """Density of the pooled weights on a symmetric grid, with the ML fits' densities."""
    from scipy import stats

    edge = float(np.quantile(np.abs(w), 0.9999))
    edges = np.linspace(-edge, edge, 201)
    density, _ = np.histogram(w, bins=edges, density=True)
    centres = (edges[:-1] + edges[1:]) / 2
    mle = gennorm_mle(w)
    b = float(np.mean(np.abs(w)))
    sigma = float(np.sqrt(np.mean(w * w)))
    return Histogram(centres=centres.tolist(), density=density.tolist(),
                     laplace=stats.laplace.pdf(centres, scale=b).tolist(),
                     gaussian=stats.norm.pdf(centres, scale=sigma).tolist(),
                     gennorm=stats.gennorm.pdf(centres, mle.beta, scale=mle.scale).tolist(),
                     gennorm_beta=mle.beta)
