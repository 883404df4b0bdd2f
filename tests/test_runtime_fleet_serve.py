"""`laimco fleet-serve`: a fleet's decisions pruned once each, grouped by identical server part,
served by one MLServer process to one client per device (docs/runtime.md, "Serving a fleet").

The fleets here are built from the shipped MiniLM scenarios (phone, IoT, laptop; calibrated,
real weights) with equal shares: each device's decision is `laimco optimize`'s at B/N and F/N.
The grouping is checked against the saved weights themselves (tensor equality, independent of
the manifest hashes the code groups by); the live run against the dense model (every reply is
the device's own rows: a batch that mixed them up would show in the cosine of the float32
devices) and the byte count the quantizer predicts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from laimco.config import load_scenario
from laimco.fleet.fleet import DeviceClass, Fleet, SharedResources
from laimco.fleet.solution import FleetSolution
from laimco.optimize import solve
from laimco.runtime.fleet_serve import (
    FleetServeError,
    FleetServeOptions,
    check_devices,
    check_fleet_options,
    serve_fleet,
)

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("minilm-phone", "minilm-iot", "minilm-laptop")


def make_fleet(class_index: list[int], gains: list[float]) -> Fleet:
    """A fleet of the shipped MiniLM classes, 2 MHz of band and 0.2 GHz of server per device."""
    n = len(class_index)
    classes = tuple(DeviceClass(name, load_scenario(ROOT / "scenarios" / f"{name}.toml"))
                    for name in CLASSES)
    return Fleet("test-fleet", SharedResources(2e6 * n, 2e8 * n, 64.0), classes,
                 np.array(class_index, dtype=np.intp), np.array(gains, dtype=float),
                 np.ones(n), tuple(f"{CLASSES[c].removeprefix('minilm-')}-{i}"
                                   for i, c in enumerate(class_index)))


def equal_shares(fleet: Fleet) -> FleetSolution:
    """Every device at B/N and F/N with `laimco optimize`'s joint decision there."""
    n = fleet.n_devices
    bandwidth = np.full(n, fleet.resources.bandwidth_hz / n)
    cycles = np.full(n, fleet.resources.server_cycles_per_s / n)
    decisions = tuple(solve(fleet.device_scenario(u, bandwidth[u], cycles[u]))
                      for u in range(n))
    value = np.array([d.point.objective if d.point else np.inf for d in decisions])
    return FleetSolution(fleet, "sum", "equal-shares", bandwidth, cycles, value, decisions,
                         float(np.sum(fleet.weight * value)), None, 0.0)


def with_point(solution: FleetSolution, device: int, **changes: float) -> FleetSolution:
    """The solution with one device's operating point changed."""
    decisions = list(solution.decisions)
    decision = decisions[device]
    decisions[device] = dataclasses.replace(
        decision, point=dataclasses.replace(decision.point, **changes))
    return dataclasses.replace(solution, decisions=tuple(decisions))


def test_bad_options_name_what_to_change(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FleetServeError, match="not written by `laimco fleet-serve`"):
        check_fleet_options(FleetServeOptions(), tmp_path)
    with pytest.raises(FleetServeError, match="--devices 0: give at least 1"):
        check_fleet_options(FleetServeOptions(devices=0), tmp_path / "new")
    with pytest.raises(FleetServeError, match=r"--devices 7: give 1\.\.5"):
        check_devices(FleetServeOptions(devices=7), 5)
    with pytest.raises(FleetServeError, match="--duration-s -1"):
        check_fleet_options(FleetServeOptions(duration_s=-1), tmp_path / "new")


