"""One loop nest for every MAC-bearing layer: what every engine of every profile costs.

A convolution of any rank (grouped, depthwise, dilated, transposed), a Linear over any
number of rows, ``x @ W``, a product of two activations, an einsum and the gate products
of a recurrent cell all lower to the same description of the work::

    for step in steps:                 # sequential repeats (RNN time steps x directions)
      for g in groups:                 # independent slices, each with its own B operand
        for i in n:                    # items (batch) that share the B operand
          for p in positions:          # output positions, or GEMM rows, per item
            for m in out_channels:     # per group
              for c in in_channels:    # per group
                for t in taps:         # filter taps (1 for a GEMM)
                  out[.., p, m] += A[.., p, c, t] * B[g, m, c, t]

``b_operand`` says whether ``B`` is a stationary weight or an activation computed at run
time (attention products). ``r``, ``s`` and ``e`` (filter rows, filter columns, output rows
of one plane) keep what a row-stationary mapping needs of the spatial structure. A nest
with one tap is a GEMM whatever op produced it: its rows are ``n x positions`` and its
plane structure is dropped (``e = r = s = 1``), so a 1x1 convolution over M positions, a
Linear over M rows and ``x @ W`` are the same nest.

Engines see only nests (``fodlam/engines.py``), never the op they came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import layers as L


@dataclass(frozen=True)
class Nest:
    n: int                      # items sharing the B operand
    positions: int              # output positions (GEMM rows) per item
    m: int                      # output channels per group
    c: int                      # input channels per group
    taps: int = 1               # filter taps
    groups: int = 1
    steps: int = 1              # sequential repeats
    r: int = 1                  # filter rows (row-stationary mapping)
    s: int = 1                  # filter columns
    e: int = 1                  # output rows of one plane
    b_operand: str = "weight"   # "weight" or "activation"
    in_elems: int = 0           # activation elements read, whole nest
    out_elems: int = 0          # activation elements written, whole nest
    weight_density: float = 1.0
    activation_density: float = 1.0
    bits: int | None = None
    stride: int = 1             # largest stride of a spatial filter (Winograd needs 1)
    dilation: int = 1

    @property
    def rows(self) -> int:
        """GEMM rows per group and step: every vector that meets the B operand."""
        return self.n * self.positions

    @property
    def k(self) -> int:
        """Reduction length per output: input channels x taps."""
        return self.c * self.taps

    @property
    def macs(self) -> int:
        return self.steps * self.groups * self.rows * self.m * self.k

    @property
    def b_elems(self) -> int:
        """Elements of the B operand (all groups), read once per pass over it."""
        return self.groups * self.m * self.k

    @property
    def is_gemm(self) -> bool:
        return self.taps == 1

    def describe(self) -> str:
        shape = f"{self.rows} rows x {self.k} x {self.m}"
        if self.taps > 1:
            shape = (f"{self.n} x {self.positions} positions x {self.c} in x {self.m} out x "
                     f"{self.taps} taps")
        extra = []
        if self.groups > 1:
            extra.append(f"{self.groups} groups")
        if self.steps > 1:
            extra.append(f"{self.steps} steps")
        if self.b_operand != "weight":
            extra.append("B is an activation")
        return shape + (f" ({', '.join(extra)})" if extra else "")


def _gemm(rows: int, k: int, m: int, *, groups: int = 1, steps: int = 1, b_operand="weight",
          in_elems: int | None = None, out_elems: int | None = None, weight_density=1.0,
          activation_density=1.0, bits=None) -> Nest:
    return Nest(n=1, positions=rows, m=m, c=k, taps=1, groups=groups, steps=steps,
                b_operand=b_operand,
                in_elems=steps * groups * rows * k if in_elems is None else in_elems,
                out_elems=steps * groups * rows * m if out_elems is None else out_elems,
                weight_density=weight_density, activation_density=activation_density, bits=bits)


def nests(layer: L.Layer) -> tuple[Nest, ...]:
    """The loop nest(s) of a MAC-bearing layer (empty for other layers)."""
    if isinstance(layer, L.Conv):
        g = layer.groups
        taps = math.prod(layer.kernel)
        c, m = layer.in_channels // g, layer.out_channels // g
        plane = layer.in_size if layer.transposed else layer.out_size
        positions = math.prod(plane)
        if taps == 1 and not layer.transposed:
            # one tap: a GEMM over every output position of every item
            return (_gemm(layer.batch * positions, c, m, groups=g, in_elems=layer.input_elems,
                          out_elems=layer.output_elems, bits=layer.bits),)
        r = layer.kernel[-2] if len(layer.kernel) >= 2 else 1
        e = plane[-2] if len(plane) >= 2 else 1
        return (Nest(n=layer.batch, positions=positions, m=m, c=c, taps=taps, groups=g,
                     r=r, s=layer.kernel[-1], e=e, in_elems=layer.input_elems,
                     out_elems=layer.output_elems, bits=layer.bits,
                     stride=max(layer.stride),
                     dilation=max(layer.dilation)),)
    if isinstance(layer, L.FullyConnected):
        return (_gemm(layer.batch, layer.in_features, layer.out_features,
                      weight_density=layer.weight_density,
                      activation_density=layer.activation_density, bits=layer.bits),)
    if isinstance(layer, L.MatMul):
        # every product has its own B: the batch is groups, the rows are m
        return (_gemm(layer.m, layer.k, layer.n, groups=layer.batch, b_operand="activation",
                      bits=layer.bits),)
    if isinstance(layer, L.Recurrent):
        steps = layer.seq_len * layer.directions
        rec = layer.proj_size or layer.hidden_size
        gates = _gemm(layer.batch, layer.input_size + rec, L.RNN_GATES[layer.cell] * layer.hidden_size,
                      steps=steps, bits=layer.bits)
        if not layer.proj_size:
            return (gates,)
        return gates, _gemm(layer.batch, layer.hidden_size, layer.proj_size, steps=steps,
                            bits=layer.bits)
    return ()
