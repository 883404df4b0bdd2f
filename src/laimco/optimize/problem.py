"""A scenario and a profile turned into per-split arrays: the data of the joint design."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from laimco.config import Scenario
from laimco.profile import ModelProfile, SplitTable, load_profile
from laimco.system import Channel, Device, Server
from laimco.theory.distortion_bound import (
    RuleSplitBound,
    SplitDistortionBound,
    rule_split_bound,
    split_distortion_bound,
)
from laimco.uplink.coding import Coding
from laimco.uplink.quantizer import payload_bits

FloatArray = NDArray[np.float64]
RulePair = tuple[str, str]
# the paper mode's rule: magnitude pruning on both sides, costs ∝ 1 − ρ
PAPER_RULES: RulePair = ("magnitude", "magnitude")


@dataclass(frozen=True)
class SplitProblem:
    """Everything the solver needs, as arrays over splits s = 0..L (docs/theory.md §4.1).

    Device cycles C_d(ρ) = (1−ρ)·cycles_prunable_device + cycles_fixed_device (eq. 2.1, 5.4);
    server time t_s(ρ) = (1−ρ)·server_prunable_s + server_fixed_s (eq. 2.7, 5.4, f_s = F_s).
    `gain` has shape (R, 1) for R channel realizations, or is a scalar.
    """

    scenario: Scenario
    profile: ModelProfile
    rules: RulePair
    table: SplitTable
    device: Device
    server: Server
    channel: Channel
    bound: SplitDistortionBound | RuleSplitBound
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
    memory_fixed_bytes: FloatArray
    memory_prunable_bytes: FloatArray
    # the uplink (docs/theory.md §6): bits per crossing activation element, the coding, and
    # D_q(s, b), the output distortion quantization adds at each split (0 where nothing is
    # quantized: s = 0, s = L, 32 bits)
    activation_bits: int = 32
    coding: Coding = "none"
    quantization_distortion: FloatArray | None = None

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

    def quantization_at(self, split: int) -> float:
        """D_q(s, b) at one split: 0 when the activation is not quantized."""
        q = self.quantization_distortion
        return 0.0 if q is None else float(q[split])

    def memory_bytes(self, split: int, rho_device: float) -> float:
        """Stored bytes of the device part at split s (eq. 2.12 / 5.6)."""
        return float(self.memory_fixed_bytes[split]
                     + (1 - rho_device) * self.memory_prunable_bytes[split])


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


def _rule_pair(scenario: Scenario, profile: ModelProfile,
               rules: RulePair | None) -> RulePair:
    """The rule of each side: "magnitude" in the paper mode; in the calibrated mode the given
    pair (or the first allowed rule), checked against the profile's measured rules."""
    if scenario.distortion.mode == "paper":
        return PAPER_RULES
    pair = rules or (allowed_rules(scenario, profile)[0],) * 2
    for name in pair:
        if name not in profile.rules:
            raise _missing_rule(profile, name)
    return pair


def _missing_rule(profile: ModelProfile, name: str) -> Exception:
    from laimco.config import ScenarioError

    have = ", ".join(profile.rules) or "none"
    return ScenarioError(
        f"pruning rule {name!r} has no measured costs in profile {profile.name!r} (it has: "
        f"{have}): measure it with `laimco analyze MODEL --rules {name} --out DIR` and point "
        "model.profile at DIR/profile.json, or set [distortion] mode = \"paper\"")


def allowed_rules(scenario: Scenario, profile: ModelProfile) -> list[str]:
    """The rules the calibrated mode chooses from: the scenario's list, or every rule the
    profile has measured costs for."""
    if scenario.distortion.mode == "paper":
        return [PAPER_RULES[0]]
    if not profile.rules:
        from laimco.config import ScenarioError

        raise ScenarioError(
            f"profile {profile.name!r} has no measured pruning-rule costs, which the calibrated "
            "mode needs: run `laimco analyze MODEL --rules magnitude,wanda,structured --out DIR` "
            "and set model.profile to DIR/profile.json (BERT-style encoders; other families are "
            "not measured yet), or set [distortion] mode = \"paper\" for the paper's model "
            "(Laplace law, FLOPs ∝ 1 − ρ)")
    names = scenario.distortion.rules or list(profile.rules)
    for name in names:
        if name not in profile.rules:
            raise _missing_rule(profile, name)
    return list(names)


