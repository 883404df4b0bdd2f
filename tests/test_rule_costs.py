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


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["magnitude", "wanda", "structured"])
def test_block_curve_equals_the_distortion_of_the_executed_rule(minilm, rule: str) -> None:
    """D(ρ) from the sorted weights equals what pruning the block with the real rule removes:
    magnitude ‖w − ŵ‖², Wanda Σ((w − ŵ)·‖x‖)², structured the energy of the removed rows and
    columns (each recomputed from the pruned tensors, 1e-9 relative)."""
    import torch

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
        # eq. 5.4: a part's time is T(s) + Σ_u τ_u·(b_u − 1 − a_u·ρ) over its units, and its
        # cycles are its dense FLOPs over FLOPs per cycle times that time over T(s)
        ex = profile.execution
        assert ex is not None
        tau = ex.unit_time_s

        def part_time(costs, mask, part, r, tau=tau):  # type: ignore[no-untyped-def]
            extra = (tau * (costs.execution_intercept - 1 - costs.execution_slope * r))[mask]
            return max(part + float(extra.sum()), 0.0) / part if part > 0 else 0.0

        dense_d = float((ff + fp)[dev].sum()) / d.flops_per_cycle
        dense_s = float((ff + fp)[~dev].sum()) / (srv.flops_per_cycle * srv.cpu_freq_max_hz)
        cycles_d = [dense_d * part_time(cd, dev, ex.device_part_time_s[s], r) for r in rhos]
        server_s = [dense_s * part_time(cs, ~dev, ex.server_part_time_s[s], r) for r in rhos]
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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["minilm-phone", "minilm-laptop"])
def test_calibrated_joint_is_at_least_as_good_as_a_brute_force_grid(name: str) -> None:
    """The exact solver over (split, rule pair, ratios, power, frequency) is never worse than a
    41×41 ratio grid per (split, rule pair) searched independently, and the grid, being coarse,
    comes within a few percent of it (its step bounds the gap). The uplink is float32 here;
    the activation width is brute-forced in tests/test_uplink_optimizer.py."""
    path = ROOT / "scenarios" / f"{name}.toml"
    decision = solve(load_scenario(path).replace(uplink={"activation_bits": [32]}))
    brute = _brute_force(path, ["magnitude", "wanda", "structured", "magnitude-csr"])
    assert decision.success and np.isfinite(brute)
    assert decision.point.objective <= brute * (1 + 1e-9)
    assert decision.point.objective >= brute * 0.85


def test_unstructured_rules_never_prune_where_pruning_saves_nothing() -> None:
    """With dense-kernel costs (execution slope ≈ 0) and dense storage, pruning a side only adds
    distortion, so a decision restricted to magnitude prunes by (almost) nothing on a side
    whose pruning buys no time (here: laptop, everything fits)."""
    sc = load_scenario(ROOT / "scenarios" / "minilm-laptop.toml").replace(
        distortion={"rules": ["magnitude"]}, task={"latency_budget_s": 10.0})
    decision = solve(sc)
    assert decision.success
    assert decision.point.rho_device == pytest.approx(0.0, abs=1e-6)
    assert decision.point.rho_server == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------- the CSR execution rule
@pytest.mark.slow
def test_csr_layers_compute_the_masked_dense_product_and_save_as_dense(minilm, tmp_path) -> None:
    """magnitude-csr removes exactly magnitude's weights and runs them with torch.sparse.mm:
    the split model's output equals magnitude's (float32 summation order: 1e-5), and a saved
    and reloaded folder runs CSR layers again with the same output."""
    import torch

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


def test_a_profile_with_rules_but_no_execution_times_names_the_command() -> None:
    data = json.loads((ROOT / "src" / "laimco" / "profiles" / "minilm-l6.json").read_text())
    data.pop("execution")
    with pytest.raises(ProfileError, match="laimco analyze MODEL --rules"):
        profile_from_dict(data)


