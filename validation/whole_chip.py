"""Whole-chip validation: FODLAM against published whole-network figures it was never
fitted on (``calibration/data/whole_chip.csv``, source ``nvdla-primer``).

    python validation/whole_chip.py            # print the table docs/accuracy.md shows
    python validation/whole_chip.py --check docs/accuracy.md   # exit 1 if the page is stale

NVDLA: NVIDIA's own estimates for seven configurations running INT8 ResNet-50 at 1 GHz
(frames/s) and their average power at 16 nm (mJ per frame = average power / frames/s).
FODLAM runs the bundled NVDLA profile with the configuration's MAC array, convolution
buffer and DRAM bandwidth (``architecture.*`` overrides), the network traced from
``examples/zoo.py`` with its MAC layers at 8 bits; time at the profile's 1 GHz clock,
energy at 16 nm by the profile's rule (dennard) and by stillmaker-baas.

What is assumed, not published: the MAC array's shape for each MAC count (atomic-C x
atomic-K, powers of two with atomic-C >= atomic-K, as nv_full's 64 x 32 and nv_small's
8 x 8), and which profile's features a configuration has (256 MACs and up: nv_full's
Winograd and 16-wide SDP; below: nv_small's 1-wide SDP, no Winograd).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARRAYS = {2048: (64, 32), 1024: (32, 32), 512: (32, 16), 256: (16, 16), 128: (16, 8),
          64: (8, 8), 32: (8, 4)}


def published() -> list[dict]:
    """The NVDLA rows of whole_chip.csv, one dict per configuration."""
    rows = {}
    with open(ROOT / "calibration" / "data" / "whole_chip.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["chip"] != "nvdla":
                continue
            d = rows.setdefault(r["config"], {"config": r["config"], "row": r["row"]})
            d[r["quantity"]] = float(r["value"])
    out = []
    for config, d in rows.items():
        macs, kb, bw = config.split(" / ")
        d.update(macs=int(macs.split()[0]), cbuf=int(kb.split()[0]) * 1024,
                 bw=float(bw.split()[0]) * 1e9)
        d["mj_per_frame"] = d["average_power"] / d["throughput"]
        out.append(d)
    return out


def int8_nodes(model, shape):
    from fodlam import layers as L
    from fodlam.importers.torch import import_module

    nodes = import_module(model, shape).nodes
    return [replace(n, layers=tuple(replace(x, bits=8) if x.macs and not isinstance(x, L.Counted)
                                    else x for x in n.layers)) for n in nodes]


def predict(rows, nodes) -> list[dict]:
    from fodlam.accelerator import load_accelerator
    from fodlam.costed import build_profile
    from fodlam.models import for_accelerator
    from fodlam.sweeps import apply_overrides

    out = []
    for r in rows:
        ak, an = ARRAYS[r["macs"]]
        base = load_accelerator("nvdla-nv-full" if r["macs"] >= 256 else "nvdla-nv-small")
        acc = apply_overrides(base, [("architecture.array_k", ak), ("architecture.array_n", an),
                                     ("architecture.onchip_bytes", r["cbuf"]),
                                     ("architecture.dram_bytes_per_s", r["bw"])])
        t = build_profile(nodes, for_accelerator(acc), network={}).total_latency_s
        e = {rule: build_profile(nodes, for_accelerator(acc.at_node(16, rule)), network={}).total_energy_j
             for rule in ("dennard", "stillmaker-baas")}
        out.append(dict(r, fps=1 / t, fps_ratio=(1 / t) / r["throughput"],
                        mj_dennard=e["dennard"] * 1e3, mj_sb=e["stillmaker-baas"] * 1e3,
                        e_ratio_dennard=e["dennard"] * 1e3 / r["mj_per_frame"],
                        e_ratio_sb=e["stillmaker-baas"] * 1e3 / r["mj_per_frame"]))
    return out


def table(results) -> str:
    lines = ["| NVDLA configuration (nvdla-primer row) | frames/s published | FODLAM | ratio | "
             "mJ/frame published (16 nm) | FODLAM dennard / stillmaker-baas | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['config']} | {r['throughput']:g} | {r['fps']:.1f} | {r['fps_ratio']:.2f} | "
                     f"{r['mj_per_frame']:.2f} | {r['mj_dennard']:.2f} / {r['mj_sb']:.2f} | "
                     f"{r['e_ratio_dennard']:.2f} / {r['e_ratio_sb']:.2f} |")
    t = [r["fps_ratio"] for r in results]
    ed = [r["e_ratio_dennard"] for r in results]
    es = [r["e_ratio_sb"] for r in results]
    worst = lambda xs: max(xs, key=lambda x: max(x, 1 / x))  # noqa: E731
    lines.append(f"| **median / worst** | | | **{statistics.median(t):.2f} / {worst(t):.2f}** | | | "
                 f"**{statistics.median(ed):.2f} / {worst(ed):.2f}** (dennard), "
                 f"**{statistics.median(es):.2f} / {worst(es):.2f}** (stillmaker-baas) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", metavar="PAGE", help="exit 1 unless PAGE holds this table verbatim")
    args = ap.parse_args(argv)
    from examples import zoo

    text = table(predict(published(), int8_nodes(zoo.resnet50(), (1, 3, 224, 224))))
    if args.check:
        if text not in Path(args.check).read_text(encoding="utf-8"):
            print(f"{args.check} does not hold the current table; paste this in:\n{text}")
            return 1
        return 0
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
