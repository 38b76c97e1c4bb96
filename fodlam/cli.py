"""Command line: thin argument parsing over the API. Errors: one line, exit 2.

Nothing here imports torch or onnx at module import time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import FodlamError, InputError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other error."""

    def error(self, message):  # pragma: no cover - exercised through subprocess tests
        raise InputError(f"{message} (see '{self.prog} --help')")


def _emit(text: str, output: str | None) -> None:
    if output and output != "-":
        from ._io import atomic_write
        atomic_write(output, text if text.endswith("\n") else text + "\n")
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


def _accelerator_arg(args):
    """--accelerator with --node / --scaling applied."""
    from .accelerator import resolve

    node, rule = getattr(args, "node", None), getattr(args, "scaling", None)
    if node is not None and not (1 <= node <= 1000):
        raise InputError(f"--node {node}: give a process node in nm, e.g. 28")
    return resolve(getattr(args, "accelerator", None), node, rule)


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
    p.add_argument("--strict", action="store_true",
                   help="error (exit 2) if any node has no cost model")
    add_accelerator_flags(p)


def add_accelerator_flags(p: argparse.ArgumentParser) -> None:
    """--accelerator, --cost-model, --node and --scaling: which profile costs the model."""
    p.add_argument("--accelerator", metavar="NAME|FILE.toml",
                   help="accelerator profile (default eyeriss-eie-65nm; see 'fodlam profiles')")
    p.add_argument("--cost-model", choices=("fodlam-shape", "fodlam-2017", "fodlam-roofline"),
                   help="override the accelerator profile's cost model")
    p.add_argument("--node", type=float, metavar="NM",
                   help="rescale the accelerator profile to another process node (nm)")
    p.add_argument("--scaling", choices=("dennard", "stillmaker-baas", "stillmaker-baas-lp"),
                   help="technology scaling rule for --node (default: the profile's)")


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
    from . import models

    model = models.for_accelerator(accelerator, compat=compat, cost_model="fodlam-2017")
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
    from .sources import parse_assignments, parse_positive_int

    return {k: parse_positive_int(v, f"--dim {k}={v}") for k, v in
            parse_assignments(values, "VALUE", "--dim").items()}


def _onnx_ref(args):
    from .sources import ModelRef, parse_positive_int

    if args.batch is not None:
        parse_positive_int(args.batch, f"--batch {args.batch}")
    return ModelRef.onnx(args.model, input_shapes=args.input_shape, dims=_dims_arg(args.dim),
                         batch=args.batch)


def cmd_onnx(args) -> int:
    from ._io import refuse_overwriting_inputs
    from .api import profile_ref

    refuse_overwriting_inputs(args.output, args.model, flag="--output")
    refuse_overwriting_inputs(args.annotate, args.model, flag="--annotate")
    profile = profile_ref(_onnx_ref(args), accelerator=_accelerator_arg(args), strict=args.strict,
                          cost_model=getattr(args, "cost_model", None),
                          weight_density=_density_arg(getattr(args, "weight_density", None)),
                          activation_density=getattr(args, "activation_density", None))
    if args.annotate:
        from fodlam.importers.onnx import write_annotated
        write_annotated(args.model, profile, args.annotate)
    _emit(render(profile, args.format or _default_format(), args.top), args.output)
    return check_budget_flags(profile, args)


# ---- fodlam torch ------------------------------------------------------------------------

def cmd_torch(args) -> int:
    from .api import profile_ref
    from .sources import ModelRef, parse_shape

    shapes = tuple(parse_shape(s, "--input-shape") for s in args.input_shape)
    ref = ModelRef("torch", args.factory, args.factory, input_shapes=shapes)
    profile = profile_ref(ref, accelerator=_accelerator_arg(args), strict=args.strict,
                          dtype=args.dtype, cost_model=getattr(args, "cost_model", None))
    _emit(render(profile, args.format or _default_format(), args.top), args.output)
    return check_budget_flags(profile, args)


# ---- fodlam llm --------------------------------------------------------------------------

