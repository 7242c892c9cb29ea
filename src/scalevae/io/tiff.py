"""TIFF images and stacks (tifffile), with OME, ImageJ or resolution-tag calibration."""

from __future__ import annotations

import re

import numpy as np

from ..errors import ScaleVAEError
from .formats import calibrate, pick_channel, refuse_channel, rgb_to_gray
from .lazy import read_lazily, tiff_frames
from .units import LENGTH_UNITS, normalize_unit


def _tiff_calibration(tif, page):
    """Pixel size and unit from OME, ImageJ or resolution tags; (None, None, note) if absent."""
    import tifffile

    if tif.is_ome and tif.ome_metadata:
        try:
            pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
            if "PhysicalSizeX" in pixels:
                return (float(pixels["PhysicalSizeX"]), pixels.get("PhysicalSizeXUnit", "µm"),
                        "OME PhysicalSizeX")
        except (KeyError, TypeError, ValueError, IndexError):
            pass
    tags = page.tags
    if "XResolution" not in tags:
        return None, None, None
    num, den = tags["XResolution"].value
    if not num or not den:
        return None, None, None
    size = den / num  # the tag is pixels per unit
    ij = tif.imagej_metadata or {}
    if ij.get("unit"):
        # ImageJ writes "micron" or the escaped text "\\u00B5m"
        unit = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(ij["unit"]))
        if normalize_unit(unit) in LENGTH_UNITS:
            return size, unit, "ImageJ unit and XResolution"
    resunit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    if resunit == 3:  # centimetre
        return size * 1e-2, "m", "XResolution in pixels per cm"
    # pixels per inch is a display setting (72 dpi...) in practice, not a sample calibration
    return None, None, None


def read_tiff(path, channel, names_only=False):
    """Read the first series of a TIFF; a C axis holds the channels, other axes become frames."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        n_c = series.shape[axes.index("C")] if "C" in axes else 1
        names = [str(i) for i in range(n_c)] if n_c > 1 else []
        if names_only:
            return {"channels": names}
        meta = {"axes": axes, "n_series": len(tif.series)}
        lazy = (len(series.shape) == 3 and "S" not in axes and n_c == 1
                and read_lazily(series.size * series.dtype.itemsize))
        # a large (frame, y, x) series is read page by page when patches need it (io.lazy)
        data = tiff_frames(path) if lazy else series.asarray()
        size, unit, how = _tiff_calibration(tif, series.pages[0] if series.pages else tif.pages[0])
    if "S" in axes:  # colour samples of RGB(A) pages
        if data.shape[axes.index("S")] not in (3, 4):
            raise ScaleVAEError(
                f"{path} has {data.shape[axes.index('S')]} samples per pixel; only grayscale, "
                "RGB and RGBA TIFFs are read: save one sample per page instead")
        data = np.moveaxis(data, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
        data = rgb_to_gray(data, meta)
        axes = axes[:-1]
    name = None
    if n_c > 1:
        k = pick_channel(names, channel, path)
        data, name = np.take(data, k, axis=axes.index("C")), names[k]
        axes = axes.replace("C", "")
    else:
        refuse_channel(path, channel)
    # frames first, then y and x (tifffile already orders the image axes last)
    if data.ndim > 3:
        data = data.reshape((-1,) + data.shape[-2:])
        meta["flattened_axes"] = axes[:-2]
    if how:
        meta["pixel_size_source"] = how
    size, unit, _ = calibrate(size, unit, None, meta)
    return {"array": data, "pixel_size": size, "unit": unit, "channels": names,
            "channel": name, "metadata": meta}
