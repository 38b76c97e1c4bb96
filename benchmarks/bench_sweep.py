"""Sweep throughput: points per second over 1,000 accelerator variants, memory as the sweep
grows, and the speed-up from 1 to 2 workers locally and on a local Ray cluster.

    python benchmarks/bench_sweep.py               # ResNet-50, GPT-2 small @128, a 1,000-node MLP
    python benchmarks/bench_sweep.py --no-ray
    python benchmarks/bench_sweep.py --scale 1000000 10000000   # cluster-scale sweeps

``--scale N ...``: a 2-node model (Conv2d + ReLU) over N accelerator points of tpu-v1 (a
grid over array_k x array_n x clock_mhz), 2 workers, each size in a fresh process: the
driver's peak RSS, the time to the first costed chunk, the time per point, and the
streamed Parquet output; then the time to report a typo in a 10^9-point grid.

The variants are the TPU v1 profile with a 10 x 10 x 10 grid over array_k, array_n and
clock_mhz (1,000 points per model). Each model is imported once (timed apart); the figures
are points costed per second after that. Every run writes nothing: the cache is off.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fodlam import sweeps as S  # noqa: E402

MLP = '''
import torch
class Deep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(256, 256) for _ in range(500))
    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x
def deep():
    return Deep()
'''

SWEEP = '''
[[models]]
torch = "{spec}"
input_shape = {shape}
name = "{name}"

[[accelerators]]
profile = "tpu-v1"
[accelerators.grid]
"architecture.array_k" = [16, 32, 48, 64, 96, 128, 160, 192, 224, 256]
"architecture.array_n" = [16, 32, 48, 64, 96, 128, 160, 192, 224, 256]
"architecture.clock_mhz" = [300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200]
'''


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


TWO_NODES = """
import torch
def net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU())
"""


def _grid(points: int) -> str:
    """array_k x array_n x clock_mhz with about ``points`` points (100 x 100 x rest)."""
    rest = max(1, points // 10000)
    ks = ", ".join(str(8 + 2 * i) for i in range(100))
    clocks = ", ".join(f"{100 + i * 0.5:g}" for i in range(rest))
    return (f'grid = {{ "architecture.array_k" = [{ks}], "architecture.array_n" = [{ks}], '
            f'"architecture.clock_mhz" = [{clocks}] }}')


def scale_child(points: int, jobs: int, onnx: bool = False) -> None:
    import json
    import shutil

    import torch  # the user's model imports it; not part of the sweep's time

    tmp = Path(tempfile.mkdtemp())
    (tmp / "two.py").write_text(TWO_NODES)
    model = f'torch = "{tmp / "two.py"}:net"\ninput_shape = [1, 3, 32, 32]'
    if onnx:
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU())
        torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(tmp / "two.onnx"), dynamo=False)
        model = f'onnx = "{tmp / "two.onnx"}"'
    (tmp / "s.toml").write_text(f'[[models]]\n{model}\n'
                                f'[[accelerators]]\nprofile = "tpu-v1"\n{_grid(points)}\n')
    t0 = time.perf_counter()
    sweep = S.load_sweep(tmp / "s.toml")
    t_load = time.perf_counter() - t0
    first: list = []
    t0 = time.perf_counter()
    res = S.run(sweep, jobs=jobs, cache_path=tmp / "parts", quiet=True,
                on_chunk=lambda ref: first or first.append(time.perf_counter() - t0))
    t_run = time.perf_counter() - t0
    run_rss = rss_mb()
    t0 = time.perf_counter()
    S.write_parquet(tmp / "out.parquet", sweep, res)
    t_write = time.perf_counter() - t0
    n = len(sweep.points)
    print(json.dumps({"points": n, "load_s": t_load, "first_chunk_s": first[0], "run_s": t_run,
                      "import_s": res.import_s, "run_rss_mb": run_rss,
                      "us_per_point": 1e6 * t_run / n, "write_s": t_write,
                      "parquet_mb": (tmp / "out.parquet").stat().st_size / 1e6,
                      "parts_mb": sum(p.stat().st_size for p in (tmp / "parts").iterdir()) / 1e6,
                      "peak_rss_mb": rss_mb(), "failed": res.failed_points}))
    shutil.rmtree(tmp)


def scale(sizes, jobs: int, onnx: bool = False) -> None:
    import json
    import subprocess

    print(f"{'points':>12s} {'model':>6s} {'load s':>7s} {'import s':>9s} {'first chunk s':>14s} {'run s':>8s} "
          f"{'us/point':>9s} {'parquet s':>10s} {'parquet MB':>11s} {'RSS MB after run':>17s} "
          f"{'driver peak RSS MB':>19s}")
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--scale-child", str(n), "--jobs", str(jobs)]
                             + (["--onnx"] if onnx else []), capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['points']:12,d} {'onnx' if onnx else 'torch':>6s} {r['load_s']:7.2f} {r['import_s']:9.2f} "
              f"{r['first_chunk_s']:14.2f} {r['run_s']:8.1f} {r['us_per_point']:9.1f} {r['write_s']:10.1f} "
              f"{r['parquet_mb']:11.0f} {r['run_rss_mb']:17.0f} {r['peak_rss_mb']:19.0f}")
    tmp = Path(tempfile.mkdtemp())
    (tmp / "two.py").write_text(TWO_NODES)
    axis = ", ".join(str(8 + i) for i in range(1000))
    (tmp / "typo.toml").write_text(
        f'[[models]]\ntorch = "{tmp / "two.py"}:net"\ninput_shape = [1, 3, 32, 32]\n'
        f'[[accelerators]]\nprofile = "tpu-v1"\ngrid = {{ "architecture.array_k" = [{axis}], '
        f'"architecture.array_n" = [{axis}], "architecture.clok_mhz" = [{axis}] }}\n')
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "fodlam.cli", "sweep", str(tmp / "typo.toml")],
                       capture_output=True, text=True)
    print(f"\ntypo in a 10^9-point grid: exit {r.returncode} after {time.perf_counter() - t:.2f} s "
          f"(whole process): {r.stderr.strip()[:110]}...")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--scale", type=int, nargs="+", metavar="N", help="cluster-scale runs of N points")
    ap.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--onnx", action="store_true", help="--scale on the model exported to ONNX")
    args = ap.parse_args(argv)
    if args.scale_child:
        scale_child(args.scale_child, args.jobs, args.onnx)
        return 0
    if args.scale:
        scale(args.scale, args.jobs, args.onnx)
        return 0
    import pyarrow.parquet  # noqa: F401  (the parts' writer: a one-time import, not per point)

    tmp = Path(tempfile.mkdtemp())
    (tmp / "deepmlp.py").write_text(MLP)
    models = [("resnet50", "examples.zoo:resnet50", [1, 3, 224, 224]),
              ("gpt2-small@128", "examples.zoo:gpt2_small", [1, 128]),
              ("mlp-1000-nodes", f"{tmp / 'deepmlp.py'}:deep", [1, 256])]
    print(f"{'model':16s} {'nodes':>6s} {'import s':>9s} {'backend':8s} {'jobs':>4s} {'points':>6s} "
          f"{'seconds':>8s} {'points/s':>9s} {'per core':>9s} {'peak RSS MB':>12s}")
    for name, spec, shape in models:
        path = tmp / f"{name}.toml"
        path.write_text(SWEEP.format(spec=spec, shape=shape, name=name))
        sweep = S.load_sweep(path)
        t = time.perf_counter()
        nodes = S.import_model(sweep.models[0], None)
        t_import = time.perf_counter() - t
        runs = [("local", 1), ("local", 2)] + ([] if args.no_ray else [("ray", 2)])
        # S.run imports the model itself, once; its import time is subtracted (res.import_s)
        for backend, jobs in runs:
            if backend == "ray":
                import ray
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
            try:
                t = time.perf_counter()
                res = S.run(sweep, jobs=jobs, backend=backend, quiet=True)
                seconds = time.perf_counter() - t - res.import_s
            finally:
                if backend == "ray":
                    ray.shutdown()
            n = len(sweep.points)
            assert not res.failed, res.failed_models
            print(f"{name:16s} {len(nodes):6d} {t_import:9.2f} {backend:8s} {jobs:4d} {n:6d} {seconds:8.2f} "
                  f"{n / seconds:9.0f} {n / seconds / jobs:9.0f} {rss_mb():12.0f}")
    # memory as the sweep grows: 1,000 then 3,000 points of the same model, in-process
    path = tmp / "grow.toml"
    text = SWEEP.format(spec="examples.zoo:resnet18", shape=[1, 3, 64, 64], name="resnet18")
    path.write_text(text)
    S.run(S.load_sweep(path), jobs=1, quiet=True)
    before = rss_mb()
    path.write_text("[sweep]\nnodes = [28, 16, 7]\n" + text)
    S.run(S.load_sweep(path), jobs=1, quiet=True)
    print(f"\nmemory: peak RSS {before:.0f} MB after 1,000 points, {rss_mb():.0f} MB after 3,000 more "
          "(rows are a few hundred bytes each; nothing else grows per point)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