def cmd_llm(args) -> int:
    from .api import generate_profile
    from .sources import parse_positive_int

    target = args.model
    if target.lower().endswith(".onnx") and ":" not in target:
        from .sources import regular_file

        regular_file(target, "ONNX model")
        model = target
    else:
        from .importers.torch import build_factory

        model = build_factory(target)
    gen = generate_profile(model, parse_positive_int(args.prompt, "--prompt"),
                           parse_positive_int(args.generate, "--generate"),
                           batch=parse_positive_int(args.batch, "--batch"),
                           accelerator=_accelerator_arg(args), cost_model=args.cost_model,
                           samples=parse_positive_int(args.samples, "--samples"), dtype=args.dtype,
                           cache=args.cache)
    gen.model["source"] = target
    if args.html:
        gen.save_html(args.html)
    fmt = args.format or _default_format()
    _emit(gen.to_json() if fmt == "json" else str(gen), args.output)
    return 0


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
        from ._io import atomic_write
        atomic_write(args.junit, checks.junit_xml(results))
    checks.write_github_summary(results)
    if len(results) != len(specs):  # pragma: no cover - run_checks reports every model
        raise InputError(f"checked {len(results)} of {len(specs)} models")
    if any(c.error for c in results):
        for c in results:
            if c.error:
                print(f"fodlam: error: {c.spec.name}: {c.error}", file=sys.stderr)
        return max(c.exit_code for c in results if c.error)
    if not all(c.ok for c in results):
        if args.json:  # the table already said it otherwise
            for c in results:
                if not c.ok:
                    for line in checks.table_lines([c])[2:]:
                        print(line, file=sys.stderr)
        return 1
    return 0


# ---- fodlam report -----------------------------------------------------------------------

def cmd_report(args) -> int:
    if not args.html and not args.png:
        raise InputError("say where to write the report: --html OUT.html and/or --png OUT.png")
    from ._io import refuse_overwriting_inputs
    for out, flag in ((args.html, "--html"), (args.png, "--png")):
        refuse_overwriting_inputs(out, args.model, flag=flag)
    from .sweeps import is_sweep_result
    if is_sweep_result(args.model):
        return _sweep_report(args)
    from .api import profile_ref
    from .sources import ModelRef

    ref = ModelRef.parse(args.model, input_shapes=args.input_shape, dims=_dims_arg(args.dim))
    profile = profile_ref(ref, accelerator=args.accelerator)
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("reports need matplotlib: pip install 'fodlam[report]'")
    from ._io import atomic_write
    if args.html:
        from .report import html
        atomic_write(args.html, html.render(profile, args.top))
    if args.png:
        from .report import plots
        atomic_write(args.png, plots.png_bytes(plots.figure_summary(profile, args.top)))
    print(f"fodlam: report of {profile.model.get('name')}: "
          + ", ".join(p for p in (args.html, args.png) if p), file=sys.stderr)
    return 0


# ---- fodlam sweep -------------------------------------------------------------------------

def cmd_sweep(args) -> int:
    from pathlib import Path

    from . import sweeps as S
    from ._io import output_lock, refuse_overwriting_inputs

    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs {args.jobs}: give a positive number of worker processes")
    if args.top is not None and args.top < 0:
        raise InputError(f"--top {args.top}: give a positive number of points (or leave it out)")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise InputError(f"--chunk-size {args.chunk_size}: give a positive number of points")
    spec = S.load_sweep(args.sweep)
    prefix = Path(args.output) if args.output else spec.path.with_name(spec.path.stem + "-results")
    if prefix.suffix in (".csv", ".parquet"):
        prefix = prefix.with_suffix("")
    inputs = [spec.path] + [m.source for m in spec.models if m.kind == "onnx"]
    for suffix in (".csv", ".parquet", ".parts"):
        refuse_overwriting_inputs(prefix.with_name(prefix.name + suffix), *inputs, flag="the sweep output")
    with output_lock(prefix):
        return _run_sweep(args, S, spec, prefix)


