"""How many CPU cycles the device can run before the cut, given the time T left for device
compute and upload after the server's share (docs/theory.md §4.2).

The device must compute C cycles in t_d and upload S bits in t_c with t_d + t_c ≤ T,
κC³/t_d² + e_c(t_c) ≤ E, f_d = C/t_d ≤ F and p(t_c) ≤ P. The largest feasible C, C*(T), is a
concave non-decreasing function of T (eq. 4.5). Instead of solving the inner maximization for
every T, the curve is traced in closed form by a parameter x (eq. 4.14):

- boundary piece, −Δ ≤ x ≤ 0: the upload takes its shortest time t_lo, the device Δ + x;
- interior piece, x > 0: the upload takes τ = t_lo + x and the device time follows from
  the optimality condition of τ — (4.6) where energy limits the device, (4.7) where the
  frequency cap does — in closed form.

Policies: "free" (power and frequency chosen), "max-power" (p = P: τ = t_P always, Δ = ∞),
"max-frequency" (f_d = F: the frequency-capped piece throughout).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from laimco.optimize.roots import increasing_root
from laimco.optimize.tolerances import CAPACITY_REL_TOL, ROUNDING_TOL
from laimco.system.channel import (
    LN2,
    max_efficiency_for_energy,
    spectral_efficiency,
    upload_energy_and_slope,
    upload_time_for_slope_s,
)

FloatArray = NDArray[np.float64]
DevicePolicy = Literal["free", "max-power", "max-frequency"]


def shortest_upload_time_s(upload_bits: ArrayLike, bandwidth_hz: float,
                           noise_to_gain_w: ArrayLike, tx_power_max_w: float,
                           energy_j: ArrayLike) -> FloatArray:
    """t_lo = S/(B·η_max): the shortest upload time the power cap and the whole energy budget
    allow, η_max = min(log₂(1 + P/w), η_E) with η_E from eq. (2.11) (eq. 4.4); 0 when nothing
    is sent, inf when no upload fits the energy."""
    bits = np.asarray(upload_bits, dtype=np.float64)
    w = np.asarray(noise_to_gain_w, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        eta = np.minimum(spectral_efficiency(tx_power_max_w, w),
                         max_efficiency_for_energy(np.asarray(energy_j) * bandwidth_hz
                                                   / (w * bits)))
        t_lo = np.where(eta > 0, bits / (bandwidth_hz * eta), np.inf)
    return np.asarray(np.where(bits > 0, t_lo, 0.0), dtype=np.float64)


def cap_switch_time_s(bits_per_hz: FloatArray, noise_to_gain_w: FloatArray, kappa: float,
                      cpu_freq_max_hz: float) -> FloatArray:
    """τ_F: the upload time at which −e'(τ) = 2κF³ (eq. 4.15). For τ ≥ τ_F the frequency cap
    does not bind at the energy-limited optimum."""
    return upload_time_for_slope_s(bits_per_hz, noise_to_gain_w,
                                   2 * kappa * cpu_freq_max_hz**3)


@dataclass(frozen=True)
class CapacityCurve:
    """The curve x ↦ (T(x), C*(T(x)), dC*/dT, τ(x)) for a flat batch of elements.

    `args()` are the per-element arrays that `capacity_point` needs, in order, so that a root
    finder can pass the slices of the elements it is still working on."""

    t_lo: FloatArray
    tau_cap: FloatArray
    boundary: FloatArray
    noise_to_gain_w: FloatArray
    bits_per_hz: FloatArray
    feasible: NDArray[np.bool_]
    energy_left_j: FloatArray
    energy_j: float
    kappa: float
    cpu_freq_max_hz: float
    fixed_frequency: bool = False

    def args(self) -> tuple[FloatArray, ...]:
        """(t_lo, the upload time at x ≤ 0 (1 s where nothing is sent, so that e(τ) = 0
        without a 0/0), τ_F, the junction (0, or ∞ where Δ = ∞), the device time at x = 0
        on the boundary piece (Δ, or 0 where Δ = ∞), w (0 where nothing is sent), a·ln2)."""
        return self._point_args

    @functools.cached_property
    def _point_args(self) -> tuple[FloatArray, ...]:
        sends = self.bits_per_hz > 0
        finite = np.isfinite(self.boundary)
        return (self.t_lo, np.where(sends, self.t_lo, 1.0), self.tau_cap,
                np.where(finite, 0.0, np.inf), np.where(finite, self.boundary, 0.0),
                np.where(sends, self.noise_to_gain_w, 0.0), self.bits_per_hz * LN2)

    def constants(self) -> tuple[float, float, float, bool]:
        """(E, κ, F, whether the frequency is fixed at F: the "max-frequency" policy)."""
        return (self.energy_j, self.kappa, self.cpu_freq_max_hz, self.fixed_frequency)

    def subset(self, index: NDArray[np.intp]) -> CapacityCurve:
        return CapacityCurve(
            t_lo=self.t_lo[index], tau_cap=self.tau_cap[index], boundary=self.boundary[index],
            noise_to_gain_w=self.noise_to_gain_w[index], bits_per_hz=self.bits_per_hz[index],
            feasible=self.feasible[index], energy_left_j=self.energy_left_j[index],
            energy_j=self.energy_j, kappa=self.kappa, cpu_freq_max_hz=self.cpu_freq_max_hz,
            fixed_frequency=self.fixed_frequency)

    def parameter_reaching(self, time_s: ArrayLike) -> FloatArray:
        """A curve parameter x with T(x) ≥ time_s: an upper bracket for a search (eq. 4.18).

        T(x) ≥ t_lo + x everywhere. On the interior at τ ≥ τ_F the device time is
        2(E − e(τ))/(−e'(τ)) ≥ 2(E − e(t_lo))/(−e'(τ)) (a later upload leaves more energy),
        and −e' falls exponentially fast in τ, so T has reached time_s by the τ at which
        −e'(τ) = 2(E − e(t_lo))/time_s, or by τ_F if that is later: much sooner than t_lo +
        time_s when the upload is cheap."""
        time = np.asarray(time_s, dtype=np.float64)
        reach = time - self.t_lo
        if self.fixed_frequency:  # the capped line: no exponential growth to use
            return np.asarray(reach, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            # no energy left, or no time: τ = ∞, the bound says nothing
            rate = np.where(time > 0, 2 * self.energy_left_j / time, 0.0)
            tau = upload_time_for_slope_s(self.bits_per_hz, self.noise_to_gain_w, rate)
        soon = np.maximum(np.maximum(tau, self.tau_cap) - self.t_lo, 0.0)
        return np.asarray(np.where(np.isfinite(self.boundary), np.minimum(reach, soon), reach),
                          dtype=np.float64)

    def kinks(self) -> FloatArray:
        """Curve parameters where dC*/dT may jump, shape (n, 2) (eq. 4.17): where the
        boundary piece's frequency cap stops binding (device time (E − e_c(t_lo))/(κF³)),
        and the junction x = 0 (where Δ = ∞ there is none: the first point again)."""
        cap_ends = self.energy_left_j / (self.kappa * self.cpu_freq_max_hz**3)
        finite = np.isfinite(self.boundary)
        cap_ends = np.where(finite, cap_ends - self.boundary, cap_ends)
        return np.column_stack([cap_ends, np.where(finite, 0.0, cap_ends)])


def capacity_curve(upload_bits: ArrayLike, noise_to_gain_w: ArrayLike, *, bandwidth_hz: float,
                   energy_j: float, tx_power_max_w: float, kappa: float,
                   cpu_freq_max_hz: float, policy: DevicePolicy = "free",
                   time_max_s: ArrayLike | None = None) -> CapacityCurve:
    """The capacity curve of every element of the (broadcast, flattened) inputs.

    `time_max_s`, the most time any search will ask about, lets elements whose boundary piece
    extends past it drop the interior piece (Δ = ∞): their parameter is then the device time
    itself, exact near zero however long the boundary piece is."""
    bits, w = (np.asarray(x, dtype=np.float64) for x in (upload_bits, noise_to_gain_w))
    if bits.shape != w.shape:
        bits, w = np.broadcast_arrays(bits, w)
    bits, w = bits.ravel(), w.ravel()
    a = bits / bandwidth_hz
    sends = bits > 0
    F, kap = cpu_freq_max_hz, kappa
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if policy == "max-power":
            t_lo = np.where(sends, a / spectral_efficiency(tx_power_max_w, w), 0.0)
        else:
            t_lo = shortest_upload_time_s(bits, bandwidth_hz, w, tx_power_max_w, energy_j)
        finite = np.isfinite(t_lo)
        t_lo_safe = np.where(finite, t_lo, 1.0)
        spent, neg_slope = upload_energy_and_slope(np.where(sends, t_lo_safe, 1.0),
                                                   np.where(sends, w, 0.0), a * LN2)
        left = energy_j - spent
        feasible = finite & (left >= -ROUNDING_TOL * energy_j)
        left = np.maximum(left, 0.0)
        if policy == "max-frequency":
            tau_cap = np.full(bits.shape, np.inf)
            boundary = left / (kap * F**3)
        else:
            tau_cap = cap_switch_time_s(a, w, kap, F)
            boundary = np.where(t_lo_safe >= tau_cap, 2 * left / neg_slope, left / (kap * F**3))
        boundary = np.where(sends & (policy != "max-power"), boundary, np.inf)
    if time_max_s is not None:
        reach = np.broadcast_to(np.ravel(np.asarray(time_max_s, dtype=np.float64)), bits.shape)
        boundary = np.where(boundary >= reach - t_lo_safe, np.inf, boundary)
    return CapacityCurve(t_lo=t_lo_safe, tau_cap=tau_cap, boundary=boundary,
                         noise_to_gain_w=w, bits_per_hz=a, feasible=feasible,
                         energy_left_j=left, energy_j=energy_j, kappa=kap, cpu_freq_max_hz=F,
                         fixed_frequency=policy == "max-frequency")


def parameter_floor(boundary: FloatArray) -> FloatArray:
    """The least curve parameter: −Δ where the boundary piece is finite, else 0."""
    return np.where(np.isfinite(boundary), -boundary, 0.0)


def capacity_point(x: FloatArray, *curve: Any
                   ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(T, C*, dC*/dT, τ) at curve parameter x (eq. 4.14, slopes eq. 4.8); τ is the upload
    time, meaningless (1 s) where nothing is sent.

    With a finite boundary piece of length Δ, x ∈ [−Δ, 0] is on it (device time Δ + x, upload
    time t_lo) and x > 0 is in the interior (upload time t_lo + x); with Δ = ∞ (nothing to
    upload, or a fixed power) x ≥ 0 is the device time. Measuring x from the junction keeps
    the interior upload time exact even when Δ is large.

    `curve` is CapacityCurve.args() followed by CapacityCurve.constants(): the per-element
    arrays (see `CapacityCurve.args`) — sliced by the root finder — then (E, κ, F, whether
    the frequency is fixed). The searches call this in their loops, so it is written for
    few numpy calls: a selection by np.where costs several arithmetic operations here."""
    (t_lo, upload_base, tau_cap, junction, offset, noise_to_gain_w, bits_ln2,
     energy_j, kappa, cpu_freq_max_hz, fixed_frequency) = curve
    F, kap = cpu_freq_max_hz, kappa
    k_f3 = kap * F**3
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # the junction itself counts as interior: its slope is then the interior's, a
        # one-sided derivative of C* (the boundary formula there may give neither side's)
        interior = x >= junction
        tau = upload_base + x * interior
        spent, neg_slope = upload_energy_and_slope(tau, noise_to_gain_w, bits_ln2)
        left = np.maximum(energy_j - spent, 0.0)
        # boundary piece: device time v, the smaller of the frequency and energy limits
        v = offset + x
        f_v = F * v
        if fixed_frequency:
            # interior: the capped line throughout; boundary: the energy allows
            # C = left/(κF²) whatever v is (§4.2)
            d_in = left / k_f3
            c_in = F * d_in
            s_in = F * neg_slope / (k_f3 + neg_slope)
            c_energy = left / (kap * F**2)
            c_bd = np.minimum(f_v, c_energy)
            # compared in v against left/(κF³), computed as Δ was: x ≤ 0 gets slope F
            s_bd = np.where(v <= d_in, F, 0.0)
        else:
            # interior: the device time from the optimality of τ (eq. 4.6/4.7): the
            # energy-limited 2·left/(−e') is the longer one exactly when τ ≥ τ_F (eq. 4.15),
            # and then the cap does not bind; capped, both capacities below are F·d
            d_in = left * np.maximum(2 / neg_slope, 1 / k_f3)
            c_in = np.minimum(np.cbrt(left * d_in**2 / kap), F * d_in)
            s_in = np.where(tau >= tau_cap, (2 / 3) * c_in / d_in,
                            F * neg_slope / (k_f3 + neg_slope))
            # F·v ≤ (left·v²/κ)^{1/3} exactly when v ≤ left/(κF³): decided in v, computed as
            # Δ was, so rounding cannot pick the energy branch's slope a few ulps below a
            # junction where both tie (it made the joint search's balance jump there)
            capped = v <= left / k_f3
            c_bd = np.where(capped, f_v, np.cbrt(left * v**2 / kap))
            s_bd = np.where(capped, F, (2 / 3) * c_bd / v)
        time_s = np.where(interior, tau + d_in, t_lo + v)
        cycles = np.where(interior, c_in, c_bd)
        # the slope never exceeds F (NaN or ∞ only at v = 0 or where nothing is left)
        slope = np.fmin(np.where(interior, s_in, s_bd), F)
    return time_s, cycles, slope, tau


