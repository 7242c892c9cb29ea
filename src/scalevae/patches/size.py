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

from ..config import MAX_DEFAULT_PATCH, PIXELS_PER_PERIOD, POWER_FRACTION
from ..errors import ScaleVAEError
from ..spectrum import Spectrum, fine_period, radial_power_spectrum  # noqa: F401  (old home)

__all__ = ["radial_power_spectrum", "fine_period", "default_patch_size",
           "PIXELS_PER_PERIOD", "MAX_DEFAULT_PATCH"]


def default_patch_size(stack, windows, max_size=MAX_DEFAULT_PATCH, spectrum=None):
    """The patch size every window is resampled to when the user gives none, and why.

    Rule: the smallest patch ``r`` (a multiple of 4) at which the image's fine period ``p``
    (:meth:`Spectrum.fine_period <scalevae.spectrum.Spectrum.fine_period>` with ``max_period``
    = the largest window ``w_n``) keeps
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
    spectrum : Spectrum, optional
        The image's spectrum when it was made already (a run makes it once); default: made
        from ``stack``.

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
    p = (spectrum or Spectrum.of(stack)).fine_period(max_period=wn)
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
