"""A scenario and a profile turned into per-split arrays: the data of the joint design."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from laimco.config import Scenario
from laimco.profile import ModelProfile, SplitTable, load_profile
from laimco.system import Channel, Device, Server
from laimco.theory.distortion_bound import SplitDistortionBound, split_distortion_bound

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SplitProblem:
    """Everything the solver needs, as arrays over splits s = 0..L (docs/theory.md §4.1).

    Device cycles C_d(ρ) = (1−ρ)·cycles_prunable_device + cycles_fixed_device (eq. 2.1);
    server time t_s(ρ) = (1−ρ)·server_prunable_s + server_fixed_s (eq. 2.7, f_s = F_s).
    `gain` has shape (R, 1) for R channel realizations, or is a scalar.
    """

    scenario: Scenario
    profile: ModelProfile
    table: SplitTable
    device: Device
    server: Server
    channel: Channel
    bound: SplitDistortionBound
    gain: FloatArray
    time_budget_s: float
    cycles_prunable_device: FloatArray
    cycles_fixed_device: FloatArray
    server_prunable_s: FloatArray
    server_fixed_s: FloatArray
    upload_bits: FloatArray
    rho_floor_device: FloatArray
    allowed: NDArray[np.bool_]
    split_restriction: NDArray[np.bool_]

    @property
    def n_splits(self) -> int:
        return self.profile.n_units + 1

    def device_cycles(self, rho_device: ArrayLike) -> FloatArray:
        return np.asarray((1 - np.asarray(rho_device)) * self.cycles_prunable_device
                          + self.cycles_fixed_device, dtype=np.float64)

    def server_time_s(self, rho_server: ArrayLike) -> FloatArray:
        return np.asarray((1 - np.asarray(rho_server)) * self.server_prunable_s
                          + self.server_fixed_s, dtype=np.float64)

    def noise_to_gain_w(self) -> FloatArray:
        return self.channel.noise_to_gain_w(self.gain)


def memory_bytes(profile_table_prunable: ArrayLike, profile_table_fixed: ArrayLike,
                 rho_device: ArrayLike, bytes_per_weight: float) -> FloatArray:
    """Stored bytes of the device part: kept values + a 1-bit-per-weight mask + fixed
    parameters (eq. 2.12)."""
    n = np.asarray(profile_table_prunable, dtype=np.float64)
    kept = (1 - np.asarray(rho_device)) * n * bytes_per_weight
    return np.asarray(kept + n / 8 + np.asarray(profile_table_fixed) * bytes_per_weight,
                      dtype=np.float64)


def _sensitivity(value: float | str, key: str, profile: ModelProfile) -> float:
    """A k constant from the scenario, or from the profile when the scenario says "profile"."""
    if value != "profile":
        return float(value)
    measured = (profile.output_sensitivity or {}).get(key)
    if measured is None:
        from laimco.config import ScenarioError

        raise ScenarioError(f"distortion.{key} = 'profile' but profile {profile.name!r} has no "
                            f"measured {key}: run `laimco analyze` and use the profile.json it "
                            "writes, or give a number")
    return float(measured)


def build_problem(scenario: Scenario, profile: ModelProfile | None = None,
                  gain: ArrayLike | None = None,
                  split_restriction: NDArray[np.bool_] | None = None) -> SplitProblem:
    """The split problem of a scenario, for its design gain or for given gains;
    `split_restriction` (shape (L+1,)) leaves only some splits to a strategy."""
    profile = profile or load_profile(scenario.model.profile)
    device = scenario.device.to_device()
    server = scenario.server.to_server()
    channel = scenario.channel.to_channel()
    task = scenario.task
    if task.min_split > profile.n_units:
        from laimco.config import ScenarioError

        raise ScenarioError(
            f"task.min_split = {task.min_split} but profile {profile.name!r} has only "
            f"{profile.n_units} units: choose min_split in 0..{profile.n_units}")
    table = profile.split_table()
    bpw = scenario.model.bytes_per_weight
    n_dev = table.prunable_device
    fixed_bytes = table.fixed_device * bpw + n_dev / 8
    splits = np.arange(profile.n_units + 1)
    restriction = (np.ones(splits.size, dtype=bool) if split_restriction is None
                   else np.asarray(split_restriction, dtype=bool))
    allowed = (splits >= task.min_split) & restriction
    if device.memory_bytes is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            floor = np.where(n_dev > 0,
                             1 - (device.memory_bytes - fixed_bytes) / (n_dev * bpw), 0.0)
        floor = np.maximum(floor, 0.0)
        allowed &= (floor <= task.rho_max) & (fixed_bytes <= device.memory_bytes)
    else:
        floor = np.zeros(profile.n_units + 1)
    bound = split_distortion_bound(
        profile, scenario.distortion.law,
        _sensitivity(scenario.distortion.k_device, "k_device", profile),
        _sensitivity(scenario.distortion.k_server, "k_server", profile))
    gain_a = np.asarray(channel.design_gain() if gain is None else gain, dtype=np.float64)
    if gain_a.ndim == 1:
        gain_a = gain_a[:, None]
    server_rate = server.flops_per_cycle * server.cpu_freq_max_hz
    return SplitProblem(
        scenario=scenario, profile=profile, table=table, device=device, server=server,
        channel=channel,
        bound=bound, gain=gain_a,
        time_budget_s=task.latency_budget_s - task.downlink_s,
        cycles_prunable_device=table.flops_prunable_device / device.flops_per_cycle,
        cycles_fixed_device=table.flops_fixed_device / device.flops_per_cycle,
        server_prunable_s=table.flops_prunable_server / server_rate,
        server_fixed_s=table.flops_fixed_server / server_rate,
        upload_bits=table.upload_bits,
        rho_floor_device=floor,
        allowed=allowed,
        split_restriction=restriction,
    )
