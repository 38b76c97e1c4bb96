"""``fodlam-shape``: a first-order model that predicts array utilisation and memory traffic
from the layer shape, calibrated on the published per-layer measurements.

Convolutions (and activation x activation matmuls, as 1x1 convolutions) on a row-stationary
PE array (Eyeriss):

* active PEs ``A`` from mapping the R x E logical PE set (filter rows x output rows) onto the
  physical array: replicate it when small, fold it when wide, strip-mine it otherwise;
* compute time ``Tc = MACs / (A x f) / eta``;
* global-buffer traffic ``G``: partial sums make a round trip through the buffer for every
  tile of ``q`` input channels, where the tile shrinks as the working set grows:
  ``q = clamp(kappa / (E x R x n), 1, q_cap)``; plus one read of the input feature map;
* processing time ``max(Tc, G / bw_glb)``; total ``T = (1 + a) x processing + b x ofmap bytes``
  (DRAM transfers not hidden behind compute);
* energy ``e_mac x MACs + e_glb x G + e_io x activation bytes + P_static x T``, with the four
  coefficients fitted by non-negative least squares; the terms are the breakdown by
  component (compute, global buffer, off-chip I/O, static/clock).

Fully-connected layers on a sparse engine (EIE): ``T = batch x (t0 + k x cycles / f)`` with
``cycles = nonzero activations x max(1, column non-zeros / PEs)`` (each non-zero activation
is broadcast and every PE works through its share of that column), a per-layer fixed cost
``t0`` and a load-imbalance factor ``k``, at the engine's constant power. Recurrent layers run their gate
matrix-vector products this way, step by step.

Every coefficient comes from the accelerator profile (``[shape_model]``), written by
``fodlam calibrate``. Intervals are the range of measured/predicted ratios seen in
leave-one-out calibration.
"""

from __future__ import annotations

import math

from fodlam import layers as L
from fodlam import technology
from fodlam.errors import ConfigError
from fodlam.models import Estimate

COMPONENTS = ("compute", "global_buffer", "offchip_io", "static")


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


