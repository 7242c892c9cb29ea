"""The validated in-memory image stack, and the public entry points that produce it.

Every reader ends in :func:`as_stack`'s checks, so whatever the file format, the rest of the
package sees an :class:`ImageStack`: a finite ``float32`` array ``(frame, y, x)`` with the pixel
size and unit where the file has them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ScaleVAEError
from .registry import format_of, run_reader
from .lazy import is_lazy, lazy_array
from .units import normalize_unit

MIN_SIZE = 8  # smallest frame side; smaller images cannot hold even the smallest window


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


def _check_lazy(frames, at):
    """:func:`_check_values` block by block for frames read from disk; returns them unchanged."""
    if min(frames.shape[1:]) < MIN_SIZE:
        raise ScaleVAEError(f"{at}the frames are {frames.shape[1]} x {frames.shape[2]} pixels, "
                            f"too small: at least {MIN_SIZE} x {MIN_SIZE} needed")
    for start, block in frames.chunks():
        _check_values(block, f"{at}frames from {start}: ")
    return frames


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
    """Validate an array and wrap it; shared by :func:`as_stack` and :func:`read_image`."""
    at = _where(source)
    array = lazy_array(array)  # a large h5py dataset or zarr array is read frame by frame
    if is_lazy(array):
        return ImageStack(data=_check_lazy(array, at), source=str(source), channel=channel,
                          channels=tuple(str(c) for c in channels),
                          pixel_size=_check_calibration(pixel_size, unit, at)[0],
                          unit=_check_calibration(pixel_size, unit, at)[1],
                          control=_check_control(control, len(array), at),
                          control_name=control_name, metadata=_jsonable(metadata or {}))
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
    path, fmt = format_of(path)
    raw = run_reader(path, fmt, channel)
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
    path, fmt = format_of(path)
    return list(run_reader(path, fmt, None, names_only=True).get("channels", []))
