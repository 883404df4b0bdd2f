"""Random scenarios for the optimizer tests, and an independent reference model of theory.md §2–4.

Two halves:

* **Factory** — random but physically plausible scenarios (`random_case`, the hypothesis
  strategy `cases`), on the built-in all-MiniLM-L6-v2 profile or on small synthetic profiles
  whose weight statistics come from real generalized-Gaussian samples (so every law, including
  the empirical one, is available). Synthetic profiles are written to a JSON file and the
  scenario points at it, so the solver sees the same profile whichever way it loads it.
* **Reference** — the system model and the distortion bound re-implemented from the spec with
  numpy/scipy only: per-split sums straight from the units, the distortion–sparsity laws from
  their definitions, the cost of a concrete decision, the check of every limit, and the least
  device energy of given ratios (a golden-section search over the upload time). Nothing here
  calls laimco's solver or cost helpers; laimco is used only to validate scenarios and to read
  profiles.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

from laimco.config import Scenario, scenario_from_dict
from laimco.profile import ModelProfile, load_profile

FloatArray = NDArray[np.float64]
LAWS = ("laplace", "gaussian", "gennorm", "empirical")
LN2 = math.log(2.0)
GOLDEN = (math.sqrt(5.0) - 1) / 2

# --------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A scenario, the profile it runs on, and a label that reproduces it."""

    scenario: Scenario
    profile: ModelProfile
    label: str

    def describe(self) -> str:
        return f"{self.label}\n{json.dumps(self.scenario.model_dump(), indent=1)}"


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _profile_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / f"laimco-test-profiles-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def synthetic_profile_dict(seed: int) -> dict[str, Any]:
    """A small random model: an optional embedding unit (no prunable weights), 2–5 blocks with
    generalized-Gaussian weights, an optional pooling unit. Magnitudes like MiniLM's."""
    rng = np.random.default_rng(10_000 + seed)
    seq = int(rng.choice([128, 256, 512]))
    units: list[dict[str, Any]] = []
    if rng.random() < 0.6:
        units.append({"name": "embeddings", "n_prunable": 0,
                      "n_fixed": int(rng.integers(1e6, 2e7)),
                      "flops_prunable": 0.0, "flops_fixed": float(rng.uniform(1e5, 1e6)),
                      "out_bits": float(seq * 384 * 32 * rng.uniform(0.3, 2)),
                      "weight_mean_abs": 0.0, "weight_std": 0.0})
    for i in range(int(rng.integers(2, 7))):
        n = int(_log_uniform(rng, 3e5, 3e6))
        beta = float(rng.uniform(0.7, 2.2))
        alpha = float(rng.uniform(0.02, 0.08))
        sample = stats.gennorm.rvs(beta, scale=alpha, size=20_000, random_state=rng)
        quantiles = np.quantile(np.abs(sample), np.linspace(0, 1, 201))
        units.append({
            "name": f"block{i + 1}", "n_prunable": n, "n_fixed": int(rng.integers(0, 10_000)),
            "flops_prunable": 2.0 * n * seq, "flops_fixed": 2.0 * n * seq * rng.uniform(0.02, 0.4),
            "out_bits": float(_log_uniform(rng, 5e4, 3e6)),
            "weight_mean_abs": float(np.mean(np.abs(sample))),
            "weight_std": float(np.std(sample)),
            "gennorm_beta": beta, "gennorm_scale": alpha,
            "magnitude_quantiles": [float(q) for q in quantiles],
        })
    if rng.random() < 0.5:
        units.append({"name": "pooling", "n_prunable": 0, "n_fixed": 0, "flops_prunable": 0.0,
                      "flops_fixed": float(rng.uniform(1e4, 1e6)),
                      "out_bits": float(rng.uniform(1e3, 5e4)),
                      "weight_mean_abs": 0.0, "weight_std": 0.0})
    return {"name": f"synthetic-{seed}", "input_bits": float(_log_uniform(rng, 1e3, 1e5)),
            "units": units}


