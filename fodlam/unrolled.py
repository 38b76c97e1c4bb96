"""The engine of a chip the user describes: a MAC array known by how it unrolls the loops.

A profile's ``[array]`` lists its unrollings (``fodlam/chip.py``): each names the loop
dimensions of the canonical nest (``fodlam/nest.py``: items ``n``, output rows ``h`` and
columns ``w`` or positions ``p``, output channels ``m``, input channels ``c``, taps ``t``
or the reduction ``k``, groups ``g``) it spreads across the MACs, by how much, and the
cycles one step takes. For a layer, in closed form:

    steps(u)  = prod over the loop dimensions d of ceil(D_d / u_d)     (u_d = 1 if unnamed)
    mac cycles = min over the unrollings u that apply to the layer's class of steps(u) x cycles(u)

so the utilisation is the product over unrolled dimensions of D / (ceil(D / u) x u), the
way Timeloop, ZigZag and MAESTRO derive it from their spatial mappings. Around it, each a
profile field: the output stage (``output_elements_per_cycle``) and the weight path
(``weight_elements_per_cycle``), overlapped with the array or not (``overlap``); a fixed
cost per launched operation and per tile; ``cores`` that split a layer along a stated
dimension; and memory ports (``[[ports]]``) each bounding the layer by its bytes over its
bandwidth: ``latency = max(compute, port_1, port_2, ...) + fixed``.
"""

from __future__ import annotations

import math

from .chip import ArraySpec
from .engines import EngineCost, OperationEnergy, precision
from .errors import ConfigError
from .nest import Nest


def layer_class(nest: Nest) -> str:
    """``product`` (both operands activations), ``depthwise`` (one input and one output
    channel per group), ``conv`` (a spatial filter) or ``gemm``."""
    if nest.b_operand != "weight":
        return "product"
    if nest.groups > 1 and nest.c == 1 and nest.m == 1:
        return "depthwise"
    return "conv" if nest.taps > 1 else "gemm"


def extents(nest: Nest) -> dict:
    """The loop extents of a nest: a GEMM (one tap, no plane) is ``rows`` positions of one
    item; a spatial nest keeps its output rows and columns."""
    if nest.taps == 1 and nest.e <= 1:
        n, h, w = 1, 1, nest.rows
    else:
        h = max(1, nest.e)
        n, w = nest.n, math.ceil(nest.positions / h)
    return {"n": n, "h": h, "w": w, "m": nest.m, "c": nest.c, "t": nest.taps, "g": nest.groups}


