"""FLOPs charged per element for the work `FlopCounterMode` does not count: norms, softmax,
activations, biases, residuals, rotary embeddings, pooling (docs/profiling.md, "FLOPs")."""

from __future__ import annotations

FLOPS_PER_ELEMENT: dict[str, int] = {
    "embedding_sum": 2,  # BERT: word + position + token-type, 2 adds per hidden element
    "position_add": 1,  # GPT-2: token + position table; ViT: patch + position embedding
    "layernorm": 8,  # mean, centre, square, variance sum, normalise, gamma, beta (+ rsqrt)
    "rmsnorm": 4,  # square, accumulate, multiply by rsqrt, gamma
    "attention_scale": 1,  # scores * 1/sqrt(head_dim)
    "attention_mask_add": 1,  # scores + additive mask (padding or causal); ViT has none
    "softmax": 5,  # max, subtract, exp, sum, divide
    "bias_add": 1,  # per output element of every linear layer (and conv) with a bias
    "gelu": 8,  # exact erf GELU: x * 0.5 * (1 + erf(x / sqrt(2)))
    "gelu_tanh": 9,  # 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))): x³ 2, ×, +, ×, tanh, +1, ×x, ×0.5
    "relu": 1,
    "silu": 5,  # x * sigmoid(x): negate, exp, +1, divide, multiply
    "gate_multiply": 1,  # LLaMA MLP: act(gate(x)) * up(x)
    "rotary": 3,  # q*cos + rotate_half(q)*sin per query/key element (the sign flip is a copy)
    "rotary_table": 9,  # per (position, frequency): p*f, cos & sin of the doubled pair (2×2),
    # attention-scaling multiplies (2×2); computed once per forward, before block 1
    "residual_add": 1,  # per hidden element, twice per block
    "mean_pool": 2,  # mask multiply + accumulate per hidden element of every token
    "l2_normalize": 3,  # square + accumulate + divide per embedding element
}
# config activation name → FLOPS_PER_ELEMENT key
ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "relu": "relu",
               "silu": "silu", "swish": "silu"}
