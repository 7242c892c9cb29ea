"""What the readers share: picking a channel, colour to gray, Asylum scan sizes, calibration.

The readers (one module per format) import these; :mod:`.registry` maps suffixes to the
readers. Nothing here imports a reader, so there is no circle.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ScaleVAEError
from .units import friendly_length, normalize_unit

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
