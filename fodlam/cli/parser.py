"""The argument parser of ``fodlam``: one sub-command per job, each bound to its body."""

from __future__ import annotations

import argparse

from .. import __version__
from .commands import (cmd_calibrate, cmd_check, cmd_diagnose, cmd_llm, cmd_onnx, cmd_profiles,
                       cmd_report, cmd_run, cmd_torch)
from .common import (_Parser, add_accelerator_flags, add_budget_flags,
                     add_onnx_args, add_output_flags)
from .sweep import cmd_sweep


# ---- entry points ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fodlam", description=(
        "First-Order Deep Learning Accelerator Model: per-layer energy (J) and latency (s) "
        "of a neural network on a DNN accelerator, from published silicon measurements."))
    parser.add_argument("--version", action="version", version=f"fodlam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="cost a 2017-style configuration (net or netfile + layers)")
    p.add_argument("config", help="configuration JSON file, or - for stdin")
    p.add_argument("--compat", action="store_true",
                   help="reproduce the 2017 tool's output and numbers exactly (batch quirk included)")
    add_output_flags(p, default_format=None)
    add_budget_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("diagnose", help="every reference layer's cost per MAC and the per-kind averages")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--output", "-o", metavar="FILE")
    p.add_argument("--compat", action="store_true", help="2017 batch semantics")
    p.add_argument("--accelerator", metavar="NAME|FILE.toml")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("onnx", help="profile an ONNX model (same as fodlam-onnx)")
    add_onnx_args(p)
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser("llm", help="LLM generation: prefill, then decode steps reading the KV "
                                   "cache; seconds and joules per generated token")
    p.add_argument("model", help="PACKAGE.MODULE:FACTORY or FILE.py:FACTORY returning a causal "
                                 "language model (a transformers ...ForCausalLM; on the meta "
                                 "device is enough), or an ONNX decoder exported with its KV cache")
    p.add_argument("--prompt", default=512, metavar="TOKENS", help="prompt length (default 512)")
    p.add_argument("--generate", default=128, metavar="TOKENS",
                   help="tokens generated per sequence (default 128)")
    p.add_argument("--batch", default=1, metavar="N", help="sequences generated together (default 1)")
    p.add_argument("--samples", default=3, metavar="K",
                   help="decode steps traced; the others are interpolated (default 3)")
    p.add_argument("--dtype", help="the floating dtype the model is traced in, e.g. bfloat16")
    p.add_argument("--cache", choices=("dynamic", "static"), default="dynamic",
                   help="the KV cache: the model's growing one (default) or a StaticCache of "
                        "prompt + generated positions")
    p.add_argument("--html", metavar="FILE", help="also write the report page to FILE")
    p.add_argument("--layers", action="store_true",
                   help="JSON: every layer of the prefill and sampled decode steps (default: "
                        "their totals and kinds only)")
    p.add_argument("--format", choices=("table", "json"),
                   help="output format (default: table on a terminal, json otherwise)")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    add_accelerator_flags(p)
    p.set_defaults(func=cmd_llm)

    p = sub.add_parser("torch", help="profile a PyTorch model from PACKAGE.MODULE:FACTORY")
    p.add_argument("factory", help="PACKAGE.MODULE:FACTORY returning an nn.Module (or path/to/file.py:FACTORY)")
    p.add_argument("--input-shape", action="append", default=[], metavar="D0,D1,...",
                   help="shape of an input (repeat for several inputs)")
    p.add_argument("--dtype", help="the floating dtype the model is traced in, e.g. bfloat16: its "
                                   "floating inputs and parameters take it (default float32); "
                                   "a token model's ids stay int64; an integer dtype sets the "
                                   "inputs' type only")
    p.add_argument("--batch", type=int, metavar="N",
                   help="the leading dimension of every input (default: the shapes' own)")
    add_output_flags(p)
    add_budget_flags(p)
    p.set_defaults(func=cmd_torch)

    p = sub.add_parser("check", help="check models against the energy/latency budgets of "
                                      "fodlam.toml or [tool.fodlam] in pyproject.toml")
    p.add_argument("--config", metavar="FILE", help="budget file (default: ./fodlam.toml, then ./pyproject.toml)")
    p.add_argument("--model", action="append", metavar="NAME", help="check only this model (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable result (save it as a baseline)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the table/JSON to FILE")
    p.add_argument("--baseline", metavar="OLD.json", help="compare with a saved 'fodlam check --json'")
    p.add_argument("--max-regression", metavar="PCT", help="fail if energy or latency rose more than PCT (e.g. 5%%) over the baseline")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per model)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("report", help="HTML page and/or PNG charts of a model's costs")
    p.add_argument("model", help="MODEL.onnx, PACKAGE.MODULE:FACTORY (with --input-shape), a 2017 config "
                   ".json, or the .csv/.parquet results of 'fodlam sweep'")
    p.add_argument("--html", metavar="OUT.html")
    p.add_argument("--png", metavar="OUT.png")
    p.add_argument("--input-shape", action="append", default=[], metavar="D0,D1,...")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--top", type=int, default=25, metavar="K", help="layers in the bar charts")
    p.add_argument("--accelerator", metavar="NAME|FILE.toml")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sweep", help="cost models x accelerator variants x nodes x batches (design-space sweep)")
    p.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file (see 'fodlam sweep --help' and the docs)")
    p.add_argument("--output", "-o", metavar="PREFIX", help="write PREFIX.csv and PREFIX.parquet "
                   "(default: SWEEP-results next to the sweep file)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N", help="worker processes (default: all cores)")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local one)")
    p.add_argument("--cache", metavar="DIR|URI", help="where finished chunks are kept as Parquet parts "
                   "(default: PREFIX.parts; a pyarrow.fs URI such as s3://bucket/run works too)")
    p.add_argument("--no-cache", action="store_true", help="recompute every point and keep no parts")
    p.add_argument("--no-parquet", action="store_true", help="write only the CSV")
    p.add_argument("--csv", action="store_true", help="write the CSV even above 1,000,000 points")
    p.add_argument("--columns", metavar="LIST", default="all",
                   help="what to keep: all (default), minimal (no per-kind columns), by-kind, or "
                        "column names, comma-separated; the point's identity and totals are always kept")
    p.add_argument("--chunk-size", type=int, default=None, metavar="N",
                   help=f"points per chunk, the unit of work, cache and output (default {4096})")
    p.add_argument("--dry-run", action="store_true",
                   help="print the points, chunks, estimated run time and output size, and exit")
    p.add_argument("--pareto", action="store_true", help="print the energy-latency Pareto front per model")
    p.add_argument("--top", type=int, default=0, metavar="K", help="print the K best points per model by energy x latency")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("calibrate", help="fit the shape-aware model to measured layers and report its errors")
    p.add_argument("--data", metavar="MY.csv", help="your measured layers (default: the bundled published tables)")
    p.add_argument("--out", metavar="PROFILE.toml", help="write an accelerator profile with the fitted coefficients")
    p.add_argument("--accelerator", metavar="NAME|FILE.toml", help="base profile (architecture, node)")
    p.add_argument("--name", help="name of the written profile")
    p.add_argument("--description", help="description of the written profile")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("profiles", help="list the bundled accelerator profiles")
    p.set_defaults(func=cmd_profiles)
    return parser
