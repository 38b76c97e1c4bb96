"""Engines: the hardware that runs a loop nest (``fodlam/nest.py``), first order.

Each engine maps a nest with its dataflow against its buffers and bandwidths, in closed
form, and returns the latency, the energy by component, the mapping it chose and the
bound (compute, buffer or DRAM). Engines never see the op a nest came from.

* ``RowStationary``: Eyeriss's PE array (Chen et al., JSSC 2017), fitted on its 18
  published conv layers (``calibration/fit.py``).
* ``SparseVector``: EIE (Han et al., ISCA 2016): one broadcast vector per GEMM row,
  fitted on its 6 published fc layers.
* ``WeightStationary``: a systolic array (TPU v1's matrix unit, NVDLA's MAC array) timed
  by the systolic rule of SCALE-Sim (Samajdar et al.): per weight tile (fold), the rows
  streamed plus weight loading, fill and drain, ``2 x array rows + array columns - 2``;
  rows tiled against the on-chip buffer; DRAM traffic overlapped with compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from .accelerator import Architecture, ConvCoefficients, Energy, FcCoefficients, Power
from .errors import ConfigError
from .nest import Nest, nests

#: energy components of the row-stationary array, in the order of ``rs_energy_terms``
RS_COMPONENTS = ("array", "global_buffer", "offchip_io")
#: their coefficients in the profile's [shape_model.conv] table
RS_ENERGY_KEYS = ("p_array_w", "e_glb_j_per_byte", "e_io_j_per_byte")


@dataclass
class EngineCost:
    engine: str
    latency_s: float
    components: dict
    bound: str
    how: str
    mapping: dict = field(default_factory=dict)

    @property
    def energy_j(self) -> float:
        return sum(self.components.values())


@dataclass
class LayerCost:
    """The nests of one layer, each costed by the engine ``pick`` chose for it."""

    latency_s: float = 0.0
    components: dict = field(default_factory=dict)
    hows: list = field(default_factory=list)
    mappings: list = field(default_factory=list)
    bounds: list = field(default_factory=list)
    engines: list = field(default_factory=list)

    def add(self, energy_parts: dict, latency_s: float) -> None:
        self.latency_s += latency_s
        for k, v in energy_parts.items():
            self.components[k] = self.components.get(k, 0.0) + v

    @property
    def mapping(self) -> dict:
        return self.mappings[0] if len(self.mappings) == 1 else {"nests": self.mappings}

    @property
    def bound(self) -> str:
        return " + ".join(dict.fromkeys(self.bounds))


def cost_layer(layer, pick) -> LayerCost:
    """Cost every nest of a MAC-bearing layer on the engine ``pick(nest)`` returns."""
    out = LayerCost()
    for nest in nests(layer):
        engine = pick(nest)
        cost = engine.cost(nest)
        out.add(cost.components, cost.latency_s)
        out.hows.append(f"{engine.name}: {nest.describe()}: {cost.how}")
        out.mappings.append(cost.mapping)
        out.bounds.append(cost.bound)
        out.engines.append(engine.name)
    return out


def precision(arch: Architecture, bits) -> int:
    """The bit width an engine computes a nest in: the layer's own when the profile lists it
    in ``precisions``, else the widest listed one below it (an fp32 model runs at 16 bits
    on a 16-bit array, as it would be deployed), else the narrowest listed; the profile's
    native width (``bytes_per_element``) when the layer states none."""
    return _precision(arch.bytes_per_element, arch.precisions, bits)


@lru_cache(maxsize=1024)
def _precision(bytes_per_element, precisions, bits) -> int:
    native = int(round(float(bytes_per_element or 2) * 8))
    supported = sorted(int(b) for b in (precisions or (native,)))
    if not bits:
        return native
    if bits in supported:
        return int(bits)
    lower = [b for b in supported if b <= bits]
    return max(lower) if lower else supported[0]


# ---- row-stationary array (Eyeriss) ---------------------------------------------------------

@lru_cache(maxsize=4096)
def active_pes(R: int, E: int, rows: int, cols: int) -> float:
    """Active PEs of an R x E row-stationary PE set on a rows x cols array."""
    R, E = max(1, int(R)), max(1, int(E))
    if R > rows:  # filter taller than the array: split rows over passes
        R = rows
    segments = math.ceil(E / cols)
    if R * segments <= rows:
        sets = rows // (R * segments)
        if E > cols:
            return float(R * E * sets)
        return float(R * E * sets * (cols // E))
    best = 0.0
    sets_v = rows // R
    for e in range(1, cols + 1):
        sets_h = cols // e
        strips = math.ceil(E / (e * sets_h))
        util = E / (strips * e * sets_h)
        best = max(best, R * e * sets_h * sets_v * util)
    return best


def rs_features(nest: Nest, arch: Architecture, kappa: float, q_cap: float) -> dict:
    """What the row-stationary mapping moves and computes for a nest.

    Active PEs from the R x E logical PE set (a GEMM, e = r = 1, fills the array); partial
    sums make a round trip through the global buffer per tile of ``q`` input channels,
    ``q = clamp(kappa / (E x R x sqrt(S)), 1, q_cap)``: the tile shrinks as the working set
    of a plane pass grows (output rows, filter rows, and sub-linearly filter width), and
    does not depend on the batch (items are processed one plane at a time, so a batch
    costs the sum of its items); the input map is read once; DRAM carries the input and
    output maps and the B operand (weights) once."""
    bpe = precision(arch, nest.bits) / 8
    A = active_pes(nest.r, nest.e, arch.pe_rows, arch.pe_cols)
    q = min(max(kappa / (nest.e * nest.r * math.sqrt(nest.s)), 1.0), q_cap, float(nest.c))
    outputs = nest.steps * nest.groups * nest.rows * nest.m
    psum = 2 * bpe * outputs * nest.c / q
    ifm = bpe * nest.in_elems
    ofm = bpe * nest.out_elems
    w = bpe * nest.b_elems * nest.steps
    macs = nest.macs
    return dict(A=A, q=q, macs=macs, tc=macs / (A * rs_clock_hz(arch)), glb=psum + ifm, ifm=ifm,
                ofm=ofm, act=ifm + ofm, w=w, dram=ifm + ofm + w)


def rs_clock_hz(arch: Architecture) -> float:
    """The row-stationary array's clock (Eyeriss: 200 MHz where the profile gives none)."""
    return float(arch.clock_mhz or 200) * 1e6


