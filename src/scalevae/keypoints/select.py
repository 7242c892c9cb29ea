"""Which keypoints lie on the image, and which have a whole patch inside the frame."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ScaleVAEError

#: Fewer keypoints than this (after dropping those too close to the edge) are too few to
#: train a VAE on: :func:`select_inside` warns, stating the number.
MIN_KEYPOINTS = 100


def outside_image(points, frame_shape):
    """Mask of points whose centre is not on any pixel of the frame.

    Examples
    --------
    >>> outside_image(np.array([[0, -0.5, 3], [0, 9.6, 3]]), (10, 10))
    array([False,  True])
    """
    ny, nx = frame_shape
    y, x = points[:, 1], points[:, 2]
    return (y < -0.5) | (y > ny - 0.5) | (x < -0.5) | (x > nx - 0.5)


def _refuse(points, bad, what, fix):
    """Raise naming how many keypoints `bad` marks, the first of them, and the fix."""
    k = int(np.flatnonzero(bad)[0])
    f, y, x = points[k]
    raise ScaleVAEError(
        f"{int(bad.sum())} of {len(points)} keypoints {what}, e.g. keypoint {k} at frame "
        f"{int(f)}, y={y:g}, x={x:g}; {fix}")


def check_in_image(points, frame_shape, source):
    """Raise if a keypoint's centre lies on no pixel of the frame; `source` names them.

    Examples
    --------
    >>> check_in_image(np.array([[0, 2.0, 3.0]]), (10, 10), "the array")
    """
    bad = outside_image(points, frame_shape)
    if bad.any():
        ny, nx = frame_shape
        _refuse(points, bad, f"from {source} lie outside the {ny} x {nx} image",
                f"positions are in pixels with pixel centres at 0 .. {ny - 1} (y) and "
                f"0 .. {nx - 1} (x): check the column order (frame,y,x) and the units")


def check_inside(points, frame_shape, window):
    """Raise if a keypoint's patch of `window` px reaches past the frame (see :func:`inside_mask`).

    Examples
    --------
    >>> check_inside(np.array([[0, 3.5, 3.5]]), (20, 16), 8)
    """
    bad = ~inside_mask(points, frame_shape, window)
    if bad.any():
        ny, nx = (int(s) for s in frame_shape[-2:])
        _refuse(points, bad, f"are too close to the edge of the {ny} x {nx} frame for a window "
                f"of {window} px", "drop them with scalevae.keypoints.select_inside(points, "
                "frame_shape, window) or pass padding='reflect' (--padding reflect)")


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

    Warns
    -----
    UserWarning
        If fewer than ``MIN_KEYPOINTS`` (100) keypoints are kept: too few to learn from.

    Examples
    --------
    >>> from scalevae.keypoints import grid_keypoints
    >>> pts = grid_keypoints((1, 32, 32), 4)
    >>> kept, dropped = select_inside(pts, (32, 32), 16)
    >>> len(kept), dropped
    (16, 48)
    """
    points = np.asarray(points, dtype=np.float64)
    window = int(np.max(window))
    ny, nx = (int(s) for s in frame_shape[-2:])
    check_in_image(points, (ny, nx), "the keypoints")
    if padding is not None:
        _warn_if_few(len(points), len(points), window)
        return points.copy(), 0
    mask = inside_mask(points, (ny, nx), window)
    if not mask.any():
        margin = (window - 1) / 2
        raise ScaleVAEError(
            f"no keypoint lies far enough inside the {ny} x {nx} frame for a window of {window} px "
            f"(its centre must be at least {margin:g} px from the edge pixels); use smaller "
            "windows, a finer grid, or padding: padding='reflect' (--padding reflect)")
    _warn_if_few(int(mask.sum()), len(points), window)
    return points[mask], int((~mask).sum())


def _warn_if_few(n_kept, n_given, window):
    """Warn, stating the numbers, when too few keypoints are left to train on."""
    if n_kept >= MIN_KEYPOINTS:
        return
    dropped = (f" ({n_given - n_kept} of {n_given} dropped as too close to the edge for a "
               f"window of {window} px)") if n_kept < n_given else ""
    warnings.warn(
        f"only {n_kept} keypoints to learn from{dropped}; fewer than {MIN_KEYPOINTS} is too few "
        "to train a VAE on: use a finer grid, check the atom spacing ('atoms:SIZE'), smaller "
        "windows or a larger image", stacklevel=3)
