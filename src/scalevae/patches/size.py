"""Default patch size: large enough that the largest window keeps the image's fine structure.

Every window is resampled to one ``r x r`` patch, so the largest window ``w_n`` is shrunk
``w_n / r``-fold and a period ``p`` px of the image becomes ``p * r / w_n`` px in its patch. Below
about 4 px per period the anti-aliasing prefilter (Gaussian, sigma ``(w_n / r - 1) / 2``) has
already removed most of it: the structure is averaged away at the large windows, exactly where
the method is meant to look at it. :func:`default_patch_size` reads the finest period that
carries a real share of the image's power from its own spectrum and picks the smallest patch
that keeps that period at >= 4 px in the largest window, within a cost bound.
"""

from __future__ import annotations

import math

import numpy as np

from ..io.lazy import is_lazy
from ..errors import ScaleVAEError

__all__ = ["radial_power_spectrum", "fine_period", "default_patch_size",
           "PIXELS_PER_PERIOD", "MAX_DEFAULT_PATCH"]

#: A period keeps ~4 px after shrinking: 2 px is the Nyquist limit, and the anti-aliasing
#: prefilter already damps a 2-3 px period to a fraction of its contrast.
PIXELS_PER_PERIOD = 4
#: px: upper bound of the automatic choice. A training step costs about (r / 8) ** 2 times the
#: 8 px one (validation/scales_cost.py: 3.7x at 16, 6.3x at 24, 10x at 32 px); 16 px also
#: still trains on one CPU thread (training.loop.cpu_threads). Larger sizes: give patch_size.
MAX_DEFAULT_PATCH = 16
#: Share of the above-noise, within-window spectral power that lies at periods >= the fine period.
POWER_FRACTION = 0.9
_MAX_FRAMES = 8  # frames averaged for the spectrum (a stack's frames share their structure)


def _frames(stack):
    data = getattr(stack, "data", stack)
    if is_lazy(data):  # a stack read frame by frame: the spectrum needs only a few frames
        idx = np.linspace(0, len(data) - 1, min(len(data), _MAX_FRAMES)).round().astype(int)
        data = data[np.unique(idx)]
    a = np.asarray(data, dtype=float)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape[1:]) < 8:
        raise ScaleVAEError(f"need a 2-D image or a (frame, y, x) stack with frames of at least "
                            f"8 x 8 px (got shape {a.shape}); pass the image array itself")
    if not np.isfinite(a).all():
        raise ScaleVAEError("the image holds NaN or infinite values; replace them (e.g. "
                            "np.nan_to_num) before estimating its spectrum")
    idx = np.linspace(0, len(a) - 1, min(len(a), _MAX_FRAMES)).round().astype(int)
    return a[np.unique(idx)]


