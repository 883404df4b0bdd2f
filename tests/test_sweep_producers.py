"""The sweep's row producers and tables: the registry names the kinds it knows when asked for
another; a fading row is the decision `laimco.optimize.solve` makes at that realization's gain,
tie-break included; a CSV table read with the csv module holds the Parquet table's values."""

from __future__ import annotations

import csv
import math
import typing
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from laimco.config import load_scenario
from laimco.experiments.sweep import (
    SweepError,
    kinds,
    load_sweep,
    producer_for,
    read_table,
    run_sweep,
)
from laimco.experiments.sweep.file_model import Kind
from laimco.experiments.sweep.producers.fading import per_split_solutions
from laimco.optimize import StrategyOptions, solve
from laimco.optimize.decision import TIE_TOL
from laimco.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
PHONE = ROOT / "scenarios" / "minilm-phone.toml"
RAYLEIGH = ROOT / "scenarios" / "paper-minilm-phone-rayleigh.toml"
PAPER_LAPTOP = ROOT / "scenarios" / "paper-minilm-laptop.toml"
LAPTOP = ROOT / "scenarios" / "minilm-laptop.toml"


def test_every_kind_of_the_file_model_has_a_producer_and_no_other() -> None:
    assert set(kinds()) == set(typing.get_args(Kind))
    for kind in kinds():
        assert producer_for(kind).kind == kind


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(SweepError, match=r"unknown sweep kind 'montecarlo': choose one of "
                                         r".*design.*fading.*robust"):
        producer_for("montecarlo")


@pytest.mark.slow  # runs sweeps
@pytest.mark.parametrize("scenario_file", [
    PAPER_LAPTOP,  # fixed-ratio ties at splits 7 and 8; solve takes 8 (less energy)
    LAPTOP,  # calibrated: ties across splits and rule pairs
])
def test_fading_rows_are_solve_at_each_gain_including_its_tie_break(
        tmp_path: Path, scenario_file: Path) -> None:
    """Each row holds the decision `solve` makes at that realization's gain, also where
    several candidates tie for the least objective (its tie-break: least device energy)."""
    strategy = "fixed-ratio"
    file = tmp_path / "f.toml"
    file.write_text(f'[sweep]\nbase = "{scenario_file}"\nkind = "fading"\n'
                    f'strategies = ["{strategy}"]\nrealizations = 15\nseed = 3\n'
                    '[options]\nratio = 0.5\n[set]\n"channel.fading" = "rayleigh"\n'
                    '"channel.outage_prob" = 0.1\n'
                    '[axes]\n"channel.path_gain" = [1e-7, 1e-10]\n')
    table = read_table(run_sweep(load_sweep(file), tmp_path / "out", progress=False)
                       .table.parent)
    base = load_scenario(scenario_file).replace(channel={"fading": "rayleigh",
                                                         "outage_prob": 0.1})
    profile = load_profile(base.model.profile)
    options = StrategyOptions(ratio=0.5)
    # the test must reach the tie-break: some realizations have several least candidates
    objective, _, _ = per_split_solutions(base, profile, strategy, options, table["gain"])
    objective = objective.reshape(table["gain"].size, -1)
    best = objective.min(axis=1, keepdims=True)
    candidates = objective <= best + TIE_TOL * np.abs(best)
    assert (candidates.sum(axis=1) > 1).sum() >= 5
    lowest_tied = np.argmax(candidates, axis=1) % (profile.n_units + 1)
    moved = 0
    for i in range(len(table["point"])):
        at_gain = base.replace(channel={"fading": "none", "path_gain": float(table["gain"][i])})
        d = solve(at_gain, strategy, profile=profile, options=options)
        assert d.success == bool(table["feasible"][i])
        if not d.success:
            assert math.isnan(table["split"][i])
            continue
        assert table["split"][i] == d.point.split
        assert table["rho_device"][i] == pytest.approx(d.point.rho_device, rel=1e-9, abs=1e-12)
        assert table["rho_server"][i] == pytest.approx(d.point.rho_server, rel=1e-9, abs=1e-12)
        assert table["objective"][i] == pytest.approx(d.point.objective, rel=1e-9)
        moved += candidates[i].sum() > 1 and d.point.split != lowest_tied[i]
    # on these data solve's rule (least energy) is not "the lowest tied split"
    assert moved >= 1


