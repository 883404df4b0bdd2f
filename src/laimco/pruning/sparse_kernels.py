"""Executing unstructured pruning with a sparse CPU kernel: linear layers whose weight is held
in compressed sparse row (CSR) form and applied with `torch.sparse.mm`.

On this CPU a CSR product costs about 4.5× the dense one per stored weight, so it beats the
dense kernel only above ρ ≈ 0.8 (benchmarks/bench_sparse_kernels.py); the rule
"magnitude-csr" prunes like "magnitude" and runs with these layers, and its measured execution
curve (docs/theory.md §5.3) tells the optimizer what that costs.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from laimco.pruning.masks import default_exclude, is_conv1d

# index bytes per kept weight in memory: torch stores CSR column indices as int64
CSR_INDEX_BYTES = 8


class CsrLinear(nn.Module):
    """y = x·Wᵀ + b with W (out, in) in CSR form. Its state dict holds the dense weight and
    bias, so a model with these layers saves and loads like the dense one."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features = int(weight.shape[1])
        self.out_features = int(weight.shape[0])
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.weight_csr = weight.detach().to_sparse_csr()
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(),
                                                           requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = torch.sparse.mm(self.weight_csr, flat.T).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def dense_weight(self) -> torch.Tensor:
        return self.weight_csr.to_dense()

    def stored_bytes(self, bytes_per_weight: float) -> float:
        """Bytes of the CSR weight in memory: kept values, column indices, row pointers."""
        values = self.weight_csr.values().numel()
        return float(values * (bytes_per_weight + CSR_INDEX_BYTES)
                     + self.weight_csr.crow_indices().numel() * CSR_INDEX_BYTES)

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # type: ignore[no-untyped-def]
        destination[prefix + "weight"] = self.dense_weight()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias.detach()


def to_csr_linears(module: nn.Module) -> int:
    """Replace every nn.Linear and transformers Conv1D inside `module` (task heads excluded, as
    for pruning) by a CsrLinear with the same (masked) weight, in place; the number replaced."""
    replaced = 0
    for name, sub in list(module.named_modules()):
        if not name or default_exclude(name):
            continue
        if isinstance(sub, nn.Linear):
            weight = sub.weight
        elif is_conv1d(sub):
            weight = sub.weight.T  # Conv1D stores (in, out)
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, CsrLinear(weight, sub.bias))
        replaced += 1
    return replaced