def _side_costs(profile: ModelProfile, rule: str | None, flops_per_cycle: float,
                mask: FloatArray, side: Literal["device", "server"]
                ) -> tuple[FloatArray, FloatArray]:
    """(cycles that scale with 1 − ρ, cycles that do not) per split for one side. The dense
    part costs its FLOPs over the processor's FLOPs per cycle; the paper mode (rule None) prunes
    the prunable FLOPs in proportion (eq. 2.1); the calibrated mode scales the dense cycles by
    the part's measured time at ρ relative to dense (eq. 5.4)."""
    table = profile.split_table()  # per-split FLOP sums, computed once per profile
    if side == "device":
        prunable = table.flops_prunable_device / flops_per_cycle
        fixed = table.flops_fixed_device / flops_per_cycle
    else:
        prunable = table.flops_prunable_server / flops_per_cycle
        fixed = table.flops_fixed_server / flops_per_cycle
    if rule is None:
        return prunable, fixed
    assert profile.execution is not None  # load_profile refuses rules without it
    return profile.execution.part_cycles(profile.rules[rule], prunable + fixed, mask, side)


def activation_bit_choices(scenario: Scenario, profile: ModelProfile) -> list[int]:
    """The widths the optimizer chooses among (docs/theory.md §6.3): the scenario's
    `uplink.activation_bits`, else 32 and every width the profile measured (calibrated mode)
    or 32 alone (paper mode). Widths other than 32 need the profile's measured uplink costs."""
    from laimco.config import ScenarioError

    asked = scenario.uplink.activation_bits
    uplink = profile.uplink
    if asked is None:
        if scenario.distortion.mode == "paper" or uplink is None:
            return [32]
        return [32, *(b for b in uplink.bits if b != 32)]
    if uplink is None and (asked != [32] or scenario.uplink.coding != "none"):
        raise ScenarioError(
            f"uplink.activation_bits = {asked} (coding {scenario.uplink.coding!r}) needs the "
            f"measured uplink costs of profile {profile.name!r}, which it has not: measure "
            "them with `laimco analyze MODEL --out DIR` and set model.profile to "
            "DIR/profile.json, or set uplink.activation_bits = [32]")
    if uplink is not None:
        missing = [b for b in asked if b not in uplink.bits]
        if missing:
            raise ScenarioError(
                f"uplink.activation_bits lists {missing} but profile {profile.name!r} measured "
                f"only {list(uplink.bits)}: choose among those")
    return list(asked)


def with_activation_bits(problem: SplitProblem, bits: int) -> SplitProblem:
    """The same problem with the crossing activation sent at `bits` bits under the scenario's
    coding: its upload size and its quantization distortion at every split (eqs. 6.1, 6.5)."""
    coding = problem.scenario.uplink.coding
    if bits == 32 and coding == "none":
        if problem.activation_bits == 32 and problem.quantization_distortion is None:
            return problem  # already float32 as built
        return replace(problem, activation_bits=32, coding=coding,
                       quantization_distortion=None, upload_bits=problem.table.upload_bits)
    profile = problem.profile
    uplink = profile.uplink
    if uplink is None:  # activation_bit_choices says so in the scenario's terms
        raise ValueError(f"profile {profile.name!r} has no measured uplink costs")
    tokens = (profile.seq_len or 1) * (profile.batch_size or 1)
    upload = np.array(problem.table.upload_bits, dtype=np.float64)
    coded = uplink.coded_ratio(bits) if coding == "zstd" else np.ones(problem.n_splits)
    for s in range(1, profile.n_units):
        hidden = int(uplink.hidden[s])
        if hidden > 0:
            # what else crosses (the attention mask) is sent as the profile counts it
            rest = max(upload[s] - tokens * hidden * (profile.activation_bits or 32), 0.0)
            upload[s] = payload_bits(tokens, hidden, uplink.settings(s, bits)) * coded[s] + rest
    return replace(problem, activation_bits=bits, coding=coding, upload_bits=upload,
                   quantization_distortion=np.asarray(uplink.distortion(bits), dtype=np.float64))


