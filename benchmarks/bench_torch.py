"""fodlam.profile against torch's FlopCounterMode, fvcore and ptflops, measured in one run.

    python benchmarks/bench_torch.py            # ResNet-50, GPT-2 small @128, LSTM LM, 7B on meta

Prints, per model and tool: wall time in-process after construction (best of --repeat),
total MACs reported, and the time ratio tool / fodlam. The peers run a real forward
pass; fodlam traces with fake tensors. Peers that are not installed are skipped (pip
install fvcore ptflops). The 7B decoder is profiled in a subprocess to report its peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import fodlam  # noqa: E402
from examples import zoo  # noqa: E402


def best_of(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def run_fodlam(model, x):
    return fodlam.profile(model, tuple(x.shape), dtype=x.dtype).total_macs


def run_flopcounter(model, x):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def run_fvcore(model, x):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, (x,))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        return int(analysis.total())


def run_ptflops(model, x):
    from ptflops import get_model_complexity_info

    with torch.no_grad():
        macs, _ = get_model_complexity_info(
            model, tuple(x.shape), input_constructor=lambda _shape: {"input": x} if False else x,
            as_strings=False, print_per_layer_stat=False, verbose=False, backend="pytorch")
    return int(macs)


def _ptflops_wrapper(model):
    # ptflops calls model(input_constructor(...)); a dict would be passed as kwargs
    return model


TOOLS = {"fodlam": run_fodlam, "FlopCounterMode": run_flopcounter, "fvcore": run_fvcore,
         "ptflops": run_ptflops}


def models():
    yield "ResNet-50", zoo.resnet50().eval(), torch.randn(1, 3, 224, 224)
    yield "GPT-2 small @128", zoo.gpt2_small().eval(), torch.randint(0, 50257, (1, 128))
    yield "LSTM LM (2x650) 35x20", zoo.lstm_lm().eval(), torch.randint(0, 10000, (35, 20))


def meta_7b() -> str:
    code = (
        "import sys, time, resource; sys.path.insert(0, %r)\n"
        "import fodlam\nfrom examples import zoo\n"
        "m = zoo.llama_7b_meta()\n"
        "t = time.perf_counter(); p = fodlam.profile(m, (1, 128)); dt = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "params = sum(x.numel() for x in m.parameters())\n"
        "print(f'{params / 1e9:.2f} B params, {p.total_macs / 1e9:.1f} G MACs, '"
        "f'{len(p.nodes)} nodes, profile {dt:.2f} s, process peak RSS {rss:.0f} MB')\n" % str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeat}")
    for name, model, x in models():
        print(f"\n{name}")
        base = None
        for tool, fn in TOOLS.items():
            try:
                dt, macs = best_of(lambda: fn(model, x), args.repeat)
            except ImportError:
                print(f"  {tool:16s} not installed")
                continue
            except Exception as e:  # noqa: BLE001 - a peer failing is a result too
                print(f"  {tool:16s} failed: {type(e).__name__}: {str(e)[:80]}")
                continue
            if tool == "fodlam":
                base = dt
            ratio = f"{dt / base:6.2f}x fodlam's time" if base else ""
            print(f"  {tool:16s} {dt:7.3f} s  {macs / 1e9:8.3f} G MACs  {ratio}")
    print("\n7B decoder on the meta device (peers need a real forward: ~27 GB of weights)")
    print("  fodlam: " + meta_7b())
    print(f"\nthis process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