def rs_latency(f: dict, eta: float, glb_bytes_per_s: float, dram_a: float, dram_b: float,
               dram_bytes_per_s: float | None = None) -> tuple[float, float]:
    """(processing, total) seconds: max(compute, buffer), plus DRAM time not hidden, and
    never faster than the DRAM interface allows."""
    proc = max(f["tc"] / eta, f["glb"] / glb_bytes_per_s)
    total = proc * (1 + dram_a) + dram_b * f["ofm"]
    if dram_bytes_per_s:
        total = max(total, f["dram"] / dram_bytes_per_s)
    return proc, total


def rs_energy_terms(f: dict, total_s: float) -> list[float]:
    """What each energy coefficient multiplies: the array (PEs, scratchpads, clock) for the
    time it runs, global-buffer bytes, and activation bytes over the chip's I/O. On the 18
    published layers (chip power 218-332 mW) per-MAC energy cannot be told apart from the
    array's power x time, so the fit keeps the time term (see calibration/fit.py)."""
    return [total_s, f["glb"], f["act"]]


class RowStationary:
    kind = "row-stationary array"

    def __init__(self, name: str, arch: Architecture, coeffs: ConvCoefficients):
        if arch.pe_rows is None or arch.pe_cols is None:
            raise ConfigError("[architecture] needs pe_rows and pe_cols for the row-stationary array")
        self.name = name
        self.arch = arch
        self.c = coeffs
        self.dram_bw = float(arch.dram_bytes_per_s) if arch.dram_bytes_per_s else None
        self.energies = [float(getattr(coeffs, k)) for k in RS_ENERGY_KEYS]

    def cost(self, nest: Nest) -> EngineCost:
        c = self.c
        f = rs_features(nest, self.arch, c.kappa, c.q_cap)
        proc, total = rs_latency(f, c.eta, c.glb_bytes_per_s, c.dram_a, c.dram_b, self.dram_bw)
        parts = {k: t * e for k, t, e in zip(RS_COMPONENTS, rs_energy_terms(f, total), self.energies)}
        t_c, t_b = f["tc"] / c.eta, f["glb"] / c.glb_bytes_per_s
        if self.dram_bw and f["dram"] / self.dram_bw >= total:
            bound = "DRAM-bound"
        else:
            bound = "buffer-bound" if t_b > t_c else "compute-bound"
        how = (f"{f['A']:.0f} active PEs (R={nest.r}, E={nest.e}), channel tile q={f['q']:.2f}, "
               f"{f['glb'] / 1e6:.3g} MB buffer traffic, {f['dram'] / 1e6:.3g} MB DRAM, {bound}")
        mapping = {"active_pes": f["A"], "channel_tile": f["q"], "buffer_bytes": f["glb"],
                   "dram_bytes": f["dram"], "compute_s": t_c, "buffer_s": t_b}
        return EngineCost(self.name, total, parts, bound, how, mapping)


