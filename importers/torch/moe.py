"""Mixture-of-experts modules lowered whole: the routed expert GEMMs as the weight
GEMMs they are, whatever implementation (a loop over experts, batched, grouped_mm) the
module would dispatch to, at a stated routing (``balanced`` or ``concentrated``).
"""

from __future__ import annotations

import math

import torch

from fodlam import layers as L
from fodlam import ops as OPS

from .lowerings import _shape

MOE_ROUTING = ("balanced", "concentrated")


def _experts_params(module) -> list:
    """The stacked expert weights of a mixture-of-experts module (``transformers``' experts
    classes, whatever implementation they dispatch to): direct 3-D parameters whose leading
    dimension is ``module.num_experts``."""
    e = getattr(module, "num_experts", None)
    if not isinstance(e, int) or e < 1:
        return []
    return [(n, p) for n, p in module.named_parameters(recurse=False) if p.dim() == 3 and p.shape[0] == e]


def _tokens_per_expert(tokens: int, k: int, experts: int, routing: str) -> list[int]:
    """Rows each expert multiplies. balanced: the tokens x k assignments spread evenly over
    the experts; concentrated: every token picks the same k experts (the fewest expert
    weights touched)."""
    if routing == "concentrated":
        return [tokens] * min(k, experts)
    total = tokens * k
    return [total // experts + (1 if i < total % experts else 0) for i in range(experts)]


def _moe_layers(module, hidden, top_k_index, routing: str):
    tokens = int(math.prod(_shape(hidden)[:-1]))
    k = int(_shape(top_k_index)[-1]) if isinstance(top_k_index, torch.Tensor) and top_k_index.dim() else 1
    params = _experts_params(module)
    experts = params[0][1].shape[0]
    transposed = bool(getattr(module, "is_transposed", False))
    layers = []
    for n_e in _tokens_per_expert(tokens, k, experts, routing):
        if not n_e:
            continue
        for _, w in params:
            _, a, b = _shape(w)
            layers.append(L.fc(n_e, a, b) if transposed else L.fc(n_e, b, a))
    assigned = tokens * k if routing == "balanced" else tokens * min(k, experts)
    inter = min(min(_shape(w)[1:]) for _, w in params)
    hidden_dim = _shape(hidden)[-1]
    layers += [OPS.lower("silu", assigned * inter), OPS.lower("mul", assigned * inter),
               OPS.lower("mul", assigned * hidden_dim), OPS.lower("add", assigned * hidden_dim)]
    note = (f"mixture of {experts} experts, top-{k} of {tokens} tokens, routing '{routing}': "
            + ("each expert gets tokens x k / experts rows" if routing == "balanced"
               else f"all tokens go to the same {min(k, experts)} experts")
            + " (fodlam.profile(..., moe_routing=...))")
    return layers, note
