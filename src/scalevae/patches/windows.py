"""Window sizes: parsed from text or lists (pixels or physical lengths), checked against the frame."""

from __future__ import annotations

import math
import numbers
import re

import numpy as np

from ..errors import ScaleVAEError
from ..io.units import physical_to_pixels

_TOKEN = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([^\d\s.+-][^\s]*)?\s*$")


def _parse_length(token, spec, pixel_size, unit):
    """One window length ('8', '8px', '20nm', 12.5) in pixels, not rounded."""
    if isinstance(token, numbers.Real) and not isinstance(token, bool):
        return float(token)
    m = _TOKEN.match(str(token))
    if not m:
        raise ScaleVAEError(
            f"cannot read the window {str(token).strip()!r} in {spec!r}; give pixels or lengths with "
            "a unit, e.g. '8:64:4', '8,12,16' or '20nm:200nm:20nm'")
    value, tunit = float(m.group(1)), m.group(2)
    if tunit is None or tunit.lower() == "px":
        return value
    if pixel_size is None:
        raise ScaleVAEError(
            f"the windows {spec!r} are in {tunit} but the image's pixel size is unknown; give the "
            "windows in pixels (e.g. '8:64:4') or give the pixel size and its unit")
    return physical_to_pixels(value, tunit, pixel_size, unit)


def parse_windows(spec, pixel_size=None, unit=None):
    """Window sizes in whole pixels, strictly increasing.

    Parameters
    ----------
    spec : str, int or sequence
        ``"START:STOP:STEP"`` (STOP included when the steps reach it), the same with a unit after
        each number (``"20nm:200nm:20nm"``), a comma list ``"8,12,16"``, one number, or a list
        such as ``[8, 16]`` or ``["20nm", "40nm"]``.
    pixel_size : float, optional
        Size of one pixel, needed for windows given as lengths.
    unit : str, optional
        Unit of `pixel_size` (``"nm"``, ``"um"``, ``"A"``...).

    Returns
    -------
    windows : (n,) int64 array
        Each window rounded to the nearest whole pixel.

    Examples
    --------
    >>> parse_windows("8:64:8").tolist()
    [8, 16, 24, 32, 40, 48, 56, 64]
    >>> parse_windows("20nm:60nm:20nm", pixel_size=2.5, unit="nm").tolist()
    [8, 16, 24]
    >>> parse_windows("8, 12,16").tolist()
    [8, 12, 16]
    """
    shown = spec if isinstance(spec, str) else repr(spec)
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ScaleVAEError("no windows given; use e.g. '8:64:4' or '8,12,16'")
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ScaleVAEError(f"windows {spec!r}: a range needs START:STOP:STEP, e.g. '8:64:4'")
            start, stop, step = (_parse_length(p, spec, pixel_size, unit) for p in parts)
            if step <= 0:
                raise ScaleVAEError(f"windows {spec!r}: the STEP must be positive, got {parts[2].strip()!r}")
            if stop < start:
                raise ScaleVAEError(f"windows {spec!r}: STOP is smaller than START; write START:STOP:STEP")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            tokens = [parts[0].strip() if k == 0 else f"{parts[0].strip()} + {k} x {parts[2].strip()}"
                      for k in range(count)]
            values = start + step * np.arange(count)
        else:
            tokens = [t.strip() for t in text.split(",")]
            values = [_parse_length(t, spec, pixel_size, unit) for t in tokens]
    elif isinstance(spec, (numbers.Real, np.ndarray, list, tuple)) and not isinstance(spec, bool):
        items = np.atleast_1d(np.asarray(spec, dtype=object)).ravel().tolist()
        if not items:
            raise ScaleVAEError("no windows given; use e.g. [8, 16, 32] or '8:64:4'")
        tokens = [str(t) for t in items]
        values = [_parse_length(t, shown, pixel_size, unit) for t in items]
    else:
        raise ScaleVAEError(f"cannot read windows {shown}; use e.g. '8:64:4', '8,12,16' or [8, 16]")
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ScaleVAEError(f"windows {shown}: every window must be a finite number of pixels")
    px = np.floor(values + 0.5).astype(np.int64)  # round half up
    for k in range(len(px)):
        if px[k] <= 0:
            raise ScaleVAEError(f"windows {shown}: {tokens[k]} is {values[k]:g} px; windows must be "
                                "at least 1 px (positive)")
        if k and px[k] == px[k - 1]:
            raise ScaleVAEError(f"windows {shown}: {tokens[k - 1]} and {tokens[k]} both round to "
                                f"{px[k]} px; use a larger step or fewer windows")
        if k and px[k] < px[k - 1]:
            raise ScaleVAEError(f"windows {shown}: they must increase, but {tokens[k]} ({px[k]} px) "
                                f"follows {tokens[k - 1]} ({px[k - 1]} px)")
    return px


def check_windows_fit(windows, frame_shape):
    """Raise if the largest window is larger than the frame.

    Examples
    --------
    >>> check_windows_fit([8, 16], (64, 64))
    """
    ny, nx = (int(s) for s in frame_shape[-2:])
    big = int(np.max(windows))
    if big > min(ny, nx):
        raise ScaleVAEError(
            f"the largest window ({big} px) is larger than the image ({ny} x {nx} px); use "
            f"smaller windows, at most {min(ny, nx)} px (lower STOP in START:STOP:STEP)")

