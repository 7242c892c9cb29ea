"""One normalisation for the whole data set, fitted once and applied to every patch."""

from __future__ import annotations

import math

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


# pixels a lazily read stack is normalised from (an even sample of every frame): the median of
# 4 Mi pixels is within about 1e-3 of the spread of the full median, and the sample (float64) and
# its deviations share one 32 MiB buffer
LAZY_SAMPLE = 2**22


def _fit_lazy(frames):
    """:func:`fit_normalization` of frames read from disk, on an even sample of their pixels.

    The sample takes every ``stride``-th pixel of the flattened stack, ``stride`` coprime with the
    frame width so that the sample visits every column; it is filled block by block into one
    buffer, and the median and MAD are taken in place (no copies of the sample)."""
    nx = frames.shape[-1]
    stride = max(1, int(np.ceil(frames.size / LAZY_SAMPLE)))
    while stride > 1 and math.gcd(stride, nx) != 1:
        stride += 1
    sample = np.empty(-(-frames.size // stride), np.float64)
    n = 0
    for start, block in frames.chunks():
        first = (-start * block[0].size) % stride  # keeps one stride across block boundaries
        part = block.ravel()[first::stride]
        sample[n:n + len(part)] = part
        n += len(part)
    sample = sample[:n]
    if n == 0 or not np.isfinite(sample).all():
        raise ScaleVAEError("cannot normalise: the image is empty or holds NaN/infinite values")
    med = float(np.median(sample, overwrite_input=True))
    np.subtract(sample, med, out=sample)
    np.abs(sample, out=sample)
    mad = float(np.median(sample, overwrite_input=True))
    where = f" (every {stride}th pixel of the stack, read from disk)" if stride > 1 else ""
    if mad > 0:
        return {"offset": med, "scale": 1.4826 * mad,
                "rule": "(x - median) / (1.4826 * MAD) over all frames" + where}
    # std of |x - median| is not std of x: take the root mean square deviation from the mean
    # of x - median, which the buffer no longer holds; read the blocks again (rare: MAD = 0)
    total, total_sq, count = 0.0, 0.0, 0
    for _, block in frames.chunks():
        b = block.astype(np.float64) - med
        total, total_sq, count = total + b.sum(), total_sq + (b * b).sum(), count + b.size
    std = float(np.sqrt(max(total_sq / count - (total / count) ** 2, 0.0)))
    if std == 0:
        raise ScaleVAEError("cannot normalise: the image is constant, there is no structure to learn")
    return {"offset": med, "scale": std,
            "rule": "(x - median) / std over all frames (MAD is 0: most pixels are equal)" + where}
