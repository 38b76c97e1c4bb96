"""Writing outputs safely: atomically, one writer at a time, never over an input.

Every file FODLAM writes (profiles, tables, reports, sweep results, calibrated profiles,
annotated models) goes through ``atomic_write`` or ``atomic_path``: the bytes go to a
temporary file in the target's folder, which is renamed over the target only once it is
complete, so an interrupted or failed run leaves the previous output intact (or none),
never a half-written one. ``-`` and ``/dev/stdout`` mean standard output, and a character
device or FIFO (``/dev/null``, a named pipe) is written directly, as every Unix tool does. A lock file beside the target (``.NAME.lock``, holding the
writer's pid) makes a second concurrent writer of the same output fail with a one-line
error instead of interleaving bytes; a lock left by a process that no longer runs is
taken over.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from pathlib import Path

from .errors import InputError


def special_target(target) -> str | None:
    """``"stdout"`` for ``-`` and ``/dev/stdout``, ``"stderr"`` for ``/dev/stderr``,
    ``"device"`` for an existing character device or FIFO (``/dev/null``, a named pipe):
    outputs written straight through, with no temporary file, rename or lock; else None."""
    name = str(target)
    if name in ("-", "/dev/stdout"):
        return "stdout"
    if name == "/dev/stderr":
        return "stderr"
    try:
        mode = os.stat(name).st_mode
    except (OSError, ValueError):
        return None
    return "device" if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) else None


def _to_stream(which: str, data) -> None:
    stream = sys.stdout if which == "stdout" else sys.stderr
    if isinstance(data, bytes):
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(data)
            buffer.flush()
            return
        data = data.decode("utf-8", "replace")
    stream.write(data)
    stream.flush()


def same_file(a, b) -> bool:
    """Whether two paths name the same file (resolving links; False if either is absent)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def refuse_overwriting_inputs(output, *inputs, flag: str = "the output") -> None:
    """A one-line error if ``output`` is one of the ``inputs`` (it would destroy it)."""
    if output in (None, "-"):
        return
    for item in inputs:
        if item not in (None, "-") and same_file(output, item):
            raise InputError(f"{flag} {output} is also an input of this command; writing it would "
                             "destroy that input: choose another output path")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's live process
        return True
    return True


@contextlib.contextmanager
def output_lock(target):
    """Hold ``.NAME.lock`` beside ``target`` while writing it; a second writer gets an
    InputError naming the holder."""
    target = Path(target)
    lock = target.with_name(f".{target.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and _pid_alive(holder):
                raise InputError(f"{target} is being written by another fodlam process (pid "
                                 f"{holder}); wait for it to finish or choose another output") from None
            with contextlib.suppress(OSError):
                lock.unlink()          # stale: its writer is gone
            continue
        except OSError as e:
            raise InputError(f"cannot write {target}: {e.strerror or e}") from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:  # pragma: no cover - the lock reappeared twice in a row
        raise InputError(f"{target} is being written by another fodlam process; try again")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


@contextlib.contextmanager
def atomic_path(target, *, lock: bool = True):
    """A temporary path in ``target``'s folder to write to; renamed over ``target`` when the
    block ends without an exception, removed otherwise."""
    special = special_target(target)
    if special == "device":                  # /dev/null, a FIFO: written as it is
        yield Path(target)
        return
    if special is not None:                  # standard output or error: a temporary file,
        with tempfile.TemporaryDirectory(prefix="fodlam-out-") as folder:   # then copied
            tmp = Path(folder) / "out"
            yield tmp
            if tmp.exists():
                _to_stream(special, tmp.read_bytes())
        return
    target = Path(target)
    if target.is_dir():
        raise InputError(f"cannot write {target}: it is a directory")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {target}: folder {folder} does not exist")
    with output_lock(target) if lock else contextlib.nullcontext():
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        except OSError as e:
            raise InputError(f"cannot write {target}: {e.strerror or e}") from None
        os.close(fd)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)       # as an ordinary open() would have created it
        try:
            yield Path(tmp)
            if target.exists() and not target.is_file():
                raise InputError(f"cannot write {target}: it is not a regular file")
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def atomic_write(target, data, *, encoding: str = "utf-8") -> None:
    """Write ``data`` (str or bytes) to ``target`` atomically, under its lock; ``-`` and
    ``/dev/stdout`` write to standard output, a device or FIFO is written directly."""
    special = special_target(target)
    if special in ("stdout", "stderr"):
        _to_stream(special, data)
        return
    if special == "device":
        try:
            with open(target, "wb" if isinstance(data, bytes) else "w",
                      **({} if isinstance(data, bytes) else {"encoding": encoding})) as f:
                f.write(data)
        except OSError as e:
            raise InputError(f"cannot write {target}: {e.strerror or e}") from None
        return
    with atomic_path(target) as tmp:
        try:
            if isinstance(data, bytes):
                tmp.write_bytes(data)
            else:
                tmp.write_text(data, encoding=encoding)
        except OSError as e:
            raise InputError(f"cannot write {target}: {e.strerror or e}") from None
