"""The image's radially averaged power spectrum, computed once per run, and what it tells.

One :class:`Spectrum` of the input is made at the start of a run
(:func:`scalevae.plan.make_plan`) and its numbers are passed on: the *pronounced period* starts
the default window range lower (:func:`scalevae.config.default_windows`), the *fine period*
sets the default patch size (:func:`scalevae.patches.size.default_patch_size`), and the
*spectral baseline* (the dominant period) is stored beside the recommended window.

The functions of one image (:func:`radial_power_spectrum`, :func:`fine_period`,
:func:`spectral_peak`, :func:`spectral_period`, :func:`pronounced_period`,
:func:`spectral_baseline`) each make the spectrum and read it; the methods of a
:class:`Spectrum` read one spectrum made once, with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import config
from .errors import ScaleVAEError

__all__ = ["Spectrum", "radial_power_spectrum", "fine_period", "spectral_peak",
           "spectral_period", "pronounced_period", "spectral_baseline", "noise_limited"]


def _frames(stack):
    """Up to :data:`config.SPECTRUM_FRAMES` frames of the image, evenly spread, as floats."""
    data = getattr(stack, "data", stack)
    if getattr(data, "lazy", False):  # read frame by frame: the spectrum needs only a few
        idx = np.linspace(0, len(data) - 1, min(len(data), config.SPECTRUM_FRAMES))
        data = data[np.unique(idx.round().astype(int))]
    a = np.asarray(data, dtype=float)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape[1:]) < 8:
        raise ScaleVAEError(f"need a 2-D image or a (frame, y, x) stack with frames of at least "
                            f"8 x 8 px (got shape {a.shape}); pass the image array itself")
    if not np.isfinite(a).all():
        raise ScaleVAEError("the image holds NaN or infinite values; replace them (e.g. "
                            "np.nan_to_num) before estimating its spectrum")
    idx = np.linspace(0, len(a) - 1, min(len(a), config.SPECTRUM_FRAMES)).round().astype(int)
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


@dataclass(frozen=True)
class Spectrum:
    """One image's radially averaged power spectrum, and the periods read from it.

    Make it with :meth:`of`; an image whose spectrum cannot be made (frames under 8 px,
    non-finite values) gives a Spectrum whose ``error`` says why: the readings that need it
    raise that error, the forgiving ones (:meth:`pronounced_period`, :meth:`baseline`) say
    "none".

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:256, :256]
    >>> s = Spectrum.of(np.sin(2 * np.pi * xx / 32) + 0.1 * yy / 256)
    >>> abs(s.baseline() - 32) < 2, s.pronounced_period() == s.baseline()
    (True, True)
    >>> Spectrum.of(np.zeros((4, 4))).baseline()
    nan
    """

    k: np.ndarray | None
    power: np.ndarray | None
    error: str | None = None

    @classmethod
    def of(cls, image) -> "Spectrum":
        """The spectrum of ``image`` (2-D, ``(frame, y, x)`` or an ImageStack)."""
        try:
            k, power = radial_power_spectrum(image)
        except ScaleVAEError as exc:
            return cls(None, None, str(exc))
        return cls(k, power)

    def _checked(self):
        if self.error is not None:
            raise ScaleVAEError(self.error)
        return self.k, self.power

    def fine_period(self, max_period=None, fraction=config.POWER_FRACTION) -> float:
        """:func:`fine_period` of the image, read from this spectrum."""
        if not 0 < fraction < 1:
            raise ScaleVAEError(f"fraction must lie in (0, 1) (got {fraction})")
        k, p = self._checked()
        floor = np.median(p[k >= config.NOISE_FLOOR_FREQUENCY])
        excess = np.clip(p - floor, 0.0, None)
        if max_period is not None:
            excess[k < 1.0 / float(max_period)] = 0.0
        total = excess.sum()
        if total <= 0:  # nothing above white noise: no structure to keep
            return 2.0
        cum = np.cumsum(excess) / total
        i = int(np.searchsorted(cum, fraction))
        return float(max(1.0 / k[min(i, len(k) - 1)], 2.0))

    def peak(self, min_period=2.0, max_period=None) -> tuple[float, float]:
        """:func:`spectral_peak` of the image, read from this spectrum."""
        k, p = self._checked()
        n = round(1 / k[0])
        max_period = float(max_period or n / 4)
        if not 2 <= min_period < max_period:
            raise ScaleVAEError(f"need 2 <= min_period < max_period (got {min_period}, "
                                f"{max_period})")
        logp = np.log(np.maximum(p, 1e-300))
        fit = np.polyfit(np.log(k), logp, 1)
        resid = logp - np.polyval(fit, np.log(k))
        band = (k >= 1 / max_period) & (k <= 1 / min_period)
        if not band.any():
            raise ScaleVAEError("no frequency between min_period and max_period; widen the range")
        idx = np.flatnonzero(band)
        i = idx[np.argmax(resid[idx])]
        kk = k[i]
        if 0 < i < len(k) - 1:  # parabolic refinement of the peak position
            a, b, c = resid[i - 1], resid[i], resid[i + 1]
            d = a - 2 * b + c
            if d < 0:
                kk = k[i] + 0.5 * (a - c) / d * (k[1] - k[0])
        return float(1 / kk), float(resid[i])

    @cached_property
    def _default_peak(self):
        """The default :meth:`peak`, or None when there is none; read by two callers."""
        try:
            return self.peak()
        except ScaleVAEError:
            return None

    def pronounced_period(self) -> float | None:
        """:func:`pronounced_period` of the image, read from this spectrum."""
        peak = self._default_peak
        if peak is None:
            return None
        period, height = peak
        return period if height >= config.PRONOUNCED_PEAK else None

    def baseline(self) -> float:
        """:func:`spectral_baseline` of the image, read from this spectrum."""
        peak = self._default_peak
        if peak is None or noise_limited(peak[0]):
            return float("nan")
        return float(peak[0])


def fine_period(image, max_period=None, fraction=config.POWER_FRACTION):
    """The finest period (px) that still carries a real share of an image's structure.

    From :func:`radial_power_spectrum`: the white-noise floor (median power of the outer 20 %
    of frequencies, above :data:`config.NOISE_FLOOR_FREQUENCY`, where smooth structure has
    decayed) is subtracted; of the remaining power at periods up to ``max_period`` (structure
    coarser than that is variation *between* patches, not inside them), the finest period at
    which a ``fraction`` of it has been accumulated (counting from coarse to fine) is returned.
    Structure finer than that holds less than ``1 - fraction`` of the power above noise. The
    Hann window spreads a sharp peak over about two neighbouring rings, so a pure period can
    come out up to two rings finer: a conservative error (a larger patch).

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
    return Spectrum(k, p).fine_period(max_period, fraction)


