"""Design-space sweeps: models x accelerator variants x process nodes x batches.

    fodlam sweep SWEEP.toml [--jobs N] [--backend ray --address ADDR] [--pareto] [--top K]

A sweep file names the models (ONNX paths or globs, ``module:factory`` torch models with
input shapes), the accelerators (bundled names or TOML paths) with overrides of their
numeric fields as grids or lists, process nodes and batches::

    [sweep]
    batches = [1, 8]
    nodes = [28, 7]                 # optional; each profile's own node when absent
    scaling = "dennard"

    [[models]]
    onnx = "zoo/*.onnx"
    dims = { batch = 1 }

    [[models]]
    torch = "examples.zoo:resnet50"
    input_shape = [1, 3, 224, 224]

    [[accelerators]]
    profile = "tpu-v1"
    grid = { "architecture.array_k" = [64, 128, 256], "architecture.clock_mhz" = [700, 1000] }

    [[accelerators]]
    profile = "nvdla-nv-full"
    points = [{ "architecture.onchip_bytes" = 1048576 }, { "architecture.dram_bytes_per_s" = 64e9 }]

Each model is imported once per batch; its lowered nodes are costed on every accelerator
point. A point's row is cached under a hash of (model file bytes or factory source, shapes,
batch, the profile after overrides, node and scaling, FODLAM version), so an interrupted or
extended sweep redoes only what is missing. Rows come out in the order of the sweep file
whatever the number of workers.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ._version import __version__
from .accelerator import Accelerator, load_accelerator, read_toml
from .errors import ConfigError, FodlamError, InputError
from .layers import KINDS
from .report.sweep import front, group_label
from .sources import ModelRef

#: the profile tables each cost model reads: only their numeric fields may be swept
SWEEPABLE = {"fodlam-roofline": ("architecture", "power", "energy"),
             "fodlam-shape": ("architecture", "shape_model.conv", "shape_model.fc"),
             "fodlam-2017": ()}

BASE_COLUMNS = ["point", "model", "batch", "accelerator", "overrides", "process_nm", "scaling",
                "status", "error", "macs", "energy_j", "latency_s", "edp_js", "unmodeled_nodes"]
KIND_COLUMNS = [f"{metric}_{kind}" for kind in KINDS for metric in ("energy_j", "latency_s")]


@dataclass(frozen=True)
class AccelSpec:
    profile: str                       # as written in the sweep file
    overrides: tuple = ()              # ((key, value), ...)
    process_nm: float | None = None    # rescale the profile to this node (nm)
    scaling: str | None = None

    @property
    def overrides_text(self) -> str:
        return json.dumps(dict(self.overrides), sort_keys=True) if self.overrides else ""


@dataclass(frozen=True)
class Point:
    index: int
    model: ModelRef
    batch: int | None
    accel: AccelSpec


@dataclass
class Sweep:
    models: list[ModelRef]
    accels: list[AccelSpec]
    batches: list
    path: Path | None = None
    override_keys: list[str] = field(default_factory=list)

    @property
    def points(self) -> list[Point]:
        out = []
        for model, batch, accel in itertools.product(self.models, self.batches, self.accels):
            out.append(Point(len(out), model, batch, accel))
        return out


# ---- reading a sweep file ---------------------------------------------------------------

def _number(value, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return value


def _models(entries, base: Path) -> list[ModelRef]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError("the sweep names no models: add [[models]] tables with onnx = ... or torch = ...")
    out = []
    for i, m in enumerate(entries, 1):
        out += ModelRef.from_table(m, f"[[models]] #{i}", base, globs=True, short_names=True)
    return out


def _profile_spec(name: str, base: Path) -> str:
    if name.endswith(".toml") and not os.path.isabs(name) and (base / name).is_file():
        return str(base / name)
    return name


def sweepable_fields(acc: Accelerator) -> dict[str, float]:
    """``table.field`` -> value for every numeric field of the typed sections its cost model
    reads (``fodlam.accelerator``), where the profile sets it."""
    from dataclasses import fields

    out = {}
    for table in SWEEPABLE.get(acc.cost_model, ()):
        section = acc
        for part in table.split("."):
            section = getattr(section, part, None) if section is not None else None
        if section is None:
            continue
        for f in fields(section):
            value = getattr(section, f.name)
            if f.metadata.get("kind") in ("int", "float") and value is not None:
                out[f"{table}.{f.name}"] = value
    return out


def apply_overrides(acc: Accelerator, overrides) -> Accelerator:
    """A copy of the profile with ``table.field = value`` overrides; an unknown, non-numeric
    or meaningless key (one its cost model never reads) is a one-line ConfigError."""
    if not overrides:
        return acc
    allowed = sweepable_fields(acc)
    params = dict(acc.params)          # copy-on-write along each overridden path
    for key, value in overrides:
        if key not in allowed:
            hint = ", ".join(sorted(allowed)) or "none: this cost model has no sweepable fields"
            raise ConfigError(f"profile {acc.name} ({acc.cost_model}) has no numeric field '{key}' "
                              f"that its cost model reads; sweepable: {hint}")
        value = _number(value, f"override {key}")
        if value < 0:
            raise ConfigError(f"override {key} = {value}: must not be negative")
        table, _, name = key.rpartition(".")
        d = params
        for part in table.split("."):
            d[part] = dict(d.get(part) or {})
            d = d[part]
        old = d.get(name, allowed[key])
        d[name] = int(value) if isinstance(old, int) and float(value).is_integer() else value
    label = ",".join(f"{k.rsplit('.', 1)[1]}={v:g}" for k, v in overrides)
    return replace(acc, params=params, name=f"{acc.name}[{label}]")


def _accels(entries, process_nms, scaling, base: Path) -> tuple[list[AccelSpec], list[str]]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError("the sweep names no accelerators: add [[accelerators]] tables with profile = ...")
    out, keys = [], []
    for i, a in enumerate(entries, 1):
        where = f"[[accelerators]] #{i}"
        if not isinstance(a, dict) or "profile" not in a:
            raise ConfigError(f"{where}: give profile = \"NAME\" (fodlam profiles lists them) or a .toml path")
        profile = _profile_spec(str(a["profile"]), base)
        acc = load_accelerator(profile)
        grid = a.get("grid", {})
        points = a.get("points", [])
        if not isinstance(grid, dict) or not isinstance(points, list):
            raise ConfigError(f"{where}: grid is a table of lists, points a list of tables")
        grid = dict(grid)
        # fields written directly in the entry (architecture.pe_rows = [8, 12, 16]) are grid
        # axes too; a single number is a fixed override
        for key, value in _flatten({k: v for k, v in a.items()
                                    if k not in ("profile", "grid", "points", "nodes", "process_nm",
                                                 "scaling")}).items():
            if key in grid:
                raise ConfigError(f"{where}: {key} is both fixed in the entry and swept in its grid; "
                                  "keep one of them")
            grid[key] = value if isinstance(value, list) else [value]
        entry_nms = a.get("nodes", a.get("process_nm"))
        if entry_nms is not None:
            entry_nms = entry_nms if isinstance(entry_nms, list) else [entry_nms]
            entry_nms = [float(_number(n, f"{where} nodes")) for n in entry_nms]
            if not entry_nms or any(not 1 <= n <= 1000 for n in entry_nms):
                raise ConfigError(f"{where}: process nodes must be between 1 and 1000 nm, got "
                                  f"{entry_nms!r}")
        entry_scaling = _scaling(a.get("scaling", scaling), where)
        variants = []
        if grid:
            for k, v in grid.items():
                if not isinstance(v, list) or not v:
                    raise ConfigError(f"{where}: grid {k} must be a non-empty list of numbers")
            names = list(grid)
            variants += [tuple(zip(names, combo)) for combo in itertools.product(*(grid[k] for k in names))]
        for p in points:
            if not isinstance(p, dict):
                raise ConfigError(f"{where}: points must be tables like {{ \"architecture.clock_mhz\" = 800 }}")
            variants.append(tuple(p.items()))
        if not variants:
            variants = [()]
        for variant in variants:
            apply_overrides(acc, variant)          # validates every key and value now
            for k, _ in variant:
                if k not in keys:
                    keys.append(k)
            for nm in (entry_nms or process_nms):
                out.append(AccelSpec(profile, tuple(variant), nm,
                                     entry_scaling if nm is not None else None))
    return out, keys


def _scaling(value, where: str) -> str:
    from .technology import RULES
    if not isinstance(value, str) or value not in RULES:
        raise ConfigError(f"{where}: scaling must be one of {', '.join(RULES)}, not {value!r}")
    return value


def _flatten(table: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_sweep(path) -> Sweep:
    path = Path(path)
    data = read_toml(path, "sweep file")
    head = data.get("sweep", {})
    if not isinstance(head, dict):
        raise ConfigError(f"{path}: [sweep] must be a table")
    batches = head.get("batches", [None])
    if not isinstance(batches, list) or not batches or not all(
            b is None or (isinstance(b, int) and not isinstance(b, bool) and b > 0) for b in batches):
        raise ConfigError(f"{path}: batches must be a list of positive integers")
    process_nms = head.get("nodes", head.get("process_nm", [None]))
    if not isinstance(process_nms, list):
        process_nms = [process_nms]
    if not process_nms:
        raise ConfigError(f"{path}: nodes must be a list of process nodes in nm")
    process_nms = [None if n is None else float(_number(n, "nodes")) for n in process_nms]
    if any(n is not None and not 1 <= n <= 1000 for n in process_nms):
        raise ConfigError(f"{path}: process nodes must be between 1 and 1000 nm")
    scaling = _scaling(head.get("scaling", "dennard"), str(path))
    models = _models(data.get("models"), path.parent)
    seen: dict = {}
    for m in models:
        if m.name in seen and seen[m.name] != m.source:
            raise ConfigError(f"{path}: two models are named '{m.name}' ({seen[m.name]} and {m.source}); "
                              "give each a distinct name = \"...\" so their results stay apart")
        seen[m.name] = m.source
    accels, keys = _accels(data.get("accelerators"), process_nms, scaling, path.parent)
    return Sweep(models, accels, batches, path, keys)


# ---- importing and costing --------------------------------------------------------------

def import_model(m: ModelRef, batch):
    """The lowered nodes of a model at a batch (None: the model's own)."""
    return m.load(batch=batch).nodes


@functools.lru_cache(maxsize=64)
def _base_profile(spec: str) -> Accelerator:
    return load_accelerator(spec)


def effective(accel: AccelSpec) -> Accelerator:
    acc = apply_overrides(_base_profile(accel.profile), accel.overrides)
    if accel.process_nm is not None:
        acc = acc.at_node(accel.process_nm, accel.scaling)
    return acc


def accel_key(acc: Accelerator) -> str:
    return json.dumps([acc.cost_model, acc.process_nm, acc.technology_scaling, acc.params],
                      sort_keys=True, default=str)


def point_key(model_id: str, batch, acc_key: str) -> str:
    return hashlib.sha256(json.dumps([model_id, batch, acc_key, __version__]).encode()).hexdigest()


def cost_nodes(nodes, acc: Accelerator) -> dict:
    """Totals of a lowered model on one accelerator: what a sweep row holds."""
    from . import models

    model = models.for_accelerator(acc)
    energy = latency = 0.0
    macs = unmodeled = 0
    kinds: dict = {}
    seen: dict = {}            # repeated blocks: the same layer is costed once per point
    for node in nodes:
        if not node.modeled:
            unmodeled += 1
            continue
        macs += node.macs
        for i, layer in enumerate(node.layers):
            key = (layer, node.reference if i == 0 else None)
            est = seen.get(key)
            if est is None:
                est = seen[key] = model.estimate(*key)
            energy += est.energy_j
            latency += est.latency_s
            k = kinds.setdefault(layer.kind, [0.0, 0.0])
            k[0] += est.energy_j
            k[1] += est.latency_s
    row = {"macs": macs, "energy_j": energy, "latency_s": latency, "edp_js": energy * latency,
           "unmodeled_nodes": unmodeled}
    for kind in KINDS:
        e, t = kinds.get(kind, (0.0, 0.0))
        row[f"energy_j_{kind}"] = e
        row[f"latency_s_{kind}"] = t
    return row


def run_chunk(nodes, accels: list[AccelSpec]) -> list[dict]:
    """Cost one model's graph nodes on a chunk of accelerator points (runs in a worker)."""
    out = []
    for accel in accels:
        try:
            out.append(cost_nodes(nodes, effective(accel)))
        except Exception as e:  # noqa: BLE001 - one point fails with its reason, never the sweep
            out.append({"error": _one_line(e)})
    return out


# ---- running --------------------------------------------------------------------------

@dataclass
class Result:
    rows: list[dict]
    failed_models: dict
    cached: int = 0
    computed: int = 0
    interrupted: bool = False
    import_s: float = 0.0        # seconds spent importing models

    @property
    def failed(self) -> bool:
        return bool(self.failed_models) or any(r["status"] != "ok" for r in self.rows) or self.interrupted


def _one_line(e: BaseException) -> str:
    if isinstance(e, FodlamError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _base_row(p: Point) -> dict:
    acc = p.accel
    return {"point": p.index, "model": p.model.name, "batch": "" if p.batch is None else p.batch,
            "accelerator": acc.profile.rsplit("/", 1)[-1].removesuffix(".toml"),
            "overrides": acc.overrides_text,
            "process_nm": "" if acc.process_nm is None else acc.process_nm,
            "scaling": acc.scaling or ""}


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


#: what a cached row may hold: the costed figures, never a point's identity
_CACHED = {"macs", "energy_j", "latency_s", "edp_js", "unmodeled_nodes"}


def _valid_cached(row) -> bool:
    if not isinstance(row, dict) or not _CACHED <= set(row):
        return False
    for k, v in row.items():
        if not (k in _CACHED or k.startswith(("energy_j_", "latency_s_"))):
            return False
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            return False
    return True


class _Cache:
    def __init__(self, path: Path | None):
        self.path = path
        self.rows: dict[str, dict] = {}
        self.skipped = 0
        if path and path.is_file():
            with open(path, "rb") as f:
                for raw in f:
                    try:
                        item = json.loads(raw.decode("utf-8"))
                        key, row = item["key"], item["row"]
                        if not isinstance(key, str) or not _valid_cached(row):
                            raise ValueError(key)
                        self.rows[key] = row
                    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                        self.skipped += 1  # a line cut short, or not ours: recomputed
        self._file = None

    def add(self, key: str, row: dict) -> None:
        self.rows[key] = row
        if self.path:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(json.dumps({"key": key, "row": row}) + "\n")

    def flush(self) -> None:
        if self._file:
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def _progress(total: int, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="pt", desc="sweep", file=sys.stderr, smoothing=0.1)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) during a sweep: finish what is being written, keep every finished
    point, stop the workers, exit 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_pool(pool) -> None:
    """Cancel what has not started and end the workers now (they hold no state to save)."""
    procs = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():  # pragma: no cover - a worker ignoring SIGTERM
            proc.kill()


def _worker_signals() -> None:
    """Workers take SIGTERM and SIGINT as any process does (the driver stops them)."""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def on_signals():
    """A context in which SIGTERM and SIGINT raise ``Interrupted`` in the driver (the main
    thread only; elsewhere it does nothing)."""
    import contextlib
    import signal
    import threading

    @contextlib.contextmanager
    def scope():
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def raise_interrupted(signum, _frame):
            raise Interrupted(signum)
        old = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    return scope()


def run(sweep: Sweep, *, jobs: int | None = None, backend: str = "local", address: str | None = None,
        cache_path=None, chunk_size: int | None = None, quiet: bool = False, log=None) -> Result:
    """Cost every point of a sweep; rows in sweep order. ``backend`` is "local" (a process
    pool of ``jobs`` workers; 1 runs in-process) or "ray" (``address`` of a cluster, or a
    local one)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    points = sweep.points
    cache = _Cache(Path(cache_path) if cache_path else None)
    if cache.skipped:
        log(f"fodlam sweep: {cache.skipped} line(s) of the cache {cache_path} are not cached "
            "points (cut short, or not written by fodlam); their points are recomputed")
    rows: dict[int, dict] = {}
    failed_models: dict = {}
    # group by (model, batch): a model is imported once per batch, if anything is missing
    groups: dict = {}
    for p in points:
        groups.setdefault((p.model, p.batch), []).append(p)
    acc_keys: dict = {}
    bar = _progress(len(points), quiet)
    todo = []                                     # (group key, nodes, [(point, key)])
    result = Result([], failed_models)
    try:
        for (model, batch), pts in groups.items():
            err = None
            t_import = time.perf_counter()
            try:
                mid = model.identity()
            except Exception as e:  # noqa: BLE001 - a model that cannot be read fails its rows only
                mid, err = None, _one_line(e)
            result.import_s += time.perf_counter() - t_import
            missing = []
            if mid is not None:
                for p in pts:
                    if p.accel not in acc_keys:
                        acc_keys[p.accel] = accel_key(effective(p.accel))
                    key = point_key(mid, batch, acc_keys[p.accel])
                    if key in cache.rows:
                        # a cached row holds costed figures only (_valid_cached): never identity
                        rows[p.index] = {**_base_row(p), "status": "ok", "error": "", **cache.rows[key]}
                        result.cached += 1
                    else:
                        missing.append((p, key))
                if bar:
                    bar.update(len(pts) - len(missing))
                if not missing:
                    continue
                t_import = time.perf_counter()
                try:
                    nodes = import_model(model, batch)
                except Exception as e:  # noqa: BLE001 - reported once, its points marked failed
                    err = _one_line(e)
                result.import_s += time.perf_counter() - t_import
            if err is not None:
                if failed_models.get(model.name) != err:     # once per model and error
                    failed_models[model.name] = err
                    log(f"fodlam sweep: {model.name} failed to import"
                        + (f" at batch {batch}" if batch else "") + f": {err}")
                marked = [p for p in pts if p.index not in rows]
                for p in marked:
                    rows[p.index] = {**_base_row(p), "status": "failed", "error": err}
                if bar:
                    bar.update(len(marked))
                continue
            todo.append((nodes, missing))
        total = sum(len(m) for _, m in todo)
        jobs = max(1, jobs or os.cpu_count() or 1)
        size = chunk_size or max(1, min(256, math.ceil(total / (jobs * 4)) if total else 1))
        tasks = [(nodes, chunk) for nodes, missing in todo for chunk in _chunks(missing, size)]
        jobs = min(jobs, max(1, len(tasks)))        # never more workers than tasks

        def collect(task, out_rows):
            for (p, key), out in zip(task[1], out_rows):
                if "error" in out:
                    rows[p.index] = {**_base_row(p), "status": "failed", "error": out["error"]}
                else:
                    cache.add(key, out)
                    rows[p.index] = {**_base_row(p), "status": "ok", "error": "", **out}
                    result.computed += 1
            cache.flush()
            if bar:
                bar.update(len(task[1]))

        if backend == "ray":
            from .sweep_ray import run_tasks
            run_tasks(tasks, collect, run_chunk, address=address, jobs=jobs)
        elif jobs == 1 or len(tasks) <= 1:
            for task in tasks:
                collect(task, run_chunk(task[0], [p.accel for p, _ in task[1]]))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
            pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_signals)
            try:
                futures = [pool.submit(run_chunk, nodes, [p.accel for p, _ in chunk]) for nodes, chunk in tasks]
                for task, fut in zip(tasks, futures):
                    collect(task, fut.result())
            except BaseException:
                # interrupted (SIGINT, SIGTERM) or failed: no worker outlives the driver
                _stop_pool(pool)
                raise
            pool.shutdown(wait=True)
    except KeyboardInterrupt as e:
        result.interrupted = getattr(e, "signum", None) or True
        log("fodlam sweep: interrupted; every finished point is kept (cache and output)")
    finally:
        cache.close()
        if bar:
            bar.close()
    result.rows = [rows[i] for i in sorted(rows)]
    return result


# ---- output ---------------------------------------------------------------------------

def columns(sweep: Sweep) -> list[str]:
    return BASE_COLUMNS + list(sweep.override_keys) + KIND_COLUMNS


def table_rows(sweep: Sweep, rows: list[dict]) -> list[dict]:
    cols = columns(sweep)
    out = []
    for r in rows:
        full = {c: r.get(c, "") for c in cols}
        for k, v in json.loads(r["overrides"]).items() if r.get("overrides") else ():
            full[k] = v
        out.append(full)
    return out


def write_csv(path, sweep: Sweep, rows: list[dict]) -> None:
    """The sweep's rows as CSV, written atomically (never a half-written file)."""
    import csv

    from ._io import atomic_path
    cols = columns(sweep)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, cols, lineterminator="\n")
        w.writeheader()
        for r in table_rows(sweep, rows):
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})


