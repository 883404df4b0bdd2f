"""Bad profile and scenario files, class by class: the API raises ProfileError/ScenarioError and
`laimco optimize` exits with code 2 and one message naming the key (no traceback); good
profiles of every kind the project writes are accepted; size caps act before reading or
allocating; every command resolves "config:NAME" profiles the same way."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario_factory import Reference
from typer.testing import CliRunner

from laimco.cli import app
from laimco.config import ScenarioError, load_scenario, scenario_from_dict
from laimco.optimize import solve
from laimco.profile import (
    MAX_PROFILE_BYTES,
    ProfileError,
    load_profile,
    profile_from_dict,
    resolve_profile_text,
)
from laimco.profile_schema import MAX_QUANTILE_LEVELS, MAX_UNITS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "scenarios" / "paper-minilm-phone.toml"
BUILTIN = json.loads((ROOT / "src" / "laimco" / "profiles" / "minilm-l6.json").read_text())
ANALYZED = json.loads((ROOT / "reports" / "minilm" / "profile.json").read_text())
runner = CliRunner()

Edit = Callable[[dict[str, Any]], None]


def _unit(field: str, value: Any, index: int = 1) -> Edit:
    def edit(profile: dict[str, Any]) -> None:
        profile["units"][index][field] = value
    return edit


def _top(field: str, value: Any) -> Edit:
    def edit(profile: dict[str, Any]) -> None:
        profile[field] = value
    return edit


def _swap_quantiles(profile: dict[str, Any]) -> None:
    table = profile["units"][1]["magnitude_quantiles"]
    table[10], table[11] = table[11] * 2, table[10]


# (what is wrong, the edit, the key path the message must name, a word of what is allowed)
BAD_PROFILES: list[tuple[str, Edit, str, str]] = [
    ("units is an object", _top("units", {"a": 1}), "units", "list"),
    ("units is a string", _top("units", "block1"), "units", "list"),
    ("a unit is a list", _unit("n_fixed", 0) and (lambda p: p["units"].__setitem__(2, [1, 2])),
     "units[2]", "object"),
    ("a unit is a string", lambda p: p["units"].__setitem__(0, "embeddings"), "units[0]",
     "object"),
    ("output_sensitivity is a list", _top("output_sensitivity", [1.0]), "output_sensitivity",
     "object"),
    ("no units", _top("units", []), "units", "at least 1"),
    ("missing key", lambda p: p["units"][3].pop("flops_fixed"), "units[3].flops_fixed",
     "missing"),
    ("unknown unit key", _unit("flops_total", 1.0), "units[1].flops_total", "unknown key"),
    ("unknown top-level key", _top("rulez", {}), "rulez", "unknown key"),
    ("string for a number", _unit("flops_prunable", "452984832"), "units[1].flops_prunable",
     "valid number"),
    ("string for a count", _unit("n_prunable", "1769472"), "units[1].n_prunable",
     "valid integer"),
    ("bool for a number", _unit("out_bits", True), "units[1].out_bits", "valid number"),
    ("bool for a count", _unit("n_fixed", False), "units[1].n_fixed",
     "allowed: an integer, 0 ≤ value ≤ 1e+15"),
    ("null number", _unit("weight_std", None), "units[1].weight_std", "valid number"),
    ("null input_bits", _top("input_bits", None), "input_bits", "valid number"),
    ("NaN", _unit("weight_mean_abs", math.nan), "units[1].weight_mean_abs", "finite"),
    ("+Inf", _unit("flops_fixed", math.inf), "units[1].flops_fixed", "finite"),
    ("-Inf", _top("input_bits", -math.inf), "input_bits", "finite"),
    ("negative FLOPs", _unit("flops_prunable", -4.5e8), "units[1].flops_prunable",
     "allowed: a number, 0 ≤ value ≤ 1e+21"),
    ("a fraction of a bit", _unit("out_bits", 1e-252), "units[1].out_bits",
     "0 or at least 1"),
    ("negative count", _unit("n_prunable", -1), "units[1].n_prunable",
     "greater than or equal to 0"),
    ("negative bits", _unit("out_bits", -1.0, index=4), "units[4].out_bits",
     "greater than or equal to 0"),
    ("negative input bits", _top("input_bits", -8192), "input_bits",
     "greater than or equal to 0"),
    ("negative std", _unit("weight_std", -0.06), "units[1].weight_std",
     "greater than or equal to 0"),
    ("negative mean", _unit("weight_mean_abs", -0.04), "units[1].weight_mean_abs",
     "greater than or equal to 0"),
    ("negative unit sensitivity", _unit("output_sensitivity", -1e-4),
     "units[1].output_sensitivity", "greater than or equal to 0"),
    ("negative k_device", _top("output_sensitivity", {"k_device": -1.0}),
     "output_sensitivity.k_device", "greater than or equal to 0"),
    ("decreasing quantiles", _swap_quantiles, "units[1].magnitude_quantiles", "decrease"),
    ("negative quantile", lambda p: p["units"][1]["magnitude_quantiles"].__setitem__(0, -1.0),
     "units[1].magnitude_quantiles[0]", "greater than or equal to 0"),
    ("one quantile level", _unit("magnitude_quantiles", [0.5]), "units[1].magnitude_quantiles",
     "at least 2"),
    ("gennorm shape 0", _unit("gennorm_beta", 0.0), "units[1].gennorm_beta",
     "greater than or equal to 0.1"),
    ("gennorm shape < 0", _unit("gennorm_beta", -1.5), "units[1].gennorm_beta",
     "greater than or equal to 0.1"),
    ("gennorm shape whose moments overflow", _unit("gennorm_beta", 0.0078125),
     "units[1].gennorm_beta", "greater than or equal to 0.1"),
    ("negative gennorm scale", _unit("gennorm_scale", -0.07), "units[1].gennorm_scale",
     "greater than or equal to 0"),
    ("fractional count", _unit("n_prunable", 1769472.5), "units[1].n_prunable",
     "valid integer"),
    ("fractional sample size", _unit("weight_sample_size", 0.5), "units[1].weight_sample_size",
     "valid integer"),
    ("unknown kind", _unit("kind", "layer"), "units[1].kind",
     "allowed: 'embeddings' or 'block' or 'head'"),
    ("unknown family", _top("family", "t5"), "family", "'bert'"),
    ("seq_len 0", _top("seq_len", 0), "seq_len", "greater than or equal to 1"),
    ("too many units", lambda p: p.update(units=p["units"] * 600), "units",
     f"at most {MAX_UNITS}"),
    ("too many levels", _unit("magnitude_quantiles", [0.0] * (MAX_QUANTILE_LEVELS + 1)),
     "units[1].magnitude_quantiles", f"at most {MAX_QUANTILE_LEVELS}"),
    ("levels disagree", _top("magnitude_quantile_levels", 11), "magnitude_quantile_levels",
     "1001"),
]


def _bad_profile(edit: Edit) -> dict[str, Any]:
    profile = copy.deepcopy(BUILTIN)
    edit(profile)
    return profile


def _scenario_using(tmp_path: Path, profile_name: str) -> Path:
    text = DEFAULT.read_text().replace('profile = "minilm-l6"', f"profile = {profile_name!r}")
    assert profile_name in text
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def _cli_fails_naming(path: Path, *named: str) -> None:
    result = runner.invoke(app, ["optimize", str(path)])
    message = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "Traceback" not in result.output
    for word in named:
        assert word in message, (word, result.output)


@pytest.mark.parametrize(("label", "edit", "key", "allowed"), BAD_PROFILES,
                         ids=[case[0] for case in BAD_PROFILES])
def test_bad_profile_is_refused_naming_the_key(label: str, edit: Edit, key: str, allowed: str,
                                               tmp_path: Path) -> None:
    profile = _bad_profile(edit)
    with pytest.raises(ProfileError) as raised:
        profile_from_dict(profile)
    message = str(raised.value)
    assert key in message and allowed in message, message
    path = tmp_path / "bad-profile.json"
    path.write_text(json.dumps(profile))  # NaN/Infinity as Python's json writes them
    _cli_fails_naming(_scenario_using(tmp_path, str(path)), key, allowed)


@pytest.mark.parametrize("text", ["[1, 2, 3]", '"minilm"', "null", "42", "{", "",
                                  "[" * 100_000])
def test_profile_that_is_not_an_object_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(ProfileError, match="profile"):
        load_profile(path)
    _cli_fails_naming(_scenario_using(tmp_path, str(path)), "profile")


def test_binary_profile_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ProfileError, match="not a text file"):
        load_profile(path)


def test_profile_size_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:  # sparse: nothing is written, st_size says 64 MiB + 1
        file.truncate(MAX_PROFILE_BYTES + 1)
    started = time.perf_counter()
    with pytest.raises(ProfileError, match="64 MiB"):
        load_profile(path)
    assert time.perf_counter() - started < 0.5  # refused from the size alone


def test_thirty_thousand_units_are_refused_before_any_allocation() -> None:
    """The report's 6.7 GiB case: refused by the unit cap in well under a second."""
    profile = copy.deepcopy(BUILTIN)
    profile["units"] = [profile["units"][1]] * 30_000
    started = time.perf_counter()
    with pytest.raises(ProfileError, match=f"30000 units, at most {MAX_UNITS}"):
        profile_from_dict(profile)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("profile", [BUILTIN, ANALYZED], ids=["builtin", "analyzed"])
