"""Keypoints from files (CSV/text or NumPy), and the checks every keypoint array passes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .._checks import has_npy_header
from ..errors import ScaleVAEError


def check_points(points, n_frames, source, allow_empty=False):
    """Turn an (n, 3) or (n, 2) array into checked float64 (n, 3) keypoints.

    Parameters
    ----------
    points : array_like
        ``(n, 3)`` with columns ``frame, y, x``, or ``(n, 2)`` with ``y, x`` in frame 0.
    n_frames : int
        Number of frames of the image; frames must be whole numbers ``0 .. n_frames - 1``.
    source : str
        Where the keypoints came from, used in messages.
    allow_empty : bool
        Whether no keypoints at all is accepted.

    Returns
    -------
    points : (n, 3) float64 array

    Raises
    ------
    ScaleVAEError
        For another shape, non-numbers, NaN/inf, or a frame that is not in the image.

    Examples
    --------
    >>> check_points([[3, 4]], 1, "the array")
    array([[0., 3., 4.]])
    """
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
    if len(p) == 0 and not allow_empty:
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
        if not has_npy_header(path):  # without it np.load takes the file for a pickle
            raise ScaleVAEError(f"cannot read keypoint file {str(path)!r} as NumPy: no NumPy "
                                "header at its start; it may be corrupt or not a .npy file")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ScaleVAEError(f"cannot read keypoint file {str(path)!r} as NumPy: {e}") from None
        return check_points(arr, n_frames, f"{path.name!r}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return _parse_csv(text, n_frames, path.name)


def _parse_csv(text, n_frames, name):
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ScaleVAEError(f"keypoint file {name!r} is empty; it needs a header frame,y,x and one row per keypoint")
    head = lines[0]
    delim = next((d for d in (",", ";", "\t") if d in head), None)
    rows = (csv.reader(io.StringIO("\n".join(lines)), delimiter=delim) if delim
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
    return check_points(np.array(values), n_frames, f"{name!r}")


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False
