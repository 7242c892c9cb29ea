"""File formats: detection by extension, the reader registry, and what the readers share.

Each reader (one module per format) takes ``(path, channel, names_only=False)`` and returns a
dict of keyword arguments for the stack builder in :mod:`scalevae.io.stack` (``array``,
``pixel_size``, ``unit``, ``channel``, ``channels``, ``metadata``); with ``names_only=True`` it
may return just ``{"channels": [...]}``. Readers raise :class:`~scalevae.errors.ScaleVAEError`
for what the user can fix; :func:`run_reader` turns any library failure on a broken file into
one such error naming the file and format.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import ScaleVAEError
from .units import friendly_length, normalize_unit

_FORMATS = {
    ".tif": "TIFF", ".tiff": "TIFF", ".npy": "NumPy", ".npz": "NumPy archive",
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".h5": "HDF5", ".hdf5": "HDF5",
    ".hdf": "HDF5", ".nsid": "HDF5", ".ibw": "Igor binary wave", ".dm3": "DigitalMicrograph",
    ".dm4": "DigitalMicrograph", ".zarr": "Zarr",
}


def pick_channel(names, channel, path, what="channel"):
    """Index of `channel` in `names` (case-insensitive), or a clear error."""
    listing = ", ".join(names) if names else "(none)"
    if channel is None:
        if len(names) == 1:
            return 0
        raise ScaleVAEError(
            f"{path} has {len(names)} {what}s: {listing}; choose one with channel='NAME' "
            "(--channel NAME on the command line)")
    want = str(channel).strip().lower()
    for i, name in enumerate(names):
        if name.lower() == want:
            return i
    raise ScaleVAEError(
        f"{what} {channel!r} not found in {path}; available {what}s: {listing}")


def refuse_channel(path, channel):
    """Raise if a channel was asked of a file that has a single image."""
    if channel is not None:
        raise ScaleVAEError(
            f"{path} has a single image and no channels, but channel={channel!r} was given; "
            "leave the channel out")


def rgb_to_gray(a, meta):
    """Colour (y, x, 3|4) from an image file -> luminance; alpha is dropped."""
    from skimage.color import rgb2gray

    a = np.asarray(a)
    if a.ndim >= 3 and a.shape[-1] in (3, 4):
        meta["converted"] = ("RGBA" if a.shape[-1] == 4 else "RGB") + \
            " to grayscale luminance (skimage.color.rgb2gray, alpha dropped)"
        return rgb2gray(a[..., :3])
    return a


SCAN_KEYS = ("FastScanSize", "ScanSize", "SlowScanSize", "ScanPoints", "ScanLines")


def asylum_pixel_size(meta_attrs, nx, ny):
    """ScanSize / ScanPoints from an Asylum note (in metres); None if it does not match."""
    def num(key):
        try:
            v = float(str(meta_attrs[key]).split()[0])
        except (KeyError, ValueError, IndexError, TypeError):
            return None
        return v if math.isfinite(v) and v > 0 else None

    fast = num("FastScanSize") or num("ScanSize")
    points, lines = num("ScanPoints"), num("ScanLines")
    if not fast or points != nx:
        return None, None
    slow = num("SlowScanSize") or fast
    return fast / nx, (slow / ny if lines == ny else None)


def calibrate(size, unit, size_y, meta):
    """Metres to a friendly unit (other units kept); a differing y size goes to metadata."""
    if size is None:
        return None, None, None
    new, new_unit = friendly_length(size, unit) if normalize_unit(unit) == "m" else (
        size, normalize_unit(unit))
    if size_y and not math.isclose(size_y, size, rel_tol=1e-6):
        meta["pixel_size_y"] = size_y * new / size
    return new, new_unit, size_y


# the readers import the helpers above, so they are imported after them
from .gatan import read_dm  # noqa: E402
from .hdf5 import read_h5  # noqa: E402
from .igor import read_ibw  # noqa: E402
from .numpy_files import read_npy, read_npz  # noqa: E402
from .pillow import read_pil  # noqa: E402
from .tiff import read_tiff  # noqa: E402
from .zarr_files import read_zarr  # noqa: E402

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
