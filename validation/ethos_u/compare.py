"""FODLAM's Ethos-U profiles against Arm's Vela, per network and per layer kind.

    python validation/ethos_u/compare.py            # the tables of docs/accuracy.md
    python validation/ethos_u/compare.py --layers   # and every layer

FODLAM profiles the PyTorch twin of each network (``networks.py``) on the bundled
``ethos-u55-128``, ``ethos-u55-256`` and ``ethos-u65-512`` profiles (written from Arm's
published hardware figures, never fitted to Vela); the reference is Vela 5.2's estimate
of the int8 TFLite twin, stored with its provenance in ``calibration/data/vela_ethos_u.csv``
(``run_vela.py`` writes it). Layer kinds: convolution (dense, 1x1 included), depthwise,
fully connected, products of two activations, and element-wise / pooling / softmax.
"""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
DATA = ROOT / "calibration" / "data" / "vela_ethos_u.csv"
KINDS = ("conv", "depthwise", "fc", "product", "elementwise")
VELA_KIND = {"Conv2D": "conv", "DepthwiseConv2D": "depthwise", "FullyConnected": "fc",
             "BatchMatMul": "product"}


def vela_reference() -> dict:
    """{(network, accelerator): {"cycles": total, "clock_hz": f, "kinds": {kind: cycles},
    "macs": {kind: macs}}} from the stored Vela run."""
    out: dict = {}
    for r in csv.DictReader(open(DATA)):
        key = (r["network"], r["accelerator"])
        item = out.setdefault(key, {"cycles": int(r["network_cycles"]),
                                    "clock_hz": float(r["core_clock_hz"]),
                                    "kinds": defaultdict(float), "macs": defaultdict(int)})
        kind = VELA_KIND.get(r["original_operator"], "elementwise")
        item["kinds"][kind] += int(r["op_cycles"])
        item["macs"][kind] += int(r["macs"])
    return out


def node_kind(node) -> str:
    from fodlam import layers as L
    from fodlam.nest import nests
    from fodlam.unrolled import layer_class

    for layer in node.node.layers:
        if isinstance(layer, L.FullyConnected):
            return "fc"
        if isinstance(layer, (L.Conv, L.MatMul)):
            cls = layer_class(nests(layer)[0])
            return {"gemm": "conv"}.get(cls, cls)
    return "elementwise"


def fodlam_figures(network: str, accelerator: str) -> dict:
    import fodlam
    from networks import torch_model

    model, shape = torch_model(network)
    prof = fodlam.profile(model, shape, accelerator=accelerator)
    kinds: dict = defaultdict(float)
    macs: dict = defaultdict(int)
    for node in prof.nodes:
        k = node_kind(node)
        kinds[k] += node.latency_s
        macs[k] += node.node.macs
    return {"latency_s": prof.total_latency_s, "kinds": kinds, "macs": macs, "profile": prof}


def compare(accelerators=("ethos-u55-128", "ethos-u55-256", "ethos-u65-512")) -> list[dict]:
    ref = vela_reference()
    rows = []
    for (net, acc), v in ref.items():
        if acc not in accelerators:
            continue
        f = fodlam_figures(net, acc)
        clock = v["clock_hz"]
        row = {"network": net, "accelerator": acc, "vela_s": v["cycles"] / clock,
               "fodlam_s": f["latency_s"], "macs_vela": sum(v["macs"].values()),
               "macs_fodlam": sum(f["macs"].values())}
        row["ratio"] = row["fodlam_s"] / row["vela_s"]
        for k in KINDS:
            vk, fk = v["kinds"].get(k, 0.0) / clock, f["kinds"].get(k, 0.0)
            row[f"vela_{k}_s"], row[f"fodlam_{k}_s"] = vk, fk
            row[f"ratio_{k}"] = fk / vk if vk else None
        rows.append(row)
    return rows


def main(argv=None) -> int:
    rows = compare()
    print(f"{'network':22s} {'NPU':14s} {'Vela ms':>9s} {'FODLAM ms':>9s} {'ratio':>6s}  "
          + "  ".join(f"{k[:6]:>6s}" for k in KINDS))
    for r in rows:
        kinds = "  ".join(f"{r[f'ratio_{k}']:6.2f}" if r[f"ratio_{k}"] else f"{'-':>6s}" for k in KINDS)
        print(f"{r['network']:22s} {r['accelerator']:14s} {r['vela_s'] * 1e3:9.3f} "
              f"{r['fodlam_s'] * 1e3:9.3f} {r['ratio']:6.2f}  {kinds}")
    errs = [abs(r["ratio"] - 1) for r in rows]
    print(f"median |error| {100 * statistics.median(errs):.1f}%, worst ratio "
          f"{max(max(r['ratio'], 1 / r['ratio']) for r in rows):.2f}x, "
          f"{sum(max(r['ratio'], 1 / r['ratio']) > 1.5 for r in rows)} of {len(rows)} outside 1.5x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
