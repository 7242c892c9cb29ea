"""Atom positions (bright columns) as keypoints, to sub-pixel accuracy."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .._checks import as_frames
from ..errors import ScaleVAEError


def _estimate_atom_size(stack):
    """Half the dominant lattice period (px), from the frames' summed power spectra.

    Summing power spectra (not images) makes the estimate immune to drift between frames.
    """
    frames = stack[np.unique(np.linspace(0, len(stack) - 1, min(len(stack), 8)).astype(int))]
    ny, nx = frames.shape[1:]
    win = np.outer(np.hanning(ny), np.hanning(nx))  # a window keeps the edges out of the spectrum
    power = np.zeros((ny, nx))
    for fr in frames:
        fr = fr.astype(np.float64)
        power += np.abs(np.fft.fft2((fr - fr.mean()) * win)) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(ny), np.fft.fftfreq(nx), indexing="ij"))
    dk = 1.0 / max(ny, nx)
    bins = np.round(k / dk).astype(int)
    radial = np.bincount(bins.ravel(), power.ravel()) / np.maximum(np.bincount(bins.ravel()), 1)
    lo = max(4, int(np.ceil(max(ny, nx) / min(ny, nx) * 4)))  # periods above a quarter frame are not atoms
    hi = min(len(radial), int(0.5 / dk))                     # up to Nyquist
    if hi <= lo:
        raise ScaleVAEError("the image is too small to estimate the atom size; give it as 'atoms:SIZE'")
    period = 1.0 / (dk * (lo + int(np.argmax(radial[lo:hi]))))
    return max(2.0, period / 2)


def atom_keypoints(stack, size=None, threshold=0.15):
    """Positions of atoms (bright columns) in atomically resolved images, to sub-pixel accuracy.

    Each frame is band-pass filtered (a Gaussian matched to the atoms, sigma ``size / 3``,
    minus a broad Gaussian background, sigma ``size``), local maxima at least ``size / 2``
    apart and above ``threshold`` of the filtered image's contrast are kept
    (:func:`skimage.feature.peak_local_max`), and each maximum is refined by fitting a
    Gaussian (a parabola to the log intensity) through it and its neighbours along y and x.

    Parameters
    ----------
    stack : (frame, y, x) or (y, x) array
        Images with atoms brighter than the background (invert dark-atom images first).
    size : float, optional
        Expected atom (column) diameter in pixels. Default: half the dominant lattice period,
        estimated from the power spectrum.
    threshold : float, optional
        Minimum peak height as a fraction of the filtered contrast (from the background level,
        the median, to the 99.9th percentile): lower it to find faint atoms, raise it to reject noise.

    Returns
    -------
    points : (n, 3) float64 array
        ``frame, y, x`` with fractional positions, sorted by frame.

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
    ...           for cy in range(8, 60, 10) for cx in range(8, 60, 10))
    >>> pts = atom_keypoints(img, size=5)
    >>> len(pts)
    36
    """
    data = as_frames(stack)
    if size is None:
        size = _estimate_atom_size(data)
    try:
        size = float(size)
    except (TypeError, ValueError):
        raise ScaleVAEError(f"the atom size must be a number of pixels, got {size!r}") from None
    if not np.isfinite(size) or size <= 0:
        raise ScaleVAEError(f"the atom size must be a positive number of pixels, got {size!r}")
    if not 0 <= float(threshold) < 1:
        raise ScaleVAEError(f"threshold is a fraction of the image contrast in [0, 1), got {threshold!r}")
    from skimage.feature import peak_local_max

    distance = max(1, int(round(size / 2)))
    out = []
    for i, frame in enumerate(data):
        frame = frame.astype(np.float64)
        band = ndi.gaussian_filter(frame, max(size / 3, 0.5)) - ndi.gaussian_filter(frame, size)
        lo, hi = np.median(band), np.percentile(band, 99.9)
        if hi <= lo:
            continue
        peaks = peak_local_max(band, min_distance=distance, threshold_abs=lo + threshold * (hi - lo),
                               exclude_border=distance)
        if len(peaks):
            yx = _refine(band, peaks, floor=lo)
            out.append(np.column_stack([np.full(len(yx), i, float), yx]))
    if not out:
        raise ScaleVAEError(
            f"no atoms found (atom size {size:g} px, threshold {threshold:g}); give the atom "
            "diameter in px as 'atoms:SIZE', lower the threshold, or use 'grid:STEP'")
    return np.concatenate(out)


def _refine(band, peaks, floor):
    """Sub-pixel peak positions: a 3-point Gaussian fit along each axis (log-parabola)."""
    r, c = peaks[:, 0], peaks[:, 1]
    eps = 1e-12 * max(1.0, float(np.abs(band).max()))
    v = np.maximum(band - floor, eps)  # the fit needs positive values above the background
    pos = []
    for lo_, mid, hi_, base in ((v[r - 1, c], v[r, c], v[r + 1, c], r),
                                (v[r, c - 1], v[r, c], v[r, c + 1], c)):
        a, b, d = np.log(lo_), np.log(mid), np.log(hi_)
        denom = a - 2 * b + d
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(denom < 0, 0.5 * (a - d) / denom, 0.0)
        pos.append(base + np.clip(shift, -0.5, 0.5))
    return np.column_stack(pos)
