"""HDF5 files: the pycroscopy NSID layout, or any file with 2-D/3-D numeric datasets."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ScaleVAEError
from .formats import SCAN_KEYS, asylum_pixel_size, calibrate, pick_channel
from .lazy import h5_frames, is_lazy, read_lazily
from .units import LENGTH_UNITS, normalize_unit


def _h5_images(h5):
    """All numeric 2-D/3-D datasets that are not dimension scales, with their channel names."""
    import h5py

    found = []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset) or obj.ndim not in (2, 3):
            return
        if obj.dtype.kind not in "biufc" or "original_metadata" in name:
            return
        if obj.attrs.get("CLASS", b"") in (b"DIMENSION_SCALE", "DIMENSION_SCALE"):
            return
        found.append((name, obj))

    h5.visititems(visit)
    names = []
    for path, obj in found:
        quantity = obj.attrs.get("quantity")
        if isinstance(quantity, bytes):
            quantity = quantity.decode("latin-1")
        names.append(str(quantity) if quantity else path)
    if len(set(n.lower() for n in names)) < len(names):  # same quantity twice: use paths
        names = [path for path, _ in found]
    return names, [obj for _, obj in found]


def _whole_or_lazy(path, d, labels):
    """The dataset in memory, or read frame by frame (io.lazy) when it is a large 3-D stack
    already ordered (frame, y, x)."""
    ordered = not labels or labels[-2:] == ["y", "x"] or {"x", "y"} - set(labels)
    if d.ndim == 3 and read_lazily(d.size * d.dtype.itemsize) and ordered:
        return h5_frames(path, d.name)
    return d[()]


def read_h5(path, channel, names_only=False):
    """Read one 2-D/3-D dataset of an HDF5 file, with the pixel size from the scan size or dimension scale."""
    import h5py

    with h5py.File(path, "r") as h5:
        names, dsets = _h5_images(h5)
        if names_only:
            return {"channels": names}
        if not dsets:
            raise ScaleVAEError(f"{path} holds no 2-D or 3-D numeric dataset to read as images")
        i = pick_channel(names, channel, path)
        d = dsets[i]
        # a contiguous dataset larger than its storage means a corrupt header; refuse before
        # allocating what it claims
        if d.chunks is None and d.id.get_storage_size() < d.size * d.dtype.itemsize:
            raise ScaleVAEError(
                f"could not read {path} as HDF5: dataset {d.name} claims {d.size} values but "
                "its storage is smaller; the file may be truncated or corrupt")
        labels = [str(x.decode() if isinstance(x, bytes) else x).lower()
                  for x in d.attrs.get("DIMENSION_LABELS", [])]
        data = _whole_or_lazy(path, d, labels)
        meta = {"dataset": d.name}
        for key in ("units", "quantity", "data_type"):
            if key in d.attrs:
                meta["data_unit" if key == "units" else key] = d.attrs[key]
        # pixel size: the instrument's scan size where the original metadata has it,
        # else the step of the x dimension scale
        scan = d.parent.get("original_metadata")
        # only the keys needed: reading all ~850 Igor-note attributes takes 0.3 s
        scan = {k: scan.attrs[k] for k in SCAN_KEYS if k in scan.attrs} \
            if isinstance(scan, h5py.Group) else {}
        xi = labels.index("x") if "x" in labels else d.ndim - 1
        yi = labels.index("y") if "y" in labels else d.ndim - 2
        size, size_y = asylum_pixel_size(scan, d.shape[xi], d.shape[yi])
        unit = "m" if size else None
        if size:
            meta["pixel_size_source"] = "ScanSize / ScanPoints (instrument metadata)"
        elif len(d.dims[xi]):
            scale = d.dims[xi][0]
            su = normalize_unit(scale.attrs.get("units"))
            if su in LENGTH_UNITS and scale.shape[0] > 1:
                step = float(abs(scale[-1] - scale[0]) / (scale.shape[0] - 1))
                if math.isfinite(step) and step > 0:
                    size, unit = step, su
                    meta["pixel_size_source"] = f"step of dimension scale {scale.name}"
    if not is_lazy(data) and labels and len(labels) == data.ndim and {"x", "y"} <= set(labels):
        other = [k for k in range(data.ndim) if k not in (xi, yi)]
        data = np.transpose(data, other + [yi, xi])  # -> (frame, y, x)
    size, unit, size_y = calibrate(size, unit, size_y, meta)
    return {"array": data, "pixel_size": size, "unit": unit, "channel": names[i],
            "channels": names, "metadata": meta}