def test_cli_bad_input_exits_2_with_one_message(tmp_path):
    from laimco.cli import app

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "data.csv").write_text("1,2\n")
    runner = CliRunner()
    for args, message in (
            (["--out", str(tmp_path / "taken")], "was not written by"),
            (["--out", str(tmp_path / "new"), "--devices", "0"], "--devices 0"),
            (["--out", str(tmp_path / "new"), "--objective", "mean"], "--objective 'mean'")):
        result = runner.invoke(app, ["fleet-serve", str(tmp_path / "fleet.toml"), *args])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
        assert "Traceback" not in result.output
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_identical_server_parts_share_one_model_distinct_ones_do_not(tmp_path):
    """phone-0/phone-1 decide identically (same gain) → one folder, one model; phone-2 is
    given ρ_d 0.3, ρ_s 0.3 and phone-3 ρ_d 0.2, ρ_s 0.3 + 1e-7 (two folders, but pruning rounds
    every server matrix to the same count: the same server weights → one model); phone-4 is
    phone-0's decision with ρ_d + 1e-7 (the same weights: phone-0's folder); the IoT device
    splits elsewhere (another model); the laptop runs everything (no model) and has no share."""
    import torch
    from safetensors.torch import load_file

    from laimco.models.loading import load_model
    from laimco.profile import load_profile
    from laimco.runtime.fleet_parts import build_parts
    from laimco.runtime.pruned_folder import read_checked_manifest

    solution = equal_shares(make_fleet([0, 0, 0, 0, 0, 1, 2], [1e-7] * 7))
    solution = with_point(solution, 2, rho_device=0.3, rho_server=0.3)
    solution = with_point(solution, 3, rho_device=0.2, rho_server=0.3 + 1e-7)
    solution = with_point(solution, 4, rho_device=solution.decisions[0].point.rho_device + 1e-7)
    no_share = np.arange(7) == 6  # the laptop runs everything: a solver may give it nothing
    solution = dataclasses.replace(
        solution, bandwidth_hz=np.where(no_share, 0.0, solution.bandwidth_hz),
        server_cycles_per_s=np.where(no_share, 0.0, solution.server_cycles_per_s))
    parts, unserved = build_parts(solution, list(range(7)), load_model("minilm"),
                                  load_profile("minilm-l6"), tmp_path, None, lambda m: None)
    assert unserved == []
    assert [p.devices for p in parts.parts] == [(0, 1, 4), (2, 3), (5,)]
    assert [len(p.manifests) for p in parts.parts] == [1, 2, 1]
    assert parts.part_of(parts.devices[6]) is None and not parts.devices[6].remote
    assert parts.devices[6].rate_bps == 0.0
    folders = [parts.folders[d.folder].path for d in parts.devices]
    assert folders[0] == folders[1] == folders[4] and len(set(folders)) == 5
    assert len(list(tmp_path.iterdir())) == 5  # the duplicate's folder is not kept

    def weights(folder: Path, side: str) -> dict[str, torch.Tensor]:
        return load_file(folder / read_checked_manifest(folder).files[side].name)

    def equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert equal(weights(folders[2], "server"), weights(folders[3], "server"))
    assert not equal(weights(folders[2], "device"), weights(folders[3], "device"))
    assert not equal(weights(folders[0], "server"), weights(folders[2], "server"))
    hosted = [p.hosted(32, 0.005) for p in parts.parts]
    assert [h.max_batch_size for h in hosted] == [32, 32, 1]  # batching only where shared


@pytest.mark.slow
def test_short_fleet_run_has_no_failures_and_exact_bytes(tmp_path):
    """5 devices (2 phones at 6 bits sharing one part although phone-1's device part is pruned
    differently — two folders, one server part —, 2 IoT devices at float32 sharing another, a
    laptop at split L), 6 requests each through one server."""
    solution = equal_shares(make_fleet([0, 0, 1, 1, 2], [1e-7, 1e-7, 1e-8, 1e-7, 1e-7]))
    solution = with_point(solution, 1, rho_device=0.3)
    out = tmp_path / "run"
    report = serve_fleet(solution, out, FleetServeOptions(requests_per_device=6, sentences=8))
    assert report["status"] == "ok"
    assert report["requests"]["failed"] == 0 and report["requests"]["lost"] == 0
    assert report["requests"]["ok"] == report["requests"]["sent"] == 5 * 7  # + 1 warm-up each
    assert [p["devices"] for p in report["parts"]] == [["phone-0", "phone-1"],
                                                      ["iot-2", "iot-3"]]
    assert sum(p["requests"] for p in report["parts"]) == 4 * 6
    assert [p["folders"] for p in report["parts"]] == [2, 1]
    for device in report["devices"][:4]:
        upload = device["measured"]["upload"]
        # the quantizer's byte count, payload_bits(n, H)/8 per request, met to the byte
        assert upload["exact_requests"] == upload["requests"] == 7
        assert upload["activation_bytes_measured"] == upload["activation_bytes_predicted"]
    for device in report["devices"][2:4]:  # float32, dense server part: the dense model's rows
        assert device["measured"]["quality"]["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert report["devices"][4]["part"] is None
    for name in ("fleet_serve.json", "devices.csv", "latency.png", "latency.svg",
                 "fleet_serve.md", "requests.jsonl", "server.log"):
        assert (out / name).is_file(), name
    assert json.loads((out / "fleet_serve.json").read_text())["status"] == "ok"
    assert len((out / "devices.csv").read_text().splitlines()) == 6
    with pytest.raises(FleetServeError, match="--overwrite"):
        serve_fleet(solution, out, FleetServeOptions(requests_per_device=1))
