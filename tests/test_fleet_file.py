"""Fleet files (docs/fleet.md "Fleet file"): the shipped fleets load; the generator's draws
follow the stated laws (Kolmogorov–Smirnov tests against the analytic CDFs, the LOS fraction
against the mean of TR 38.901's P_LOS over the distance law, integrated by scipy); gains equal
the scalar UMi path loss; the seed reproduces a fleet; every bad input is a FleetError that names
the key."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats

from laimco.config import load_scenario
from laimco.examples import fleets_dir, scenarios_dir
from laimco.fleet.fleet_file import MAX_FLEET_BYTES, FleetError, fleet_from_dict, load_fleet
from laimco.fleet.generator import DevicePlacement, draw_devices
from laimco.system.pathloss import UmiStreetCanyon

ROOT = Path(__file__).resolve().parents[1]
N_DRAWS = 20_000
KS_P_MIN = 1e-3
RESOURCES = {"bandwidth_hz": 2e7, "server_cycles_per_s": 3e9, "server_flops_per_cycle": 64}
GENERATOR = {"seed": 7, "distance_m": {"min": 10, "max": 200},
             "classes": [{"scenario": "minilm-phone", "count": 3}]}


def _generated(**generator: Any) -> dict[str, Any]:
    return {"resources": RESOURCES, "generator": {**GENERATOR, **generator}}


def _explicit(*devices: dict[str, Any]) -> dict[str, Any]:
    return {"resources": RESOURCES, "devices": list(devices)}


# ---- the shipped fleets ----

SHIPPED = sorted(p.stem for p in fleets_dir().glob("*.toml"))


def test_the_top_level_fleets_folder_is_the_packaged_one() -> None:
    assert (ROOT / "fleets").resolve() == fleets_dir()
    assert set(SHIPPED) >= {"campus-20", "campus-100", "city-1000", "city-10000",
                            "city-100000"}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_fleet_loads_with_the_devices_its_name_says(name: str) -> None:
    fleet = load_fleet(fleets_dir() / f"{name}.toml")
    n = int(name.rsplit("-", 1)[1])
    assert fleet.name == name and fleet.n_devices == n
    assert len(set(fleet.ids)) == n
    assert np.all((fleet.path_gain >= 1e-20) & (fleet.path_gain <= 1.0))
    assert np.all(fleet.weight > 0)
    kinds = {c.scenario.distortion.mode for c in fleet.classes}
    # campus fleets use the calibrated scenarios, city fleets the (faster) paper-mode ones
    assert kinds == ({"calibrated"} if name.startswith("campus") else {"paper"})
    assert {c.name.removeprefix("paper-") for c in fleet.classes} == {
        "minilm-phone", "minilm-iot", "minilm-laptop"}
    assert np.all(np.bincount(fleet.class_index, minlength=3) > 0)
    # an equal share is of the order of one device's own scenario (minilm-phone: 2 MHz,
    # 2e8 cycles/s): between a quarter and the whole of it
    assert 0.5e6 <= fleet.resources.bandwidth_hz / n <= 2e6
    assert 0.5e8 <= fleet.resources.server_cycles_per_s / n <= 2e8
    # device 0 gets a valid single-device scenario at an equal share, the fleet server's FLOPs
    scenario = fleet.device_scenario(0, fleet.resources.bandwidth_hz / n,
                                     fleet.resources.server_cycles_per_s / n)
    assert scenario.server.flops_per_cycle == fleet.resources.server_flops_per_cycle
    assert scenario.channel.path_gain == fleet.path_gain[0]


def test_every_shipped_fleet_says_what_it_models_in_its_first_line() -> None:
    for name in SHIPPED:
        first = (fleets_dir() / f"{name}.toml").read_text().splitlines()[0]
        assert first.startswith("# A "), name


# ---- the generator's laws ----

def _area_cdf(low: float, high: float) -> Any:
    return lambda d: (np.asarray(d) ** 2 - low**2) / (high**2 - low**2)


def _uniform_cdf(low: float, high: float) -> Any:
    return lambda d: (np.asarray(d) - low) / (high - low)


@pytest.mark.parametrize(("law", "cdf"), [("area", _area_cdf), ("uniform", _uniform_cdf)])
def test_generated_distances_follow_the_stated_law(law: str, cdf: Any) -> None:
    placement = DevicePlacement(distance_min_m=10.0, distance_max_m=1000.0, distance_law=law)
    draws = draw_devices(placement, N_DRAWS, seed=2024)
    assert draws.distance_m.min() >= 10.0 and draws.distance_m.max() <= 1000.0
    assert stats.kstest(draws.distance_m, cdf(10.0, 1000.0)).pvalue > KS_P_MIN
    # and the test has power: the other law is rejected
    other = _uniform_cdf if law == "area" else _area_cdf
    assert stats.kstest(draws.distance_m, other(10.0, 1000.0)).pvalue < 1e-6


def test_a_generated_fleets_gains_invert_to_distances_that_follow_the_area_law() -> None:
    """End to end through the fleet file: LOS always, no fading, 10–200 m (below the 210 m
    breakpoint at 3.5 GHz, so PL = PL1): the gain gives back d_3D, hence d_2D."""
    fleet = fleet_from_dict(_generated(
        line_of_sight="always", fading="none",
        classes=[{"scenario": "minilm-phone", "count": N_DRAWS // 2},
                 {"scenario": "minilm-iot", "count": N_DRAWS // 2}]), Path("."))
    loss_db = -10 * np.log10(fleet.path_gain)
    d3 = 10 ** ((loss_db - 32.4 - 20 * math.log10(3.5)) / 21)  # PL1 of TR 38.901 inverted
    d2 = np.sqrt(d3**2 - (10.0 - 1.5) ** 2)
    assert stats.kstest(d2, _area_cdf(10.0, 200.0)).pvalue > KS_P_MIN


def test_rayleigh_fading_power_is_exponential_with_mean_one() -> None:
    placement = DevicePlacement(distance_min_m=10.0, distance_max_m=1000.0, fading="rayleigh")
    draws = draw_devices(placement, N_DRAWS, seed=99)
    assert stats.kstest(draws.fading_power, "expon").pvalue > KS_P_MIN
    # the gain carries it: g / (the scalar UMi gain at the device's distance and LOS) = |h|²
    model = UmiStreetCanyon(carrier_ghz=3.5)
    mean_gain = np.array([model.path_gain(d, line_of_sight=bool(los))
                          for d, los in zip(draws.distance_m, draws.line_of_sight, strict=True)])
    ratio = draws.path_gain / mean_gain
    assert stats.kstest(ratio[draws.path_gain > 1e-20], "expon").pvalue > KS_P_MIN


def _p_los(d: float) -> float:
    """TR 38.901 Table 7.4.2-1, UMi street canyon, written out again for the test."""
    return 1.0 if d <= 18 else 18 / d + math.exp(-d / 36) * (1 - 18 / d)


@pytest.mark.parametrize(("law", "low", "high"), [("area", 10.0, 1000.0),
                                                  ("uniform", 10.0, 100.0)])
def test_the_los_fraction_is_the_mean_3gpp_los_probability_over_the_law(
        law: str, low: float, high: float) -> None:
    density = ((lambda d: 2 * d / (high**2 - low**2)) if law == "area"
               else (lambda d: 1 / (high - low)))
    expected, _ = integrate.quad(lambda d: _p_los(d) * density(d), low, high, points=[18.0],
                                 epsabs=1e-12, limit=200)
    placement = DevicePlacement(distance_min_m=low, distance_max_m=high, distance_law=law)
    draws = draw_devices(placement, N_DRAWS, seed=5)
    standard_error = math.sqrt(expected * (1 - expected) / N_DRAWS)
    assert abs(draws.line_of_sight.mean() - expected) <= 4 * standard_error
    assert np.all(draws.line_of_sight[draws.distance_m <= 18.0])


@pytest.mark.parametrize("line_of_sight", ["always", "never", "3gpp"])
def test_each_gain_is_the_scalar_umi_path_gain_at_its_distance(line_of_sight: str) -> None:
    placement = DevicePlacement(distance_min_m=10.0, distance_max_m=5000.0,
                                distance_law="uniform", line_of_sight=line_of_sight,
                                carrier_ghz=28.0, ut_height_m=2.0)  # breakpoint 1493 m inside
    draws = draw_devices(placement, 2_000, seed=3)
    model = UmiStreetCanyon(carrier_ghz=28.0, ut_height_m=2.0)
    scalar = [model.path_gain(d, line_of_sight=bool(los))
              for d, los in zip(draws.distance_m, draws.line_of_sight, strict=True)]
    np.testing.assert_allclose(draws.path_gain, np.maximum(scalar, 1e-20), rtol=1e-12)
    if line_of_sight != "3gpp":
        assert np.all(draws.line_of_sight == (line_of_sight == "always"))


def test_the_same_seed_gives_the_same_fleet_and_another_seed_another() -> None:
    spec = _generated(fading="rayleigh", distance_m={"min": 10, "max": 1000},
                      classes=[{"scenario": "minilm-phone", "count": 500}])
    first, again = fleet_from_dict(spec, Path(".")), fleet_from_dict(spec, Path("."))
    assert np.array_equal(first.path_gain, again.path_gain) and first.ids == again.ids
    other = fleet_from_dict({**spec, "generator": {**spec["generator"], "seed": 8}}, Path("."))
    assert np.mean(np.isclose(first.path_gain, other.path_gain, rtol=1e-9, atol=0)) < 0.01


def test_generated_classes_weights_and_ids() -> None:
    fleet = fleet_from_dict(_generated(classes=[
        {"scenario": "minilm-phone", "count": 2, "weight": 2.0},
        {"scenario": "minilm-iot", "count": 0},
        {"scenario": "minilm-phone", "count": 1}]), Path("."))
    assert [c.name for c in fleet.classes] == ["minilm-phone", "minilm-iot"]
    assert fleet.class_index.tolist() == [0, 0, 0]
    assert fleet.weight.tolist() == [2.0, 2.0, 1.0]
    assert fleet.ids == ("minilm-phone-1", "minilm-phone-2", "minilm-phone-3")
    assert fleet.objective == "sum" and fleet.name == "fleet"


# ---- explicit devices ----

def test_explicit_devices_gains_ids_and_relative_scenario_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my-phone.toml").write_text(
        (scenarios_dir() / "minilm-phone.toml").read_text().replace(
            "path_gain = 1.0e-7", "path_gain = 3.0e-9"))
    # hand values of TR 38.901 UMi at 3.5 GHz, 100 m (tests/test_pathloss.py HAND)
    fleet = fleet_from_dict({"resources": RESOURCES, "name": "mine", "objective": "max-min",
                             "devices": [
        {"scenario": "minilm-phone", "distance_m": 100},
        {"scenario": "minilm-phone", "distance_m": 100, "line_of_sight": False, "weight": 3},
        {"scenario": "sub/my-phone.toml", "id": "mine-a"},
        {"scenario": "minilm-phone", "path_gain": 2.5e-9},
        {"scenario": "sub/my-phone.toml"}]}, tmp_path)
    np.testing.assert_allclose(fleet.path_gain, [10 ** (-8.531419), 10 ** (-10.464383),
                                                 3.0e-9, 2.5e-9, 3.0e-9], rtol=1e-5)
    assert fleet.ids == ("minilm-phone-1", "minilm-phone-2", "mine-a", "minilm-phone-3",
                         "my-phone-2")
    assert [c.name for c in fleet.classes] == ["minilm-phone", "my-phone"]
    assert fleet.class_index.tolist() == [0, 0, 1, 0, 1]
    assert fleet.weight.tolist() == [1.0, 3.0, 1.0, 1.0, 1.0]
    assert (fleet.name, fleet.objective) == ("mine", "max-min")


def test_an_explicit_device_of_a_rayleigh_scenario_is_not_drawn() -> None:
    fleet = fleet_from_dict(_explicit({"scenario": "minilm-phone-rayleigh"}), Path("."))
    expected = load_scenario(scenarios_dir() / "minilm-phone-rayleigh.toml").channel.path_gain
    assert fleet.path_gain.tolist() == [expected]
    assert fleet.device_scenario(0, 1e6, 1e8).channel.fading == "none"


def test_load_fleet_reads_a_file_and_resolves_paths_beside_it(tmp_path: Path) -> None:
    (tmp_path / "phone.toml").write_text((scenarios_dir() / "minilm-phone.toml").read_text())
    file = tmp_path / "two.toml"
    file.write_text('[resources]\nbandwidth_hz = 4e6\nserver_cycles_per_s = 4e8\n'
                    'server_flops_per_cycle = 64\n[[devices]]\nscenario = "phone.toml"\n'
                    '[[devices]]\nscenario = "minilm-iot"\npath_gain = 1e-9\n')
    fleet = load_fleet(file)
    assert fleet.name == "two" and fleet.ids == ("phone-1", "minilm-iot-1")
    assert fleet.resources.bandwidth_hz == 4e6 and fleet.resources.server_memory_bytes is None


# ---- bad input: one FleetError naming the key ----

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("neither", {"resources": RESOURCES}, "neither [[devices]] nor [generator]"),
    ("both", {**_generated(), "devices": [{"scenario": "minilm-phone"}]},
     "both [[devices]] and [generator]"),
    ("empty list", _explicit(), "devices: lists no device"),
    ("all counts 0", _generated(classes=[{"scenario": "minilm-phone", "count": 0}]),
     "generator.classes: no devices"),
    ("band 0", {**_generated(), "resources": {**RESOURCES, "bandwidth_hz": 0}},
     "resources.bandwidth_hz:"),
    ("cycles < 0", {**_generated(), "resources": {**RESOURCES, "server_cycles_per_s": -1e9}},
     "resources.server_cycles_per_s:"),
    ("flops 0", {**_generated(), "resources": {**RESOURCES, "server_flops_per_cycle": 0}},
     "resources.server_flops_per_cycle:"),
    ("no resources", {"generator": GENERATOR}, "resources: required key is missing"),
    ("distance below the model", _generated(distance_m={"min": 5, "max": 200}),
     "generator.distance_m.min:"),
    ("distance above the model", _generated(distance_m={"min": 10, "max": 6000}),
     "generator.distance_m.max:"),
    ("min > max", _generated(distance_m={"min": 300, "max": 200}),
     "generator.distance_m.max: is smaller than min"),
    ("unknown law", _generated(distance_m={"min": 10, "max": 200, "law": "gauss"}),
     "generator.distance_m.law:"),
    ("unknown key", _generated(sead=3), "generator.sead: unknown key"),
    ("unknown top key", {**_generated(), "device": []}, "device: unknown key"),
    ("missing seed", {"resources": RESOURCES,
                      "generator": {k: v for k, v in GENERATOR.items() if k != "seed"}},
     "generator.seed: required key is missing"),
    ("missing scenario", _explicit({"weight": 1.0}), "devices[0].scenario: required key"),
    ("carrier outside", _generated(carrier_ghz=200.0), "generator.carrier_ghz:"),
    ("weight 0", _explicit({"scenario": "minilm-phone", "weight": 0}), "devices[0].weight:"),
    ("negative weight", _generated(classes=[{"scenario": "minilm-phone", "count": 2,
                                             "weight": -1}]),
     "generator.classes[0].weight:"),
    ("two gains", _explicit({"scenario": "minilm-phone", "path_gain": 1e-8, "distance_m": 30}),
     "devices[0].distance_m: give path_gain or distance_m, not both"),
    ("LOS without distance", _explicit({"scenario": "minilm-phone", "line_of_sight": False}),
     "devices[0].line_of_sight: applies with distance_m only"),
    ("device distance outside", _explicit({"scenario": "minilm-phone", "distance_m": 2}),
     "devices[0].distance_m:"),
    ("duplicate id", _explicit({"scenario": "minilm-phone", "id": "a"},
                               {"scenario": "minilm-iot", "id": "a"}),
     "devices[1].id: 'a' is already the id of devices[0]"),
    ("id equal to a default id", _explicit({"scenario": "minilm-phone"},
                                           {"scenario": "minilm-iot", "id": "minilm-phone-1"}),
     "devices[1].id: 'minilm-phone-1' is already"),
    ("unsafe id", _explicit({"scenario": "minilm-phone", "id": "../x"}), "devices[0].id:"),
    ("unknown packaged scenario", _generated(classes=[
        {"scenario": "minilm-phone", "count": 1}, {"scenario": "minilm-tablet", "count": 1}]),
     "generator.classes[1].scenario: 'minilm-tablet' is not a packaged scenario"),
    ("missing scenario file", _explicit({"scenario": "mine.toml"}),
     "devices[0].scenario: scenario file"),
    ("bool as a number", {**_generated(), "resources": {**RESOURCES, "bandwidth_hz": True}},
     "resources.bandwidth_hz:"),
    ("unknown objective", {**_generated(), "objective": "min"}, "objective:"),
]


@pytest.mark.parametrize(("data", "key"), [(d, k) for _, d, k in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_fleet_input_is_a_fleet_error_naming_the_key(data: dict[str, Any],
                                                         key: str) -> None:
    with pytest.raises(FleetError, match=re.escape(key)):
        fleet_from_dict(data, Path("."))


def test_a_class_scenario_that_fails_to_load_is_named_by_its_fleet_key(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(
        (scenarios_dir() / "minilm-phone.toml").read_text().replace(
            "bandwidth_hz = 2.0e6", "bandwith_hz = 2.0e6"))
    data = _generated(classes=[{"scenario": "minilm-phone", "count": 1},
                               {"scenario": "broken.toml", "count": 1}])
    with pytest.raises(FleetError) as info:
        fleet_from_dict(data, tmp_path)
    message = str(info.value)
    assert message.startswith("generator.classes[1].scenario:")
    assert "channel.bandwith_hz: unknown key" in message  # the scenario's own message


def test_two_scenario_files_with_one_name_or_an_unsafe_name_are_refused(tmp_path: Path) -> None:
    text = (scenarios_dir() / "minilm-phone.toml").read_text()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "phone.toml").write_text(text)
    (tmp_path / "my phone.toml").write_text(text)
    twins = _explicit({"scenario": "a/phone.toml"}, {"scenario": "b/phone.toml"})
    with pytest.raises(FleetError, match=re.escape("devices[1].scenario: another scenario "
                                                   "file is also named 'phone'")):
        fleet_from_dict(twins, tmp_path)
    # the same file named two ways is one class
    same = fleet_from_dict(_explicit({"scenario": "a/phone.toml"},
                                     {"scenario": "b/../a/phone.toml"}), tmp_path)
    assert len(same.classes) == 1 and same.ids == ("phone-1", "phone-2")
    with pytest.raises(FleetError, match=re.escape("devices[0].scenario: the scenario file "
                                                   "name 'my phone'")):
        fleet_from_dict(_explicit({"scenario": "my phone.toml"}), tmp_path)


@pytest.mark.parametrize(("content", "words"), [
    (b"\xff\xfe[resources]\n", "not UTF-8"),
    (b"[resources\nbandwidth_hz = 1\n", "not valid TOML"),
    (b'name = "x"\n[resources]\nbandwidth_hz = 1e6\n', "resources.server_cycles_per_s"),
])
def test_a_fleet_file_that_is_not_a_fleet_is_named(tmp_path: Path, content: bytes,
                                                    words: str) -> None:
    file = tmp_path / "f.toml"
    file.write_bytes(content)
    with pytest.raises(FleetError, match=re.escape(words)) as info:
        load_fleet(file)
    assert str(info.value).startswith(str(file))


def test_a_missing_or_too_large_fleet_file_is_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="does not exist"):
        load_fleet(tmp_path / "none.toml")
    big = tmp_path / "big.toml"
    with big.open("wb") as handle:
        handle.truncate(MAX_FLEET_BYTES + 1)  # a sparse file: its size is all that is read
    with pytest.raises(FleetError, match="too large for a fleet file"):
        load_fleet(big)
