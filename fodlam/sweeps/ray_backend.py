"""The Ray backend of ``fodlam sweep`` (``--backend ray``), beside the local pool of
``runner``: imported only when it is used.

Tasks are chunks (``parts.ChunkTask``); each model's lowered nodes are put in the
object store once (``ray.put``) and every task of that model refers to them, so they travel
to each worker once, not with every point. Workers write their chunk's Parquet part to the
parts location themselves (a shared folder or a ``pyarrow.fs`` URI) and return only its
key and counts; the driver assembles the outputs from the parts in sweep order, so they are
the same as the process pool's.
"""

from __future__ import annotations

from ..errors import InputError


def _collect_one(ray, pending: dict, collect) -> None:
    ready, _ = ray.wait(list(pending), num_returns=1)
    for fut in ready:
        collect(pending.pop(fut), ray.get(fut))


def run_tasks(tasks, collect, run_chunk, *, address=None, jobs=None, extra=()) -> None:
    """Run ``run_chunk(nodes, task, *extra)`` for every ``(nodes, task)`` on Ray and hand each
    result to ``collect(task, result)``, at most a few tasks per CPU in flight."""
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs ray: pip install 'fodlam[cluster]'") from None
    started = False
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=jobs, **kwargs)
        started = True
    try:
        remote = ray.remote(run_chunk)
        refs, pending = {}, {}
        window = 4 * max(1, int(ray.cluster_resources().get("CPU", jobs or 1)))
        try:
            for nodes, task in tasks:
                if id(nodes) not in refs:
                    refs[id(nodes)] = ray.put(nodes)
                pending[remote.remote(refs[id(nodes)], task, *extra)] = task
                while len(pending) >= window:
                    _collect_one(ray, pending, collect)
            while pending:
                _collect_one(ray, pending, collect)
        except KeyboardInterrupt:
            for fut in pending:
                ray.cancel(fut, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