def test_every_key_the_project_writes_is_accepted(profile: dict[str, Any]) -> None:
    loaded = profile_from_dict(profile)
    assert loaded.n_units == len(profile["units"]) == 8
    assert loaded.seq_len == profile["seq_len"] == 128
    assert [u.n_prunable for u in loaded.units] == [u["n_prunable"] for u in profile["units"]]


def test_analyzed_profile_carries_its_sensitivities() -> None:
    loaded = profile_from_dict(ANALYZED)
    assert loaded.output_sensitivity == {
        k: float(v) for k, v in ANALYZED["output_sensitivity"].items()}


def test_minimal_profile_without_optional_keys_is_accepted() -> None:
    unit = {"name": "u", "n_prunable": 10, "n_fixed": 0, "flops_prunable": 20.0,
            "flops_fixed": 0, "out_bits": 64, "weight_mean_abs": 0.1, "weight_std": 0.12}
    loaded = profile_from_dict({"name": "tiny", "input_bits": 32, "units": [unit]})
    assert loaded.seq_len is None and loaded.output_sensitivity is None
    assert loaded.units[0].gennorm_beta == 1.0 and loaded.units[0].magnitude_quantiles == ()


def test_integral_float_counts_are_counts() -> None:
    profile = copy.deepcopy(BUILTIN)
    profile["units"][1]["n_prunable"] = 1.769472e6
    assert profile_from_dict(profile).units[1].n_prunable == 1_769_472