def write_parquet(path, sweep: Sweep, rows: list[dict]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("Parquet output needs pyarrow: pip install 'fodlam[sweep]' (or use --no-parquet)") from None
    cols = columns(sweep)
    data = table_rows(sweep, rows)
    numeric = set(["macs", "energy_j", "latency_s", "edp_js", "unmodeled_nodes", "point"] + KIND_COLUMNS
                  + list(sweep.override_keys))
    arrays = {}
    for c in cols:
        values = [r[c] for r in data]
        if c in numeric or c in ("batch", "process_nm"):
            arrays[c] = pa.array([None if v == "" else float(v) for v in values], pa.float64())
        else:
            arrays[c] = pa.array([str(v) for v in values], pa.string())
    table = pa.table(arrays)
    from ._io import atomic_path
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp), compression="zstd")


def read_results(path) -> list[dict]:
    """Rows of a sweep result (CSV or Parquet) as dicts with numbers where numbers belong."""
    return list(iter_results(path))


_TEXT_COLUMNS = ("model", "accelerator", "overrides", "status", "error", "scaling")


def _typed_row(r: dict) -> dict:
    for k, v in r.items():
        if k in _TEXT_COLUMNS:
            continue
        if isinstance(v, str):
            try:
                v = float(v) if v != "" else None
            except ValueError:
                continue
        if k in ("point", "batch") and isinstance(v, float) and v.is_integer():
            v = int(v)
        r[k] = v
    return r


def iter_results(path, batch_rows: int = 65536):
    """The rows of a sweep result, one at a time (CSV read line by line, Parquet batch by
    batch): a report of 10^7 rows never holds them all."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            for r in batch.to_pylist():
                yield _typed_row(r)
        return
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            yield _typed_row(r)


def is_sweep_result(path) -> bool:
    path = Path(path)
    if path.suffix == ".parquet":
        return True
    if path.suffix != ".csv" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        head = f.readline()
    return head.startswith("point,model,batch,accelerator")


def _by_group(rows: list[dict]) -> dict:
    by_model: dict = {}
    for r in rows:
        if r.get("status") == "ok":
            by_model.setdefault(group_label(r), []).append(r)
    return by_model


def pareto(rows: list[dict]) -> dict:
    """Per model (and batch): the points no other point beats on both energy and latency."""
    return {model: front(rs) for model, rs in _by_group(rows).items()}


def top(rows: list[dict], k: int) -> dict:
    """Per model (and batch): the ``k`` points of lowest energy x latency."""
    return {m: sorted(rs, key=lambda r: float(r["edp_js"]))[:k] for m, rs in _by_group(rows).items()}
