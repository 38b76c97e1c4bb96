"""``fodlam sweep``: parse, lock the outputs, run (``fodlam.sweeps``), write CSV and
Parquet, print fronts, the dry-run estimate and sweep reports."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError


# ---- fodlam sweep -------------------------------------------------------------------------

def cmd_sweep(args) -> int:

    from .. import sweeps as S
    from .._io import output_lock, refuse_overwriting_inputs

    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs {args.jobs}: give a positive number of worker processes")
    if args.top is not None and args.top < 0:
        raise InputError(f"--top {args.top}: give a positive number of points (or leave it out)")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise InputError(f"--chunk-size {args.chunk_size}: give a positive number of points")
    if args.backend == "ray" and args.address:      # fail in seconds, before any import
        from ..sweeps.ray_backend import check_address
        check_address(args.address)
    spec = S.load_sweep(args.sweep)
    prefix = Path(args.output) if args.output else spec.path.with_name(spec.path.stem + "-results")
    if prefix.suffix in (".csv", ".parquet"):
        prefix = prefix.with_suffix("")
    inputs = [spec.path] + [f for m in spec.models for f in m.files()]
    inputs += [e.profile for e in spec.accels.entries if e.profile.endswith(".toml")]
    for suffix in (".csv", ".parquet", ".parts"):
        refuse_overwriting_inputs(prefix.with_name(prefix.name + suffix), *inputs, flag="the sweep output")
    with output_lock(prefix):
        return _run_sweep(args, S, spec, prefix)


#: above this many points the CSV is written only when asked for (--csv): Parquet holds it
CSV_LIMIT = 1_000_000


def _run_sweep(args, S, spec, prefix) -> int:
    import time

    S.select_columns(spec, args.columns)
    points = len(spec.points)
    parquet = not args.no_parquet
    from ..sweeps.parts import has_pyarrow
    if parquet and not has_pyarrow():
        raise InputError("the Parquet output needs pyarrow: pip install 'fodlam[sweep]', or pass "
                         "--no-parquet to write only the CSV")
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
    from ..report import sweep as R
    from ..report.table import render_table
    from ..units import format_si

    if args.pareto:
        groups = R.Summary(result.iter_rows(), sample=0).fronts
        title = "energy-latency Pareto front"
    else:
        groups = S.top_streaming(result.iter_rows(), args.top)
        title = f"top {args.top} by energy x latency"
    for model, rs in groups.items():
        print(f"\n{model}: {title} ({len(rs)} point(s))")
        rows = [[str(r["point"]), r["accelerator"], r["overrides"] or "-", str(r["process_nm"] or "-"),
                 str(r["batch"] or "-"), format_si(r["energy_j"], "J"), format_si(r["latency_s"], "s"),
                 f"{r['edp_js']:.3g}"] for r in rs]
        print("\n".join(render_table(["point", "accelerator", "overrides", "node nm", "batch",
                                      "energy", "latency", "EDP (J s)"], rows)))


def _dry_run(args, S, spec, prefix, cache, want_csv, parquet) -> int:
    """The plan without running it (``fodlam.sweeps.estimate``), printed."""
    est = S.estimate(spec, jobs=args.jobs, chunk_size=args.chunk_size)
    print(f"fodlam sweep --dry-run: {est.points:,} points in {est.chunks:,} chunk(s) of up to "
          f"{est.chunk:,} points; {est.jobs} worker(s)", file=sys.stderr)
    print(f"  calibration: {est.probed} points of the first chunk at {est.per_point_s * 1e6:.0f} "
          f"us/point (model import {est.import_s:.2f} s, once per model and batch)", file=sys.stderr)
    print(f"  estimated run time: {est.run_s:.0f} s ({est.run_s / 3600:.2f} h) on {est.jobs} "
          "worker(s)", file=sys.stderr)
    sizes = []
    if parquet:
        sizes.append(f"Parquet ~{est.parquet_bytes / 1e6:,.0f} MB")
    if want_csv:
        sizes.append(f"CSV ~{est.csv_bytes / 1e6:,.0f} MB")
    print(f"  estimated output: {', '.join(sizes) or 'none'}; parts in {cache or 'a temporary folder'}",
          file=sys.stderr)
    return 0


def _sweep_report(args) -> int:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("reports need matplotlib: pip install 'fodlam[report]'")
    from ..report import sweep as R
    from ..sweeps import iter_results
    try:
        rows = R.Summary(iter_results(args.model))      # one streaming pass
    except (OSError, ValueError, UnicodeDecodeError, KeyError) as e:
        raise InputError(f"cannot read the sweep results {args.model}: {e}") from None
    from .._io import atomic_write
    if args.html:
        atomic_write(args.html, R.render(rows, source=args.model))
    if args.png:
        atomic_write(args.png, R.png(rows))
    print(f"fodlam: report of sweep {args.model}: " + ", ".join(p for p in (args.html, args.png) if p),
          file=sys.stderr)
    return 0
