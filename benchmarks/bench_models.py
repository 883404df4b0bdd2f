"""Real-model benchmarks (issue: real models). Ratios against references measured in the same
run; never part of the test suite. Run: `make bench` or python benchmarks/bench_models.py.

1. Weight statistics of MiniLM (mean |w|, std, generalized-Gaussian MLE, 1001 quantiles per
   unit): in memory and streamed from safetensors, against the 2 s target and against a
   reference implementation (scipy.stats.gennorm.fit + numpy.quantile) timed in the same run.
2. Profiling from a config alone (a LLaMA-7B-shaped model on the meta device).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from laimco.models.loading import builtin_model_dir, load_model
from laimco.models.profiler import profile_from_config, profile_safetensors_dir
from laimco.models.units import model_units, unit_parameters
from laimco.models.weight_stats import tensor_stats


def timed(func):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    value = func()
    return value, time.perf_counter() - started


def main() -> None:
    print("# Real-model benchmarks\n")
    loaded = load_model("minilm")
    tensors = [[p.detach() for _, p in u.prunable]
               for u in unit_parameters(model_units(loaded))]
    tensors = [t for t in tensors if t]
    _, memory_s = timed(lambda: tensor_stats(tensors))
    _, stream_s = timed(lambda: profile_safetensors_dir(builtin_model_dir(), name="minilm-l6"))

    def reference() -> None:
        for unit in tensors:
            w = np.concatenate([t.double().numpy().ravel() for t in unit])
            stats.gennorm.fit(w, floc=0)
            np.quantile(np.abs(w), np.linspace(0, 1, 1001))

    _, reference_s = timed(reference)
    print("## 1. MiniLM weight statistics (6 blocks, 10.6 M weights)\n")
    print("| what | time | target |")
    print("| --- | --- | --- |")
    verdict = "met" if memory_s <= 2 else "NOT met"
    print(f"| in memory (laimco) | {memory_s:.2f} s | ≤ 2 s: {verdict} |")
    print(f"| whole profile streamed from safetensors (laimco profile) | {stream_s:.2f} s | |")
    print(f"| reference: scipy.stats.gennorm.fit + numpy.quantile | {reference_s:.2f} s | |")
    print(f"\n- laimco statistics are {reference_s / memory_s:.1f}× faster than the reference.\n")

    import transformers

    llama7b = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008,
                                       num_hidden_layers=32, num_attention_heads=32,
                                       num_key_value_heads=32, vocab_size=32000,
                                       max_position_embeddings=4096)
    profile, config_s = timed(lambda: profile_from_config(llama7b, seq_len=128))
    n = sum(u.n_prunable for u in profile.units)
    print("## 2. Architecture-only profile (meta device)\n")
    print(f"- LLaMA-7B-shaped config: {n:,} prunable weights profiled in {config_s:.2f} s "
          "without allocating them")


if __name__ == "__main__":
    main()
