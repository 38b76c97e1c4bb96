"""Shared by the ONNX importer's parts: limits, errors, graph and shape helpers."""

from __future__ import annotations


from fodlam.errors import ModelError

import onnx


#: Initializers with more elements than this are weights: shape inference sees only their
#: shapes (as graph inputs), so weights are never copied. Smaller ones keep their values
#: (reshape targets, axes, scales...).
SMALL_CONSTANT = 1024
#: the largest dimension and tensor FODLAM accepts (2^40 elements is ~4 TB of fp32)
MAX_DIM = 1 << 40
MAX_ELEMENTS = 1 << 40
MAX_SUBGRAPH_DEPTH = 32


class UnknownDim(ModelError):
    def __init__(self, message, symbol=None):
        super().__init__(message)
        self.symbol = symbol


class _Corrupt(Exception):
    pass


def _graphs(graph, depth=0):
    yield graph
    if depth > MAX_SUBGRAPH_DEPTH:
        raise ModelError(f"subgraphs nested deeper than {MAX_SUBGRAPH_DEPTH} levels")
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g, depth + 1)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g, depth + 1)


def _dims_of(vi) -> tuple | None:
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _set_dims(vi, dims) -> None:
    shape = vi.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif d:
            dim.dim_param = str(d)


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _unknowns(dims) -> int:
    return sum(1 for d in dims if not isinstance(d, int))


def _fmt_shape(dims) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _s(value) -> str:
    """Protobuf hands back invalid UTF-8 strings as bytes: show them, escaped, as text."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _node_name(node) -> str:
    return _s(node.name) or (_s(node.output[0]) if node.output else _s(node.op_type))


#: op types that multiply-accumulate: every lowering registered with ``macs=True``
#: (``lowerings.lowering``) adds its ops here; these are MAC-bearing ops with no lowering
#: yet (reported unmodeled), so shape folding treats them alike
_MAC_OPS = {"QAttention", "QLinearAttention", "QOrderedMatMul", "GatedRelativePositionBias",
            "PackedAttention", "PackedMultiHeadAttention", "SparseAttention", "MoE", "QMoE",
            "ConvTransposeWithDynamicPads"}


#: ops whose output never holds more elements than the broadcast of their inputs
_NON_EXPANDING = {"Gather", "GatherElements", "Slice", "Concat", "Unsqueeze", "Squeeze", "Cast",
                  "CastLike", "Identity", "Reshape", "Flatten", "Transpose", "Neg", "Abs", "Floor",
                  "Ceil", "Sqrt", "Not", "Equal", "Less", "Greater", "LessOrEqual",
                  "GreaterOrEqual", "And", "Or", "Xor", "Where", "Add", "Sub", "Mul", "Div", "Mod",
                  "Min", "Max", "Pow", "Sign", "Clip", "Relu", "ReduceProd", "ReduceSum",
                  "ReduceMin", "ReduceMax", "ReduceMean", "ArgMax", "ArgMin", "Split", "Shape",
                  "Size", "NonZero", "Reciprocal", "Round", "IsNaN", "IsInf"}

_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                     "Multinomial", "Bernoulli", "If", "Loop", "Scan"}


def _mac_bearing(op_type: str) -> bool:
    return op_type in _MAC_OPS
