"""The optimizer's objective: the output-distortion bound of a split model (theory.md §3.10).

    D_y ≤ k_d·Σ_{u≤s} N_u·δ_u(ρ_d) + k_s·Σ_{u>s} N_u·δ_u(ρ_s)            (eq. 3.10)

N_u = n_prunable of unit u, δ_u the per-weight law of unit u's weights (docs/theory.md §3),
k_d, k_s the output-sensitivity constants of each side. Each side is convex and non-decreasing
in its ratio, because every δ_u is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from laimco.profile import ModelProfile
from laimco.theory.distortion import (
    DistortionLaw,
    EmpiricalLaw,
    GaussianLaw,
    GenNormLaw,
    LaplaceLaw,
)

FloatArray = NDArray[np.float64]
LawName = Literal["laplace", "gaussian", "gennorm", "empirical"]
LAW_NAMES: tuple[LawName, ...] = ("laplace", "gaussian", "gennorm", "empirical")


def unit_laws(profile: ModelProfile, law: LawName,
              units: NDArray[np.intp] | None = None) -> DistortionLaw:
    """One law object holding the statistics of the given units (default: all), as
    parameters of shape (len(units),)."""
    chosen = np.arange(profile.n_units) if units is None else units

    def column(field: str) -> FloatArray:
        return profile.column(field)[chosen]

    if law == "laplace":
        return LaplaceLaw(column("weight_mean_abs"))
    if law == "gaussian":
        return GaussianLaw(column("weight_std"))
    if law == "gennorm":
        return GenNormLaw(column("gennorm_scale"), column("gennorm_beta"))
    if law == "empirical":
        tables = [profile.units[i].magnitude_quantiles for i in chosen]
        if any(len(t) < 2 for t in tables):
            raise ValueError(
                f"profile {profile.name!r} has no magnitude quantiles: use law = 'laplace', "
                "'gaussian' or 'gennorm', or profile the model with its weights")
        if len({len(t) for t in tables}) > 1:
            raise ValueError(f"profile {profile.name!r}: units have different numbers of "
                             "magnitude quantile levels")
        return EmpiricalLaw(np.array(tables), mean_square=column("weight_std") ** 2)
    raise ValueError(f"unknown law {law!r}: choose one of {', '.join(LAW_NAMES)}")


@dataclass(frozen=True)
class SplitDistortionBound:
    """The two sides of eq. (3.10), evaluated for every split at once.

    Methods take ρ of shape (..., L+1) — one ratio per split — and return the same shape."""

    profile: ModelProfile
    law: LawName
    k_device: float
    k_server: float
    _laws: DistortionLaw = field(init=False, repr=False)
    _weights_device: FloatArray = field(init=False, repr=False)
    _weights_server: FloatArray = field(init=False, repr=False)
    # when every unit's law has the same shape (Laplace, Gaussian): one unit-scale law and
    # Σ_u w_u·α_u² per split and side, since δ_u(ρ) = α_u²·δ₁(ρ) (eq. 3.6)
    _unit_law: GenNormLaw | None = field(init=False, repr=False, default=None)
    _scaled_device: FloatArray | None = field(init=False, repr=False, default=None)
    _scaled_server: FloatArray | None = field(init=False, repr=False, default=None)
    _unit_derivative: Callable[[FloatArray], FloatArray] | None = field(
        init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        # only units with prunable weights enter the sums (the others have degenerate laws)
        counts = self.profile.column("n_prunable")
        units = np.flatnonzero(counts > 0)
        mask = self.profile.device_mask()[:, units].astype(np.float64)
        object.__setattr__(self, "_laws", unit_laws(self.profile, self.law, units))
        object.__setattr__(self, "_weights_device", self.k_device * mask * counts[units])
        object.__setattr__(self, "_weights_server", self.k_server * (1 - mask) * counts[units])
        laws = self._laws
        if isinstance(laws, GenNormLaw) and np.ndim(laws.shape) == 0:
            alpha_2 = np.asarray(laws.scale, dtype=np.float64) ** 2
            object.__setattr__(self, "_unit_law", laws.with_unit_scale())
            object.__setattr__(self, "_unit_derivative", laws.unit_derivative_kernel())
            object.__setattr__(self, "_scaled_device", self._weights_device @ alpha_2)
            object.__setattr__(self, "_scaled_server", self._weights_server @ alpha_2)

    def _side(self, rho: ArrayLike, side: Literal["device", "server"], derivative: bool,
              split: ArrayLike | None = None) -> FloatArray:
        device = side == "device"
        if self._unit_law is not None:  # one law evaluation per element, not per unit
            scaled = self._scaled_device if device else self._scaled_server
            assert scaled is not None
            if split is not None:
                scaled = scaled[np.asarray(split, dtype=np.intp)]
            unit = self._unit_law
            per_weight = unit.delta_derivative(rho) if derivative else unit.delta(rho)
            return np.asarray(per_weight * scaled, dtype=np.float64)
        weights = self._weights_device if device else self._weights_server
        rho_a = np.asarray(rho, dtype=np.float64)[..., None]
        per_unit = (self._laws.delta_derivative(rho_a) if derivative
                    else self._laws.delta(rho_a))
        if split is not None:
            weights = weights[np.asarray(split, dtype=np.intp)]
        return np.asarray((per_unit * weights).sum(axis=-1), dtype=np.float64)

    def device_at(self, rho: ArrayLike, split: ArrayLike) -> FloatArray:
        """The device side for elements with explicit split indices."""
        return self._side(rho, "device", derivative=False, split=split)

    def server_at(self, rho: ArrayLike, split: ArrayLike) -> FloatArray:
        """The server side for elements with explicit split indices."""
        return self._side(rho, "server", derivative=False, split=split)

    def device_derivative_at(self, rho: FloatArray, split: FloatArray) -> FloatArray:
        """The device side's derivative for elements with explicit split indices (float
        arrays). For searches that call it many times: call it inside np.errstate (it sets
        none; ρ = 1 gives ∞)."""
        return self._derivative_at(rho, split, self._scaled_device, "device")

    def server_derivative_at(self, rho: FloatArray, split: FloatArray) -> FloatArray:
        """The server side's derivative, as `device_derivative_at`."""
        return self._derivative_at(rho, split, self._scaled_server, "server")

    def _derivative_at(self, rho: FloatArray, split: FloatArray, scaled: FloatArray | None,
                       side: Literal["device", "server"]) -> FloatArray:
        if self._unit_derivative is None or scaled is None:
            return self._side(rho, side, derivative=True, split=split)
        return self._unit_derivative(rho) * scaled[split.astype(np.intp)]

    def device(self, rho: ArrayLike) -> FloatArray:
        """k_d·Σ_{u≤s} N_u·δ_u(ρ_d) for each split s."""
        return self._side(rho, "device", derivative=False)

    def server(self, rho: ArrayLike) -> FloatArray:
        """k_s·Σ_{u>s} N_u·δ_u(ρ_s) for each split s."""
        return self._side(rho, "server", derivative=False)

    def device_derivative(self, rho: ArrayLike) -> FloatArray:
        """d/dρ_d of the device side: k_d·Σ N_u·q_u(ρ_d)² (eq. 3.3)."""
        return self._side(rho, "device", derivative=True)

    def server_derivative(self, rho: ArrayLike) -> FloatArray:
        """d/dρ_s of the server side."""
        return self._side(rho, "server", derivative=True)


