"""Statistics of a unit's prunable weights, computed in one streaming pass (docs/profiling.md).

The distortion laws of docs/theory.md need, per unit, the magnitude distribution of the
prunable weights: mean |w|, the root mean square, a generalized-Gaussian fit (shape β, scale α)
and the empirical magnitude quantiles. Weights arrive tensor by tensor, in any order, either
from modules in memory or straight from `*.safetensors` files (one tensor in memory at a time),
and both paths give the same numbers bit for bit.

* count, Σ|w|, Σw² are exact (float64 partial sums per tensor, added in a fixed order);
* a sample of |w| feeds the quantiles and the fit: all weights when the unit has at most
  `SAMPLE_SIZE` = 2²¹ of them, otherwise a seeded uniform sample of 2²¹ drawn tensor by tensor
  in proportion to the tensor sizes (stratified; within a tensor, without replacement). The
  smallest and largest |w| are tracked exactly and always reported as quantiles 0 and 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

SAMPLE_SIZE = 2**21
QUANTILE_LEVELS = 1001
CHUNK_ELEMENTS = 2**22  # float64 work arrays stay at 32 MB, whatever the tensor size
GENNORM_BETA_BOUNDS = (0.05, 20.0)
_LOG_BIN_WIDTH = 1.0 / 64.0  # power sums: bins of log|w| this wide ...
_LOG_MOMENTS = 6  # ... with the moments 0..5 of |w|/e^centre − 1 inside each bin


class WeightStatsError(ValueError):
    """Weights that cannot be matched to the model's units, or fed inconsistently."""


@dataclass(frozen=True)
class GennormFit:
    """Maximum-likelihood generalized Gaussian, location 0: p(w) ∝ exp(−|w/α|^β)."""

    beta: float
    scale: float
    log_likelihood_per_weight: float


@dataclass(frozen=True)
class WeightStats:
    """Exact moments and a magnitude sample (sorted, float32) of one unit's prunable weights."""

    count: int
    sum_abs: float
    sum_sq: float
    min_abs: float
    max_abs: float
    sample: NDArray[np.float32]

    @property
    def exact(self) -> bool:
        """The sample is every weight (quantiles and fit are exact, not estimates)."""
        return self.sample.size == self.count

    @property
    def mean_abs(self) -> float:
        return self.sum_abs / self.count if self.count else 0.0

    @property
    def rms(self) -> float:
        """√(Σw²/N): the standard deviation under the zero-mean convention of the profile."""
        return math.sqrt(self.sum_sq / self.count) if self.count else 0.0

    def quantiles(self, n_levels: int = QUANTILE_LEVELS) -> NDArray[np.float64]:
        """|w| at the levels linspace(0, 1, n_levels), numpy's default (linear) interpolation."""
        if not self.count:
            return np.zeros(0)
        values = _sorted_quantiles(self.sample, np.linspace(0.0, 1.0, n_levels))
        values[0], values[-1] = self.min_abs, self.max_abs
        return values

    def gennorm(self) -> GennormFit:
        """Generalized-Gaussian MLE on the sample (see `gennorm_mle`)."""
        return gennorm_mle(self.sample)


