"""One normalisation for the whole data set, fitted once and applied to every patch."""

from __future__ import annotations

import numpy as np

from .._checks import stack_array
from ..errors import ScaleVAEError


def fit_normalization(stack):
    """One normalisation for the whole data set: subtract the median, divide by the robust std.

    Parameters
    ----------
    stack : array
        All frames (any shape).

    Returns
    -------
    dict
        ``{"offset": median, "scale": 1.4826 * MAD, "rule": "..."}``; patches are
        ``(x - offset) / scale``. When more than half the pixels are equal (MAD = 0) the
        standard deviation is the scale, and the rule says so.

    Examples
    --------
    >>> fit_normalization(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))["offset"]
    3.0
    """
    a = stack_array(stack)
    if getattr(a, "lazy", False):
        return _fit_lazy(a)
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all():
        raise ScaleVAEError("cannot normalise: the image is empty or holds NaN/infinite values")
    med = float(np.median(a))
    mad = float(np.median(np.abs(a - med)))
    if mad > 0:
        return {"offset": med, "scale": 1.4826 * mad, "rule": "(x - median) / (1.4826 * MAD) over all frames"}
    std = float(a.std())
    if std == 0:
        raise ScaleVAEError("cannot normalise: the image is constant, there is no structure to learn")
    return {"offset": med, "scale": std,
            "rule": "(x - median) / std over all frames (MAD is 0: most pixels are equal)"}


# pixels a lazily read stack is normalised from (an even sample of every frame)
LAZY_SAMPLE = 2**24


def _fit_lazy(frames):
    """:func:`fit_normalization` of frames read from disk, on an even sample of their pixels."""
    stride = max(1, int(np.ceil(frames.size / LAZY_SAMPLE)))
    sample = np.concatenate([block.ravel()[::stride].astype(np.float64)
                             for _, block in frames.chunks()])
    out = fit_normalization(sample)
    if stride > 1:
        out["rule"] += f" (every {stride}th pixel of the stack, read from disk)"
    return out
