"""The fleets the fleet study and benchmark solve: the shipped city fleet
(fleets/city-1000.toml: paper-mode phones, IoT boards and laptops 60/25/15 %, UMi distances
10–1000 m over the area, 3GPP LOS, Rayleigh fading; 1 MHz and 1.5e8 cycles/s per device) at
any size, loaded by the fleet-file loader itself (docs/study.md "Fleet").

`city_fleet(n)` is that file with its class counts and totals scaled to n devices and seed n,
so n = 1,000, 10,000 and 100,000 give exactly the shipped city-1000/10000/100000 fleets.
"""

from __future__ import annotations

import tomllib

import numpy as np

from laimco.examples import fleets_dir, scenarios_dir
from laimco.fleet.fleet import Fleet, SharedResources
from laimco.fleet.fleet_file import fleet_from_dict

TEMPLATE = "city-1000.toml"
TEMPLATE_DEVICES = 1000


def city_fleet(n_devices: int, seed: int | None = None,
               radius_m: float | None = None) -> Fleet:
    """The city fleet of n devices: each class's count scaled from the template (rounded; the
    first class takes the remainder), band and server cycles scaled by n/1000, generator seed
    `seed` (default n), devices out to `radius_m` (default the template's 1000 m)."""
    data = tomllib.loads((fleets_dir() / TEMPLATE).read_text(encoding="utf-8"))
    scale = n_devices / TEMPLATE_DEVICES
    classes = data["generator"]["classes"]
    counts = [round(c["count"] * scale) for c in classes[1:]]
    counts.insert(0, n_devices - sum(counts))
    if min(counts) < 0:
        raise ValueError(f"{n_devices} devices cannot keep the template's class mix")
    data["generator"]["classes"] = [{**c, "count": k} for c, k in zip(classes, counts,
                                                                      strict=True) if k > 0]
    data["generator"]["seed"] = n_devices if seed is None else seed
    if radius_m is not None:
        data["generator"]["distance_m"]["max"] = radius_m
    for key in ("bandwidth_hz", "server_cycles_per_s"):  # the server's memory stays
        data["resources"][key] = data["resources"][key] * scale
    data["name"] = f"city-{n_devices}"
    return fleet_from_dict(data, scenarios_dir(), default_name=data["name"])


def nested_fleet(n_devices: int, largest: int, seed: int, resources: SharedResources,
                 radius_m: float | None = None) -> Fleet:
    """The first n of `largest` city devices drawn with `seed` (out to `radius_m`), in a seeded
    random order (the generator lists the devices class by class), sharing `resources`: the
    fleets of growing n are nested."""
    cell = city_fleet(largest, seed, radius_m)
    order = np.random.default_rng(seed).permutation(largest)[:n_devices]
    fleet = cell.subset(np.sort(order), name=f"city-{n_devices}-of-{largest}")
    return Fleet(name=fleet.name, resources=resources, classes=fleet.classes,
                 class_index=fleet.class_index, path_gain=fleet.path_gain, weight=fleet.weight,
                 ids=fleet.ids, objective=fleet.objective)
