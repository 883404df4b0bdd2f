"""V_u(b, f): a device's best objective when it owns b Hz of the band and f cycles/s of the
server — laimco's exact single-device solver (the joint strategy, every split, rule pair and
activation width), evaluated for many (device, b, f) at once (docs/theory.md §7.2).

The devices of one class differ only in their channel gain, and the single-device solver is
vectorized over an axis of channel gains. A share enters the problem in exactly three places:
the noise-to-gain power w = N₀·b/g, the bits per hertz S/b of the upload, and the server times
t_s = W_s/f (work W_s in cycles). So a row (g, b, f) is the reference problem (built at a
reference bandwidth B and server frequency F) with the gain g·B/b (w = N₀·B/(g·B/b) =
N₀·b/g), the upload S·B/b (S·B/b over B hertz = S/b), and the server times scaled by F/f —
the same numbers the solver would see for the scenario at (b, f), without building a scenario
per row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from laimco.config import Scenario
from laimco.fleet.fleet import Fleet
from laimco.optimize.choices import rule_pairs, widths
from laimco.optimize.problem import SplitProblem, build_problem, with_activation_bits
from laimco.optimize.strategies import StrategyOptions, strategy_named
from laimco.profile import ModelProfile, load_profile

FloatArray = NDArray[np.float64]
# rows per vectorized solve: bounds the memory of one call (≈ rows × widths × splits elements)
ROWS_PER_CALL = 4096
_JOINT = strategy_named("joint")
_OPTIONS = StrategyOptions(explain_infeasible=False)


@dataclass(frozen=True)
class _Choice:
    """One rule pair of a class: its reference problem at every activation width."""

    variants: tuple[SplitProblem, ...]


class ClassValue:
    """V(g, b, f) for the devices of one class, vectorized over rows (docs/theory.md §7.2)."""

    def __init__(self, scenario: Scenario, bandwidth_ref_hz: float, server_ref_hz: float,
                 profile: ModelProfile | None = None) -> None:
        self.scenario = scenario.replace(
            channel={"bandwidth_hz": bandwidth_ref_hz, "fading": "none", "outage_prob": None},
            server={"cpu_freq_max_hz": server_ref_hz})
        self.profile = profile or load_profile(self.scenario.model.profile)
        self.bandwidth_ref_hz = bandwidth_ref_hz
        self.server_ref_hz = server_ref_hz
        bits = widths(self.scenario, self.profile)
        self._choices = tuple(
            _Choice(tuple(with_activation_bits(base, b) for b in bits))
            for base in (build_problem(self.scenario, self.profile, rules=pair)
                         for pair in rule_pairs(self.scenario, self.profile,
                                                _JOINT.ties_ratios)))
        self.local_value = self._local_value()

    @property
    def problems_per_row(self) -> int:
        """The single-device problems (rule pairs × activation widths) one row solves: what an
        evaluation costs, in paper-mode units."""
        return sum(len(choice.variants) for choice in self._choices)

    def _local_value(self) -> float:
        """V with no share: only split L, where nothing is sent and the server does nothing,
        so it depends on no share and no gain (inf when the device cannot run it all)."""
        n = self.profile.n_units
        only_last = np.arange(n + 1) == n
        best = np.inf
        for choice in self._choices:
            base = choice.variants[0]
            problem = build_problem(self.scenario, self.profile, split_restriction=only_last,
                                    rules=base.rules)
            best = min(best, float(np.min(_JOINT.ratios(problem, _OPTIONS).objective)))
        return best

    def values(self, gain: FloatArray, bandwidth_hz: FloatArray,
               server_hz: FloatArray) -> FloatArray:
        """V at each row (g, b, f): the least objective over splits, rule pairs and widths,
        inf where nothing is feasible; rows with b = 0 or f = 0 get `local_value`."""
        gain, bandwidth_hz, server_hz = np.broadcast_arrays(
            np.asarray(gain, dtype=np.float64), np.asarray(bandwidth_hz, dtype=np.float64),
            np.asarray(server_hz, dtype=np.float64))
        out = np.full(gain.shape, self.local_value)
        shared = np.flatnonzero((bandwidth_hz > 0) & (server_hz > 0))
        for start in range(0, shared.size, ROWS_PER_CALL):
            rows = shared[start:start + ROWS_PER_CALL]
            out[rows] = np.minimum(out[rows], self._shared_values(
                gain[rows], bandwidth_hz[rows], server_hz[rows]))
        return out

    def _shared_values(self, gain: FloatArray, bandwidth_hz: FloatArray,
                       server_hz: FloatArray) -> FloatArray:
        best = np.full(gain.size, np.inf)
        for choice in self._choices:
            problem = self._rows_problem(choice, gain, bandwidth_hz, server_hz)
            objective = _JOINT.ratios(problem, _OPTIONS).objective
            n_widths = len(choice.variants)
            per_row = np.asarray(objective).reshape(n_widths, gain.size, -1).min(axis=(0, 2))
            best = np.minimum(best, per_row)
        return best

    def _rows_problem(self, choice: _Choice, gain: FloatArray, bandwidth_hz: FloatArray,
                      server_hz: FloatArray) -> SplitProblem:
        """The reference problem with one element row per (width, row): rows scaled to their
        shares as the module docstring derives; widths outermost."""
        base = choice.variants[0]
        n_splits = base.n_splits
        band_scale = (self.bandwidth_ref_hz / bandwidth_hz)[:, None]  # B/b per row
        server_scale = (self.server_ref_hz / server_hz)[:, None]      # F/f per row
        last = np.arange(n_splits) == n_splits - 1
        # at split L the server does nothing and −t_dl stands for the unused downlink (§2):
        # not a server time, so not scaled
        server_fixed = np.where(last, base.server_fixed_s, base.server_fixed_s * server_scale)
        zeros = np.zeros(n_splits)
        n_widths = len(choice.variants)

        def tile(a: FloatArray) -> FloatArray:
            return np.tile(a, (n_widths, 1))

        return replace(
            base,
            gain=np.tile(gain * self.bandwidth_ref_hz / bandwidth_hz, n_widths)[:, None],
            upload_bits=np.concatenate([v.upload_bits[None, :] * band_scale
                                        for v in choice.variants]),
            quantization_distortion=np.concatenate([
                np.broadcast_to(zeros if v.quantization_distortion is None
                                else v.quantization_distortion, (gain.size, n_splits))
                for v in choice.variants]),
            server_prunable_s=tile(base.server_prunable_s[None, :] * server_scale),
            server_fixed_s=tile(server_fixed))


# the reference shares the rows are scaled from: any valid scenario values do (the scaling is
# exact), fixed so that a fleet's totals beyond a scenario's ranges (a 10,000-device server)
# never enter a scenario
REFERENCE_BANDWIDTH_HZ = 1.0e6
REFERENCE_SERVER_HZ = 1.0e9


def fleet_values(fleet: Fleet) -> list[ClassValue]:
    """One `ClassValue` per device class of the fleet."""
    res = fleet.resources
    return [ClassValue(c.scenario.replace(server={"flops_per_cycle": res.server_flops_per_cycle}),
                       REFERENCE_BANDWIDTH_HZ, REFERENCE_SERVER_HZ) for c in fleet.classes]
