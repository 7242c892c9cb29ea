"""Crash-safe file writes: write beside the target under a temporary name, then rename into place.

A rename within one folder is atomic on POSIX and Windows, so a reader (or a resumed run) only
ever sees the old file or the complete new one, never a half-written one.

Every write goes through Python's own file I/O, so that a full disk (``ENOSPC``), a quota
(``EDQUOT``) or a file-size limit (``EFBIG``: ``ulimit -f`` on a cluster node, or the file
system's largest file) is an ``OSError`` here, turned into one :class:`ScaleVAEError` line.
Libraries that write files themselves are kept away from the disk: HDF5 aborts the process when
a write fails past the file-size limit, so the netCDF result is serialised to memory first
(:func:`atomic_write_netcdf`), and checkpoints likewise (``torch.save`` to a buffer).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
import threading
from pathlib import Path

from .errors import ScaleVAEError


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded.

    Raises
    ------
    ScaleVAEError
        When the folder is not writable, the disk is full or a file-size limit is reached;
        the old file is left untouched.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> _ = atomic_write(target, lambda tmp: open(tmp, "w").write("kept"))
    >>> open(target).read()
    'kept'
    """
    path = Path(path)
    tmp = None
    try:
        with file_size_limit_as_error():
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
        raise write_error(path, exc) from exc
    except BaseException:
        _remove(tmp)
        raise
    return path


def atomic_write_bytes(path, data) -> Path:
    """Write ``data`` (bytes, bytearray or memoryview) to ``path`` atomically.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "data.bin")
    >>> _ = atomic_write_bytes(target, b"abc")
    >>> open(target, "rb").read()
    b'abc'
    """
    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write)


def atomic_write_netcdf(ds, path) -> Path:
    """Write the xarray Dataset ``ds`` to ``path`` as netCDF4 (h5netcdf), atomically.

    The file is built in memory and written with Python's I/O: HDF5 never writes to the disk
    itself, so a full disk or a file-size limit is one error line instead of a crash inside the
    HDF5 library. The memory needed is the file's size (results above
    :data:`scalevae.results.ZARR_BYTES` are Zarr stores, written chunk by chunk instead).

    Examples
    --------
    >>> import tempfile, os, xarray as xr
    >>> target = os.path.join(tempfile.mkdtemp(), "small.nc")
    >>> _ = atomic_write_netcdf(xr.Dataset({"a": ("x", [1.0, 2.0])}), target)
    >>> xr.load_dataset(target, engine="h5netcdf").a.values.tolist()
    [1.0, 2.0]
    """
    return atomic_write_bytes(path, ds.to_netcdf(engine="h5netcdf"))


def write_error(path, exc: OSError) -> ScaleVAEError:
    """The one-line error for an ``OSError`` met while writing ``path``: what and how to fix.

    Examples
    --------
    >>> import errno
    >>> str(write_error("run/result.nc", OSError(errno.EFBIG, "File too large")))
    'could not write run/result.nc: the file-size limit was hit (ulimit -f, ...'
    """
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return ScaleVAEError(f"could not write {path}: the disk is full; free some space "
                             "and run again with --resume (finished windows are kept)")
    if code == errno.EFBIG:
        return ScaleVAEError(f"could not write {path}: the file-size limit was hit (ulimit -f, "
                             "or the largest file the file system takes); raise the limit or "
                             "choose another --out folder, then run again with --resume "
                             "(finished windows are kept)")
    if code in (errno.EACCES, errno.EROFS, errno.EPERM):
        return ScaleVAEError(f"could not write {path}: the folder is not writable; "
                             "choose another --out folder")
    return ScaleVAEError(f"could not write {path} ({exc.strerror or exc}); check the disk "
                         "and the --out folder, then run again with --resume")


@contextlib.contextmanager
def file_size_limit_as_error():
    """Ignore ``SIGXFSZ`` inside the block, so that a write past ``RLIMIT_FSIZE`` fails with
    ``EFBIG`` (an error we can report) instead of the signal killing the process.

    The handler in place before is restored afterwards. Signal handlers can only be set from
    the main thread; elsewhere the block runs as it is.

    Examples
    --------
    >>> import signal
    >>> with file_size_limit_as_error():
    ...     signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    True
    """
    sig = getattr(signal, "SIGXFSZ", None)
    if sig is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        # None: a handler set outside Python; the default is the best that can be put back
        signal.signal(sig, signal.SIG_DFL if old is None else old)


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
