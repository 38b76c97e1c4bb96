"""The command bodies of ``fodlam`` (except ``sweep``, in ``sweep.py``): each turns its
arguments into a call of the API (or of the layer that owns the decision) and prints the
result."""

from __future__ import annotations

import json
import sys

from ..errors import InputError
from .common import (_accelerator_arg, _default_format, _density_arg, _dims_arg, _emit,
                     _onnx_ref, base_path, check_budget_flags, guard, model_inputs, render,
                     write_html)
from .sweep import _sweep_report


# ---- fodlam run --------------------------------------------------------------------------

def cmd_run(args) -> int:
    from ..api import run_config
    from ..config2017 import compat_output

    guard(args, args.config)
    profile = run_config(args.config, accelerator=args.accelerator, compat=args.compat)
    if args.compat:
        _emit(json.dumps(compat_output(profile), sort_keys=True, indent=2), args.output)
        return 0
    if args.strict:
        profile.check_modeled()
    _emit(render(profile, args.format or "json", args.top, getattr(args, "depth", None)), args.output)
    return check_budget_flags(profile, args)


# ---- fodlam diagnose ---------------------------------------------------------------------

def cmd_diagnose(args) -> int:
    from ..report.table import render_table
    from ..units import format_count, format_si

    from ..api import diagnose

    guard(args)
    data = diagnose(args.accelerator, args.compat)
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
    from ..accelerator import bundled, load_accelerator

    for name in bundled():
        acc = load_accelerator(name)
        print(f"{acc.name:24s} {acc.process_nm:g} nm  {acc.cost_model:14s} {acc.description}")
    return 0


def cmd_onnx(args) -> int:
    from ..api import profile_ref

    guard(args, *model_inputs(args.model))
    profile = profile_ref(_onnx_ref(args), accelerator=_accelerator_arg(args), strict=args.strict,
                          cost_model=getattr(args, "cost_model", None),
                          weight_density=_density_arg(getattr(args, "weight_density", None)),
                          activation_density=getattr(args, "activation_density", None))
    if args.annotate:
        if hasattr(profile, "profiles"):
            raise InputError("--annotate writes one accelerator's figures into the model: give "
                             "one --accelerator with it")
        from fodlam.importers.onnx import write_annotated
        write_annotated(args.model, profile, args.annotate)
    _emit(render(profile, args.format or _default_format(), args.top, getattr(args, "depth", None)), args.output)
    write_html(profile, getattr(args, "html", None), args.top)
    return check_budget_flags(profile, args)


# ---- fodlam torch ------------------------------------------------------------------------

def cmd_torch(args) -> int:
    from ..api import profile_ref
    from ..sources import ModelRef, parse_shape

    shapes = tuple(parse_shape(s, "--input-shape") for s in args.input_shape)
    if args.batch is not None:
        from ..sources import parse_positive_int
        parse_positive_int(args.batch, f"--batch {args.batch}")
    ref = ModelRef("torch", args.factory, args.factory, input_shapes=shapes)
    guard(args, *model_inputs(args.factory))
    profile = profile_ref(ref, accelerator=_accelerator_arg(args), strict=args.strict,
                          dtype=args.dtype, cost_model=getattr(args, "cost_model", None),
                          batch=args.batch)
    _emit(render(profile, args.format or _default_format(), args.top, getattr(args, "depth", None)), args.output)
    write_html(profile, getattr(args, "html", None), args.top)
    return check_budget_flags(profile, args)


# ---- fodlam llm --------------------------------------------------------------------------

def cmd_llm(args) -> int:
    from ..api import generate_profile
    from ..sources import parse_positive_int

    target = args.model
    guard(args, *model_inputs(target))
    if target.lower().endswith(".onnx") and ":" not in target:
        from ..sources import regular_file

        regular_file(target, "ONNX model")
        model = target
    else:
        from ..importers.torch import build_factory

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
    _emit(gen.to_json(layers=args.layers) if fmt == "json" else str(gen), args.output)
    return 0


# ---- fodlam check ------------------------------------------------------------------------

def cmd_check(args) -> int:
    from .. import checks

    path = checks.find_config(args.config)
    print(f"fodlam check: budgets from {path}", file=sys.stderr)
    specs, _ = checks.load_config(path)
    inputs = [path, args.baseline] + [f for spec in specs for f in spec.ref.files()]
    inputs += [spec.accelerator for spec in specs
               if isinstance(spec.accelerator, str) and spec.accelerator.endswith(".toml")]
    guard(args, *inputs)
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
        from .._io import atomic_write
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
    from ..sweeps import is_sweep_result
    guard(args, args.model, *model_inputs(args.model))
    if is_sweep_result(args.model):
        return _sweep_report(args)
    from ..api import profile_ref
    from ..sources import ModelRef

    ref = ModelRef.parse(args.model, input_shapes=args.input_shape, dims=_dims_arg(args.dim))
    profile = profile_ref(ref, accelerator=args.accelerator)
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("reports need matplotlib: pip install 'fodlam[report]'")
    from .._io import atomic_write
    if args.html:
        from ..report import html
        atomic_write(args.html, html.render(profile, args.top))
    if args.png:
        from ..report import plots
        atomic_write(args.png, plots.png_bytes(plots.figure_summary(profile, args.top)))
    print(f"fodlam: report of {profile.model.get('name')}: "
          + ", ".join(p for p in (args.html, args.png) if p), file=sys.stderr)
    return 0


def cmd_calibrate(args) -> int:
    from fodlam.calibration import fit as F
    from ..report.table import render_table
    from ..units import format_si

    guard(args, args.data, base_path(args.accelerator))
    cal = F.calibrate(args.accelerator, args.data)
    ev, rows, data_label, base = cal.evaluation, cal.rows, cal.data, cal.base
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
        text = cal.profile_toml(name=args.name, description=args.description, out=args.out)
        from .._io import atomic_write
        atomic_write(args.out, text)
        print(f"fodlam: wrote accelerator profile {args.out} (use --accelerator {args.out})",
              file=sys.stderr)
    return 0
