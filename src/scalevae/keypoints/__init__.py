"""Keypoints: the points where descriptors (patches) are centred.

Keypoints are a ``float64`` array of shape ``(n, 3)`` with columns ``frame, y, x`` in pixels;
pixel centres lie at integer coordinates (pixel ``k`` covers ``[k - 0.5, k + 0.5]``) and
fractional positions are allowed. A patch of window ``w`` centred at ``(y, x)`` samples the
pixel centres ``y + i - (w - 1) / 2``, ``i = 0 .. w - 1``; it lies inside the frame iff
``(w - 1) / 2 <= y <= ny - 1 - (w - 1) / 2`` (same for ``x``).

Sources: a uniform grid (:func:`grid_keypoints`), atomic columns (:func:`atom_keypoints`),
SIFT scale-space keypoints (:func:`sift_keypoints`) or a user file (:func:`read_keypoints`);
:func:`make_keypoints` parses the one-word specification the command line uses.
"""

from __future__ import annotations

import csv
import io as _io
import numbers
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..errors import ScaleVAEError

__all__ = [
    "grid_keypoints", "atom_keypoints", "sift_keypoints", "read_keypoints", "make_keypoints",
    "inside_mask", "select_inside",
]

_SPECS = "'grid:STEP' (e.g. grid:4), 'atoms', 'atoms:SIZE' (atom diameter in px), 'sift', " \
         "a keypoint file (.csv with header frame,y,x, .npy, .txt), or an (n, 3) array"
_FILE_SUFFIXES = (".csv", ".npy", ".txt", ".tsv")


# ----------------------------------------------------------------------------- helpers

