"""What a file holds: one line per channel with its shape, pixel size and unit."""

from __future__ import annotations

import warnings
from pathlib import Path

from .stack import list_channels, read_image


def describe_channels(path):
    """Name, shape, pixel size and unit of every channel (image) in a file.

    Each channel is read, so the shape and calibration are those :func:`read_image` gives.

    Parameters
    ----------
    path : str or Path
        An image file of any supported format.

    Returns
    -------
    channels : list of dict
        One dict per channel with ``name`` (the value ``channel=`` accepts; for a file with a
        single image, its title or file name), ``shape`` (frame, y, x), ``pixel_size`` and
        ``unit`` (None where the file gives none) and ``note`` (e.g. a scale without a unit).

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "two.npz")
    >>> rng = np.random.default_rng(0)
    >>> np.savez(p, height=rng.random((16, 16)), phase=rng.random((2, 16, 16)))
    >>> [(c["name"], c["shape"]) for c in describe_channels(p)]
    [('height', (1, 16, 16)), ('phase', (2, 16, 16))]
    """
    names = list_channels(path) or [None]
    out = []
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what a warning says is in the note
            stack = read_image(path, channel=name)
        meta = stack.metadata or {}
        note = ""
        if "scale_without_unit" in meta:
            note = f"scale {meta['scale_without_unit']:g} per px without a unit"
        label = name or meta.get("title") or Path(path).name
        out.append({"name": str(label), "shape": tuple(int(n) for n in stack.data.shape),
                    "pixel_size": stack.pixel_size, "unit": stack.unit, "note": note})
    return out


def format_channels(channels):
    """One text line per channel: name, shape, pixel size and unit (as `scalevae channels` prints).

    Examples
    --------
    >>> print(format_channels([{"name": "height", "shape": (1, 256, 256), "pixel_size": 19.53125,
    ...                          "unit": "nm", "note": ""}]))
    height  1 x 256 x 256  19.53 nm/px
    """
    rows = []
    for c in channels:
        shape = " x ".join(str(n) for n in c["shape"])
        if c["pixel_size"]:
            px = f"{c['pixel_size']:.4g} {c['unit'] or '(no unit)'}/px"
        else:
            px = "pixel size unknown"
        note = f"  ({c['note']})" if c.get("note") else ""
        rows.append((c["name"] or "(image)", shape, px + note))
    w0 = max((len(r[0]) for r in rows), default=0)
    w1 = max((len(r[1]) for r in rows), default=0)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows)
