"""Canonical layers: what the cost models consume.

Each layer is a frozen dataclass holding shape parameters only. MAC counts and
element counts are *derived* from the shape by the properties below, never stored.
Importers (ONNX, PyTorch, 2017 configs) extract arguments from their own IR and call
the builder functions at the bottom of this file, so every formula lives here once.

Counting conventions (documented in the README):

* ``macs``  multiply-accumulates of MAC-bearing layers only (conv, fc, matmul, rnn);
  counted for the whole layer invocation, i.e. for every sample of the batch.
* ``ops``   other arithmetic (comparisons, exponentials, adds of elementwise layers,
  pooling window reads...), never added to ``macs``.
* ``input_elems`` / ``weight_elems`` / ``output_elems``: tensor element counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Iterable, Sequence

from .errors import LayerError

#: Kinds that carry multiply-accumulates.
MAC_KINDS = ("conv", "fc", "matmul", "rnn")
#: Every kind a canonical layer can have.
KINDS = MAC_KINDS + ("pool", "eltwise", "norm", "reduce", "gather", "data")


def _prod(values: Iterable[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _tuple(value, n: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) == 1 and n > 1:
        return value * n
    if len(value) != n:
        raise LayerError(f"{what} has {len(value)} values for a {n}-D layer; give {n}")
    return value


def _positive(what: str, *values: int) -> None:
    for v in values:
        if int(v) <= 0:
            raise LayerError(f"{what} must be positive, got {v}")


@dataclass(frozen=True)
class Layer:
    """Base of every canonical layer."""

    #: Integer precision of the arithmetic where the source states it (e.g. 8 for
    #: QLinearConv, 4 for MatMulNBits weights); None means the model's float type.
    bits: int | None = field(default=None, kw_only=True)

    kind = "layer"
    #: MACs, other operations and element counts: kinds override what they have
    macs = ops = input_elems = weight_elems = output_elems = 0

    def to_dict(self) -> dict:
        """Shape parameters plus the derived counts, JSON-ready."""
        out = {"kind": self.kind, "type": type(self).__name__}
        for f in fields(self):
            value = getattr(self, f.name)
            key = f.name
            if value is None:
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        out.update(macs=self.macs, ops=self.ops, input_elems=self.input_elems,
                   weight_elems=self.weight_elems, output_elems=self.output_elems)
        return out


@dataclass(frozen=True)
class Conv(Layer):
    """N-D convolution (or transposed convolution) over a batch.

    ``padding`` holds the total padding per spatial dimension (begin + end).
    For a transposed convolution, ``in_size`` is the size of the tensor that is
    scattered and ``out_size`` the (larger) result.
    """

    batch: int
    in_channels: int
    out_channels: int
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1
    transposed: bool = False

    kind = "conv"

    @property
    def macs(self) -> int:
        taps = _prod(self.kernel)
        if self.transposed:
            # every input pixel is multiplied into kernel x (out_channels / groups) outputs
            return (self.batch * self.in_channels * _prod(self.in_size)
                    * (self.out_channels // self.groups) * taps)
        return (self.batch * self.out_channels * _prod(self.out_size)
                * (self.in_channels // self.groups) * taps)

    @property
    def input_elems(self) -> int:
        return self.batch * self.in_channels * _prod(self.in_size)

    @property
    def weight_elems(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * _prod(self.kernel)

    @property
    def output_elems(self) -> int:
        return self.batch * self.out_channels * _prod(self.out_size)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels


@dataclass(frozen=True)
class FullyConnected(Layer):
    """``batch`` input vectors of ``in_features`` times a stationary weight matrix.

    ``batch`` is the number of rows multiplied (samples x tokens for a sequence model).
    Densities describe sparse (pruned) weights and activations, as on EIE; MACs stay
    the dense count.
    """

    batch: int
    in_features: int
    out_features: int
    weight_density: float = 1.0
    activation_density: float = 1.0

    kind = "fc"

    @property
    def macs(self) -> int:
        return self.batch * self.in_features * self.out_features

    @property
    def input_elems(self) -> int:
        return self.batch * self.in_features

    @property
    def weight_elems(self) -> int:
        return self.in_features * self.out_features

    @property
    def output_elems(self) -> int:
        return self.batch * self.out_features


@dataclass(frozen=True)
class MatMul(Layer):
    """``batch`` independent (m x k) @ (k x n) products of two *activations*
    (e.g. attention scores), i.e. no operand is a stationary weight."""

    batch: int
    m: int
    k: int
    n: int

    kind = "matmul"

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n

    @property
    def input_elems(self) -> int:
        return self.batch * (self.m * self.k + self.k * self.n)

    @property
    def output_elems(self) -> int:
        return self.batch * self.m * self.n


#: Gates per cell type and elementwise operations per hidden unit per step
#: (activations, gate products, the cell update; bias adds are counted separately).
RNN_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
RNN_ELEMENTWISE = {"lstm": 9, "gru": 8, "rnn": 1}


@dataclass(frozen=True)
class Recurrent(Layer):
    """One layer of an LSTM, GRU or plain RNN, over every time step and direction.

    MACs: for each direction and step, ``gates x hidden x (input + recurrent)`` where
    the recurrent width is ``proj_size`` if the LSTM has a projection, plus the
    projection itself (``hidden x proj_size``).
    """

    cell: str
    seq_len: int
    batch: int
    input_size: int
    hidden_size: int
    directions: int = 1
    proj_size: int = 0

    kind = "rnn"

    @property
    def _recurrent(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def macs(self) -> int:
        gates = RNN_GATES[self.cell]
        per_step = gates * self.hidden_size * (self.input_size + self._recurrent)
        per_step += self.hidden_size * self.proj_size
        return self.directions * self.seq_len * self.batch * per_step

    @property
    def ops(self) -> int:
        gates = RNN_GATES[self.cell]
        per_unit = RNN_ELEMENTWISE[self.cell] + 2 * gates  # nonlinearities + two bias adds
        return self.directions * self.seq_len * self.batch * self.hidden_size * per_unit

    @property
    def input_elems(self) -> int:
        return self.seq_len * self.batch * self.input_size

    @property
    def weight_elems(self) -> int:
        gates = RNN_GATES[self.cell]
        per_dir = gates * self.hidden_size * (self.input_size + self._recurrent + 2)
        per_dir += self.hidden_size * self.proj_size
        return self.directions * per_dir

    @property
    def output_elems(self) -> int:
        return self.seq_len * self.batch * self.directions * self._recurrent


@dataclass(frozen=True)
class Pool(Layer):
    """Max, average or Lp pooling; global pooling has ``kernel == in_size``."""

    mode: str
    batch: int
    channels: int
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]

    kind = "pool"

    @property
    def ops(self) -> int:
        return self.output_elems * _prod(self.kernel)

    @property
    def input_elems(self) -> int:
        return self.batch * self.channels * _prod(self.in_size)

    @property
    def output_elems(self) -> int:
        return self.batch * self.channels * _prod(self.out_size)


@dataclass(frozen=True)
class Elementwise(Layer):
    """Work without multiply-accumulates: activations, arithmetic, normalisation,
    reductions, gathers and data movement. ``category`` is the layer's kind."""

    category: str
    fn: str
    inputs: int
    outputs: int
    operations: int
    weights: int = 0

    # the kind and counts are the fields themselves
    kind = property(lambda self: self.category)                # type: ignore[assignment]
    ops = property(lambda self: self.operations)               # type: ignore[assignment]
    input_elems = property(lambda self: self.inputs)           # type: ignore[assignment]
    weight_elems = property(lambda self: self.weights)         # type: ignore[assignment]
    output_elems = property(lambda self: self.outputs)         # type: ignore[assignment]


