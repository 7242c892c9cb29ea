"""Keypoints: the points where descriptors (patches) are centred.

Keypoints are a ``float64`` array of shape ``(n, 3)`` with columns ``frame, y, x`` in pixels;
pixel centres lie at integer coordinates (pixel ``k`` covers ``[k - 0.5, k + 0.5]``) and
fractional positions are allowed. A patch of window ``w`` centred at ``(y, x)`` samples the
pixel centres ``y + i - (w - 1) / 2``, ``i = 0 .. w - 1``; it lies inside the frame iff
``(w - 1) / 2 <= y <= ny - 1 - (w - 1) / 2`` (same for ``x``).

Sources: a uniform grid (:func:`grid_keypoints`), atomic columns (:func:`atom_keypoints`),
SIFT scale-space keypoints (:func:`sift_keypoints`) or a user file (:func:`read_keypoints`);
:func:`make_keypoints` parses the one-word specification the command line uses.

What lives where: :mod:`.grid`, :mod:`.atoms` and :mod:`.sift` (the detectors), :mod:`.files`
(keypoint files and :func:`check_points`, the checks every keypoint array passes) and
:mod:`.select` (:func:`inside_mask`, the one rule for a whole patch inside the frame, and
:func:`select_inside`); :func:`make_keypoints` is here.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._checks import as_frames, positive_whole
from ..errors import ScaleVAEError
from .atoms import atom_detection, atom_keypoints, atom_windows
from .files import check_points, read_keypoints
from .grid import grid_keypoints
from .select import check_in_image, check_inside, inside_mask, outside_image, select_inside
from .sift import sift_keypoints

__all__ = [
    "grid_keypoints", "atom_keypoints", "sift_keypoints", "read_keypoints", "make_keypoints",
    "keypoint_details", "atom_windows",
    "inside_mask", "select_inside", "check_points", "check_in_image", "check_inside", "outside_image",
]

_SPECS = "'grid:STEP' (e.g. grid:4), 'atoms', 'atoms:SIZE' (nearest-neighbour atom spacing in px, e.g. the C-C bond), 'sift', " \
         "a keypoint file (.csv with header frame,y,x, .npy, .txt), or an (n, 3) array"
_FILE_SUFFIXES = (".csv", ".npy", ".txt", ".tsv")


def make_keypoints(spec, stack, **kw):
    """Keypoints from a specification: ``"grid:4"``, ``"atoms"``, ``"atoms:3.5"``, ``"sift"``, a file or an array.

    Parameters
    ----------
    spec : str, Path or array
        ``"grid:STEP"`` (grid spacing in px), ``"atoms"`` or ``"atoms:SIZE"`` (nearest-neighbour
        spacing of the atom columns in px, for graphene the C-C bond; measured from the image
        when left out), ``"sift"``, a keypoint file (see :func:`read_keypoints`), or an ``(n, 3)`` array
        ``frame, y, x`` (``(n, 2)``: ``y, x`` in frame 0).
    stack : (frame, y, x) or (y, x) array
    **kw
        Passed to the detector (``threshold`` for atoms, SIFT options for sift).

    Returns
    -------
    points : (n, 3) float64 array

    Examples
    --------
    >>> import numpy as np
    >>> make_keypoints("grid:8", np.zeros((2, 32, 32))).shape
    (32, 3)
    """
    data = as_frames(stack)
    n_frames, ny, nx = data.shape
    if isinstance(spec, (str, Path)) and not (isinstance(spec, str) and _is_detector(spec)):
        p = Path(spec)
        if p.suffix.lower() in _FILE_SUFFIXES or p.is_file():
            pts = read_keypoints(p, n_frames)
            check_in_image(pts, (ny, nx), f"file {p.name!r}")
            return pts
        raise ScaleVAEError(f"unknown keypoints {str(spec)!r}; use {_SPECS}")
    if isinstance(spec, str):
        name, _, arg = spec.strip().lower().partition(":")
        if name == "grid":
            if not arg:
                raise ScaleVAEError("'grid' needs a step in px, e.g. 'grid:4'")
            return grid_keypoints(data.shape, positive_whole(arg, f"the grid step in {spec!r}"))
        if name == "atoms":
            if arg:
                kw["size"] = _atom_size(spec, arg)
            return atom_keypoints(data, **kw)
        if arg:
            raise ScaleVAEError(f"'sift' takes no argument, got {spec!r}")
        return sift_keypoints(data, **kw)
    pts = check_points(spec, n_frames, "the array")
    check_in_image(pts, (ny, nx), "the array")
    return pts


def _is_detector(spec):
    name, _, arg = spec.strip().lower().partition(":")
    return name in ("grid", "atoms", "sift") and "/" not in arg and "\\" not in arg



def keypoint_details(spec, stack, **kw):
    """:func:`make_keypoints` and what the detector learnt about the image on the way.

    For ``"atoms"`` keypoints the details are the measured lattice (``lattice_bond_px``, the
    nearest-neighbour distance the detection used; ``lattice_kind``, ``lattice_constant_px``,
    ``lattice_orientations_deg`` as JSON text, one angle per grain) and
    ``atoms_masked_fraction``, the share of the image that shows no lattice (amorphous
    material, contamination, vacuum) and holds no keypoint. A run stores them with its result;
    the default windows of atom keypoints start from the bond (:func:`atom_windows`). Other
    sources have no details (an empty dict).

    Examples
    --------
    >>> import numpy as np
    >>> pts, details = keypoint_details("grid:8", np.zeros((1, 32, 32)))
    >>> pts.shape, details
    ((16, 3), {})
    """
    if not (isinstance(spec, str) and spec.strip().lower().partition(":")[0] == "atoms"):
        return make_keypoints(spec, stack, **kw), {}
    arg = spec.strip().lower().partition(":")[2]
    if arg:
        kw["size"] = _atom_size(spec, arg)
    det = atom_detection(as_frames(stack), **kw)
    lat = det.lattice
    details = {"lattice_bond_px": float(det.spacing),
               "atoms_masked_fraction": float(det.masked_fraction),
               "lattice_kind": lat.kind if lat is not None else "none",
               "lattice_constant_px": float(lat.constant) if lat is not None else float("nan"),
               "lattice_orientations_deg": json.dumps(
                   [round(float(a), 2) for a in lat.orientations] if lat is not None else [])}
    return det.points, details


def _atom_size(spec, arg) -> float:
    """The spacing of ``"atoms:SIZE"`` in px."""
    try:
        return float(arg)
    except ValueError:
        raise ScaleVAEError(f"in {spec!r} the atom size must be a number of px (the "
                            "nearest-neighbour spacing of the atom columns), e.g. 'atoms:12'"
                            ) from None
