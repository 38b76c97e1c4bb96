"""Costing already-lowered layers on a profile: the step a design-space sweep repeats.

    python benchmarks/bench_cost.py             # ResNet-50, GPT-2 small @128, on every bundled profile

A model is lowered once (torch importer); then ``build_profile`` costs its nodes on each
profile, best of --repeat, with a fresh cost model each time (as a sweep over profile
variants would). Goal (issue 10): ResNet-50 under 5 ms on any one profile. For scale, the
same run times torch's FlopCounterMode counting the model's FLOPs (a peer that only
counts, on a real forward pass) and prints the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import fodlam  # noqa: E402
from examples import zoo  # noqa: E402
from fodlam.accelerator import bundled  # noqa: E402
from fodlam.models import for_accelerator as cost_model_for  # noqa: E402
from fodlam.costed import build_profile  # noqa: E402


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    models = {"resnet50": (zoo.resnet50(), (1, 3, 224, 224), torch.float32),
              "gpt2-small@128": (zoo.gpt2_small(), (1, 128), torch.long)}
    print(f"{'model':16s} {'profile':18s} {'nodes':>6s} {'cost (ms)':>10s} {'FlopCounterMode (ms)':>21s} {'ratio':>7s}")
    for name, (module, shape, dtype) in models.items():
        prof = fodlam.profile(module, shape, dtype=dtype)
        nodes = [nc.node for nc in prof.nodes]
        x = torch.zeros(shape, dtype=dtype)

        def count():
            from torch.utils.flop_counter import FlopCounterMode
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                module(x)
            return fc.get_total_flops()

        peer = best_of(count, max(3, args.repeat // 5))
        for acc in bundled():
            t = best_of(lambda: build_profile(nodes, cost_model_for(acc), network=prof.model), args.repeat)
            print(f"{name:16s} {acc:18s} {len(nodes):6d} {t * 1e3:10.2f} {peer * 1e3:21.1f} {peer / t:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
