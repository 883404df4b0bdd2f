"""The answer of every strategy: a `Decision` that says `optimal` or `infeasible`, with the
costs of the chosen operating point, the limits that bind, or why nothing fits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from laimco.optimize.device_capacity import DevicePolicy
from laimco.optimize.diagnose import RatioSolver, infeasibility_reasons
from laimco.optimize.evaluate import DecisionCosts, decision_costs, limit_usage, violations
from laimco.optimize.operating_point import operating_point
from laimco.optimize.problem import SplitProblem
from laimco.optimize.ratios import RatioSolution

Status = Literal["optimal", "infeasible"]
ACTIVE_TOL = 1e-6
TIE_TOL = 1e-12


@dataclass(frozen=True)
class Decision:
    """Where to split, how hard to prune each side, transmit power and CPU frequencies.

    `status` is "optimal" (the strategy's best decision; for `joint` the global optimum to the
    tolerance of docs/theory.md §4.4) or "infeasible" (then `reasons` says which limits cannot
    be met and the numeric fields are None)."""

    status: Status
    strategy: str
    split: int | None = None
    rule_device: str | None = None
    rule_server: str | None = None
    rho_device: float | None = None
    rho_server: float | None = None
    power_w: float | None = None
    freq_device_hz: float | None = None
    freq_server_hz: float | None = None
    latency_s: dict[str, float] | None = None
    energy_j: dict[str, float] | None = None
    memory_bytes: float | None = None
    objective: float | None = None
    binding: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    solve_time_s: float = 0.0

    @property
    def success(self) -> bool:
        return self.status == "optimal"

    def to_json_dict(self) -> dict[str, object]:
        """The stable JSON contract of `laimco optimize --json` (README)."""
        data = asdict(self)
        if self.status == "optimal":
            data.pop("reasons")
        return data


def decision_rules(problem: SplitProblem, split: int, rho_device: float,
                   rho_server: float) -> tuple[str | None, str | None]:
    """The pruning rule of each side at a split; None for a side that is not pruned (no
    prunable weights, or ratio 0 under a rule that runs the dense part unchanged)."""
    table = problem.table

    def rule(index: int, weights: float, rho: float) -> str | None:
        name = problem.rules[index]
        costs = problem.profile.rules.get(name)
        unchanged = rho <= 0 and (costs is None or costs.dense_at_zero)
        return None if weights <= 0 or unchanged else name

    return (rule(0, table.prunable_device[split], rho_device),
            rule(1, table.prunable_server[split], rho_server))


def _pick_split(problem: SplitProblem, solution: RatioSolution,
                energies: np.ndarray) -> int | None:
    """The split with the least objective; among ties, the least device energy."""
    objective = np.ravel(solution.objective)
    if not np.isfinite(objective).any():
        return None
    best = objective.min()
    ties = np.flatnonzero(objective <= best + TIE_TOL * max(abs(best), 1e-300))
    return int(ties[np.argmin(energies[ties])])


def make_decision(problem: SplitProblem, solution: RatioSolution, policy: DevicePolicy,
                  strategy: str, ratio_solver: RatioSolver,
                  solve_time_s: float = 0.0) -> Decision:
    """Turn per-split ratios into one checked decision at the problem's design gain;
    `ratio_solver` is re-run on relaxed problems to explain an infeasible answer."""
    gain = float(np.ravel(problem.gain)[0])
    objective = np.ravel(solution.objective)
    feasible_splits = np.flatnonzero(np.isfinite(objective))
    energies = np.full(objective.shape, np.inf)
    points: dict[int, tuple[float, float]] = {}
    tied_costs: dict[int, DecisionCosts] = {}
    best = objective.min() if feasible_splits.size else np.inf
    for s in (int(i) for i in feasible_splits):
        if objective[s] > best + TIE_TOL * max(abs(best), 1e-300):
            continue
        rho_d, rho_s = float(np.ravel(solution.rho_device)[s]), float(
            np.ravel(solution.rho_server)[s])
        points[s] = operating_point(problem, s, rho_d, rho_s, gain, policy)
        tied_costs[s] = decision_costs(problem, s, rho_d, rho_s, *points[s],
                                       problem.server.cpu_freq_max_hz, gain)
        energies[s] = tied_costs[s].energy_total_j
    split = _pick_split(problem, solution, energies)
    if split is None:
        return Decision(status="infeasible", strategy=strategy,
                        reasons=infeasibility_reasons(problem, ratio_solver),
                        solve_time_s=solve_time_s)
    rho_d = float(np.ravel(solution.rho_device)[split])
    rho_s = float(np.ravel(solution.rho_server)[split])
    power, freq_d = points[split]
    freq_s = problem.server.cpu_freq_max_hz if problem.server_time_s(rho_s)[split] > 0 else 0.0
    costs = (tied_costs[split] if freq_s == problem.server.cpu_freq_max_hz
             else decision_costs(problem, split, rho_d, rho_s, power, freq_d, freq_s, gain))
    usage = limit_usage(problem, split, rho_d, rho_s, power, freq_d, freq_s, costs)
    broken = violations(usage, rho_d, rho_s, power)
    if broken:
        return Decision(status="infeasible", strategy=strategy, solve_time_s=solve_time_s,
                        reasons=[f"internal check failed: the decision found breaks "
                                 f"{', '.join(broken)} (please report this scenario)"])
    at_floor = (rho_d <= problem.rho_floor_device[split] + 1e-12) and rho_s <= 1e-12
    resource_limits = {"latency", "energy", "tx_power", "cpu_freq_device", "cpu_freq_server"}
    binding = [name for name, used in usage.items() if used >= 1 - ACTIVE_TOL
               and not (at_floor and name in resource_limits)]
    return optimal_decision(problem, strategy, split, (rho_d, rho_s, power, freq_d, freq_s),
                            costs, binding, solve_time_s)


def optimal_decision(problem: SplitProblem, strategy: str, split: int,
                     point: tuple[float, float, float, float, float], costs: DecisionCosts,
                     binding: list[str], solve_time_s: float) -> Decision:
    """The one place an optimal `Decision` is assembled: point = (ρ_d, ρ_s, p, f_d, f_s)."""
    rho_d, rho_s, power, freq_d, freq_s = point
    rule_device, rule_server = decision_rules(problem, split, rho_d, rho_s)
    return Decision(
        status="optimal", strategy=strategy, split=split, rule_device=rule_device,
        rule_server=rule_server, rho_device=rho_d, rho_server=rho_s,
        power_w=power, freq_device_hz=freq_d, freq_server_hz=freq_s,
        latency_s={"device": costs.latency_device_s, "uplink": costs.latency_uplink_s,
                   "server": costs.latency_server_s, "downlink": costs.latency_downlink_s,
                   "total": costs.latency_total_s},
        energy_j={"compute": costs.energy_compute_j, "uplink": costs.energy_uplink_j,
                  "total": costs.energy_total_j},
        memory_bytes=costs.memory_bytes, objective=costs.objective, binding=binding,
        solve_time_s=solve_time_s)
