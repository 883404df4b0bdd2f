"""The server memory a fleet's answer needs: one copy of every distinct server part it hosts
(devices with the same model, split, server rule, ratio and activation width share one), each
stored as its rule stores it (docs/theory.md §5.3, eq. 5.6). The solver does not divide the
server's memory; this is the check of its answer against `server_memory_bytes`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from laimco.fleet.fleet import Fleet
from laimco.optimize.decision import Decision
from laimco.profile import load_profile

# ratios closer than this are the same pruned part (prune rounds counts per matrix anyway)
RATIO_DIGITS = 6


@dataclass(frozen=True)
class ServerMemory:
    used_bytes: float
    limit_bytes: float | None
    parts: int

    @property
    def fits(self) -> bool:
        return self.limit_bytes is None or self.used_bytes <= self.limit_bytes


def server_part_key(fleet: Fleet, device: int, decision: Decision
                    ) -> tuple[str, int, str | None, float, int | None] | None:
    """What makes two devices' server parts the same model (None: no server part)."""
    point = decision.point
    scenario = fleet.classes[int(fleet.class_index[device])].scenario
    if point is None:
        return None
    units = load_profile(scenario.model.profile).n_units
    if point.split >= units:
        return None
    return (scenario.model.profile, point.split, point.rule_server,
            round(point.rho_server, RATIO_DIGITS), point.activation_bits)


def server_memory(fleet: Fleet, decisions: tuple[Decision, ...]) -> ServerMemory:
    """Bytes of the distinct server parts the decisions need, against the fleet's limit."""
    parts: dict[tuple[str, int, str | None, float, int | None], float] = {}
    for u, decision in enumerate(decisions):
        key = server_part_key(fleet, u, decision)
        if key is None or key in parts:
            continue
        scenario = fleet.classes[int(fleet.class_index[u])].scenario
        parts[key] = _part_bytes(scenario.model.profile, key[1], key[2], key[3],
                                 scenario.model.bytes_per_weight)
    return ServerMemory(float(sum(parts.values())), fleet.resources.server_memory_bytes,
                        len(parts))


def _part_bytes(profile_name: str, split: int, rule: str | None, rho: float,
                bytes_per_weight: float) -> float:
    """Stored bytes of the server part of `split` (units split+1..L) pruned at ρ by `rule`:
    eq. 5.6 for the calibrated rules, every weight stored for the paper mode's masks."""
    profile = load_profile(profile_name)
    server = np.arange(profile.n_units) >= split
    n_prunable = float(profile.column("n_prunable") @ server)
    n_fixed = float(profile.column("n_fixed") @ server)
    if rule is None or rule not in profile.rules:
        return (n_fixed + n_prunable) * bytes_per_weight
    fixed, prunable = profile.rules[rule].memory_bytes(
        np.array(n_fixed), np.array(n_prunable), bytes_per_weight)
    return float(fixed + (1 - rho) * prunable)
