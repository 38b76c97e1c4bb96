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
from . import _signals


def _collect_one(ray, pending: dict, collect, caught: dict) -> None:
    """Wait for one task, in short waits so that a signal caught meanwhile is acted on
    between Ray calls (``_signals.deferred``), never raised inside one."""
    while True:
        _raise_caught(caught)
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
        if ready:
            break
    for fut in ready:
        collect(pending.pop(fut), ray.get(fut))


def _raise_caught(caught: dict) -> None:
    if caught:
        raise caught["error"]


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """A Ray address is ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``, and answers within
    ``timeout_s``: else a one-line error now, not a hang with Ray's logs on the terminal."""
    import re
    import socket

    if address == "auto":
        return
    m = re.fullmatch(r"(?:ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):(\d{1,5})", address)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise InputError(f"--address {address!r} is not a Ray address: give HOST:PORT (e.g. "
                         "10.0.0.5:6379), ray://HOST:PORT or auto")
    host = m.group(1).strip("[]")
    try:
        with socket.create_connection((host, int(m.group(2))), timeout=timeout_s):
            pass
    except OSError as e:
        raise InputError(f"--address {address}: no Ray cluster answers there within "
                         f"{timeout_s:g} s ({e.strerror or e}); start one (ray start --head) or "
                         "leave --address out for a local one") from None


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs ray: pip install 'fodlam[cluster]'") from None
    return ray


def start(address=None, jobs=None, interrupt=KeyboardInterrupt) -> bool:
    """Connect to the Ray cluster at ``address`` (or start a local one of ``jobs`` CPUs)
    unless Ray is already up; True if this call started it. A SIGTERM while Ray starts
    (Ray's own handler turns it into ``SystemExit(signum)``) raises ``interrupt(signum)``."""
    import logging
    import signal

    ray = _ray()
    if ray.is_initialized():
        return False
    if address:
        check_address(address)
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    handlers = _signals.handlers()
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=jobs, **kwargs)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
        raise InputError(f"--address {address}: cannot start Ray there "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    except SystemExit as e:
        if e.code in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            stop()
            raise interrupt(e.code) from None
        raise
    finally:
        _signals.restore(handlers)       # Ray's own SIGTERM handler would end the driver unwritten
    return True


def stop() -> None:
    """``ray.shutdown()``, keeping the driver's signal handlers: Ray's shutdown leaves
    SIGTERM at its default, which would end the driver before it writes its outputs."""
    handlers = _signals.handlers()
    try:
        _ray().shutdown()
    finally:
        _signals.restore(handlers)


class Session:
    """Ray for the length of a sweep: started once (not per model and batch, which cost a
    few seconds each) and shut down as a process pool is (``shutdown``)."""

    def __init__(self, address=None, jobs=None, interrupt=KeyboardInterrupt):
        self.started = start(address, jobs, interrupt)

    def shutdown(self, wait: bool = True) -> None:
        if self.started:
            stop()
            self.started = False


def run_tasks(tasks, collect, run_chunk, *, address=None, jobs=None, extra=(),
              interrupt=KeyboardInterrupt) -> None:
    """Run ``run_chunk(nodes, task, *extra)`` for every ``(nodes, task)`` on Ray and hand each
    result to ``collect(task, result)``, at most a few tasks per CPU in flight. A SIGTERM,
    SIGINT or SIGHUP meanwhile raises ``interrupt(signum)`` between Ray calls. Ray is started
    here (and shut down after) unless it is already up (``Session``)."""
    ray = _ray()
    started = start(address, jobs, interrupt)
    try:
        remote = ray.remote(run_chunk)
        refs, pending = {}, {}
        window = 4 * max(1, int(ray.cluster_resources().get("CPU", jobs or 1)))
        caught: dict = {}
        try:
            with _signals.deferred(caught, interrupt):
                for nodes, task in tasks:
                    _raise_caught(caught)
                    if id(nodes) not in refs:
                        refs[id(nodes)] = ray.put(nodes)
                    pending[remote.remote(refs[id(nodes)], task, *extra)] = task
                    while len(pending) >= window:
                        _collect_one(ray, pending, collect, caught)
                while pending:
                    _collect_one(ray, pending, collect, caught)
        except KeyboardInterrupt:
            for fut in pending:
                ray.cancel(fut, force=True)
            raise
    finally:
        if started:
            stop()