def parameter_for_time(curve: CapacityCurve, time_s: ArrayLike,
                       rel_tol: float = CAPACITY_REL_TOL) -> FloatArray:
    """The curve parameter x with T(x) = time_s. On the boundary piece T is linear in x;
    beyond it T(x) ≥ t_lo + x is increasing and x is a monotone root in [0, T − t_lo], taken
    on the side T(x) ≤ time_s (so the capacity found always fits in the time)."""
    target = np.broadcast_to(np.asarray(time_s, dtype=np.float64), curve.t_lo.shape)
    spare = np.maximum(target - curve.t_lo, 0.0)
    finite = np.isfinite(curve.boundary)
    boundary = np.where(finite, curve.boundary, 0.0)
    x = np.where(finite, spare - boundary, spare)
    for _ in range(4):  # rounding must not hand the device more time than there is
        over = finite & (x <= 0) & (boundary + x > spare)
        x = np.where(over, np.nextafter(x, -np.inf), x)
    interior = np.flatnonzero(finite & (x > 0))
    if interior.size:
        sub = curve.subset(interior)
        constants = curve.constants()

        def excess(x: FloatArray, tgt: FloatArray, *args: FloatArray) -> FloatArray:
            return capacity_point(x, *args, *constants)[0] - tgt

        x[interior] = increasing_root(excess, np.zeros(interior.size), spare[interior],
                                      (target[interior], *sub.args()), rel_tol=rel_tol,
                                      side="lower")
    return x


