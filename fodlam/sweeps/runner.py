"""Step 4 of a sweep: running it. ``run`` walks the models and batches, serves finished
chunks from the parts folder, imports each model once per batch and hands its missing
chunks to a backend: in process, a local process pool, or Ray (``ray_backend``). SIGTERM
and SIGINT keep every finished chunk; no worker outlives the driver.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, StopRequested
from . import _signals
from .parts import CHUNK, ChunkRef, Parts, _identity, cost_chunk, plan_chunks
from .plan import _one_line, import_model
from .spec import Sweep, column_types, columns

@dataclass
class Result:
    """A finished (or interrupted) sweep: counts, the models that failed to import, and its
    chunks, whose rows live in Parquet parts; ``rows`` reads them all (in sweep order),
    ``iter_rows()`` one at a time."""

    failed_models: dict
    sweep: "Sweep | None" = None
    parts: "Parts | None" = None
    chunks: list = field(default_factory=list)      # ChunkRef, in sweep order
    cached: int = 0              # points of chunks finished by an earlier run
    computed: int = 0            # points costed by this run
    failed_points: int = 0
    interrupted: object = False  # False, True or the signal's number
    import_s: float = 0.0        # seconds spent importing models
    _tmp: object = None          # a temporary parts folder kept alive with the result

    def iter_rows(self):
        for ref in self.chunks:
            yield from self.parts.read(ref)

    @property
    def rows(self) -> list[dict]:
        return list(self.iter_rows())

    @property
    def failed(self) -> bool:
        return bool(self.failed_models) or self.failed_points > 0 or bool(self.interrupted)

    def __repr__(self) -> str:
        done = sum(ref.rows for ref in self.chunks)
        return (f"<fodlam sweep result: {done} points ({self.computed} computed, {self.cached} "
                f"from the cache, {self.failed_points} failed)"
                + (f", {len(self.failed_models)} model(s) failed to import" if self.failed_models else "")
                + (", interrupted" if self.interrupted else "") + ">")

    def _summary(self, markdown: bool, top: int = 10) -> str:
        from ..report.views import html_summary, markdown_summary
        from ..units import format_si
        from .output import top_streaming

        best = top_streaming(self.iter_rows(), top)
        rows = [[group, r["accelerator"], r["overrides"] or "-", format_si(r["energy_j"], "J"),
                 format_si(r["latency_s"], "s")] for group, rs in best.items() for r in rs[:top]]
        totals = [("points", f"{sum(ref.rows for ref in self.chunks)}"),
                  ("computed", f"{self.computed}"), ("from the cache", f"{self.cached}"),
                  ("failed", f"{self.failed_points}")]
        make = markdown_summary if markdown else html_summary
        return make("FODLAM sweep result", totals,
                    ["model", "accelerator", "overrides", "energy", "latency"], rows,
                    f"least energy x latency, top {top} per model and batch")

    def _repr_html_(self) -> str:
        return self._summary(False)

    def _repr_markdown_(self) -> str:
        return self._summary(True)


def _progress(total: int, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="pt", desc="sweep", file=sys.stderr, smoothing=0.1)


class Interrupted(StopRequested):
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
    """Workers take SIGTERM, SIGINT and SIGHUP as any process does (the driver stops them),
    and die with their driver however it ends (``die_with_parent``)."""
    import signal
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    die_with_parent()


def die_with_parent(poll_s: float = 1.0) -> None:
    """End this worker when the process that started it ends, even by SIGKILL: the kernel's
    parent-death signal where there is one (Linux ``prctl(PR_SET_PDEATHSIG)``), and a thread
    that watches the parent's pid everywhere (a worker re-parented to init exits within
    ``poll_s``)."""
    import signal
    import threading

    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):                        # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:       # the driver died before the signal was armed
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, name="fodlam-parent-watch", daemon=True).start()


def on_signals():
    """A context in which SIGTERM, SIGINT and SIGHUP (a closed terminal) raise
    ``Interrupted`` in the driver (the main thread only; elsewhere it does nothing)."""
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
        old = {s: signal.signal(s, raise_interrupted)
               for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    return scope()


def run(sweep: Sweep, *, jobs: int | None = None, backend: str = "local", address: str | None = None,
        cache_path=None, chunk_size: int | None = None, quiet: bool = False, log=None,
        on_chunk=None) -> Result:
    """Cost every point of a sweep, chunk by chunk; each finished chunk is a Parquet part in
    ``cache_path`` (a folder or a ``pyarrow.fs`` URI; a temporary folder when None) and a
    line of its index, so a rerun costs only the missing chunks. ``backend`` is "local" (a
    process pool of ``jobs`` workers; 1 runs in-process) or "ray" (``address`` of a cluster,
    or a local one; workers write their parts themselves). The driver holds one chunk's
    description at a time per worker, never the points. ``on_chunk(ChunkRef)`` is called as
    each chunk finishes."""
    import tempfile

    log = log or (lambda msg: print(msg, file=sys.stderr))
    chunk = chunk_size or CHUNK
    tmp = None
    if cache_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="fodlam-sweep-")
        cache_path = tmp.name
    elif "://" not in str(cache_path) and Path(cache_path).is_file():
        raise InputError(f"the sweep cache {cache_path} is a file; since chunks became the unit of the "
                         "cache it is a folder of Parquet parts: give a folder path (or delete the file)")
    parts = Parts(cache_path, columns(sweep), column_types(sweep))
    parts.prepare()
    done = parts.load_index()
    result = Result({}, sweep, parts, _tmp=tmp)
    jobs = max(1, jobs or os.cpu_count() or 1)
    bar = _progress(len(sweep.points), quiet)
    pool = None
    try:
        for mi, model in enumerate(sweep.models):
            t_import = time.perf_counter()
            try:
                model_id, id_err = model.identity(), None
            except Exception as e:  # noqa: BLE001 - a model that cannot be read fails its rows only
                model_id, id_err = "unreadable", _one_line(e)
            result.import_s += time.perf_counter() - t_import
            for bi, batch in enumerate(sweep.batches):
                tasks, nodes, err = [], None, id_err
                for task in plan_chunks(sweep, mi, bi, model_id, chunk):
                    item = done.get(task.key) if err is None else None
                    why = parts.verified(task.key, item, task.stop - task.start) if item else None
                    if item and why:
                        log(f"fodlam sweep: warning: cached chunk {task.key} is not served: {why}; "
                            "recomputing it")
                    if item and not why:
                        result.chunks.append(ChunkRef(task.key, task.point0, item["rows"], item["ok"],
                                                      item["failed"], item["sha256"]))
                        result.cached += item["rows"]
                        result.failed_points += item["failed"]
                        if bar:
                            bar.update(item["rows"])
                    else:
                        tasks.append(task)
                if not tasks:
                    continue
                if err is None:
                    t_import = time.perf_counter()
                    try:
                        nodes = import_model(model, batch)
                    except Exception as e:  # noqa: BLE001 - reported once, its points marked failed
                        err = _one_line(e)
                    result.import_s += time.perf_counter() - t_import
                if err is None:
                    pool = _execute(tasks, nodes, parts, result, backend, address, jobs, pool, bar,
                                    on_chunk)
                    continue
                if result.failed_models.get(model.name) != err:     # once per model and error
                    result.failed_models[model.name] = err
                    log(f"fodlam sweep: {model.name} failed to import"
                        + (f" at batch {batch}" if batch else "") + f": {err}")
                for task in tasks:                      # failed rows, never recorded as done
                    n = task.stop - task.start
                    ref = ChunkRef("failed-" + task.key, task.point0, n, 0, n)
                    parts.write(ref.key, [{**_identity(task.model, task.batch, task.entry.spec(i)),
                                           "status": "failed", "error": err}
                                          for i in range(task.start, task.stop)])
                    result.chunks.append(ref)
                    result.failed_points += n
                    if bar:
                        bar.update(n)
    except KeyboardInterrupt as e:
        result.interrupted = getattr(e, "signum", None) or True
        log("fodlam sweep: interrupted; every finished chunk is kept (parts and output)")
    finally:
        if pool is not None:
            # a signal while the workers stop marks the sweep interrupted (its outputs are
            # still written) rather than escaping run() with nothing written
            caught: dict = {}
            with _signals.deferred(caught, Interrupted):
                pool.shutdown(wait=True)
            if caught and not result.interrupted:
                result.interrupted = caught["error"].signum
                log("fodlam sweep: interrupted while the workers stopped; every chunk is kept")
        if bar:
            bar.close()
    result.chunks.sort(key=lambda ref: ref.point0)
    return result


def _execute(tasks, nodes, parts, result, backend, address, jobs, pool, bar, on_chunk=None):
    """Run one group's chunks; finished chunks are recorded as they finish."""
    def collect(task, ref: ChunkRef):
        result.chunks.append(ref)
        result.computed += ref.rows
        result.failed_points += ref.failed
        if ref.failed == 0:           # a chunk with a failed point runs again next time
            parts.record([ref])
        if bar:
            bar.update(ref.rows)
        if on_chunk:
            on_chunk(ref)

    if backend == "ray":
        from .ray_backend import Session, run_tasks
        if pool is None:                  # one Ray session for the sweep, shut down by run()
            pool = Session(address, jobs, Interrupted)
        run_tasks([(nodes, t) for t in tasks], collect, cost_chunk, address=address, jobs=jobs,
                  extra=(parts,), interrupt=Interrupted)
        return pool
    if jobs == 1 or len(tasks) == 1 and pool is None:
        for task in tasks:
            collect(task, cost_chunk(nodes, task, parts))
        return pool
    import multiprocessing
    from concurrent import futures
    if pool is None:
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        pool = futures.ProcessPoolExecutor(min(jobs, max(1, len(tasks))), mp_context=ctx,
                                           initializer=_worker_signals)
    try:
        pending, queue = {}, iter(tasks)
        window = 2 * jobs
        for task in queue:                              # at most `window` chunks in flight
            pending[pool.submit(cost_chunk, nodes, task, parts)] = task
            if len(pending) >= window:
                finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
                for fut in finished:
                    collect(pending.pop(fut), fut.result())
        while pending:
            finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
            for fut in finished:
                collect(pending.pop(fut), fut.result())
    except BaseException:
        # interrupted (SIGINT, SIGTERM) or failed: no worker outlives the driver
        _stop_pool(pool)
        raise
    return pool


