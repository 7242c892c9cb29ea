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
    a = np.asarray(stack_array(stack), dtype=np.float64).ravel()
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
