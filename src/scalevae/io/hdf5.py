"""HDF5 files: the pycroscopy NSID layout, or any file with 2-D/3-D numeric datasets."""

from __future__ import annotations

import json
import math
import re

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


_SCAN_ARRAY_KEYS = ("scan_size", "ScanSize", "scan_range", "ScanRange")
_SCAN_UNIT_KEYS = ("scan_size_unit", "scan_size_units", "ScanSizeUnit", "units", "unit")


def _attrs_of(obj, keys):
    """The attributes of `obj` among `keys` (reading only those: Igor notes hold ~850)."""
    return {k: obj.attrs[k] for k in keys if k in obj.attrs}


def _text(v):
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SUO" and v.size == 1:
        return _text(v.ravel()[0])
    return str(v) if isinstance(v, str) else None


def _scan_array_pixel_size(obj, nx, ny):
    """Pixel size from a 2-value scan size ``(x, y)`` (an attribute or a small dataset of `obj`).

    The values are in metres unless an attribute (``scan_size_unit``, ``units``) gives a length
    unit. Returns ``(size_x, size_y, unit)`` or ``(None, None, None)``.
    """
    import h5py

    for key in _SCAN_ARRAY_KEYS:
        holder = obj
        if key in obj.attrs:
            value = obj.attrs[key]
        elif isinstance(obj, h5py.Group) and isinstance(obj.get(key), h5py.Dataset) \
                and obj[key].size <= 3:
            holder = obj[key]
            value = holder[()]
        else:
            continue
        try:
            v = np.asarray(value, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            continue
        if len(v) == 1:
            v = np.array([v[0], v[0]])
        if len(v) < 2 or not np.all(np.isfinite(v[:2])) or not np.all(v[:2] > 0):
            continue
        unit = "m"
        for uk in _SCAN_UNIT_KEYS:
            for src in (holder, obj):
                u = normalize_unit(_text(src.attrs[uk])) if uk in src.attrs else None
                if u in LENGTH_UNITS:
                    unit = u
                    break
            else:
                continue
            break
        return float(v[0]) / nx, float(v[1]) / ny, unit
    return None, None, None


# a field of view in a JSON or free-text attribute: "scan size", "scan_size", "ScanSize", "FOV",
# "field of view" (any case, spaces/underscores/hyphens), the unit in the value or the key
_FOV_KEY = re.compile(r"^(scan[ _-]?size|scan[ _-]?range|fov|field[ _-]?of[ _-]?view)"
                      r"(?:[ _-]*\(?([a-zA-Zµ]+)\)?)?$", re.IGNORECASE)
_FOV_TEXT = re.compile(r"(scan[ _-]?size|scan[ _-]?range|fov|field[ _-]?of[ _-]?view)\s*[:=]?\s*"
                       r"([-+0-9.eE]+)\s*((?![x×]\s*[-+0-9.])[a-zA-Zµ]*)\s*(?:[x×,]\s*([-+0-9.eE]+)\s*([a-zA-Zµ]*))?",
                       re.IGNORECASE)
_UNIT_KEYS = ("unit", "units", "scan size unit", "scan_size_unit", "fov unit", "fov_unit")


def _length(value, unit):
    """(x, y, unit) from a number, a 2-list, a "5 nm" / "5 x 4 nm" string or {value, unit}."""
    if isinstance(value, dict):
        low = {str(k).lower(): v for k, v in value.items()}
        unit = low.get("unit", low.get("units", unit))
        if "x" in low and "y" in low:
            value = [low["x"], low["y"]]
        else:
            value = low.get("value", low.get("size"))
    if isinstance(value, str):
        m = _FOV_TEXT.search("fov " + value)
        if not m:
            return None
        value = [m.group(2), m.group(4) or m.group(2)]
        unit = m.group(5) or m.group(3) or unit
    try:
        v = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    v = np.array([v[0], v[0]]) if len(v) == 1 else v
    unit = normalize_unit(unit)
    if len(v) < 2 or not np.all(np.isfinite(v[:2])) or not np.all(v[:2] > 0) \
            or unit not in LENGTH_UNITS:
        return None
    return float(v[0]), float(v[1]), unit


def _fov_in(tree, unit=None):
    """The first field of view in a parsed JSON tree (depth first): (x, y, unit) or None."""
    if isinstance(tree, dict):
        low = {str(k).strip().lower(): v for k, v in tree.items()}
        unit = next((low[k] for k in _UNIT_KEYS if isinstance(low.get(k), str)), unit)
        for key, value in tree.items():
            m = _FOV_KEY.match(str(key).strip())
            if m:
                found = _length(value, m.group(2) or unit)
                if found:
                    return found
        for value in tree.values():
            found = _fov_in(value, unit)
            if found:
                return found
    elif isinstance(tree, list):
        for value in tree:
            found = _fov_in(value, unit)
            if found:
                return found
    return None


def _text_scan_pixel_size(obj, nx, ny):
    """Pixel size from a scan size held in a JSON or free-text string attribute of `obj`.

    A JSON object (at any depth) with a "scan size" / "FOV" / "field of view" entry (a number
    with a unit entry or a unit in the key, a "5 nm" string, an (x, y) pair or {value, unit}),
    or text such as ``"FOV: 5.2 x 5.2 nm"``. Returns ``(size_x, size_y, unit, key)`` or Nones.
    """
    for key, raw in obj.attrs.items():
        text = _text(raw)
        if not text or len(text) > 1_000_000:
            continue
        found = None
        if text.lstrip()[:1] in "{[":
            try:
                found = _fov_in(json.loads(text))
            except ValueError:
                found = None
        match = _FOV_TEXT.search(text) if found is None else None
        if match:
            found = _length(match.group(0), None)
        if found:
            return found[0] / nx, found[1] / ny, found[2], key
    return None, None, None, None


def _scan_pixel_size(d, nx, ny):
    """Pixel size from scan-size metadata near dataset `d`: ``(size_x, size_y, unit, source)``.

    Looked for, in order, in the ``original_metadata`` group beside the dataset (pycroscopy
    NSID), on the dataset, its parent group and the file's root: Asylum-style attributes
    (``FastScanSize``/``ScanSize``, ``SlowScanSize`` in metres with ``ScanPoints``/``ScanLines``
    matching the image), or a 2-value ``scan_size``/``ScanSize`` (x, y) attribute or dataset.
    """
    import h5py

    places = []
    meta = d.parent.get("original_metadata")
    if isinstance(meta, h5py.Group):
        places.append(("original_metadata", meta))
    places += [("dataset attributes", d), ("group attributes", d.parent), ("file attributes", d.file)]
    for where, obj in places:
        scan = _attrs_of(obj, SCAN_KEYS)
        if "ScanPoints" in scan:
            size, size_y = asylum_pixel_size(scan, nx, ny)
            if size:
                return size, size_y, "m", f"ScanSize / ScanPoints ({where})"
        size, size_y, unit = _scan_array_pixel_size(obj, nx, ny)
        if size:
            return size, size_y, unit, f"scan size / image shape ({where})"
        size, size_y, unit, key = _text_scan_pixel_size(obj, nx, ny)
        if size:
            return size, size_y, unit, f"scan size in attribute {key!r} / image shape ({where})"
    return None, None, None, None


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
        # pixel size: the instrument's scan size where the metadata has it,
        # else the step of the x dimension scale
        xi = labels.index("x") if "x" in labels else d.ndim - 1
        yi = labels.index("y") if "y" in labels else d.ndim - 2
        size, size_y, unit, source = _scan_pixel_size(d, d.shape[xi], d.shape[yi])
        if size:
            meta["pixel_size_source"] = source
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
