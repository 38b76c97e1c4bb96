"""fodlam-onnx against onnx-tool's profiler and the bare parse of the file, in one run.

    python benchmarks/bench_onnx.py [--workdir DIR] [--repeat N]

Builds the test files itself (no binaries in git): ResNet-50 and GPT-2 small exported from
the plain-PyTorch definitions in examples/zoo.py, and a synthetic graph of 10,000+ nodes.
Each tool runs as a whole process (python -c ...), best of --repeat; the script prints wall
time, peak RSS, and ratios against fodlam. The floor is `onnx.load` of the same file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = {
    "onnx.load (floor)": "import onnx, sys; onnx.load(sys.argv[1])",
    "fodlam-onnx": "import sys; from fodlam.cli import onnx_main; "
                   "sys.exit(onnx_main([sys.argv[1], '--format', 'json', '-o', os.devnull]))",
    "onnx-tool": "import onnx_tool, sys, io, contextlib; "
                 "f = io.StringIO(); ctx = contextlib.redirect_stdout(f); ctx.__enter__(); "
                 "onnx_tool.model_profile(sys.argv[1])",
}


def run(code: str, path: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS MB, exit status) of one whole process."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import os\n" + code, str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t
    proc.stderr.close()
    return dt, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def export_models(workdir: Path) -> dict[str, Path]:
    import torch

    sys.path.insert(0, str(ROOT))
    from examples import zoo

    out = {}
    for name, factory, example in (
            ("resnet50", zoo.resnet50, torch.randn(1, 3, 224, 224)),
            ("gpt2-small", zoo.gpt2_small, torch.randint(0, 50257, (1, 128)))):
        path = workdir / f"{name}.onnx"
        if not path.exists():
            torch.onnx.export(factory().eval(), (example,), str(path), dynamo=False,
                              input_names=["x"], external_data=False)
        out[name] = path
    out["synthetic-10k"] = synthetic(workdir / "synthetic-10k.onnx", blocks=2000)
    return out


def synthetic(path: Path, blocks: int) -> Path:
    """A chain of `blocks` x (MatMul, Add, Relu, Reshape, Reshape) = 5 nodes per block."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    import onnx

    if path.exists():
        return path
    nodes, inits = [], []
    d = 64
    shape = numpy_helper.from_array(np.array([1, d], np.int64), "shape")
    inits.append(shape)
    x = "x"
    for i in range(blocks):
        w = numpy_helper.from_array(np.full((d, d), 0.01, np.float32), f"w{i}")
        b = numpy_helper.from_array(np.zeros((d,), np.float32), f"b{i}")
        inits += [w, b]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"r{i}"]),
                  helper.make_node("Reshape", [f"r{i}", "shape"], [f"s{i}"]),
                  helper.make_node("Reshape", [f"s{i}", "shape"], [f"y{i}"])]
        x = f"y{i}"
    graph = helper.make_graph(nodes, "synthetic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, d])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fodlam-bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--export-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.export_only:
        export_models(args.workdir)
        return
    # export in a child so this (measuring) process never holds torch: forked children
    # would otherwise report the parent's resident pages as their own peak
    subprocess.run([sys.executable, __file__, "--export-only", "--workdir", str(args.workdir)],
                   check=True, stderr=subprocess.DEVNULL)
    files = {p.stem: p for p in (args.workdir / f for f in
                                 ("resnet50.onnx", "gpt2-small.onnx", "synthetic-10k.onnx"))}
    for name, path in files.items():
        nodes = int(subprocess.run(
            [sys.executable, "-c", "import onnx, sys; print(len(onnx.load(sys.argv[1], "
             "load_external_data=False).graph.node))", str(path)],
            capture_output=True, text=True).stdout or 0)
        print(f"\n{name}: {path.stat().st_size / 1e6:.1f} MB, {nodes} nodes")
        results = {}
        for tool, code in COMMANDS.items():
            runs = [run(code, path) for _ in range(args.repeat)]
            if any(r[2] != 0 for r in runs):
                print(f"  {tool:18s} failed (exit {runs[0][2]})")
                continue
            best = min(runs, key=lambda r: r[0])
            results[tool] = best
        base = results.get("fodlam-onnx")
        for tool, (dt, rss, _) in results.items():
            ratio = f"{dt / base[0]:5.2f}x fodlam's time" if base else ""
            print(f"  {tool:18s} {dt:6.2f} s  peak {rss:7.0f} MB  {ratio}")
        if base and "onnx.load (floor)" in results:
            print(f"  fodlam / floor: {base[0] / results['onnx.load (floor)'][0]:.2f}x; "
                  f"onnx-tool / fodlam: "
                  f"{results['onnx-tool'][0] / base[0]:.2f}x" if "onnx-tool" in results else "")


if __name__ == "__main__":
    main()
