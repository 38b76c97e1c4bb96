"""FODLAM's systolic engine against SCALE-Sim v3, layer by layer (validation only).

    python -m venv /tmp/scalesim && /tmp/scalesim/bin/pip install scalesim "numpy<2.3"
    python validation/scalesim_compare.py --scalesim-python /tmp/scalesim/bin/python

SCALE-Sim (Samajdar et al., a cycle-level simulator of systolic arrays; never imported by
the package) is configured as each of FODLAM's weight-stationary profiles -- TPU v1
(256 x 256), NVDLA nv_full (64 x 32) and nv_small (8 x 8), with the profiles' buffers and
DRAM bandwidth in 1-byte words per cycle -- and runs every distinct convolution of
ResNet-50 and MobileNetV2 at batch 1 (from ``examples/zoo.py``, lowered by FODLAM's torch
importer), the GEMMs of a BERT-base encoder layer at 128 tokens, its attention products
(128 x 64 x 128 and 128 x 128 x 64 per head) and two decode-step GEMVs.

Compared: compute cycles (SCALE-Sim's ``Total Cycles`` minus ``Stall Cycles``; the initial
SRAM fill before cycle 0 is not counted by either) against the cycles of FODLAM's mapping
(weight tiles x (rows streamed + load, fill and drain), row tiles included). Where
FODLAM says DRAM bounds a layer, the table says so and shows SCALE-Sim's stall cycles at
the profile's bandwidth (SCALE-Sim 3.0.0 adds a positive stall twice, see
``../shared/reference/scalesim-notes.md``; the figure is the release's).

How layers are handed to SCALE-Sim (it has no groups and no padding): padded input sizes
so its unpadded output equals PyTorch's; a depthwise or grouped convolution is one group
simulated and multiplied by the group count (SCALE-Sim's own 'DP' rule does the same); a
product of b activation pairs is one product times b; GEMMs in its M, N, K mode. A layer
whose full simulation would pass ``--max-cycles`` is simulated on one weight tile (its
real row count, K and N cut to one array tile) and multiplied by its tile count; the
``sim`` column says ``tile x F`` for those. SCALE-Sim's weight-stationary compute loop
is the same for every tile (``compute/systolic_compute_ws.py``); ``--check-tiles``
verifies the shortcut against full runs on a few layers.

Results are cached per (array, layer) in ``--cache`` (default ~/.cache/fodlam-scalesim).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fodlam import layers as L  # noqa: E402
from fodlam.models import for_accelerator as cost_model_for  # noqa: E402
from fodlam.models.roofline import utilisation  # noqa: E402
from fodlam.nest import nests  # noqa: E402

PROFILES = ("tpu-v1", "nvdla-nv-full", "nvdla-nv-small")
#: SCALE-Sim SRAM split (KiB) per profile: ifmap, filter, ofmap
SRAMS = {"tpu-v1": (24576, 4096, 4096),          # Unified Buffer; weight FIFO; accumulators
         "nvdla-nv-full": (256, 256, 64),        # 512 KiB CBUF split data/weights; output
         "nvdla-nv-small": (64, 64, 16)}         # 128 KiB CBUF

CFG = """[general]
run_name = fodlam

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {ifmap}
FilterSramSzkB = {filt}
OfmapSramSzkB = {ofmap}
IfmapOffset = 0
FilterOffset = 100000000
OfmapOffset = 200000000
Bandwidth = {bw}
Dataflow = ws
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False
"""


#: runs SCALE-Sim with its read buffer's double-counted stall removed (memory/read_buffer.py,
#: service_reads: ``offset += potential_stall_cycles`` then again when positive)
CORRECTED = """
import inspect, runpy, sys
import scalesim.memory.read_buffer as rb
src = inspect.getsource(rb)
bad = "offset += potential_stall_cycles        # Offset increments if there were potential stalls\\n"
assert bad in src, "SCALE-Sim's read buffer changed; the corrected run does not apply"
exec(compile(src.replace(bad, "pass\\n"), rb.__file__, "exec"), rb.__dict__)
sys.argv = ["scalesim.scale"] + sys.argv[1:]
runpy.run_module("scalesim.scale", run_name="__main__")
"""


# ---- the layers ------------------------------------------------------------------------

def zoo_convs(factory: str, shape) -> list[tuple[str, L.Conv]]:
    """Distinct convolutions of a zoo model at batch 1, lowered by FODLAM's torch importer."""
    import fodlam
    from examples import zoo

    prof = fodlam.profile(getattr(zoo, factory)(), shape)
    seen, out = set(), []
    for node in prof.nodes:
        for layer in node.node.layers:
            if isinstance(layer, L.Conv) and layer not in seen:
                seen.add(layer)
                out.append((node.name, layer))
    return out


