"""The pruned parts a fleet's decisions need, and which of them one server hosts (docs/runtime.md,
"Serving a fleet").

Every distinct decision (split, each side's rule and ratio, the uplink's bits, granularity, clip
and coding) is pruned and saved once, as `laimco deploy` does for one device (`prune_split_model`,
`save_pruned`); a decision whose saved weights and wire format equal an earlier one's (pruning
rounded its ratios to the same counts) reuses that folder. Devices whose folders have the same
server part — the same split, the same server weights (SHA-256 of the saved file, so two ratios
that pruning rounds to the same masks count as one), the same structure and the same wire format
(bits, granularity, coding) — share one served model; a device at split L has none. Each device's
upload rate is its own allocated rate r_u = b_u·log2(1 + p_u·g_u/(N0·b_u)) (docs/theory.md eq. 2.4,
§7) at its bandwidth share and its decision's power.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laimco.runtime.repository import HostedModel

if TYPE_CHECKING:
    from laimco.fleet.solution import FleetSolution
    from laimco.models.loading import LoadedModel
    from laimco.optimize.decision import OperatingPoint
    from laimco.profile import ModelProfile
    from laimco.runtime.protocol import UplinkSettings

RATIO_DIGITS = 9  # ratios equal to 1e-9 are one decision (pruning counts whole weights anyway)


@dataclass(frozen=True)
class DevicePlan:
    """One served device: its index and id in the fleet, its decision's operating point, the
    uplink it sends with, its allocated rate (0 at split L: nothing is sent) and its folder
    (index into `FleetParts.folders`)."""

    index: int
    device_id: str
    point: OperatingPoint
    uplink: UplinkSettings
    rate_bps: float
    folder: int
    n_units: int

    @property
    def remote(self) -> bool:
        """Whether a server part runs (split < L)."""
        return self.point.split < self.n_units


@dataclass(frozen=True)
class PrunedFolder:
    """One distinct decision, pruned and saved: its folder, manifest SHA-256 and the identity
    of its server part (None at split L)."""

    path: Path
    manifest_sha256: str
    server_identity: str | None


@dataclass(frozen=True)
class ServedPart:
    """One model of the fleet's server: a server part and the devices that use it."""

    name: str
    folder: Path  # the folder it is loaded from (the first of its folders)
    manifests: tuple[str, ...]  # every folder whose clients it answers
    devices: tuple[int, ...]  # fleet indices

    def hosted(self, max_batch_size: int, max_batch_time_s: float) -> HostedModel:
        """The repository entry; adaptive batching only where several devices share it."""
        batching = len(self.devices) > 1 and max_batch_size > 1
        return HostedModel(self.folder, self.name, self.manifests,
                           max_batch_size if batching else 1,
                           max_batch_time_s if batching else 0.0)


@dataclass(frozen=True)
class FleetParts:
    """The served devices, the pruned folders and the server's models."""

    devices: tuple[DevicePlan, ...]
    folders: tuple[PrunedFolder, ...]
    parts: tuple[ServedPart, ...]

    def part_of(self, device: DevicePlan) -> ServedPart | None:
        """The model that serves `device` (None at split L)."""
        return next((p for p in self.parts if device.index in p.devices), None)


def decision_key(point: OperatingPoint, uplink: UplinkSettings) -> tuple[Any, ...]:
    """What makes two decisions prune and send the same thing (the rules as deploy resolves
    them: a side without a rule keeps magnitude, which at ratio 0 removes nothing)."""
    q = uplink.quantizer
    return (point.split, point.rule_device or "magnitude", point.rule_server or "magnitude",
            round(point.rho_device, RATIO_DIGITS), round(point.rho_server, RATIO_DIGITS),
            q.bits, q.granularity, q.clip, uplink.coding)


def server_identity(folder: Path) -> str | None:
    """The server part and its wire format as recorded in the folder's manifest: split, weight
    file SHA-256, pruned structure, bits, granularity, coding (None at split L)."""
    from laimco.runtime.pruned_folder import read_checked_manifest

    manifest = read_checked_manifest(folder)
    if manifest.split >= manifest.n_units:
        return None
    server = manifest.sides["server"]
    return json.dumps([manifest.model, manifest.split, manifest.files["server"].sha256,
                       server.structure, manifest.activation_bits,
                       manifest.activation_granularity, manifest.coding])


