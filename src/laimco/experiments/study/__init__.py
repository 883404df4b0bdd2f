"""`laimco reproduce`: the paper's evaluation and beyond, from the sweep files in sweeps/
(docs/study.md).

Runs every sweep (resumable, `run.py`), draws each figure from its table (`figures*.py`),
computes one `Claim` per claim of the paper from the same tables (`claims_*.py`; nothing in a
verdict is typed in by hand) and writes report.md, claims.json and study.json (`report.py`).
The scenarios' sources are data beside the scenarios (`citations.json`, `citations.py`)."""

from laimco.experiments.study.claim import Claim, ClaimId, Status, TextTable
from laimco.experiments.study.claims_bound import (
    bound_from_analysis,
    claim_bound,
    claim_laws,
    k_hat,
)
from laimco.experiments.study.claims_corners import (
    MeasuredGain,
    MeasuredGainSource,
    claim_corners,
    corner_verdict,
)
from laimco.experiments.study.claims_design import (
    DESIGN_SWEEPS,
    claim_dominance,
    claim_feasibility,
    dominance,
)
from laimco.experiments.study.claims_fading import claim_fading, claim_robust, robust_cases
from laimco.experiments.study.claims_model_size import claim_model_size
from laimco.experiments.study.claims_scenarios import claim_regimes, claim_split
from laimco.experiments.study.claims_solvers import (
    ALTERNATING_SWEEPS,
    alternating_cases,
    claim_alternating,
    claim_solve_time,
)
from laimco.experiments.study.claims_uplink import (
    claim_uplink,
    claim_uplink_executed,
    compression_verdict,
)
from laimco.experiments.study.errors import StudyError
from laimco.experiments.study.result import StudyResult, SweepRun
from laimco.experiments.study.run import SWEEPS, default_sweeps_dir, run_study

__all__ = [
    "ALTERNATING_SWEEPS", "DESIGN_SWEEPS", "SWEEPS", "Claim", "ClaimId", "MeasuredGain",
    "MeasuredGainSource", "Status", "StudyError", "StudyResult", "SweepRun", "TextTable",
    "alternating_cases", "bound_from_analysis", "claim_alternating", "claim_bound",
    "claim_corners", "claim_dominance", "claim_fading", "claim_feasibility", "claim_laws",
    "claim_model_size", "claim_regimes", "claim_robust", "claim_solve_time", "claim_split",
    "claim_uplink", "claim_uplink_executed", "compression_verdict", "corner_verdict",
    "default_sweeps_dir", "dominance", "k_hat", "robust_cases", "run_study",
]
