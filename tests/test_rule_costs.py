"""Rule-aware costs (docs/theory.md §5): the measured curves against the pruning code that
executes them, the calibrated optimizer against a brute force written from eqs. 5.4–5.6, and
the calibrated mode's errors."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from laimco.config import ScenarioError, load_scenario, scenario_from_dict
from laimco.optimize import solve
from laimco.profile import ProfileError, load_profile, profile_from_dict
from laimco.theory.distortion import EmpiricalLaw

ROOT = Path(__file__).resolve().parents[1]
PHONE = ROOT / "scenarios" / "minilm-phone.toml"


# ------------------------------------------------------- curves vs the executed pruning code
@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    from laimco.models.loading import load_model

    return load_model("minilm")


@pytest.mark.parametrize("rule", ["magnitude", "wanda", "structured"])
def test_block_curve_equals_the_distortion_of_the_executed_rule(minilm, rule: str) -> None:
    """D(ρ) from the sorted weights equals what pruning the block with the real rule removes:
    magnitude ‖w − ŵ‖², Wanda Σ((w − ŵ)·‖x‖)², structured the energy of the removed rows and
    columns (each recomputed from the pruned tensors, 1e-9 relative)."""
    from laimco.measure.rule_measurement import _prune_block, block_distortion_curve
    from laimco.models.split import block_modules
    from laimco.pruning import linear_weights

    block = block_modules(minilm.model, minilm.family)[2]
    generator = torch.Generator().manual_seed(1)
    norms = {name: torch.rand(w.shape[1], generator=generator) + 0.5
             for name, w in linear_weights(block).items()}
    for rho in (0.2, 0.55):
        predicted = block_distortion_curve(block, minilm.family, rule, norms,
                                           np.array([rho]))[0]
        pruned = copy.deepcopy(block)
        _prune_block(pruned, minilm.family, rule, rho, norms)
        before = {k: w.detach().double() for k, w in linear_weights(block).items()}
        after = {k: w.detach().double() for k, w in linear_weights(pruned).items()}
        if rule == "structured":  # removed energy = total energy before − total kept
            measured = sum(float((w * w).sum()) for w in before.values()) - sum(
                float((w * w).sum()) for w in after.values())
        elif rule == "wanda":
            measured = sum(float((((before[k] - after[k]) * norms[k].double()[None, :]) ** 2)
                                 .sum()) for k in before)
        else:
            measured = sum(float(((before[k] - after[k]) ** 2).sum()) for k in before)
        assert predicted == pytest.approx(measured, rel=1e-9)


def test_builtin_profile_rules_are_convex_and_cover_every_block() -> None:
    profile = load_profile("minilm-l6")
    assert set(profile.rules) == {"magnitude", "wanda", "structured", "magnitude-csr"}
    for costs in profile.rules.values():
        prunable = profile.column("n_prunable") > 0
        assert (costs.sensitivity[prunable] > 0).all()
        assert (np.diff(costs.slope_tables, axis=1) >= 0).all()
    # structured pruning shrinks the matrices: measured slope near 1 (timed, so loose)
    assert profile.rules["structured"].execution_slope.max() > 0.7
    assert profile.rules["structured"].storage == "shrunk"
    assert profile.rules["magnitude"].storage == "dense"


# ----------------------------------------------------- optimizer vs brute force (eqs. 5.4–5.6)
def _brute_force(scenario_path: Path, rules: list[str], grid: int = 41) -> float:
    """Least objective over splits, rule pairs and a (ρ_d, ρ_s) grid, with power and device
    frequency chosen by a dense search over the upload time: everything from the scenario and
    the profile's numbers, none of laimco's solver or cost code."""
    sc = load_scenario(scenario_path)
    profile = load_profile(sc.model.profile)
    L = profile.n_units
    n = profile.column("n_prunable")
    fp, ff = profile.column("flops_prunable"), profile.column("flops_fixed")
    bits = np.concatenate([[profile.input_bits], profile.column("out_bits")[:-1], [0.0]])
    d, srv, ch, task = sc.device, sc.server, sc.channel, sc.task
    noise = ch.noise_psd_w_per_hz * ch.bandwidth_hz / ch.path_gain
    rhos = np.linspace(0.0, task.rho_max, grid)
    best = np.inf
    for (rd, rs), s in itertools.product(itertools.product(rules, rules), range(L + 1)):
        if s < task.min_split:
            continue
        dev = np.arange(L) < s
        cd, cs = profile.rules[rd], profile.rules[rs]

        def side(costs, mask, rho):  # type: ignore[no-untyped-def]
            law = EmpiricalLaw(np.sqrt(costs.slope_tables[mask & (n > 0)]))
            w = costs.sensitivity[mask & (n > 0)] * n[mask & (n > 0)]
            return np.array([float((law.delta(r) * w).sum()) for r in rho])

        obj_d, obj_s = side(cd, dev, rhos), side(cs, ~dev, rhos)
        # eq. 5.4: F = Ff + (1 − a·ρ)·Fp per unit, summed over each side's units
        # eq. 5.4: F = Ff + (b − a·ρ)·Fp per unit, summed over each side's units
        cycles_d = [float(((ff + (cd.execution_intercept - cd.execution_slope * r) * fp)[dev])
                          .sum()) / d.flops_per_cycle for r in rhos]
        server_s = [float(((ff + (cs.execution_intercept - cs.execution_slope * r) * fp)[~dev])
                          .sum()) / (srv.flops_per_cycle * srv.cpu_freq_max_hz) for r in rhos]
        bpw = sc.model.bytes_per_weight
        n_fixed = profile.column("n_fixed")[dev].sum()
        # eq. 5.6: dense stores every weight, shrunk the kept ones, CSR kept ones + int64 index
        per_kept = {"dense": 0.0, "shrunk": bpw, "csr": bpw + 8.0}[cd.storage]
        always = (n[dev].sum() * bpw if cd.storage == "dense" else 0.0) + n_fixed * bpw
        for i, j in itertools.product(range(grid), range(grid)):
            r_d = rhos[i]
            if d.memory_bytes is not None:
                stored = always + (1 - r_d) * n[dev].sum() * per_kept
                if stored > d.memory_bytes:
                    continue
            left = task.latency_budget_s - task.downlink_s - server_s[j]
            c = cycles_d[i]
            if left <= 0:
                continue
            # split the time between compute and upload; least energy over a dense grid
            t_up = np.linspace(1e-6, 1, 4000) * left if bits[s] > 0 else np.array([0.0])
            t_cmp = left - t_up
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                f = np.where(c > 0, c / t_cmp, 0.0)
                p = np.where(bits[s] > 0, noise * (2 ** (bits[s] / (ch.bandwidth_hz * t_up)) - 1),
                             0.0)
                e = d.kappa * c * f ** 2 + p * t_up
            ok = (f <= d.cpu_freq_max_hz * (1 + 1e-12)) & (p <= d.tx_power_max_w) & (
                e <= d.energy_budget_j)
            if ok.any():
                best = min(best, obj_d[i] + obj_s[j])
    return best


@pytest.mark.parametrize("name", ["minilm-phone", "minilm-laptop"])
def test_calibrated_joint_is_at_least_as_good_as_a_brute_force_grid(name: str) -> None:
    """The exact solver over (split, rule pair, ratios, power, frequency) is never worse than a
    41×41 ratio grid per (split, rule pair) searched independently, and the grid, being coarse,
    comes within a few percent of it (its step bounds the gap)."""
    path = ROOT / "scenarios" / f"{name}.toml"
    decision = solve(load_scenario(path))
    brute = _brute_force(path, ["magnitude", "wanda", "structured", "magnitude-csr"])
    assert decision.success and np.isfinite(brute)
    assert decision.objective <= brute * (1 + 1e-9)
    assert decision.objective >= brute * 0.85


def test_unstructured_rules_never_prune_where_pruning_saves_nothing() -> None:
    """With dense-kernel costs (execution slope ≈ 0) and dense storage, pruning a side only adds
    distortion, so a decision restricted to magnitude prunes by (almost) nothing on a side
    whose pruning buys no time (here: laptop, everything fits)."""
    sc = load_scenario(ROOT / "scenarios" / "minilm-laptop.toml").replace(
        distortion={"rules": ["magnitude"]}, task={"latency_budget_s": 10.0})
    decision = solve(sc)
    assert decision.success
    assert decision.rho_device == pytest.approx(0.0, abs=1e-6)
    assert decision.rho_server == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------- the CSR execution rule
def test_csr_layers_compute_the_masked_dense_product_and_save_as_dense(minilm, tmp_path) -> None:
    """magnitude-csr removes exactly magnitude's weights and runs them with torch.sparse.mm:
    the split model's output equals magnitude's (float32 summation order: 1e-5), and a saved
    and reloaded folder runs CSR layers again with the same output."""
    from laimco.data import heldout_sentences
    from laimco.experiments.text_batches import text_batches
    from laimco.models.pruned import load_pruned, prune_split_model, save_pruned
    from laimco.pruning.sparse_kernels import CsrLinear

    batch = next(text_batches(minilm, heldout_sentences()[:6]))
    dense_kernels = prune_split_model(minilm, 3, 0.6, 0.9, "magnitude")
    csr = prune_split_model(minilm, 3, 0.6, 0.9, "magnitude-csr")
    assert any(isinstance(m, CsrLinear) for m in csr.server.model.modules())
    with torch.no_grad():
        expected, got = dense_kernels(batch), csr(batch)
    assert torch.allclose(got, expected, atol=1e-5)
    folder = save_pruned(csr, tmp_path / "csr")
    again = load_pruned(folder)
    assert any(isinstance(m, CsrLinear) for m in again.device.model.modules())
    with torch.no_grad():
        assert torch.allclose(again(batch), got, atol=1e-6)


def test_csr_rule_costs_follow_the_kernel_benchmark() -> None:
    """The CSR product costs more per kept weight than the dense one (bench_sparse_kernels.py:
    ≈ 4.5× here), so its fitted intercept b is well above 1 and a ≈ b: time ∝ kept weights."""
    costs = load_profile("minilm-l6").rules["magnitude-csr"]
    blocks = costs.execution_intercept[costs.sensitivity > 0]
    assert (blocks > 1.5).all()
    slopes = costs.execution_slope[costs.sensitivity > 0]
    assert np.allclose(slopes, blocks, rtol=0.35)
    assert costs.storage == "csr"


# ------------------------------------------------------------------------------ bad input
def test_paper_keys_in_calibrated_mode_are_refused() -> None:
    data = load_scenario(PHONE).model_dump()
    data["distortion"] = {"mode": "calibrated", "law": "laplace"}
    with pytest.raises(ScenarioError, match=r"distortion\.law: .*applies to mode = 'paper' only"):
        scenario_from_dict(data)


def test_a_rule_without_measured_costs_names_the_command(tmp_path: Path) -> None:
    sc = load_scenario(PHONE).replace(distortion={"rules": ["magnitude-global"]})
    with pytest.raises(ScenarioError, match="laimco analyze MODEL --rules magnitude-global"):
        solve(sc)


def test_a_profile_without_rules_needs_the_paper_mode(tmp_path: Path) -> None:
    data = json.loads((ROOT / "src" / "laimco" / "profiles" / "minilm-l6.json").read_text())
    data.pop("rules")
    file = tmp_path / "p.json"
    file.write_text(json.dumps(data))
    sc = load_scenario(PHONE).replace(model={"profile": str(file)})
    with pytest.raises(ScenarioError, match="mode = \"paper\""):
        solve(sc)
    assert solve(sc.replace(distortion={"mode": "paper"})).success


def test_a_non_convex_rule_curve_is_refused() -> None:
    data = json.loads((ROOT / "src" / "laimco" / "profiles" / "minilm-l6.json").read_text())
    table = data["rules"]["magnitude"]["units"][1]["slope_per_weight"]
    table[5], table[6] = table[6] + 1.0, table[5]
    with pytest.raises(ProfileError, match="non-decreasing"):
        profile_from_dict(data)


@pytest.mark.parametrize("strategy", ["joint", "max-power", "tied", "fixed-ratio"])
def test_merging_rules_that_save_nothing_changes_no_decision(strategy: str) -> None:
    """`solve` keeps one of the rules whose pruning saves neither time nor memory when ratios
    are free (docs/theory.md §5.4); the full enumeration of every rule pair gives the same
    objective."""
    import itertools as it

    from laimco.optimize.strategies import StrategyOptions, _best, _solve_pair

    sc = load_scenario(PHONE)
    profile = load_profile(sc.model.profile)
    every = [_solve_pair(sc, profile, strategy, StrategyOptions(), pair)
             for pair in it.product(list(profile.rules), repeat=2)]
    full, merged = _best(every), solve(sc, strategy, profile=profile)
    assert merged.success == full.success
    assert merged.objective == pytest.approx(full.objective, rel=1e-12)
