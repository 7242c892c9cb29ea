"""The reader registry: file suffix -> format name -> reader, and the call that runs one.

Each reader (one module per format) takes ``(path, channel, names_only=False)`` and returns a
dict of keyword arguments for the stack builder in :mod:`scalevae.io.stack` (``array``,
``pixel_size``, ``unit``, ``channel``, ``channels``, ``metadata``); with ``names_only=True`` it
may return just ``{"channels": [...]}``. Readers raise :class:`~scalevae.errors.ScaleVAEError`
for what the user can fix; :func:`run_reader` turns any library failure on a broken file into
one such error naming the file and format. What the readers share lives in :mod:`.formats`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ScaleVAEError
from .gatan import read_dm
from .hdf5 import read_h5
from .igor import read_ibw
from .numpy_files import read_npy, read_npz
from .pillow import read_pil
from .tiff import read_tiff
from .zarr_files import read_zarr

_FORMATS = {
    ".tif": "TIFF", ".tiff": "TIFF", ".npy": "NumPy", ".npz": "NumPy archive",
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".h5": "HDF5", ".hdf5": "HDF5",
    ".hdf": "HDF5", ".nsid": "HDF5", ".ibw": "Igor binary wave", ".dm3": "DigitalMicrograph",
    ".dm4": "DigitalMicrograph", ".zarr": "Zarr",
}


# format name -> reader; scalevae.io re-exports it as _READERS (tests patch it)
READERS = {"TIFF": read_tiff, "NumPy": read_npy, "NumPy archive": read_npz,
           "PNG": read_pil, "JPEG": read_pil, "HDF5": read_h5,
           "Igor binary wave": read_ibw, "DigitalMicrograph": read_dm, "Zarr": read_zarr}


def format_of(path):
    """``(Path, format name)`` of an existing file, from its extension."""
    path = Path(path)
    if not path.exists():
        raise ScaleVAEError(f"file not found: {path}")
    if path.is_dir() and path.suffix.lower() != ".zarr":  # a Zarr store is a folder
        raise ScaleVAEError(f"{path} is a folder; give an image file")
    ext = path.suffix.lower()
    if ext not in _FORMATS:
        raise ScaleVAEError(
            f"cannot read {path}: unknown file type {ext or '(no extension)'!r}; supported: "
            f"{', '.join(sorted(_FORMATS))}")
    return path, _FORMATS[ext]


def run_reader(path, fmt, channel, names_only=False):
    """Call a reader; any library failure becomes one ScaleVAEError naming file and format."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise ScaleVAEError(f"{path} is empty (0 bytes); the file was not written completely "
                            "or was cut to nothing: copy it again or give another file")
    try:
        return READERS[fmt](path, channel, names_only)
    except ScaleVAEError:
        raise
    except (Exception, MemoryError) as exc:  # libraries raise anything on a broken file
        reason = f"{type(exc).__name__}: {exc}"
        reason = reason if len(reason) < 300 else reason[:300] + "..."
        raise ScaleVAEError(
            f"could not read {path} as {fmt}: {reason}; the file may be truncated or "
            "corrupt") from exc
