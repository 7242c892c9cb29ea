"""Uniform grids of keypoints."""

from __future__ import annotations

import numpy as np

from .._checks import positive_whole
from ..errors import ScaleVAEError


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
    step = positive_whole(step, "the grid step")
    axes = []
    for n in shape[1:]:
        count = (n - 1) // step + 1
        start = ((n - 1) - step * (count - 1)) / 2  # symmetric margins
        axes.append(start + step * np.arange(count))
    f, y, x = np.meshgrid(np.arange(shape[0]), axes[0], axes[1], indexing="ij")
    return np.column_stack([f.ravel(), y.ravel(), x.ravel()]).astype(np.float64)
