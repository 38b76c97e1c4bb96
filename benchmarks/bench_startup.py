"""Start-up: whole-process time of `fodlam --help` and `fodlam run` on a 2017 config, and
proof that neither imports torch, onnx or numpy. Compared with bare `python -c pass` and
with `python -c "import torch"` measured in the same run.

    python benchmarks/bench_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "configs" / "vgg16.json"

CASES = {
    "python -c pass (floor)": "pass",
    "fodlam --help": "import sys; from fodlam.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "fodlam run vgg16.json": f"from fodlam.cli import main; main(['run', {str(CONFIG)!r}, '-o', '/dev/null'])",
    "import torch (for scale)": "import torch",
}
CHECK = ("import sys; from fodlam.cli import main; main(['run', %r, '-o', '/dev/null']);"
         "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules))"
         % str(CONFIG))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results = {}
    for name, code in CASES.items():
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        results[name] = statistics.median(times)
    floor = results["python -c pass (floor)"]
    for name, t in results.items():
        print(f"{name:28s} {t * 1e3:7.1f} ms  {t / floor:5.1f}x the bare interpreter")
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    print(f"heavy modules imported by 'fodlam run': {out.stdout.strip()}")


if __name__ == "__main__":
    main()
