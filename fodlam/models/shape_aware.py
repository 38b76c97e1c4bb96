"""``fodlam-shape``: a first-order model of a hybrid accelerator, calibrated on the published
per-layer measurements.

Every MAC-bearing layer is lowered to one loop nest (``fodlam/nest.py``) and costed by one
of the profile's engines (``fodlam/engines.py``), chosen by the profile's stated dispatch
rule (``[dispatch] rule``), the same for every layer whatever op produced it:

* ``gemm-to-sparse`` (the default Eyeriss + EIE profile): nests with one filter tap --
  Linear, 1x1 convolution, matmul, einsum, recurrent gates -- run on the sparse vector
  engine (EIE), nests with a spatial filter on the row-stationary array (Eyeriss);
* ``array``: everything on the row-stationary array;  ``sparse``: everything on the
  sparse engine.

Row-stationary array: active PEs from mapping the R x E logical PE set; compute time
``MACs / (A x f) / eta``; partial sums round-trip through the global buffer per tile of
``q = clamp(kappa / (E x R x sqrt(S)), 1, q_cap)`` input channels; processing ``max(compute,
buffer)``; total ``(1 + a) x processing + b x ofmap bytes``, at least the DRAM bytes over
the interface bandwidth; energy ``P_array x T + e_glb x buffer bytes + e_io x activation
bytes`` (the three terms are the breakdown by component).

Sparse engine: ``T = vectors x (t0 + k x cycles / f)`` with ``cycles = non-zero
activations x max(1, column non-zeros / PEs)``, at the engine's constant power.

Every coefficient comes from the accelerator profile (``[shape_model]``), written by
``fodlam calibrate``. Intervals are the range of measured/predicted ratios seen in
leave-one-out calibration.
"""

from __future__ import annotations

from fodlam import layers as L
from fodlam import technology
from fodlam.engines import RS_COMPONENTS as COMPONENTS  # noqa: F401  (re-exported)
from fodlam.engines import RowStationary, SparseVector, active_pes, cost_layer, rs_clock_hz  # noqa: F401
from fodlam.errors import ConfigError
from fodlam.models.base import Estimate

#: dispatch rules: name -> (function of a nest -> engine key, what the rule says)
DISPATCH = {
    "gemm-to-sparse": (lambda n: "sparse" if n.is_gemm else "array",
                       "nests with one filter tap (GEMMs: Linear, 1x1 conv, matmul, einsum, "
                       "recurrent gates) run on the sparse engine; nests with a spatial filter "
                       "on the row-stationary array"),
    "energy": (None, "each nest runs on the engine that costs it the least energy (a "
                     "function of the nest alone: the same GEMM gets the same engine whatever "
                     "op wrote it)"),
    "array": (lambda n: "array", "every nest runs on the row-stationary array"),
    "sparse": (lambda n: "sparse", "every nest runs on the sparse engine"),
}


