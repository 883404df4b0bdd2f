"""What `laimco analyze` measures, as typed objects; `Analysis.model_dump(mode="json")` is
analysis.json. Keys of the law predictions are `LawFit` identifiers (labels only in reports)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from laimco.experiments.law_fits import LawFit


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class Histogram(_Record):
    """Density of the pooled weights on a symmetric grid, with the ML fits' densities."""

    centres: list[float]
    density: list[float]
    laplace: list[float]
    gaussian: list[float]
    gennorm: list[float]
    gennorm_beta: float


class LawPrediction(_Record):
    """One law's predicted magnitude-pruning distortion, summed over matrices, and its error
    against the measured one (docs/theory.md §3.11)."""

    predicted: list[float]
    worst_relative_error: float
    worst_at_rho: float
    worst_relative_error_any_matrix: float
    parameters_per_matrix: int


class MatrixFit(_Record):
    """The generalized-Gaussian fits of one weight matrix."""

    gennorm_mle_beta: float
    gennorm_mle_scale: float
    gennorm_curve_beta: float
    gennorm_curve_scale: float


class PooledWeights(_Record):
    """All prunable weights together (global magnitude pruning)."""

    mean_abs: float
    std: float
    excess_kurtosis: float
    global_measured_over_laplace: list[float]


class LawAccuracy(_Record):
    """Predicted against measured magnitude-pruning distortion for every law and fit."""

    histogram: Histogram
    rho: list[float]
    n_weights: int
    n_matrices: int
    measured: list[float]
    laws: dict[LawFit, LawPrediction]
    fits: dict[str, MatrixFit]
    pooled: PooledWeights


class BoundRow(_Record):
    """D_w and D_y at one whole-model magnitude pruning ratio."""

    rho: float
    d_w: float
    d_y_calibration_mean: float
    d_y_calibration_max: float
    d_y_heldout_mean: float
    d_y_heldout_max: float
    k_calibration_max: float
    k_hat_d_w: float
    bound_holds_heldout_mean: bool
    bound_holds_every_heldout_input: bool


class OutputBound(_Record):
    """D_y ≤ K̂·D_w: K̂ from calibration text, checked on held-out text (§3.12)."""

    k_hat: float
    rows: list[BoundRow]
    holds_on_heldout_mean_at_every_ratio: bool
    holds_for_every_heldout_input_at_every_ratio: bool
    d_y_over_d_w_mean: list[float]
    lipschitz: dict[str, Any] = {}  # models.sensitivity.lipschitz_estimate


class SideConstants(_Record):
    """k_device, k_server at one split (one side pruned at a time) and per-block k."""

    split: int
    k_device: float
    k_device_by_ratio: dict[float, float]
    k_server: float
    k_server_by_ratio: dict[float, float]
    k_by_block: list[float]


class QualityRow(_Record):
    rho: float
    d_y: float
    cosine: float
    retrieval_agreement_at_10: float


class RuleQuality(_Record):
    """Output quality per pruning rule and ratio (held-out text)."""

    ratios: list[float]
    magnitude: list[QualityRow]
    wanda: list[QualityRow]
    structured: list[QualityRow]
    wanda_over_magnitude_d_y_at_half: float | None = Field(
        default=None, alias="wanda_over_magnitude_d_y_at_0.5")

    def rows(self, rule: str) -> list[QualityRow]:
        return {"magnitude": self.magnitude, "wanda": self.wanda,
                "structured": self.structured}[rule]


class TimingRow(_Record):
    rho: float
    removed_fraction: float
    median_s: float
    time_ratio: float
    predicted_ratio_linear_only: float


class StructuredTiming(_Record):
    """Forward time of structurally pruned blocks relative to dense."""

    rows: list[TimingRow]
    threads: int
    batch: list[int]
    rounds: int


class Analysis(_Record):
    """Everything `laimco analyze` measured (analysis.json)."""

    model: str
    n_calibration: int
    n_heldout: int
    quick: bool
    laws: LawAccuracy
    bound: OutputBound
    sides: SideConstants
    quality: RuleQuality
    structured_timing: StructuredTiming
    profile: str = ""  # the exported profile.json
    timings_s: dict[str, float] = {}
    elapsed_s: float = 0.0
    figures: list[str] = []
