"""Zarr stores (``.zarr`` folders): one 2-D or 3-D array, large ones read frame by frame."""

from __future__ import annotations

import numpy as np

from ..errors import ScaleVAEError
from .formats import pick_channel, refuse_channel
from .lazy import ArrayFrames, read_lazily


def read_zarr(path, channel, names_only=False):
    """Read the array of a Zarr store, or the one named `channel` of a group."""
    import zarr

    root = zarr.open(str(path), mode="r")
    if hasattr(root, "shape"):
        names, arrays = [], [root]
    else:
        found = [(name, a) for name, a in root.arrays() if a.ndim in (2, 3)]
        names, arrays = [name for name, _ in found], [a for _, a in found]
    if names_only:
        return {"channels": names}
    if not arrays:
        raise ScaleVAEError(f"{path} holds no 2-D or 3-D array to read as images")
    if not names:
        refuse_channel(path, channel)
    i = pick_channel(names, channel, path) if names else 0
    a = arrays[i]
    if a.ndim == 3 and read_lazily(int(np.prod(a.shape)) * a.dtype.itemsize):
        data = ArrayFrames(a, f"{path}" + (f"/{names[i]}" if names else ""))
    else:
        data = a[...]
    meta = {key: a.attrs[key] for key in ("units", "quantity") if key in a.attrs}
    return {"array": data, "channel": names[i] if names else None, "channels": names,
            "metadata": meta}
