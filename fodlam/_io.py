"""Writing outputs safely: atomically, one writer at a time, never over an input.

Every file FODLAM writes (profiles, tables, reports, sweep results, calibrated profiles,
annotated models) goes through ``atomic_write`` or ``atomic_path``: the bytes go to a
temporary file in the target's folder, which is renamed over the target only once it is
complete, so an interrupted or failed run leaves the previous output intact (or none),
never a half-written one. ``-`` and ``/dev/stdout`` mean standard output, and a character
device or FIFO (``/dev/null``, a named pipe) is written directly, as every Unix tool does. A lock file beside the target (``.NAME.lock``, holding the
writer's pid) makes a second concurrent writer of the same output fail with a one-line
error naming the lock file instead of interleaving bytes; a lock left by a process that
no longer runs, or whose pid another process now has, is taken over.
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
    guard_outputs([(flag, output)], inputs)


def guard_outputs(outputs, inputs) -> None:
    """The one output guard of every command: each ``(flag, path)`` of ``outputs`` that
    resolves (through links and relative paths) to any of ``inputs`` — a model file or
    module source, its external data, a budget file, a baseline, a configuration, a
    calibration CSV, a profile — is a one-line error, before anything is written. Standard
    output and devices are never inputs."""
    ins = [i for i in inputs if i not in (None, "-", "")]
    for flag, out in outputs:
        if out in (None, "-", "") or special_target(out) is not None:
            continue
        for item in ins:
            if same_file(out, item):
                raise InputError(f"{flag} {out} is also an input of this command ({item}); "
                                 "writing it would destroy that input: choose another output path")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's live process
        return True
    return True


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux ``/proc``), to tell a pid reused
    by another process from the one that took a lock; None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def _lock_record() -> str:
    import json
    import socket

    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": _proc_start(os.getpid()),
                       "command": " ".join(sys.argv)[:300]})


def _holder(lock: Path):
    """(pid, holds it) of a lock file: held while its pid runs the same process that wrote
    it (same start time where the kernel says, a FODLAM command line otherwise)."""
    import json
    import socket

    try:
        text = lock.read_text().strip()
    except OSError:
        return 0, False
    try:
        rec = json.loads(text)
        if not isinstance(rec, dict):
            raise ValueError
    except ValueError:
        rec = {"pid": int(text) if text.isdigit() else 0}
    pid = rec.get("pid") if isinstance(rec.get("pid"), int) else 0
    if not pid or pid == os.getpid() or not _pid_alive(pid):
        return pid, False
    if rec.get("host") not in (None, socket.gethostname()):
        return pid, True               # another machine's writer: its pid means nothing here
    started = _proc_start(pid)
    if rec.get("started") is not None and started is not None:
        return pid, started == rec["started"]
    cmd = _cmdline(pid)
    return pid, cmd is None or "fodlam" in cmd


@contextlib.contextmanager
def output_lock(target):
    """Hold ``.NAME.lock`` beside ``target`` while writing it (the lock says who holds it:
    pid, host, start time and command); a second writer gets an InputError naming the
    holder and the lock file. A lock whose process is gone, or whose pid now belongs to
    another process, is taken over."""
    target = Path(target)
    lock = target.with_name(f".{target.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder, held = _holder(lock)
            if held:
                raise InputError(f"{target} is being written by another fodlam process (pid "
                                 f"{holder}, lock {lock}); wait for it to finish or choose "
                                 "another output") from None
            with contextlib.suppress(OSError):
                lock.unlink()          # stale: its writer is gone, or the pid is another's
            continue
        except OSError as e:
            raise InputError(f"cannot write {target}: {e.strerror or e}") from None
        with os.fdopen(fd, "w") as f:
            f.write(_lock_record())
        break
    else:  # pragma: no cover - the lock reappeared twice in a row
        raise InputError(f"{target} is being written by another fodlam process (lock {lock}); "
                         "try again")
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