def spectral_peak(image, min_period=2.0, max_period=None):
    """Dominant period of an image and how far its peak stands out (a baseline).

    The radially averaged power spectrum (:func:`radial_power_spectrum`) is divided by a
    power-law fit of itself (a straight line in log-log, the scale-free background of most
    images), and the period of the highest remaining peak between ``min_period`` and
    ``max_period`` is returned, refined by a parabola through the peak and its neighbours.

    Parameters
    ----------
    image : array_like
        2-D image or ``(frame, y, x)`` stack.
    min_period, max_period : float
        Periods searched, px (default: 2 px to a quarter of the smaller frame side).

    Returns
    -------
    period : float
        Period in px.
    height : float
        The peak's ln power above the power-law background (``ln 8``: eight-fold;
        :data:`config.PRONOUNCED_PEAK`).

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:256, :256]
    >>> period, height = spectral_peak(np.sin(2 * np.pi * xx / 32) + 0.1 * yy / 256)
    >>> abs(period - 32) < 2, height > config.PRONOUNCED_PEAK
    (True, True)
    """
    k, p = radial_power_spectrum(image)
    return Spectrum(k, p).peak(min_period, max_period)


def spectral_period(image, min_period=2.0, max_period=None):
    """Dominant period of an image: the period of :func:`spectral_peak`.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:256, :256]
    >>> img = np.sin(2 * np.pi * xx / 32) + 0.1 * yy / 256
    >>> abs(spectral_period(img) - 32) < 2
    True
    """
    return spectral_peak(image, min_period, max_period)[0]


def pronounced_period(image):
    """The image's :func:`spectral_peak` period when the peak stands out at least
    :data:`config.PRONOUNCED_PEAK` (eight-fold) above the power-law background, else None.

    Examples
    --------
    >>> import numpy as np
    >>> pronounced_period(np.random.default_rng(0).normal(size=(128, 128))) is None
    True
    """
    return Spectrum.of(image).pronounced_period()


def noise_limited(period) -> bool:
    """True when ``period`` (px) is at the pixel or noise limit (or NaN): ignore it.

    Examples
    --------
    >>> noise_limited(2.0), noise_limited(11.8), noise_limited(float("nan"))
    (True, False, True)
    """
    return not float(period) > config.NOISE_LIMIT_PERIOD


def spectral_baseline(image) -> float:
    """:func:`spectral_period` of an image or stack, NaN when it has none (too small, flat) or
    when it sits at the pixel or noise limit (:func:`noise_limited`): the model-free baseline
    a run stores beside its recommended window.

    Examples
    --------
    >>> import numpy as np
    >>> spectral_baseline(np.zeros((4, 4)))
    nan
    """
    return Spectrum.of(image).baseline()