def folder_identity(folder: Path) -> str:
    """Both parts and the wire format: two folders with the same identity hold the same
    weights (pruning rounded their ratios to the same counts) and send the same tensors."""
    from laimco.runtime.pruned_folder import read_checked_manifest

    manifest = read_checked_manifest(folder)
    return json.dumps([manifest.model, manifest.split,
                       {side: entry.sha256 for side, entry in manifest.files.items()
                        if side != "masks"},
                       manifest.activation_bits, manifest.activation_granularity,
                       manifest.activation_clip, manifest.coding])


def allocated_rate_bps(solution: FleetSolution, device: int, point: OperatingPoint,
                       n_units: int) -> float:
    """r_u = b_u·log2(1 + p_u·g_u/(N0·b_u)) at the device's share and its decision's power
    (eq. 2.4); 0 at split L, where nothing is sent (such a device may have no share at all, and
    a scenario of zero bandwidth does not exist)."""
    if point.split >= n_units or solution.bandwidth_hz[device] <= 0:
        return 0.0
    channel = solution.scenario(device).channel.to_channel()
    return float(channel.rate_bps(point.power_w, channel.design_gain()))


def plan_devices(solution: FleetSolution, devices: list[int], profile: ModelProfile,
                 n_units: int) -> tuple[list[tuple[int, OperatingPoint, UplinkSettings, float]],
                                        list[int]]:
    """For each served device among `devices`: (index, point, uplink, rate); and the devices
    not served (infeasible decisions)."""
    from laimco.runtime.deploy_uplink import decision_uplink

    served, unserved = [], []
    for u in devices:
        decision = solution.decisions[u]
        if decision.point is None:
            unserved.append(u)
            continue
        served.append((u, decision.point, decision_uplink(decision, profile, n_units),
                       allocated_rate_bps(solution, u, decision.point, n_units)))
    return served, unserved


def build_parts(solution: FleetSolution, devices: list[int], loaded: LoadedModel,
                profile: ModelProfile, root: Path, calibration: list[Any] | None,
                say: Callable[[str], None]) -> tuple[FleetParts, list[int]]:
    """Prune and save every distinct decision of `devices` once into `root`, and group the
    folders by server part; the parts and the devices that are not served."""
    from laimco.models.pruned import prune_split_model, save_pruned
    from laimco.runtime.protocol import manifest_sha256

    served, unserved = plan_devices(solution, devices, profile, loaded.n_units)
    keys: dict[tuple[Any, ...], int] = {}
    identities: dict[str, int] = {}
    folders: list[PrunedFolder] = []
    plans = []
    for u, point, uplink, rate in served:
        key = decision_key(point, uplink)
        if key not in keys:
            rule_device, rule_server = key[1], key[2]
            say(f"pruning decision {len(keys)}: split {point.split}, ρ_d {point.rho_device:.3f}"
                f" ({rule_device}), ρ_s {point.rho_server:.3f} ({rule_server}), "
                f"{uplink.quantizer.bits} bits")
            pruned = prune_split_model(loaded, point.split, point.rho_device, point.rho_server,
                                       rule_device, calibration=calibration,
                                       rule_server=rule_server)
            path = save_pruned(pruned, root / f"decision-{len(folders)}",
                               activation=uplink.quantizer, coding=uplink.coding)
            identity = folder_identity(path)
            if identity in identities:  # the same weights as an earlier decision's
                shutil.rmtree(path)
                keys[key] = identities[identity]
            else:
                keys[key] = identities[identity] = len(folders)
                folders.append(PrunedFolder(path, manifest_sha256(path),
                                            server_identity(path)))
        plans.append(DevicePlan(u, solution.fleet.ids[u], point, uplink, rate,
                                keys[key], loaded.n_units))
    return FleetParts(tuple(plans), tuple(folders), _group(plans, folders)), unserved


def _group(plans: list[DevicePlan], folders: list[PrunedFolder]) -> tuple[ServedPart, ...]:
    """One served model per distinct server identity, named part-0, part-1, … in order of
    first use."""
    groups: dict[str, list[DevicePlan]] = {}
    for plan in plans:
        identity = folders[plan.folder].server_identity
        if identity is not None:
            groups.setdefault(identity, []).append(plan)
    parts = []
    for number, members in enumerate(groups.values()):
        used = sorted({plan.folder for plan in members})
        parts.append(ServedPart(name=f"part-{number}", folder=folders[used[0]].path,
                                manifests=tuple(folders[i].manifest_sha256 for i in used),
                                devices=tuple(plan.index for plan in members)))
    return tuple(parts)
