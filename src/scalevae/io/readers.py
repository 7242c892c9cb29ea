"""File-format readers behind :func:`scalevae.io.read_image`.

Each reader takes ``(path, channel, names_only=False)`` and returns a dict of keyword arguments
for ``scalevae.io._build`` (``array``, ``pixel_size``, ``unit``, ``channel``, ``channels``,
``metadata``); with ``names_only=True`` it may return just ``{"channels": [...]}``. Readers raise
:class:`~scalevae.errors.ScaleVAEError` for what the user can fix; :func:`_run_reader` turns any
library failure on a broken file into one such error naming the file and format.
"""

from __future__ import annotations

import logging
import math
import re
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import ScaleVAEError
from .units import _LENGTH, _friendly_length, normalize_unit

_FORMATS = {
    ".tif": "TIFF", ".tiff": "TIFF", ".npy": "NumPy", ".npz": "NumPy archive",
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".h5": "HDF5", ".hdf5": "HDF5",
    ".hdf": "HDF5", ".nsid": "HDF5", ".ibw": "Igor binary wave", ".dm3": "DigitalMicrograph",
    ".dm4": "DigitalMicrograph",
}


def _pick(names, channel, path, what="channel"):
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


def _no_channels(path, channel):
    if channel is not None:
        raise ScaleVAEError(
            f"{path} has a single image and no channels, but channel={channel!r} was given; "
            "leave the channel out")


# ----------------------------------------------------------------------------- readers
# Each reader returns a dict of _build keyword arguments (array, pixel_size, unit, channel,
# channels, metadata); with names_only=True it may return just {"channels": [...]}.

def _rgb_to_gray(a, meta):
    """Colour (y, x, 3|4) from an image file -> luminance; alpha is dropped."""
    from skimage.color import rgb2gray

    a = np.asarray(a)
    if a.ndim >= 3 and a.shape[-1] in (3, 4):
        meta["converted"] = ("RGBA" if a.shape[-1] == 4 else "RGB") + \
            " to grayscale luminance (skimage.color.rgb2gray, alpha dropped)"
        return rgb2gray(a[..., :3])
    return a


def _read_pil(path, channel, names_only=False):
    from PIL import Image

    _no_channels(path, channel)
    if names_only:
        return {"channels": []}
    with Image.open(path) as im:
        im.load()  # decode now, inside the caller's error handling
        meta = {"mode": im.mode, "format": im.format}
        if im.mode == "P":
            im = im.convert("RGBA")
        elif im.mode in ("LA", "La", "PA"):
            im = im.convert("L")
            meta["converted"] = "alpha channel dropped"
        elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        a = np.asarray(im)
    return {"array": _rgb_to_gray(a, meta), "metadata": meta}


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
        if normalize_unit(unit) in _LENGTH:
            return size, unit, "ImageJ unit and XResolution"
    resunit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    if resunit == 3:  # centimetre
        return size * 1e-2, "m", "XResolution in pixels per cm"
    # pixels per inch is a display setting (72 dpi...) in practice, not a sample calibration
    return None, None, None