_BOUNDS: dict[tuple[int, str, float, float], SplitDistortionBound] = {}
_BOUNDS_KEPT = 32


def split_distortion_bound(profile: ModelProfile, law: LawName, k_device: float,
                           k_server: float) -> SplitDistortionBound:
    """The bound for a profile, built once per profile object, law and constants (profiles are
    immutable; building one costs about as much as a third of a whole solve). A cached bound
    keeps its profile alive, so a profile's id cannot be reused while its entry exists."""
    key = (id(profile), law, float(k_device), float(k_server))
    bound = _BOUNDS.get(key)
    if bound is None or bound.profile is not profile:
        bound = SplitDistortionBound(profile, law, float(k_device), float(k_server))
        if len(_BOUNDS) >= _BOUNDS_KEPT:
            oldest = next(iter(_BOUNDS), key)
            _BOUNDS.pop(oldest, None)  # another thread may have evicted it already
        _BOUNDS[key] = bound
    return bound


@dataclass(frozen=True)
class RuleSplitBound:
    """The calibrated objective of eq. (5.5): each side pruned by its own rule, each unit with
    its own measured curve and sensitivity,

        D(s, ρ_d, ρ_s) = Σ_{u≤s} k_u^{r_d}·N_u·δ_u^{r_d}(ρ_d) + Σ_{u>s} k_u^{r_s}·N_u·δ_u^{r_s}(ρ_s)

    δ_u^r is convex and non-decreasing (a non-decreasing slope table, eq. 5.1) and k ≥ 0, so
    each side keeps the properties the solver relies on (docs/theory.md §4.1). Same methods as
    `SplitDistortionBound`."""

    profile: ModelProfile
    device_rule: str
    server_rule: str
    _device_law: EmpiricalLaw = field(init=False, repr=False)
    _server_law: EmpiricalLaw = field(init=False, repr=False)
    _weights_device: FloatArray = field(init=False, repr=False)
    _weights_server: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        counts = self.profile.column("n_prunable")
        units = np.flatnonzero(counts > 0)
        mask = self.profile.device_mask()[:, units].astype(np.float64)
        for side, name in (("device", self.device_rule), ("server", self.server_rule)):
            costs = self.profile.rules[name]
            # δ' = q² with q linear between levels: q = √(slope) reproduces the table at the
            # levels and keeps δ' non-decreasing between them (eq. 5.1)
            law = EmpiricalLaw(np.sqrt(costs.slope_tables[units]))
            weights = costs.sensitivity[units] * counts[units]
            side_mask = mask if side == "device" else 1 - mask
            object.__setattr__(self, f"_{side}_law", law)
            object.__setattr__(self, f"_weights_{side}", side_mask * weights)

    def _side(self, rho: ArrayLike, device: bool, derivative: bool,
              split: ArrayLike | None = None) -> FloatArray:
        law = self._device_law if device else self._server_law
        weights = self._weights_device if device else self._weights_server
        rho_a = np.asarray(rho, dtype=np.float64)[..., None]
        per_unit = law.delta_derivative(rho_a) if derivative else law.delta(rho_a)
        if split is not None:
            weights = weights[np.asarray(split, dtype=np.intp)]
        return np.asarray((per_unit * weights).sum(axis=-1), dtype=np.float64)

    def device_at(self, rho: ArrayLike, split: ArrayLike) -> FloatArray:
        return self._side(rho, True, False, split)

    def server_at(self, rho: ArrayLike, split: ArrayLike) -> FloatArray:
        return self._side(rho, False, False, split)

    def device_derivative_at(self, rho: FloatArray, split: FloatArray) -> FloatArray:
        return self._side(rho, True, True, split)

    def server_derivative_at(self, rho: FloatArray, split: FloatArray) -> FloatArray:
        return self._side(rho, False, True, split)

    def device(self, rho: ArrayLike) -> FloatArray:
        return self._side(rho, True, False)

    def server(self, rho: ArrayLike) -> FloatArray:
        return self._side(rho, False, False)

    def device_derivative(self, rho: ArrayLike) -> FloatArray:
        return self._side(rho, True, True)

    def server_derivative(self, rho: ArrayLike) -> FloatArray:
        return self._side(rho, False, True)


_RULE_BOUNDS: dict[tuple[int, str, str], RuleSplitBound] = {}


def rule_split_bound(profile: ModelProfile, device_rule: str,
                     server_rule: str) -> RuleSplitBound:
    """The calibrated bound for a profile and a rule pair, built once per profile object (as
    `split_distortion_bound`)."""
    key = (id(profile), device_rule, server_rule)
    bound = _RULE_BOUNDS.get(key)
    if bound is None or bound.profile is not profile:
        bound = RuleSplitBound(profile, device_rule, server_rule)
        if len(_RULE_BOUNDS) >= _BOUNDS_KEPT:
            _RULE_BOUNDS.pop(next(iter(_RULE_BOUNDS), key), None)
        _RULE_BOUNDS[key] = bound
    return bound