def bert_layers() -> list[tuple[str, str, L.Layer]]:
    t, d, heads, ff = 128, 768, 12, 3072
    return [("bert-base", "qkv projection", L.fc(t, d, 3 * d)),
            ("bert-base", "attention output", L.fc(t, d, d)),
            ("bert-base", "ffn up", L.fc(t, d, ff)),
            ("bert-base", "ffn down", L.fc(t, ff, d)),
            ("attention", "scores q @ k^T (12 heads)", L.MatMul(batch=heads, m=t, k=d // heads, n=t)),
            ("attention", "context p @ v (12 heads)", L.MatMul(batch=heads, m=t, k=t, n=d // heads)),
            ("decode", "gemv 768 -> 3072", L.fc(1, d, ff)),
            ("decode", "gemv 3072 -> 768", L.fc(1, ff, d))]


def layer_class(layer) -> str:
    if isinstance(layer, L.Conv):
        if layer.depthwise:
            return "depthwise"
        if math.prod(layer.kernel) == 1:
            return "1x1 conv"
        return "large conv" if math.prod(layer.out_size) >= 28 * 28 else "small-spatial conv"
    if isinstance(layer, L.MatMul):
        return "attention product"
    return "GEMV" if layer.batch == 1 else "GEMM, many rows"


def all_layers() -> list[tuple[str, str, L.Layer]]:
    out = [("resnet50", n, c) for n, c in zoo_convs("resnet50", (1, 3, 224, 224))]
    out += [("mobilenet_v2", n, c) for n, c in zoo_convs("mobilenet_v2", (1, 3, 224, 224))]
    return out + bert_layers()


# ---- SCALE-Sim jobs ------------------------------------------------------------------------

def job_for(layer, rows: int, cols: int, max_cycles: float):
    """(topology kind, topology row, groups, tiles, note) that SCALE-Sim simulates for a layer:
    the layer's cycles are ``groups x ((cycles + 1) x tiles - 1)`` of the simulated row (a
    run of F weight tiles is F x (fill + rows) - 1 cycles, one of them fill + rows - 1)."""
    nest = nests(layer)[0]
    mult = nest.groups * nest.steps
    K, N, T = nest.k, nest.m, nest.rows
    folds = math.ceil(K / rows) * math.ceil(N / cols)
    full_cycles = folds * (2 * rows + cols - 2 + T)
    if full_cycles > max_cycles:
        # one weight tile with the real row count; the cycles of every tile are the same
        return "gemm", ("tile", T, min(N, cols), min(K, rows)), mult, folds, f"tile x {mult * folds}"
    if isinstance(layer, L.Conv) and not layer.transposed and len(layer.kernel) == 2:
        kh, kw = layer.kernel
        sh, sw = layer.stride
        eh, ew = layer.out_size
        ih, iw = (eh - 1) * sh + kh, (ew - 1) * sw + kw   # padded so the outputs match
        if sh != sw:
            raise ValueError("SCALE-Sim takes one stride per layer")
        row = ("conv", ih, iw, kh, kw, nest.c, nest.m, sh)
        return "conv", row, mult, 1, "full" if mult == 1 else f"group x {mult}"
    return "gemm", ("gemm", T, N, K), mult, 1, "full" if mult == 1 else f"one x {mult}"


def run_scalesim(python: str, kind: str, row: tuple, profile: str, arch: dict, cache: Path,
                 corrected: bool = False) -> dict:
    rows_, cols = int(arch["array_k"]), int(arch["array_n"])
    bw = max(1, round(float(arch["dram_bytes_per_s"]) / (float(arch["clock_mhz"]) * 1e6)))
    ifmap, filt, ofmap = SRAMS[profile]
    cfg = CFG.format(rows=rows_, cols=cols, ifmap=ifmap, filt=filt, ofmap=ofmap, bw=bw)
    key = hashlib.sha256(json.dumps([kind, row, cfg] + (["corrected"] if corrected else []))
                         .encode()).hexdigest()[:20]
    hit = cache / f"{key}.json"
    if hit.exists():
        return json.loads(hit.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "sim.cfg").write_text(cfg)
        if kind == "conv":
            header = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
            (tmp / "topo.csv").write_text(header + "layer, " + ", ".join(str(v) for v in row[1:]) + ",\n")
        else:
            header = "Layer, M, N, K,\n"
            (tmp / "topo.csv").write_text(header + "layer, " + ", ".join(str(v) for v in row[1:]) + ",\n")
        (tmp / "layout.csv").write_text(header)
        run = ["-c", CORRECTED] if corrected else ["-m", "scalesim.scale"]
        cmd = [python, *run, "-c", "sim.cfg", "-t", "topo.csv", "-l", "layout.csv",
               "-p", "out", "-s", "N"] + (["-i", "gemm"] if kind == "gemm" else [])
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        report = next(tmp.glob("out/*/COMPUTE_REPORT.csv"), None)
        if proc.returncode or report is None:
            raise RuntimeError(f"SCALE-Sim failed on {row}: {proc.stderr.strip()[-300:]}")
        with open(report) as f:
            rec = next(csv.DictReader(f, skipinitialspace=True))
    result = {"total": float(rec["Total Cycles"]), "stall": float(rec["Stall Cycles"]),
              "with_prefetch": float(rec["Total Cycles (incl. prefetch)"])}
    cache.mkdir(parents=True, exist_ok=True)
    hit.write_text(json.dumps(result))
    return result


# ---- the comparison ---------------------------------------------------------------------

def compare(args) -> list[dict]:
    layers = all_layers()
    rows = []
    jobs = []
    for profile in args.profiles:
        model = cost_model_for(profile)
        arch = model.accelerator.params["architecture"]
        ak, an = int(arch["array_k"]), int(arch["array_n"])
        for suite, name, layer in layers:
            est = model.estimate(layer)
            mp = est.mapping
            kind, trow, mult, tiles, note = job_for(layer, ak, an, args.max_cycles)
            nest = nests(layer)[0]
            u = utilisation(nest.k, nest.m, ak, an)
            roof_cycles = layer.macs / (ak * an * u)      # the v1 datasheet roofline, compute part
            # SCALE-Sim's rules (serial fill and drain per weight tile, one group per tile,
            # no Winograd, separate buffers); the whole-chip mapping is reported beside it
            rule = model.array.mapping(nest, scalesim=True)
            rows.append(dict(profile=profile, suite=suite, layer=name, cls=layer_class(layer),
                             shape=nest.describe(), fodlam_cycles=rule["cycles"], bound=est.bound,
                             chip_cycles=mp["cycles"],
                             fodlam_dram_cycles=mp["dram_s"] * float(arch["clock_mhz"]) * 1e6,
                             roofline_cycles=roof_cycles, sim=note, mult=mult, tiles=tiles))
            jobs.append((kind, trow, profile, arch))
    cache = Path(args.cache).expanduser()

    def one(job):
        kind, trow, profile, arch = job
        return run_scalesim(args.scalesim_python, kind, trow, profile, arch, cache)

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, jobs))
    dram = [i for i, r in enumerate(rows) if r["bound"] == "DRAM-bound"] if args.corrected_stalls else []

    def fixed(i):
        kind, trow, profile, arch = jobs[i]
        return run_scalesim(args.scalesim_python, kind, trow, profile, arch, cache, corrected=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        corrected = dict(zip(dram, pool.map(fixed, dram)))
    for i, (row, res) in enumerate(zip(rows, results)):
        if i in corrected:
            row["scalesim_corrected_total"] = corrected[i]["total"] * row["mult"]
        compute = ((res["total"] - res["stall"] + 1) * row["tiles"] - 1) * row["mult"]
        row.update(scalesim_cycles=compute, scalesim_stall=res["stall"] * row["mult"],
                   scalesim_with_prefetch=res["with_prefetch"] * row["mult"],
                   ratio=row["fodlam_cycles"] / compute, roofline_ratio=row["roofline_cycles"] / compute)
    return rows


def check_tiles(args) -> None:
    """The one-tile shortcut against full runs, on layers small enough to simulate whole."""
    arch = cost_model_for("nvdla-nv-small").accelerator.params["architecture"]
    cache = Path(args.cache).expanduser()
    for layer in (L.conv(1, 32, 48, 14, 3, padding=1), L.fc(64, 100, 40), L.conv(1, 24, 24, 28, 1)):
        full = job_for(layer, 8, 8, float("inf"))
        tile = job_for(layer, 8, 8, 0)
        a = run_scalesim(args.scalesim_python, full[0], full[1], "nvdla-nv-small", arch, cache)
        b = run_scalesim(args.scalesim_python, tile[0], tile[1], "nvdla-nv-small", arch, cache)
        fa = a["total"] - a["stall"]
        fb = (b["total"] - b["stall"] + 1) * tile[3] - 1
        print(f"tile shortcut {layer_class(layer):18s} full {fa:9.0f}  tile x {tile[3]:4d} {fb:9.0f}  "
              f"ratio {fb / fa:.4f}")


def summarise(rows: list[dict]) -> str:
    out = []
    for profile in dict.fromkeys(r["profile"] for r in rows):
        pr = [r for r in rows if r["profile"] == profile]
        out.append(f"\n### {profile}: FODLAM / SCALE-Sim compute cycles, {len(pr)} layers\n")
        out.append("| class | layers | median | worst | v1 roofline median | v1 roofline worst |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        classes = list(dict.fromkeys(r["cls"] for r in pr)) + ["all"]
        for cls in classes:
            sel = [r for r in pr if cls == "all" or r["cls"] == cls]
            ratios = [r["ratio"] for r in sel]
            roof = [r["roofline_ratio"] for r in sel]
            worst = max(ratios, key=lambda x: abs(math.log(x)))
            rworst = max(roof, key=lambda x: abs(math.log(x)))
            out.append(f"| {cls} | {len(sel)} | {statistics.median(ratios):.3f} | {worst:.3f} | "
                       f"{statistics.median(roof):.2f} | {rworst:.2f} |")
        dram = [r for r in pr if r["bound"] == "DRAM-bound"]
        if dram:
            out.append("\nDRAM-bound per FODLAM, in cycles: FODLAM's DRAM time; SCALE-Sim's total "
                       "(compute + stalls) and total including the prefetch of its SRAMs before cycle 0:\n")
            out.append("| layer | shape | FODLAM DRAM | SCALE-Sim total (stall) | corrected total | incl. prefetch |")
            out.append("| --- | --- | --- | --- | --- | --- |")
            for r in dram:
                fixed_total = r.get("scalesim_corrected_total")
                out.append(f"| {r['suite']} {r['layer']} | {r['shape']} | {r['fodlam_dram_cycles']:.0f} | "
                           f"{r['scalesim_cycles'] + r['scalesim_stall']:.0f} ({r['scalesim_stall']:.0f}) | "
                           f"{'' if fixed_total is None else f'{fixed_total:.0f}'} | "
                           f"{r['scalesim_with_prefetch']:.0f} |")
        ok_med = abs(statistics.median(r["ratio"] for r in pr) - 1) <= 0.15
        ok_all = all(0.5 <= r["ratio"] <= 2.0 for r in pr)
        out.append(f"\ngoal (median within 15%, every layer within 2x): "
                   f"{'met' if ok_med and ok_all else 'NOT met'}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scalesim-python", default=os.environ.get("SCALESIM_PYTHON", sys.executable),
                    help="a Python interpreter with scalesim installed (its own virtualenv)")
    ap.add_argument("--profiles", nargs="+", default=list(PROFILES))
    ap.add_argument("--cache", default="~/.cache/fodlam-scalesim")
    ap.add_argument("--max-cycles", type=float, default=3e5,
                    help="simulate one weight tile when a full run would be longer (default 3e5)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--csv", help="write the per-layer table here")
    ap.add_argument("--check-tiles", action="store_true", help="check the one-tile shortcut first")
    ap.add_argument("--corrected-stalls", action="store_true",
                    help="rerun the layers FODLAM finds DRAM-bound with SCALE-Sim's double-counted "
                         "stall removed, and show both")
    args = ap.parse_args(argv)
    if args.check_tiles:
        check_tiles(args)
    rows = compare(args)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, list(dict.fromkeys(k for r in rows for k in r)))
            w.writeheader()
            w.writerows(rows)
    for r in rows:
        print(f"{r['profile']:15s} {r['suite']:12s} {r['layer'][:34]:34s} {r['cls']:18s} "
              f"fodlam {r['fodlam_cycles']:11.0f}  scalesim {r['scalesim_cycles']:11.0f}  "
              f"ratio {r['ratio']:.3f}  {r['bound']:13s} {r['sim']}")
    print(summarise(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