class ShapeAware:
    name = "fodlam-shape"

    def __init__(self, accelerator=None):
        from fodlam.accelerator import load_accelerator

        self.accelerator = acc = load_accelerator(accelerator)
        params = acc.params
        model = acc.shape_model
        if acc.architecture is None or model is None or model.conv is None or model.fc is None:
            raise ConfigError(f"accelerator profile {acc.name} has no fitted [shape_model.conv], "
                              "[shape_model.fc] and [architecture] tables; run 'fodlam calibrate "
                              "--out PROFILE.toml' or choose --cost-model fodlam-2017")
        self.arch_typed = acc.architecture
        # the tables as written, for describe()
        self.arch = dict(params["architecture"])
        self.arch.setdefault("bytes_per_element", 2)
        self.conv = dict(params["shape_model"]["conv"])
        self.fc = dict(params["shape_model"]["fc"])
        self.fit_info = dict(model.fit or {})
        self.rule = acc.dispatch.rule if acc.dispatch else "energy"
        if self.rule not in DISPATCH:
            raise ConfigError(f"accelerator profile {acc.name}: unknown [dispatch] rule "
                              f"'{self.rule}'; choose one of {', '.join(DISPATCH)}")
        try:
            self.engines = {"array": RowStationary("array (row-stationary, Eyeriss)", self.arch_typed,
                                                   model.conv),
                            "sparse": SparseVector("sparse (EIE)", self.arch_typed, model.fc,
                                                   io_j_per_byte=model.conv.e_io_j_per_byte if model.conv else 0.0)}
        except ConfigError as e:
            raise ConfigError(f"accelerator profile {acc.name}: {e}") from None
        measured = float(model.process_nm if model.process_nm is not None else acc.process_nm)
        rule = acc.technology_scaling
        self.t_factor, self.p_factor = technology.scale(rule, measured, acc.process_nm)
        self.measured_nm = measured
        self.fc_power_w = float(model.fc.power_w)
        self.peak_ops_per_s = self.arch_typed.pe_rows * self.arch_typed.pe_cols * rs_clock_hz(self.arch_typed)

    @property
    def mode(self) -> str:
        return "per-inference"

    @property
    def normalisation(self) -> str:
        return ("shape-aware prediction for the batch the model is profiled at; coefficients "
                "fitted on per-layer measurements at their own batch")

    def describe(self) -> dict:
        return {"name": self.name, "mode": self.mode, "normalisation": self.normalisation,
                "process_nm": self.accelerator.process_nm, "measured_process_nm": self.measured_nm,
                "technology_scaling": self.accelerator.technology_scaling,
                "technology_factors": {"latency": self.t_factor, "power": self.p_factor},
                "architecture": self.arch,
                "coefficients": {"conv": self.conv, "fc": self.fc}, "fit": self.fit_info,
                "engines": {k: e.name for k, e in self.engines.items()},
                "dispatch": {"rule": self.rule, "says": DISPATCH[self.rule][1]},
                "rules": {
                    "mac layers": "every conv, fc, matmul, einsum and recurrent layer is one loop "
                                  "nest; the dispatch rule picks the engine; the engine costs the nest",
                    "array": "row-stationary mapping: active PEs, partial-sum buffer traffic per "
                             "channel tile, max(compute, buffer) + DRAM; energy = array power x "
                             "time + buffer bytes + I/O bytes",
                    "sparse": "per-vector fixed time + k x cycles, cycles = non-zero activations x "
                              "max(1, column non-zeros / PEs), at constant power; an activation "
                              "operand is loaded into the PEs first",
                    "rnn": "gate products as a nest of batch rows repeated every step and "
                           "direction; gate nonlinearities as elementwise ops",
                    "ops": "non-MAC work: one operation per PE per cycle on the whole array, "
                           "at the array's fitted power; views cost nothing",
                }}

    # -- helpers ---------------------------------------------------------------------------
    def _interval(self, kind: str, value: float, metric: str) -> list[float]:
        lo, hi = self.fit_info.get(f"{kind}_{metric}_ratio_range", [1.0, 1.0])
        return [value * lo, value * hi]

    def _scaled(self, energy: float, latency: float) -> tuple[float, float]:
        return energy * self.t_factor * self.p_factor, latency * self.t_factor

    def engine_for(self, nest):
        """(key, engine, reason) of the engine the dispatch rule picks for a nest."""
        pick = DISPATCH[self.rule][0]
        if pick is not None:
            key = pick(nest)
            return key, self.engines[key], f"dispatch rule '{self.rule}': {DISPATCH[self.rule][1]}"
        costs = {k: e.cost(nest) for k, e in self.engines.items()}
        key = min(costs, key=lambda k: (costs[k].energy_j, k))
        figures = ", ".join(f"{self.engines[k].name} {costs[k].energy_j * self.t_factor * self.p_factor:.3g} J "
                            f"/ {costs[k].latency_s * self.t_factor:.3g} s" for k in costs)
        return key, self.engines[key], f"least energy of the engines ({figures})"

    def _mac_layer(self, layer) -> Estimate:
        reasons = []

        def pick(nest):
            key, engine, reason = self.engine_for(nest)
            reasons.append(reason)
            return engine
        lc = cost_layer(layer, pick)
        if isinstance(layer, L.Recurrent) and layer.ops:
            e_ops, t_ops = self._ops_raw(layer.ops)
            lc.add({"array": e_ops}, t_ops)
            lc.hows.append(f"{layer.ops} gate ops, one per PE per cycle")
        scale_e = self.t_factor * self.p_factor
        parts = {k: v * scale_e for k, v in lc.components.items()}
        energy, latency = self._scaled(sum(lc.components.values()), lc.latency_s)
        interval_kind = "conv" if lc.engines[0] == self.engines["array"].name else "fc"
        return Estimate(energy, latency, "model", "; ".join(lc.hows), components=parts,
                        energy_interval=self._interval(interval_kind, energy, "energy"),
                        latency_interval=self._interval(interval_kind, latency, "latency"),
                        engine=" + ".join(dict.fromkeys(lc.engines)),
                        engine_reason="; ".join(dict.fromkeys(reasons)),
                        mapping=lc.mapping, bound=lc.bound)

    def _ops_raw(self, ops: int) -> tuple[float, float]:
        t = ops / self.peak_ops_per_s
        return t * float(self.conv["p_array_w"]), t

    def _ops(self, ops: int) -> tuple[float, float]:
        return self._scaled(*self._ops_raw(ops))

    # -- the interface ---------------------------------------------------------------------
    def estimate(self, layer, reference=None) -> Estimate:
        kind = layer.kind
        if isinstance(layer, (L.Conv, L.FullyConnected, L.MatMul, L.Recurrent)):
            return self._mac_layer(layer)
        if isinstance(layer, L.Counted):
            rate = self.fit_info.get(f"{kind}_per_mac", {"energy_j": 0.0, "latency_s": 0.0})
            energy, latency = self._scaled(layer.macs * rate["energy_j"], layer.macs * rate["latency_s"])
            return Estimate(energy, latency, "scale",
                            f"{layer.macs} MACs (no shape) x this model's average {kind} cost per MAC "
                            "on the reference layers")
        if layer.ops:
            energy, latency = self._ops(layer.ops)
            return Estimate(energy, latency, "rule", f"{layer.ops} ops, one per PE per cycle (rule[ops])",
                            components={"array": energy})
        return Estimate(0.0, 0.0, "none", "no arithmetic and no data moved")
