"""Design sweeps: one row per (point, strategy), `laimco.optimize.solve` at the scenario's design
gain and the decision's fields (docs/study.md, "Kinds and their rows")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from laimco.experiments.sweep.producers.registry import Producer, register
from laimco.experiments.sweep.tables import RowBuilder

if TYPE_CHECKING:
    from laimco.experiments.sweep.expansion import ChunkTask
    from laimco.optimize.decision import Reason

# what `infeasible_limits` may hold (comma-separated): the limits that, relaxed alone, make the
# strategy feasible (laimco.optimize.diagnose), or why no single one does
INFEASIBLE_LIMIT_KEYS = ("latency", "energy", "memory", "privacy", "jointly-too-tight",
                         "solver-found-none", "internal-check", "other")


# the table's key of each kind of infeasibility reason (laimco.optimize.decision.ReasonKind)
_REASON_KEYS = {"latency": "latency", "energy": "energy", "memory": "memory",
                "privacy": "privacy", "several": "jointly-too-tight",
                "search": "solver-found-none", "check": "internal-check"}


def limit_keys(reasons: Sequence[Reason]) -> str:
    """The limit keys of a decision's infeasibility reasons (INFEASIBLE_LIMIT_KEYS),
    comma-separated, each once."""
    return ",".join(dict.fromkeys(_REASON_KEYS.get(r.limit, "other") for r in reasons))


# the numeric columns of a design row, NaN where the decision is infeasible
_NUMBERS = ("split", "rho_device", "rho_server", "power_w", "freq_device_hz", "freq_server_hz",
            "objective", "latency_s", "latency_device_s", "latency_uplink_s",
            "latency_server_s", "energy_j", "energy_compute_j", "energy_uplink_j",
            "memory_bytes", "activation_bits", "uplink_bits")


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
            p = d.point
            numbers = dict.fromkeys(_NUMBERS, nan)
            pruned = nan
            if p is not None:
                c = p.costs
                numbers.update(
                    split=p.split, rho_device=p.rho_device, rho_server=p.rho_server,
                    power_w=p.power_w, freq_device_hz=p.freq_device_hz,
                    freq_server_hz=p.freq_server_hz, objective=p.objective,
                    latency_s=c.latency_total_s, latency_device_s=c.latency_device_s,
                    latency_uplink_s=c.latency_uplink_s, latency_server_s=c.latency_server_s,
                    energy_j=c.energy_total_j, energy_compute_j=c.energy_compute_j,
                    energy_uplink_j=c.energy_uplink_j, memory_bytes=c.memory_bytes,
                    activation_bits=(nan if p.activation_bits is None
                                     else p.activation_bits),
                    uplink_bits=p.uplink_bits)
                if weights > 0:
                    pruned = (p.rho_device * split_table.prunable_device[p.split]
                              + p.rho_server * split_table.prunable_server[p.split]) / weights
            rows.add(1, point=point.index, **task.coords(point), strategy=name,
                     status=d.status, feasible=d.success, **numbers,
                     binding=",".join(p.binding if p is not None else ()),
                     infeasible_limits=limit_keys(d.reasons),
                     infeasible_reasons=" | ".join(r.message for r in d.reasons),
                     pruned_fraction=pruned, n_units=profile.n_units, weights_total=weights,
                     params_total=params,
                     solve_time_s=d.solve_time_s)


PRODUCER = register(Producer("design", design_rows, chunk_points=4,
                             timing_columns=("solve_time_s",)))