def radial_power_spectrum(image):
    """Radially averaged power spectrum of an image (or the mean over a stack's frames).

    Each frame has its mean removed and is multiplied by a 2-D Hann window (so the frame's
    edges do not leak power to all frequencies), then ``|FFT|^2`` is averaged in rings of width
    ``1 / min(ny, nx)`` cycles/px.

    Parameters
    ----------
    image : array_like
        2-D image or ``(frame, y, x)`` stack (or an :class:`~scalevae.io.ImageStack`).

    Returns
    -------
    k : ndarray
        Ring centres in cycles/px, from ``1 / n`` to 0.5 (``n`` the smaller frame side).
    power : ndarray
        Mean power per ring (same length).

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:128, :128]
    >>> k, p = radial_power_spectrum(np.sin(2 * np.pi * xx / 16))
    >>> round(1 / k[np.argmax(p)])
    16
    """
    frames = _frames(image)
    _, ny, nx = frames.shape
    n = min(ny, nx)
    hann = np.outer(np.hanning(ny), np.hanning(nx))
    power = np.zeros((ny, nx))
    for f in frames:
        power += np.abs(np.fft.fft2((f - f.mean()) * hann)) ** 2
    power /= len(frames)
    kr = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :])
    ring = np.rint(kr * n).astype(int)
    keep = (ring >= 1) & (ring <= n // 2)
    sums = np.bincount(ring[keep], power[keep], minlength=n // 2 + 1)[1:]
    counts = np.bincount(ring[keep], minlength=n // 2 + 1)[1:]
    k = np.arange(1, n // 2 + 1) / n
    return k, sums / np.maximum(counts, 1)


def fine_period(image, max_period=None, fraction=POWER_FRACTION):
    """The finest period (px) that still carries a real share of an image's structure.

    From :func:`radial_power_spectrum`: the white-noise floor (median power of the outer 20 %
    of frequencies, where smooth structure has decayed) is subtracted; of the remaining power at
    periods up to ``max_period`` (structure coarser than that is variation *between* patches,
    not inside them), the finest period at which a ``fraction`` of it has been accumulated
    (counting from coarse to fine) is returned. Structure finer than that holds less than
    ``1 - fraction`` of the power above noise. The Hann window spreads a sharp peak over
    about two neighbouring rings, so a pure period can come out up to two rings finer: a
    conservative error (a larger patch).

    Parameters
    ----------
    image : array_like
        2-D image or ``(frame, y, x)`` stack.
    max_period : float, optional
        Coarsest period considered, px (e.g. the largest window). Default: the frame.
    fraction : float
        Share of the above-noise power at periods >= the returned one, in (0, 1).

    Returns
    -------
    float
        Period in px, at least 2 (the Nyquist limit).

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:128, :128]
    >>> coarse = np.sin(2 * np.pi * xx / 32)
    >>> 24 <= fine_period(coarse) <= 32
    True
    >>> round(fine_period(coarse + np.sin(2 * np.pi * yy / 8)))
    8
    """
    if not 0 < fraction < 1:
        raise ScaleVAEError(f"fraction must lie in (0, 1) (got {fraction})")
    k, p = radial_power_spectrum(image)
    floor = np.median(p[k >= 0.4])
    excess = np.clip(p - floor, 0.0, None)
    if max_period is not None:
        excess[k < 1.0 / float(max_period)] = 0.0
    total = excess.sum()
    if total <= 0:  # nothing above white noise: no structure to keep
        return 2.0
    cum = np.cumsum(excess) / total
    i = int(np.searchsorted(cum, fraction))
    return float(max(1.0 / k[min(i, len(k) - 1)], 2.0))


def default_patch_size(stack, windows, max_size=MAX_DEFAULT_PATCH):
    """The patch size every window is resampled to when the user gives none, and why.

    Rule: the smallest patch ``r`` (a multiple of 4) at which the image's fine period ``p``
    (:func:`fine_period` with ``max_period`` = the largest window ``w_n``) keeps
    ``PIXELS_PER_PERIOD`` (4) px after the largest window is shrunk to ``r``:
    ``r >= 4 * w_n / p``, clipped to ``[w_1, max(max_size, w_1)]``.
    ``max_size`` bounds the training cost (it grows about as ``r ** 2``). When the structure is
    coarse the patch is the smallest window (no window is upsampled); when it is fine the
    smaller windows are upsampled to ``r`` so that the largest keep their detail.

    Parameters
    ----------
    stack : array_like or ImageStack
        The image or ``(frame, y, x)`` stack the patches are cut from.
    windows : sequence of int
        Window sizes in px, increasing.
    max_size : int
        Upper bound of the automatic choice, px.

    Returns
    -------
    size : int
        Patch size in px.
    reason : str
        One sentence stating the fine period, the shrink factor and the bound, for the output.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:256, :256]
    >>> img = np.sin(2 * np.pi * xx / 32)
    >>> r, why = default_patch_size(img, [8, 16, 32, 64])
    >>> r
    12
    >>> default_patch_size(img, [8, 12, 16])[0]
    8
    """
    w = np.asarray(windows, dtype=float).ravel()
    if w.size == 0 or not np.all(np.isfinite(w)) or w.min() < 1:
        raise ScaleVAEError(f"windows must be positive sizes in px (got {list(windows)!r})")
    w1, wn = int(w.min()), int(w.max())
    p = fine_period(stack, max_period=wn)
    need = PIXELS_PER_PERIOD * wn / p
    cap = max(int(max_size), w1)
    r = int(min(max(4 * math.ceil(need / 4), w1), cap))
    kept = p * r / wn
    reason = (f"patch size {r} px: the finest period carrying {POWER_FRACTION:.0%} of the image's "
              f"structure up to {wn} px is {p:.1f} px, kept at {kept:.1f} px after the largest "
              f"window ({wn} px) is shrunk {wn / r:.1f}-fold")
    if need > cap:
        reason += (f"; keeping {PIXELS_PER_PERIOD} px per period would need {math.ceil(need)} px, "
                   f"above the cost bound of {cap} px (give patch_size to override)")
    elif r == w1 and need < w1:
        reason += " (no resampling finer than the smallest window)"
    return r, reason
