"""One run at a time in a run folder: a lock on ``FOLDER/.scalevae.lock`` held while a run lasts.

The lock is ``fcntl.flock`` on that file, kept open for the run's lifetime: the kernel releases
it when the process ends, however it ends (``kill -9`` included), so the lock of a dead run
recovers by itself. The file also holds a JSON record of its holder (pid, host, start time,
command), which a refused run names. Where the file system has no ``flock`` (some Lustre or NFS
mounts), the record itself is the lock, kept fresh by a heartbeat: it is taken over when its
process is gone (same host) or its heartbeat is older than :data:`STALE_SECONDS`.

The lock is between processes: within one process (a notebook that reruns a failed run while
the old traceback still holds the first run's folder) the lock already held is shared.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import shlex
import socket
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path

from ._atomic import write_error
from .errors import ScaleVAEError

try:
    import fcntl
except ImportError:  # Windows: the record is the lock
    fcntl = None

LOCK_NAME = ".scalevae.lock"
HEARTBEAT_SECONDS = 30  # how often the holder refreshes the record (file systems without flock)
STALE_SECONDS = 300  # a record not refreshed for this long belongs to a run that is gone
# flock refused as not supported by the file system (not "held by another process")
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}

_HELD: "weakref.WeakValueDictionary[str, FolderLock]" = weakref.WeakValueDictionary()
_HELD_GUARD = threading.Lock()


def lock_folder(folder) -> "FolderLock":
    """Take the run lock of ``folder`` (which must exist) for as long as the returned object lives.

    Raises
    ------
    ScaleVAEError
        When another process holds it: the message names that run (pid, host, start, command).

    Warns
    -----
    UserWarning
        When the lock of a run that ended without releasing it is taken over.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> lock = lock_folder(folder)
    >>> holder(folder)["pid"] == os.getpid()
    True
    >>> lock.release()
    >>> os.listdir(folder)
    []
    """
    path = Path(folder) / LOCK_NAME
    key = os.path.realpath(path)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held.active:
            return held
        lock = FolderLock(path)
        _HELD[key] = lock
    return lock


def holder(folder) -> dict | None:
    """The record of the run holding (or last holding) ``folder``'s lock; None if none."""
    return _read_record(Path(folder) / LOCK_NAME)


class FolderLock:
    """The lock of one run folder, held from creation until :meth:`release` or garbage collection
    (and always until the process ends)."""

    def __init__(self, path):
        self.path = Path(path)
        # shared with the finalizer, which must not hold a reference to self
        self._state = {"fd": None, "ino": None, "record": None, "stop": None}
        previous = self._acquire()
        self._finalizer = weakref.finalize(self, _release, self.path, self._state)
        if previous and previous.get("pid") != os.getpid():
            warnings.warn(f"the run folder {self.path.parent} was locked by a run that ended "
                          f"without releasing it ({describe(previous)}); taking it over",
                          UserWarning, stacklevel=4)

    @property
    def active(self) -> bool:
        return self._state["ino"] is not None

    def release(self) -> None:
        """Release the lock now (idempotent) and remove the lock file."""
        self._finalizer()

    # ------------------------------------------------------------------ taking the lock

    def _acquire(self):
        """Take the lock; the record of a dead holder found in the file (or None)."""
        if fcntl is not None:
            try:
                return self._acquire_flock()
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:
                    raise write_error(self.path, exc) from exc
        return self._acquire_record()

    def _acquire_flock(self):
        path = self.path
        for _ in range(20):  # the file can be replaced between open and lock: then again
            flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
            try:
                fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
            except FileExistsError:
                try:
                    fd, created = os.open(path, flags), False
                except FileNotFoundError:  # released (and removed) meanwhile
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise busy(path) from None
                if created:  # no flock here: the record will be the lock, created anew
                    os.unlink(path)
                raise
            # the holder before us unlinks the file while it still holds the lock: a lock
            # taken on a file that is no longer at `path` guards nothing
            if not _same_file(fd, path):
                os.close(fd)
                continue
            previous = _parse(os.pread(fd, 1 << 16, 0))
            try:  # the record only serves the message: the lock holds without it
                _write_record(fd)
            except OSError:
                pass
            self._state.update(fd=fd, ino=os.fstat(fd).st_ino)
            return previous
        raise ScaleVAEError(f"could not take the lock {path}: it keeps being replaced; check "
                            "that no other program deletes files in the --out folder")

    def _acquire_record(self):
        """Without flock: create the record exclusively; take over a dead or stale one."""
        path = self.path
        previous = None
        for _ in range(20):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                old = _read_record(path)
                if _alive(old, path):
                    raise busy(path) from None
                if _take_over(path, old):
                    previous = old or {}
                continue
            except OSError as exc:
                raise write_error(path, exc) from exc
            try:
                self._state.update(record=_write_record(fd), ino=os.fstat(fd).st_ino)
            except OSError as exc:
                os.close(fd)
                os.unlink(path)
                raise write_error(path, exc) from exc
            os.close(fd)
            stop = threading.Event()
            self._state["stop"] = stop
            threading.Thread(target=_heartbeat, args=(path, self._state["record"], stop),
                             name="scalevae-lock-heartbeat", daemon=True).start()
            return previous
        raise busy(path)