def _stack3(stack):
    """Return the image data as a (frame, y, x) array; accepts 2-D images and ImageStack."""
    if not isinstance(stack, np.ndarray) and hasattr(stack, "data"):
        stack = stack.data  # an io.ImageStack
    a = np.asarray(stack)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ScaleVAEError(
            f"expected an image (y, x) or a stack (frame, y, x), got an array of shape {a.shape}")
    return a


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real, str)):
        raise ScaleVAEError(f"{what} must be a positive whole number of pixels, got {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise ScaleVAEError(f"{what} must be a positive whole number of pixels, got {value!r}") from None
    if not np.isfinite(f) or f != int(f) or f <= 0:
        raise ScaleVAEError(f"{what} must be a positive whole number of pixels, got {value!r}")
    return int(f)


def _outside_image(points, frame_shape):
    """Mask of points whose centre is not on any pixel of the frame."""
    ny, nx = frame_shape
    y, x = points[:, 1], points[:, 2]
    return (y < -0.5) | (y > ny - 0.5) | (x < -0.5) | (x > nx - 0.5)


def _check_in_image(points, frame_shape, source):
    bad = _outside_image(points, frame_shape)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        f, y, x = points[k]
        ny, nx = frame_shape
        raise ScaleVAEError(
            f"{int(bad.sum())} of {len(points)} keypoints from {source} lie outside the "
            f"{ny} x {nx} image, e.g. keypoint {k} at frame {int(f)}, y={y:g}, x={x:g}; positions "
            f"are in pixels with pixel centres at 0 .. {ny - 1} (y) and 0 .. {nx - 1} (x): "
            "check the column order (frame,y,x) and the units")


def _validate_points(points, n_frames, source):
    """Turn an (n, 3) or (n, 2) array into checked float64 (n, 3) keypoints."""
    try:
        p = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ScaleVAEError(f"keypoints from {source} must be numbers (frame, y, x)") from None
    if p.ndim == 2 and p.shape[1] == 2:
        p = np.column_stack([np.zeros(len(p)), p])
    if p.ndim != 2 or p.shape[1] != 3:
        raise ScaleVAEError(
            f"keypoints from {source} must have shape (n, 3) with columns frame, y, x "
            f"(or (n, 2) with y, x for frame 0), got shape {p.shape}")
    if len(p) == 0:
        raise ScaleVAEError(f"{source} holds no keypoints")
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ScaleVAEError(f"keypoints from {source} contain NaN or infinite values "
                            f"({int(bad.sum())} rows, first: row {k}); remove those rows")
    f = p[:, 0]
    for mask, why in ((f != np.round(f), "is not a whole number"),
                      (f < 0, "is negative"),
                      (f >= n_frames, f"is past the last frame ({n_frames - 1})")):
        if mask.any():
            k = int(np.flatnonzero(mask)[0])
            raise ScaleVAEError(
                f"keypoints from {source}: frame {f[k]:g} in row {k} {why}; the image has "
                f"{n_frames} frame(s), numbered 0 .. {n_frames - 1}")
    return p


# ----------------------------------------------------------------------------- sources

def grid_keypoints(shape, step):
    """Uniform grid of keypoints, the same in every frame, centred in the frame.

    Parameters
    ----------
    shape : tuple of int
        ``(frames, ny, nx)`` (or ``(ny, nx)`` for one frame).
    step : int
        Grid spacing in pixels, a positive whole number.

    Returns
    -------
    points : (n, 3) float64 array
        ``frame, y, x`` sorted by frame, then y, then x. Along each axis the grid holds every
        point ``c + k * step`` that fits in ``[0, n - 1]``, with ``c`` chosen so that the margins
        before the first and after the last point are equal (``c`` may be a half pixel).

    Examples
    --------
    >>> pts = grid_keypoints((1, 10, 12), 4)
    >>> pts.shape
    (9, 3)
    >>> np.unique(pts[:, 1]).tolist(), np.unique(pts[:, 2]).tolist()
    ([0.5, 4.5, 8.5], [1.5, 5.5, 9.5])
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3 or min(shape) < 1:
        raise ScaleVAEError(f"grid_keypoints needs a shape (frames, ny, nx) of positive sizes, got {shape}")
    step = _positive_int(step, "the grid step")
    axes = []
    for n in shape[1:]:
        count = (n - 1) // step + 1
        start = ((n - 1) - step * (count - 1)) / 2  # symmetric margins
        axes.append(start + step * np.arange(count))
    f, y, x = np.meshgrid(np.arange(shape[0]), axes[0], axes[1], indexing="ij")
    return np.column_stack([f.ravel(), y.ravel(), x.ravel()]).astype(np.float64)


def _estimate_atom_size(stack):
    """Half the dominant lattice period (px), from the frames' summed power spectra.

    Summing power spectra (not images) makes the estimate immune to drift between frames.
    """
    frames = stack[np.unique(np.linspace(0, len(stack) - 1, min(len(stack), 8)).astype(int))]
    ny, nx = frames.shape[1:]
    win = np.outer(np.hanning(ny), np.hanning(nx))  # a window keeps the edges out of the spectrum
    power = np.zeros((ny, nx))
    for fr in frames:
        fr = fr.astype(np.float64)
        power += np.abs(np.fft.fft2((fr - fr.mean()) * win)) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(ny), np.fft.fftfreq(nx), indexing="ij"))
    dk = 1.0 / max(ny, nx)
    bins = np.round(k / dk).astype(int)
    radial = np.bincount(bins.ravel(), power.ravel()) / np.maximum(np.bincount(bins.ravel()), 1)
    lo = max(4, int(np.ceil(max(ny, nx) / min(ny, nx) * 4)))  # periods above a quarter frame are not atoms
    hi = min(len(radial), int(0.5 / dk))                     # up to Nyquist
    if hi <= lo:
        raise ScaleVAEError("the image is too small to estimate the atom size; give it as 'atoms:SIZE'")
    period = 1.0 / (dk * (lo + int(np.argmax(radial[lo:hi]))))
    return max(2.0, period / 2)


def atom_keypoints(stack, size=None, threshold=0.15):
    """Positions of atoms (bright columns) in atomically resolved images, to sub-pixel accuracy.

    Each frame is band-pass filtered (a Gaussian matched to the atoms, sigma ``size / 3``,
    minus a broad Gaussian background, sigma ``size``), local maxima at least ``size / 2``
    apart and above ``threshold`` of the filtered image's contrast are kept
    (:func:`skimage.feature.peak_local_max`), and each maximum is refined by fitting a
    Gaussian (a parabola to the log intensity) through it and its neighbours along y and x.

    Parameters
    ----------
    stack : (frame, y, x) or (y, x) array
        Images with atoms brighter than the background (invert dark-atom images first).
    size : float, optional
        Expected atom (column) diameter in pixels. Default: half the dominant lattice period,
        estimated from the power spectrum.
    threshold : float, optional
        Minimum peak height as a fraction of the filtered contrast (from the background level,
        the median, to the 99.9th percentile): lower it to find faint atoms, raise it to reject noise.

    Returns
    -------
    points : (n, 3) float64 array
        ``frame, y, x`` with fractional positions, sorted by frame.

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
    ...           for cy in range(8, 60, 10) for cx in range(8, 60, 10))
    >>> pts = atom_keypoints(img, size=5)
    >>> len(pts)
    36
    """
    data = _stack3(stack)
    if size is None:
        size = _estimate_atom_size(data)
    try:
        size = float(size)
    except (TypeError, ValueError):
        raise ScaleVAEError(f"the atom size must be a number of pixels, got {size!r}") from None
    if not np.isfinite(size) or size <= 0:
        raise ScaleVAEError(f"the atom size must be a positive number of pixels, got {size!r}")
    if not 0 <= float(threshold) < 1:
        raise ScaleVAEError(f"threshold is a fraction of the image contrast in [0, 1), got {threshold!r}")
    from skimage.feature import peak_local_max

    distance = max(1, int(round(size / 2)))
    out = []
    for i, frame in enumerate(data):
        frame = frame.astype(np.float64)
        band = ndi.gaussian_filter(frame, max(size / 3, 0.5)) - ndi.gaussian_filter(frame, size)
        lo, hi = np.median(band), np.percentile(band, 99.9)
        if hi <= lo:
            continue
        peaks = peak_local_max(band, min_distance=distance, threshold_abs=lo + threshold * (hi - lo),
                               exclude_border=distance)
        if len(peaks):
            yx = _refine(band, peaks, floor=lo)
            out.append(np.column_stack([np.full(len(yx), i, float), yx]))
    if not out:
        raise ScaleVAEError(
            f"no atoms found (atom size {size:g} px, threshold {threshold:g}); give the atom "
            "diameter in px as 'atoms:SIZE', lower the threshold, or use 'grid:STEP'")
    return np.concatenate(out)


def _refine(band, peaks, floor):
    """Sub-pixel peak positions: a 3-point Gaussian fit along each axis (log-parabola)."""
    r, c = peaks[:, 0], peaks[:, 1]
    eps = 1e-12 * max(1.0, float(np.abs(band).max()))
    v = np.maximum(band - floor, eps)  # the fit needs positive values above the background
    pos = []
    for lo_, mid, hi_, base in ((v[r - 1, c], v[r, c], v[r + 1, c], r),
                                (v[r, c - 1], v[r, c], v[r, c + 1], c)):
        a, b, d = np.log(lo_), np.log(mid), np.log(hi_)
        denom = a - 2 * b + d
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(denom < 0, 0.5 * (a - d) / denom, 0.0)
        pos.append(base + np.clip(shift, -0.5, 0.5))
    return np.column_stack(pos)


def sift_keypoints(stack, **kw):
    """SIFT keypoints (:class:`skimage.feature.SIFT`) of each frame, duplicates removed.

    Parameters
    ----------
    stack : (frame, y, x) or (y, x) array
    **kw
        Passed to :class:`skimage.feature.SIFT` (e.g. ``c_dog``, ``n_octaves``).

    Returns
    -------
    points : (n, 3) float64 array
        ``frame, y, x`` (sub-pixel positions), sorted by frame.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> from scipy import ndimage as ndi
    >>> img = ndi.gaussian_filter(rng.random((96, 96)), 2)
    >>> sift_keypoints(img).shape[1]
    3
    """
    from skimage.feature import SIFT

    data = _stack3(stack)
    out = []
    for i, frame in enumerate(data):
        frame = frame.astype(np.float64)
        span = frame.max() - frame.min()
        frame = (frame - frame.min()) / (span if span > 0 else 1.0)  # SIFT's thresholds assume [0, 1]
        det = SIFT(**kw)
        try:
            det.detect(frame)
        except RuntimeError:  # skimage raises when a frame has no keypoint at all
            continue
        yx = np.unique(np.asarray(det.positions, dtype=np.float64), axis=0)
        out.append(np.column_stack([np.full(len(yx), i, float), yx]))
    out = [o for o in out if len(o)]
    if not out:
        raise ScaleVAEError("SIFT found no keypoints; use 'grid:STEP' or 'atoms' instead, "
                            "or lower SIFT's contrast threshold c_dog")
    return np.concatenate(out)


# ----------------------------------------------------------------------------- files

def read_keypoints(path, n_frames):
    """Read keypoints from a CSV/text file with a header ``frame,y,x`` or a NumPy ``.npy`` file.

    Parameters
    ----------
    path : str or Path
        CSV (``.csv``, ``.txt``, ``.tsv``; comma, semicolon, tab or space separated) whose header
        names the columns ``frame``, ``y``, ``x`` in any order (other columns are ignored), or
        ``.npy`` holding an ``(n, 3)`` array (frame, y, x) or ``(n, 2)`` array (y, x, frame 0).
    n_frames : int
        Number of frames of the image, to check the frame column.

    Returns
    -------
    points : (n, 3) float64 array

    Examples
    --------
    >>> import tempfile, os
    >>> fn = os.path.join(tempfile.mkdtemp(), "kp.csv")
    >>> _ = open(fn, "w").write("x,y,frame\\n3,4,0\\n5.5,6,0\\n")
    >>> read_keypoints(fn, 1)
    array([[0. , 4. , 3. ],
           [0. , 6. , 5.5]])
    """
    path = Path(path)
    if not path.is_file():
        raise ScaleVAEError(f"keypoint file {str(path)!r} does not exist")
    if path.suffix.lower() == ".npy":
        with open(path, "rb") as fh:  # without the magic np.load takes it for a pickle
            if fh.read(6) != b"\x93NUMPY":
                raise ScaleVAEError(f"cannot read keypoint file {str(path)!r} as NumPy: no NumPy "
                                    "header at its start; it may be corrupt or not a .npy file")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ScaleVAEError(f"cannot read keypoint file {str(path)!r} as NumPy: {e}") from None
        return _validate_points(arr, n_frames, f"{path.name!r}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return _parse_csv(text, n_frames, path.name)


def _parse_csv(text, n_frames, name):
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ScaleVAEError(f"keypoint file {name!r} is empty; it needs a header frame,y,x and one row per keypoint")
    head = lines[0]
    delim = next((d for d in (",", ";", "\t") if d in head), None)
    rows = (csv.reader(_io.StringIO("\n".join(lines)), delimiter=delim) if delim
            else (ln.split() for ln in lines))
    rows = iter(rows)
    header = [h.strip().lower() for h in next(rows)]
    missing = [c for c in ("frame", "y", "x") if c not in header]
    if missing:
        shown = ",".join(header)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."  # a binary file has no lines
        raise ScaleVAEError(
            f"keypoint file {name!r} lacks the column(s) {', '.join(missing)}; its header is "
            f"{shown!r} and must name frame, y and x (e.g. 'frame,y,x')")
    cols = [header.index(c) for c in ("frame", "y", "x")]
    values = []
    for lineno, row in enumerate(rows, start=2):
        try:
            values.append([float(row[c]) for c in cols])
        except IndexError:
            raise ScaleVAEError(f"keypoint file {name!r}, row {lineno}: too few values "
                                f"({len(row)} for {len(header)} columns)") from None
        except ValueError:
            bad = next(row[c] for c in cols if not _is_number(row[c]))
            raise ScaleVAEError(f"keypoint file {name!r}, row {lineno}: {bad.strip()!r} is not a number") from None
        if not np.isfinite(values[-1]).all():
            raise ScaleVAEError(f"keypoint file {name!r}, row {lineno}: NaN or infinite value; remove that row")
    if not values:
        raise ScaleVAEError(f"keypoint file {name!r} has a header but no keypoints")
    return _validate_points(np.array(values), n_frames, f"{name!r}")


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- dispatch

def make_keypoints(spec, stack, **kw):
    """Keypoints from a specification: ``"grid:4"``, ``"atoms"``, ``"atoms:3.5"``, ``"sift"``, a file or an array.

    Parameters
    ----------
    spec : str, Path or array
        ``"grid:STEP"`` (grid spacing in px), ``"atoms"`` or ``"atoms:SIZE"`` (atom diameter in
        px), ``"sift"``, a keypoint file (see :func:`read_keypoints`), or an ``(n, 3)`` array
        ``frame, y, x`` (``(n, 2)``: ``y, x`` in frame 0).
    stack : (frame, y, x) or (y, x) array
    **kw
        Passed to the detector (``threshold`` for atoms, SIFT options for sift).

    Returns
    -------
    points : (n, 3) float64 array

    Examples
    --------
    >>> make_keypoints("grid:8", np.zeros((2, 32, 32))).shape
    (32, 3)
    """
    data = _stack3(stack)
    n_frames, ny, nx = data.shape
    if isinstance(spec, (str, Path)) and not (isinstance(spec, str) and _is_detector(spec)):
        p = Path(spec)
        if p.suffix.lower() in _FILE_SUFFIXES or p.is_file():
            pts = read_keypoints(p, n_frames)
            _check_in_image(pts, (ny, nx), f"file {p.name!r}")
            return pts
        raise ScaleVAEError(f"unknown keypoints {str(spec)!r}; use {_SPECS}")
    if isinstance(spec, str):
        name, _, arg = spec.strip().lower().partition(":")
        if name == "grid":
            if not arg:
                raise ScaleVAEError("'grid' needs a step in px, e.g. 'grid:4'")
            return grid_keypoints(data.shape, _positive_int(arg, f"the grid step in {spec!r}"))
        if name == "atoms":
            if arg:
                try:
                    kw["size"] = float(arg)
                except ValueError:
                    raise ScaleVAEError(f"in {spec!r} the atom size must be a number of px, e.g. 'atoms:3.5'") from None
            return atom_keypoints(data, **kw)
        if arg:
            raise ScaleVAEError(f"'sift' takes no argument, got {spec!r}")
        return sift_keypoints(data, **kw)
    pts = _validate_points(spec, n_frames, "the array")
    _check_in_image(pts, (ny, nx), "the array")
    return pts


def _is_detector(spec):
    name, _, arg = spec.strip().lower().partition(":")
    return name in ("grid", "atoms", "sift") and "/" not in arg and "\\" not in arg


# ----------------------------------------------------------------------------- selection

def inside_mask(points, frame_shape, window):
    """Which keypoints have a patch of `window` px that lies fully inside the frame.

    Parameters
    ----------
    points : (n, 3) array
        ``frame, y, x``.
    frame_shape : (ny, nx)
    window : int
        Window size in pixels.

    Returns
    -------
    mask : (n,) bool array
        True iff ``(w - 1) / 2 <= y <= ny - 1 - (w - 1) / 2`` and the same for ``x``.

    Examples
    --------
    >>> inside_mask(np.array([[0, 3.5, 3.5], [0, 3, 3], [0, 10, 12.5]]), (20, 16), 8)
    array([ True, False, False])
    """
    points = np.asarray(points, dtype=np.float64)
    ny, nx = (int(s) for s in frame_shape[-2:])
    h = (float(window) - 1) / 2
    tol = 1e-9  # positions computed as sums of halves may round just past the edge
    y, x = points[:, 1], points[:, 2]
    return (y >= h - tol) & (y <= ny - 1 - h + tol) & (x >= h - tol) & (x <= nx - 1 - h + tol)


def select_inside(points, frame_shape, window, padding=None):
    """Keep the keypoints whose largest window fits in the frame (unless the frame is padded).

    Parameters
    ----------
    points : (n, 3) array
    frame_shape : (ny, nx)
    window : int or sequence of int
        The (largest) window in pixels.
    padding : str or None
        With a padding mode every keypoint is kept: patches reaching past the frame are padded.

    Returns
    -------
    kept : (m, 3) float64 array
        The kept keypoints, unchanged and in their original order.
    n_dropped : int

    Raises
    ------
    ScaleVAEError
        If a keypoint is outside the image altogether, or no keypoint is left.

    Examples
    --------
    >>> pts = grid_keypoints((1, 32, 32), 4)
    >>> kept, dropped = select_inside(pts, (32, 32), 16)
    >>> len(kept), dropped
    (16, 48)
    """
    points = np.asarray(points, dtype=np.float64)
    window = int(np.max(window))
    ny, nx = (int(s) for s in frame_shape[-2:])
    _check_in_image(points, (ny, nx), "the keypoints")
    if padding is not None:
        return points.copy(), 0
    mask = inside_mask(points, (ny, nx), window)
    if not mask.any():
        margin = (window - 1) / 2
        raise ScaleVAEError(
            f"no keypoint lies far enough inside the {ny} x {nx} frame for a window of {window} px "
            f"(its centre must be at least {margin:g} px from the edge pixels); use smaller "
            "windows, a finer grid, or padding='reflect'")
    return points[mask], int((~mask).sum())
