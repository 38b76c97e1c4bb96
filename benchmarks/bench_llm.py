"""LLM generation (issue 18): a 7B Llama config from ``transformers`` on the meta device
(no weights), prompt 512, 128 new tokens, on every bundled profile: wall time of
``fodlam.generate_profile`` (goal: under 10 s) and the figures per phase. With ``--peer
PYTHON`` (a virtualenv with ``pip install llm-analysis``), the same run asks llm-analysis,
given the same hardware description (DRAM bandwidth, peak MAC rate, weight width), for its
decode time per token, and prints the ratio (goal: within 10% where both are rooflines).

    python benchmarks/bench_llm.py
    python -m venv /tmp/la && /tmp/la/bin/pip install llm-analysis
    python benchmarks/bench_llm.py --peer /tmp/la/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEER = """
import json, logging, sys
logging.disable(logging.CRITICAL)
from llm_analysis import config as C
from llm_analysis.analysis import LLMAnalysis
from llm_analysis.config import GPUConfig, ParallelismConfig
a = json.loads(sys.argv[1])
mc = C.get_model_config_by_name("NousResearch_Llama-2-7b-hf")   # the same shape as ours
tflops = 2 * a["peak_macs_per_s"] / 1e12
gpu = GPUConfig(name=a["name"], mem_per_GPU_in_GB=1000, hbm_bandwidth_in_GB_per_sec=a["bw"] / 1e9,
                intra_node_bandwidth_in_GB_per_sec=100, intra_node_min_message_latency=1e-6,
                peak_fp16_TFLOPS=tflops, peak_i8_TFLOPS=tflops)
dtype = C.get_dtype_config_by_name("w8a8e16" if a["bits"] == 8 else "w16a16e16")
la = LLMAnalysis(mc, gpu, dtype, ParallelismConfig(), flops_efficiency=1.0, hbm_memory_efficiency=1.0)
r = la.inference(batch_size_per_gpu=1, seq_len=a["prompt"], num_tokens_to_generate=a["new"])
print(json.dumps({"decode_latency": r["decode_latency"], "prefill_latency": r["prefill_latency"]}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", metavar="PYTHON", help="a python with llm-analysis installed")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--generate", type=int, default=128)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch
    import transformers as T

    import fodlam
    from fodlam.accelerator import bundled, load_accelerator
    from fodlam.engines import precision

    cfg = T.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    with torch.device("meta"):
        model = T.LlamaForCausalLM(cfg).eval().to(torch.bfloat16)
    print(f"{'profile':18s} {'wall':>6s} {'TTFT':>9s} {'decode/token':>13s} {'J/token':>8s} "
          f"{'bound (decode)':>15s} {'llm-analysis':>13s} {'ratio':>6s}")
    for acc in bundled():
        t = time.perf_counter()
        g = fodlam.generate_profile(model, prompt_len=args.prompt, new_tokens=args.generate,
                                    accelerator=acc)
        wall = time.perf_counter() - t
        peer, ratio = "", ""
        a = load_accelerator(acc)
        if args.peer and a.cost_model == "fodlam-roofline":
            arch = a.architecture
            bits = precision(arch, 16)
            ak, an = arch.array_k, arch.array_n
            over = a.precision.get(str(bits))
            if over is not None:
                ak, an = over.array_k or ak, over.array_n or an
            desc = {"name": acc, "bw": arch.dram_bytes_per_s, "bits": bits,
                    "peak_macs_per_s": ak * an * arch.clock_mhz * 1e6,
                    "prompt": args.prompt, "new": args.generate}
            out = subprocess.run([args.peer, "-c", PEER, json.dumps(desc)], capture_output=True,
                                 text=True)
            if out.returncode == 0:
                d = json.loads(out.stdout.strip().splitlines()[-1])["decode_latency"]
                peer, ratio = f"{d * 1e3:10.1f} ms", f"{g.decode_latency_s_per_token / d:6.2f}"
            else:
                peer = "failed"
        print(f"{acc:18s} {wall:5.1f}s {g.time_to_first_token_s:8.3g}s "
              f"{g.decode_latency_s_per_token * 1e3:10.1f} ms {g.decode_energy_j_per_token:8.3g} "
              f"{g.bound['decode']:>15s} {peer:>13s} {ratio:>6s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