def _read_tiff(path, channel, names_only=False):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        n_c = series.shape[axes.index("C")] if "C" in axes else 1
        names = [str(i) for i in range(n_c)] if n_c > 1 else []
        if names_only:
            return {"channels": names}
        data = series.asarray()
        meta = {"axes": axes, "n_series": len(tif.series)}
        size, unit, how = _tiff_calibration(tif, series.pages[0] if series.pages else tif.pages[0])
    if "S" in axes:  # colour samples of RGB(A) pages
        if data.shape[axes.index("S")] not in (3, 4):
            raise ScaleVAEError(
                f"{path} has {data.shape[axes.index('S')]} samples per pixel; only grayscale, "
                "RGB and RGBA TIFFs are read: save one sample per page instead")
        data = np.moveaxis(data, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
        data = _rgb_to_gray(data, meta)
        axes = axes[:-1]
    name = None
    if n_c > 1:
        k = _pick(names, channel, path)
        data, name = np.take(data, k, axis=axes.index("C")), names[k]
        axes = axes.replace("C", "")
    else:
        _no_channels(path, channel)
    # frames first, then y and x (tifffile already orders the image axes last)
    if data.ndim > 3:
        data = data.reshape((-1,) + data.shape[-2:])
        meta["flattened_axes"] = axes[:-2]
    if how:
        meta["pixel_size_source"] = how
    size, unit, _ = _calibrate(size, unit, None, meta)
    return {"array": data, "pixel_size": size, "unit": unit, "channels": names,
            "channel": name, "metadata": meta}


def _read_npy(path, channel, names_only=False):
    _no_channels(path, channel)
    if names_only:
        return {"channels": []}
    with open(path, "rb") as fh:  # np.load takes anything without the magic for a pickle
        if fh.read(6) != b"\x93NUMPY":
            raise ScaleVAEError(
                f"{path} is not a NumPy .npy file (no NumPy header at its start); it may be "
                "corrupt, or a file of another format named .npy")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ScaleVAEError(
                f"{path} holds Python objects, not a numeric array; save it with "
                "np.save(path, np.asarray(image, dtype=float))") from exc
        raise
    return {"array": data}


_NPZ_RESERVED = ("pixel_size", "unit", "control", "control_name")


def _read_npz(path, channel, names_only=False):
    with np.load(path, allow_pickle=False) as z:
        # arrays with these names are calibration, not channels
        names = [n for n in z.files if n not in _NPZ_RESERVED]
        if names_only:
            return {"channels": names}
        if not names:
            raise ScaleVAEError(f"{path} holds no image arrays (it has: {', '.join(z.files)})")
        name = names[_pick(names, channel, path, "array")]
        out = {"array": z[name], "channel": name, "channels": names}
        for key in _NPZ_RESERVED:
            if key in z.files:
                value = z[key]
                out[key] = value.item() if value.ndim == 0 else value
    if isinstance(out.get("unit"), bytes):
        out["unit"] = out["unit"].decode()
    return out


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


_SCAN_KEYS = ("FastScanSize", "ScanSize", "SlowScanSize", "ScanPoints", "ScanLines")


def _asylum_pixel(meta_attrs, nx, ny):
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


def _calibrate(size, unit, size_y, meta):
    """Metres to a friendly unit (other units kept); a differing y size goes to metadata."""
    if size is None:
        return None, None, None
    new, new_unit = _friendly_length(size, unit) if normalize_unit(unit) == "m" else (
        size, normalize_unit(unit))
    if size_y and not math.isclose(size_y, size, rel_tol=1e-6):
        meta["pixel_size_y"] = size_y * new / size
    return new, new_unit, size_y


def _read_h5(path, channel, names_only=False):
    import h5py

    with h5py.File(path, "r") as h5:
        names, dsets = _h5_images(h5)
        if names_only:
            return {"channels": names}
        if not dsets:
            raise ScaleVAEError(f"{path} holds no 2-D or 3-D numeric dataset to read as images")
        i = _pick(names, channel, path)
        d = dsets[i]
        # a contiguous dataset larger than its storage means a corrupt header; refuse before
        # allocating what it claims
        if d.chunks is None and d.id.get_storage_size() < d.size * d.dtype.itemsize:
            raise ScaleVAEError(
                f"could not read {path} as HDF5: dataset {d.name} claims {d.size} values but "
                "its storage is smaller; the file may be truncated or corrupt")
        data = d[()]
        labels = [str(x.decode() if isinstance(x, bytes) else x).lower()
                  for x in d.attrs.get("DIMENSION_LABELS", [])]
        meta = {"dataset": d.name}
        for key in ("units", "quantity", "data_type"):
            if key in d.attrs:
                meta["data_unit" if key == "units" else key] = d.attrs[key]
        # pixel size: the instrument's scan size where the original metadata has it,
        # else the step of the x dimension scale
        scan = d.parent.get("original_metadata")
        # only the keys needed: reading all ~850 Igor-note attributes takes 0.3 s
        scan = {k: scan.attrs[k] for k in _SCAN_KEYS if k in scan.attrs} \
            if isinstance(scan, h5py.Group) else {}
        xi = labels.index("x") if "x" in labels else d.ndim - 1
        yi = labels.index("y") if "y" in labels else d.ndim - 2
        size, size_y = _asylum_pixel(scan, d.shape[xi], d.shape[yi])
        unit = "m" if size else None
        if size:
            meta["pixel_size_source"] = "ScanSize / ScanPoints (instrument metadata)"
        elif len(d.dims[xi]):
            scale = d.dims[xi][0]
            su = normalize_unit(scale.attrs.get("units"))
            if su in _LENGTH and scale.shape[0] > 1:
                step = float(abs(scale[-1] - scale[0]) / (scale.shape[0] - 1))
                if math.isfinite(step) and step > 0:
                    size, unit = step, su
                    meta["pixel_size_source"] = f"step of dimension scale {scale.name}"
    if labels and len(labels) == data.ndim and {"x", "y"} <= set(labels):
        other = [k for k in range(data.ndim) if k not in (xi, yi)]
        data = np.transpose(data, other + [yi, xi])  # -> (frame, y, x)
    size, unit, size_y = _calibrate(size, unit, size_y, meta)
    return {"array": data, "pixel_size": size, "unit": unit, "channel": names[i],
            "channels": names, "metadata": meta}


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


def _read_ibw(path, channel, names_only=False):
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
        k = _pick(names, channel, path)
        data = data[:, :, k]
    else:
        _no_channels(path, channel)
    data = np.moveaxis(data, (0, 1), (-1, -2))  # (x, y[, frame]) -> ([frame,] y, x)
    note = _ibw_note(wave.get("note"))
    nx, ny = data.shape[-1], data.shape[-2]
    size, size_y = _asylum_pixel(note, nx, ny)
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
        if su in _LENGTH and math.isfinite(step) and step > 0:
            size, unit = step, su
            meta["pixel_size_source"] = "wave scaling (sfA)"
    size, unit, size_y = _calibrate(size, unit, size_y, meta)
    return {"array": data, "pixel_size": size, "unit": unit,
            "channel": names[k] if names else None, "channels": names, "metadata": meta}


def _dm_images(path):
    """Images of a DM3/DM4 file as rosettasciio dicts (data, axes, title).

    rosettasciio trusts the counts stored in the file: one flipped bit in a struct's field
    count or an array length makes it loop for minutes or allocate gigabytes. Where its
    parser classes are importable we subclass them to bound every count by the bytes left in
    the file; otherwise we fall back to the public reader.
    """
    try:
        from rsciio.digitalmicrograph import _api
        base, image_cls = _api.DigitalMicrographReader, _api.ImageObject
    except (ImportError, AttributeError):  # pragma: no cover - other rosettasciio layouts
        from rsciio.digitalmicrograph import file_reader
        return [{"data": d["data"], "axes": d["axes"],
                 "title": d.get("metadata", {}).get("General", {}).get("title", "")}
                for d in file_reader(str(path))]

    size = Path(path).stat().st_size

    class Bounded(base):
        def _check(self, n, what):
            if not 0 <= n <= size - self.f.tell() + 1:
                raise OSError(f"{what} of {n} does not fit in the file")

        def parse_struct_definition(self):
            pos = self.f.tell()
            self.read_l_or_q(self.f, "big")
            n = self.read_l_or_q(self.f, "big")
            if not 0 <= n <= 1024:  # DM structs have a handful of fields (rect, RGB...)
                raise OSError(f"struct with {n} fields")
            self.f.seek(pos)
            return super().parse_struct_definition()

        def read_array(self, size, enc_eltype, extra=None, skip=False):
            self._check(size, "array length")
            if size > 1 and extra and "definition" in extra and not extra["definition"]:
                raise OSError("array of empty structs")
            return super().read_array(size, enc_eltype, extra=extra, skip=skip)

        def read_string(self, length, skip=False):
            self._check(length, "string length")
            return super().read_string(length, skip=skip)

    out = []
    with open(path, "rb") as f:
        dm = Bounded(f)
        dm.parse_file()
        for imdict in dm.get_image_dictionaries() or []:
            image = image_cls(imdict, f)
            image.filename = str(path)
            data = image.imdict.ImageData.Data
            if not isinstance(data, np.ndarray) and \
                    int(image.size) * np.dtype(image.dtype).itemsize > size - int(data.offset):
                raise OSError("image data run past the end of the file")
            out.append({"data": image.get_data(False, None), "axes": image.get_axes_dict(),
                        "title": image.title})
    return out


def _read_dm(path, channel, names_only=False):
    images = _dm_images(path)
    names = []
    for k, img in enumerate(images):
        title = str(img["title"] or k)
        names.append(title if title not in names else f"{title}_{k}")
    if names_only:
        return {"channels": names if len(names) > 1 else []}
    if not images:
        raise ScaleVAEError(f"{path} holds no image")
    if len(images) == 1:
        _no_channels(path, channel)
        k = 0
    else:
        k = _pick(names, channel, path, "image")
    img = images[k]
    data = np.asarray(img["data"])
    axes = sorted(img["axes"], key=lambda ax: ax.get("index_in_array", 0))
    signal = [ax for ax in axes if not ax.get("navigate", False)]
    if len(signal) != 2:
        raise ScaleVAEError(
            f"{path} holds {len(signal)}-D signals (e.g. spectra), not images; scalevae needs "
            "2-D images or image stacks")
    x = signal[-1]
    size, unit = float(x.get("scale", 1.0)), normalize_unit(x.get("units"))
    meta = {"title": names[k], "axes": [{key: ax.get(key) for key in
                                         ("name", "size", "scale", "offset", "units")}
                                        for ax in axes]}
    if unit is None or not math.isfinite(size) or size <= 0:
        meta["uncalibrated"] = "the file gives no spatial unit; pixel size left unset"
        size, unit = None, None
    else:
        size, unit, _ = _calibrate(size, unit, None, meta)
    return {"array": data, "pixel_size": size, "unit": unit, "channel": names[k],
            "channels": names if len(names) > 1 else [], "metadata": meta}


_READERS = {"TIFF": _read_tiff, "NumPy": _read_npy, "NumPy archive": _read_npz,
            "PNG": _read_pil, "JPEG": _read_pil, "HDF5": _read_h5,
            "Igor binary wave": _read_ibw, "DigitalMicrograph": _read_dm}


def _format_of(path):
    path = Path(path)
    if not path.exists():
        raise ScaleVAEError(f"file not found: {path}")
    if path.is_dir():
        raise ScaleVAEError(f"{path} is a folder; give an image file")
    ext = path.suffix.lower()
    if ext not in _FORMATS:
        raise ScaleVAEError(
            f"cannot read {path}: unknown file type {ext or '(no extension)'!r}; supported: "
            f"{', '.join(sorted(_FORMATS))}")
    return path, _FORMATS[ext]


def _run_reader(path, fmt, channel, names_only=False):
    """Call a reader; any library failure becomes one ScaleVAEError naming file and format."""
    try:
        return _READERS[fmt](path, channel, names_only)
    except ScaleVAEError:
        raise
    except (Exception, MemoryError) as exc:  # libraries raise anything on a broken file
        reason = f"{type(exc).__name__}: {exc}"
        reason = reason if len(reason) < 300 else reason[:300] + "..."
        raise ScaleVAEError(
            f"could not read {path} as {fmt}: {reason}; the file may be truncated or "
            "corrupt") from exc
