"""The activation width as a decision (docs/theory.md §6): the optimizer against a brute-force
search over (width, split, ratios, time split) written from eqs. 6.1 and 6.5, the scenario's
[uplink] keys and their errors, and the limits' monotonicity in the width that the infeasibility
diagnosis relies on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scenario_factory import RuleReference
from test_optimizer_bruteforce import grid_search

from laimco.config import ScenarioError, load_scenario
from laimco.optimize import solve
from laimco.optimize.problem import activation_bit_choices, build_problem
from laimco.optimize.ratios import separate_ratios
from laimco.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = [32, 16, 8, 6, 4, 2]


def _scenario(name: str, **uplink: object):  # type: ignore[no-untyped-def]
    sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    sc = sc.replace(distortion={"rules": ["structured"]})
    return sc.replace(uplink=uplink) if uplink else sc


@pytest.mark.parametrize("name", ["minilm-phone", "minilm-iot", "minilm-phone-poor-channel"])
def test_no_grid_point_over_width_split_and_ratios_beats_the_optimizer(name: str) -> None:
    """A zooming grid over (ρ_d, ρ_s, time split) at every (width, split), each with its own
    payload (eq. 6.1) and D_q (eq. 6.5) from `RuleReference`: nothing it finds beats `solve` by
    more than 1e-6 relative, and `solve`'s objective is within the grid's resolution (2 %) of
    the grid's best."""
    sc = _scenario(name)
    profile = load_profile(sc.model.profile)
    pair = ("structured", "structured")
    found = {}
    for bits in WIDTHS:
        ref = RuleReference(sc, profile, pair, bits)
        for s in range(ref.L + 1):
            point = grid_search(ref, s, ref.design_gain())
            found[(bits, s)] = point.objective + ref.quantization[s]
    best = min(found.values())
    decision = solve(sc, profile=profile)
    assert decision.point is not None and math.isfinite(best)
    opt = decision.point.objective
    assert best >= opt * (1 - 1e-6), (name, best, opt)
    assert opt <= best * 1.02 + 1e-12, (name, best, opt)
    bits = decision.point.activation_bits or 32
    assert found[(bits, decision.point.split)] <= best * 1.02 + 1e-12
    print(f"{name}: optimizer {opt:.6g} at (b={bits}, s={decision.point.split}); grid best "
          f"{best:.6g} at {min(found, key=found.__getitem__)}")


def test_compression_never_raises_the_optimum_and_float32_only_is_the_old_problem() -> None:
    """Holds by construction (more choices), labelled so: with every width allowed the optimum
    is at most that of float32 alone; and [32] alone gives exactly the problem without the
    uplink section (same upload bits as the profile's split table)."""
    sc = _scenario("minilm-phone")
    profile = load_profile(sc.model.profile)
    plain = sc.replace(uplink={"activation_bits": [32]})
    compressed, float32 = solve(sc, profile=profile), solve(plain, profile=profile)
    assert compressed.point.objective <= float32.point.objective
    problem = build_problem(plain, profile, rules=("structured", "structured"))
    np.testing.assert_array_equal(problem.upload_bits, profile.split_table().upload_bits)


@pytest.mark.parametrize("latency_budget_s", [0.02, 0.05, 0.1, 0.2, 0.4])
def test_the_least_upload_width_is_feasible_wherever_any_width_is(latency_budget_s: float) -> None:
    """The infeasibility diagnosis looks at the width sending fewest bits (docs/theory.md
    §6.3): at every split, if some width is feasible, so is that one."""
    sc = _scenario("minilm-phone").replace(task={"latency_budget_s": latency_budget_s})
    profile = load_profile(sc.model.profile)
    feasible = {}
    for bits in activation_bit_choices(sc, profile):
        problem = build_problem(sc, profile, rules=("structured", "structured"),
                                activation_bits=bits)
        feasible[bits] = (np.asarray(separate_ratios(problem).feasible), problem.upload_bits)
    least = min(feasible, key=lambda b: feasible[b][1].sum())
    assert all(np.all(feasible[least][1] <= up) for _, up in feasible.values())
    any_width = np.any([f for f, _ in feasible.values()], axis=0)
    np.testing.assert_array_equal(feasible[least][0], any_width)


def test_uplink_keys_are_checked_with_what_is_allowed(tmp_path: Path) -> None:
    sc = load_scenario(ROOT / "scenarios" / "minilm-phone.toml")
    with pytest.raises(ScenarioError, match="5 bits is not supported: choose among 32, 16"):
        sc.replace(uplink={"activation_bits": [8, 5]})
    with pytest.raises(ScenarioError, match="lists a width twice"):
        sc.replace(uplink={"activation_bits": [8, 8]})
    with pytest.raises(ScenarioError, match="'none' or 'zstd'"):
        sc.replace(uplink={"coding": "gzip"})
    profile = load_profile(sc.model.profile)
    assert activation_bit_choices(sc, profile) == WIDTHS
    paper = load_scenario(ROOT / "scenarios" / "paper-minilm-phone.toml")
    assert activation_bit_choices(paper, profile) == [32]
    bare = profile_without_uplink(profile)
    with pytest.raises(ScenarioError, match="laimco analyze"):
        activation_bit_choices(sc.replace(uplink={"activation_bits": [8]}), bare)
    assert activation_bit_choices(sc, bare) == [32]


def profile_without_uplink(profile):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(profile, uplink=None)


def test_zstd_costs_the_profiles_mean_ratio() -> None:
    sc = _scenario("minilm-phone", coding="zstd")
    profile = load_profile(sc.model.profile)
    assert profile.uplink is not None
    coded = build_problem(sc, profile, activation_bits=8)
    plain = build_problem(_scenario("minilm-phone"), profile, activation_bits=8)
    mask = plain.upload_bits - 128 * (384 + 4) * 8  # the attention mask as the profile counts it
    for s in range(1, profile.n_units):
        ratio = profile.uplink.zstd_ratio[s, list(profile.uplink.bits).index(8)]
        assert coded.upload_bits[s] == pytest.approx(
            (plain.upload_bits[s] - mask[s]) * ratio + mask[s], rel=1e-12)