def gennorm_mle(magnitudes: NDArray[Any], *,
                beta_bounds: tuple[float, float] = GENNORM_BETA_BOUNDS) -> GennormFit:
    """Zero-location generalized-Gaussian MLE from |w| (or w), by its 1-D profile likelihood.

    For a fixed shape β the likelihood is maximal at α̂(β) = (β/N · Σ|w|^β)^{1/β}; substituting
    it leaves the mean log-likelihood ℓ(β) = log β − log 2 − log α̂(β) − lnΓ(1/β) − 1/β, maximised
    over log β with bounded Brent (`scipy.optimize.minimize_scalar`). Same estimator as
    `scipy.stats.gennorm.fit(w, floc=0)`, solved to 1e-10 in log β instead of by Nelder–Mead.

    Σ|w|^β is evaluated from per-bin moments: bins of log|w| h = 1/64 wide with centres c_b,
    |w| = e^{c_b}(1 + u), and Σ_bin |w|^β = e^{βc_b} Σ_k C(β, k) U_k with U_k = Σ_bin u^k,
    k = 0..5 (binomial series), so each evaluation costs O(bins), not O(N), and no logarithm of
    the data is ever taken. The truncation error is below |C(β, 6)|·(e^{h/2} − 1)⁶/e^{−βh/2}:
    ≤ 1e-8 relative for β ≤ 20, ~1e-15 near β = 1.3, and 0 at β = 1 or 2 (the series ends).
    """
    from scipy import optimize, special

    magnitudes = np.abs(np.asarray(magnitudes))  # signed weights are accepted too
    n_total = magnitudes.size
    log_power_sum = _LogPowerSum(magnitudes)
    if n_total < 2 or log_power_sum.empty:
        return GennormFit(beta=2.0, scale=0.0, log_likelihood_per_weight=math.nan)

    def log_scale(beta: float) -> float:
        return (math.log(beta) + log_power_sum(beta) - math.log(n_total)) / beta

    def negative_loglik(log_beta: float) -> float:
        beta = math.exp(log_beta)
        return -(math.log(beta) - math.log(2.0) - log_scale(beta)
                 - float(special.gammaln(1.0 / beta)) - 1.0 / beta)

    lo, hi = (math.log(b) for b in beta_bounds)
    best = optimize.minimize_scalar(negative_loglik, bounds=(lo, hi), method="bounded",
                                    options={"xatol": 1e-10, "maxiter": 200})
    beta = math.exp(float(best.x))
    return GennormFit(beta=beta, scale=math.exp(log_scale(beta)),
                      log_likelihood_per_weight=-float(best.fun))


class _LogPowerSum:
    """log Σ|w|^β for any β > 0 in O(bins) after one O(N) pass (docstring of gennorm_mle)."""

    def __init__(self, magnitudes: NDArray[Any]) -> None:
        ordered = magnitudes if _is_sorted(magnitudes) else np.sort(magnitudes)
        # a zero adds 0 to Σ|w|^β for every β > 0
        m = ordered[np.searchsorted(ordered, 0.0, side="right"):].astype(np.float64)
        self.empty = m.size == 0
        if self.empty:
            return
        low, h = math.log(m[0]), _LOG_BIN_WIDTH
        n_bins = int((math.log(m[-1]) - low) / h) + 1
        # bin b holds the |w| with log|w| in [low + b·h, low + (b+1)·h): a contiguous run
        starts = np.searchsorted(m, np.exp(low + h * np.arange(n_bins + 1)))
        starts[0], starts[-1] = 0, m.size
        counts = np.diff(starts)
        centres = low + (np.arange(n_bins) + 0.5) * h
        u = m * np.repeat(np.exp(-centres), counts)
        u -= 1.0  # |w| = e^c (1 + u), |u| ≤ e^{h/2} − 1
        used = counts > 0
        first = starts[:-1][used]
        moments = [counts[used].astype(np.float64)]
        power = u.copy()
        for k in range(1, _LOG_MOMENTS):
            if k > 1:
                power *= u
            moments.append(np.add.reduceat(power, first))
        self.centres = centres[used]
        self.moments = np.stack(moments)  # (K, bins): U_k = Σ_bin u^k

    def __call__(self, beta: float) -> float:
        """log Σ_b e^{β c_b} Σ_k C(β, k) U_k,b (binomial series of (1 + u)^β)."""
        poly = self.moments[0].copy()
        coefficient = 1.0
        for k in range(1, _LOG_MOMENTS):
            coefficient *= (beta - k + 1) / k
            poly += coefficient * self.moments[k]
        exponent = beta * self.centres + np.log(poly)
        top = float(exponent.max())
        return top + math.log(float(np.exp(exponent - top).sum()))


def _is_sorted(values: NDArray[Any]) -> bool:
    return bool(values.size < 2 or np.all(values[1:] >= values[:-1]))


def _sorted_quantiles(sorted_values: NDArray[Any], levels: NDArray[np.float64]
                      ) -> NDArray[np.float64]:
    """numpy.quantile(values, levels) (method "linear") of already sorted values."""
    n = sorted_values.size
    position = levels * (n - 1)
    lower = np.floor(position).astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    fraction = position - lower
    a = sorted_values[lower].astype(np.float64)
    b = sorted_values[upper].astype(np.float64)
    diff = b - a
    return np.where(fraction >= 0.5, b - diff * (1.0 - fraction), a + diff * fraction)