@dataclass(frozen=True)
class Estimate:
    """A sweep's plan without running it (``fodlam sweep --dry-run``): its points and chunks,
    the cost of a point measured on the first chunk, and the run time and output sizes that
    follow."""

    points: int
    chunks: int
    chunk: int                   # points per chunk
    jobs: int
    probed: int                  # points costed to measure
    per_point_s: float
    import_s: float              # importing the first model at the first batch
    run_s: float                 # estimated wall time on ``jobs`` workers
    parquet_bytes: float
    csv_bytes: float


def estimate(sweep: Sweep, *, jobs: int | None = None, chunk_size: int | None = None,
             probe_points: int = 200) -> Estimate:
    """Estimate a sweep: import its first model at its first batch, cost up to
    ``probe_points`` points of the first chunk into a temporary parts folder, and scale."""
    import tempfile

    from .parts import FIRST_CHUNK, ChunkTask

    points = len(sweep.points)
    chunk = chunk_size or CHUNK
    first_chunk = min(FIRST_CHUNK, chunk)
    chunks = sum(1 + -(-max(0, len(e) - first_chunk) // chunk) for e in sweep.accels.entries) \
        * len(sweep.models) * len(sweep.batches)
    jobs = max(1, jobs or os.cpu_count() or 1)
    first = next(plan_chunks(sweep, 0, 0, "dry-run", chunk))
    n = min(probe_points, first.stop - first.start)
    t = time.perf_counter()
    nodes = import_model(sweep.models[0], sweep.batches[0])
    import_s = time.perf_counter() - t
    probe = ChunkTask(first.key, first.point0, first.model, first.batch, first.entry, first.start,
                      first.start + n)
    with tempfile.TemporaryDirectory() as tmp:
        parts = Parts(tmp, columns(sweep), column_types(sweep))
        parts.prepare()
        t = time.perf_counter()
        cost_chunk(nodes, probe, parts)
        per_point = (time.perf_counter() - t) / n
        part_bytes = sum(p.stat().st_size for p in Path(tmp).glob("*.parquet")) / n
    csv_bytes = 60 + 18 * len(columns(sweep))
    return Estimate(points, chunks, chunk, jobs, n, per_point, import_s, per_point * points / jobs,
                    part_bytes * points, csv_bytes * points)
