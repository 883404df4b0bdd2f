"""Why a scenario is infeasible: which limits cannot be met even with maximal pruning
(ρ = rho_max on both sides) and full resources, found by relaxing one limit at a time."""

from __future__ import annotations

import numpy as np

from laimco.optimize.device_capacity import DevicePolicy
from laimco.optimize.problem import SplitProblem, build_problem


def _feasible_at_max_pruning(problem: SplitProblem, policy: DevicePolicy) -> bool:
    from laimco.optimize.ratios import fixed_ratios

    rho = problem.scenario.task.rho_max
    return bool(np.isfinite(fixed_ratios(problem, rho, rho, policy).objective).any())


def infeasibility_reasons(problem: SplitProblem, policy: DevicePolicy) -> list[str]:
    """One sentence per limit that, relaxed alone, would make the scenario feasible, plus the
    numbers that show why; a final sentence when no single relaxation is enough."""
    sc = problem.scenario
    rho = sc.task.rho_max
    gain = np.ravel(problem.gain)
    reasons: list[str] = []
    splits = np.flatnonzero(problem.allowed)
    # the fastest the allowed splits can go at maximal pruning and full resources
    if splits.size:
        eta = np.log2(1 + sc.device.tx_power_max_w / problem.channel.noise_to_gain_w(gain[0]))
        upload_s = problem.upload_bits / (problem.channel.bandwidth_hz * eta)
        fastest = (problem.device_cycles(rho) / sc.device.cpu_freq_max_hz + upload_s
                   + problem.server_time_s(rho))[splits]
        best = int(splits[np.argmin(fastest)])
        fastest_s = float(fastest.min()) + sc.task.downlink_s
    relaxations = {
        "latency": ("task", {"latency_budget_s": sc.task.latency_budget_s * 1e6}),
        "energy": ("device", {"energy_budget_j": sc.device.energy_budget_j * 1e6}),
        "memory": ("device", {"memory_bytes": None}),
        "privacy": ("task", {"min_split": 0}),
    }
    for name, (section, change) in relaxations.items():
        if name == "memory" and sc.device.memory_bytes is None:
            continue
        if name == "privacy" and sc.task.min_split == 0:
            continue
        relaxed = build_problem(sc.replace(**{section: change}), problem.profile, gain,
                                problem.split_restriction)
        if _feasible_at_max_pruning(relaxed, policy):
            reasons.append(_explain(name, problem, fastest_s if splits.size else None,
                                    best if splits.size else None))
    if not splits.size and not reasons:
        reasons.append("no split is allowed: the strategy's split, task.min_split and the "
                       "memory limit exclude all")
    if not reasons:
        reasons.append(
            "no single limit explains it: latency, energy"
            + (", memory" if sc.device.memory_bytes is not None else "")
            + " are jointly too tight even at rho_max = "
            + f"{rho} with full power and frequency")
    return reasons


def _explain(name: str, problem: SplitProblem, fastest_s: float | None,
             best_split: int | None) -> str:
    sc = problem.scenario
    if name == "latency" and fastest_s is not None:
        return (f"latency: even at rho_max = {sc.task.rho_max} with full power and frequency the "
                f"fastest allowed split ({best_split}) takes {fastest_s:.4g} s > "
                f"task.latency_budget_s = {sc.task.latency_budget_s} s")
    if name in ("latency", "energy"):
        return (f"{name}: no allowed split fits device.energy_budget_j = "
                f"{sc.device.energy_budget_j} J within task.latency_budget_s = "
                f"{sc.task.latency_budget_s} s even at rho_max = {sc.task.rho_max}")
    if name == "memory":
        return (f"memory: device.memory_bytes = {sc.device.memory_bytes:.4g} is too small for "
                f"the device part of every split that meets the other limits")
    return (f"privacy: task.min_split = {sc.task.min_split} rules out the splits below it, "
            f"and only those would fit")