def _csv_values(path: Path) -> dict[str, list[object]]:
    """A CSV table read with the csv module alone (names, types, rows)."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        names, types = next(reader), next(reader)
        rows = list(reader)
    parse = {"float64": float, "int64": int, "Int64": lambda v: int(v) if v else None,
             "bool": {"true": True, "false": False}.__getitem__, "string": str}
    return {n: [parse[t](row[i]) for row in rows]  # type: ignore[operator]
            for i, (n, t) in enumerate(zip(names, types, strict=True))}


@pytest.mark.slow  # runs sweeps
def test_csv_table_holds_the_parquet_values_read_independently(tmp_path: Path) -> None:
    file = tmp_path / "d.toml"
    file.write_text(f'[sweep]\nbase = "{PHONE}"\nstrategies = ["joint", "on-server"]\n'
                    '[axes]\n"task.latency_budget_s" = [0.02, 0.3]\n'
                    '"channel.path_gain" = [1e-7, 1e-10]\n')
    spec = load_sweep(file)
    parquet = pq.read_table(run_sweep(spec, tmp_path / "pq", progress=False).table)
    csv_values = _csv_values(run_sweep(spec, tmp_path / "csv", fmt="csv",
                                       progress=False).table)
    assert list(csv_values) == parquet.column_names
    assert not all(parquet.column("feasible").to_pylist())  # a null split is covered
    for name in parquet.column_names:
        expected = parquet.column(name).to_pylist()
        got = csv_values[name]
        if parquet.schema.field(name).type == "double":
            np.testing.assert_array_equal(np.array(got, dtype=float),
                                          np.array(expected, dtype=float), err_msg=name)
        else:
            assert got == expected, name


def _uplink_bits_eq_6_1(split_table_bits: float, tokens: int, hidden: int, bits: float) -> float:
    """Eq. 6.1 written out: 8·n·⌈H·b/8⌉ codes + 32·n per-token scales (b ≤ 8) + the attention
    mask (the float32 upload minus its 32·n·H activation bits)."""
    mask_bits = split_table_bits - 32 * tokens * hidden
    codes = 8 * tokens * math.ceil(hidden * bits / 8)
    scales = 32 * tokens if bits <= 8 else 0
    return codes + scales + mask_bits


@pytest.mark.slow  # runs sweeps
def test_design_rows_record_the_chosen_width_and_its_upload_bits(tmp_path: Path) -> None:
    """activation_bits is one of the allowed widths wherever an activation crosses (null at
    s = 0, s = L or infeasible), and uplink_bits is eq. 6.1 for it; with [set] widths = [32]
    every crossing row sends float32."""
    profile = load_profile(load_scenario(PHONE).model.profile)
    float32_bits = profile.split_table().upload_bits
    tokens = profile.seq_len
    assert tokens is not None
    for allowed in ([32, 8, 4], [32]):
        file = tmp_path / f"w{len(allowed)}.toml"
        file.write_text(f'[sweep]\nbase = "{PHONE}"\nstrategies = ["joint", "on-device"]\n'
                        f'[set]\n"uplink.activation_bits" = {allowed}\n'
                        '[axes]\n"channel.path_gain" = [1e-7, 1e-11, 1e-13]\n'
                        '"task.latency_budget_s" = [0.2, 0.01]\n')
        run_sweep(load_sweep(file), tmp_path / file.stem, progress=False)
        t = read_table(tmp_path / file.stem)
        crossing = t["feasible"] & (t["split"] >= 1) & (t["split"] < profile.n_units)
        assert crossing.any() and (~t["feasible"]).any()
        assert np.isnan(t["activation_bits"][~crossing]).all()
        assert set(t["activation_bits"][crossing]) <= set(allowed)
        if allowed == [32]:
            assert (t["activation_bits"][crossing] == 32).all()
        else:
            assert (t["activation_bits"][crossing] < 32).any()
        for s, b, u in zip(t["split"][crossing], t["activation_bits"][crossing],
                           t["uplink_bits"][crossing], strict=True):
            hidden = int(profile.uplink.hidden[int(s)]) if profile.uplink else 0
            expected = _uplink_bits_eq_6_1(float(float32_bits[int(s)]), tokens, hidden, b)
            assert u == pytest.approx(expected, rel=1e-12), (s, b)
