"""SIFT scale-space keypoints as keypoints."""

from __future__ import annotations

import numpy as np

from .._checks import as_frames
from ..errors import ScaleVAEError


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

    data = as_frames(stack)
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
