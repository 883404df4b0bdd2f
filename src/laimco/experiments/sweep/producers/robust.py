"""Robust sweeps: one row per (point, strategy, design). The decision made for the outage gain
g_ε = −ḡ ln(1−ε) ("outage", docs/theory.md §2, eq. 2.9) or for the mean gain ḡ ("mean") is held
fixed while the gain fades; the row counts the Rayleigh realizations whose latency or energy
limit it breaks (docs/study.md, "Kinds and their rows")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from laimco.experiments.sweep.producers.registry import Producer, register
from laimco.experiments.sweep.tables import RowBuilder

if TYPE_CHECKING:
    from laimco.experiments.sweep.expansion import ChunkTask


def violations_under_fading(problem: Any, decision: Any, gains: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    """(latency broken, energy broken) per gain for a decision's operating point held fixed:
    its power, frequencies, split and ratios, with the upload time S/r(p, g) of each gain
    (eq. 2.4; S the decision's own upload bits at its activation width, eq. 6.1); a limit
    counts as broken beyond laimco.optimize.tolerances.LIMIT_TOL."""
    from laimco.optimize.tolerances import LIMIT_TOL

    bits = float(decision.uplink_bits)
    upload = problem.channel.upload_time_s(bits, decision.power_w, gains)
    c = decision.costs
    latency = c.latency_device_s + upload + c.latency_server_s + c.latency_downlink_s
    energy = c.energy_compute_j + decision.power_w * upload
    sc = problem.scenario
    return (latency > sc.task.latency_budget_s * (1 + LIMIT_TOL),
            energy > sc.device.energy_budget_j * (1 + LIMIT_TOL))


def robust_rows(task: ChunkTask, rows: RowBuilder) -> None:
    from laimco.optimize import solve
    from laimco.optimize.problem import build_problem

    options = task.strategy_options()
    nan = float("nan")
    for point in task.points:
        scenario, profile = task.scenario(point), task.profile(point)
        gains = task.rayleigh_gains(point, scenario)
        for name in task.strategies:
            for design in ("outage", "mean"):
                designed = (scenario if design == "outage"
                            else scenario.replace(channel={"fading": "none"}))
                d = solve(designed, name, profile=profile, options=options)
                problem = build_problem(designed, profile)
                p = d.point
                if p is not None:
                    late, costly = violations_under_fading(problem, p, gains)
                    broken = late | costly
                    counts = (int(broken.sum()), int(late.sum()), int(costly.sum()))
                else:
                    counts = (0, 0, 0)
                rows.add(1, point=point.index, **task.coords(point), strategy=name,
                         design=design, design_gain=float(np.ravel(problem.gain)[0]),
                         status=d.status, feasible=d.success,
                         split=p.split if p is not None else nan,
                         rho_device=p.rho_device if p is not None else nan,
                         rho_server=p.rho_server if p is not None else nan,
                         power_w=p.power_w if p is not None else nan,
                         activation_bits=(nan if p is None or p.activation_bits is None
                                          else p.activation_bits),
                         uplink_bits=p.uplink_bits if p is not None else nan,
                         objective=p.objective if p is not None else nan,
                         realizations=gains.size, violations=counts[0],
                         latency_violations=counts[1], energy_violations=counts[2],
                         violation_rate=counts[0] / gains.size if d.success else nan)


PRODUCER = register(Producer("robust", robust_rows, chunk_points=1,
                             decisions_per_realization=2))
