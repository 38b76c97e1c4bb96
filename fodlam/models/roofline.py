"""``fodlam-roofline``: a datasheet model for accelerators without per-layer measurements.

Every MAC-bearing layer is lowered to one loop nest (``fodlam/nest.py``) and costed by the
profile's weight-stationary systolic array (``fodlam/engines.py``): per weight tile (fold),
the rows streamed plus weight loading, fill and drain (``2 x array_k + array_n - 2``
cycles, SCALE-Sim's systolic rule); rows tiled against the on-chip buffer, each row tile
reloading the weights; DRAM traffic (weights, and the activation maps when the profile's
``activations = "streamed"``) overlapped with compute: latency = max(compute, DRAM).
Energy either from a measured idle/busy power pair (``[power]``: idle x T + (busy - idle)
x MACs / peak) or from per-operation energies (``[energy]``: MACs, on-chip SRAM bytes,
DRAM bytes, plus leakage x time), moved to the profile's node by its technology rule.

This model is not calibrated on per-layer data: it has no intervals, and says so. Its
compute cycles are compared with SCALE-Sim in ``validation/scalesim_compare.py``.
"""

from __future__ import annotations

import math

from fodlam import layers as L
from fodlam import technology
from fodlam.engines import WeightStationary, cost_layer
from fodlam.unrolled import Unrolled, op_rate_class
from fodlam.errors import ConfigError
from fodlam.models.base import Estimate


def utilisation(K: int, N: int, array_k: int, array_n: int) -> float:
    """Filled fraction of the last weight tiles of a K x N weight on the array."""
    return (K / (math.ceil(K / array_k) * array_k)) * (N / (math.ceil(N / array_n) * array_n))

