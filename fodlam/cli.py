"""Command line: thin argument parsing over the API. Errors: one line, exit 2.

Nothing here imports torch or onnx at module import time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__
from .errors import FodlamError, InputError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other error."""

    def error(self, message):  # pragma: no cover - exercised through subprocess tests
        raise InputError(f"{message} (see '{self.prog} --help')")


def _emit(text: str, output: str | None) -> None:
    if output and output != "-":
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        except OSError as e:
            raise InputError(f"cannot write {output}: {e.strerror or e}") from None
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _default_format() -> str:
    return "table" if sys.stdout.isatty() else "json"


def render(profile, fmt: str, top: int = 10) -> str:
    if fmt == "json":
        return profile.to_json()
    if fmt == "csv":
        return profile.to_csv()
    return "\n".join(profile.summary_lines(top=top))


# ---- budgets (shared by every profiling command) -----------------------------------------

def add_budget_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-energy", metavar="E", help="fail (exit 1) above this energy, e.g. 5mJ")
    p.add_argument("--max-latency", metavar="T", help="fail (exit 1) above this latency, e.g. 12ms")


def check_budget_flags(profile, args) -> int:
    from .budget import Budget, check_profile

    budget = Budget.from_strings(energy=args.max_energy, latency=args.max_latency)
    if budget.empty:
        return 0
    result = check_profile(profile, budget)
    if result.breaches:
        for line in result.messages():
            print(line, file=sys.stderr)
        return 1
    return 0


def add_output_flags(p: argparse.ArgumentParser, default_format: str | None = None) -> None:
    p.add_argument("--format", choices=("table", "json", "csv"), default=default_format,
                   help="output format (default: table on a terminal, json otherwise)")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--top", type=int, default=10, metavar="K",
                   help="nodes shown in the table (0: all; default 10)")
    p.add_argument("--accelerator", metavar="NAME|FILE.toml",
                   help="accelerator profile (default eyeriss-eie-65nm; see 'fodlam profiles')")
    p.add_argument("--strict", action="store_true",
                   help="error (exit 2) if any node has no cost model")


# ---- fodlam run --------------------------------------------------------------------------

def cmd_run(args) -> int:
    from .api import run_config
    from .config2017 import compat_output

    profile = run_config(args.config, accelerator=args.accelerator, compat=args.compat)
    if args.compat:
        _emit(json.dumps(compat_output(profile), sort_keys=True, indent=2), args.output)
        return 0
    if args.strict:
        profile.check_modeled()
    _emit(render(profile, args.format or "json", args.top), args.output)
    return check_budget_flags(profile, args)


# ---- fodlam diagnose ---------------------------------------------------------------------

def diagnose_data(accelerator=None, compat: bool = False) -> dict:
    from .api import cost_model_for

    model = cost_model_for(accelerator, compat=compat)
    return {"cost_model": model.name, "mode": model.mode, "normalisation": model.normalisation,
            "layers": model.per_mac_table(),
            "average": {k: {"energy_j_per_mac": r.energy_j_per_mac,
                            "latency_s_per_mac": r.latency_s_per_mac,
                            "layers": r.layers, "macs": r.macs}
                        for k, r in model.rates.items()}}


def cmd_diagnose(args) -> int:
    from .report.table import render_table
    from .units import format_count, format_si

    data = diagnose_data(args.accelerator, args.compat)
    if (args.format or "table") == "json":
        _emit(json.dumps(data, indent=2), args.output)
        return 0
    lines = [f"reference layers, cost per MAC ({data['mode']}: {data['normalisation']})"]
    lines += render_table(
        ["network", "layer", "kind", "MACs", "latency", "energy", "s/MAC", "J/MAC"],
        [[r["network"], r["layer"], r["kind"], format_count(r["macs"]),
          format_si(r["latency_s"], "s"), format_si(r["energy_j"], "J"),
          f"{r['latency_s_per_mac']:.4g}", f"{r['energy_j_per_mac']:.4g}"] for r in data["layers"]])
    lines += ["", "average per kind (sum of costs / sum of MACs):"]
    lines += render_table(["kind", "layers", "MACs", "s/MAC", "J/MAC"], [
        [k, v["layers"], format_count(v["macs"]), f"{v['latency_s_per_mac']:.4g}",
         f"{v['energy_j_per_mac']:.4g}"] for k, v in data["average"].items()])
    _emit("\n".join(lines), args.output)
    return 0


# ---- fodlam profiles ---------------------------------------------------------------------

