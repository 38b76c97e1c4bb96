"""Snapshot every user-visible output, to show that a refactor changed none of them.

    python validation/outputs_snapshot.py OUT_DIR            # write the snapshot
    python validation/outputs_snapshot.py --compare A B      # byte-compare two snapshots

What it writes, each through the command line a user types (``fodlam.cli.main`` in
process, so the arguments are exactly the CLI's):

* the JSON profile of every model of ``examples/zoo.py`` on every bundled accelerator
  profile (``fodlam torch ... --format json``), plus the CSV and the table of ResNet-50;
* the JSON of ResNet-18 exported to ONNX, on every profile (``fodlam-onnx``);
* every 2017 configuration (``examples/configs`` and ``../shared``'s published ones)
  with and without ``--compat``;
* the CSV of a small sweep (torch and ONNX models x a grid on tpu-v1 x eyeriss x nodes x
  batches).

Run it on the code before a change and after it, in the same checkout (profiles record
their TOML's path), and compare: every file must be byte-identical.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "reference" / "published" / "configs"
WORK = Path("/tmp/fodlam-snapshot-inputs")     # a fixed place: the ONNX path enters the JSON

ZOO = {"resnet18": "1,3,224,224", "resnet50": "1,3,224,224", "mobilenet_v2": "1,3,224,224",
       "vit_tiny": "1,3,224,224", "gpt2_small": "1,128", "lstm_lm": "35,20"}


def _cli(argv, out: Path, script: str = "fodlam") -> None:
    from fodlam import cli

    fn = cli.main if script == "fodlam" else cli.onnx_main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        try:
            rc = fn(argv)
        except SystemExit as e:  # pragma: no cover - argparse
            rc = e.code
    out.write_text(f"exit {rc}\n{buf.getvalue()}", encoding="utf-8")


def snapshot(out_dir: Path) -> int:
    sys.path.insert(0, str(ROOT))
    out_dir.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    from fodlam.accelerator import bundled

    profiles = bundled()
    count = 0
    for name, shape in ZOO.items():
        for acc in profiles:
            _cli(["torch", f"examples.zoo:{name}", "--input-shape", shape, "--format", "json",
                  "--accelerator", acc], out_dir / f"torch-{name}-{acc}.json")
            count += 1
    for fmt in ("csv", "table"):
        _cli(["torch", "examples.zoo:resnet50", "--input-shape", "1,3,224,224", "--format", fmt,
              "--top", "0"], out_dir / f"torch-resnet50.{fmt}")
        count += 1

    onnx_path = WORK / "resnet18.onnx"
    if not onnx_path.exists():
        import torch
        from examples import zoo

        torch.onnx.export(zoo.resnet18().eval(), (torch.randn(1, 3, 224, 224),), str(onnx_path),
                          input_names=["x"], dynamo=False)
    for acc in profiles:
        _cli([str(onnx_path), "--format", "json", "--accelerator", acc],
             out_dir / f"onnx-resnet18-{acc}.json", script="fodlam-onnx")
        count += 1

    configs = sorted((ROOT / "examples" / "configs").glob("*.json")) + sorted(SHARED.glob("*.json"))
    for i, cfg in enumerate(configs):
        stem = f"config{i}-{cfg.stem}"
        _cli(["run", str(cfg), "--format", "json"], out_dir / f"{stem}.json")
        _cli(["run", "--compat", str(cfg)], out_dir / f"{stem}-compat.json")
        count += 2

    sweep = WORK / "sweep.toml"
    sweep.write_text(f"""
[sweep]
batches = [1, 4]
nodes = [28, 16]

[[models]]
name = "resnet18-torch"
torch = "examples.zoo:resnet18"
input_shape = [1, 3, 224, 224]

[[models]]
name = "resnet18-onnx"
onnx = "{onnx_path}"

[[accelerators]]
profile = "tpu-v1"
grid = {{ "architecture.array_k" = [64, 256], "architecture.clock_mhz" = [700, 1000] }}

[[accelerators]]
profile = "eyeriss-eie-65nm"
""", encoding="utf-8")
    prefix = WORK / "sweep-out"
    prefix.with_suffix(".csv").unlink(missing_ok=True)     # never a stale result
    _cli(["sweep", str(sweep), "--no-cache", "--no-parquet", "--jobs", "1", "-o", str(prefix), "--quiet"],
         out_dir / "sweep-stdout.txt")
    (out_dir / "sweep.csv").write_bytes(prefix.with_suffix(".csv").read_bytes())
    count += 1
    print(f"snapshot: {count} outputs in {out_dir}")
    return 0


def compare(a: Path, b: Path) -> int:
    names = sorted({p.name for p in a.iterdir()} | {p.name for p in b.iterdir()})
    differ = [n for n in names if not ((a / n).is_file() and (b / n).is_file()
                                       and filecmp.cmp(a / n, b / n, shallow=False))]
    for n in differ:
        print(f"differs: {n}")
    print(f"compare: {len(names) - len(differ)} of {len(names)} outputs byte-identical")
    return 1 if differ else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="snapshot folder to write")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two snapshots")
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    if args.compare:
        return compare(Path(args.compare[0]), Path(args.compare[1]))
    if not args.out:
        ap.error("give OUT_DIR or --compare A B")
    return snapshot(Path(args.out))


if __name__ == "__main__":
    raise SystemExit(main())
