"""What quantizing the uplink costs, as measured on a model and stored in its profile
(docs/theory.md §6, docs/profiling.md "Uplink").

For every split s = 1..L−1 (an activation of `hidden` features per token crosses the link) and
every measured width b, the profile's "uplink" section carries

- `clip`: the MSE-optimal fraction of each token's absolute maximum kept (calibration text);
- `activation_mse`: the measured mean squared error per element of the round trip;
- `activation_mse_law`: the Δ²/12-with-clipping law's prediction of it (eq. 6.2);
- `output_distortion`: D_q(s, b), the mean output distortion D_y of the dense model with only
  that activation quantized: the metric of the pruning rules' sensitivities, so the objective
  adds it to the pruning distortion;
- `zstd_ratio`: mean zstd-compressed bytes over raw payload bytes (one input per request).

`parse_uplink` turns the section into `UplinkCosts`, arrays indexed by split s = 0..L (rows 0
and L: nothing crosses). numpy/pydantic only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from laimco.uplink.quantizer import ACTIVATION_BITS, Granularity, QuantizerSettings

FloatArray = NDArray[np.float64]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Clip = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False, strict=True)]
Ratio = Annotated[float, Field(gt=0, le=1e3, allow_inf_nan=False, strict=True)]
Count = Annotated[int, Field(ge=0, le=10**12, strict=True)]
PER_BITS_FIELDS = ("clip", "activation_mse", "activation_mse_law", "output_distortion",
                   "zstd_ratio")


class UplinkCostError(ValueError):
    """A malformed uplink section, or a width or split it has no measurement for."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class UplinkSplitEntry(_Strict):
    """One split's measurements, one value per width of `bits`."""

    split: Annotated[int, Field(ge=1, strict=True)]
    hidden: Annotated[int, Field(ge=1, le=10**7, strict=True)]
    clip: list[Clip]
    activation_mse: list[NonNegative]
    activation_mse_law: list[NonNegative]
    output_distortion: list[NonNegative]
    zstd_ratio: list[Ratio]


class UplinkSection(_Strict):
    """The profile's "uplink" section (written by `laimco analyze`)."""

    granularity: Granularity
    calibration_inputs: Annotated[int, Field(ge=1, strict=True)]
    calibration_tokens: Count
    bits: Annotated[list[int], Field(min_length=1, max_length=len(ACTIVATION_BITS))]
    splits: list[UplinkSplitEntry]

    @model_validator(mode="after")
    def _bits_supported(self) -> UplinkSection:
        for i, b in enumerate(self.bits):
            if b not in ACTIVATION_BITS:
                raise ValueError(f"bits[{i}] = {b} is not a supported width: "
                                 f"{', '.join(map(str, ACTIVATION_BITS))}")
        if len(set(self.bits)) != len(self.bits):
            raise ValueError(f"bits {self.bits} lists a width twice")
        return self


@dataclass(frozen=True)
class UplinkCosts:
    """The uplink section as arrays indexed by split s = 0..L and by width (column of `bits`).

    Where nothing crosses (s = 0 uploads token ids, s = L nothing): hidden 0, clip 1,
    MSE and distortion 0, zstd ratio 1. At 32 bits the distortion is 0."""

    granularity: Granularity
    bits: tuple[int, ...]
    hidden: NDArray[np.int64]  # (L+1,)
    clip: FloatArray  # (L+1, n_bits)
    activation_mse: FloatArray
    activation_mse_law: FloatArray
    output_distortion: FloatArray
    zstd_ratio: FloatArray
    calibration_inputs: int = 0
    calibration_tokens: int = 0

    @property
    def n_splits(self) -> int:
        """L + 1."""
        return int(self.hidden.shape[0])

    def column(self, bits: int) -> int:
        """The column of a width; UplinkCostError names the measured widths."""
        try:
            return self.bits.index(bits)
        except ValueError:
            raise UplinkCostError(
                f"activation bits {bits} was not measured for this profile: measured widths "
                f"are {', '.join(map(str, self.bits))} (measure again with laimco analyze)"
            ) from None

    def _check_split(self, split: int) -> None:
        if not 0 <= split < self.n_splits:
            raise UplinkCostError(f"split {split} is outside 0..{self.n_splits - 1}")

    def settings(self, split: int, bits: int) -> QuantizerSettings:
        """The quantizer of width `bits` at split s with the measured clip."""
        self._check_split(split)
        return QuantizerSettings(bits, self.granularity,
                                 float(self.clip[split, self.column(bits)]))

    def distortion(self, bits: int) -> FloatArray:
        """D_q(s, b) for s = 0..L, shape (L+1,)."""
        return self.output_distortion[:, self.column(bits)]

    def coded_ratio(self, bits: int) -> FloatArray:
        """zstd-compressed over raw payload bytes for s = 0..L, shape (L+1,)."""
        return self.zstd_ratio[:, self.column(bits)]


def _key(loc: tuple[Any, ...]) -> str:
    return "uplink" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def parse_uplink(raw: object, n_units: int) -> UplinkCosts:
    """The profile's "uplink" section as `UplinkCosts` for a model of `n_units` units (L);
    an UplinkCostError names the key path (uplink.splits[2].clip[3]) and what is allowed."""
    try:
        section = UplinkSection.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise UplinkCostError(f"profile key {_key(tuple(first['loc']))}: {message}"
                              + ("" if first["type"] == "value_error"
                                 else f" (got {first.get('input')!r})")) from None
    n_bits = len(section.bits)
    shape = (n_units + 1, n_bits)
    hidden = np.zeros(n_units + 1, dtype=np.int64)
    arrays = {name: np.zeros(shape) for name in PER_BITS_FIELDS}
    arrays["clip"][:] = 1.0
    arrays["zstd_ratio"][:] = 1.0
    seen: set[int] = set()
    for i, entry in enumerate(section.splits):
        where = f"profile key uplink.splits[{i}]"
        if not 1 <= entry.split <= n_units - 1:
            raise UplinkCostError(f"{where}.split = {entry.split}: an activation crosses only "
                                  f"at splits 1..{n_units - 1} of this {n_units}-unit model")
        if entry.split in seen:
            raise UplinkCostError(f"{where}.split = {entry.split} appears twice")
        seen.add(entry.split)
        hidden[entry.split] = entry.hidden
        for name in PER_BITS_FIELDS:
            values = getattr(entry, name)
            if len(values) != n_bits:
                raise UplinkCostError(f"{where}.{name} has {len(values)} values but bits lists "
                                      f"{n_bits} widths ({section.bits})")
            arrays[name][entry.split] = values
    missing = sorted(set(range(1, n_units)) - seen)
    if missing:
        raise UplinkCostError(f"profile key uplink.splits has no entry for split(s) "
                              f"{', '.join(map(str, missing))}: give one per split "
                              f"1..{n_units - 1}")
    for name in ("output_distortion", "activation_mse", "activation_mse_law"):
        if 32 in section.bits and np.any(arrays[name][:, section.bits.index(32)] != 0):
            raise UplinkCostError(f"profile key uplink.splits[*].{name} is not 0 at 32 bits "
                                  "(float32 is sent as it is)")
    for array in arrays.values():
        array.flags.writeable = False
    hidden.flags.writeable = False
    return UplinkCosts(granularity=section.granularity, bits=tuple(section.bits), hidden=hidden,
                       calibration_inputs=section.calibration_inputs,
                       calibration_tokens=section.calibration_tokens, **arrays)
