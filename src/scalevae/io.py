"""Read microscopy images and stacks into one validated in-memory form.

Every reader ends in :func:`as_stack`, so whatever the file format, the rest of the package sees
an :class:`ImageStack`: a finite ``float32`` array ``(frame, y, x)`` with the pixel size and unit
where the file has them.

Supported files: TIFF (single page, multi-page stacks, ImageJ and OME calibration), NumPy
``.npy``/``.npz``, PNG/JPEG (colour converted to grayscale luminance), HDF5 (pycroscopy NSID
layout, or any file with a single 2-D/3-D dataset), Asylum Research Igor ``.ibw`` and Gatan
DigitalMicrograph ``.dm3``/``.dm4``.

Units. Length units are normalised to ``"pm"``, ``"A"`` (ångström, ASCII spelling), ``"nm"``,
``"um"``, ``"mm"`` and ``"m"`` (so ``"µm"``, ``"micron"`` become ``"um"`` and ``"Å"`` becomes
``"A"``). Pixel sizes that files give in metres are converted to the largest of pm, nm, um, mm
and m in which the pixel size is at least 1 (e.g. 1.17e-8 m -> 11.7 nm); sizes in other units
keep their unit, and unit strings that are not lengths (``"1/nm"``, ``"px"``...) are kept as
they are.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ScaleVAEError

__all__ = ["ImageStack", "read_image", "as_stack", "list_channels", "physical_to_pixels",
           "to_pixels", "normalize_unit"]

MIN_SIZE = 8  # smallest frame side; smaller images cannot hold even the smallest window

# power of ten of each normalised length unit in metres (exponents keep 1 um / 1 nm exact)
_LENGTH = {"pm": -12, "A": -10, "nm": -9, "um": -6, "mm": -3, "m": 0}
_ALIASES = {
    "µm": "um", "μm": "um", "micron": "um", "microns": "um", "micrometer": "um",
    "micrometre": "um", "micrometers": "um", "micrometres": "um", "u": "um",
    "Å": "A", "Å": "A", "angstrom": "A", "angstroms": "A", "ang": "A",
    "nanometer": "nm", "nanometre": "nm", "nanometers": "nm", "nanometres": "nm",
    "picometer": "pm", "picometre": "pm", "picometers": "pm", "picometres": "pm",
    "millimeter": "mm", "millimetre": "mm", "millimeters": "mm", "millimetres": "mm",
    "meter": "m", "metre": "m", "meters": "m", "metres": "m",
    "pixel": "px", "pixels": "px", "pix": "px",
}

_FORMATS = {
    ".tif": "TIFF", ".tiff": "TIFF", ".npy": "NumPy", ".npz": "NumPy archive",
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".h5": "HDF5", ".hdf5": "HDF5",
    ".hdf": "HDF5", ".nsid": "HDF5", ".ibw": "Igor binary wave", ".dm3": "DigitalMicrograph",
    ".dm4": "DigitalMicrograph",
}


@dataclass
class ImageStack:
    """A validated image stack with its calibration.

    Attributes
    ----------
    data : ndarray
        ``float32`` array ``(frame, y, x)``, finite, no constant frame, frames at least 8 x 8.
    pixel_size : float or None
        Physical size of one pixel along x (square pixels assumed; when the file says y
        differs, ``metadata["pixel_size_y"]`` holds it).
    unit : str or None
        Normalised unit of `pixel_size` (``"nm"``, ``"um"``, ...).
    channel : str or None
        The channel read; ``channels`` lists all channels the file has.
    control, control_name : ndarray or None, str or None
        Per-frame control values (time, composition, ...) and their name.
    source : str
        The path read, or ``"array"``.
    metadata : dict
        Anything else worth keeping; JSON-serialisable.
    """

    data: np.ndarray
    pixel_size: float | None = None
    unit: str | None = None
    channel: str | None = None
    channels: tuple[str, ...] = ()
    control: np.ndarray | None = None
    control_name: str | None = None
    source: str = "array"
    metadata: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- units

def normalize_unit(unit):
    """Return the normalised spelling of a unit string (``"µm"`` -> ``"um"``), None for none.

    Examples
    --------
    >>> normalize_unit("µm"), normalize_unit("Å"), normalize_unit(" NM "), normalize_unit("")
    ('um', 'A', 'nm', None)
    """
    if unit is None:
        return None
    if isinstance(unit, bytes):
        unit = unit.decode("latin-1")
    unit = str(unit).strip()
    if unit in ("", "<undefined>", "None"):
        return None
    if unit in _ALIASES:
        return _ALIASES[unit]
    if unit in _LENGTH:
        return unit
    low = unit.lower()
    if low in _LENGTH and low != "a":  # lower-case "a" is not an ångström
        return low
    return _ALIASES.get(low, unit)


def _friendly_length(size, unit):
    """Express a length in the largest unit (pm..m) in which it is >= 1; other units unchanged."""
    unit = normalize_unit(unit)
    if size is None or unit not in _LENGTH or unit == "A":
        return size, unit
    best = "pm"
    for name in ("pm", "nm", "um", "mm", "m"):
        if size * 10.0 ** (_LENGTH[unit] - _LENGTH[name]) >= 1 - 1e-9:
            best = name
    # 12 significant digits: 2e-6 m / 256 reads 7.8125 nm, not 7.812499999999999
    return float(f"{size * 10.0 ** (_LENGTH[unit] - _LENGTH[best]):.12g}"), best


def physical_to_pixels(value, unit, pixel_size, pixel_unit):
    """Convert a physical length (e.g. 20 nm) to pixels.

    Parameters
    ----------
    value : float
        The length.
    unit : str
        Its unit (``"nm"``, ``"um"``, ``"µm"``, ``"Å"``, ``"px"``...).
    pixel_size : float or None
        Size of one pixel in `pixel_unit`.
    pixel_unit : str or None
        Unit of `pixel_size`.

    Returns
    -------
    float
        The length in pixels (not rounded).

    Raises
    ------
    ScaleVAEError
        If the pixel size is unknown or the units cannot be converted into each other.

    Examples
    --------
    >>> physical_to_pixels(20, "nm", 2.0, "nm")
    10.0
    >>> physical_to_pixels(0.1, "um", 12.5, "nm")
    8.0
    """
    u = normalize_unit(unit)
    if u == "px":
        return float(value)
    if pixel_size is None or not np.isfinite(pixel_size) or pixel_size <= 0:
        raise ScaleVAEError(
            f"cannot convert {value:g} {unit} to pixels: the pixel size is unknown; give the "
            "length in pixels, or give the pixel size and unit (pixel_size=..., unit='nm')")
    pu = normalize_unit(pixel_unit)
    if u is not None and u == pu:
        return float(value) / float(pixel_size)
    if u in _LENGTH and pu in _LENGTH:
        return float(value) * 10.0 ** (_LENGTH[u] - _LENGTH[pu]) / float(pixel_size)
    raise ScaleVAEError(
        f"cannot convert {value:g} {unit!s} to pixels of {pixel_size:g} {pixel_unit!s}: "
        f"units must be the same or both lengths ({', '.join(_LENGTH)}, px)")


to_pixels = physical_to_pixels  # short alias


# ----------------------------------------------------------------------------- validation

def _jsonable(obj, depth=0):
    """Turn metadata into plain JSON types; drop what cannot be represented."""
    if depth > 8:
        return None
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = _jsonable(v, depth + 1)
            if v is not None:
                out[str(k)] = v
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), depth + 1) if obj.size <= 64 else None
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, bytes):
        obj = obj.decode("latin-1")
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _where(source):
    return "" if source == "array" else f"{source}: "


def _check_values(a, at):
    """float32 copy of a (frame, y, x) array; NaN/inf and constant frames are errors."""
    with np.errstate(over="ignore", invalid="ignore"):
        data = np.array(a, dtype=np.float32)  # a copy: the caller's array is never aliased
    bad = ~np.isfinite(data)
    if bad.any():
        n_bad, n_nan = int(bad.sum()), int(np.isnan(data).sum())
        f, y, x = (int(i) for i in np.argwhere(bad)[0])
        frames = np.flatnonzero(bad.any(axis=(1, 2)))
        where = ", ".join(map(str, frames[:5])) + (", ..." if len(frames) > 5 else "")
        with np.errstate(invalid="ignore"):
            overflow = bool(np.isfinite(np.asarray(a, dtype=np.float64)).all())
        cause = " (values beyond the float32 range: rescale the data)" if overflow else ""
        raise ScaleVAEError(
            f"{at}the image has {n_bad} non-finite values ({n_nan} NaN, {n_bad - n_nan} inf) "
            f"in frame(s) {where}, first at frame {f}, y={y}, x={x}{cause}; the model cannot "
            "train on them: fill them (e.g. np.nan_to_num(a, nan=np.nanmedian(a))) or crop "
            "them away")
    flat = data.reshape(len(data), -1)
    const = np.flatnonzero(flat.max(axis=1) == flat.min(axis=1))
    if len(const):
        more = f" and {len(const) - 1} more frame(s) too" if len(const) > 1 else ""
        raise ScaleVAEError(
            f"{at}frame {int(const[0])} is constant (every pixel = "
            f"{float(flat[const[0], 0]):g}){more}; it holds no structure: drop it, or check "
            "the channel and the file")
    return data


def _check_calibration(pixel_size, unit, at):
    unit = normalize_unit(unit)
    if pixel_size is None:
        if unit is not None:
            raise ScaleVAEError(
                f"{at}unit {unit!r} was given without pixel_size; pass both or neither")
        return None, None
    try:
        pixel_size = float(pixel_size)
    except (TypeError, ValueError) as exc:
        raise ScaleVAEError(f"{at}pixel_size must be a number, got {pixel_size!r}") from exc
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ScaleVAEError(f"{at}pixel_size must be positive and finite, got {pixel_size}")
    if unit is None:
        raise ScaleVAEError(
            f"{at}pixel_size {pixel_size:g} was given without a unit; pass unit='nm' (or "
            "'um', 'A', ...)")
    return pixel_size, unit


def _check_control(control, n_frames, at):
    if control is None:
        return None
    try:
        control = np.asarray(control, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ScaleVAEError(f"{at}control values must be numbers, one per frame: {exc}") from exc
    if len(control) != n_frames:
        raise ScaleVAEError(
            f"{at}got {len(control)} control values for {n_frames} frames; give exactly one "
            "value per frame")
    if not np.isfinite(control).all():
        raise ScaleVAEError(f"{at}control values must be finite (no NaN or inf)")
    return control


def _build(array, pixel_size=None, unit=None, control=None, control_name=None,
           source="array", channel=None, channels=(), metadata=None):
    """Validate an array and wrap it; shared by :func:`as_stack` and every reader."""
    at = _where(source)
    try:
        a = np.asarray(array)
    except Exception as exc:  # ragged lists and the like
        raise ScaleVAEError(f"{at}cannot make a numeric array from the input: {exc}") from exc
    if np.iscomplexobj(a):
        raise ScaleVAEError(
            f"{at}the image is complex ({a.dtype}); pass a real image such as np.abs(a), "
            "a.real or np.angle(a)")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ScaleVAEError(f"{at}the image has non-numeric dtype {a.dtype}; pass numbers")
    if a.ndim < 2:
        raise ScaleVAEError(
            f"{at}need a 2-D image (y, x) or a 3-D stack (frame, y, x), got {a.ndim}-D shape "
            f"{a.shape}; reshape it, e.g. a.reshape(ny, nx)")
    if a.ndim > 3:
        hint = (" it has length-1 axes: try np.squeeze(a)" if 1 in a.shape else
                " select one channel or flatten the extra axes into frames, e.g. "
                "a.reshape(-1, ny, nx)")
        raise ScaleVAEError(
            f"{at}need a 2-D image (y, x) or a 3-D stack (frame, y, x), got {a.ndim}-D shape "
            f"{a.shape};{hint}")
    if a.ndim == 3 and a.shape[-1] in (3, 4) and min(a.shape[:2]) >= MIN_SIZE:
        raise ScaleVAEError(
            f"{at}the array of shape {a.shape} looks like an RGB(A) colour image (y, x, colour); "
            "convert it to grayscale first (e.g. skimage.color.rgb2gray(a[..., :3])), or pass "
            "a stack shaped (frame, y, x)")
    if a.ndim == 2:
        a = a[np.newaxis]
    if a.shape[0] == 0:
        raise ScaleVAEError(f"{at}the stack has no frames (shape {a.shape})")
    if min(a.shape[1:]) < MIN_SIZE:
        raise ScaleVAEError(
            f"{at}the image is {a.shape[1]} x {a.shape[2]} pixels, too small: at least "
            f"{MIN_SIZE} x {MIN_SIZE} needed (shape {a.shape}, read as (frame, y, x))")
    data = _check_values(a, at)
    pixel_size, unit = _check_calibration(pixel_size, unit, at)
    control = _check_control(control, len(data), at)
    if control_name is not None and not isinstance(control_name, str):
        raise ScaleVAEError(f"control_name must be a string, got {control_name!r}")

    return ImageStack(
        data=data, pixel_size=pixel_size, unit=unit, channel=channel,
        channels=tuple(str(c) for c in channels), control=control, control_name=control_name,
        source=str(source), metadata=_jsonable(dict(metadata or {})))


def as_stack(array, pixel_size=None, unit=None, control=None, control_name=None, source="array"):
    """Validate an array (or an :class:`ImageStack`) and return an :class:`ImageStack`.

    Parameters
    ----------
    array : array_like or ImageStack
        A 2-D image ``(y, x)`` or a 3-D stack ``(frame, y, x)``; bool and integer data are
        converted to ``float32``. An :class:`ImageStack` is validated again, keeping its fields
        unless new ones are given.
    pixel_size : float, optional
        Size of one pixel; requires `unit`.
    unit : str, optional
        Unit of `pixel_size` (``"nm"``, ``"um"``, ``"µm"``, ``"Å"``...), normalised.
    control : array_like, optional
        One control value per frame (time, composition...).
    control_name : str, optional
        What `control` is.
    source : str
        Where the data came from, used in messages.

    Returns
    -------
    ImageStack

    Raises
    ------
    ScaleVAEError
        For 1-D or 4-D+ input, an ``(y, x, 3|4)`` colour array, complex data, NaN/inf, a
        constant frame, frames smaller than 8 x 8, or control values that do not match.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = as_stack(rng.random((64, 64)), pixel_size=0.5, unit="µm")
    >>> s.data.shape, s.data.dtype, s.unit
    ((1, 64, 64), dtype('float32'), 'um')
    """
    if isinstance(array, ImageStack):
        s = array
        return _build(s.data, s.pixel_size if pixel_size is None else pixel_size,
                      s.unit if unit is None else unit,
                      s.control if control is None else control,
                      s.control_name if control_name is None else control_name,
                      s.source if source == "array" else source, s.channel, s.channels,
                      s.metadata)
    return _build(array, pixel_size, unit, control, control_name, source)


# ----------------------------------------------------------------------------- channels

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


def read_image(path, channel=None):
    """Read an image or image stack from a file into a validated :class:`ImageStack`.

    Parameters
    ----------
    path : str or Path
        TIFF, ``.npy``, ``.npz``, PNG, JPEG, HDF5 (NSID or a single dataset), Asylum ``.ibw``
        or Gatan ``.dm3``/``.dm4`` file.
    channel : str, optional
        Which channel to read from a multi-channel file (case-insensitive): the ``quantity``
        of an NSID dataset (e.g. ``"AmplitudeRetrace"``), an ``.ibw`` layer label, an
        ``.npz`` array name, a TIFF channel index. Required when the file has several.

    Returns
    -------
    ImageStack
        Data ``(frame, y, x)``; pixel size and unit when the file has them.

    Raises
    ------
    ScaleVAEError
        Missing file, unknown type, corrupt file, missing or unknown channel, or data that
        fail :func:`as_stack`'s checks.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "img.npy")
    >>> np.save(p, np.random.default_rng(0).random((32, 48)))
    >>> read_image(p).data.shape
    (1, 32, 48)
    """
    path, fmt = _format_of(path)
    raw = _run_reader(path, fmt, channel)
    raw["source"] = str(path)
    raw.setdefault("metadata", {})["format"] = fmt
    stack = _build(**raw)
    try:
        json.dumps(stack.metadata)
    except (TypeError, ValueError):  # pragma: no cover - _jsonable should prevent this
        stack.metadata = {"format": fmt}
    return stack


def list_channels(path):
    """Names of the channels a file has (the values ``channel=`` accepts); [] if it has none.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "two.npz")
    >>> rng = np.random.default_rng(0)
    >>> np.savez(p, height=rng.random((16, 16)), phase=rng.random((16, 16)))
    >>> list_channels(p)
    ['height', 'phase']
    """
    path, fmt = _format_of(path)
    return list(_run_reader(path, fmt, None, names_only=True).get("channels", []))
