"""Does a sparse CPU kernel make unstructured pruning faster here? (docs/theory.md §5.3)

For each pruning ratio, a magnitude-pruned MiniLM-sized linear layer (FFN up-projection,
1536×384, and attention output, 384×384) is applied to 128 tokens with: the dense kernel on the
masked matrix (what laimco runs), torch sparse CSR (`W.to_sparse_csr()`, `torch.sparse.mm`),
and torch sparse COO. One thread, round-robin over the kernels in every round, the median of
per-round time ratios to dense. A rule using a sparse format would be worth offering only where
the ratio falls below 1.

    .venv/bin/python benchmarks/bench_sparse_kernels.py
"""

from __future__ import annotations

import statistics
import time

import torch

RATIOS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
SHAPES = {"ffn up 1536x384": (1536, 384), "attn out 384x384": (384, 384)}
ROUNDS = 15
REPEAT = 20


def _time(call) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(REPEAT):
        call()
    return (time.perf_counter() - started) / REPEAT


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    print("# Sparse CPU kernels against dense (unstructured magnitude pruning)\n")
    print(f"torch {torch.__version__}, 1 thread, 128 tokens, median of {ROUNDS} rounds of "
          f"{REPEAT} calls; time relative to the dense kernel on the same masked matrix\n")
    print("| layer | ρ | CSR / dense | COO / dense |")
    print("| --- | --- | --- | --- |")
    for label, (rows, cols) in SHAPES.items():
        x = torch.randn(cols, 128, generator=generator)
        for rho in RATIOS:
            w = torch.randn(rows, cols, generator=generator)
            k = round(rho * w.numel())
            threshold = w.abs().flatten().kthvalue(k).values
            w = torch.where(w.abs() > threshold, w, torch.zeros_like(w))
            csr, coo = w.to_sparse_csr(), w.to_sparse()
            kernels = {"dense": lambda w=w, x=x: w @ x,
                       "csr": lambda c=csr, x=x: torch.sparse.mm(c, x),
                       "coo": lambda c=coo, x=x: torch.sparse.mm(c, x)}
            for call in kernels.values():
                call()
            ratios: dict[str, list[float]] = {"csr": [], "coo": []}
            for _ in range(ROUNDS):
                times = {name: _time(call) for name, call in kernels.items()}
                for name in ratios:
                    ratios[name].append(times[name] / times["dense"])
            print(f"| {label} | {rho:.2f} | {statistics.median(ratios['csr']):.2f} | "
                  f"{statistics.median(ratios['coo']):.2f} |")


if __name__ == "__main__":
    main()
