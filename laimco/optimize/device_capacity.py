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

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import lambertw

from laimco.optimize.roots import increasing_root

FloatArray = NDArray[np.float64]
DevicePolicy = Literal["free", "max-power", "max-frequency"]
LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class UplinkEnergy:
    """e(t) = w·t·(2^{a/t} − 1), a = S/B, and its slope e'(t) (eq. 2.6, 4.6)."""

    noise_to_gain_w: FloatArray
    bits_per_hz: FloatArray

    def energy(self, t: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(self.bits_per_hz > 0,
                            self.noise_to_gain_w * t * np.expm1(self.bits_per_hz * LN2 / t), 0.0)

    def slope(self, t: FloatArray) -> FloatArray:
        """e'(t) = w·[(2^{a/t} − 1) − (a ln2/t)·2^{a/t}] < 0."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x = self.bits_per_hz * LN2 / t
            return np.where(self.bits_per_hz > 0,
                            self.noise_to_gain_w * (np.expm1(x) - x * np.exp(x)), 0.0)


def shortest_upload_time_s(upload_bits: ArrayLike, bandwidth_hz: float,
                           noise_to_gain_w: ArrayLike, tx_power_max_w: float,
                           energy_j: ArrayLike) -> FloatArray:
    """t_lo = S/(B·η_max): the shortest upload time the power cap and the whole energy budget
    allow, η_max = min(log₂(1 + P/w), η_E) with η_E from eq. (2.11) (eq. 4.4); 0 when nothing
    is sent, inf when no upload fits the energy."""
    bits = np.asarray(upload_bits, dtype=np.float64)
    w = np.asarray(noise_to_gain_w, dtype=np.float64)
    eta_power = np.log1p(tx_power_max_w / w) / LN2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c = np.asarray(energy_j) * bandwidth_hz / (w * bits)
        ok = np.isfinite(c) & (c > LN2 * (1 + 1e-12))
        c_ok = np.where(ok, c, 2.0)
        y = -(c_ok / LN2) * lambertw(-(LN2 / c_ok) * np.exp(-LN2 / c_ok), k=-1).real
        eta_energy = np.where(ok, (y - 1) / c_ok, 0.0)
        eta = np.minimum(eta_power, eta_energy)
        t_lo = np.where(eta > 0, bits / (bandwidth_hz * eta), np.inf)
    return np.asarray(np.where(bits > 0, t_lo, 0.0), dtype=np.float64)


def cap_switch_time_s(bits_per_hz: FloatArray, noise_to_gain_w: FloatArray, kappa: float,
                      cpu_freq_max_hz: float) -> FloatArray:
    """τ_F: the upload time at which −e'(τ) = 2κF³ (eq. 4.15). For τ ≥ τ_F the frequency cap
    does not bind at the energy-limited optimum. With x = a·ln2/τ, −e' = w·(1 + (x−1)e^x), so
    x = 1 + W₀((2κF³/w − 1)/e)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        arg = (2 * kappa * cpu_freq_max_hz**3 / noise_to_gain_w - 1) / np.e
        x = 1 + lambertw(np.maximum(arg, -1 / np.e), k=0).real
        return np.asarray(np.where(bits_per_hz > 0, bits_per_hz * LN2 / x, 0.0),
                          dtype=np.float64)


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
    energy_j: float
    kappa: float
    cpu_freq_max_hz: float

    def args(self) -> tuple[FloatArray, ...]:
        return (self.t_lo, self.tau_cap, self.boundary, self.noise_to_gain_w, self.bits_per_hz)

    def constants(self) -> tuple[float, float, float]:
        return (self.energy_j, self.kappa, self.cpu_freq_max_hz)

    def subset(self, index: NDArray[np.intp]) -> CapacityCurve:
        return CapacityCurve(
            t_lo=self.t_lo[index], tau_cap=self.tau_cap[index], boundary=self.boundary[index],
            noise_to_gain_w=self.noise_to_gain_w[index], bits_per_hz=self.bits_per_hz[index],
            feasible=self.feasible[index], energy_j=self.energy_j, kappa=self.kappa,
            cpu_freq_max_hz=self.cpu_freq_max_hz)


def capacity_curve(upload_bits: ArrayLike, noise_to_gain_w: ArrayLike, *, bandwidth_hz: float,
                   energy_j: float, tx_power_max_w: float, kappa: float,
                   cpu_freq_max_hz: float, policy: DevicePolicy = "free",
                   time_max_s: ArrayLike | None = None) -> CapacityCurve:
    """The capacity curve of every element of the (broadcast, flattened) inputs.

    `time_max_s`, the most time any search will ask about, lets elements whose boundary piece
    extends past it drop the interior piece (Δ = ∞): their parameter is then the device time
    itself, exact near zero however long the boundary piece is."""
    bits, w = (np.ravel(a).astype(np.float64) for a in np.broadcast_arrays(
        np.asarray(upload_bits, dtype=np.float64), np.asarray(noise_to_gain_w, dtype=np.float64)))
    a = bits / bandwidth_hz
    uplink = UplinkEnergy(w, a)
    F, kap = cpu_freq_max_hz, kappa
    if policy == "max-power":
        eta = np.log1p(tx_power_max_w / w) / LN2
        t_lo = np.where(bits > 0, a / eta, 0.0)
    else:
        t_lo = shortest_upload_time_s(bits, bandwidth_hz, w, tx_power_max_w, energy_j)
    finite = np.isfinite(t_lo)
    t_lo_safe = np.where(finite, t_lo, 1.0)
    left = energy_j - uplink.energy(t_lo_safe)
    feasible = finite & (left >= -1e-12 * energy_j)
    left = np.maximum(left, 0.0)
    if policy == "max-frequency":
        tau_cap = np.full(bits.shape, np.inf)
    else:
        tau_cap = cap_switch_time_s(a, w, kap, F)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = uplink.slope(t_lo_safe)
        boundary = np.where(t_lo_safe >= tau_cap, 2 * left / (-slope), left / (kap * F**3))
    boundary = np.where((bits > 0) & (policy != "max-power"), boundary, np.inf)
    if policy == "max-frequency":
        boundary = np.where(bits > 0, left / (kap * F**3), np.inf)
    if time_max_s is not None:
        reach = np.broadcast_to(np.ravel(np.asarray(time_max_s, dtype=np.float64)), bits.shape)
        boundary = np.where(boundary >= reach - t_lo_safe, np.inf, boundary)
    return CapacityCurve(t_lo=t_lo_safe, tau_cap=tau_cap, boundary=boundary,
                         noise_to_gain_w=w, bits_per_hz=a, feasible=feasible,
                         energy_j=energy_j, kappa=kap, cpu_freq_max_hz=F)


def parameter_floor(boundary: FloatArray) -> FloatArray:
    """The least curve parameter: −Δ where the boundary piece is finite, else 0."""
    return np.where(np.isfinite(boundary), -boundary, 0.0)


def capacity_point(x: FloatArray, *curve: Any
                   ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(T, C*, dC*/dT, τ) at curve parameter x (eq. 4.14, slopes eq. 4.8).

    With a finite boundary piece of length Δ, x ∈ [−Δ, 0] is on it (device time Δ + x, upload
    time t_lo) and x > 0 is in the interior (upload time t_lo + x); with Δ = ∞ (nothing to
    upload, or a fixed power) x ≥ 0 is the device time. Measuring x from the junction keeps
    the interior upload time exact even when Δ is large.

    `curve` is CapacityCurve.args() followed by CapacityCurve.constants(): the per-element
    arrays (t_lo, τ_F, Δ, w, a) — sliced by the root finder — then (E, κ, F)."""
    t_lo, tau_cap, boundary, noise_to_gain_w, bits_per_hz, energy_j, kappa, cpu_freq_max_hz = (
        curve)
    F, kap = cpu_freq_max_hz, kappa
    k_f3 = kap * F**3
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        finite = boundary < np.inf
        interior = finite & (x > 0)
        v = np.where(finite, boundary + x, x)  # device time on the boundary piece
        tau = np.where(interior, t_lo + x, t_lo)
        # e(τ) and −e'(τ) (eq. 2.6, 4.6) from one exponential; nothing sent: both 0
        y = bits_per_hz * LN2 / tau
        grow = np.expm1(y)
        sends = bits_per_hz > 0
        left = np.maximum(energy_j - np.where(sends, noise_to_gain_w * tau * grow, 0.0), 0.0)
        neg_slope = np.where(sends, noise_to_gain_w * (y * (grow + 1) - grow), 0.0)
        energy_limited = tau >= tau_cap
        # interior piece: device time from the optimality of τ
        d_in = np.where(energy_limited, 2 * left / neg_slope, left / k_f3)
        c_in = np.where(energy_limited, np.cbrt(left * d_in**2 / kap), F * d_in)
        s_in = np.where(energy_limited, (2 / 3) * c_in / d_in, F * neg_slope / (k_f3 + neg_slope))
        # boundary piece: device time v, the smaller of the energy and frequency limits; at a
        # fixed frequency F (tau_cap = inf) the energy allows C = left/(κF²) whatever v is
        fixed_frequency = tau_cap == np.inf
        c_energy = np.where(fixed_frequency, left / (kap * F**2), np.cbrt(left * v**2 / kap))
        f_v = F * v
        c_bd = np.minimum(f_v, c_energy)
        s_bd = np.where(f_v <= c_energy, F,
                        np.where(fixed_frequency | (v <= 0), 0.0, (2 / 3) * c_bd / v))
        time_s = np.where(interior, tau + d_in, t_lo + v)
        cycles = np.where(interior, c_in, c_bd)
        slope = np.where(interior, s_in, s_bd)
        slope = np.where(np.isfinite(slope), slope, F)
    return time_s, cycles, slope, tau


def parameter_for_time(curve: CapacityCurve, time_s: ArrayLike,
                       rel_tol: float = 1e-15) -> FloatArray:
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
    ok = curve.feasible & (target >= curve.t_lo * (1 - 1e-12))
    # T(v) ≤ target within the root's tolerance; the curve is non-decreasing, so C(v) is a
    # valid (feasible) capacity for the target time
    return DeviceCapacity(cycles=np.where(ok, cycles, -np.inf),
                          upload_time_s=np.where(ok, np.where(curve.bits_per_hz > 0, tau, 0.0),
                                                 np.nan),
                          slope_cycles_per_s=np.where(ok, slope, 0.0))


def device_capacity(time_s: ArrayLike, energy_j: float, upload_bits: ArrayLike, *,
                    bandwidth_hz: float, noise_to_gain_w: ArrayLike, tx_power_max_w: float,
                    kappa: float, cpu_freq_max_hz: float,
                    policy: DevicePolicy = "free") -> DeviceCapacity:
    """C*(T) for every element of the broadcast inputs (docs/theory.md §4.2)."""
    shape = np.broadcast_shapes(np.shape(time_s), np.shape(upload_bits),
                                np.shape(noise_to_gain_w))
    bits = np.broadcast_to(np.asarray(upload_bits, dtype=np.float64), shape)
    w = np.broadcast_to(np.asarray(noise_to_gain_w, dtype=np.float64), shape)
    times = np.broadcast_to(np.asarray(time_s, dtype=float), shape)
    curve = capacity_curve(bits, w, bandwidth_hz=bandwidth_hz, energy_j=float(energy_j),
                           tx_power_max_w=tx_power_max_w, kappa=kappa,
                           cpu_freq_max_hz=cpu_freq_max_hz, policy=policy, time_max_s=times)
    result = capacity_at(curve, np.ravel(times))
    return DeviceCapacity(*(np.reshape(a, shape) for a in (
        result.cycles, result.upload_time_s, result.slope_cycles_per_s)))
