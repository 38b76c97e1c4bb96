"""Signal handling shared by the sweep's driver and its Ray backend: the driver's handlers
saved and put back around code that replaces them (Ray's start and shutdown), and a scope in
which a signal is noted, to be acted on at a safe point, rather than raised where it lands."""

from __future__ import annotations

import contextlib
import signal
import threading

STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def handlers() -> dict:
    """The handlers of SIGTERM, SIGINT and SIGHUP now (none off the main thread, where
    handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in STOPS}


def restore(saved: dict) -> None:
    """Put back what ``handlers()`` saved (set again even when Python's view is unchanged: a
    C library may have replaced the kernel's action behind it)."""
    for s, h in saved.items():
        if h is not None:
            signal.signal(s, h)


@contextlib.contextmanager
def deferred(caught: dict, interrupt):
    """A scope in which SIGTERM, SIGINT and SIGHUP are noted in ``caught["error"]`` (as
    ``interrupt(signum)``, for the caller to raise at a safe point) rather than raised where
    they land: an exception thrown into the middle of a Ray call (a put, a submit, a get) can
    leave its core worker half-way and crash the driver on shutdown."""
    saved = handlers()
    for s in saved:
        signal.signal(s, lambda signum, _frame: caught.setdefault("error", interrupt(signum)))
    try:
        yield
    finally:
        restore(saved)