# ---- sparse vector engine (EIE) ------------------------------------------------------------

def sparse_features(nest: Nest, arch: Architecture) -> dict:
    """EIE-style: every non-zero input activation of a row is broadcast to all PEs and each
    PE works through its share of that column's non-zero weights, at least one cycle
    (EIE's 64 PEs at 800 MHz where the profile gives none)."""
    pes = float(arch.fc_pes or 64)
    col_nnz = nest.m * nest.weight_density
    nz_act = nest.k * nest.activation_density
    cycles = nz_act * max(1.0, col_nnz / pes)
    # an activation B operand is written into the PEs' weight SRAM at run time (dense, one
    # 64-bit word = four 16-bit values per PE per cycle) before the rows stream
    load = nest.m * nest.k / (pes * 4) if nest.b_operand != "weight" else 0.0
    reps = nest.steps * nest.groups
    return dict(cycles=cycles, nz_act=nz_act, nz_macs=nz_act * col_nnz, vectors=reps * nest.rows,
                load_cycles=reps * load, clock_hz=float(arch.fc_clock_mhz or 800) * 1e6)


def sparse_latency(f: dict, t0_s: float, cycles_scale: float) -> float:
    return (f["vectors"] * (t0_s + cycles_scale * f["cycles"] / f["clock_hz"])
            + f["load_cycles"] / f["clock_hz"])


class SparseVector:
    kind = "sparse vector engine"

    def __init__(self, name: str, arch: Architecture, coeffs: FcCoefficients,
                 io_j_per_byte: float = 0.0):
        self.name = name
        self.arch = arch
        self.c = coeffs
        self.power_w = float(coeffs.power_w)
        self.io_j_per_byte = float(io_j_per_byte)

    def cost(self, nest: Nest) -> EngineCost:
        f = sparse_features(nest, self.arch)
        t = sparse_latency(f, self.c.t0_s, self.c.cycles_scale)
        # on-chip capacity is a hard bound: non-zero weights (a byte each) beyond the weight
        # SRAM stream from DRAM on every pass over them, overlapped with the arithmetic
        cap = self.arch.fc_onchip_bytes
        nnz_bytes = (nest.steps * nest.b_elems * nest.weight_density
                     if nest.b_operand == "weight" else 0.0)
        streamed = nnz_bytes if cap is not None and nnz_bytes > cap else 0.0
        if streamed and self.arch.dram_bytes_per_s:
            t_d = streamed / float(self.arch.dram_bytes_per_s)
        else:
            t_d = 0.0
        how = (f"{f['vectors']} vector(s) x ({self.c.t0_s * 1e6:.3g} us + "
               f"{self.c.cycles_scale:.3g} x {f['cycles']:.4g} cycles: {f['nz_act']:.4g} "
               f"non-zero activations x their columns' non-zeros over the PEs)"
               + (f" + {f['load_cycles']:.4g} cycles loading the activation operand"
                  if f["load_cycles"] else "")
               + f" at {self.power_w:.3g} W (weight density {nest.weight_density:g}, "
               f"activation density {nest.activation_density:g})")
        mapping = {"vectors": f["vectors"], "cycles_per_vector": f["cycles"],
                   "load_cycles": f["load_cycles"]}
        parts = {"sparse_engine": t * self.power_w}
        bound = "compute-bound"
        if streamed:
            mapping.update(dram_bytes=streamed, weights_onchip=False)
            parts["offchip_io"] = streamed * self.io_j_per_byte
            how += (f"; {streamed / 1e6:.4g} MB of non-zero weights exceed the "
                    f"{cap / 1e6:.3g} MB weight SRAM and stream from DRAM"
                    + (f" ({t_d * 1e3:.4g} ms)" if t_d else ""))
            if t_d > t:
                parts["static_wait"] = (t_d - t) * self.power_w
                t, bound = t_d, "DRAM-bound"
        return EngineCost(self.name, t, parts, bound, how, mapping)


