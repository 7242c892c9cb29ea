"""Crash-safe file writes: write beside the target under a temporary name, then rename into place.

A rename within one folder is atomic on POSIX and Windows, so a reader (or a resumed run) only
ever sees the old file or the complete new one, never a half-written one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import ScaleVAEError


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded.

    Raises
    ------
    ScaleVAEError
        When the folder is not writable or the disk is full; the old file is left untouched.
    """
    path = Path(path)
    tmp = None
    try:
        # inside the try: a full or read-only disk can already refuse the temporary file
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as fh:  # make the bytes durable before the rename publishes them
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ScaleVAEError(f"could not write {path}: the disk is full; free some space "
                                "and run again with --resume (finished windows are kept)") from exc
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise ScaleVAEError(f"could not write {path}: the folder is not writable; "
                                "choose another --out folder") from exc
        raise ScaleVAEError(f"could not write {path} ({exc.strerror or exc}); check the disk "
                            "and the --out folder, then run again with --resume") from exc
    except BaseException:
        _remove(tmp)
        raise
    return path


def check_writable(folder) -> None:
    """Fail early, before hours of training, when ``folder`` cannot be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test", delete=True)
        probe.close()
    except OSError as exc:
        raise ScaleVAEError(f"cannot write to the output folder {folder} ({exc.strerror}); "
                            "choose another --out folder") from exc


def remove_leftovers(folder, names) -> None:
    """Delete the temporaries (``.NAME.XXXX.tmp``) of writes of ``names`` (glob patterns) that
    a killed process never finished."""
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            _remove(tmp)


def _umask():
    mask = os.umask(0)  # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import, before any thread could create files meanwhile


def _remove(tmp):
    if tmp is None:
        return
    try:
        os.unlink(tmp)
    except OSError:
        pass