def synthetic_profile_path(seed: int) -> Path:
    """The synthetic profile of `seed`, written once as JSON (atomically: xdist-safe)."""
    text = json.dumps(synthetic_profile_dict(seed))
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    path = _profile_dir() / f"synthetic-{seed}-{digest}.json"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def scenario_dict(params: dict[str, Any]) -> dict[str, Any]:
    """Nested scenario dictionary from flat parameters (keys as in `random_params`)."""
    p = params
    channel: dict[str, Any] = {"bandwidth_hz": p["bandwidth_hz"],
                               "noise_psd_w_per_hz": p["noise_psd_w_per_hz"],
                               "path_gain": p["path_gain"], "fading": p["fading"]}
    if p["fading"] == "rayleigh":
        channel["outage_prob"] = p["outage_prob"]
    device: dict[str, Any] = {"cpu_freq_max_hz": p["device_freq_hz"],
                              "flops_per_cycle": p["device_flops_per_cycle"],
                              "kappa": p["kappa"], "tx_power_max_w": p["tx_power_max_w"],
                              "energy_budget_j": p["energy_budget_j"]}
    if p["memory_bytes"] is not None:
        device["memory_bytes"] = p["memory_bytes"]
    return {
        "model": {"profile": p["profile"], "bytes_per_weight": p["bytes_per_weight"]},
        "device": device,
        "server": {"cpu_freq_max_hz": p["server_freq_hz"],
                   "flops_per_cycle": p["server_flops_per_cycle"]},
        "channel": channel,
        "task": {"latency_budget_s": p["latency_budget_s"],
                 "downlink_s": p["downlink_fraction"] * p["latency_budget_s"],
                 "min_split": p["min_split"], "rho_max": p["rho_max"], "ratios": p["ratios"]},
        "distortion": {"mode": "paper", "law": p["law"], "k_device": p["k_device"],
                       "k_server": p["k_server"]},
    }


def random_params(rng: np.random.Generator, n_units: int, profile: str) -> dict[str, Any]:
    """Flat scenario parameters around the default phone scenario, each spread over about a
    decade either way (the ranges keep most scenarios feasible but resource-limited)."""
    u = rng.random
    min_split_draw = u()
    if min_split_draw < 0.4:
        min_split = 0
    elif min_split_draw < 0.7:
        min_split = 1
    else:
        min_split = int(rng.integers(0, n_units + 1))
    return {
        "profile": profile,
        "bytes_per_weight": float(rng.choice([1.0, 2.0, 4.0])),
        "device_freq_hz": _log_uniform(rng, 5e8, 3e9),
        "device_flops_per_cycle": float(rng.choice([4.0, 8.0, 16.0])),
        "kappa": _log_uniform(rng, 2e-29, 5e-28),
        "tx_power_max_w": _log_uniform(rng, 0.05, 1.0),
        "energy_budget_j": _log_uniform(rng, 3e-3, 0.12),
        "memory_bytes": None if u() < 0.4 else _log_uniform(rng, 3e7, 3e8),
        "server_freq_hz": _log_uniform(rng, 5e7, 1e9),
        "server_flops_per_cycle": float(rng.choice([16.0, 32.0, 64.0])),
        "bandwidth_hz": _log_uniform(rng, 2e5, 2e7),
        "noise_psd_w_per_hz": 3.98e-21 * _log_uniform(rng, 0.5, 2.0),
        "path_gain": _log_uniform(rng, 5e-10, 2e-6),
        "fading": "rayleigh" if u() < 0.2 else "none",
        "outage_prob": float(rng.uniform(0.01, 0.2)),
        "latency_budget_s": _log_uniform(rng, 0.07, 1.0),
        "downlink_fraction": 0.0 if u() < 0.6 else float(rng.uniform(0.0, 0.2)),
        "min_split": min_split,
        "rho_max": float(rng.uniform(0.5, 0.97)),
        "ratios": "tied" if u() < 0.5 else "separate",
        "law": LAWS[int(rng.integers(0, len(LAWS)))],
        "k_device": _log_uniform(rng, 0.1, 10.0),
        "k_server": _log_uniform(rng, 0.1, 10.0),
    }


def profile_name(seed: int | None) -> str:
    """Built-in MiniLM for None, else the path of the synthetic profile of `seed`."""
    return "minilm-l6" if seed is None else str(synthetic_profile_path(seed))


