"""The fleets the fleet study and benchmark solve: the paper-mode device classes (phone, IoT
board, laptop) dropped around one 3.5 GHz base station (docs/study.md "Fleet").

Device u: class drawn with CLASS_MIX, ground distance uniform over the cell's area
(d = √(U·(d_max² − d_min²) + d_min²)), mean gain from the 3GPP TR 38.901 UMi street-canyon LOS
path loss (laimco.system.pathloss), times a Rayleigh power |h|² ~ Exp(1); weight 1. All draws
from `numpy.random.default_rng(seed)`, so a (n, seed) pair is one fleet.
"""

from __future__ import annotations

import numpy as np

from laimco.config import load_scenario
from laimco.examples import scenarios_dir
from laimco.fleet.fleet import DeviceClass, Fleet, SharedResources
from laimco.system.pathloss import UmiStreetCanyon

PAPER_CLASSES = ("paper-minilm-phone", "paper-minilm-iot", "paper-minilm-laptop")
CLASS_MIX = (0.60, 0.25, 0.15)
CELL_RADIUS_M = (10.0, 200.0)
CARRIER_GHZ = 3.5
# per-device share of the totals when they grow with N (the shipped campus fleets' ratio)
BANDWIDTH_PER_DEVICE_HZ = 1.0e6
SERVER_CYCLES_PER_DEVICE = 1.5e8
SERVER_FLOPS_PER_CYCLE = 64.0


def paper_classes(names: tuple[str, ...] = PAPER_CLASSES) -> tuple[DeviceClass, ...]:
    """The shipped scenarios of those names as device classes."""
    folder = scenarios_dir()
    return tuple(DeviceClass(name, load_scenario(folder / f"{name}.toml")) for name in names)


def umi_gains(distance_m: np.ndarray) -> np.ndarray:
    """UMi LOS mean power gain at each ground distance (m)."""
    model = UmiStreetCanyon(carrier_ghz=CARRIER_GHZ)
    return np.array([model.path_gain(float(d)) for d in distance_m])


def cell_fleet(n_devices: int, seed: int, resources: SharedResources | None = None,
               classes: tuple[DeviceClass, ...] | None = None) -> Fleet:
    """n devices of the paper classes in one cell (module docstring); `resources` default to
    BANDWIDTH_PER_DEVICE_HZ and SERVER_CYCLES_PER_DEVICE per device (totals ∝ N)."""
    classes = classes or paper_classes()
    rng = np.random.default_rng(seed)
    mix = np.asarray(CLASS_MIX[:len(classes)])
    class_index = rng.choice(len(classes), size=n_devices, p=mix / mix.sum()).astype(np.intp)
    low, high = CELL_RADIUS_M
    distance_m = np.sqrt(rng.random(n_devices) * (high**2 - low**2) + low**2)
    gain = umi_gains(distance_m) * rng.standard_exponential(n_devices)
    resources = resources or SharedResources(
        bandwidth_hz=BANDWIDTH_PER_DEVICE_HZ * n_devices,
        server_cycles_per_s=SERVER_CYCLES_PER_DEVICE * n_devices,
        server_flops_per_cycle=SERVER_FLOPS_PER_CYCLE)
    short = [c.name.removeprefix("paper-minilm-") for c in classes]
    return Fleet(name=f"cell-{n_devices}-seed{seed}", resources=resources, classes=classes,
                 class_index=class_index, path_gain=np.maximum(gain, 1e-20),
                 weight=np.ones(n_devices),
                 ids=tuple(f"{short[c]}-{u}" for u, c in enumerate(class_index)))
