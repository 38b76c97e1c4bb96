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


# ---- fodlam check ------------------------------------------------------------------------

def cmd_check(args) -> int:
    from . import checks

    path = checks.find_config(args.config)
    specs, _ = checks.load_config(path)
    if args.model:
        wanted = set(args.model)
        missing = wanted - {s.name for s in specs}
        if missing:
            raise InputError(f"no model named {', '.join(sorted(missing))} in {path}")
        specs = [s for s in specs if s.name in wanted]
    baseline = checks.load_baseline(args.baseline) if args.baseline else None
    max_reg = checks.parse_percent(args.max_regression) if args.max_regression else None
    if max_reg is not None and baseline is None:
        raise InputError("--max-regression needs --baseline OLD.json (a saved 'fodlam check --json')")
    results = checks.run_checks(specs, baseline, max_reg)
    if args.json:
        _emit(checks.to_json(results), args.output)
    else:
        _emit("\n".join(checks.table_lines(results)), args.output)
    if args.junit:
        try:
            with open(args.junit, "w", encoding="utf-8") as f:
                f.write(checks.junit_xml(results))
        except OSError as e:
            raise InputError(f"cannot write {args.junit}: {e.strerror or e}") from None
    checks.write_github_summary(results)
    if any(c.error for c in results):
        for c in results:
            if c.error:
                print(f"fodlam: error: {c.spec.name}: {c.error}", file=sys.stderr)
        return 2
    if not all(c.ok for c in results):
        if args.json:  # the table already said it otherwise
            for c in results:
                if not c.ok:
                    for line in checks.table_lines([c])[2:]:
                        print(line, file=sys.stderr)
        return 1
    return 0


# ---- fodlam report -----------------------------------------------------------------------

def profile_target(target: str, input_shapes, dims=None, accelerator=None):
    """An ONNX path, or a PyTorch PACKAGE.MODULE:FACTORY with --input-shape."""
    from pathlib import Path

    if target.endswith(".onnx") or (Path(target).is_file() and ":" not in target):
        from .api import profile_onnx
        return profile_onnx(target, accelerator=accelerator, dims=dims)
    if ":" in target:
        from fodlam.importers.torch import profile_factory
        shapes = [parse_shape(s, "--input-shape") for s in input_shapes]
        return profile_factory(target, shapes, accelerator=accelerator)
    if target.endswith(".json"):
        from .api import run_config
        return run_config(target, accelerator=accelerator)
    raise InputError(f"'{target}' is neither an .onnx file, a 2017 config .json, nor a "
                     "PACKAGE.MODULE:FACTORY")


def cmd_report(args) -> int:
    if not args.html and not args.png:
        raise InputError("say where to write the report: --html OUT.html and/or --png OUT.png")
    dims = {k: int(v) for k, v in parse_assignments(args.dim, "VALUE", "--dim").items()}
    profile = profile_target(args.model, args.input_shape, dims, args.accelerator)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("reports need matplotlib: pip install 'fodlam[report]'") from None
    if args.html:
        from .report import html
        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(html.render(profile, args.top))
        except OSError as e:
            raise InputError(f"cannot write {args.html}: {e.strerror or e}") from None
    if args.png:
        from .report import plots
        try:
            with open(args.png, "wb") as f:
                f.write(plots.png_bytes(plots.figure_summary(profile, args.top)))
        except OSError as e:
            raise InputError(f"cannot write {args.png}: {e.strerror or e}") from None
    print(f"fodlam: report of {profile.model.get('name')}: "
          + ", ".join(p for p in (args.html, args.png) if p), file=sys.stderr)
    return 0


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
    p.add_argument("model", help="MODEL.onnx, PACKAGE.MODULE:FACTORY (with --input-shape), or a 2017 config .json")
    p.add_argument("--html", metavar="OUT.html")
    p.add_argument("--png", metavar="OUT.png")
    p.add_argument("--input-shape", action="append", default=[], metavar="D0,D1,...")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--top", type=int, default=25, metavar="K", help="layers in the bar charts")
    p.add_argument("--accelerator", metavar="NAME|FILE.toml")
    p.set_defaults(func=cmd_report)

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
