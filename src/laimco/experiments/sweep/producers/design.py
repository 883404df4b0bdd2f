"""Design sweeps: one row per (point, strategy), `laimco.optimize.solve` at the scenario's design
gain and the decision's fields (docs/study.md, "Kinds and their rows")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from laimco.experiments.sweep.producers.registry import Producer, register
from laimco.experiments.sweep.tables import RowBuilder

if TYPE_CHECKING:
    from laimco.experiments.sweep.expansion import ChunkTask

# what `infeasible_limits` may hold (comma-separated): the limits that, relaxed alone, make the
# strategy feasible (laimco.optimize.diagnose), or why no single one does
INFEASIBLE_LIMIT_KEYS = ("latency", "energy", "memory", "privacy", "jointly-too-tight",
                         "solver-found-none", "internal-check", "other")


def _limit_key(reason: str) -> str:
    """The key of one infeasibility reason of a Decision (one of INFEASIBLE_LIMIT_KEYS)."""
    head = reason.split(":", 1)[0].strip()
    if head in INFEASIBLE_LIMIT_KEYS[:4]:
        return head
    if "jointly too tight" in reason:
        return "jointly-too-tight"
    if "found no feasible point" in reason:
        return "solver-found-none"
    if reason.startswith("internal check failed"):
        return "internal-check"
    return "other"


def limit_keys(reasons: Sequence[str]) -> str:
    """The limit keys of a decision's infeasibility reasons, comma-separated, each once."""
    return ",".join(dict.fromkeys(_limit_key(r) for r in reasons))


def design_rows(task: ChunkTask, rows: RowBuilder) -> None:
    from laimco.optimize import solve

    options = task.strategy_options()
    nan = float("nan")
    for point in task.points:
        scenario, profile = task.scenario(point), task.profile(point)
        weights = float(profile.column("n_prunable").sum())
        params = weights + float(profile.column("n_fixed").sum())
        split_table = profile.split_table()
        for name in task.strategies:
            d = solve(scenario, name, profile=profile, options=options)
            ok = d.success
            lat = d.latency_s or {}
            en = d.energy_j or {}
            pruned = nan
            if ok and weights > 0:
                assert d.split is not None and d.rho_device is not None
                pruned = (d.rho_device * split_table.prunable_device[d.split]
                          + (d.rho_server or 0.0) * split_table.prunable_server[d.split]
                          ) / weights
            rows.add(1, point=point.index, **task.coords(point), strategy=name,
                     status=d.status, feasible=ok, split=d.split if ok else nan,
                     rho_device=d.rho_device if ok else nan,
                     rho_server=d.rho_server if ok else nan,
                     power_w=d.power_w if ok else nan,
                     freq_device_hz=d.freq_device_hz if ok else nan,
                     freq_server_hz=d.freq_server_hz if ok else nan,
                     objective=d.objective if ok else nan,
                     latency_s=lat.get("total", nan), latency_device_s=lat.get("device", nan),
                     latency_uplink_s=lat.get("uplink", nan),
                     latency_server_s=lat.get("server", nan),
                     energy_j=en.get("total", nan), energy_compute_j=en.get("compute", nan),
                     energy_uplink_j=en.get("uplink", nan),
                     memory_bytes=d.memory_bytes if ok else nan,
                     binding=",".join(d.binding),
                     infeasible_limits=limit_keys(d.reasons),
                     infeasible_reasons=" | ".join(d.reasons),
                     pruned_fraction=pruned, n_units=profile.n_units, weights_total=weights,
                     params_total=params,
                     solve_time_s=d.solve_time_s)


PRODUCER = register(Producer("design", design_rows, chunk_points=4,
                             timing_columns=("solve_time_s",)))
