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
    """(latency broken, energy broken) per gain for a decision held fixed: its power,
    frequencies, split and ratios, with the upload time S/r(p, g) of each gain (eq. 2.4); a
    limit counts as broken beyond the relative tolerance of laimco.optimize.evaluate."""
    from laimco.optimize.evaluate import REL_TOL

    bits = float(problem.upload_bits[decision.split])
    channel = problem.channel
    upload = (bits / channel.rate_bps(decision.power_w, gains) if bits > 0
              else np.zeros_like(gains))
    lat, en = decision.latency_s, decision.energy_j
    latency = lat["device"] + upload + lat["server"] + lat["downlink"]
    energy = en["compute"] + decision.power_w * upload
    sc = problem.scenario
    return (latency > sc.task.latency_budget_s * (1 + REL_TOL),
            energy > sc.device.energy_budget_j * (1 + REL_TOL))


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
                if d.success:
                    late, costly = violations_under_fading(problem, d, gains)
                    broken = late | costly
                    counts = (int(broken.sum()), int(late.sum()), int(costly.sum()))
                else:
                    counts = (0, 0, 0)
                rows.add(1, point=point.index, **task.coords(point), strategy=name,
                         design=design, design_gain=float(np.ravel(problem.gain)[0]),
                         status=d.status, feasible=d.success,
                         split=d.split if d.success else nan,
                         rho_device=d.rho_device if d.success else nan,
                         rho_server=d.rho_server if d.success else nan,
                         power_w=d.power_w if d.success else nan,
                         objective=d.objective if d.success else nan,
                         realizations=gains.size, violations=counts[0],
                         latency_violations=counts[1], energy_violations=counts[2],
                         violation_rate=counts[0] / gains.size if d.success else nan)


PRODUCER = register(Producer("robust", robust_rows, chunk_points=1,
                             decisions_per_realization=2))