def make_case(params: dict[str, Any], label: str) -> Case:
    scenario = scenario_from_dict(scenario_dict(params))
    return Case(scenario, load_profile(params["profile"]), label)


def random_case(seed: int, *, tiny_budgets: bool = False) -> Case:
    """Scenario number `seed`: MiniLM two times in three, else a synthetic profile.
    `tiny_budgets` shrinks the latency or the energy budget (or both) far below anything that
    can run, for infeasibility tests."""
    rng = np.random.default_rng(seed)
    profile_seed = None if rng.random() < 2 / 3 else int(rng.integers(0, 12))
    name = profile_name(profile_seed)
    n_units = len(load_profile(name).units)
    params = random_params(rng, n_units, name)
    if tiny_budgets:
        which = int(rng.integers(0, 3))
        if which in (0, 2):
            params["latency_budget_s"] = _log_uniform(rng, 1e-6, 1e-4)
        if which in (1, 2):
            params["energy_budget_j"] = _log_uniform(rng, 1e-9, 1e-7)
    return make_case(params, f"random_case({seed}, tiny_budgets={tiny_budgets})")


def cases(max_profile_seed: int = 6) -> Any:
    """Hypothesis strategy of `Case`s (parameters drawn one by one so examples shrink)."""
    from hypothesis import strategies as st

    def log_float(lo: float, hi: float) -> Any:
        return st.floats(np.log(lo), np.log(hi)).map(lambda x: float(np.exp(x)))

    @st.composite
    def build(draw: Any) -> Case:
        profile_seed = draw(st.none() | st.integers(0, max_profile_seed))
        name = profile_name(profile_seed)
        n_units = len(load_profile(name).units)
        params = {
            "profile": name,
            "bytes_per_weight": draw(st.sampled_from([1.0, 2.0, 4.0])),
            "device_freq_hz": draw(log_float(5e8, 3e9)),
            "device_flops_per_cycle": draw(st.sampled_from([4.0, 8.0, 16.0])),
            "kappa": draw(log_float(2e-29, 5e-28)),
            "tx_power_max_w": draw(log_float(0.05, 1.0)),
            "energy_budget_j": draw(log_float(3e-3, 0.2)),
            "memory_bytes": draw(st.none() | log_float(2e7, 2e8)),
            "server_freq_hz": draw(log_float(5e7, 2e9)),
            "server_flops_per_cycle": draw(st.sampled_from([16.0, 32.0, 64.0])),
            "bandwidth_hz": draw(log_float(2e5, 2e7)),
            "noise_psd_w_per_hz": 3.98e-21,
            "path_gain": draw(log_float(1e-10, 1e-6)),
            "fading": draw(st.sampled_from(["none", "rayleigh"])),
            "outage_prob": draw(st.floats(0.01, 0.2)),
            "latency_budget_s": draw(log_float(0.05, 1.0)),
            "downlink_fraction": draw(st.sampled_from([0.0, 0.1])),
            "min_split": draw(st.integers(0, n_units)),
            "rho_max": draw(st.floats(0.5, 0.97)),
            "ratios": draw(st.sampled_from(["separate", "tied"])),
            "law": draw(st.sampled_from(LAWS)),
            "k_device": draw(log_float(0.1, 10.0)),
            "k_server": draw(log_float(0.1, 10.0)),
        }
        return make_case(params, f"hypothesis example (profile seed {profile_seed})")

    return build()


# --------------------------------------------------------------------------------------------
# independent reference model
# --------------------------------------------------------------------------------------------


