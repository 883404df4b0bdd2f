"""Declarative, resumable sweeps: a TOML file → validated points → chunks keyed by a hash of
their inputs → one row table (Parquet or CSV) that a rerun reproduces bit for bit.

A sweep file (docs/study.md, "Sweep files", has the full reference):

    [sweep]
    kind = "design"                    # design | fading | robust | bound
    base = "../scenarios/minilm-phone.toml"   # relative to the sweep file
    strategies = ["joint", "tied"]     # names of laimco.optimize.STRATEGIES, or "all"
    realizations = 0                   # Rayleigh realizations per point (fading, robust)
    seed = 0
    [set]                              # fixed changes to the base scenario
    "task.min_split" = 1
    [axes]                             # the cartesian product of these, first axis slowest
    "task.latency_budget_s" = {start = 0.05, stop = 0.5, num = 10, scale = "log"}
    "channel.path_gain" = [1e-7, 1e-9]
    [options]                          # StrategyOptions: ratio, split, n_starts, seed
    [quick]                            # replaces keys (and axes) under --quick
    [limits]                           # max_evaluations, max_realizations_per_point

The modules, in the order a sweep goes through them:
* `file_model`, `file_reading`: the pydantic model of the file and its error messages;
* `spec`: `load_sweep` → `SweepSpec` (axes expanded);
* `expansion`: every point validated, profiles resolved by `laimco.profile`, chunks hashed;
* `producers`: what one row of each kind is (design, fading, robust, bound), one module each,
  registered by kind;
* `run`: `run_sweep` (resumption, executors, progress), `read_table`;
* `tables`: the rows on pyarrow, stored as Parquet or CSV.

Everything that can be wrong with a sweep file — an unknown key, a wrong type, an empty axis, an
unknown strategy, too much work for the cap, a value a scenario rejects, an output folder that
cannot be written — raises `SweepError` before any point is solved.
"""

from laimco.experiments.sweep.errors import SweepError
from laimco.experiments.sweep.expansion import ChunkTask, Expansion, Point, expand
from laimco.experiments.sweep.producers import kinds, producer_for, run_chunk
from laimco.experiments.sweep.producers.design import INFEASIBLE_LIMIT_KEYS
from laimco.experiments.sweep.run import SweepResult, check_output_folder, read_table, run_sweep
from laimco.experiments.sweep.spec import Axis, SweepSpec, describe, load_sweep
from laimco.experiments.sweep.tables import Format, read_columns

__all__ = ["INFEASIBLE_LIMIT_KEYS", "Axis", "ChunkTask", "Expansion", "Format", "Point",
           "SweepError", "SweepResult", "SweepSpec", "check_output_folder", "describe",
           "expand", "kinds", "load_sweep", "producer_for", "read_columns", "read_table",
           "run_chunk", "run_sweep"]
