"""Fused post-processing: the ops an accelerator's output pipeline absorbs.

A MAC layer's outputs leave the array through a pipeline (NVDLA's SDP and PDP; TPU v1's
activation unit) that can apply bias, batch-norm, activations, an element-wise add or
multiply with a second map, and pooling on the way out. An op of a class the profile's
``[pipeline] absorbs`` that reads a MAC layer's output -- directly, or through ops already
absorbed, when nothing else reads that intermediate -- costs no pass of its own: no DRAM
round trip of the intermediate map, its chain takes ``max(producer, pipeline rate,
producer's DRAM + any second operand's)``, and its energy is its own arithmetic and the
operand bytes it reads. The plan is a function of the dataflow only (``Node.inputs``), so
both importers fuse the same network the same way.
"""

from __future__ import annotations

from functools import lru_cache

from . import layers as L
from .ops import canon

ACTIVATION = {"relu", "relu6", "leakyrelu", "prelu", "prelukernel", "clip", "clamp",
              "clampmin", "clampmax", "hardtanh", "threshold"}
LUT = {"sigmoid", "tanh", "hardsigmoid", "hardswish", "silu", "swish", "gelu", "elu", "selu",
       "celu", "softplus", "mish", "quickgelu", "fastgelu", "logsigmoid"}
ADD = {"add", "sub", "rsub", "biasadd"}
MUL = {"mul", "div", "truediv", "truedivide"}


def op_class(layer, dynamic_inputs: int) -> str | None:
    """The pipeline class of a non-MAC layer (``PIPELINE_CLASSES``), or None. An add or
    multiply with one activation operand (the other a constant) is a bias or a scale."""
    if isinstance(layer, L.Pool):
        return "pool"
    if not isinstance(layer, L.Elementwise):
        return None
    return _elementwise_class(layer.category, layer.fn, min(dynamic_inputs, 2))


@lru_cache(maxsize=4096)
def _elementwise_class(category: str, fn: str, dynamic_inputs: int) -> str | None:
    fn = canon(fn)
    if category == "norm":
        return "batchnorm" if "batchnorm" in fn else None
    if category != "eltwise":
        return None
    if fn in ACTIVATION:
        return "activation"
    if fn in LUT:
        return "lut"
    if fn in ADD:
        return "bias" if dynamic_inputs <= 1 else "add"
    if fn in MUL:
        return "mul"
    return None


def _is_head(node) -> bool:
    """A node whose output leaves a MAC array (conv, fc, matmul)."""
    return node.modeled and any(isinstance(x, (L.Conv, L.FullyConnected, L.MatMul))
                                for x in node.layers)


def _heads_chain(node, chains_from) -> bool:
    """A non-MAC node that heads a chain of its own (its classes all in ``chains_from``)."""
    if not chains_from or not node.layers:
        return False
    classes = [op_class(x, len(node.inputs)) for x in node.layers]
    return all(c in chains_from for c in classes)


def _is_view(node) -> bool:
    return bool(node.layers) and all(x.kind == "data" and not x.ops for x in node.layers)


def plan(nodes, absorbs, chains_from=()) -> dict[str, str]:
    """{absorbed node: the MAC node whose pipeline absorbs it}. A node is absorbed when
    every layer of it is of an absorbed class (or it is a free view), and one of its
    operands comes from a MAC node, or a node already absorbed, that nothing else reads;
    where two do (a residual add of two branches), the later one in graph order. A node of
    a class in ``chains_from`` (``[pipeline] chains_from``, e.g. a residual ``add``) that is
    not absorbed heads a chain of its own: the ops after it pass through the pipeline with
    it (add + batch norm + ReLU in one pass)."""
    absorbs = set(absorbs)
    chains_from = set(chains_from)
    readers: dict[str, int] = {}
    for n in nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) + 1
    order = {n.name: i for i, n in enumerate(nodes)}
    head: dict[str, str] = {}
    fused: dict[str, str] = {}
    for n in nodes:
        if not n.modeled:
            continue
        inputs = n.inputs
        if not inputs or not any(p in head for p in inputs):
            if _is_head(n) or _heads_chain(n, chains_from):
                head[n.name] = n.name
            continue
        if _is_head(n):
            head[n.name] = n.name
            continue
        view = _is_view(n)
        if not view:
            classes = [op_class(x, len(n.inputs)) for x in n.layers]
            if not classes or not all(c in absorbs for c in classes):
                if _heads_chain(n, chains_from):
                    head[n.name] = n.name
                continue
        sources = [p for p in n.inputs if p in head and readers.get(p, 0) == 1]
        if not sources:
            if _heads_chain(n, chains_from):
                head[n.name] = n.name
            continue
        h = head[max(sources, key=order.__getitem__)]
        fused[n.name] = h
        head[n.name] = h
    return fused


def _dram_bytes(estimates) -> float:
    total = 0.0
    for e in estimates:
        mp = e.mapping or {}
        for m in mp.get("nests", [mp]):
            total += float(m.get("dram_bytes", 0.0) or 0.0)
    return total


def cost_chains(nodes, fused: dict, estimates: dict, cost_model, streamed: bool) -> dict:
    """Estimates of every absorbed node: ``estimates`` holds the heads' own (name ->
    tuple of Estimates); returns name -> tuple of Estimates for the absorbed nodes (free
    views keep their own)."""
    members: dict[str, list] = {}
    for n in nodes:
        h = fused.get(n.name)
        if h is not None and not _is_view(n):
            members.setdefault(h, []).append(n)
    bpe = cost_model.element_bytes()
    seconds_of = cost_model.pipeline_seconds
    dram_s = cost_model.dram_seconds
    out = {}
    for head, chain in members.items():
        own = estimates[head]
        producer_s = sum(e.latency_s for e in own)
        stages: dict[str, float] = {}
        rows = []
        for n in chain:
            secs = 0.0
            for layer in n.layers:
                stage, t = seconds_of(layer)
                if t > stages.get(stage, 0.0):
                    stages[stage] = t
                secs = max(secs, t)
            # a second map (a residual add) is read from memory on its way in
            extra = (sum(x.output_elems for x in n.layers) * (len(n.inputs) - 1) * bpe
                     if streamed and len(n.inputs) > 1 else 0.0)
            rows.append((n, secs, extra, secs + dram_s(extra)))
        extra_bytes = sum(r[2] for r in rows)
        pipe_s = max(stages.values(), default=0.0)
        chain_s = max(producer_s, pipe_s, dram_s(_dram_bytes(own) + extra_bytes))
        over = chain_s - producer_s
        total_w = sum(r[3] for r in rows)
        for n, secs, extra, w in rows:
            share = over * (w / total_w) if total_w else 0.0
            how = (f"absorbed by {head}'s output pipeline: {secs * 1e6:.3g} us at the pipeline's "
                   f"rate beside the producer's {producer_s * 1e6:.3g} us"
                   + (f", {extra / 1e6:.3g} MB second operand read" if extra else "")
                   + (f", {share * 1e6:.3g} us past it" if share else ", hidden"))
            k = len(n.layers)
            out[n.name] = tuple(cost_model.absorbed(x, share / k, extra / k, how) for x in n.layers)
    return out