class OperationEnergy:
    """Energy by component from the profile's ``[power]`` or ``[energy]`` figures, shared by
    the array engines (``WeightStationary``, ``fodlam.unrolled.Unrolled``)."""

    def __init__(self, power: Power | None, energy: Energy | None):
        self.power, self.energy = power, energy
        #: set by the cost model: per-byte energies of a [power] profile moved from their node
        #: to the power figures' node; the datapath overhead moved from its own node to the
        #: other energies' node (each by the profile's technology rule)
        self.energy_factor = 1.0
        self.overhead_factor = 1.0
        #: an addition costs this fraction of an 8-bit MAC (Horowitz, ISSCC 2014: 8-bit add
        #: 0.03 pJ of a 0.23 pJ multiply-add)
        self.add_fraction = 0.03 / 0.23

    def energy_parts(self, macs: float, sram: float, dram: float, seconds: float,
                     busy_s: float, mac_j: float | None = None, extra_ops: float = 0.0,
                     pe_cycles: float | None = None) -> dict:
        """Energy by component (J, at the figures' node).

        ``[power]`` (measured idle and busy power): static ``idle x T``, the MACs' dynamic
        ``(busy - idle) x`` the seconds they need at peak, and, where the profile also gives
        per-byte energies, the bytes moved (DRAM, on-chip SRAM); the measured powers stay
        the envelope, so a layer's energy lies between ``idle x T`` and ``busy x T`` (the
        dynamic parts are scaled down together where they would pass it).

        ``[energy]`` (per-operation energies): MACs (and other engine operations, e.g.
        Winograd transforms), SRAM and DRAM bytes, leakage x T, and the energy beyond the
        datapath -- clock tree, control, pipeline registers -- per PE-cycle of work
        (``overhead_j_per_pe_cycle``: per MAC, and an addition's share per other operation)."""
        en = self.energy
        if self.power:
            idle, busy = float(self.power.idle_w), float(self.power.busy_w)
            parts = {"static": idle * seconds, "dynamic": (busy - idle) * min(busy_s, seconds)}
            if en is not None:
                parts["dram"] = dram * float(en.dram_j_per_byte) * self.energy_factor
                parts["onchip_sram"] = sram * float(en.sram_j_per_byte) * self.energy_factor
                dyn = parts["dynamic"] + parts["dram"] + parts["onchip_sram"]
                cap = (busy - idle) * seconds
                if dyn > cap > 0:
                    for k in ("dynamic", "dram", "onchip_sram"):
                        parts[k] *= cap / dyn
            return parts
        op_j = float(en.mac_j if mac_j is None else mac_j)
        parts = {"compute": macs * op_j + extra_ops * float(en.mac_j) * self.add_fraction,
                 "onchip_sram": sram * float(en.sram_j_per_byte),
                 "dram": dram * float(en.dram_j_per_byte),
                 "static": float(en.leakage_w) * seconds}
        if en.overhead_j_per_pe_cycle:
            # per PE-cycle of work (a MAC or a vector operation): the array's clock tree,
            # operand registers and control toggle with the work they carry (clock-gated
            # where a PE idles), so this grows with the array and with its utilisation
            work = (macs if pe_cycles is None else pe_cycles) + extra_ops * self.add_fraction
            parts["clock_control"] = float(en.overhead_j_per_pe_cycle) * self.overhead_factor * work
        return parts


# ---- weight-stationary systolic array (TPU v1, NVDLA) -------------------------------------