def sample_quota(sizes: Sequence[int], sample_size: int = SAMPLE_SIZE) -> list[int]:
    """Sample elements per tensor: all of them, or `sample_size` split in proportion to size
    (largest remainders, ties to the earlier tensor)."""
    total = sum(sizes)
    if total <= sample_size:
        return list(sizes)
    exact = [size * sample_size / total for size in sizes]
    quota = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (quota[i] - exact[i], i))
    for i in by_remainder[: sample_size - sum(quota)]:
        quota[i] += 1
    return quota


class WeightAccumulator:
    """Streaming statistics of one unit's prunable tensors, added in any order by index.

    `sizes` are the element counts of the unit's tensors in their canonical order (module
    order); the random sample of tensor i depends only on (seed, stream, i), never on the order
    in which tensors arrive.
    """

    def __init__(self, sizes: Sequence[int], *, sample_size: int = SAMPLE_SIZE, seed: int = 0,
                 stream: int = 0) -> None:
        self.sizes = [int(s) for s in sizes]
        self.quota = sample_quota(self.sizes, sample_size)
        self.seed, self.stream = seed, stream
        self._parts: dict[int, tuple[float, float, float, float, NDArray[np.float32]]] = {}

    def add(self, index: int, values: Any) -> None:
        """Add tensor `index` (a torch tensor or numpy array of any float dtype)."""
        flat = _as_flat_array(values)
        if flat.size != self.sizes[index]:
            raise WeightStatsError(f"tensor {index} has {flat.size} elements, expected "
                                   f"{self.sizes[index]}")
        if index in self._parts:
            raise WeightStatsError(f"tensor {index} was added twice")
        rng = np.random.default_rng((self.seed, self.stream, index))
        chunk_sizes = [min(CHUNK_ELEMENTS, flat.size - s) for s in range(0, flat.size,
                                                                         CHUNK_ELEMENTS)]
        take = self.quota[index]
        if take < flat.size:
            per_chunk = rng.multivariate_hypergeometric(chunk_sizes, take)
        else:
            per_chunk = np.asarray(chunk_sizes)
        sum_abs = sum_sq = 0.0
        low, high = math.inf, 0.0
        pieces = []
        for start, size, k in zip(range(0, flat.size, CHUNK_ELEMENTS), chunk_sizes, per_chunk,
                                  strict=True):
            magnitude = np.abs(flat[start:start + size])  # |w| is exact in the input dtype
            wide = magnitude.astype(np.float64)
            sum_abs += float(wide.sum())
            sum_sq += float(np.square(wide, out=wide).sum())  # (BLAS dot spins its threads)
            low, high = min(low, float(magnitude.min())), max(high, float(magnitude.max()))
            if k == size:
                pieces.append(magnitude.astype(np.float32, copy=False))
            elif k:
                chosen = rng.choice(size, int(k), replace=False)
                pieces.append(magnitude[chosen].astype(np.float32, copy=False))
        sample = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        self._parts[index] = (sum_abs, sum_sq, low, high, sample)

    def result(self) -> WeightStats:
        missing = [i for i in range(len(self.sizes)) if i not in self._parts]
        if missing:
            raise WeightStatsError(f"tensors {missing} were never added")
        parts = [self._parts[i] for i in range(len(self.sizes))]
        sample = (np.concatenate([p[4] for p in parts]) if parts
                  else np.zeros(0, np.float32))
        sample.sort()
        return WeightStats(
            count=sum(self.sizes), sum_abs=math.fsum(p[0] for p in parts),
            sum_sq=math.fsum(p[1] for p in parts),
            min_abs=min((p[2] for p in parts), default=0.0),
            max_abs=max((p[3] for p in parts), default=0.0), sample=sample)


def _as_flat_array(values: Any) -> NDArray[Any]:
    if hasattr(values, "detach"):  # torch tensor: float32 view for any float dtype
        import torch

        tensor = values.detach()
        if tensor.is_meta:
            raise WeightStatsError("weights on the meta device have no values")
        if tensor.dtype != torch.float64:
            tensor = tensor.to(torch.float32)
        flat: NDArray[Any] = tensor.cpu().reshape(-1).numpy()
        return flat
    return np.asarray(values).reshape(-1)


