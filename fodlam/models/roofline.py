"""``fodlam-roofline``: a datasheet model for accelerators without per-layer measurements.

Every MAC-bearing layer is viewed as a matrix product: ``P`` rows of ``K`` inputs times a
``K x N`` weight (conv: K = C/g x R x S, N = M/g, P = output pixels x batch, per group).
On an ``array_k x array_n`` MAC array (weight-stationary systolic array, or NVDLA's
atomic-C x atomic-K) the utilisation is the filled fraction of the last tiles:

    u = K / (ceil(K / array_k) x array_k) x N / (ceil(N / array_n) x array_n)

latency = max(MACs / (peak x u), off-chip bytes / DRAM bandwidth), where off-chip bytes are
the weights (read once) plus the activations when they do not fit on chip. Energy either
from a measured idle/busy power pair (``[power]``: P = idle + (busy - idle) x achieved /
peak) or from per-operation energies (``[energy]``: MACs, on-chip SRAM bytes, DRAM bytes,
plus leakage x time), moved to the profile's node by its technology rule.

This model is not calibrated on per-layer data: it has no intervals, and says so.
"""

from __future__ import annotations

import math

from fodlam import layers as L
from fodlam import technology
from fodlam.errors import ConfigError
from fodlam.models import Estimate


def gemm_view(layer) -> tuple[int, int, int, int]:
    """(P, K, N, groups) of a MAC-bearing layer."""
    if isinstance(layer, L.Conv):
        g = layer.groups
        taps = math.prod(layer.kernel)
        if layer.transposed:
            return (layer.batch * math.prod(layer.in_size), layer.in_channels // g,
                    layer.out_channels // g * taps, g)
        return (layer.batch * math.prod(layer.out_size), layer.in_channels // g * taps,
                layer.out_channels // g, g)
    if isinstance(layer, L.FullyConnected):
        return layer.batch, layer.in_features, layer.out_features, 1
    if isinstance(layer, L.MatMul):
        return layer.batch * layer.m, layer.k, layer.n, 1
    if isinstance(layer, L.Recurrent):
        gates = L.RNN_GATES[layer.cell]
        rec = layer.proj_size or layer.hidden_size
        return (layer.seq_len * layer.batch * layer.directions, layer.input_size + rec,
                gates * layer.hidden_size, 1)
    raise TypeError(type(layer).__name__)


def utilisation(K: int, N: int, array_k: int, array_n: int) -> float:
    return (K / (math.ceil(K / array_k) * array_k)) * (N / (math.ceil(N / array_n) * array_n))


class Roofline:
    name = "fodlam-roofline"

    def __init__(self, accelerator=None, *, compat: bool = False):
        from fodlam.accelerator import load_accelerator

        self.accelerator = load_accelerator(accelerator)
        p = self.accelerator.params
        try:
            arch = p["architecture"]
            self.array_k = int(arch["array_k"])
            self.array_n = int(arch["array_n"])
            self.clock_hz = float(arch["clock_mhz"]) * 1e6
            self.bpe = float(arch.get("bytes_per_element", 1))
            self.onchip_bytes = float(arch["onchip_bytes"])
            self.dram_bw = float(arch["dram_bytes_per_s"])
            self.vector_width = int(arch.get("vector_width", self.array_n))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"accelerator profile {self.accelerator.name}: [architecture] needs "
                              f"array_k, array_n, clock_mhz, onchip_bytes, dram_bytes_per_s ({e})") from None
        self.power = p.get("power")
        self.energy = p.get("energy")
        if not self.power and not self.energy:
            raise ConfigError(f"accelerator profile {self.accelerator.name}: give [power] idle_w/busy_w "
                              "or [energy] per-operation figures")
        measured = float((self.power or self.energy).get("process_nm", self.accelerator.process_nm))
        self.measured_nm = measured
        self.t_factor, self.p_factor = technology.scale(self.accelerator.technology_scaling, measured,
                                                        self.accelerator.process_nm)
        self.peak = self.array_k * self.array_n * self.clock_hz

    mode = "per-inference"
    normalisation = "datasheet roofline for the batch the model is profiled at; not calibrated per layer"

    def describe(self) -> dict:
        return {"name": self.name, "mode": self.mode, "normalisation": self.normalisation,
                "process_nm": self.accelerator.process_nm, "measured_process_nm": self.measured_nm,
                "technology_scaling": self.accelerator.technology_scaling,
                "architecture": dict(self.accelerator.params.get("architecture", {})),
                "power": self.power, "energy": self.energy,
                "rules": {"mac layers": "matrix view on the MAC array: utilisation of the last "
                                        "tiles; max(compute, DRAM traffic)",
                          "ops": "non-MAC work at vector_width operations per cycle",
                          "intervals": "none: this profile has no per-layer measurements"}}

    def _energy(self, macs: float, sram_bytes: float, dram_bytes: float, seconds: float,
                achieved: float) -> tuple[float, dict]:
        # the clock stays that of the profile; technology scaling rescales time and energy
        if self.power:
            idle, busy = float(self.power["idle_w"]), float(self.power["busy_w"])
            watts = idle + (busy - idle) * min(1.0, achieved / self.peak)
            e = watts * seconds
            return e, {"static": idle * seconds, "dynamic": e - idle * seconds}
        en = self.energy
        parts = {"compute": macs * float(en["mac_j"]),
                 "onchip_sram": sram_bytes * float(en["sram_j_per_byte"]),
                 "dram": dram_bytes * float(en["dram_j_per_byte"]),
                 "static": float(en.get("leakage_w", 0.0)) * seconds}
        return sum(parts.values()), parts

    def estimate(self, layer, reference=None) -> Estimate:
        if layer.kind in L.MAC_KINDS and not isinstance(layer, L.Counted):
            P, K, N, g = gemm_view(layer)
            u = utilisation(K, N, self.array_k, self.array_n)
            macs = layer.macs
            t_compute = macs / (self.peak * u) if macs else 0.0
            weights = layer.weight_elems * self.bpe
            acts = (layer.input_elems + layer.output_elems) * self.bpe
            dram = weights + (acts if acts > self.onchip_bytes else 0.0)
            t = max(t_compute, dram / self.dram_bw)
            sram = acts + weights
            achieved = macs / t if t else 0.0
            e, parts = self._energy(macs, sram, dram, t, achieved)
            bound = "memory-bound" if dram / self.dram_bw > t_compute else "compute-bound"
            how = (f"GEMM P={P} K={K} N={N} groups={g} on {self.array_k}x{self.array_n}: "
                   f"utilisation {u:.2f}, {bound}, {dram / 1e6:.3g} MB off-chip")
        elif layer.macs:  # Counted: no shape
            t = layer.macs / self.peak
            e, parts = self._energy(layer.macs, 0, 0, t, self.peak)
            how = f"{layer.macs} MACs at peak (no shape known)"
        elif layer.ops:
            t = layer.ops / (self.vector_width * self.clock_hz)
            e, parts = self._energy(0, (layer.input_elems + layer.output_elems) * self.bpe, 0, t, 0.0)
            how = f"{layer.ops} ops at {self.vector_width} per cycle (rule[ops])"
        else:
            return Estimate(0.0, 0.0, "none", "no arithmetic and no data moved")
        scale_e = self.t_factor * self.p_factor
        parts = {k: v * scale_e for k, v in parts.items()}
        return Estimate(e * scale_e, t * self.t_factor, "model" if layer.macs else "rule", how,
                        components=parts)