class WeightStationary(OperationEnergy):
    kind = "weight-stationary systolic array"

    def __init__(self, name: str, arch: Architecture, power: Power | None, energy: Energy | None,
                 per_precision: dict | None = None):
        self.arch = arch
        self.per_precision = dict(per_precision or {})
        missing = [k for k in ("array_k", "array_n", "clock_mhz", "onchip_bytes", "dram_bytes_per_s")
                   if getattr(arch, k) is None]
        if missing:
            raise ConfigError(f"[architecture] needs array_k, array_n, clock_mhz, onchip_bytes, "
                              f"dram_bytes_per_s (missing: {', '.join(missing)})")
        self.ak = int(arch.array_k)
        self.an = int(arch.array_n)
        self.clock_hz = float(arch.clock_mhz) * 1e6
        self.bpe = float(arch.bytes_per_element or 1)
        self.onchip = float(arch.onchip_bytes)
        self.dram_bw = float(arch.dram_bytes_per_s)
        self.activations = arch.activations or "streamed"
        self.name = name
        super().__init__(power, energy)
        self.peak = self.ak * self.an * self.clock_hz
        self._at: dict = {}         # nest bits -> at()

    def at(self, nest: Nest) -> tuple[int, int, int, float, float | None]:
        """(bits, array_k, array_n, bytes per element, MAC energy) for the nest's precision:
        ``[precision."BITS"]`` in the profile overrides the array and energy figures."""
        hit = self._at.get(nest.bits)
        if hit is not None:
            return hit
        bits = precision(self.arch, nest.bits)
        o = self.per_precision.get(str(bits))
        mac_j = self.energy.mac_j if self.energy else None
        ak, an = self.ak, self.an
        if o is not None:
            mac_j = o.mac_j if o.mac_j is not None else mac_j
            ak = o.array_k if o.array_k is not None else ak
            an = o.array_n if o.array_n is not None else an
        out = self._at[nest.bits] = (bits, int(ak), int(an), bits / 8, mac_j)
        return out

    def mapping(self, nest: Nest, *, scalesim: bool = False) -> dict:
        """How the nest runs on the array, in closed form (docs/model.md, "Around the
        array"). ``scalesim=True`` keeps SCALE-Sim's rules (no Winograd, no group packing,
        no double buffering, no shared buffer) for ``validation/scalesim_compare.py``."""
        bits, ak, an, bpe, _ = self.at(nest)
        a = self.arch
        fill = 2 * ak + an - 2
        K, N, T = nest.k, nest.m, nest.rows
        g, steps = nest.groups, nest.steps
        # Winograd F(2x2, 3x3) (Lavin & Gray, CVPR 2016) where the profile has it and the
        # layer allows it (3x3, stride 1, no dilation): 16 multiplies per 2x2 outputs and
        # input channel instead of 36, i.e. the reduction of 4 taps per output instead of 9;
        # the filters are stored transformed (4x4 per channel pair)
        wino = bool(a.winograd) and not scalesim and nest.taps == 9 and nest.r == 3 and \
            nest.s == 3 and nest.stride == 1 and nest.dilation == 1
        k_s, t_s = (4 * nest.c if wino else K), T
        # groups placed side by side on the array (a block-diagonal weight tile) where
        # several fit: gpt groups share one tile, its fill and its drain
        gpt = 1
        if g > 1 and not scalesim and k_s <= ak and N <= an:
            gpt = max(1, min(g, ak // k_s, an // N))
        k_t, n_t = k_s * gpt, N * gpt
        folds_k, folds_n = math.ceil(k_t / ak), math.ceil(n_t / an)
        folds = folds_k * folds_n
        reps = steps * math.ceil(g / gpt)                # weight-tile sets, each over t_s rows
        # weight bytes: the network's (useful), as stored (Winograd: 4x4 transformed
        # filters), and as DRAM moves them: whole padded array tiles where the profile
        # stores weights in tile format
        useful_w = steps * g * K * N * bpe
        stored_w = steps * g * N * (16 * nest.c if wino else K) * bpe
        tiled = a.weight_format == "tiles" and not scalesim
        w_bytes = reps * folds * ak * an * bpe if tiled else stored_w
        in_bytes = nest.in_elems * bpe
        streamed = self.activations == "streamed"
        order, refetch = "weights once per row tile", 0.0
        if a.shared_buffer and not scalesim:
            # each group (and step) is its own product with its own operands: the order is
            # chosen for one, and every one moves the same. Keeping the data and streaming
            # the weights passes every weight tile over each data slice (a fill and drain
            # each); of the orders, the fewest DRAM bytes, unless another is faster
            units = steps * g
            order, passes_w, passes_d = self._shared_order(
                nest, w_bytes / units, in_bytes / units, k_s, an, bpe,
                seconds=lambda pw, pd: max(
                    reps * folds * (pd * fill + t_s) / self.clock_hz,
                    (w_bytes * pd + (in_bytes * pw + nest.out_elems * bpe if streamed else 0))
                    / self.dram_bw))
            tiles = passes_d
            b_bytes = w_bytes * passes_d
            in_dram = in_bytes * passes_w
            refetch = w_bytes * (passes_d - 1) + in_bytes * (passes_w - 1)
        else:
            # rows stay on chip while every weight tile passes over them; rows that do not
            # fit are processed in tiles, each of which loads every weight tile again. A row
            # holds its share of the input map (never more than its im2col row: a strided
            # 1x1 conv reads only the pixels it samples), reused by every column of weight
            # tiles, and the partial sums of one column of tiles
            row_in = min(nest.in_elems / max(1, steps * g * T), K)
            row_bytes = gpt * (row_in + min(N, an)) * bpe
            rows_per_tile = max(1, int(self.onchip // max(row_bytes, 1e-9)))
            tiles = math.ceil(t_s / rows_per_tile)
            b_bytes = w_bytes * tiles
            in_dram = in_bytes
            refetch = w_bytes * (tiles - 1)
        if a.double_buffered and not scalesim:
            # the next weight tile shifts in (array_k cycles) while the rows stream through
            # the current one: per tile max(rows, shift-in), plus one shift-in, fill and
            # drain for the whole layer (Jouppi et al., ISCA 2017, Section 2)
            per_tile = tiles * max(math.ceil(t_s / tiles), ak)
            cycles = reps * folds * per_tile + fill
            fill_drain = cycles - reps * folds * t_s
        else:
            cycles = reps * folds * (tiles * fill + t_s)
            fill_drain = reps * folds * tiles * fill
        act = (nest.in_elems + nest.out_elems) * bpe
        # streamed: every layer reads its input maps from DRAM and writes its outputs back
        # (NVDLA); resident: maps stay in the on-chip buffer between layers (TPU v1's
        # Unified Buffer), and rows beyond it cost weight reloads (the row tiles above)
        act_dram = (in_dram + nest.out_elems * bpe) if streamed else 0.0
        sram = reps * bpe * (t_s * k_t * folds_n + t_s * n_t * (2 * folds_k - 1)) + b_bytes
        engine_macs = steps * g * t_s * k_s * N
        placement = "one group per weight tile" if g == 1 or gpt == 1 else \
            f"{gpt} groups side by side per weight tile (block-diagonal)"
        out = dict(bits=bits, array_k=ak, array_n=an, folds=folds, folds_k=folds_k,
                   folds_n=folds_n, row_tiles=tiles, fill_drain_cycles=fill_drain, cycles=cycles,
                   dram_bytes=b_bytes + act_dram, activation_dram_bytes=act_dram,
                   sram_bytes=sram, weight_bytes_useful=useful_w, weight_bytes_moved=b_bytes,
                   weight_tiles=reps * folds, engine_macs=engine_macs,
                   double_buffered=bool(a.double_buffered and not scalesim), winograd=wino)
        if tiled:
            out["weight_bytes_padded"] = w_bytes
        if g > 1:
            out.update(groups=g, groups_per_tile=gpt, group_placement=placement)
        if a.shared_buffer and not scalesim:
            out.update(loop_order=order, refetch_bytes=refetch)
        if wino:
            # input transform 32 additions per 4x4 tile and input channel, output transform
            # 24 per 2x2 output tile and output channel (B^T d B, A^T m A)
            out["transform_ops"] = steps * g * math.ceil(T / 4) * (32 * nest.c + 24 * N)
        return out

    def _shared_order(self, nest: Nest, w_bytes: float, in_bytes: float, k_s: int, an: int,
                      bpe: float, seconds=None) -> tuple[str, int, int]:
        """Weights and input data in one buffer (NVDLA's CBUF): the loop order, in closed
        form -> (order, passes over the input, passes over the weights). Keeping the weights needs room for one slice of data (the input rows one
        output row reads); keeping the data needs room for one column of weight tiles."""
        cap = self.onchip
        if w_bytes + in_bytes <= cap:
            return "weights and data both resident", 1, 1
        if nest.taps > 1:      # the filter's rows of input for one output row of one item
            d_min = in_bytes * nest.r / max(1, nest.n * max(1, nest.e) * nest.stride)
        else:                  # one GEMM row
            d_min = in_bytes / max(1, nest.rows)
        d_min = min(in_bytes, d_min)
        w_min = min(w_bytes, k_s * min(nest.m, an) * bpe)
        options = []
        if cap > d_min:
            p = math.ceil(w_bytes / (cap - d_min))
            options.append((w_bytes + in_bytes * p, 0, "keep weights, stream data"
                            + (f" ({p} weight slices, data read {p}x)" if p > 1 else ""), p, 1))
        if cap > w_min:
            p = math.ceil(in_bytes / (cap - w_min))
            options.append((in_bytes + w_bytes * p, 1, "keep data, stream weights"
                            + (f" ({p} data slices, weights read {p}x)" if p > 1 else ""), 1, p))
        if not options:      # neither a data slice nor a weight column fits: both per row
            p = math.ceil((w_bytes + in_bytes) / cap)
            return f"tile both ({p} passes)", p, p
        # the fastest order (a layer's time never falls as it grows: the least of
        # monotone times), and of equally fast ones the fewest bytes
        _, _, order, pw, pd = min(options, key=lambda o: (seconds(o[3], o[4]) if seconds else 0,
                                                          o[0], o[1]))
        return order, pw, pd

    def cost(self, nest: Nest) -> EngineCost:
        mp = self.mapping(nest)
        ak, an, mac_j = mp["array_k"], mp["array_n"], self.at(nest)[4]
        t_c = mp["cycles"] / self.clock_hz
        t_d = mp["dram_bytes"] / self.dram_bw
        t = max(t_c, t_d)
        macs = nest.macs
        # a wider MAC occupies several of the native array's PEs (nv_full: a 16-bit MAC is
        # two 8-bit lanes), and their clock and registers with it
        lanes = (self.ak * self.an) / (ak * an)
        parts = self.energy_parts(mp["engine_macs"], mp["sram_bytes"], mp["dram_bytes"], t,
                                  mp["engine_macs"] / (ak * an * self.clock_hz), mac_j=mac_j,
                                  extra_ops=mp.get("transform_ops", 0),
                                  pe_cycles=mp["engine_macs"] * lanes)
        bound = "DRAM-bound" if t_d > t_c else "compute-bound"
        util = macs / (mp["cycles"] * ak * an) if mp["cycles"] else 0.0
        extra = []
        if mp["winograd"]:
            extra.append(f"Winograd F(2x2,3x3): {mp['engine_macs']:.4g} multiplies for "
                         f"{macs:.4g} MACs")
        if mp.get("groups_per_tile", 1) > 1:
            extra.append(mp["group_placement"])
        if mp["double_buffered"]:
            extra.append("weight tiles double-buffered")
        if "loop_order" in mp:
            extra.append(f"{mp['loop_order']}, {mp['refetch_bytes'] / 1e6:.3g} MB re-fetched")
        how = (f"{ak}x{an} array at {mp['bits']} bits, {mp['folds']} weight tile(s) x {mp['row_tiles']} row "
               f"tile(s), {mp['fill_drain_cycles']:.0f} fill/drain cycles of {mp['cycles']:.0f}, "
               f"utilisation {util:.2f}, {mp['dram_bytes'] / 1e6:.3g} MB DRAM, {bound}"
               + "".join(f"; {x}" for x in extra))
        mp.update(compute_s=t_c, dram_s=t_d, utilisation=util)
        return EngineCost(self.name, t, parts, bound, how, mp)
