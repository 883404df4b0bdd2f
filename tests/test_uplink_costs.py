"""The profile's "uplink" section: validation (errors name the key path) and the typed
`UplinkCosts` the optimizer reads (laimco.uplink_costs)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import numpy as np
import pytest

from laimco.profile import ProfileError, load_profile, profile_from_dict
from laimco.uplink.quantizer import QuantizerSettings
from laimco.uplink_costs import UplinkCostError, parse_uplink

BITS = [32, 16, 8, 6, 4, 2]


def _section(n_units: int = 4) -> dict[str, Any]:
    """A well-formed section for an n_units model: value of split s at width column j is
    s + j/10 (distortion), so every cell is identifiable."""
    splits = []
    for s in range(1, n_units):
        splits.append({
            "split": s, "hidden": 8 * s,
            "clip": [1.0, 1.0, 1.0, 0.9, 0.7, 0.4],
            "activation_mse": [0.0] + [s * 1e-3 * 2 ** j for j in range(5)],
            "activation_mse_law": [0.0] + [s * 1.1e-3 * 2 ** j for j in range(5)],
            "output_distortion": [0.0] + [s + j / 10 for j in range(1, 6)],
            "zstd_ratio": [0.9, 0.9, 0.8, 0.85, 0.7, 0.6]})
    return {"granularity": "token", "calibration_inputs": 4, "calibration_tokens": 40,
            "bits": list(BITS), "splits": splits}


def _shipped() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (resources.files("laimco") / "profiles" / "minilm-l6.json").read_text())
    return data


def test_parsed_arrays_are_indexed_by_split_with_defaults_where_nothing_crosses() -> None:
    costs = parse_uplink(_section(4), 4)
    assert costs.bits == tuple(BITS)
    assert costs.hidden.tolist() == [0, 8, 16, 24, 0]
    assert costs.clip.shape == (5, 6)
    # rows 0 and L: nothing crosses
    for row in (0, 4):
        assert costs.clip[row].tolist() == [1.0] * 6
        assert costs.zstd_ratio[row].tolist() == [1.0] * 6
        assert costs.output_distortion[row].tolist() == [0.0] * 6
    assert costs.distortion(6).tolist() == pytest.approx([0.0, 1.3, 2.3, 3.3, 0.0])
    assert costs.distortion(32).tolist() == [0.0] * 5
    assert costs.coded_ratio(4).tolist() == pytest.approx([1.0, 0.7, 0.7, 0.7, 1.0])
    assert costs.column(2) == 5
    assert costs.settings(2, 4) == QuantizerSettings(4, "token", 0.7)
    assert not costs.output_distortion.flags.writeable


def test_an_unmeasured_width_is_refused_naming_the_measured_ones() -> None:
    section = _section(4)
    section["bits"] = [32, 8]
    for entry in section["splits"]:
        for key in ("clip", "activation_mse", "activation_mse_law", "output_distortion",
                    "zstd_ratio"):
            entry[key] = entry[key][:1] + entry[key][2:3]
    costs = parse_uplink(section, 4)
    with pytest.raises(UplinkCostError, match="measured widths are 32, 8"):
        costs.column(4)


def _broken(path: str, value: Any) -> dict[str, Any]:
    """The shipped profile with one key of its uplink section replaced (path like
    'splits.0.activation_mse.2')."""
    data = _section(8)
    node: Any = data
    *head, last = path.split(".")
    for part in head:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    profile = copy.deepcopy(_shipped())
    profile["uplink"] = data
    return profile


@pytest.mark.parametrize(("path", "value", "key"), [
    ("splits.0.clip", [1.0, 1.0, 1.0, 0.9, 0.7], r"uplink\.splits\[0\]\.clip has 5 values"),
    ("splits.1.split", 0, r"uplink\.splits\[1\]\.split"),
    ("splits.2.activation_mse.3", -1e-3, r"uplink\.splits\[2\]\.activation_mse\[3\]"),
    ("splits.2.output_distortion.3", float("nan"), r"uplink\.splits\[2\]\.output_distortion\[3\]"),
    ("splits.0.clip.4", 1.5, r"uplink\.splits\[0\]\.clip\[4\]"),
    ("splits.0.zstd_ratio.4", 0.0, r"uplink\.splits\[0\]\.zstd_ratio\[4\]"),
    ("splits.3.split", 8, r"uplink\.splits\[3\]\.split = 8: .*splits 1\.\.7"),
    ("splits.3.split", 3, r"uplink\.splits\[3\]\.split = 3 appears twice"),
    ("bits.2", 7, r"bits\[2\] = 7 is not a supported width"),
    ("granularity", "channel", r"uplink\.granularity"),
    ("splits.0.output_distortion.0", 0.5, r"output_distortion is not 0 at 32 bits"),
])
def test_a_bad_uplink_section_is_refused_naming_the_key(path: str, value: Any,
                                                        key: str) -> None:
    with pytest.raises(ProfileError, match=key):
        profile_from_dict(_broken(path, value))


def test_a_missing_split_is_refused() -> None:
    profile = copy.deepcopy(_shipped())
    profile["uplink"] = _section(8)
    del profile["uplink"]["splits"][4]
    with pytest.raises(ProfileError, match=r"no entry for split\(s\) 5"):
        profile_from_dict(profile)


def test_shipped_profile_carries_the_uplink_and_round_trips() -> None:
    data = _shipped()
    profile = load_profile("minilm-l6")
    costs = profile.uplink
    assert costs is not None
    assert costs.bits == (32, 16, 8, 6, 4, 2)
    assert costs.hidden.tolist() == [0] + [384] * 7 + [0]
    # the typed arrays hold exactly the file's numbers (an independent read of the JSON)
    for entry in data["uplink"]["splits"]:
        s = entry["split"]
        for name in ("clip", "activation_mse", "activation_mse_law", "output_distortion",
                     "zstd_ratio"):
            np.testing.assert_array_equal(getattr(costs, name)[s], entry[name])
    again = profile_from_dict(json.loads(json.dumps(data)))
    assert again.uplink is not None
    np.testing.assert_array_equal(again.uplink.output_distortion, costs.output_distortion)
    del data["uplink"]
    assert profile_from_dict(data).uplink is None