def tensor_stats(units: Sequence[Sequence[Any]], *, sample_size: int = SAMPLE_SIZE,
                 seed: int = 0) -> list[WeightStats]:
    """Statistics of in-memory tensors: one list of prunable weight tensors per unit."""
    result = []
    for u, tensors in enumerate(units):
        accumulator = WeightAccumulator([int(np.prod(t.shape)) for t in tensors],
                                        sample_size=sample_size, seed=seed, stream=u)
        for i, tensor in enumerate(tensors):
            accumulator.add(i, tensor)
        result.append(accumulator.result())
    return result


def safetensors_stats(files: Iterable[str | Path], units: Sequence[Sequence[tuple[str, ...]]],
                      *, rename: Callable[[str], str] | None = None,
                      sample_size: int = SAMPLE_SIZE, seed: int = 0) -> list[WeightStats]:
    """Statistics read from safetensors files, one tensor in memory at a time.

    `units` lists, per unit, its prunable tensors, each by the names the model gives it (a tied
    parameter has several). A checkpoint key is first passed through `rename` (the model's own
    legacy-name conversion, see `checkpoint_renamer`); it may then still carry an extra prefix
    ("bert.", "model.") or lack one the model has ("transformer."): names match on whole
    dot-separated suffixes."""
    from safetensors import safe_open

    paths = [Path(f) for f in files]
    location: dict[str, tuple[Path, str, int]] = {}  # model-style key → (file, key, elements)
    for file in paths:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                name = rename(key) if rename else key
                size = math.prod(handle.get_slice(key).get_shape())
                location.setdefault(name, (file, key, size))
    matcher = _NameMatcher(location)
    keys = [[matcher.key_for(aliases) for aliases in tensors] for tensors in units]
    accumulators = [
        WeightAccumulator([location[k][2] for k in unit_keys], sample_size=sample_size,
                          seed=seed, stream=u)
        for u, unit_keys in enumerate(keys)]
    wanted: dict[Path, list[tuple[str, int, int]]] = {}
    for u, unit_keys in enumerate(keys):
        for i, key in enumerate(unit_keys):
            file, original, _ = location[key]
            wanted.setdefault(file, []).append((original, u, i))
    for file in paths:
        if file not in wanted:
            continue
        with safe_open(str(file), framework="pt") as handle:
            for original, u, i in wanted[file]:
                accumulators[u].add(i, handle.get_tensor(original))
    return [a.result() for a in accumulators]


def checkpoint_renamer(model: Any) -> Callable[[str], str] | None:
    """Checkpoint key → the model's parameter name, by transformers' own conversion table.

    transformers ≥ 5 renames some modules at load time and back at save time (ViT's
    `encoder.layer.0.attention.attention.query` is `layers.0.attention.q_proj`). Keys that a
    tensor-changing converter (split, merge) would handle are left as they are; None when this
    transformers version has no such table."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import (
            WeightConverter,
            WeightRenaming,
            rename_source_key,
        )
    except ImportError:
        return None
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]

    def rename(key: str) -> str:
        renamed, converter = rename_source_key(key, renamings, converters)
        return key if converter is not None else renamed

    return rename


class _NameMatcher:
    """Model parameter names → checkpoint keys, equal or differing by a leading prefix."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = set(keys)
        self.by_suffix: dict[str, list[str]] = {}
        for key in self.keys:
            for suffix in _dot_suffixes(key):
                self.by_suffix.setdefault(suffix, []).append(key)

    def key_for(self, aliases: tuple[str, ...]) -> str:
        for name in aliases:
            if name in self.keys:
                return name
        for name in aliases:  # the checkpoint adds a prefix: "bert.encoder…" for "encoder…"
            found = self.by_suffix.get(name, [])
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise WeightStatsError(f"parameter {name!r} matches several checkpoint "
                                       f"tensors: {sorted(found)}")
        for name in aliases:  # the checkpoint drops a prefix: "h.0…" for "transformer.h.0…"
            for suffix in _dot_suffixes(name):
                if suffix in self.keys:
                    return suffix
        raise WeightStatsError(f"no tensor for parameter {aliases[0]!r} in the checkpoint; "
                               "is it a checkpoint of this config?")


def _dot_suffixes(name: str) -> list[str]:
    """"a.b.c" → ["b.c", "c"]: the proper suffixes made of whole components, longest first."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(1, len(parts))]
