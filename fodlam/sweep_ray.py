"""The Ray backend of ``fodlam sweep`` (``--backend ray``): imported only when it is used.

Tasks are chunks of accelerator points of one model; each model's lowered nodes are put in
the object store once (``ray.put``) and every task of that model refers to them, so they
travel to each worker once, not with every point. Results are collected in task order, so
the output is the same as the process pool's.
"""

from __future__ import annotations

from .errors import InputError


def run_tasks(tasks, collect, run_chunk, *, address=None, jobs=None) -> None:
    """Run ``run_chunk(nodes, accelerator points)`` for every task on Ray and hand each
    result to ``collect(task, rows)`` in task order."""
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
        refs = {}
        futures = []
        for nodes, chunk in tasks:
            if id(nodes) not in refs:
                refs[id(nodes)] = ray.put(nodes)
            futures.append(remote.remote(refs[id(nodes)], [p.accel for p, _ in chunk]))
        try:
            for task, fut in zip(tasks, futures):
                collect(task, ray.get(fut))
        except KeyboardInterrupt:
            for fut in futures:
                ray.cancel(fut, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
