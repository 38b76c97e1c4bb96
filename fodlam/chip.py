"""What a chip the user brings declares about how it maps work (typed profile sections).

A first-order model cannot simulate a chip, but it can be told what every analytical peer
asks for (Timeloop's spatial factors, ZigZag's spatial mapping, MAESTRO's ``SpatialMap``
directives; ``docs/accelerators.md``, "Describing your own accelerator"):

* ``[array]`` and its ``[[array.unroll]]`` entries: which loop dimensions of the canonical
  nest the MAC array unrolls and by how much, per layer class, with the cycles one step
  of that unrolling takes; the output stage's and the weight path's rates; fixed cycles
  per launched operation and per tile; whether the array and the vector unit overlap;
  cores; per-buffer capacities; weights fetched ahead;
* ``[ops]``: elements per cycle of each class of operation without MACs (element-wise
  add and multiply, activations, table lookups, pooling, normalisation, softmax,
  reductions, data movement), and passes per element for multi-pass ones;
* ``[[ports]]``: the memories the chip reads and writes through (flash or DRAM for
  weights, SRAM for feature maps, or one shared DRAM), each with its bandwidth, its energy
  per byte, its capacity and, where known, its request latency and requests in flight.

Each section parses into a frozen dataclass when the profile loads; a wrong key, type or
range is a one-line ``ConfigError`` naming the file, the table and the key. The engine
that reads them is ``fodlam.unrolled.Unrolled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import ConfigError

#: loop dimensions an unrolling may name (``fodlam/nest.py``): items, output rows, output
#: columns, output positions (rows x columns, or a GEMM's rows), output channels, input
#: channels, filter taps, the reduction (input channels x taps), groups
DIMS = ("n", "h", "w", "p", "m", "c", "t", "k", "g")
#: layer classes an unrolling applies to: a spatial convolution, a depthwise convolution
#: (one input channel per group), a GEMM with a weight operand (1x1 convolutions, linear
#: layers), a product of two activations (attention's Q K^T and A V)
CLASSES = ("conv", "depthwise", "gemm", "product")
#: operation classes with their own rate in ``[ops]``
OP_CLASSES = ("add", "mul", "activation", "lut", "pool", "softmax", "norm", "reduce", "data",
              "other")
#: what a port may hold
HOLDS = ("weights", "maps")


def _f(kind="float", default=None, *, min0=False):
    return field(default=default, metadata={"kind": kind, "min0": min0})


@dataclass(frozen=True)
class Unrolling:
    """``[[array.unroll]]``: one way the array maps a layer class: ``dims`` names the loop
    dimensions it spreads across its MACs (or walks in one step) and by how much, and one
    step takes ``cycles`` cycles; the MACs of a step are the product of the factors."""

    name: str = _f("str")
    applies: tuple = _f("strs")
    dims: dict = _f("table")
    cycles: float = _f(default=1.0)
    #: channels of a channels-last map read or written per access (default: a whole burst)
    access_channels: int | None = _f("int")
    provenance: str | None = _f("str")

    def __post_init__(self):
        bad = [c for c in self.applies if c not in CLASSES]
        if bad or not self.applies:
            raise ValueError(f"applies: give layer classes among {', '.join(CLASSES)}"
                             + (f" (unknown: {', '.join(bad)})" if bad else ""))
        if not self.dims:
            raise ValueError("dims: name at least one loop dimension, e.g. { m = 8, c = 8 }")
        for d, u in self.dims.items():
            if d not in DIMS:
                raise ValueError(f"dims: unknown dimension '{d}'; known: {', '.join(DIMS)}")
            if isinstance(u, bool) or not isinstance(u, int) or u < 1:
                raise ValueError(f"dims.{d} = {u!r} must be a positive whole number")
        if "k" in self.dims and ("c" in self.dims or "t" in self.dims):
            raise ValueError("dims: k is c x t; name k or c and t, not both")
        if "p" in self.dims and ("h" in self.dims or "w" in self.dims):
            raise ValueError("dims: p is h x w; name p or h and w, not both")

    @property
    def lanes(self) -> int:
        out = 1
        for u in self.dims.values():
            out *= u
        return out

    @property
    def macs_per_cycle(self) -> float:
        return self.lanes / self.cycles


@dataclass(frozen=True)
class ArraySpec:
    """``[array]``: a MAC array described by its unrollings (``unroll``), its rates and
    overheads. ``cores`` identical arrays share the memory ports; a layer is split across
    them along ``core_split`` at ``split_cycles`` per operation."""

    unroll: tuple = _f("table", ())
    cores: int = _f("int", 1)
    core_split: str = _f("str", "m")
    split_cycles: float = _f(default=0.0, min0=True)
    output_elements_per_cycle: float | None = _f()
    weight_elements_per_cycle: float | None = _f()
    op_cycles: float = _f(default=0.0, min0=True)
    tile_cycles: float = _f(default=0.0, min0=True)
    tile_positions: int | None = _f("int")
    overlap: bool = _f("bool", True)
    prefetch_weights: bool = _f("bool", False)
    weight_buffer_bytes: float | None = _f()
    input_buffer_bytes: float | None = _f()
    accumulator_bytes: float | None = _f()
    provenance: str | None = _f("str")

    def __post_init__(self):
        if self.core_split not in DIMS:
            raise ValueError(f"core_split must be a loop dimension ({', '.join(DIMS)}), "
                             f"not {self.core_split!r}")

    def check_coverage(self) -> None:
        """Every layer class has an unrolling (ValueError otherwise)."""
        if not self.unroll:
            raise ValueError("give at least one [[array.unroll]] entry (how the array maps a "
                             "layer class)")
        covered = {c for u in self.unroll for c in u.applies}
        missing = [c for c in CLASSES if c not in covered]
        if missing:
            raise ValueError(f"no [[array.unroll]] applies to {', '.join(missing)}; every layer "
                             "class needs one (it may be the same entry)")


@dataclass(frozen=True)
class OpRates:
    """``[ops]``: elements per cycle of each class of non-MAC operation (pooling: window
    elements per cycle; reductions: input elements), and passes per element of multi-pass
    operations. A class left out runs at ``[architecture] vector_width`` operations per
    cycle."""

    add: float | None = _f()
    mul: float | None = _f()
    activation: float | None = _f()
    lut: float | None = _f()
    pool: float | None = _f()
    softmax: float | None = _f()
    norm: float | None = _f()
    reduce: float | None = _f()
    data: float | None = _f()
    other: float | None = _f()
    softmax_passes: float = _f(default=1.0)
    norm_passes: float = _f(default=1.0)
    #: channels of the input map a pooling or reducing pass reads per access (default: a
    #: whole burst)
    access_channels: int | None = _f("int")
    provenance: str | None = _f("str")

    def rate(self, op_class: str) -> float | None:
        return getattr(self, op_class, None)

    def passes(self, op_class: str) -> float:
        return {"softmax": self.softmax_passes, "norm": self.norm_passes}.get(op_class, 1.0)


@dataclass(frozen=True)
class Port:
    """``[[ports]]``: a memory the chip reads and writes through. ``holds`` says which
    tensors live there (``weights``, ``maps``); a layer's time is at least each port's
    bytes over its bandwidth. With ``latency_cycles``, ``burst_bytes`` and
    ``max_requests`` the bandwidth is reached only with enough requests in flight:
    ``min(bytes_per_s, max_requests x burst_bytes / latency)``."""

    name: str = _f("str")
    holds: tuple = _f("strs")
    bytes_per_s: float = _f()
    j_per_byte: float = _f(default=0.0, min0=True)
    capacity_bytes: float | None = _f()
    latency_cycles: float | None = _f(min0=True)
    burst_bytes: float | None = _f()
    max_requests: int | None = _f("int")
    provenance: str | None = _f("str")

    def __post_init__(self):
        bad = [h for h in self.holds if h not in HOLDS]
        if bad or not self.holds:
            raise ValueError(f"holds: give {' and/or '.join(HOLDS)}"
                             + (f" (unknown: {', '.join(bad)})" if bad else ""))

    def effective_bytes_per_s(self, clock_hz: float) -> float:
        if self.latency_cycles and self.burst_bytes and self.max_requests:
            return min(self.bytes_per_s,
                       self.max_requests * self.burst_bytes * clock_hz / self.latency_cycles)
        return self.bytes_per_s


def parse_array(table, where: str, parse_section) -> ArraySpec:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    entries = table.get("unroll", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: unroll must be [[array.unroll]] tables")
    unroll = tuple(parse_section(Unrolling, e, f"{where[:-1]}.unroll] #{i + 1}")
                   for i, e in enumerate(entries))
    spec = parse_section(ArraySpec, {k: v for k, v in table.items() if k != "unroll"}, where)
    spec = replace(spec, unroll=unroll)
    try:
        spec.check_coverage()
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    return spec


def parse_ports(entries, where: str, parse_section) -> tuple:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where} must be [[ports]] tables")
    ports = tuple(parse_section(Port, e, f"{where[:-1]} #{i + 1}]") for i, e in enumerate(entries))
    for what in HOLDS:
        holders = [p.name for p in ports if what in p.holds]
        if len(holders) > 1:
            raise ConfigError(f"{where}: {what} live in one port, not {', '.join(holders)}")
    names = [p.name for p in ports]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: two ports share a name ({', '.join(names)})")
    return ports