def test_execution_times_of_the_wrong_length_are_refused() -> None:
    data = json.loads((ROOT / "src" / "laimco" / "profiles" / "minilm-l6.json").read_text())
    data["execution"]["device_part_time_s"].pop()
    with pytest.raises(ProfileError, match=r"execution\.device_part_time_s has 8 entries"):
        profile_from_dict(data)


def test_part_cycles_follow_eq_5_4_worked_by_hand() -> None:
    """Two blocks of dense time 2 s inside parts of measured time T; block 1 saves half its
    time per unit of ρ, block 2 all of it; at split 2 (embeddings + block 1, T = 3.5 s) the part
    takes 3.5 − 2·0.5·ρ s, so with 7 dense cycles: 7·(2.5 + 1·(1 − ρ))/3.5."""
    from laimco.rule_costs import ExecutionTimes, RuleCosts

    ex = ExecutionTimes(unit_time_s=np.array([0.0, 2.0, 2.0, 0.0]),
                        device_part_time_s=np.array([0.0, 1.0, 3.5, 5.5, 6.0]),
                        server_part_time_s=np.array([6.2, 5.0, 2.5, 0.5, 0.0]))
    rule = RuleCosts(name="r", storage="shrunk", slope_tables=np.zeros((4, 2)),
                     sensitivity=np.zeros(4), execution_slope=np.array([0.0, 0.5, 1.0, 0.0]),
                     execution_intercept=np.ones(4))
    mask = (np.arange(4)[None, :] < np.arange(5)[:, None]).astype(float)
    dense = np.array([0.0, 1.0, 7.0, 12.0, 13.0])
    prunable, fixed = ex.part_cycles(rule, dense, mask, "device")
    assert prunable[2] == pytest.approx(7 * 1.0 / 3.5)
    assert fixed[2] == pytest.approx(7 * 2.5 / 3.5)
    assert prunable[0] == fixed[0] == 0.0  # the empty part
    # split 3 (both blocks, T = 5.5): saves 2·0.5 + 2·1 = 3 s per unit of ρ
    assert prunable[3] == pytest.approx(12 * 3.0 / 5.5)
    assert fixed[3] == pytest.approx(12 * 2.5 / 5.5)
    # the server side of split 1 runs blocks 1 and 2 and the head (T = 5.0)
    prunable, fixed = ex.part_cycles(rule, np.full(5, 10.0), 1 - mask, "server")
    assert prunable[1] == pytest.approx(10 * 3.0 / 5.0)
    assert fixed[1] == pytest.approx(10 * 2.0 / 5.0)


@pytest.mark.slow  # builds and times a torch model
def test_execution_measurement_on_a_small_bert_gives_a_valid_section() -> None:
    """The measurement runs on any BERT-style model and writes what the schema accepts: empty
    parts take 0 s, every non-empty part and every block a positive time, 0 ≤ a ≤ b, and a rule
    with no measured saving gets the dense line (times themselves are not asserted: they
    depend on the machine)."""
    import transformers

    from laimco.measure.execution_timing import execution_lines, measure_execution_times
    from laimco.models.loading import model_from_config
    from laimco.models.profiler import profile_model
    from laimco.rule_costs import parse_execution

    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=128)
    loaded = model_from_config(config, seed=1)
    units = profile_model(loaded, seq_len=128).units
    section = measure_execution_times(loaded, units, rounds=2)
    times = parse_execution(section.model_dump(), len(units))
    n = len(units)
    assert times.device_part_time_s[0] == 0.0 and times.server_part_time_s[n] == 0.0
    blocks = np.array([u.n_prunable > 0 for u in units])
    assert (times.unit_time_s[blocks] > 0).all() and (times.unit_time_s[~blocks] == 0).all()
    for rule in ("structured", "magnitude-csr"):
        lines = execution_lines(loaded, rule, [], rounds=2)
        a, b = np.array(lines.slope_by_block), np.array(lines.intercept_by_block)
        assert a.shape == b.shape == (3,)
        assert ((a >= 0) & (a <= b)).all()
        if not lines.slope_significant:  # no saving measured: the dense line
            assert (a == 0).all() and (b == 1).all()