@dataclass(frozen=True)
class Counted(Layer):
    """A layer known only by its kind and MAC count (legacy 2017 ``netfile`` input,
    where the per-layer MACs were extracted from a Caffe prototxt)."""

    category: str
    mac_count: int

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.category

    @property
    def macs(self) -> int:
        return self.mac_count


# --------------------------------------------------------------------------------------
# Builders: the one place each op family's arithmetic is set up. Importers call these.
# --------------------------------------------------------------------------------------

def conv_out_size(in_size: int, kernel: int, stride: int = 1, pad_total: int = 0,
                  dilation: int = 1) -> int:
    """Output length of a convolution along one axis (floor mode)."""
    return (in_size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_out_size(in_size: int, kernel: int, stride: int = 1, pad_total: int = 0,
                            dilation: int = 1, output_padding: int = 0) -> int:
    return (in_size - 1) * stride - pad_total + dilation * (kernel - 1) + output_padding + 1


def conv(batch: int, in_channels: int, out_channels: int, in_size: Sequence[int] | int,
         kernel: Sequence[int] | int, stride: Sequence[int] | int = 1,
         padding: Sequence[int] | int = 0, dilation: Sequence[int] | int = 1,
         groups: int = 1, out_size: Sequence[int] | None = None, transposed: bool = False,
         output_padding: Sequence[int] | int = 0, bits: int | None = None) -> Conv:
    """Build a convolution. ``padding`` is the total (begin + end) per spatial axis, or a
    single symmetric per-side value given as an int (``padding=1`` means 1 on each side).
    ``out_size`` is derived when not given; when given (from shape inference) it must
    agree with the formula for a direct convolution (a LayerError names both), and it
    stands as given for a transposed one, whose output size an exporter may choose within
    a stride's range (ONNX ``output_shape``)."""
    if isinstance(in_size, int):
        in_size = (in_size,) * 2
    in_size = tuple(int(v) for v in in_size)
    n = len(in_size)
    kernel = _tuple(kernel, n, "kernel")
    stride = _tuple(stride, n, "stride")
    dilation = _tuple(dilation, n, "dilation")
    pad = tuple(2 * padding for _ in range(n)) if isinstance(padding, int) else \
        _tuple(padding, n, "padding")
    _positive("batch, channels and groups", batch, in_channels, out_channels, groups)
    _positive("input size", *in_size)
    _positive("kernel, stride and dilation", *kernel, *stride, *dilation)
    if in_channels % groups or out_channels % groups:
        raise LayerError(f"groups={groups} must divide in_channels={in_channels} and "
                         f"out_channels={out_channels}")
    if transposed:
        opad = _tuple(output_padding, n, "output_padding")
        derived = tuple(conv_transpose_out_size(i, k, s, p, d, o) for i, k, s, p, d, o in
                        zip(in_size, kernel, stride, pad, dilation, opad))
    else:
        derived = tuple(conv_out_size(i, k, s, p, d) for i, k, s, p, d in
                        zip(in_size, kernel, stride, pad, dilation))
    if out_size is None:
        out_size = derived
    else:
        out_size = tuple(int(v) for v in out_size)
        if not transposed and out_size != derived:
            raise LayerError(f"convolution output size {out_size} disagrees with {derived}, what "
                             f"input {in_size}, kernel {kernel}, stride {stride}, padding {pad} "
                             f"and dilation {dilation} give")
    _positive("output size (input smaller than the kernel?)", *out_size)
    return Conv(batch=int(batch), in_channels=int(in_channels), out_channels=int(out_channels),
                in_size=in_size, out_size=out_size, kernel=kernel, stride=stride,
                padding=pad, dilation=dilation, groups=int(groups), transposed=transposed,
                bits=bits)


#: operations per score of a softmax: max, subtract, exp, sum, divide (``fodlam.ops``)
SOFTMAX_OPS = 5


def attention(batch_heads: int, q_len: int, kv_len: int, head_q: int, head_v: int) -> list:
    """Scaled dot-product attention as the work it is: the score product QK^T
    (``q_len x head_q`` by ``head_q x kv_len`` per head), the softmax over the scores, and
    the context product AV (``q_len x kv_len`` by ``kv_len x head_v``). Both importers
    lower every attention op through this one builder."""
    scores = batch_heads * q_len * kv_len
    return [MatMul(batch=batch_heads, m=q_len, k=head_q, n=kv_len),
            Elementwise(category="eltwise", fn="softmax", inputs=scores, outputs=scores,
                        operations=int(scores * SOFTMAX_OPS), weights=0),
            MatMul(batch=batch_heads, m=q_len, k=kv_len, n=head_v)]


def fc(batch: int, in_features: int, out_features: int, *, weight_density: float = 1.0,
       activation_density: float = 1.0, bits: int | None = None) -> FullyConnected:
    _positive("fc batch and features", batch, in_features, out_features)
    for name, d in (("weight_density", weight_density), ("activation_density", activation_density)):
        if not 0 < d <= 1:
            raise LayerError(f"{name} must be in (0, 1], got {d}")
    return FullyConnected(batch=int(batch), in_features=int(in_features),
                          out_features=int(out_features), weight_density=float(weight_density),
                          activation_density=float(activation_density), bits=bits)


def broadcast_batch(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """Broadcast the leading (batch) dims of two matmul operands, numpy style."""
    a, b = list(a), list(b)
    n = max(len(a), len(b))
    a = [1] * (n - len(a)) + a
    b = [1] * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise LayerError(f"matmul batch dims {tuple(a)} and {tuple(b)} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def matmul(a_shape: Sequence[int], b_shape: Sequence[int], *, a_is_weight: bool = False,
           b_is_weight: bool = False, bits: int | None = None) -> Layer:
    """Lower ``A @ B`` (numpy semantics, 1-D operands promoted) to a canonical layer.

    If one operand is a stationary weight (an initializer / parameter) the product is a
    fully-connected layer whose rows are every vector the weight multiplies; between two
    activations it is a MatMul.
    """
    a, b = [int(v) for v in a_shape], [int(v) for v in b_shape]
    if not a or not b:
        raise LayerError("matmul operands must have at least one dimension")
    if len(a) == 1:
        a = [1] + a
    if len(b) == 1:
        b = b + [1]
    m, k = a[-2], a[-1]
    k2, n = b[-2], b[-1]
    if k != k2:
        raise LayerError(f"matmul inner dimensions differ: {a_shape} @ {b_shape}")
    batch = _prod(broadcast_batch(a[:-2], b[:-2]))
    if b_is_weight and _prod(b[:-2]) == 1:
        return fc(batch * m, k, n, bits=bits)
    if a_is_weight and _prod(a[:-2]) == 1:
        # W (m x k) @ X (k x n): n vectors of k features each, m outputs
        return fc(batch * n, k, m, bits=bits)
    _positive("matmul dims", batch, m, k, n)
    return MatMul(batch=batch, m=m, k=k, n=n, bits=bits)


def einsum(equation: str, shapes: Sequence[Sequence[int]], weight_operands: Sequence[bool] = (),
           bits: int | None = None) -> Layer:
    """General contraction count of an einsum: the product of every distinct index's
    size (each output element sums over the contracted indices). With two operands, one
    of them a weight, it is a fully-connected layer; otherwise a MatMul whose m, k, n are
    the kept-left, contracted and kept-right index products."""
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise LayerError(f"einsum '{equation}' names {len(terms)} operands but got {len(shapes)}")
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        shape = list(shape)
        if "..." in term:
            explicit = term.replace("...", "")
            nell = len(shape) - len(explicit)
            letters = [f"\u0100{i}" for i in range(nell)]  # placeholder names for '...'
            expanded = letters + list(explicit) if term.startswith("...") else \
                list(term.split("...")[0]) + letters + list(term.split("...")[1])
        else:
            expanded = list(term)
        if len(expanded) != len(shape):
            raise LayerError(f"einsum term '{term}' does not match operand shape {tuple(shape)}")
        for letter, size in zip(expanded, shape):
            if sizes.get(letter, 1) != 1 and size != 1 and sizes[letter] != size:
                raise LayerError(f"einsum index '{letter}' has sizes {sizes[letter]} and {size}")
            sizes[letter] = max(sizes.get(letter, 1), int(size))
    if not rhs and "->" not in eq:  # implicit output: letters used once, sorted
        counts: dict[str, int] = {}
        for term in terms:
            for ch in term.replace("...", ""):
                counts[ch] = counts.get(ch, 0) + 1
        rhs = "".join(sorted(ch for ch, c in counts.items() if c == 1))
    out_letters = set(rhs.replace("...", "")) | {k for k in sizes if k.startswith("\u0100")}
    total = _prod(sizes.values())
    contracted = _prod(v for k, v in sizes.items() if k not in out_letters)
    out_elems = total // max(contracted, 1)
    if len(terms) == 2:
        t0 = set(terms[0].replace("...", ""))
        t1 = set(terms[1].replace("...", ""))
        shared_kept = _prod(v for k, v in sizes.items() if k in out_letters and
                            ((k in t0 and k in t1) or k.startswith("\u0100")))
        left = _prod(v for k, v in sizes.items() if k in out_letters and k in t0 and k not in t1)
        right = _prod(v for k, v in sizes.items() if k in out_letters and k in t1 and k not in t0)
        weights = list(weight_operands) + [False] * (2 - len(weight_operands))
        if weights[1] and not weights[0]:
            return fc(shared_kept * left, contracted, right, bits=bits)
        if weights[0] and not weights[1]:
            return fc(shared_kept * right, contracted, left, bits=bits)
        return MatMul(batch=shared_kept, m=left, k=contracted, n=right, bits=bits)
    # one operand (a trace or sum) or three and more: report as a MatMul with the total
    return MatMul(batch=1, m=out_elems, k=contracted, n=1, bits=bits)


def recurrent(cell: str, seq_len: int, batch: int, input_size: int, hidden_size: int,
              directions: int = 1, proj_size: int = 0, bits: int | None = None) -> Recurrent:
    cell = cell.lower()
    if cell not in RNN_GATES:
        raise LayerError(f"unknown recurrent cell '{cell}'; expected one of {sorted(RNN_GATES)}")
    _positive("rnn sizes", seq_len, batch, input_size, hidden_size, directions)
    return Recurrent(cell=cell, seq_len=int(seq_len), batch=int(batch),
                     input_size=int(input_size), hidden_size=int(hidden_size),
                     directions=int(directions), proj_size=int(proj_size), bits=bits)


def pool(mode: str, batch: int, channels: int, in_size: Sequence[int],
         out_size: Sequence[int], kernel: Sequence[int] | None = None) -> Pool:
    in_size = tuple(int(v) for v in in_size)
    out_size = tuple(int(v) for v in out_size)
    kernel = in_size if kernel is None else _tuple(kernel, len(in_size), "kernel")
    return Pool(mode=mode, batch=int(batch), channels=int(channels), in_size=in_size,
                out_size=out_size, kernel=kernel)


def elementwise(category: str, fn: str, out_elems: int, *, inputs: int | None = None,
                ops_per_elem: float = 1.0, weights: int = 0) -> Elementwise:
    if category not in KINDS or category in MAC_KINDS:
        raise LayerError(f"'{category}' is not a non-MAC kind")
    out_elems = int(out_elems)
    if out_elems < 0:
        raise LayerError(f"{fn}: negative element count {out_elems}")
    return Elementwise(category=category, fn=fn, inputs=out_elems if inputs is None else int(inputs),
                       outputs=out_elems, operations=int(math.ceil(out_elems * ops_per_elem)),
                       weights=int(weights))


def counted(kind: str, macs: int) -> Counted:
    if kind not in MAC_KINDS:
        raise LayerError(f"'{kind}' is not a MAC-bearing kind")
    if int(macs) < 0:
        raise LayerError(f"MAC count must be non-negative, got {macs}")
    return Counted(category=kind, mac_count=int(macs))
