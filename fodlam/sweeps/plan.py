"""Step 2 of a sweep: costing. A model's lowered nodes become a ``CostPlan`` (its
distinct layers, the order their costs add up in, its MACs and unmodeled nodes), computed
once per chunk; each accelerator point then costs the distinct layers and sums them as
``build_profile`` does, fused post-processing included. An LLM entry costs its traced
generation per point.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..accelerator import Accelerator, load_accelerator
from ..errors import FodlamError, InputError
from ..layers import KINDS
from ..sources import ModelRef
from .spec import LLM_COLUMNS, AccelSpec, apply_overrides

def _one_line(e: BaseException) -> str:
    if isinstance(e, FodlamError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def import_model(m: ModelRef, batch):
    """The lowered nodes of a model at a batch (None: the model's own); for an LLM entry,
    its traced generation (``fodlam.llm.GenerationTrace``)."""
    if m.llm:
        return m.generate(batch=batch)
    return m.load(batch=batch).nodes


@functools.lru_cache(maxsize=64)
def _base_profile(spec: str) -> Accelerator:
    return load_accelerator(spec)


def effective(accel: AccelSpec) -> Accelerator:
    acc = apply_overrides(_base_profile(accel.profile), accel.overrides)
    if accel.process_nm is not None:
        acc = acc.at_node(accel.process_nm, accel.scaling)
    return acc


@dataclass(frozen=True)
class CostPlan:
    """What every point of a model shares: its distinct layers (the same layer is costed
    once per point), the order in which their costs add up, its MACs and its unmodeled
    nodes: computed once per chunk, not once per point. ``spans`` place each modeled node's
    layers in ``order``; ``fusions`` keeps the fusion plan per pipeline (fodlam/fusion.py)."""

    keys: tuple              # distinct (layer, reference)
    order: tuple             # (index into keys, layer kind) in graph order
    macs: int
    unmodeled: int
    spans: tuple = ()        # (node name, start, end) into order
    nodes: tuple = ()
    fusions: dict = field(default_factory=dict, compare=False)

    def fusion(self, absorbs, chains_from=()) -> dict:
        from .. import fusion

        key = (tuple(absorbs), tuple(chains_from))
        hit = self.fusions.get(key)
        if hit is None:
            hit = self.fusions[key] = fusion.plan(self.nodes, *key)
        return hit


def cost_plan(nodes) -> CostPlan:
    keys, index, order, spans = [], {}, [], []
    macs = unmodeled = 0
    for node in nodes:
        if not node.modeled:
            unmodeled += 1
            continue
        macs += node.macs
        start = len(order)
        for i, layer in enumerate(node.layers):
            key = (layer, node.reference if i == 0 else None)
            j = index.get(key)
            if j is None:
                j = index[key] = len(keys)
                keys.append(key)
            order.append((j, layer.kind))
        spans.append((node.name, start, len(order)))
    return CostPlan(tuple(keys), tuple(order), macs, unmodeled, tuple(spans), tuple(nodes))


def cost_nodes(nodes, acc: Accelerator, plan: CostPlan | None = None) -> dict:
    """Totals of a lowered model on one accelerator: what a sweep row holds (the same sums
    as ``build_profile``, fused post-processing included)."""
    from .. import models

    plan = plan or cost_plan(nodes)
    model = models.for_accelerator(acc)
    ests = [model.estimate(*key) for key in plan.keys]
    pipeline = getattr(model, "pipeline", None)
    fused = plan.fusion(pipeline.absorbs, pipeline.chains_from) if pipeline is not None else {}
    chains: dict = {}
    if fused:
        from .. import fusion

        heads = set(fused.values())
        own = {name: tuple(ests[j] for j, _ in plan.order[a:b]) for name, a, b in plan.spans
               if name in heads}
        chains = fusion.cost_chains(plan.nodes, fused, own, model,
                                    streamed=getattr(model, "streamed", False))
    if getattr(model, "prefetch", False):     # weights fetched ahead, as build_profile does
        chains = dict(chains)
        chains.update(model.prefetched([
            (name, chains.get(name) or tuple(ests[j] for j, _ in plan.order[a:b]))
            for name, a, b in plan.spans]))
    energy = latency = 0.0
    kinds: dict = {}
    for name, a, b in plan.spans:       # graph order: the same sums as costing node by node
        chain = chains.get(name)
        for i, (j, kind) in enumerate(plan.order[a:b]):
            est = chain[i] if chain is not None else ests[j]
            energy += est.energy_j
            latency += est.latency_s
            k = kinds.setdefault(kind, [0.0, 0.0])
            k[0] += est.energy_j
            k[1] += est.latency_s
    row = {"macs": plan.macs, "energy_j": energy, "latency_s": latency, "edp_js": energy * latency,
           "unmodeled_nodes": plan.unmodeled}
    for kind in KINDS:
        e, t = kinds.get(kind, (0.0, 0.0))
        row[f"energy_j_{kind}"] = e
        row[f"latency_s_{kind}"] = t
    return checked_row(row, acc)


def checked_row(row: dict, acc: Accelerator) -> dict:
    """A point is ``ok`` only if every figure it holds is finite and non-negative; else it
    fails with a one-line reason naming the profile (a variant whose overrides combine into
    no finite cost)."""
    import math

    for key, v in row.items():
        if isinstance(v, float) and not (math.isfinite(v) and v >= 0):
            raise InputError(f"profile {acc.name}: {key} = {v!r} is not a finite, non-negative "
                             "cost: its figures (or overrides) overflow or underflow together")
    return row


def cost_generation_row(trace, acc: Accelerator) -> dict:
    """A sweep row of an LLM entry: the generation's totals (prefill and every decode step)
    and its per-token figures; per-kind columns from the prefill and the sampled decode
    steps (their mean for every step)."""
    from .. import models
    from ..llm import cost_generation

    gen = cost_generation(trace, models.for_accelerator(acc))
    row = {"macs": gen.total_macs, "energy_j": gen.total_energy_j, "latency_s": gen.total_latency_s,
           "edp_js": gen.total_energy_j * gen.total_latency_s,
           "unmodeled_nodes": sum(gen.prefill.unmodeled.values())}
    steps = gen.decode_steps
    kinds = {}
    for prof, weight in [(gen.prefill, 1.0)] + [(gen.decode_first, steps / 2), (gen.decode_last, steps / 2)]:
        for kind, v in prof.by_kind().items():
            k = kinds.setdefault(kind, [0.0, 0.0])
            k[0] += weight * v["energy_j"]
            k[1] += weight * v["latency_s"]
    for kind in KINDS:
        e, t = kinds.get(kind, (0.0, 0.0))
        row[f"energy_j_{kind}"] = e
        row[f"latency_s_{kind}"] = t
    row.update(prompt_len=gen.prompt_len, new_tokens=gen.new_tokens,
               **{k: getattr(gen, k) for k in LLM_COLUMNS[2:]})
    return checked_row(row, acc)


def run_chunk(nodes, accels: list[AccelSpec]) -> list[dict]:
    """Cost one model's graph nodes on a chunk of accelerator points (runs in a worker)."""
    if not isinstance(nodes, list):          # an LLM entry: its traced generation
        out = []
        for accel in accels:
            try:
                out.append(cost_generation_row(nodes, effective(accel)))
            except Exception as e:  # noqa: BLE001 - one point fails with its reason
                out.append({"error": _one_line(e)})
        return out
    plan = cost_plan(nodes)
    out = []
    for accel in accels:
        try:
            out.append(cost_nodes(nodes, effective(accel), plan=plan))
        except Exception as e:  # noqa: BLE001 - one point fails with its reason, never the sweep
            out.append({"error": _one_line(e)})
    return out