@dataclass(frozen=True)
class DeviceCapacity:
    """C*(T), the upload time t_c that attains it, and dC*/dT; C* = −inf where infeasible."""

    cycles: FloatArray
    upload_time_s: FloatArray
    slope_cycles_per_s: FloatArray


def capacity_at(curve: CapacityCurve, time_s: ArrayLike) -> DeviceCapacity:
    """C*(T) at given times T (flat arrays matching the curve)."""
    target = np.broadcast_to(np.asarray(time_s, dtype=np.float64), curve.t_lo.shape)
    v = parameter_for_time(curve, target)
    _, cycles, slope, tau = capacity_point(v, *curve.args(), *curve.constants())
    # a time a few ulps short of t_lo (rounding in T' − t_s(ρ)) still reaches the curve's start
    ok = curve.feasible & (target >= curve.t_lo * (1 - ROUNDING_TOL))
    # T(v) ≤ target within the root's tolerance; the curve is non-decreasing, so C(v) is a
    # valid (feasible) capacity for the target time
    return DeviceCapacity(cycles=np.where(ok, cycles, -np.inf),
                          upload_time_s=np.where(ok, np.where(curve.bits_per_hz > 0, tau, 0.0),
                                                 np.nan),
                          slope_cycles_per_s=np.where(ok, slope, 0.0))