def conv_geometry(layer) -> dict:
    """The quantities of the RS mapping, for a Conv (any rank) or an activation MatMul."""
    if isinstance(layer, L.MatMul):  # (m x k) @ (k x n) as a 1x1 conv: k channels in, n out
        return dict(R=1, S=1, E=1, n=layer.batch * layer.m, cg=layer.k,
                    outputs=layer.batch * layer.m * layer.n,
                    inputs=layer.batch * layer.m * layer.k, weights=layer.k * layer.n,
                    macs=layer.macs)
    k, out = layer.kernel, layer.out_size
    R = k[-2] if len(k) >= 2 else 1
    S = k[-1]
    E = out[-2] if len(out) >= 2 else 1
    return dict(R=R, S=S, E=E, n=layer.batch, cg=max(1, layer.in_channels // layer.groups),
                outputs=layer.output_elems, inputs=layer.input_elems,
                weights=layer.weight_elems, macs=layer.macs)


def conv_features(geo: dict, arch: dict, kappa: float, q_cap: float) -> dict:
    bpe = arch["bytes_per_element"]
    A = active_pes(geo["R"], geo["E"], arch["pe_rows"], arch["pe_cols"])
    q = min(max(kappa / (geo["E"] * geo["R"] * geo["n"]), 1.0), q_cap, float(geo["cg"]))
    psum = 2 * bpe * geo["outputs"] * geo["cg"] / q
    ifm = bpe * geo["inputs"]
    ofm = bpe * geo["outputs"]
    return dict(A=A, q=q, macs=geo["macs"], tc=geo["macs"] / (A * arch["clock_hz"]),
                glb=psum + ifm, ifm=ifm, ofm=ofm, act=ifm + ofm, w=bpe * geo["weights"])


def conv_latency(f: dict, c: dict) -> tuple[float, float]:
    """(processing, total) seconds."""
    proc = max(f["tc"] / c["eta"], f["glb"] / c["glb_bytes_per_s"])
    return proc, proc * (1 + c["dram_a"]) + c["dram_b"] * f["ofm"]


def conv_energy_terms(f: dict, total_s: float) -> list[float]:
    return [f["macs"], f["glb"], f["act"], total_s]


def fc_features(layer, arch: dict) -> dict:
    """EIE-style sparse fc: every non-zero input activation is broadcast to all PEs, and each
    PE works through its share of that column's non-zero weights, at least one cycle."""
    pes = float(arch.get("fc_pes", 64))
    col_nnz = layer.out_features * layer.weight_density
    nz_act = layer.in_features * layer.activation_density
    return dict(cycles=nz_act * max(1.0, col_nnz / pes), nz_act=nz_act,
                nz_macs=nz_act * col_nnz, vectors=layer.batch,
                clock_hz=float(arch.get("fc_clock_mhz", 800)) * 1e6)


def fc_latency(f: dict, c: dict) -> float:
    return f["vectors"] * (c["t0_s"] + c["cycles_scale"] * f["cycles"] / f["clock_hz"])


class ShapeAware:
    name = "fodlam-shape"

    def __init__(self, accelerator=None, *, compat: bool = False):
        from fodlam.accelerator import load_accelerator

        self.accelerator = load_accelerator(accelerator)
        self.compat = compat
        params = self.accelerator.params
        try:
            self.arch = dict(params["architecture"])
            self.conv = dict(params["shape_model"]["conv"])
            self.fc = dict(params["shape_model"]["fc"])
            self.fit_info = dict(params["shape_model"].get("fit", {}))
        except KeyError as e:
            raise ConfigError(f"accelerator profile {self.accelerator.name} has no fitted "
                              f"[shape_model] / [architecture] table ({e}); run 'fodlam calibrate "
                              "--out PROFILE.toml' or choose --cost-model fodlam-2017") from None
        self.arch.setdefault("bytes_per_element", 2)
        self.arch["clock_hz"] = float(self.arch.get("clock_mhz", 200)) * 1e6
        measured = float(params["shape_model"].get("process_nm", self.accelerator.process_nm))
        rule = self.accelerator.technology_scaling
        self.t_factor, self.p_factor = technology.scale(rule, measured, self.accelerator.process_nm)
        self.measured_nm = measured
        self.fc_power_w = float(self.fc["power_w"])

    @property
    def mode(self) -> str:
        return "per-inference"

    @property
    def normalisation(self) -> str:
        return ("shape-aware prediction for the batch the model is profiled at (the mapping "
                "depends on it); coefficients fitted on per-layer measurements at their own batch")

    def describe(self) -> dict:
        return {"name": self.name, "mode": self.mode, "normalisation": self.normalisation,
                "process_nm": self.accelerator.process_nm, "measured_process_nm": self.measured_nm,
                "technology_scaling": self.accelerator.technology_scaling,
                "technology_factors": {"latency": self.t_factor, "power": self.p_factor},
                "architecture": {k: v for k, v in self.arch.items() if k != "clock_hz"},
                "coefficients": {"conv": self.conv, "fc": self.fc}, "fit": self.fit_info,
                "rules": {
                    "conv": "row-stationary mapping: active PEs, partial-sum buffer traffic, "
                            "max(compute, buffer) + DRAM; energy = MACs, buffer, I/O, static",
                    "matmul": "activation x activation products as 1x1 convolutions on the array",
                    "fc": "sparse engine: per-layer fixed time + k x cycles, cycles = non-zero "
                          "activations x max(1, column non-zeros / PEs), at constant power",
                    "rnn": "gate matrix-vector products as fc layers, every step and direction; "
                           "gate nonlinearities as elementwise ops",
                    "ops": "non-MAC work: one operation per PE per cycle on the whole array, "
                           "at the fitted energy of a MAC; views cost nothing",
                }}

    # -- helpers ---------------------------------------------------------------------------
    def _interval(self, kind: str, value: float, metric: str) -> list[float]:
        lo, hi = self.fit_info.get(f"{kind}_{metric}_ratio_range", [1.0, 1.0])
        return [value * lo, value * hi]

    def _scaled(self, energy: float, latency: float) -> tuple[float, float]:
        return energy * self.t_factor * self.p_factor, latency * self.t_factor

    def _conv_like(self, layer, kind_label: str) -> Estimate:
        c = self.conv
        geo = conv_geometry(layer)
        f = conv_features(geo, self.arch, c["kappa"], c["q_cap"])
        proc, total = conv_latency(f, c)
        terms = conv_energy_terms(f, total)
        coeffs = [c["e_mac_j"], c["e_glb_j_per_byte"], c["e_io_j_per_byte"], c["p_static_w"]]
        parts = {name: t * k for name, t, k in zip(COMPONENTS, terms, coeffs)}
        energy = sum(parts.values())
        energy, latency = self._scaled(energy, total)
        scale = energy / sum(parts.values()) if sum(parts.values()) else 0.0
        parts = {k: v * scale for k, v in parts.items()}
        bound = "buffer-bound" if f["glb"] / c["glb_bytes_per_s"] > f["tc"] / c["eta"] else "compute-bound"
        how = (f"{kind_label}: {f['A']:.0f} active PEs, channel tile q={f['q']:.2f}, "
               f"{f['glb'] / 1e6:.3g} MB buffer traffic, {bound}; "
               f"eta={c['eta']:.3g}, bw_glb={c['glb_bytes_per_s'] / 1e9:.3g} GB/s")
        return Estimate(energy, latency, "model", how, components=parts,
                        energy_interval=self._interval("conv", energy, "energy"),
                        latency_interval=self._interval("conv", latency, "latency"))

    def _fc(self, layer) -> Estimate:
        f = fc_features(layer, self.arch)
        t = fc_latency(f, self.fc)
        energy, latency = self._scaled(t * self.fc_power_w, t)
        how = (f"sparse fc: {f['vectors']} vector(s) x ({self.fc['t0_s'] * 1e6:.3g} us + "
               f"{self.fc['cycles_scale']:.3g} x {f['cycles']:.4g} cycles: {f['nz_act']:.4g} "
               f"non-zero activations x their columns' non-zeros over the PEs) at "
               f"{self.fc_power_w:.3g} W (weight density {layer.weight_density:g}, "
               f"activation density {layer.activation_density:g})")
        return Estimate(energy, latency, "model", how, components={"sparse_engine": energy},
                        energy_interval=self._interval("fc", energy, "energy"),
                        latency_interval=self._interval("fc", latency, "latency"))

    def _ops(self, ops: int) -> tuple[float, float]:
        peak = self.arch["pe_rows"] * self.arch["pe_cols"] * self.arch["clock_hz"]
        return self._scaled(ops * self.conv["e_mac_j"], ops / peak)

    # -- the interface ---------------------------------------------------------------------
    def estimate(self, layer, reference=None) -> Estimate:
        kind = layer.kind
        if isinstance(layer, L.Conv):
            return self._conv_like(layer, "conv")
        if isinstance(layer, L.MatMul):
            return self._conv_like(layer, "matmul as 1x1 conv")
        if isinstance(layer, L.FullyConnected):
            return self._fc(layer)
        if isinstance(layer, L.Recurrent):
            step = L.fc(layer.batch, layer.input_size + (layer.proj_size or layer.hidden_size),
                        L.RNN_GATES[layer.cell] * layer.hidden_size)
            one = self._fc(step)
            times = layer.seq_len * layer.directions
            e_ops, t_ops = self._ops(layer.ops)
            energy = one.energy_j * times + e_ops
            latency = one.latency_s * times + t_ops
            return Estimate(energy, latency, "model",
                            f"{times} sequential steps x ({one.how}); + {layer.ops} gate ops",
                            components={"sparse_engine": one.energy_j * times, "compute": e_ops},
                            energy_interval=self._interval("fc", energy, "energy"),
                            latency_interval=self._interval("fc", latency, "latency"))
        if isinstance(layer, L.Counted):
            rate = self.fit_info.get(f"{kind}_per_mac", {"energy_j": 0.0, "latency_s": 0.0})
            energy, latency = self._scaled(layer.macs * rate["energy_j"], layer.macs * rate["latency_s"])
            return Estimate(energy, latency, "scale",
                            f"{layer.macs} MACs (no shape) x this model's average {kind} cost per MAC "
                            "on the reference layers")
        if layer.ops:
            energy, latency = self._ops(layer.ops)
            return Estimate(energy, latency, "rule", f"{layer.ops} ops, one per PE per cycle (rule[ops])",
                            components={"compute": energy})
        return Estimate(0.0, 0.0, "none", "no arithmetic and no data moved")
