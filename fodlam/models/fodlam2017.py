"""The FODLAM 2017 model: published lookups and per-MAC scaling by kind.

* Reference costs: Eyeriss (conv) per-layer latency x per-layer power; EIE (fc) latency
  and its constant total power, both moved to the accelerator's process node (Dennard:
  latency x s, power x s^2, s = target / measured node).
* A listed reference layer is looked up; any other layer is costed as
  ``MACs x (sum of reference costs / sum of reference MACs)`` of its kind, separately for
  latency and energy, over every reference layer of that kind in both networks.
* ``compat=True`` reproduces the 2017 tool exactly, including its batch quirk: Eyeriss
  costs are for a batch of 4 (AlexNet) or 3 (VGG-16) images, EIE's for one, and MACs
  are per image (from the Caffe MAC files), mixed as they are.
* Default (``compat=False``): one inference. Published costs are divided by the batch
  they were measured at; MACs per image come from the layer shapes.

Kinds the published data does not cover get a stated first-order rule (see ``RULES``).
"""

from __future__ import annotations

from dataclasses import dataclass

import fodlam.calibration.published as cal
from fodlam import technology
from fodlam.errors import ConfigError
from fodlam.layers import MAC_KINDS, Layer
from fodlam.models.base import Estimate

#: The first-order rules for kinds with no published measurement. Shown in every output.
RULES = {
    "matmul": "activation x activation products run on the conv array (no stationary "
              "weights for EIE): MACs x the conv (Eyeriss) average cost per MAC",
    "rnn": "gate matrix-vector products with stationary weights run like fc layers "
           "(EIE was evaluated on LSTMs): MACs x the fc (EIE) average cost per MAC; gate "
           "nonlinearities and bias adds as elementwise ops",
    "ops": "non-MAC work (pooling, elementwise, normalisation, reductions, gathers, data "
           "copies): each operation costs one MAC at the conv (Eyeriss) average rate; "
           "views (reshape, squeeze, flatten) move no data and cost nothing",
}

#: Which reference kind prices the MACs of each MAC-bearing kind.
MAC_RATE_KIND = {"conv": "conv", "fc": "fc", "matmul": "conv", "rnn": "fc"}


@dataclass(frozen=True)
class RefCost:
    measurement: cal.Measurement
    latency_s: float
    power_w: float
    energy_j: float
    macs: int          # per image
    divisor: int       # batch divided out (1 in compat mode)

    @property
    def how(self) -> str:
        m = self.measurement
        per = f", / {self.divisor} images per inference" if self.divisor > 1 else ""
        if m.kind == "fc" and m.batch == 1 and self.divisor == 1:
            per = ""
        quirk = f" (cost of a batch of {m.batch}, as in 2017)" if self.divisor == 1 and m.batch > 1 else ""
        return (f"lookup: {m.network} {m.name}, {m.provenance}: {self.latency_s * self.divisor:.6g} s "
                f"x {self.power_w:.6g} W{per}{quirk}")


@dataclass(frozen=True)
class Rate:
    kind: str
    energy_j_per_mac: float
    latency_s_per_mac: float
    layers: int
    macs: int


