"""What every command shares: the one-line-error parser, writing to a file or standard
output, rendering a profile, and the flags of the profiling commands (accelerator,
output, budgets, ONNX dims and densities)."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other error."""

    def error(self, message):  # pragma: no cover - exercised through subprocess tests
        raise InputError(f"{message} (see '{self.prog} --help')")


def _emit(text: str, output: str | None) -> None:
    if output and output != "-":
        from .._io import atomic_write
        atomic_write(output, text if text.endswith("\n") else text + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _default_format() -> str:
    return "table" if sys.stdout.isatty() else "json"


def render(profile, fmt: str, top: int = 10, depth: int | None = None) -> str:
    if fmt == "json":
        return profile.to_json()
    if fmt == "csv":
        return profile.to_csv()
    if hasattr(profile, "profiles"):                  # accelerators side by side
        return str(profile)
    if depth:
        if depth < 1:
            raise InputError(f"--depth {depth}: give a depth of at least 1")
        return profile.summary(depth=depth)
    return "\n".join(profile.summary_lines(top=top))


# ---- budgets (shared by every profiling command) -----------------------------------------

def add_budget_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-energy", metavar="E", help="fail (exit 1) above this energy, e.g. 5mJ")
    p.add_argument("--max-latency", metavar="T", help="fail (exit 1) above this latency, e.g. 12ms")


def _accelerator_arg(args):
    """--accelerator with --node / --scaling applied."""
    from ..accelerator import resolve

    node, rule = getattr(args, "node", None), getattr(args, "scaling", None)
    if node is not None and not (1 <= node <= 1000):
        raise InputError(f"--node {node}: give a process node in nm, e.g. 28")
    spec = getattr(args, "accelerator", None)
    if isinstance(spec, str) and "," in spec and not spec.endswith(".toml"):
        names = [x.strip() for x in spec.split(",")]
        if not all(names):
            raise InputError(f"--accelerator {spec!r}: give names or .toml paths separated by "
                             "commas, e.g. tpu-v1,nvdla-nv-full")
        return [resolve(name, node, rule) for name in names]     # side by side
    return resolve(spec, node, rule)


def check_budget_flags(profile, args) -> int:
    from ..budget import Budget, check_profile

    budget = Budget.from_strings(energy=args.max_energy, latency=args.max_latency)
    if budget.empty:
        return 0
    code = 0
    for p in getattr(profile, "profiles", [profile]):      # each accelerator of a comparison
        result = check_profile(p, budget)
        if result.breaches:
            for line in result.messages():
                print((f"{p.accelerator.get('name')}: " if hasattr(profile, "profiles") else "")
                      + line, file=sys.stderr)
            code = 1
    return code


def write_html(result, path, top: int = 25) -> None:
    """``--html``: the report page of a profile, or the side-by-side page of a comparison."""
    if not path:
        return
    if hasattr(result, "profiles"):
        result.save_html(path)
        return
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--html needs matplotlib: pip install 'fodlam[report]'")
    result.save_html(path, top)


def add_output_flags(p: argparse.ArgumentParser, default_format: str | None = None) -> None:
    p.add_argument("--format", choices=("table", "json", "csv"), default=default_format,
                   help="output format (default: table on a terminal, json otherwise)")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--top", type=int, default=10, metavar="K",
                   help="nodes shown in the table (0: all; default 10)")
    p.add_argument("--strict", action="store_true",
                   help="error (exit 2) if any node has no cost model")
    p.add_argument("--html", metavar="FILE",
                   help="also write the report page (side by side for several accelerators)")
    p.add_argument("--depth", type=int, metavar="N",
                   help="table format: a module tree down to depth N (module type, parameters, "
                        "shapes, MACs, J, s, memory) instead of the flat table of operations")
    add_accelerator_flags(p)


def add_accelerator_flags(p: argparse.ArgumentParser) -> None:
    """--accelerator, --cost-model, --node and --scaling: which profile costs the model."""
    p.add_argument("--accelerator", metavar="NAME|FILE.toml",
                   help="accelerator profile (default eyeriss-eie-65nm; see 'fodlam profiles'); "
                        "several, comma-separated (tpu-v1,nvdla-nv-full), side by side")
    p.add_argument("--cost-model", choices=("fodlam-shape", "fodlam-2017", "fodlam-roofline"),
                   help="override the accelerator profile's cost model")
    p.add_argument("--node", type=float, metavar="NM",
                   help="rescale the accelerator profile to another process node (nm)")
    p.add_argument("--scaling", choices=("dennard", "stillmaker-baas", "stillmaker-baas-lp"),
                   help="technology scaling rule for --node (default: the profile's)")


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
    p.add_argument("--weight-density", metavar="measure|D",
                   help="non-zero fraction of the fc weights: 'measure' reads them (opt-in), or a number")
    p.add_argument("--activation-density", type=float, metavar="D",
                   help="non-zero fraction of the activations entering fc layers")
    add_output_flags(p)
    add_budget_flags(p)


def _density_arg(value):
    if value is None or value == "measure":
        return value
    try:
        d = float(value)
    except ValueError:
        raise InputError(f"--weight-density {value}: give 'measure' or a number in (0, 1]") from None
    return d


def _dims_arg(values) -> dict:
    from ..sources import parse_assignments, parse_positive_int

    return {k: parse_positive_int(v, f"--dim {k}={v}") for k, v in
            parse_assignments(values, "VALUE", "--dim").items()}


def _onnx_ref(args):
    from ..sources import ModelRef, parse_positive_int

    if args.batch is not None:
        parse_positive_int(args.batch, f"--batch {args.batch}")
    return ModelRef.onnx(args.model, input_shapes=args.input_shape, dims=_dims_arg(args.dim),
                         batch=args.batch)


# ---- fodlam calibrate ---------------------------------------------------------------------

def base_path(accelerator):
    """The file of a profile given as a path (None for a bundled name)."""
    return accelerator if accelerator and str(accelerator).endswith(".toml") else None


#: every flag a command writes a file through
OUTPUT_FLAGS = ("output", "html", "png", "annotate", "junit", "out")


def guard(args, *inputs) -> None:
    """Refuse, before anything runs, any output flag of ``args`` that names one of the
    command's inputs (``fodlam._io.guard_outputs``); the accelerator profile given as a
    file is an input of every command."""
    from .._io import guard_outputs

    outs = [(f"--{name}", getattr(args, name, None)) for name in OUTPUT_FLAGS
            if getattr(args, name, None)]
    accel = getattr(args, "accelerator", None)
    files = list(inputs)
    if isinstance(accel, str):
        files += [a for a in accel.split(",") if a.endswith(".toml")]
    guard_outputs(outs, files)


def model_inputs(target) -> list:
    """The files a model target reads (``fodlam.sources.model_files``)."""
    from ..sources import model_files

    return model_files(target)