def steps(factors: dict, ext: dict, gemm: bool) -> int:
    """Steps of one unrolling over the extents (``factors``: dimension -> unroll)."""
    f = dict(factors)
    if gemm and ("h" in f or "w" in f):        # a GEMM's rows fill the position lanes
        f["p"] = f.pop("h", 1) * f.pop("w", 1) * f.get("p", 1)
    loops = [("n", ext["n"]), ("m", ext["m"]), ("g", ext["g"])]
    loops += [("k", ext["c"] * ext["t"])] if "k" in f else [("c", ext["c"]), ("t", ext["t"])]
    loops += [("p", ext["h"] * ext["w"])] if "p" in f else [("h", ext["h"]), ("w", ext["w"])]
    out = 1
    for d, size in loops:
        out *= -(-size // f.get(d, 1))
    return out


class Unrolled(OperationEnergy):
    kind = "spatially unrolled array"

    def __init__(self, name: str, arch, spec: ArraySpec, ports: tuple, power, energy):
        if arch is None or arch.clock_mhz is None:
            raise ConfigError("[architecture] needs clock_mhz (the array's clock)")
        super().__init__(power, energy)
        self.name = name
        self.arch, self.spec = arch, spec
        self.clock_hz = float(arch.clock_mhz) * 1e6
        self.bpe = float(arch.bytes_per_element or 1)
        self.cores = int(spec.cores)
        self.port = {what: next((p for p in ports if what in p.holds), None)
                     for what in ("weights", "maps")}
        bws = [p.effective_bytes_per_s(self.clock_hz) for p in ports]
        fallback = arch.dram_bytes_per_s or (min(bws) if bws else None)
        if fallback is None:
            raise ConfigError("give [[ports]] (where weights and maps live) or [architecture] "
                              "dram_bytes_per_s")
        #: bandwidth of the memory that holds the maps (what fused chains and passes read)
        maps = self.port["maps"]
        self.dram_bw = maps.effective_bytes_per_s(self.clock_hz) if maps else float(fallback)
        self._fallback_bw = float(fallback)
        self.streamed = (arch.activations or "streamed") == "streamed" and maps is None
        best = max(spec.unroll, key=lambda u: u.macs_per_cycle)
        self.peak = best.macs_per_cycle * self.cores * self.clock_hz
        self.an = best.lanes           # the vector width a profile without [ops] falls back on

    # -- how a nest maps ---------------------------------------------------------------------
    def mapping(self, nest: Nest) -> dict:
        bits = precision(self.arch, nest.bits)
        bpe = bits / 8
        cls = layer_class(nest)
        ext = extents(nest)
        gemm = nest.taps == 1 and nest.e <= 1
        split = self.spec.core_split
        if self.cores > 1:
            # output channels are the groups of a depthwise layer
            key = "g" if split == "m" and cls == "depthwise" else {"p": "w", "k": "c"}.get(split, split)
            ext[key] = -(-ext[key] // self.cores)
        options = []
        for u in self.spec.unroll:
            if cls in u.applies:
                options.append((steps(u.dims, ext, gemm) * u.cycles * nest.steps, u))
        if not options:           # pragma: no cover - ArraySpec requires every class covered
            raise ConfigError(f"no [[array.unroll]] applies to {cls} layers")
        mac_cycles, chosen = min(options, key=lambda o: o[0])
        lanes = chosen.lanes / chosen.cycles
        sp = self.spec
        out_cycles = (nest.out_elems / (sp.output_elements_per_cycle * self.cores)
                      if sp.output_elements_per_cycle else 0.0)
        weights = nest.steps * nest.b_elems if nest.b_operand == "weight" else 0
        w_cycles = (weights / (sp.weight_elements_per_cycle * self.cores)
                    if sp.weight_elements_per_cycle and weights else 0.0)
        if sp.overlap:
            compute = max(mac_cycles, out_cycles, w_cycles)
        else:               # the array, then the vector unit, in turn
            compute = max(mac_cycles, w_cycles) + out_cycles
        tiles = 0
        if sp.tile_cycles:
            rows = ext["n"] * ext["h"] * ext["w"]
            per = sp.tile_positions or max(1, math.prod(chosen.dims.get(d, 1) for d in "nhwp"))
            other = {d: f for d, f in chosen.dims.items() if d not in "nhwp"}
            tiles = steps(other, dict(ext, n=1, h=1, w=1), gemm) * -(-rows // per) * nest.steps
        fixed = sp.op_cycles + tiles * sp.tile_cycles + (sp.split_cycles if self.cores > 1 else 0)
        # bytes through each memory: the weights (where a port holds them, else DRAM), the
        # maps in and out (where a port holds them; else DRAM when the profile streams them)
        w_bytes = weights * bpe
        # per-buffer capacities: inputs beyond the input buffer are processed in tiles, each
        # passing every weight again; outputs beyond the accumulators are produced in blocks
        # of output channels (at least the unrolling's), each reading the input again
        in_tiles = (math.ceil(nest.in_elems * bpe / sp.input_buffer_bytes)
                    if sp.input_buffer_bytes and weights else 1)
        m_unroll = chosen.dims.get("m", 1)
        acc_blocks = 1
        if sp.accumulator_bytes and nest.m > m_unroll:
            per_channel = 4.0 * nest.out_elems / max(1, nest.m * nest.groups * nest.steps)
            block = max(m_unroll, int(sp.accumulator_bytes // max(per_channel, 1e-9)))
            acc_blocks = math.ceil(nest.m / block)
        w_bytes *= in_tiles
        map_bytes = (nest.in_elems + nest.out_elems
                     + (nest.steps * nest.b_elems if nest.b_operand != "weight" else 0)) * bpe
        # maps are read and written channels-innermost, ``access_channels`` per access where
        # the unrolling states it (else whole bursts): a run shorter than the port's burst
        # still moves the whole burst (a 3-channel input map reads 3-byte runs)
        in_ch = out_ch = chosen.access_channels or 1 << 30
        c_in, c_out = nest.c * nest.groups, nest.m * nest.groups     # the maps' channels
        pixels = chosen.dims.get("w", 1) * chosen.dims.get("p", 1)
        # cores splitting a group's output channels each read that group's whole input (a
        # depthwise layer's one channel per group is read once); cores splitting the positions
        # each read the whole weights
        reread_in = min(self.cores, nest.m) if split in ("m", "g") else 1
        reread_w = self.cores if self.cores > 1 and split in ("n", "h", "w", "p") else 1
        w_bytes *= reread_w
        map_moved = (reread_in * acc_blocks
                     * self._run_cost(nest.in_elems * bpe, c_in, in_ch, pixels, bpe)
                     + self._run_cost(nest.out_elems * bpe, c_out, out_ch, pixels, bpe)
                     + (nest.steps * nest.b_elems * bpe if nest.b_operand != "weight" else 0))
        traffic = self.traffic(w_bytes, map_moved)
        spilled = traffic.pop("_spill", 0.0)
        macs = nest.macs
        util = macs / (compute * lanes * self.cores) if compute else 0.0
        return dict(bits=bits, layer_class=cls, unrolling=chosen.name,
                    unrolled={d: int(f) for d, f in chosen.dims.items()}, cores=self.cores,
                    mac_cycles=mac_cycles, output_cycles=out_cycles, weight_cycles=w_cycles,
                    fixed_cycles=fixed, tiles=tiles, cycles=compute + fixed, utilisation=util,
                    weight_bytes=w_bytes, map_bytes=map_bytes, port_bytes=traffic,
                    spilled_bytes=spilled, input_tiles=in_tiles, accumulator_blocks=acc_blocks,
                    engine_macs=macs)

    def _run_cost(self, n_bytes: float, channels: int, per_access: int, pixels: int,
                  bpe: float) -> float:
        """Bytes a maps port moves for ``n_bytes`` of a channels-last map read ``per_access``
        channels at a time: whole bursts (``burst_bytes``) per contiguous run. A map no deeper
        than one access is contiguous across the ``pixels`` the unrolling spans."""
        port = self.port["maps"]
        burst = port.burst_bytes if port is not None else None
        if not burst or not n_bytes:
            return n_bytes
        run = channels * pixels * bpe if channels <= per_access else per_access * bpe
        return n_bytes * burst / min(burst, max(run, bpe))

    def traffic(self, w_bytes: float, map_bytes: float) -> dict:
        """Bytes per memory port (``dram`` for tensors no port holds). Nothing stays in a
        port beyond its capacity: maps that do not fit the port holding them go to the
        weights' memory (or DRAM)."""
        out: dict = {}
        wp, mp = self.port["weights"], self.port["maps"]
        w_name = wp.name if wp else "dram"
        out[w_name] = out.get(w_name, 0.0) + w_bytes
        if mp is not None:
            fits = map_bytes if mp.capacity_bytes is None else min(map_bytes, mp.capacity_bytes)
            out[mp.name] = out.get(mp.name, 0.0) + fits
            if map_bytes > fits:
                out[w_name] = out.get(w_name, 0.0) + map_bytes - fits
                out["_spill"] = map_bytes - fits
        elif self.streamed:
            out["dram"] = out.get("dram", 0.0) + map_bytes
        return {k: v for k, v in out.items() if v}

    def undeclared_bytes(self, traffic: dict) -> float:
        """Bytes of tensors no declared port holds (DRAM at ``[energy] dram_j_per_byte``)."""
        declared = {p.name for p in self.port.values() if p is not None}
        return sum(v for k, v in traffic.items() if k not in declared)

    def spill_port(self) -> str:
        """Where maps that do not fit their port go."""
        wp = self.port["weights"]
        return wp.name if wp else "dram"

    def port_seconds(self, traffic: dict) -> dict:
        out = {}
        for name, n_bytes in traffic.items():
            port = next((p for p in self.port.values() if p is not None and p.name == name), None)
            bw = port.effective_bytes_per_s(self.clock_hz) if port else self._fallback_bw
            out[name] = n_bytes / bw
        return out

    def port_energy(self, traffic: dict) -> dict:
        """Energy of the bytes each port moves (``port_<name>``); tensors in no port are
        DRAM bytes at ``[energy] dram_j_per_byte`` (in ``energy_parts``)."""
        out = {}
        for name, n_bytes in traffic.items():
            port = next((p for p in self.port.values() if p is not None and p.name == name), None)
            if port is not None:
                out[f"port_{name}"] = n_bytes * port.j_per_byte * self.energy_factor
        return out

    # -- cost ----------------------------------------------------------------------------------
    def cost(self, nest: Nest) -> EngineCost:
        mp = self.mapping(nest)
        t_c = mp["cycles"] / self.clock_hz
        ports = self.port_seconds(mp["port_bytes"])
        t = max([t_c] + [s + mp["fixed_cycles"] / self.clock_hz for s in ports.values()])
        bound_port = max(ports, key=ports.get) if ports else None
        bound = "compute-bound"
        if bound_port and ports[bound_port] + mp["fixed_cycles"] / self.clock_hz > t_c:
            bound = f"{bound_port}-bound" if bound_port != "dram" else "DRAM-bound"
        elif mp["output_cycles"] >= max(mp["mac_cycles"], mp["weight_cycles"]) and mp["output_cycles"]:
            bound = "output-bound"
        elif mp["weight_cycles"] > mp["mac_cycles"]:
            bound = "weight-path-bound"
        dram = self.undeclared_bytes(mp["port_bytes"])
        parts = self.energy_parts(mp["engine_macs"], 0.0, dram, t,
                                  mp["engine_macs"] / (self.peak or 1), mac_j=self._mac_j(mp["bits"]))
        parts.update(self.port_energy(mp["port_bytes"]))
        parts = {k: v for k, v in parts.items() if v}       # only what this chip spends
        how = (f"{mp['unrolling']} unrolling {' x '.join(f'{d}{f}' for d, f in mp['unrolled'].items())}"
               + (f" on {self.cores} cores" if self.cores > 1 else "")
               + f" at {mp['bits']} bits: {mp['mac_cycles']:.0f} MAC cycles, utilisation "
               f"{mp['utilisation']:.2f}, {mp['fixed_cycles']:.0f} fixed cycles; "
               + ", ".join(f"{k} {v / 1e3:.3g} kB" for k, v in mp["port_bytes"].items())
               + f"; {bound}")
        mp.update(compute_s=t_c, port_s=ports)
        return EngineCost(self.name, t, parts, bound, how, mp)

    def _mac_j(self, bits):
        return self.energy.mac_j if self.energy is not None else None

    # -- work without MACs -------------------------------------------------------------------
    def pass_cycles(self, op_class: str, elements: float, rates) -> float | None:
        """Cycles of a non-MAC operation of ``op_class`` over ``elements`` at the profile's
        ``[ops]`` rate (None where the profile gives none for the class)."""
        rate = rates.rate(op_class) if rates is not None else None
        if not rate:
            return None
        return rates.passes(op_class) * elements / rate


_SOFTMAX = {"softmax", "logsoftmax", "hardmax", "safesoftmax"}


def op_rate_class(layer) -> tuple[str, float]:
    """(``[ops]`` class, elements it is counted over) of a layer without MACs: pooling
    counts window elements, reductions their inputs, everything else its outputs."""
    from . import layers as L
    from .fusion import ACTIVATION, ADD, LUT, MUL
    from .ops import canon

    if isinstance(layer, L.Pool):
        return "pool", float(layer.ops)
    cat = getattr(layer, "category", "")
    fn = canon(getattr(layer, "fn", ""))
    if cat == "norm":
        return "norm", float(layer.output_elems)
    if cat == "reduce":
        return "reduce", float(layer.input_elems)
    if cat in ("gather", "data"):
        return "data", float(layer.output_elems)
    if fn in _SOFTMAX:
        return "softmax", float(layer.output_elems)
    for name, group in (("activation", ACTIVATION), ("lut", LUT), ("add", ADD), ("mul", MUL)):
        if fn in group:
            return name, float(layer.output_elems)
    return "other", float(layer.output_elems)
