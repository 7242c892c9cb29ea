"""Asylum Research Igor binary waves (``.ibw``, igor2): layers with labels are channels."""

from __future__ import annotations

import logging
import math
import re
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import ScaleVAEError
from .formats import asylum_pixel_size, calibrate, pick_channel, refuse_channel
from .units import LENGTH_UNITS, normalize_unit


def _ibw_labels(path, wave):
    """Dimension labels read again from the file's label block.

    igor2 joins the 32-byte label fields without stopping at the first NUL, so Asylum's
    re-used buffers give names like 'PhaseRetracerace'. The block's position follows from
    the header sizes; the result is only used when it agrees with igor2's reading.
    """
    lib = [[x.decode("latin-1") if isinstance(x, bytes) else str(x) for x in dim]
           for dim in wave["labels"]]
    bh = wave["bin_header"]
    try:
        start = 64 + int(bh["wfmSize"]) + int(bh["formulaSize"]) + int(bh["noteSize"]) + \
            int(bh["dataEUnitsSize"]) + int(np.sum(bh["dimEUnitsSize"]))
        raw = Path(path).read_bytes()
        fixed = []
        for size in bh["dimLabelsSize"]:
            block = raw[start:start + int(size)]
            fixed.append([block[k:k + 32].split(b"\0")[0].decode("latin-1")
                          for k in range(0, len(block), 32)])
            start += int(size)
    except (KeyError, TypeError, ValueError):
        return lib
    # igor2's label is the true label followed by the stale bytes after its NUL
    same = len(fixed) == len(lib) and all(
        len(f) == len(g) and all(gi.startswith(fi) for fi, gi in zip(f, g))
        for f, g in zip(fixed, lib))
    return fixed if same else lib


def _ibw_note(note):
    if isinstance(note, bytes):
        note = note.decode("latin-1")
    out = {}
    for line in re.split(r"[\r\n]+", note or ""):
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


# Igor binary headers (Igor Technical Note 003): version, then the block sizes
_IBW_HEADERS = {1: "hlh", 2: "hlllh", 3: "hllllh", 5: "hhllll4l4llll"}


def _ibw_check_header(path):
    """Refuse headers whose block sizes exceed the file.

    igor2 builds a struct format string as long as each block it reads, so one flipped bit in
    a size field would make it allocate gigabytes before failing.
    """
    raw = Path(path).read_bytes()[:64]
    for order in "<>":
        version = struct.unpack(order + "h", raw[:2])[0] if len(raw) >= 2 else None
        if version in _IBW_HEADERS:
            break
    else:
        raise ScaleVAEError(
            f"could not read {path} as Igor binary wave: no valid version number (1, 2, 3 or 5) "
            "at the start; the file may be truncated or corrupt")
    fmt = order + _IBW_HEADERS[version]
    if len(raw) < struct.calcsize(fmt):
        raise ScaleVAEError(
            f"could not read {path} as Igor binary wave: the header is cut short; the file may "
            "be truncated or corrupt")
    fields = struct.unpack_from(fmt, raw)
    sizes = {1: fields[1:2], 2: fields[1:3], 3: fields[1:4], 5: fields[2:15]}[version]  # no reserved
    total, have = sum(sizes), Path(path).stat().st_size
    if min(sizes) < 0 or total > have:
        raise ScaleVAEError(
            f"could not read {path} as Igor binary wave: its header announces {total} bytes of "
            f"blocks but the file has {have}; the file may be truncated or corrupt")


@contextmanager
def _quiet(*names):
    """Silence library loggers that report, on their own, errors we re-raise anyway."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, b in zip(loggers, before):
            lg.disabled = b


def read_ibw(path, channel, names_only=False):
    """Read an Igor binary wave; the pixel size from the Asylum note, else the wave scaling."""
    from igor2 import binarywave

    _ibw_check_header(path)
    with _quiet("igor2", "igor2.binarywave", "igor2.struct"):
        wave = binarywave.load(str(path))["wave"]
    data = np.asarray(wave["wData"])
    head = wave["wave_header"]
    labels = _ibw_labels(path, wave)
    # Igor stores (x, y, layer): rows are x. Layers with labels are channels, else frames.
    names = []
    if data.ndim == 3 and len(labels) > 2 and len(labels[2]) == data.shape[2] + 1:
        names = [n or str(k) for k, n in enumerate(labels[2][1:])]
    if names_only:
        return {"channels": names}
    if data.ndim not in (2, 3):
        raise ScaleVAEError(
            f"{path} holds a {data.ndim}-D wave of shape {data.shape}; need a 2-D image or a "
            "3-D stack")
    if names:
        k = pick_channel(names, channel, path)
        data = data[:, :, k]
    else:
        refuse_channel(path, channel)
    data = np.moveaxis(data, (0, 1), (-1, -2))  # (x, y[, frame]) -> ([frame,] y, x)
    note = _ibw_note(wave.get("note"))
    nx, ny = data.shape[-1], data.shape[-2]
    size, size_y = asylum_pixel_size(note, nx, ny)
    meta = {"wave_name": head.get("bname", b""),
            "data_unit": b"".join(head["dataUnits"]).decode("latin-1"),
            "note": {k: note[k] for k in ("ScanSize", "FastScanSize", "SlowScanSize",
                                          "ScanPoints", "ScanLines", "ScanAngle", "ImagingMode",
                                          "ScanRate", "XOffset", "YOffset") if k in note}}
    unit = "m" if size else None
    if size:
        meta["pixel_size_source"] = "ScanSize / ScanPoints (wave note)"
    else:
        step = float(head["sfA"][0])
        su = normalize_unit(b"".join(head["dimUnits"][0]).decode("latin-1"))
        if su in LENGTH_UNITS and math.isfinite(step) and step > 0:
            size, unit = step, su
            meta["pixel_size_source"] = "wave scaling (sfA)"
    size, unit, size_y = calibrate(size, unit, size_y, meta)
    return {"array": data, "pixel_size": size, "unit": unit,
            "channel": names[k] if names else None, "channels": names, "metadata": meta}
