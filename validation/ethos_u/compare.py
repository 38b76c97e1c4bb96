"""FODLAM's Ethos-U profiles against Arm's Vela, per network and per layer kind.

    python validation/ethos_u/compare.py                 # the tables of docs/accuracy.md
    python validation/ethos_u/compare.py --layers        # and each network's layer kinds
    python validation/ethos_u/compare.py --check docs/accuracy.md   # exit 1 if stale

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


def table(rows) -> str:
    """The markdown tables of docs/accuracy.md: per network and NPU, then per layer kind."""
    errs = [abs(r["ratio"] - 1) for r in rows]
    out = ["| network | NPU | Vela 5.2 (ms) | FODLAM (ms) | FODLAM / Vela |",
           "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['network']} | {r['accelerator']} | {r['vela_s'] * 1e3:.3f} | "
                   f"{r['fodlam_s'] * 1e3:.3f} | {r['ratio']:.2f} |")
    out.append("")
    out.append(f"Median |error| {100 * statistics.median(errs):.1f}%; "
               f"{sum(max(r['ratio'], 1 / r['ratio']) <= 1.5 for r in rows)} of {len(rows)} "
               "network x NPU pairs within 1.5x.")
    out += ["", "| layer kind | NPU | Vela 5.2 (ms) | FODLAM (ms) | FODLAM / Vela |",
            "| --- | --- | ---: | ---: | ---: |"]
    for k in KINDS:
        for acc in dict.fromkeys(r["accelerator"] for r in rows):
            v = sum(r[f"vela_{k}_s"] for r in rows if r["accelerator"] == acc)
            f = sum(r[f"fodlam_{k}_s"] for r in rows if r["accelerator"] == acc)
            if v:
                out.append(f"| {k} | {acc} | {v * 1e3:.3f} | {f * 1e3:.3f} | {f / v:.2f} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", metavar="PAGE", help="exit 1 unless PAGE holds these tables verbatim")
    ap.add_argument("--layers", action="store_true", help="also print every network's kinds")
    args = ap.parse_args(argv)
    rows = compare()
    text = table(rows)
    if args.check:
        if text not in Path(args.check).read_text(encoding="utf-8"):
            print(f"{args.check} does not hold the current tables; paste this in:\n{text}")
            return 1
        return 0
    print(text)
    if args.layers:
        print(f"{'network':22s} {'NPU':14s} " + "  ".join(f"{k[:6]:>6s}" for k in KINDS))
        for r in rows:
            print(f"{r['network']:22s} {r['accelerator']:14s} " + "  ".join(
                f"{r[f'ratio_{k}']:6.2f}" if r[f"ratio_{k}"] else f"{'-':>6s}" for k in KINDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