class Roofline:
    name = "fodlam-roofline"

    def __init__(self, accelerator=None):
        from fodlam.accelerator import load_accelerator

        self.accelerator = acc = load_accelerator(accelerator)
        arch = acc.architecture
        self.power = acc.params.get("power")          # as written, for describe()
        self.energy = acc.params.get("energy")
        if arch is None:
            raise ConfigError(f"accelerator profile {acc.name}: [architecture] needs "
                              "array_k, array_n, clock_mhz, onchip_bytes, dram_bytes_per_s")
        if acc.power is None and acc.energy is None:
            raise ConfigError(f"accelerator profile {acc.name}: give [power] idle_w/busy_w "
                              "or [energy] per-operation figures")
        try:
            if acc.array is not None:       # a chip described by its unrollings (fodlam/chip.py)
                best = max(acc.array.unroll, key=lambda u: u.macs_per_cycle)
                self.array = Unrolled(f"MAC array ({best.macs_per_cycle:g} MACs/cycle"
                                      + (f" x {acc.array.cores} cores" if acc.array.cores > 1 else "")
                                      + ", declared unrollings)", arch, acc.array, acc.ports,
                                      acc.power, acc.energy)
            else:
                self.array = WeightStationary(f"systolic array ({arch.array_k}x{arch.array_n}, "
                                              "weight-stationary)", arch, acc.power, acc.energy,
                                              acc.precision)
        except ConfigError as e:
            raise ConfigError(f"accelerator profile {acc.name}: {e}") from None
        self.ops = acc.ops
        self.unrolled = isinstance(self.array, Unrolled)
        self.clock_hz = self.array.clock_hz
        self.bpe = self.array.bpe
        self.vector_width = int(arch.vector_width or self.array.an)
        figures = acc.power or acc.energy
        measured = float(figures.process_nm if figures.process_nm is not None else acc.process_nm)
        self.measured_nm = measured
        self.t_factor, self.p_factor = technology.scale(acc.technology_scaling, measured,
                                                        acc.process_nm)
        self.peak = self.array.peak
        en = acc.energy
        if en is not None:
            rule = acc.technology_scaling
            if acc.power is not None and en.process_nm is not None:
                t, p = technology.scale(rule, float(en.process_nm), measured)
                self.array.energy_factor = t * p
            if en.overhead_process_nm is not None:
                base = float(en.process_nm if en.process_nm is not None else acc.process_nm)
                t, p = technology.scale(rule, float(en.overhead_process_nm), base)
                self.array.overhead_factor = t * p
        self.pipeline = acc.pipeline
        self.streamed = (arch.activations or "streamed") == "streamed"
        if self.unrolled:
            self.streamed = self.array.streamed

    mode = "per-inference"
    @property
    def normalisation(self) -> str:
        return (("declared-array" if self.unrolled else "weight-stationary systolic")
                + " model for the batch the model is profiled at; datasheet figures, not "
                  "calibrated per layer")

    def describe(self) -> dict:
        return {"name": self.name, "mode": self.mode, "normalisation": self.normalisation,
                "process_nm": self.accelerator.process_nm, "measured_process_nm": self.measured_nm,
                "technology_scaling": self.accelerator.technology_scaling,
                "architecture": dict(self.accelerator.params.get("architecture", {})),
                "power": self.power, "energy": self.energy,
                "engines": {"array": self.array.name},
                "dispatch": {"rule": "array", "says": "every nest runs on the " +
                             ("declared array" if self.unrolled else "systolic array")},
                "rules": self._rules()}

    def _rules(self) -> dict:
        if self.unrolled:
            spec = self.array.spec
            return {"mac layers": "one loop nest on the array as its profile declares it: per layer "
                                  "class the fastest applicable unrolling ("
                                  + "; ".join(f"{u.name}: {', '.join(u.applies)}, "
                                              + " x ".join(f"{d}{f}" for d, f in u.dims.items())
                                              + f" per {u.cycles:g} cycle(s)" for u in spec.unroll)
                                  + "), steps = prod ceil(dim / unroll); max(compute, each port's "
                                    "bytes / bandwidth) + fixed cycles per operation",
                    "ops": "non-MAC work at the profile's [ops] rate per class (else vector_width "
                           "operations per cycle), plus the fixed cycles of a launched operation",
                    "intervals": "none: this profile has no per-layer measurements"}
        return {"mac layers": "one loop nest on the weight-stationary array: per weight "
                              "tile, rows streamed + 2 x array_k + array_n - 2 cycles of "
                              "weight load, fill and drain; rows tiled to the on-chip "
                              "buffer; max(compute, DRAM traffic)",
                "activation operand": "loaded into the array like a weight (same path)",
                "ops": "non-MAC work at vector_width operations per cycle",
                "intervals": "none: this profile has no per-layer measurements"}

    def estimate(self, layer, reference=None) -> Estimate:
        scale_e = self.t_factor * self.p_factor
        if layer.kind in L.MAC_KINDS and not isinstance(layer, L.Counted):
            lc = cost_layer(layer, lambda nest: self.array)
            if isinstance(layer, L.Recurrent) and layer.ops:
                t_ops = layer.ops / (self.vector_width * self.clock_hz)
                lc.add(self.array.energy_parts(0, 0, 0, t_ops, 0.0), t_ops)
            parts = {k: v * scale_e for k, v in lc.components.items()}
            return Estimate(sum(parts.values()), lc.latency_s * self.t_factor, "model",
                            "; ".join(lc.hows), components=parts, engine=self.array.name,
                            engine_reason="the profile's only engine", mapping=lc.mapping,
                            bound=lc.bound)
        if layer.macs:  # Counted: no shape
            t = layer.macs / self.peak
            parts = self.array.energy_parts(layer.macs, 0, 0, t, t)
            how = f"{layer.macs} MACs at peak (no shape known)"
        elif layer.ops and self.unrolled:
            t, parts, how = self._declared_pass(layer)
        elif layer.ops:
            # a pass of its own: the vector unit at vector_width operations per cycle and,
            # where maps are streamed, the map read from DRAM and written back
            moved = (layer.input_elems + layer.output_elems) * self.bpe
            dram = moved if self.streamed else 0.0
            t_ops = layer.ops / (self.vector_width * self.clock_hz)
            t = max(t_ops, dram / self.array.dram_bw)
            parts = self.array.energy_parts(0, moved, dram, t, 0.0, extra_ops=layer.ops)
            how = (f"{layer.ops} ops at {self.vector_width} per cycle (rule[ops])"
                   + (f", {dram / 1e6:.3g} MB to and from DRAM" if dram else ""))
        else:
            return Estimate(0.0, 0.0, "none", "no arithmetic and no data moved")
        parts = {k: v * scale_e for k, v in parts.items()}
        return Estimate(sum(parts.values()), t * self.t_factor, "model" if layer.macs else "rule",
                        how, components=parts)

    def _declared_pass(self, layer):
        """A pass of its own on a declared chip: its op class at the profile's ``[ops]``
        rate (else ``vector_width`` operations per cycle), the maps through their port, the
        fixed cycles of a launched operation."""
        arr = self.array
        op_class, elements = op_rate_class(layer)
        cycles = arr.pass_cycles(op_class, elements, self.ops)
        if cycles is None:
            cycles, rule = layer.ops / self.vector_width, f"{layer.ops} ops at {self.vector_width} per cycle"
        else:
            rule = (f"{op_class}: {elements:.0f} elements at {self.ops.rate(op_class):g} per cycle"
                    + (f" x {self.ops.passes(op_class):g} passes" if self.ops.passes(op_class) != 1 else ""))
        fixed = arr.spec.op_cycles
        # a gather (an embedding) reads the rows it gathers, not its whole table
        read = (layer.output_elems if getattr(layer, "category", "") == "gather"
                else layer.input_elems) * self.bpe
        if op_class in ("pool", "reduce") and self.ops is not None and self.ops.access_channels:
            read = arr._run_cost(read, getattr(layer, "channels", 1 << 30),
                                 self.ops.access_channels, 1, self.bpe)
        traffic = arr.traffic(0.0, read + layer.output_elems * self.bpe)
        traffic.pop("_spill", None)
        ports = arr.port_seconds(traffic)
        t = (max([cycles / self.clock_hz] + list(ports.values())) + fixed / self.clock_hz)
        parts = arr.energy_parts(0, 0, arr.undeclared_bytes(traffic), t, 0.0, extra_ops=layer.ops)
        parts.update(arr.port_energy(traffic))
        parts = {k: v for k, v in parts.items() if v}
        how = rule + (f", {fixed:g} fixed cycles" if fixed else "") + "".join(
            f", {k} {v / 1e3:.3g} kB" for k, v in traffic.items())
        return t, parts, how

    # -- weights fetched ahead (a declared chip's [array] prefetch_weights) ------------------
    @property
    def prefetch(self) -> bool:
        return self.unrolled and bool(self.array.spec.prefetch_weights) and \
            self.array.port["weights"] is not None

    def prefetched(self, sequence) -> dict:
        """Node estimates in graph order (``[(name, estimates)]``) with each layer's weight
        load partly hidden under the layer before it: the weights port idles for the part
        of the previous layer's time it did not use, and the buffer left free bounds the
        bytes it can fetch ahead (``weight_buffer_bytes``, else ``onchip_bytes``; no bound
        where neither is given). Returns ``{name: estimates}`` for the nodes it changed."""
        from dataclasses import replace

        arr = self.array
        port = arr.port["weights"]
        bw = port.effective_bytes_per_s(arr.clock_hz)
        cap = arr.spec.weight_buffer_bytes or self.accelerator.architecture.onchip_bytes
        out = {}
        idle_s, prev_w = 0.0, 0.0          # the previous node's idle weight-port time, bytes
        for name, ests in sequence:
            new, node_w = [], 0.0
            for e in ests:
                mp = e.mapping or {}
                w_s = mp.get("port_s", {}).get(port.name, 0.0) * self.t_factor
                w_bytes = mp.get("port_bytes", {}).get(port.name, 0.0)
                if w_s and idle_s > 0:
                    free = (cap - prev_w) / bw * self.t_factor if cap else w_s
                    hidden = max(0.0, min(w_s, idle_s, free))
                    fixed_s = mp.get("fixed_cycles", 0.0) / arr.clock_hz * self.t_factor
                    rest = max([mp.get("compute_s", 0.0) * self.t_factor] +
                               [v * self.t_factor + fixed_s for k, v in mp.get("port_s", {}).items()
                                if k != port.name])
                    t = max(rest, w_s - hidden + fixed_s)
                    if t < e.latency_s:
                        e = replace(e, latency_s=t, how=e.how + f"; {hidden / self.t_factor * 1e6:.3g} us "
                                    "of weight load fetched ahead during the previous layer",
                                    mapping=dict(mp, prefetched_s=hidden))
                new.append(e)
                node_w += w_bytes
            used = sum(((e.mapping or {}).get("port_s", {}).get(port.name, 0.0) * self.t_factor
                        - (e.mapping or {}).get("prefetched_s", 0.0)) for e in new)
            if node_w:          # the port idles for the rest of this node's time
                idle_s = max(0.0, sum(e.latency_s for e in new) - used)
                prev_w = node_w
            else:               # a node without weights (a pass, a view) leaves it idle longer
                idle_s += sum(e.latency_s for e in new)
            if any(a is not b for a, b in zip(new, ests)):
                out[name] = tuple(new)
        return out

    # -- fused post-processing (fodlam/fusion.py) -------------------------------------------
    def pipeline_seconds(self, layer) -> tuple[str, float]:
        """(stage, seconds) the output pipeline needs to pass this layer's elements."""
        p = self.pipeline
        if isinstance(layer, L.Pool) and p.pool_elements_per_cycle:
            return "pool", layer.input_elems / (p.pool_elements_per_cycle * self.clock_hz) * self.t_factor
        return "post", layer.output_elems / (p.elements_per_cycle * self.clock_hz) * self.t_factor

    def dram_seconds(self, n_bytes: float) -> float:
        return n_bytes / self.array.dram_bw * self.t_factor

    def element_bytes(self) -> float:
        return self.bpe

    def absorbed(self, layer, latency_s: float, dram_bytes: float, how: str) -> Estimate:
        """An op the output pipeline absorbs: its own arithmetic (``[pipeline] op_j``, else an
        addition's share of a MAC), the bytes of any operand it reads from memory, and the
        seconds its chain runs past its producer (at the profile's node)."""
        scale_e = self.t_factor * self.p_factor
        if latency_s or dram_bytes:
            parts = self.array.energy_parts(0, 0, dram_bytes, latency_s / self.t_factor, 0.0,
                                            extra_ops=layer.ops)
        else:
            parts = {}
        if self.power is None:
            op_j = self.pipeline.op_j
            en = self.array.energy
            parts["compute"] = layer.ops * (float(op_j) if op_j else
                                            float(en.mac_j) * self.array.add_fraction)
            if en.overhead_j_per_pe_cycle and "clock_control" not in parts:
                parts["clock_control"] = (float(en.overhead_j_per_pe_cycle) * self.array.overhead_factor
                                          * layer.ops * self.array.add_fraction)
        else:
            busy = float(self.accelerator.power.busy_w) - float(self.accelerator.power.idle_w)
            parts["dynamic"] = busy * layer.ops / self.peak
        parts = {k: v * scale_e for k, v in parts.items() if v}
        return Estimate(sum(parts.values()), latency_s, "fused", how, components=parts)
