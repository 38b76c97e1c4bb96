"""Node: one operation of an imported model, lowered to zero or more canonical layers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import layers as L
from .errors import InputError
from .layers import MAC_KINDS, Layer


def _total(attr: str, parts: str) -> property:
    """A property that sums ``attr`` over the object's ``parts`` (layers, estimates)."""
    return property(lambda self: sum(getattr(p, attr) for p in getattr(self, parts)),
                    doc=f"{attr}, summed over the {parts}")


@dataclass
class Node:
    """An operation of the source model.

    ``origin`` says where it came from: for PyTorch ``{"module": "layer3.1.conv2",
    "module_type": "Conv2d", "aten": "aten.convolution.default"}``, for ONNX
    ``{"onnx_node": "...", "op_type": "...", "index": i, "domain": "..."}`` (a node inside
    an If/Loop/Scan body is costed within its parent). ``modeled`` is False when no
    lowering exists for ``op``: such a node is reported, never dropped.
    ``reference`` names a published measurement, (network, LAYER), for exact lookup.
    """

    name: str
    op: str
    layers: tuple[Layer, ...] = ()
    origin: dict = field(default_factory=dict)
    modeled: bool = True
    reference: tuple[str, str] | None = None
    note: str = ""
    #: the nodes whose outputs this node reads (its activation operands, in order; weights
    #: and the model's inputs have no producer): the dataflow fusion follows
    inputs: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        if not self.modeled:
            return "unmodeled"
        for layer in self.layers:
            if layer.kind in MAC_KINDS:
                return layer.kind
        return self.layers[0].kind if self.layers else "data"

    macs = _total("macs", "layers")
    ops = _total("ops", "layers")


@dataclass
class Imported:
    """What an importer returns: data only, never a cost.

    ``nodes``: the lowered operations, in graph order; ``network``: what the model is
    (``name``, ``format``, ``source`` and the importer's own facts: inputs, opsets, the
    path a data-dependent forward took); ``warnings``: what the importer wants the user to
    know; ``batch``: the batch the nodes were lowered at."""

    nodes: list
    network: dict
    warnings: list = field(default_factory=list)
    batch: int = 1


def apply_activation_density(nodes, spec):
    """Non-zero fraction of the activations entering fc layers: a number for all, or a
    mapping of node names or module paths to numbers."""
    if spec is None:
        return nodes
    if isinstance(spec, dict):
        known = {n.name for n in nodes} | {n.origin.get("module", "") for n in nodes}
        unknown = sorted(str(k) for k in spec if k not in known)
        if unknown:
            raise InputError(f"activation_density names no node or module: {', '.join(unknown[:5])}"
                             f"{' ...' if len(unknown) > 5 else ''}; use node names or module paths "
                             "as the profile reports them")
    elif isinstance(spec, bool) or not isinstance(spec, (int, float)) or not 0 < spec <= 1:
        raise InputError(f"activation_density must be a number in (0, 1] or a mapping, got {spec!r}")

    def pick(node):
        if isinstance(spec, dict):
            return spec.get(node.name, spec.get(node.origin.get("module", "")))
        return spec
    out = []
    for node in nodes:
        d = pick(node)
        if d is not None:
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= 1:
                raise InputError(f"activation_density for {node.name} must be in (0, 1], got {d!r}")
            node = replace(node, layers=tuple(replace(l, activation_density=float(d))
                                              if isinstance(l, L.FullyConnected) else l
                                              for l in node.layers))
        out.append(node)
    return out


def apply_weight_density(nodes, density_of):
    """fc layers of each node with the weight density ``density_of(node)`` returns (None:
    leave them as they are)."""
    out = []
    for node in nodes:
        d = density_of(node)
        if d is not None and d < 1.0:
            node = replace(node, layers=tuple(replace(l, weight_density=max(float(d), 1e-6))
                                              if isinstance(l, L.FullyConnected) else l
                                              for l in node.layers))
        out.append(node)
    return out


# ---- a traced LLM generation (data: the importers fill it, fodlam.llm costs it) --------

@dataclass
class GenerationTrace:
    """What the importers' generation tracing (``importers.torch.trace_generation``,
    ``importers.onnx.trace_generation_onnx``) records: the lowered prompt pass and sampled decode steps
    (data only,
    picklable: a sweep costs it on many accelerators; ``fodlam.llm.cost_generation`` costs it)."""

    name: str
    prompt_len: int
    new_tokens: int
    batch: int
    first: int                         # the first decode step's context
    steps: int                         # decode steps (new_tokens - 1)
    encdec: bool = False
    weight_bytes: int = 0
    element_bytes: float = 0.0        # bytes of the traced floating dtype (0: unknown)
    prefill: object = None             # Imported
    prefill_kv: int = 0
    decode: list = field(default_factory=list)     # [(context, Imported, cache bytes after)]


def decode_contexts(prompt_len: int, steps: int, samples: int) -> list[int]:
    """The cache lengths at which decode steps are traced: the first and the last step's
    (and evenly spaced ones between), at most ``samples``."""
    if steps <= 1:
        return [prompt_len]
    first, last = prompt_len, prompt_len + steps - 1
    k = max(2, min(samples, steps))
    return sorted({first + round(i * (last - first) / (k - 1)) for i in range(k)})


def positive_whole(value, what: str) -> int:
    """A positive whole number (an int, or a string of one), else a one-line InputError."""
    try:
        n = int(value) if not isinstance(value, bool) and str(value).strip().lstrip("+").isdigit() \
            else None
    except (TypeError, ValueError):
        n = None
    if n is None or n < 1:
        raise InputError(f"{what} must be a positive whole number, not {value!r}")
    return n
