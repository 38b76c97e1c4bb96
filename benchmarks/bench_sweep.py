"""Sweep throughput: points per second over 1,000 accelerator variants, memory as the sweep
grows, and the speed-up from 1 to 2 workers locally and on a local Ray cluster.

    python benchmarks/bench_sweep.py               # ResNet-50, GPT-2 small @128, a 1,000-node MLP
    python benchmarks/bench_sweep.py --no-ray

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args(argv)
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
            n = len(res.rows)
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