def _law_delta_and_q(law: str, params: dict[str, Any],
                     rho: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-weight distortion δ(ρ) = ∫₀^ρ q(v)² dv and magnitude quantile q(ρ), from each law's
    definition (spec §3). `params` holds a unit's statistics (arrays broadcast against ρ)."""
    rho = np.asarray(rho, dtype=np.float64)
    if law == "laplace":  # |W| ~ Exp(mean b): q = b·u, δ = b²∫₀^u x²e^{-x} dx = b²·γ(3, u)
        b = params["weight_mean_abs"]
        u = -np.log1p(-rho)
        return b * b * special.gamma(3) * special.gammainc(3, u), b * u
    if law == "gaussian":  # q = σ·Φ⁻¹((1+ρ)/2); δ = σ²·E[Z²; Z² ≤ z²] = σ²·P(3/2, z²/2)
        sigma = params["weight_std"]
        z = special.ndtri((1 + rho) / 2)
        return sigma**2 * special.gammainc(1.5, z * z / 2), sigma * z
    if law == "gennorm":  # |W/α|^β ~ Gamma(1/β): E[W²; |W| ≤ q] = α²Γ(3/β)/Γ(1/β)·P(3/β, (q/α)^β)
        alpha, beta = params["gennorm_scale"], params["gennorm_beta"]
        q = alpha * stats.gennorm.ppf((1 + rho) / 2, beta)
        moment = alpha**2 * special.gamma(3 / beta) / special.gamma(1 / beta)
        return moment * special.gammainc(3 / beta, (q / alpha) ** beta), q
    if law == "empirical":  # q linear between the tabulated levels; q² is quadratic there,
        table = np.asarray(params["magnitude_quantiles"], dtype=np.float64)  # Simpson is exact
        levels = np.linspace(0.0, 1.0, table.size)
        h = levels[1] - levels[0]
        whole = h / 6 * (table[:-1] ** 2 + (table[:-1] + table[1:]) ** 2 + table[1:] ** 2)
        cumulative = np.concatenate([[0.0], np.cumsum(whole)])
        index = np.minimum(np.floor(rho / h).astype(int), table.size - 2)
        start = levels[index]
        q = np.interp(rho, levels, table)
        q_mid = np.interp((start + rho) / 2, levels, table)
        part = (rho - start) / 6 * (table[index] ** 2 + 4 * q_mid**2 + q**2)
        return cumulative[index] + part, q
    raise ValueError(law)


@dataclass(frozen=True)
class Costs:
    """Latency parts (s), device energy parts (J), memory (bytes), objective."""

    t_device: float
    t_uplink: float
    t_server: float
    t_downlink: float
    e_compute: float
    e_uplink: float
    memory: float
    objective: float

    @property
    def latency(self) -> float:
        return self.t_device + self.t_uplink + self.t_server + self.t_downlink

    @property
    def energy(self) -> float:
        return self.e_compute + self.e_uplink


class Reference:
    """The model of docs/theory.md §2–4 for one scenario and profile, written from the docs."""

    def __init__(self, scenario: Scenario, profile: ModelProfile,
                 activation_bits: int = 32) -> None:
        self.scenario = sc = scenario
        self.profile = profile
        units = profile.units
        self.L = L = len(units)
        splits = range(L + 1)

        def device_sum(field: str) -> FloatArray:
            return np.array([float(sum(getattr(u, field) for u in units[:s])) for s in splits])

        def server_sum(field: str) -> FloatArray:
            return np.array([float(sum(getattr(u, field) for u in units[s:])) for s in splits])

        self.n_device = device_sum("n_prunable")
        self.fixed_device = device_sum("n_fixed")
        self.cycles_prunable = device_sum("flops_prunable") / sc.device.flops_per_cycle
        self.cycles_fixed = device_sum("flops_fixed") / sc.device.flops_per_cycle
        self.server_cycles_prunable = server_sum("flops_prunable") / sc.server.flops_per_cycle
        self.server_cycles_fixed = server_sum("flops_fixed") / sc.server.flops_per_cycle
        self.upload_bits = np.array([profile.input_bits if s == 0 else
                                     units[s - 1].out_bits if s < L else 0.0 for s in splits])
        self.n_server = server_sum("n_prunable")
        self.T = sc.task.latency_budget_s
        self.downlink = sc.task.downlink_s
        self.E = sc.device.energy_budget_j
        self.P = sc.device.tx_power_max_w
        self.F = sc.device.cpu_freq_max_hz
        self.Fs = sc.server.cpu_freq_max_hz
        self.kappa = sc.device.kappa
        self.B = sc.channel.bandwidth_hz
        self.N0 = sc.channel.noise_psd_w_per_hz
        self.rho_max = sc.task.rho_max
        self.M = sc.device.memory_bytes
        self.bpw = sc.model.bytes_per_weight
        self.min_split = sc.task.min_split
        self.tied = sc.task.ratios == "tied"
        self.law = sc.distortion.paper_law
        self.k_d = sc.distortion.paper_k_device
        self.k_s = sc.distortion.paper_k_server
        self.quantization = np.zeros(L + 1)
        if activation_bits != 32 or sc.uplink.coding != "none":
            self._quantized_uplink(activation_bits, sc.uplink.coding)

    def _quantized_uplink(self, bits: int, coding: str) -> None:
        """docs/theory.md §6.1, §6.3 written out: at 1 ≤ s < L the device sends seq_len rows of
        H values at `bits` bits, each row in whole bytes, one float32 scale per row for the
        integer widths (×the profile's mean zstd ratio when coded), and the attention mask as
        the profile counts it; the objective gains D_q(s, b), the profile's measured table."""
        profile = self.profile
        uplink = profile.uplink
        assert uplink is not None and profile.seq_len is not None
        column = list(uplink.bits).index(bits)
        for s in range(1, self.L):
            hidden = int(uplink.hidden[s])
            mask_bits = profile.units[s - 1].out_bits - profile.seq_len * hidden * 32
            payload = profile.seq_len * (8 * math.ceil(hidden * bits / 8)
                                         + (32 if bits <= 8 else 0))
            ratio = float(uplink.zstd_ratio[s, column]) if coding == "zstd" else 1.0
            self.upload_bits[s] = payload * ratio + mask_bits
            self.quantization[s] = float(uplink.output_distortion[s, column])

    # ---- channel --------------------------------------------------------------------------
    def downlink_at(self, s: int) -> float:
        """The downlink time at split s: none at s = L, where nothing comes back (eq. 2.13)."""
        return self.downlink if s < self.L else 0.0

    def design_gain(self) -> float:
        ch = self.scenario.channel
        if ch.fading == "rayleigh":
            assert ch.outage_prob is not None
            return -ch.path_gain * math.log(1 - ch.outage_prob)
        return ch.path_gain

    def noise_power(self, gain: float) -> float:
        """N₀·B/g: the power that gives SNR 1."""
        return self.N0 * self.B / gain

    def rate(self, power: FloatArray | float, gain: float) -> FloatArray:
        return np.asarray(self.B * np.log2(1 + np.asarray(power) * gain / (self.N0 * self.B)))

    def power_for(self, s: int, t_upload: FloatArray, gain: float) -> FloatArray:
        """p = (N₀B/g)(2^{S/(B t)} − 1) for the upload of split s in t seconds."""
        bits = self.upload_bits[s]
        t = np.asarray(t_upload, dtype=np.float64)
        if bits == 0:
            return np.zeros_like(t)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            return np.where(t > 0, self.noise_power(gain) * np.expm1(bits * LN2 / (self.B * t)),
                            np.inf)

    def shortest_upload_s(self, s: int, gain: float) -> float:
        bits = self.upload_bits[s]
        return 0.0 if bits == 0 else float(bits / self.rate(self.P, gain))

    # ---- compute ---------------------------------------------------------------------------
    def device_cycles(self, s: int, rho_d: FloatArray | float) -> FloatArray:
        return np.asarray((1 - np.asarray(rho_d)) * self.cycles_prunable[s] + self.cycles_fixed[s])

    def server_time(self, s: int, rho_s: FloatArray | float) -> FloatArray:
        cycles = (1 - np.asarray(rho_s)) * self.server_cycles_prunable[s]
        return np.asarray((cycles + self.server_cycles_fixed[s]) / self.Fs)

    def memory_terms(self, s: int) -> tuple[float, float]:
        """(bytes that stay, bytes that scale with 1 − ρ_d) of the device part: kept values
        plus a 1-bit mask per prunable weight (eq. 2.12)."""
        n = self.n_device[s]
        return float(n / 8 + self.fixed_device[s] * self.bpw), float(n * self.bpw)

    def memory(self, s: int, rho_d: FloatArray | float) -> FloatArray:
        fixed, prunable = self.memory_terms(s)
        return np.asarray(fixed + (1 - np.asarray(rho_d)) * prunable)

    def memory_ok(self, s: int, rho_d: FloatArray | float, rel: float = 0.0) -> FloatArray:
        if self.M is None:
            return np.ones(np.shape(rho_d), dtype=bool)
        return np.asarray(self.memory(s, rho_d) <= self.M * (1 + rel))

    # ---- objective -------------------------------------------------------------------------
    def _per_unit(self, rho: FloatArray, derivative: bool) -> FloatArray:
        """Per-unit N_u·δ_u(ρ) (or N_u·q_u(ρ)²), shape (L, *rho.shape); parametric laws are
        evaluated for all units in one broadcast call."""
        rho = np.asarray(rho, dtype=np.float64)
        units = self.profile.units
        counts = np.array([u.n_prunable for u in units], dtype=np.float64)
        keep = counts > 0
        out = np.zeros((len(units), *rho.shape))
        if not keep.any():
            return out
        if self.law == "empirical":
            for i in np.flatnonzero(keep):
                params = {"magnitude_quantiles": units[i].magnitude_quantiles}
                delta, q = _law_delta_and_q(self.law, params, rho)
                out[i] = counts[i] * (q * q if derivative else delta)
            return out
        chosen = [u for u, k in zip(units, keep, strict=True) if k]
        params = {name: np.array([getattr(u, name) for u in chosen]).reshape(
            (-1,) + (1,) * rho.ndim) for name in ("weight_mean_abs", "weight_std",
                                                  "gennorm_scale", "gennorm_beta")}
        delta, q = _law_delta_and_q(self.law, params, rho[None])
        out[keep] = counts[keep].reshape((-1,) + (1,) * rho.ndim) * (
            q * q if derivative else delta)
        return out

    def device_side(self, s: int, rho: FloatArray | float, derivative: bool = False) -> FloatArray:
        """k_d·Σ_{u≤s} N_u δ_u(ρ) (or its derivative in ρ)."""
        per_unit = self._per_unit(np.asarray(rho), derivative)
        return np.asarray(self.k_d * per_unit[:s].sum(axis=0))

    def server_side(self, s: int, rho: FloatArray | float, derivative: bool = False) -> FloatArray:
        """k_s·Σ_{u>s} N_u δ_u(ρ) (or its derivative in ρ)."""
        per_unit = self._per_unit(np.asarray(rho), derivative)
        return np.asarray(self.k_s * per_unit[s:].sum(axis=0))

    def sides_at_splits(self, splits: NDArray[np.intp], rho_d: FloatArray,
                        rho_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Device and server sides for a batch: rho arrays of shape (P, ...) at splits (P,)."""
        units = np.arange(self.L)
        device_mask = (units[None, :] < np.asarray(splits)[:, None]).astype(np.float64)
        per_d = self._per_unit(np.asarray(rho_d), False)  # (L, P, ...)
        per_s = self._per_unit(np.asarray(rho_s), False)
        dev = np.einsum("up...,pu->p...", per_d, device_mask)
        srv = np.einsum("up...,pu->p...", per_s, 1 - device_mask)
        return self.k_d * dev, self.k_s * srv

    def memory_floor(self, s: int) -> float:
        """The least device ratio the memory allows (0 without a limit; inf if even the fixed
        parameters and the sparse index do not fit)."""
        if self.M is None:
            return 0.0
        fixed, prunable = self.memory_terms(s)
        rest = self.M - fixed
        if rest < 0:
            return math.inf
        return 0.0 if prunable == 0 else max(0.0, 1 - rest / prunable)

    def objective(self, s: int, rho_d: float, rho_s: float) -> float:
        return float(self.device_side(s, rho_d) + self.server_side(s, rho_s)
                     + self.quantization[s])

    def objective_scale(self, s: int) -> float:
        """The objective with both sides pruned at rho_max (a natural absolute scale)."""
        return self.objective(s, self.rho_max, self.rho_max)

    # ---- a concrete decision ---------------------------------------------------------------
    def costs(self, s: int, rho_d: float, rho_s: float, power: float, f_d: float, f_s: float,
              gain: float) -> Costs:
        cycles = float(self.device_cycles(s, rho_d))
        server_cycles = float(self.server_time(s, rho_s)) * self.Fs
        bits = self.upload_bits[s]
        if bits > 0:
            rate = float(self.rate(power, gain))
            t_up = bits / rate if rate > 0 else math.inf
        else:
            t_up = 0.0
        t_dev = 0.0 if cycles == 0 else (cycles / f_d if f_d > 0 else math.inf)
        t_srv = 0.0 if server_cycles == 0 else (server_cycles / f_s if f_s > 0 else math.inf)
        return Costs(t_device=t_dev, t_uplink=t_up, t_server=t_srv, t_downlink=self.downlink_at(s),
                     e_compute=self.kappa * cycles * f_d**2,
                     e_uplink=power * t_up if bits > 0 else 0.0,
                     memory=float(self.memory(s, rho_d)),
                     objective=self.objective(s, rho_d, rho_s))

    def violated_limits(self, s: int, rho_d: float, rho_s: float, power: float, f_d: float,
                        f_s: float, gain: float, rel: float = 1e-9) -> list[str]:
        """Names of the limits of theory.md §2 that the decision breaks beyond `rel` (relative)."""
        values = [s, rho_d, rho_s, power, f_d, f_s]
        if not all(np.isfinite(v) for v in values):
            return ["finite"]
        c = self.costs(s, rho_d, rho_s, power, f_d, f_s, gain)
        broken = []
        checks = {
            "split_range": 0 <= s <= self.L,
            "min_split": s >= self.min_split,
            "latency": c.latency <= self.T * (1 + rel),
            "energy": c.energy <= self.E * (1 + rel),
            "tx_power": 0 <= power <= self.P * (1 + rel),
            "cpu_freq_device": 0 <= f_d <= self.F * (1 + rel),
            "cpu_freq_server": 0 <= f_s <= self.Fs * (1 + rel),
            "rho_device": -rel <= rho_d <= self.rho_max * (1 + rel),
            "rho_server": -rel <= rho_s <= self.rho_max * (1 + rel),
            "memory": self.M is None or c.memory <= self.M * (1 + rel),
            "tied": not self.tied or self._tied_ok(s, rho_d, rho_s, rel),
        }
        broken = [name for name, ok in checks.items() if not ok]
        return broken

    def _tied_ok(self, s: int, rho_d: float, rho_s: float, rel: float) -> bool:
        # with tied ratios both sides share one ρ (a side with no prunable weights reports 0)
        if self.n_device[s] == 0 or self.n_server[s] == 0:
            return True
        return abs(rho_d - rho_s) <= rel * max(abs(rho_d), abs(rho_s), 1e-300) + 1e-15

    # ---- least device energy of given ratios -----------------------------------------------
    def least_energy(self, s: int, rho_d: float, rho_s: float, gain: float,
                     rel: float = 0.0) -> float:
        """min over the upload time of κC³/t_d² + p·t_c with t_d + t_c = T(1+rel) − downlink − t_s,
        f_d = C/t_d ≤ F, p ≤ P (inf when no split of the time meets the caps). Golden-section
        search: the energy is convex in the upload time."""
        cycles = float(self.device_cycles(s, rho_d))
        left = self.T * (1 + rel) - self.downlink_at(s) - float(self.server_time(s, rho_s))
        bits = self.upload_bits[s]
        lo = self.shortest_upload_s(s, gain)
        hi = left - cycles / (self.F * (1 + rel))
        if left < 0 or hi < lo:
            return math.inf

        def energy(t_c: float) -> float:
            t_d = left - t_c
            e_dev = 0.0 if cycles == 0 else (self.kappa * cycles**3 / t_d**2 if t_d > 0
                                             else math.inf)
            e_up = 0.0 if bits == 0 else float(self.power_for(s, t_c, gain)) * t_c
            return e_dev + e_up

        if bits == 0:
            return energy(0.0) if cycles == 0 else self.kappa * cycles**3 / left**2
        a, b = lo, hi
        x1, x2 = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
        f1, f2 = energy(x1), energy(x2)
        for _ in range(200):
            if b - a <= 1e-15 * max(abs(b), 1e-300):
                break
            if f1 <= f2:
                b, x2, f2 = x2, x1, f1
                x1 = b - GOLDEN * (b - a)
                f1 = energy(x1)
            else:
                a, x1, f1 = x1, x2, f2
                x2 = a + GOLDEN * (b - a)
                f2 = energy(x2)
        return min(f1, f2, energy(lo), energy(hi))

    def ratios_feasible(self, s: int, rho_d: float, rho_s: float, gain: float,
                        rel: float = 1e-9) -> list[str]:
        """Limits that ratios (ρ_d, ρ_s) at split s break with the best power and frequency."""
        broken = []
        if s < self.min_split:
            broken.append("min_split")
        if not (-rel <= rho_d <= self.rho_max * (1 + rel)):
            broken.append("rho_device")
        if not (-rel <= rho_s <= self.rho_max * (1 + rel)):
            broken.append("rho_server")
        if not bool(self.memory_ok(s, rho_d, rel)):
            broken.append("memory")
        if self.least_energy(s, rho_d, rho_s, gain, rel) > self.E * (1 + rel):
            broken.append("latency/energy")
        return broken


class RuleReference(Reference):
    """The calibrated model (docs/theory.md §5) of one scenario, profile and rule pair, written
    from the equations and the profile's numbers: per-unit curves k_u·N_u·δ_u (δ the empirical
    law of the rule's slope table, eq. 5.1), part cycles scaled by measured times (eq. 5.4),
    storage per rule (eq. 5.6)."""

    def __init__(self, scenario: Scenario, profile: ModelProfile,
                 rules: tuple[str, str], activation_bits: int = 32) -> None:
        super().__init__(scenario, profile, activation_bits)
        assert profile.execution is not None
        self.rules = rules
        self.costs_d, self.costs_s = profile.rules[rules[0]], profile.rules[rules[1]]
        ex = profile.execution
        flops = [u.flops_prunable + u.flops_fixed for u in profile.units]
        L = self.L
        for side, costs, part_time, fpc in (
                ("device", self.costs_d, ex.device_part_time_s, scenario.device.flops_per_cycle),
                ("server", self.costs_s, ex.server_part_time_s,
                 scenario.server.flops_per_cycle)):
            prunable, fixed = np.zeros(L + 1), np.zeros(L + 1)
            for s in range(L + 1):
                units = range(s) if side == "device" else range(s, L)
                if part_time[s] <= 0:
                    continue
                dense = sum(flops[u] for u in units) / fpc
                saved = sum(ex.unit_time_s[u] * costs.execution_slope[u] for u in units)
                extra = sum(ex.unit_time_s[u] * (costs.execution_intercept[u] - 1)
                            for u in units)
                prunable[s] = dense * saved / part_time[s]
                fixed[s] = dense * max(part_time[s] + extra - saved, 0.0) / part_time[s]
            if side == "device":
                self.cycles_prunable, self.cycles_fixed = prunable, fixed
            else:
                self.server_cycles_prunable, self.server_cycles_fixed = prunable, fixed

    def memory_terms(self, s: int) -> tuple[float, float]:
        n, fixed = self.n_device[s], self.fixed_device[s] * self.bpw
        storage = self.costs_d.storage
        if storage == "dense":
            return float(fixed + n * self.bpw), 0.0
        return float(fixed), float(n * (self.bpw + (8.0 if storage == "csr" else 0.0)))

    def _rule_units(self, costs: Any, rho: FloatArray, derivative: bool) -> FloatArray:
        rho = np.asarray(rho, dtype=np.float64)
        out = np.zeros((self.L, *rho.shape))
        for u, unit in enumerate(self.profile.units):
            if unit.n_prunable == 0:
                continue
            params = {"magnitude_quantiles": np.sqrt(costs.slope_tables[u])}
            delta, q = _law_delta_and_q("empirical", params, rho)
            out[u] = costs.sensitivity[u] * unit.n_prunable * (q * q if derivative else delta)
        return out

    def device_side(self, s: int, rho: FloatArray | float, derivative: bool = False) -> FloatArray:
        return np.asarray(self._rule_units(self.costs_d, np.asarray(rho), derivative)[:s]
                          .sum(axis=0))

    def server_side(self, s: int, rho: FloatArray | float, derivative: bool = False) -> FloatArray:
        return np.asarray(self._rule_units(self.costs_s, np.asarray(rho), derivative)[s:]
                          .sum(axis=0))
