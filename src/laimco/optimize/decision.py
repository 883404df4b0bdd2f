"""The answer of every strategy: a `Decision` that says `optimal` or `infeasible`, with the
operating point (split, ratios, power, frequencies, its costs and the limits that bind), or
the reasons nothing fits. `decide` is the one place a `Decision` is assembled and checked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from laimco.optimize.evaluate import (
    DecisionCosts,
    Limit,
    decision_costs,
    limit_usage,
    objective_at,
)
from laimco.optimize.evaluate import violations as broken_limits
from laimco.optimize.problem import SplitProblem
from laimco.optimize.tolerances import ACTIVE_TOL, ROUNDING_TOL, TIE_TOL, TINY

Status = Literal["optimal", "infeasible"]
# why a strategy found nothing: one limit that alone makes it infeasible, "several" when no
# single relaxation is enough, "search" when a generic solver found no feasible point, "check"
# when the re-check of a found point failed (a bug to report), "fleet" when a fleet's shared
# band and server cannot serve the device together with the others
ReasonKind = Literal["latency", "energy", "memory", "privacy", "several", "search", "check",
                     "fleet"]
_RESOURCE_LIMITS = frozenset({"latency", "energy", "tx_power", "cpu_freq_device",
                              "cpu_freq_server"})


@dataclass(frozen=True)
class Reason:
    """Why a decision is infeasible: the limit (or kind of failure) and one sentence that
    names the scenario key and its value."""

    limit: ReasonKind
    message: str


@dataclass(frozen=True)
class Candidate:
    """What a strategy found at one rule pair, before it is costed and checked: the split and
    (ρ_d, ρ_s, p, f_d, f_s)."""

    split: int
    rho_device: float
    rho_server: float
    power_w: float
    freq_device_hz: float
    freq_server_hz: float


@dataclass(frozen=True)
class OperatingPoint:
    """A checked decision: where to split, the rule and ratio of each side, transmit power,
    CPU frequencies, their costs from the system model, the objective, and the limits that
    bind (used ≥ 1 − ACTIVE_TOL; resource limits are not listed when no pruning is needed)."""

    split: int
    rule_device: str | None
    rule_server: str | None
    rho_device: float
    rho_server: float
    power_w: float
    freq_device_hz: float
    freq_server_hz: float
    costs: DecisionCosts
    objective: float
    binding: tuple[Limit, ...]
    # the uplink (docs/theory.md §6): bits per element of the activation sent (None when no
    # activation crosses: s = 0 sends the raw input, s = L nothing), its lossless coding, and
    # the bits sent per inference
    activation_bits: int | None = None
    coding: str = "none"
    uplink_bits: float = 0.0


@dataclass(frozen=True)
class Decision:
    """The result of `solve`: `status` "optimal" (the strategy's best decision; for `joint`
    the global optimum to the tolerance of docs/theory.md §4.4) with its `point`, or
    "infeasible" with `reasons` and no point. `point is None` exactly when infeasible."""

    status: Status
    strategy: str
    point: OperatingPoint | None = None
    reasons: tuple[Reason, ...] = ()
    solve_time_s: float = 0.0

    @property
    def success(self) -> bool:
        return self.status == "optimal"

    def to_json_dict(self) -> dict[str, object]:
        """The stable JSON contract of `laimco optimize --json` (README "JSON contract")."""
        p = self.point
        data: dict[str, object] = {"status": self.status, "strategy": self.strategy}
        if p is None:
            data.update(dict.fromkeys(
                ("split", "rule_device", "rule_server", "rho_device", "rho_server", "power_w",
                 "freq_device_hz", "freq_server_hz", "activation_bits", "coding",
                 "uplink_bits", "latency_s", "energy_j", "memory_bytes", "objective")))
            data["binding"] = []
            data["reasons"] = [r.message for r in self.reasons]
        else:
            c = p.costs
            data.update(
                split=p.split, rule_device=p.rule_device, rule_server=p.rule_server,
                rho_device=p.rho_device, rho_server=p.rho_server, power_w=p.power_w,
                freq_device_hz=p.freq_device_hz, freq_server_hz=p.freq_server_hz,
                activation_bits=p.activation_bits, coding=p.coding, uplink_bits=p.uplink_bits,
                latency_s={"device": c.latency_device_s, "uplink": c.latency_uplink_s,
                           "server": c.latency_server_s, "downlink": c.latency_downlink_s,
                           "total": c.latency_total_s},
                energy_j={"compute": c.energy_compute_j, "uplink": c.energy_uplink_j,
                          "total": c.energy_total_j},
                memory_bytes=c.memory_bytes, objective=p.objective, binding=list(p.binding))
        data["solve_time_s"] = self.solve_time_s
        return data


def infeasible(strategy: str, reasons: Sequence[Reason], solve_time_s: float = 0.0) -> Decision:
    """An infeasible decision with its reasons (each once, in order)."""
    return Decision(status="infeasible", strategy=strategy,
                    reasons=tuple(dict.fromkeys(reasons)), solve_time_s=solve_time_s)


T = TypeVar("T")


def tie_break(options: Sequence[tuple[float, float, T]]) -> T:
    """The one tie-break rule of every strategy (docs/theory.md §4.3), over (objective, device
    energy, option) in the order of preference (splits ascending, rule pairs in order): the
    least objective; among objectives within TIE_TOL (relative) of it, the least device
    energy; among equal energies, the first."""
    least = min(objective for objective, _, _ in options)
    band = least + TIE_TOL * max(abs(least), TINY)
    tied = [(energy, i) for i, (objective, energy, _) in enumerate(options) if objective <= band]
    return options[min(tied)[1]][2]


def tied_mask(objective: np.ndarray) -> np.ndarray:
    """Along the last axis: the entries within TIE_TOL of the least (all False where every
    entry is infinite), the candidates `tie_break` chooses among."""
    least = np.min(objective, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        band = least + TIE_TOL * np.maximum(np.abs(least), TINY)
        return np.asarray(np.isfinite(objective) & (objective <= band), dtype=bool)


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


def _uplink_of(problem: SplitProblem, split: int) -> tuple[int | None, str, float]:
    """(activation_bits, coding, uplink_bits) of an operating point at a split."""
    crosses = 0 < split < problem.profile.n_units
    return (problem.activation_bits if crosses else None,
            problem.coding if crosses else "none", float(problem.upload_bits[split]))


def decide(problem: SplitProblem, strategy: str, found: Candidate | Sequence[Reason],
           solve_time_s: float = 0.0) -> Decision:
    """The one place a `Decision` is built: a candidate is costed from the system model at the
    problem's design gain and every limit re-checked (docs/theory.md §4.4); a candidate that
    breaks one is reported as an internal error, never returned as optimal."""
    if not isinstance(found, Candidate):
        return infeasible(strategy, found, solve_time_s)
    s, rho_d, rho_s = found.split, found.rho_device, found.rho_server
    resources = (found.power_w, found.freq_device_hz, found.freq_server_hz)
    gain = float(np.ravel(problem.gain)[0])
    costs = decision_costs(problem, s, rho_d, rho_s, *resources, gain)
    usage = limit_usage(problem, s, rho_d, rho_s, *resources, costs)
    broken = broken_limits(usage, rho_d, rho_s, found.power_w)
    if broken:
        return infeasible(strategy, [Reason("check", (
            f"internal check failed: the decision found breaks {', '.join(broken)} "
            "(please report this scenario)"))], solve_time_s)
    # with no pruning needed (device ratio on its memory floor, server dense) the resource
    # limits say only how the spare time was spent, not what limits the answer
    at_floor = (rho_d <= problem.rho_floor_device[s] + ROUNDING_TOL
                and rho_s <= ROUNDING_TOL)
    binding = tuple(name for name, used in usage.items() if used >= 1 - ACTIVE_TOL
                    and not (at_floor and name in _RESOURCE_LIMITS))
    rule_device, rule_server = decision_rules(problem, s, rho_d, rho_s)
    bits, coding, uplink_bits = _uplink_of(problem, s)
    point = OperatingPoint(
        split=s, rule_device=rule_device, rule_server=rule_server, rho_device=rho_d,
        rho_server=rho_s, power_w=found.power_w, freq_device_hz=found.freq_device_hz,
        freq_server_hz=found.freq_server_hz, costs=costs,
        objective=objective_at(problem, s, rho_d, rho_s),
        binding=binding, activation_bits=bits, coding=coding, uplink_bits=uplink_bits)
    return Decision(status="optimal", strategy=strategy, point=point,
                    solve_time_s=solve_time_s)