#: above this many points the CSV is written only when asked for (--csv): Parquet holds it
CSV_LIMIT = 1_000_000


def _run_sweep(args, S, spec, prefix) -> int:
    import time
    from pathlib import Path

    S.select_columns(spec, args.columns)
    points = len(spec.points)
    parquet = not args.no_parquet
    want_csv = args.csv or points <= CSV_LIMIT or not parquet
    cache = None if args.no_cache else (args.cache if args.cache and "://" in args.cache else
                                        Path(args.cache) if args.cache else prefix.with_name(prefix.name + ".parts"))
    print(f"fodlam sweep: {len(spec.models)} model(s) x {len(spec.batches)} batch(es) x "
          f"{len(spec.accels)} accelerator point(s) = {points} points", file=sys.stderr)
    if args.dry_run:
        return _dry_run(args, S, spec, prefix, cache, want_csv, parquet)
    t0 = time.perf_counter()
    with S.on_signals():
        result = S.run(spec, jobs=args.jobs, backend=args.backend, address=args.address,
                       cache_path=cache, quiet=args.quiet, chunk_size=args.chunk_size)
    seconds = time.perf_counter() - t0
    written = []
    if want_csv:
        csv_path = prefix.with_name(prefix.name + ".csv")
        S.write_csv(csv_path, spec, result.iter_rows())
        written.append(str(csv_path))
    else:
        print(f"fodlam sweep: {points} points is more than {CSV_LIMIT:,}: the CSV is not written "
              "(the Parquet file holds every row; pass --csv to write it too)", file=sys.stderr)
    if parquet:
        pq_path = prefix.with_name(prefix.name + ".parquet")
        S.write_parquet(pq_path, spec, result)
        written.append(str(pq_path))
    done = sum(ref.rows for ref in result.chunks)
    print(f"fodlam sweep: {done} of {points} points ({result.computed} computed, "
          f"{result.cached} from the cache, {result.failed_points} failed) in {seconds:.2f} s; wrote "
          + ", ".join(written), file=sys.stderr)
    if args.pareto or args.top:
        _print_fronts(args, S, result)
    if result.interrupted:
        return 128 + (result.interrupted if result.interrupted is not True else 2)
    return 1 if result.failed else 0


def _print_fronts(args, S, result) -> None:
    import heapq

    from .report import sweep as R
    from .report.table import render_table
    from .units import format_si

    if args.pareto:
        groups = R.Summary(result.iter_rows(), sample=0).fronts
        title = "energy-latency Pareto front"
    else:
        best: dict = {}
        for r in result.iter_rows():        # a bounded heap per model: streaming
            if r["status"] != "ok":
                continue
            heap = best.setdefault(R.group_label(r), [])
            item = (-float(r["edp_js"]), -r["point"], r)
            if len(heap) < args.top:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
        groups = {m: [x[2] for x in sorted(h, key=lambda x: (-x[0], -x[1]))] for m, h in best.items()}
        title = f"top {args.top} by energy x latency"
    for model, rs in groups.items():
        print(f"\n{model}: {title} ({len(rs)} point(s))")
        rows = [[str(r["point"]), r["accelerator"], r["overrides"] or "-", str(r["process_nm"] or "-"),
                 str(r["batch"] or "-"), format_si(r["energy_j"], "J"), format_si(r["latency_s"], "s"),
                 f"{r['edp_js']:.3g}"] for r in rs]
        print("\n".join(render_table(["point", "accelerator", "overrides", "node nm", "batch",
                                      "energy", "latency", "EDP (J s)"], rows)))