def stack_widths(variants: list[SplitProblem]) -> SplitProblem:
    """One problem holding the width variants of one problem (`with_activation_bits`, at one
    gain) at once, for the vectorized exact solver: the width takes the place of the gain axis
    (gain shape (W, 1), upload bits and D_q shape (W, L+1)), so one ratio solve covers all
    widths; row w is variants[w]."""
    problem = variants[0]
    gain = float(np.ravel(problem.gain)[0])
    zeros = np.zeros(problem.n_splits)
    return replace(
        problem, gain=np.full((len(variants), 1), gain),
        upload_bits=np.stack([v.upload_bits for v in variants]),
        quantization_distortion=np.stack([
            zeros if v.quantization_distortion is None else v.quantization_distortion
            for v in variants]))


def build_problem(scenario: Scenario, profile: ModelProfile | None = None,
                  gain: ArrayLike | None = None,
                  split_restriction: NDArray[np.bool_] | None = None,
                  rules: RulePair | None = None, activation_bits: int = 32) -> SplitProblem:
    """The split problem of a scenario, for its design gain or for given gains;
    `split_restriction` (shape (L+1,)) leaves only some splits to a strategy; `rules` is the
    (device, server) pruning rule pair (calibrated mode); `activation_bits` the width of the
    crossing activation (docs/theory.md §6)."""
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
    pair = _rule_pair(scenario, profile, rules)
    paper = scenario.distortion.mode == "paper"
    table = profile.split_table()
    bpw = scenario.model.bytes_per_weight
    n_dev = table.prunable_device
    if paper:  # kept values + a 1-bit-per-weight mask (eq. 2.12)
        memory_fixed = table.fixed_device * bpw + n_dev / 8
        memory_prunable = n_dev * bpw
    else:  # what the device rule stores (eq. 5.6)
        memory_fixed, memory_prunable = profile.rules[pair[0]].memory_bytes(
            table.fixed_device, n_dev, bpw)
    splits = np.arange(profile.n_units + 1)
    restriction = (np.ones(splits.size, dtype=bool) if split_restriction is None
                   else np.asarray(split_restriction, dtype=bool))
    allowed = (splits >= task.min_split) & restriction
    if device.memory_bytes is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            floor = np.where(memory_prunable > 0,
                             1 - (device.memory_bytes - memory_fixed) / memory_prunable, 0.0)
        floor = np.maximum(floor, 0.0)
        allowed &= (floor <= task.rho_max) & (memory_fixed <= device.memory_bytes)
    else:
        floor = np.zeros(profile.n_units + 1)
    bound: SplitDistortionBound | RuleSplitBound
    if paper:
        bound = split_distortion_bound(
            profile, scenario.distortion.paper_law,
            _sensitivity(scenario.distortion.paper_k_device, "k_device", profile),
            _sensitivity(scenario.distortion.paper_k_server, "k_server", profile))
    else:
        bound = rule_split_bound(profile, *pair)
    gain_a = np.asarray(channel.design_gain() if gain is None else gain, dtype=np.float64)
    if gain_a.ndim == 1:
        gain_a = gain_a[:, None]
    mask = profile.device_mask().astype(np.float64)
    cycles_prunable, cycles_fixed = _side_costs(profile, None if paper else pair[0],
                                                device.flops_per_cycle, mask, "device")
    server_rate = server.flops_per_cycle * server.cpu_freq_max_hz
    server_prunable, server_fixed = _side_costs(profile, None if paper else pair[1],
                                                server_rate, 1 - mask, "server")
    problem = SplitProblem(
        scenario=scenario, profile=profile, rules=pair, table=table, device=device,
        server=server, channel=channel,
        bound=bound, gain=gain_a,
        time_budget_s=task.latency_budget_s - task.downlink_s,
        cycles_prunable_device=cycles_prunable,
        cycles_fixed_device=cycles_fixed,
        server_prunable_s=server_prunable,
        # at split L nothing comes back from the server, so the downlink is not charged: the
        # device gets T instead of T − t_dl, written as a server time of −t_dl (eq. 2.13)
        server_fixed_s=server_fixed - task.downlink_s * (splits == profile.n_units),
        upload_bits=table.upload_bits,
        rho_floor_device=floor,
        allowed=allowed,
        split_restriction=restriction,
        memory_fixed_bytes=memory_fixed,
        memory_prunable_bytes=memory_prunable,
    )
    if activation_bits == 32 and scenario.uplink.coding == "none":
        return problem
    return with_activation_bits(problem, activation_bits)