# ------------------------------------------------------------------ "config:NAME" everywhere


@pytest.fixture(scope="module")
def gpt2_config_profile() -> Any:
    pytest.importorskip("transformers")
    return load_profile("config:gpt2")


@pytest.mark.slow
def test_config_profile_has_the_architectures_units(gpt2_config_profile: Any) -> None:
    config = json.loads((ROOT / "src" / "laimco" / "configs" / "gpt2.json").read_text())
    profile = gpt2_config_profile
    assert profile.n_units == config["n_layer"] + 2  # embeddings, blocks, head
    assert profile.seq_len == 128
    d = config["n_embd"]
    per_block = 4 * d * d + 2 * d * 4 * d  # Q, K, V, O; FFN in and out
    assert profile.units[1].n_prunable == per_block
    assert profile.units[1].flops_prunable == 2 * 128 * per_block


@pytest.mark.slow
def test_scenario_with_a_config_profile_solves_from_the_cli(
        gpt2_config_profile: Any, tmp_path: Path) -> None:
    """GPT-2 on the phone: the reference model (tests/scenario_factory.py) bounds the least
    latency of every allowed split from below (ρ_max, full frequency, full power), and that bound
    exceeds the 200 ms budget, so the CLI must answer infeasible and blame the latency budget.
    With twice the bound the decision it prints meets every limit of the reference model and
    has the reference's objective."""
    path = _scenario_using(tmp_path, "config:gpt2")
    ref = Reference(load_scenario(path), gpt2_config_profile)
    gain = ref.design_gain()
    fastest = min(float(ref.device_cycles(s, ref.rho_max)) / ref.F + ref.shortest_upload_s(s, gain)
                  + float(ref.server_time(s, ref.rho_max)) + ref.downlink_at(s)
                  for s in range(ref.min_split, ref.L + 1))
    assert fastest > ref.T
    result = runner.invoke(app, ["optimize", str(path), "--json"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert decision["status"] == "infeasible"
    assert any("task.latency_budget_s" in reason for reason in decision["reasons"])

    relaxed = tmp_path / "relaxed.toml"
    relaxed.write_text(path.read_text().replace("latency_budget_s = 0.2",
                                                f"latency_budget_s = {2 * fastest!r}"))
    result = runner.invoke(app, ["optimize", str(relaxed), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["status"] == "optimal", d.get("reasons")
    ref = Reference(load_scenario(relaxed), gpt2_config_profile)
    point = (d["split"], d["rho_device"], d["rho_server"], d["power_w"], d["freq_device_hz"],
             d["freq_server_hz"])
    assert ref.violated_limits(*point, gain) == []
    assert d["objective"] == pytest.approx(ref.objective(*point[:3]), rel=1e-9)


@pytest.mark.slow
def test_sweep_cache_and_direct_resolution_give_the_same_profile(
        gpt2_config_profile: Any, tmp_path: Path) -> None:
    text = resolve_profile_text("config:gpt2", cache_dir=tmp_path)
    again = resolve_profile_text("config:gpt2", cache_dir=tmp_path)  # from the cached file
    assert text == again and len(list(tmp_path.iterdir())) == 1
    assert profile_from_dict(json.loads(text)) == gpt2_config_profile


def test_unknown_config_name_lists_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="gpt2-xl"):
        load_profile("config:gpt5")
    _cli_fails_naming(_scenario_using(tmp_path, "config:gpt5"), "config:gpt5", "gpt2-xl")


def test_unknown_profile_name_says_what_is_allowed(tmp_path: Path) -> None:
    _cli_fails_naming(_scenario_using(tmp_path, "minilm-l7"), "minilm-l7", "minilm-l6",
                      "config:NAME")


# ------------------------------------------------------------------ scenario values


def _edit(key: str, value: str) -> str:
    lines = []
    for line in DEFAULT.read_text().splitlines():
        if line.split("=")[0].strip() == key:
            line = f"{key} = {value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# (key, TOML value, key path named, a word of what is allowed)
BAD_SCENARIO_VALUES = [
    ("cpu_freq_max_hz", "true", "device.cpu_freq_max_hz", "valid number"),
    ("min_split", "true", "task.min_split", "valid integer"),
    ("min_split", "1.0", "task.min_split", "valid integer"),
    ("min_split", "-1", "task.min_split", "greater than or equal to 0"),
    ("kappa", '"1e-28"', "device.kappa", "valid number"),
    ("bandwidth_hz", "nan", "channel.bandwidth_hz", "1 ≤ value ≤ 1e+12"),
    ("energy_budget_j", "inf", "device.energy_budget_j", "1e-09 ≤ value ≤ 1e+06"),
    ("latency_budget_s", "1e12", "task.latency_budget_s", "less than or equal to 10000"),
    ("cpu_freq_max_hz", "1e308", "device.cpu_freq_max_hz", "less than or equal to"),
    ("path_gain", "1e300", "channel.path_gain", "less than or equal to 1"),
    ("path_gain", "1.5", "channel.path_gain", "less than or equal to 1"),
    ("bandwidth_hz", "1e30", "channel.bandwidth_hz", "less than or equal to"),
    ("noise_psd_w_per_hz", "0", "channel.noise_psd_w_per_hz", "greater than or equal to"),
    ("tx_power_max_w", "-0.2", "device.tx_power_max_w", "greater than or equal to"),
    ("kappa", "1", "device.kappa", "less than or equal to"),
    ("flops_per_cycle", "1e300", "flops_per_cycle", "less than or equal to"),
    ("memory_bytes", "false", "device.memory_bytes", "valid number"),
    ("k_device", "true", "distortion.k_device", "0 ≤ value ≤ 1e+06; or 'profile'"),
    ("k_device", "1e7", "distortion.k_device", "0 ≤ value ≤ 1e+06; or 'profile'"),
    ("fading", '"awgn"', "channel.fading", "'none' or 'rayleigh'"),
    ("bytes_per_weight", "[4]", "model.bytes_per_weight", "valid number"),
    ("profile", "7", "model.profile", "valid string"),
    ("device", "1", "device", "must be an object / table"),
]


@pytest.mark.parametrize(("key", "value", "named", "allowed"), BAD_SCENARIO_VALUES,
                         ids=[f"{k}={v}" for k, v, *_ in BAD_SCENARIO_VALUES])
def test_bad_scenario_value_is_refused_naming_the_key(key: str, value: str, named: str,
                                                      allowed: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    if key == "device":  # the whole [device] table replaced by a number
        text = "device = 1\n" + DEFAULT.read_text().replace("[device]", "[unused_device]")
    else:
        text = _edit(key, value)
    path.write_text(text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert named in str(raised.value) and allowed in str(raised.value), str(raised.value)
    _cli_fails_naming(path, named, allowed)


def test_binary_scenario_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ScenarioError, match="not a text file"):
        load_scenario(path)
    _cli_fails_naming(path, "not a text file")


def test_huge_scenario_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    with path.open("wb") as file:
        file.truncate(2 << 20)
    with pytest.raises(ScenarioError, match="too large"):
        load_scenario(path)


def test_integers_are_fine_where_floats_belong() -> None:
    scenario = load_scenario(DEFAULT).replace(device={"cpu_freq_max_hz": 2_000_000_000},
                                              channel={"path_gain": 1})
    assert scenario.device.cpu_freq_max_hz == 2e9 and scenario.channel.path_gain == 1.0


# ------------------------------------------------------------------ property-based


_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                     st.floats(min_value=0, max_value=1e22), st.integers(-10**30, 10**30),
                     st.booleans(), st.none(), st.text(max_size=3),
                     st.lists(st.integers(), max_size=2))
_UNIT_FIELDS = ["n_prunable", "n_fixed", "flops_prunable", "flops_fixed", "out_bits",
                "weight_mean_abs", "weight_std", "gennorm_beta", "gennorm_scale"]
_LAWS = ["laplace", "gaussian", "gennorm", "empirical"]
_BASE_SCENARIO = load_scenario(DEFAULT).model_dump()


@pytest.mark.filterwarnings("error::RuntimeWarning")  # an overflow or NaN on the way fails
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(_UNIT_FIELDS), unit=st.integers(0, 7), value=_numbers,
       law=st.sampled_from(_LAWS), quantile_scale=st.floats(1e-300, 1e6))
def test_any_unit_value_gives_a_valid_decision_or_a_profile_error(
        field: str, unit: int, value: Any, law: str, quantile_scale: float) -> None:
    """Fuzz: whatever value one unit field takes (and however its magnitude quantiles are
    scaled), the profile is refused with a ProfileError naming the field, or it is accepted and
    the optimizer returns a decision: infeasible, or with a finite objective ≥ 0."""
    profile = copy.deepcopy(BUILTIN)
    profile["units"][unit][field] = value
    table = profile["units"][unit]["magnitude_quantiles"]
    profile["units"][unit]["magnitude_quantiles"] = [q * quantile_scale for q in table]
    try:
        loaded = profile_from_dict(profile)
    except ProfileError as err:
        assert field in str(err) or "magnitude_quantiles" in str(err), str(err)
        return
    scenario = scenario_from_dict({**_BASE_SCENARIO,
                                   "distortion": {**_BASE_SCENARIO["distortion"], "law": law}})
    try:
        decision = solve(scenario, profile=loaded)
    except ValueError as err:  # the CLI's exit 2 with this message
        assert law == "empirical" and "no magnitude quantiles" in str(err)
        return
    if decision.success:
        assert decision.point is not None and 0 <= decision.point.objective < math.inf


_SCENARIO_KEYS = [(section, key) for section, values in _BASE_SCENARIO.items()
                  for key in values if section != "model"]


@pytest.mark.filterwarnings("error::RuntimeWarning")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(_SCENARIO_KEYS), value=_numbers,
       other=st.sampled_from(_SCENARIO_KEYS), other_value=st.floats(1e-30, 1e30))
def test_any_scenario_value_gives_a_valid_decision_or_a_scenario_error(
        where: tuple[str, str], value: Any, other: tuple[str, str], other_value: float) -> None:
    """Fuzz: two keys set to anything; the scenario is refused with a ScenarioError naming a
    key it changed, or every strategy returns a decision (infeasible, or a finite objective
    ≥ 0)."""
    data = {section: dict(values) for section, values in _BASE_SCENARIO.items()}
    data[other[0]][other[1]] = other_value
    data[where[0]][where[1]] = value
    try:
        scenario = scenario_from_dict(data)
    except ScenarioError as err:
        assert f"{where[0]}.{where[1]}" in str(err) or f"{other[0]}.{other[1]}" in str(err), (
            str(err))
        return
    for strategy in ("joint", "max-power", "max-frequency", "tied"):
        try:
            decision = solve(scenario, strategy)
        except ScenarioError as err:  # min_split beyond the model: named, exit 2 at the CLI
            assert "task.min_split" in str(err)
            return
        if decision.success:
            assert decision.point is not None and 0 <= decision.point.objective < math.inf


@pytest.mark.parametrize("text", [json.dumps(_bad_profile(_unit("flops_prunable", -1.0))),
                                  "[" * 100_000, "{"])
def test_sweep_over_a_bad_profile_fails_before_any_work_naming_the_key(
        text: str, tmp_path: Path) -> None:
    from laimco.experiments.sweep import SweepError, load_sweep, run_sweep

    profile = tmp_path / "bad-profile.json"
    profile.write_text(text)
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'[sweep]\nbase = "{DEFAULT}"\nstrategies = ["joint"]\n[axes]\n'
                     f'"model.profile" = ["minilm-l6", "{profile}"]\n')
    with pytest.raises(SweepError, match=r"model\.profile") as raised:
        run_sweep(load_sweep(sweep), tmp_path / "out", progress=False)
    if "flops" in text:
        assert "units[1].flops_prunable" in str(raised.value)


@pytest.mark.slow
@pytest.mark.parametrize("config", ['{"model_type": "t5"}', '{"vocab_size": 10}', "[1]", "{"])
def test_config_profile_of_an_unusable_config_is_a_profile_error(config: str,
                                                                 tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    path = tmp_path / "config.json"
    path.write_text(config)
    with pytest.raises(ProfileError, match="config:config"):
        load_profile(f"config:{path}")


def test_bad_profile_in_a_real_process_exits_2_with_one_message_on_stderr(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad-profile.json"
    path.write_text(json.dumps(_bad_profile(_unit("weight_std", -0.06))))
    proc = subprocess.run([sys.executable, "-m", "laimco.cli", "optimize",
                           str(_scenario_using(tmp_path, str(path))), "--json"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "units[1].weight_std" in proc.stderr and "Traceback" not in proc.stderr