def busy(path) -> ScaleVAEError:
    """The refusal naming the run that holds the lock ``path``."""
    record = None
    for _ in range(20):  # the holder writes its record just after taking the lock
        record = _read_record(path)
        if record:
            break
        time.sleep(0.05)
    who = describe(record) if record else "its process did not record itself"
    return ScaleVAEError(f"--out {Path(path).parent} is in use by another scalevae run ({who}); "
                         "wait for it to finish or stop it, or choose another --out folder")


def describe(record: dict) -> str:
    """``pid 12 on host n1, started 2026-01-01 10:00:00 UTC, command: scalevae run ...``."""
    parts = [f"pid {record.get('pid', '?')} on host {record.get('host', '?')}"]
    if record.get("started"):
        parts.append(f"started {record['started']}")
    if record.get("command"):
        parts.append(f"command: {record['command']}")
    return ", ".join(parts)


def _release(path, state):
    stop, fd, ino, record = state["stop"], state["fd"], state["ino"], state["record"]
    if stop is not None:
        stop.set()
    try:
        if fd is not None:  # unlinked while still held, so that nobody locks a file about to go
            if os.stat(path).st_ino == ino:
                os.unlink(path)
        elif record is not None and _owns(path, record):  # (an inode number can be reused)
            os.unlink(path)
    except OSError:
        pass
    if fd is not None:
        os.close(fd)  # releases the flock
    state.update(fd=None, ino=None, record=None, stop=None)


def _owns(path, record: bytes) -> bool:
    try:
        return Path(path).read_bytes() == record
    except OSError:
        return False


def _record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M:%S UTC"),
            "command": _command(), "token": os.urandom(8).hex()}  # token: this holder alone


def _command() -> str:
    argv = list(sys.argv) or ["python"]
    first = Path(argv[0])
    if first.name in ("__main__.py", "cli.py") and first.parent.name == "scalevae":
        argv[0] = "scalevae"  # python -m scalevae, torchrun -m scalevae
    text = shlex.join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


def _write_record(fd) -> bytes:
    data = json.dumps(_record()).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return data


def _parse(raw: bytes):
    try:
        record = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _read_record(path):
    try:
        return _parse(Path(path).read_bytes())
    except OSError:
        return None


def _same_file(fd, path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _alive(record, path) -> bool:
    """Whether the record-lock ``path`` (file systems without flock) belongs to a live run."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_SECONDS:
        return False  # no heartbeat for that long: the holder is gone or hung
    if not record:
        return True  # being written this instant
    if record.get("host") == socket.gethostname():
        try:
            os.kill(int(record["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, KeyError, ValueError, TypeError):
            return True
    return True


def _take_over(path, old) -> bool:
    """Move a dead holder's record aside; False if another run was quicker."""
    aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if _read_record(aside) != old:  # a live run's record replaced it meanwhile: put it back
        try:
            os.link(aside, path)
        except OSError:
            pass
        os.unlink(aside)
        return False
    os.unlink(aside)
    return True


def _heartbeat(path, record, stop):
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            if _owns(path, record):
                os.utime(path)
        except OSError:
            pass
