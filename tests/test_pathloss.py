"""3GPP TR 38.901 UMi street-canyon path loss against values worked out by hand from Table
7.4.1-1, and the `laimco path-gain` command."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from laimco.cli import app
from laimco.system.pathloss import (
    PathLossError,
    UmiStreetCanyon,
    los_pl1_db,
    los_pl1_distance_m,
    los_probability,
)

runner = CliRunner()

# Worked by hand (h_BS = 10 m, h_UT = 1.5 m, so h_BS − h_UT = 8.5 m; f_c = 3.5 GHz):
#   d_2D = 100 m: d_3D = √(100² + 8.5²) = 100.36060 m, log10 = 2.0015630, 20·log10 3.5 = 10.881361
#     LOS  PL1 = 32.4 + 21·2.0015630 + 10.881361                     = 85.31419 dB
#     NLOS     = 35.3·2.0015630 + 22.4 + 21.3·0.5440680 (> LOS)       = 104.64383 dB
#   d'_BP = 4·9·0.5·3.5e9/3e8 = 210 m
#   d_2D = 1000 m (> d'_BP): log10 d_3D = 3.0000157, log10(210² + 8.5²) = 4.6451523
#     LOS  PL2 = 32.4 + 40·3.0000157 + 10.881361 − 9.5·4.6451523      = 119.15307 dB
HAND = [(100.0, True, 85.31419), (100.0, False, 104.64383), (1000.0, True, 119.15307)]


@pytest.mark.parametrize(("distance_m", "los", "loss_db"), HAND)
def test_path_loss_matches_the_hand_computed_table_values(distance_m: float, los: bool,
                                                           loss_db: float) -> None:
    model = UmiStreetCanyon(carrier_ghz=3.5)
    assert model.path_loss_db(distance_m, line_of_sight=los) == pytest.approx(loss_db, abs=1e-4)
    assert model.path_gain(distance_m, line_of_sight=los) == pytest.approx(
        10 ** (-loss_db / 10), rel=1e-4)


def test_pl1_arrays_match_the_hand_values_and_invert() -> None:
    # the 100 m row of HAND: d_3D = 100.36060 m gives PL1 = 85.31419 dB at 3.5 GHz
    losses = los_pl1_db(np.array([100.36060, 100.36060]), 3.5)
    assert losses == pytest.approx([85.31419, 85.31419], abs=1e-4)
    distances = np.geomspace(10.0, 5000.0, 50)
    assert los_pl1_distance_m(los_pl1_db(distances, 3.5), 3.5) == pytest.approx(distances,
                                                                             rel=1e-12)


def test_breakpoint_distance_and_continuity() -> None:
    model = UmiStreetCanyon(carrier_ghz=28.0)
    assert model.breakpoint_distance_m == pytest.approx(4 * 9 * 0.5 * 28e9 / 3e8)  # 1680 m
    bp = model.breakpoint_distance_m
    # PL1 and PL2 meet at d'_BP (TR 38.901 chose the 9.5·log10 term for that)
    below, above = model.los_path_loss_db(bp), model.los_path_loss_db(bp * (1 + 1e-9))
    assert above == pytest.approx(below, abs=1e-6)
    # 28 GHz, 50 m: 32.4 + 21·log10(√(2500 + 72.25)) + 20·log10(28) = 97.15145 dB
    assert model.los_path_loss_db(50.0) == pytest.approx(97.15145, abs=1e-4)


def test_nlos_is_never_below_los_and_loss_grows_with_distance() -> None:
    model = UmiStreetCanyon(carrier_ghz=3.5, ut_height_m=10.0)
    distances = [10.0 * 1.2**k for k in range(32) if 10.0 * 1.2**k <= 5000]
    los = [model.los_path_loss_db(d) for d in distances]
    nlos = [model.nlos_path_loss_db(d) for d in distances]
    assert all(n >= s for n, s in zip(nlos, los, strict=True))
    assert all(b > a for a, b in itertools.pairwise(los))


@pytest.mark.parametrize(("kwargs", "distance_m", "name"), [
    ({"carrier_ghz": 0.3}, 100.0, "carrier_ghz"),
    ({"carrier_ghz": 3.5, "ut_height_m": 30.0}, 100.0, "ut_height_m"),
    ({"carrier_ghz": 3.5}, 5.0, "distance_m"),
    ({"carrier_ghz": 3.5}, 6000.0, "distance_m"),
    ({"carrier_ghz": math.nan}, 100.0, "carrier_ghz"),
])
def test_outside_the_range_of_validity_is_refused(kwargs: dict, distance_m: float,
                                                  name: str) -> None:
    with pytest.raises(PathLossError, match=name):
        UmiStreetCanyon(**kwargs).path_loss_db(distance_m)


@pytest.mark.parametrize(("carrier_ghz", "ut_height_m"), [(3.5, 1.5), (28.0, 2.0), (0.5, 22.5)])
def test_array_path_gains_equal_the_scalar_ones(carrier_ghz: float, ut_height_m: float) -> None:
    model = UmiStreetCanyon(carrier_ghz=carrier_ghz, ut_height_m=ut_height_m)
    bp = model.breakpoint_distance_m  # both sides of the LOS breakpoint, where inside the range
    distances = np.unique(np.clip(np.concatenate([np.geomspace(10.0, 5000.0, 200),
                                                  [bp * (1 - 1e-9), bp, bp * (1 + 1e-9)]]),
                                  10.0, 5000.0))
    for los in (True, False):
        scalar = [model.path_gain(d, line_of_sight=los) for d in distances]
        np.testing.assert_allclose(model.path_gains(distances, los), scalar, rtol=1e-12)
    flags = np.arange(distances.size) % 3 == 0
    mixed = [model.path_gain(d, line_of_sight=bool(f)) for d, f in zip(distances, flags,
                                                                      strict=True)]
    np.testing.assert_allclose(model.path_gains(distances, flags), mixed, rtol=1e-12)
    with pytest.raises(PathLossError, match="distance_m = 5"):
        model.path_gains(np.array([100.0, 5.0]))
    with pytest.raises(PathLossError, match="distance_m"):
        model.path_gains(np.array([math.nan]))


def test_los_probability_matches_the_3gpp_table() -> None:
    # TR 38.901 Table 7.4.2-1 UMi: 1 up to 18 m; 36 m: 0.5 + e^-1·0.5; 100 m: 0.18 + e^-25/9·0.82
    hand = [(10.0, 1.0), (18.0, 1.0), (36.0, 0.5 + math.exp(-1) * 0.5),
            (100.0, 0.18 + math.exp(-100 / 36) * 0.82), (1000.0, 0.018 + math.exp(-1000 / 36)
                                                         * 0.982)]
    distances, expected = zip(*hand, strict=True)
    np.testing.assert_allclose(los_probability(np.array(distances)), expected, rtol=1e-12)


def test_cli_prints_the_gain_to_put_in_the_scenario() -> None:
    result = runner.invoke(app, ["path-gain", "--distance-m", "100", "--carrier-ghz", "3.5"])
    assert result.exit_code == 0, result.output
    assert "85.31 dB" in result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("path_gain = "))
    assert float(line.split("=")[1]) == pytest.approx(10 ** (-85.31419 / 10), rel=1e-4)
    assert "[channel]" in result.output  # not eaten as rich markup
    nlos = runner.invoke(app, ["path-gain", "--distance-m", "100", "--nlos"])
    assert "104.64 dB" in nlos.output


@pytest.mark.parametrize("args", [["--distance-m", "5"], ["--distance-m", "100",
                                                         "--carrier-ghz", "200"], []])
def test_cli_out_of_range_exits_2_naming_the_option(args: list[str]) -> None:
    result = runner.invoke(app, ["path-gain", *args])
    assert result.exit_code == 2
    assert "--distance-m" in result.output or "--carrier-ghz" in result.output
