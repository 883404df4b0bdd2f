"""The fleet study (docs/study.md "Fleet"): it writes its JSON, report and figures; the report's
tables are the JSON's numbers; the JSON's numbers agree with independent computations (each
device's single-device solve at equal shares; a dual bound below every feasible division);
bad --sizes exit 2."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from figure_checks import assert_figure_is_drawn
from PIL import Image
from typer.testing import CliRunner

from laimco.experiments.commands import register
from laimco.experiments.study.fleet_study import (
    BANDWIDTH_HZ,
    CLASS_HEADER,
    METHODS,
    SERVER_CYCLES_PER_S,
    SIZE_HEADER,
    run_fleet_study,
    study_fleet,
)
from laimco.optimize.strategies import solve

pytestmark = pytest.mark.slow  # solves three fleets and draws four figures (~20–40 s)

SIZES = (2, 3, 6)
FIGURES = ("fleet_distortion_vs_n", "fleet_shares_vs_gain", "fleet_split_by_class",
           "fleet_solver_vs_n")
# the report writes 6 significant digits for objectives and bounds, 4 for ratios and worst D
REL_6, REL_4 = 1e-5, 1e-3


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("fleet-study")
    run_fleet_study(out, sizes=SIZES, max_rounds=4)
    return out, json.loads((out / "fleet_study.json").read_text(encoding="utf-8"))


def _table(report: str, header: list[str]) -> list[list[str]]:
    """The rows of the report's Markdown table whose header is `header`."""
    lines = report.splitlines()
    start = lines.index("| " + " | ".join(header) + " |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _close(text: str, value: float | None, rel: float) -> bool:
    if value is None or not math.isfinite(value):
        return text == "—"
    return float(text) == pytest.approx(value, rel=rel, abs=1e-12)


def test_study_writes_json_report_and_figures(written: tuple[Path, dict[str, Any]]) -> None:
    out, data = written
    assert [s["n_devices"] for s in data["sizes"]] == list(SIZES)
    report = (out / "fleet_report.md").read_text(encoding="utf-8")
    for name in FIGURES:
        png, svg = out / "figures" / f"{name}.png", out / "figures" / f"{name}.svg"
        with Image.open(png) as image:
            image.verify()
        assert_figure_is_drawn(png, svg)
        assert f"figures/{name}.png" in report


def test_report_rows_are_the_json_numbers(written: tuple[Path, dict[str, Any]]) -> None:
    out, data = written
    report = (out / "fleet_report.md").read_text(encoding="utf-8")
    rows = _table(report, SIZE_HEADER)
    assert len(rows) == len(data["sizes"])
    for row, size in zip(rows, data["sizes"], strict=True):
        got = dict(zip(SIZE_HEADER, row, strict=True))
        by = {o["method"]: o for o in size["outcomes"]}
        joint = by["joint"]["objective"]
        assert int(got["N"]) == size["n_devices"]
        assert _close(got["joint Σ D"], joint, REL_6)
        assert _close(got["bound"], size["dual_bound"], REL_6)
        assert _close(got["certified gap"], size["relative_gap"], 1e-2)
        for method in METHODS[1:]:
            other = by[method]["objective"]
            assert _close(got[f"{method} Σ D"], other, REL_6)
            want = 1.0 if other == joint else other / joint
            assert _close(got[f"{method} / joint"], want, REL_4)
        for method in METHODS:
            assert _close(got[f"worst D {method}"], by[method]["worst_distortion"], REL_4)
        assert got[SIZE_HEADER[-2]] == "/".join(str(by[m]["served"]) for m in METHODS)


def test_class_rows_are_counted_from_the_devices(written: tuple[Path, dict[str, Any]]) -> None:
    out, data = written
    report = (out / "fleet_report.md").read_text(encoding="utf-8")
    rows = _table(report, CLASS_HEADER)
    assert rows
    for row in rows:
        got = dict(zip(CLASS_HEADER, row, strict=True))
        group = [d for d in data["devices"]
                 if d["method"] == got["method"] and d["class_name"] == got["class"]]
        assert int(got["devices"]) == len(group)
        mean_mhz = np.mean([d["bandwidth_hz"] for d in group]) / 1e6
        assert _close(got["mean band MHz"], float(mean_mhz), REL_4)
        counts = Counter(d["split"] for d in group if d["split"] is not None)
        listed = {} if got["split: devices"] == "—" else {
            int(k): int(v) for k, v in (p.split(": ") for p in got["split: devices"].split(", "))}
        assert listed == dict(counts)
        assert int(got["not served"]) == sum(d["split"] is None for d in group)


def test_equal_shares_is_each_device_solved_alone_at_its_share(
        written: tuple[Path, dict[str, Any]]) -> None:
    """The JSON's equal-shares total for the largest fleet is Σ of `laimco optimize`'s
    objective on each device's scenario at B/N and F/N (rel 1e-9)."""
    _, data = written
    n = SIZES[-1]
    fleet = study_fleet(n, largest=n)  # the study drew SIZES[-1] devices
    total = 0.0
    for u in range(n):
        point = solve(fleet.device_scenario(u, BANDWIDTH_HZ / n, SERVER_CYCLES_PER_S / n)).point
        assert point is not None
        total += fleet.weight[u] * point.objective
    size = data["sizes"][-1]
    equal = next(o for o in size["outcomes"] if o["method"] == "equal-shares")
    assert equal["objective"] == pytest.approx(total, rel=1e-9, abs=1e-9)


def test_dual_bound_is_below_every_division_and_shares_fit(
        written: tuple[Path, dict[str, Any]]) -> None:
    """Every feasible division's objective is ≥ the optimum ≥ the certified bound; the
    solver's shares sum to at most the totals (rel 1e-9)."""
    _, data = written
    for size in data["sizes"]:
        for outcome in size["outcomes"]:
            assert size["dual_bound"] <= outcome["objective"] * (1 + 1e-9) + 1e-9
    joint = [d for d in data["devices"] if d["method"] == "joint"]
    assert sum(d["bandwidth_hz"] for d in joint) <= BANDWIDTH_HZ * (1 + 1e-9)
    assert sum(d["server_cycles_per_s"] for d in joint) <= SERVER_CYCLES_PER_S * (1 + 1e-9)


@pytest.mark.parametrize("sizes", ["4,2", "0,3", "x", ""])
def test_bad_sizes_exit_2_naming_the_option(sizes: str, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["fleet-study", "--out", str(tmp_path), "--sizes", sizes])
    assert result.exit_code == 2
    assert "--sizes" in result.output