def cmd_profiles(args) -> int:
    from .accelerator import bundled, load_accelerator

    for name in bundled():
        acc = load_accelerator(name)
        print(f"{acc.name:24s} {acc.process_nm:g} nm  {acc.cost_model:14s} {acc.description}")
    return 0


# ---- fodlam onnx / fodlam-onnx -----------------------------------------------------------

def add_onnx_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="shape of a graph input (repeatable)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                   help="value of a symbolic dimension (repeatable), e.g. --dim seq=128")
    p.add_argument("--batch", type=int, metavar="N", help="value of the leading (batch) dimension")
    p.add_argument("--annotate", metavar="OUT.onnx",
                   help="write a copy of the model with each node's estimate for Netron")
    add_output_flags(p)
    add_budget_flags(p)


def parse_assignments(values, what: str, flag: str) -> dict:
    out = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise InputError(f"{flag} {text!r}: expected NAME={what}")
        out[name] = value
    return out


def parse_shape(text: str, flag: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise InputError(f"{flag} {text!r}: a shape is comma-separated integers, e.g. 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise InputError(f"{flag} {text!r}: every dimension must be a positive integer")
    return dims


def cmd_onnx(args) -> int:
    from .api import profile_onnx

    shapes = {k: parse_shape(v, "--input-shape") for k, v in
              parse_assignments(args.input_shape, "D0,D1,...", "--input-shape").items()}
    dims = {}
    for k, v in parse_assignments(args.dim, "VALUE", "--dim").items():
        try:
            dims[k] = int(v)
        except ValueError:
            raise InputError(f"--dim {k}={v}: the value must be an integer") from None
        if dims[k] <= 0:
            raise InputError(f"--dim {k}={v}: the value must be positive")
    if args.batch is not None and args.batch <= 0:
        raise InputError(f"--batch {args.batch}: must be a positive integer")
    profile = profile_onnx(args.model, accelerator=args.accelerator, input_shapes=shapes,
                           dims=dims, batch=args.batch, strict=args.strict)
    if args.annotate:
        from fodlam.importers.onnx import write_annotated
        write_annotated(args.model, profile, args.annotate)
    _emit(render(profile, args.format or _default_format(), args.top), args.output)
    return check_budget_flags(profile, args)


# ---- fodlam torch ------------------------------------------------------------------------

def cmd_torch(args) -> int:
    from fodlam.importers.torch import profile_factory

    shapes = [parse_shape(s, "--input-shape") for s in args.input_shape]
    profile = profile_factory(args.factory, shapes, accelerator=args.accelerator,
                              strict=args.strict, dtype=args.dtype)
    _emit(render(profile, args.format or _default_format(), args.top), args.output)
    return check_budget_flags(profile, args)


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

    p = sub.add_parser("torch", help="profile a PyTorch model from PACKAGE.MODULE:FACTORY")
    p.add_argument("factory", help="PACKAGE.MODULE:FACTORY returning an nn.Module (or path/to/file.py:FACTORY)")
    p.add_argument("--input-shape", action="append", default=[], metavar="D0,D1,...",
                   help="shape of an input (repeat for several inputs)")
    p.add_argument("--dtype", help="input dtype, e.g. float32 or int64 (default: float32; "
                                   "embeddings get int64)")
    add_output_flags(p)
    add_budget_flags(p)
    p.set_defaults(func=cmd_torch)

    p = sub.add_parser("profiles", help="list the bundled accelerator profiles")
    p.set_defaults(func=cmd_profiles)
    return parser


def _guard(fn) -> int:
    try:
        return fn()
    except FodlamError as e:
        print(f"fodlam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fodlam: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except RecursionError:
        print("fodlam: error: the model is nested too deeply to process", file=sys.stderr)
        return 2
    except MemoryError:
        print("fodlam: error: out of memory while processing the model", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback
        if os.environ.get("FODLAM_DEBUG"):
            raise
        msg = " ".join(str(e).split())[:300]
        print(f"fodlam: internal error: {type(e).__name__}: {msg} (set FODLAM_DEBUG=1 for "
              "a traceback, and please report it)", file=sys.stderr)
        return 3


def main(argv=None) -> int:
    def go():
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    return _guard(go)


def onnx_main(argv=None) -> int:
    def go():
        parser = _Parser(prog="fodlam-onnx", description=(
            "Profile an ONNX model: per-node energy (J) and latency (s) on an accelerator."))
        parser.add_argument("--version", action="version", version=f"fodlam {__version__}")
        add_onnx_args(parser)
        return cmd_onnx(parser.parse_args(argv))
    return _guard(go)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