@pytest.mark.slow  # builds, prunes and times a torch model
def test_retiming_replaces_only_the_timed_fields_of_measured_rule_costs() -> None:
    """`retime_rule_costs` measures again what depends on the CPU and nothing else: on a small
    BERT, every distortion curve, sensitivity and raw calibration record of a measurement is kept
    exactly, every execution line and the execution section come from the new timing (its
    `rounds`), and the result is a profile the schema and `profile_from_dict` accept."""
    import torch
    import transformers

    from laimco.measure.rule_measurement import measure_rule_costs, retime_rule_costs
    from laimco.models.loading import model_from_config
    from laimco.models.profiler import profile_model

    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=128)
    loaded = model_from_config(config, seed=1)
    ids = torch.randint(0, 120, (4, 16), generator=torch.Generator().manual_seed(2))
    calibration = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    profile = profile_model(loaded, seq_len=128)
    measured = measure_rule_costs(loaded, profile.units, calibration, ("magnitude", "structured"),
                                  timing_rounds=1).added_to(profile)
    retimed = retime_rule_costs(loaded, measured, calibration, timing_rounds=2)
    before, after = measured.json_data(), retimed.json_data()
    assert before.keys() == after.keys() and before["units"] == after["units"]
    assert (before["execution"]["rounds"], after["execution"]["rounds"]) == (3, 6)
    for rule in ("magnitude", "structured"):
        old, new = before["rules"][rule], after["rules"][rule]
        assert old["storage"] == new["storage"]
        timing = new["measured"]["timing"]
        assert old["measured"]["timing"]["rounds"] == 1 and timing["rounds"] == 2
        assert {k: v for k, v in old["measured"].items() if k != "timing"} == {
            k: v for k, v in new["measured"].items() if k != "timing"}
        blocks = [i for i, u in enumerate(profile.units) if u.n_prunable > 0]
        for block, unit in enumerate(blocks):
            for key in ("slope_per_weight", "sensitivity"):
                assert old["units"][unit][key] == new["units"][unit][key]
            assert new["units"][unit]["execution_slope"] == timing["slope_by_block"][block]
            assert new["units"][unit]["execution_intercept"] == timing["intercept_by_block"][block]
        assert all(old["units"][i] is None and new["units"][i] is None
                   for i in range(len(profile.units)) if i not in blocks)
    profile_from_dict(after)


def test_a_non_convex_rule_curve_is_refused() -> None:
    data = json.loads((ROOT / "src" / "laimco" / "profiles" / "minilm-l6.json").read_text())
    table = data["rules"]["magnitude"]["units"][1]["slope_per_weight"]
    table[5], table[6] = table[6] + 1.0, table[5]
    with pytest.raises(ProfileError, match="non-decreasing"):
        profile_from_dict(data)


@pytest.mark.parametrize("strategy", ["joint", "max-power", "tied", "fixed-ratio"])
def test_merging_rules_that_save_nothing_changes_no_decision(strategy: str) -> None:
    """`solve` keeps one of the rules whose pruning saves neither time nor memory when ratios
    are free (docs/theory.md §5.4); the full enumeration of every rule pair and activation
    width, each solved alone (not stacked as `solve` does, §6.3), gives the same objective."""
    import itertools as it

    from laimco.optimize.decision import decide
    from laimco.optimize.problem import activation_bit_choices, build_problem
    from laimco.optimize.strategies import STRATEGIES, StrategyOptions, _best

    sc = load_scenario(PHONE)
    profile = load_profile(sc.model.profile)
    problems = [build_problem(sc, profile, rules=pair, activation_bits=bits)
                for pair in it.product(list(profile.rules), repeat=2)
                for bits in activation_bit_choices(sc, profile)]
    every = [decide(p, strategy, STRATEGIES[strategy].solve(p, StrategyOptions()))
             for p in problems]
    full, merged = _best(strategy, every), solve(sc, strategy, profile=profile)
    assert merged.success == full.success
    assert merged.point.objective == pytest.approx(full.point.objective, rel=1e-12)