class Fodlam2017:
    name = "fodlam-2017"

    def __init__(self, accelerator=None, *, compat: bool = False):
        from fodlam.accelerator import load_accelerator

        self.accelerator = load_accelerator(accelerator)
        self.compat = compat
        target = self.accelerator.process_nm
        rule = self.accelerator.technology_scaling
        eie_power = cal.chip_figure("eie", "total_power")
        refs: dict[tuple[str, str], RefCost] = {}
        caffe = cal.reference_net_macs()
        for m in cal.measurements():
            t_factor, p_factor = technology.scale(rule, m.process_nm, target)
            power = (m.power_w if m.power_w is not None else eie_power.value) * p_factor
            latency = m.latency_s * t_factor
            energy = latency * power
            if compat:
                divisor = 1
                try:
                    macs = caffe[m.network, m.name].macs
                except KeyError:
                    raise ConfigError(f"bundled MAC file lacks {m.network} {m.name}") from None
            else:
                divisor = m.batch
                macs = m.layer.macs  # derived from the published shape, one image
            refs[m.network, m.name] = RefCost(m, latency / divisor, power, energy / divisor,
                                              macs, divisor)
        self.references = refs
        self.rates: dict[str, Rate] = {}
        for kind in ("conv", "fc"):
            rows = [r for r in refs.values() if r.measurement.kind == kind]
            macs = sum(r.macs for r in rows)
            self.rates[kind] = Rate(kind, sum(r.energy_j for r in rows) / macs,
                                    sum(r.latency_s for r in rows) / macs, len(rows), macs)

    # ---- description, for the profile header --------------------------------------------
    @property
    def mode(self) -> str:
        return "compat-2017" if self.compat else "per-inference"

    @property
    def normalisation(self) -> str:
        if self.compat:
            return ("2017 compat: Eyeriss costs as published for a batch of 4 (AlexNet) or 3 "
                    "(VGG-16) images, EIE costs for 1 image, MACs per image; mixed as in 2017")
        batches = sorted({(r.measurement.network, r.measurement.kind, r.measurement.batch)
                          for r in self.references.values()})
        said = ", ".join(f"{n} {k} /{b}" for n, k, b in batches)
        return ("one inference: each published cost divided by the batch it was measured at "
                f"({said}); MACs per image from the layer shapes")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "mode": self.mode,
            "normalisation": self.normalisation,
            "process_nm": self.accelerator.process_nm,
            "technology_scaling": self.accelerator.technology_scaling,
            "rates": {k: {"energy_j_per_mac": r.energy_j_per_mac,
                          "latency_s_per_mac": r.latency_s_per_mac,
                          "reference_layers": r.layers, "reference_macs": r.macs}
                      for k, r in self.rates.items()},
            "rules": dict(RULES),
        }

    # ---- costing ------------------------------------------------------------------------
    def lookup(self, network: str, name: str) -> RefCost:
        return self.references[network, cal.norm_layer_name(name)]

    def estimate(self, layer: Layer, reference: tuple[str, str] | None = None) -> Estimate:
        if reference is not None:
            ref = self.lookup(*reference)
            return Estimate(ref.energy_j, ref.latency_s, "lookup", ref.how)
        kind = layer.kind
        energy = latency = 0.0
        parts = []
        method = "none"
        if layer.macs:
            rate = self.rates[MAC_RATE_KIND[kind]]
            energy += layer.macs * rate.energy_j_per_mac
            latency += layer.macs * rate.latency_s_per_mac
            method = "scale" if kind in ("conv", "fc") else "rule"
            parts.append(f"{layer.macs} MACs x {rate.kind} average "
                         f"{rate.energy_j_per_mac:.4g} J/MAC, {rate.latency_s_per_mac:.4g} s/MAC "
                         f"({rate.layers} reference layers)")
            if kind not in ("conv", "fc"):
                parts.append(f"rule[{kind}]")
        if layer.ops and kind not in ("conv", "fc"):
            rate = self.rates["conv"]
            energy += layer.ops * rate.energy_j_per_mac
            latency += layer.ops * rate.latency_s_per_mac
            method = "rule" if method != "scale" else "scale"
            parts.append(f"{layer.ops} ops x conv average (rule[ops])")
        if not parts:
            return Estimate(0.0, 0.0, "none", "no arithmetic and no data moved")
        return Estimate(energy, latency, method, "; ".join(parts))

    def per_mac_table(self) -> list[dict]:
        """Every reference layer's cost per MAC (the 2017 ``--diagnose``, working)."""
        out = []
        for (network, name), r in self.references.items():
            out.append({"network": network, "layer": name, "kind": r.measurement.kind,
                        "macs": r.macs, "energy_j": r.energy_j, "latency_s": r.latency_s,
                        "energy_j_per_mac": r.energy_j / r.macs,
                        "latency_s_per_mac": r.latency_s / r.macs,
                        "source": r.measurement.provenance})
        return out


assert set(MAC_RATE_KIND) == set(MAC_KINDS)