def _dry_run(args, S, spec, prefix, cache, want_csv, parquet) -> int:
    """The plan without running it: points, chunks, an estimate of the run time from a
    short calibration on the first chunk, and of the output size."""
    import tempfile
    import time

    points = len(spec.points)
    chunk = args.chunk_size or S.CHUNK
    first_chunk = min(S.FIRST_CHUNK, chunk)
    chunks = sum(1 + -(-max(0, len(e) - first_chunk) // chunk) for e in spec.accels.entries) \
        * len(spec.models) * len(spec.batches)
    jobs = max(1, args.jobs or os.cpu_count() or 1)
    first = next(S.plan_chunks(spec, 0, 0, "dry-run", chunk))
    n = min(200, first.stop - first.start)
    t = time.perf_counter()
    nodes = S.import_model(spec.models[0], spec.batches[0])
    import_s = time.perf_counter() - t
    probe = S.ChunkTask(first.key, first.point0, first.model, first.batch, first.entry, first.start,
                        first.start + n)
    with tempfile.TemporaryDirectory() as tmp:
        parts = S.Parts(tmp, S.columns(spec), S.column_types(spec))
        parts.prepare()
        t = time.perf_counter()
        S.cost_chunk(nodes, probe, parts)
        per_point = (time.perf_counter() - t) / n
        part_bytes = sum(p.stat().st_size for p in Path(tmp).glob("*.parquet")) / n
    csv_bytes = 60 + 18 * len(S.columns(spec))
    estimate = per_point * points / jobs
    print(f"fodlam sweep --dry-run: {points:,} points in {chunks:,} chunk(s) of up to {chunk:,} "
          f"points; {jobs} worker(s)", file=sys.stderr)
    print(f"  calibration: {n} points of the first chunk at {per_point * 1e6:.0f} us/point "
          f"(model import {import_s:.2f} s, once per model and batch)", file=sys.stderr)
    print(f"  estimated run time: {estimate:.0f} s ({estimate / 3600:.2f} h) on {jobs} worker(s)",
          file=sys.stderr)
    sizes = []
    if parquet:
        sizes.append(f"Parquet ~{part_bytes * points / 1e6:,.0f} MB")
    if want_csv:
        sizes.append(f"CSV ~{csv_bytes * points / 1e6:,.0f} MB")
    print(f"  estimated output: {', '.join(sizes) or 'none'}; parts in {cache or 'a temporary folder'}",
          file=sys.stderr)
    return 0


def _sweep_report(args) -> int:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("reports need matplotlib: pip install 'fodlam[report]'")
    from .report import sweep as R
    from .sweeps import iter_results
    try:
        rows = R.Summary(iter_results(args.model))      # one streaming pass
    except (OSError, ValueError, UnicodeDecodeError, KeyError) as e:
        raise InputError(f"cannot read the sweep results {args.model}: {e}") from None
    from ._io import atomic_write
    if args.html:
        atomic_write(args.html, R.render(rows, source=args.model))
    if args.png:
        atomic_write(args.png, R.png(rows))
    print(f"fodlam: report of sweep {args.model}: " + ", ".join(p for p in (args.html, args.png) if p),
          file=sys.stderr)
    return 0


# ---- fodlam calibrate ---------------------------------------------------------------------

def base_path(accelerator):
    """The file of a profile given as a path (None for a bundled name)."""
    return accelerator if accelerator and str(accelerator).endswith(".toml") else None


def _check_calibrated(text: str, out) -> None:
    """A calibrated profile is written only if it loads: every coefficient finite and in
    range (data that cannot be fitted is an error, never a profile holding inf)."""
    import tempfile

    from .accelerator import load_accelerator
    from .errors import ConfigError

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "calibrated.toml"
        probe.write_text(text, encoding="utf-8")
        try:
            load_accelerator(str(probe))
        except ConfigError as e:
            why = str(e).replace(str(probe), "the fitted profile")
            raise InputError(f"calibration gives no usable profile ({why}); check the data for "
                             f"outliers or inconsistent units; {out} not written") from None


def cmd_calibrate(args) -> int:
    from fodlam.calibration import fit as F
    from .accelerator import load_accelerator
    from .report.table import render_table
    from .units import format_si

    from ._io import refuse_overwriting_inputs
    refuse_overwriting_inputs(args.out, args.data, base_path(args.accelerator), flag="--out")
    base = load_accelerator(args.accelerator)
    arch = dict(base.params.get("architecture") or {})
    if not arch:
        raise InputError(f"base profile {base.name} has no [architecture] table (PE array, clock); "
                         "start from a profile that has one, e.g. eyeriss-eie-65nm")
    base_model = base.params.get("shape_model", {})
    target = base.process_nm
    if args.data:
        rows = F.read_csv(args.data, target_nm=target, rule=base.technology_scaling)
        data_label = f"user data {args.data}"
    else:
        rows = F.bundled_rows(target, base.technology_scaling)
        data_label = ("bundled: eyeriss-jssc2017 Tables V-VI (18 conv), eie-isca2016 Tables III-IV "
                      "(6 fc), EIE moved to the profile's node")
    ev = F.evaluate(rows, arch, base_model.get("conv"), base_model.get("fc"))
    ev["data"] = data_label
    if args.format == "json":
        out = {k: v for k, v in ev.items() if k != "fit"}
        out["coefficients"] = {"conv": ev["fit"].conv, "fc": ev["fit"].fc}
        _emit(json.dumps(out, indent=2), None)
    else:
        lines = [f"calibration data: {data_label} ({len(rows)} layers); base profile {base.name}", ""]
        for kind, res in ev["loo"].items():
            lines.append(f"{kind}: measured vs predicted, leave-one-out (each layer predicted by a fit on the others)")
            lines += render_table(
                ["network", "layer", "latency", "fodlam-shape", "per-MAC", "energy", "fodlam-shape", "per-MAC"],
                [[x["network"], x["layer"], format_si(x["latency_s"], "s"),
                  f"{100 * (x['loo_latency_s'] / x['latency_s'] - 1):+.1f}%",
                  f"{100 * (x['per_mac_latency_s'] / x['latency_s'] - 1):+.1f}%",
                  format_si(x["energy_j"], "J"),
                  f"{100 * (x['loo_energy_j'] / x['energy_j'] - 1):+.1f}%",
                  f"{100 * (x['per_mac_energy_j'] / x['energy_j'] - 1):+.1f}%"] for x in res["layers"]])
            lines.append("")
            lines += render_table(["leave-one-out |error|", "latency mean", "latency max", "energy mean", "energy max"], [
                [name, f"{100 * res[key]['latency']['mean']:.1f}%", f"{100 * res[key]['latency']['max']:.1f}%",
                 f"{100 * res[key]['energy']['mean']:.1f}%", f"{100 * res[key]['energy']['max']:.1f}%"]
                for name, key in (("fodlam-shape", "new"), ("per-MAC scaling", "per_mac"))])
            lines.append("")
        if ev["cross_network"]:
            lines.append("cross-network: fit on one network's conv layers, predict the other's total")
            lines += render_table(["fit -> predict", "fodlam-shape latency", "energy", "per-MAC latency", "energy"], [
                [k, f"{100 * v['new']['latency']:+.1f}%", f"{100 * v['new']['energy']:+.1f}%",
                 f"{100 * v['per_mac']['latency']:+.1f}%", f"{100 * v['per_mac']['energy']:+.1f}%"]
                for k, v in ev["cross_network"].items()])
            lines.append("")
        lines.append("fitted coefficients (all data): conv " + ", ".join(
            f"{k}={v:.4g}" for k, v in ev["fit"].conv.items()))
        if ev["fit"].fc:
            lines.append("fitted coefficients (all data): fc " + ", ".join(
                f"{k}={v:.4g}" for k, v in ev["fit"].fc.items()))
        _emit("\n".join(lines), None)
    if args.out:
        name = args.name or (Path(args.out).stem if args.data else base.name)
        text = F.profile_toml(ev["fit"], ev, name=name,
                              description=args.description or (
                                  f"calibrated by fodlam calibrate from {data_label}"
                                  if args.data else base.description),
                              process_nm=target,
                              sources=base.sources if not args.data else {"data": data_label},
                              base_params=base.params)
        _check_calibrated(text, args.out)
        from ._io import atomic_write
        atomic_write(args.out, text)
        print(f"fodlam: wrote accelerator profile {args.out} (use --accelerator {args.out})",
              file=sys.stderr)
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
