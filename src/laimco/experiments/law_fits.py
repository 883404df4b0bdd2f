"""The ways `laimco analyze` fits a distortion law to a weight matrix (docs/theory.md §3.11):
the keys of analysis.json's law predictions, shared by `analyze` (which writes them) and the
study (which reads them). Display labels exist only for rendering."""

from __future__ import annotations

from enum import StrEnum


class LawFit(StrEnum):
    """A distortion law and how its parameters are fitted to one weight matrix."""

    LAPLACE_MLE = "laplace_mle"
    GAUSSIAN_MLE = "gaussian_mle"
    GENNORM_MLE = "gennorm_mle"
    GENNORM_CURVE = "gennorm_curve"  # fitted to the measured δ(ρ) curve (eq. 3.30)
    EMPIRICAL = "empirical"  # 1001 magnitude quantiles

    @property
    def label(self) -> str:
        """The name shown in reports."""
        return _LABELS[self]

    @property
    def parameters_per_matrix(self) -> int:
        """Numbers fitted per weight matrix."""
        return _PARAMETERS[self]


_LABELS = {LawFit.LAPLACE_MLE: "laplace (MLE)", LawFit.GAUSSIAN_MLE: "gaussian (MLE)",
           LawFit.GENNORM_MLE: "gennorm (MLE)",
           LawFit.GENNORM_CURVE: "gennorm (fit to δ curve)",
           LawFit.EMPIRICAL: "empirical (1001 quantiles)"}
_PARAMETERS = {LawFit.LAPLACE_MLE: 1, LawFit.GAUSSIAN_MLE: 1, LawFit.GENNORM_MLE: 2,
               LawFit.GENNORM_CURVE: 2, LawFit.EMPIRICAL: 1002}

# The law column of the bound sweep's table (`law_<law>`) that each fit stands for when the
# study takes the bound numbers from an analysis.json instead.
BOUND_SWEEP_LAWS = {"laplace": LawFit.LAPLACE_MLE, "gaussian": LawFit.GAUSSIAN_MLE,
                    "gennorm": LawFit.GENNORM_CURVE, "empirical": LawFit.EMPIRICAL}
