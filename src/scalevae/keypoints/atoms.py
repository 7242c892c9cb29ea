"""Atom (bright column) detection for atomically resolved HAADF-STEM images.

The spacing of the columns is measured from the image itself, in two steps:

1. the *period* of the strongest lattice reflection: the peak of the whitened, radially
   averaged power spectrum of the clipped, windowed frame (clipping keeps a few very bright
   dopants from dominating; whitening - dividing by a smooth baseline - keeps the slow
   background and the low-frequency noise from winning);
2. the *nearest-neighbour spacing*: columns are detected with a smoothing and a minimum
   distance small enough for any common lattice given that period (a fraction of it), and
   the median nearest-neighbour distance of the confident detections is taken. Measuring the
   spacing on the detections, not converting the period by a lattice-specific factor, keeps
   honeycomb lattices (whose strongest period is 1.5 bonds) from being read as their sublattice.

Detection (:func:`atom_keypoints`) then finds the local maxima of the band-passed frame (a
scale-normalised negative Laplacian of Gaussian of sigma 0.25 spacing, which ignores slopes,
so a dim column on the tail of a bright neighbour is still a maximum), keeps those at least
0.5 spacing apart (strongest first), measures each maximum's local contrast above a background
(the frame smoothed with 0.15 spacing minus a minimum filter over 2 spacings, smoothed) and
keeps maxima whose contrast exceeds both 4 times the noise of the smoothed frame (a robust
estimate from the pixel-to-pixel differences) and a fraction of the typical (median) column
contrast; contrast is local, so dim carbon next to bright silicon is kept. Maxima with no
other kept maximum within 1.6 spacings (noise in holes/vacuum) are dropped and positions are
refined to sub-pixel accuracy by a 3-point parabola along y and x through the maximum of the
band-passed frame.
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ..errors import ScaleVAEError
from .select import MIN_KEYPOINTS  # one threshold for every keypoint source

__all__ = ["estimate_spacing", "atom_keypoints", "MIN_KEYPOINTS"]

log = logging.getLogger(__name__)


_SMOOTH = 0.15      # Gaussian smoothing sigma for finding maxima, in spacings
_BAND = 0.25       # sigma of the -LoG band-pass whose maxima are the candidates, in spacings
_MIN_DIST = 0.5     # minimum distance between maxima, in spacings
_NOISE_K = 4.0      # contrast must exceed this many noise sigmas of the smoothed frame
_FRACTION = 0.3     # ... and this fraction of the median column contrast
_LONELY = 1.6       # a column needs another one within this many spacings


# ----------------------------------------------------------------------------- helpers

def _stack3(stack):
    if not isinstance(stack, np.ndarray) and hasattr(stack, "data"):
        stack = stack.data
    a = np.asarray(stack)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ScaleVAEError(
            f"expected an image (y, x) or a stack (frame, y, x), got an array of shape {a.shape}")
    if min(a.shape[1:]) < 16:
        raise ScaleVAEError(f"frames of {a.shape[1]} x {a.shape[2]} px are too small to find "
                            "atoms in; they need at least 16 x 16 px")
    return a


def _noise_sigma(frame):
    """Robust per-pixel noise sigma from horizontal and vertical pixel differences (MAD).

    Differences of neighbours cancel the smooth signal; for well-sampled atoms (spacing of
    several px) what is left is mostly noise, so this slightly overestimates it at most.
    """
    d = np.concatenate([np.diff(frame, axis=0).ravel(), np.diff(frame, axis=1).ravel()])
    mad = np.median(np.abs(d - np.median(d)))
    return 1.4826 * mad / np.sqrt(2)


def _strongest_period(frames):
    """Period (px) of the strongest lattice reflection in the frames' summed power spectra.

    Bragg reflections are sharp spots on a smooth, isotropic background (noise, slow
    background, amorphous material). For each ring of radius r (3 frequency bins wide) the
    background is the ring's median power and the reflection strength is the power above it;
    the ring with the most excess power wins, provided its brightest pixel stands far above
    the median (spots, not a diffuse ring).
    """
    ny, nx = frames.shape[1:]
    n = min(ny, nx)
    win = np.outer(np.hanning(ny), np.hanning(nx))
    power = np.zeros((ny, nx // 2 + 1))
    for fr in frames:
        fr = fr.astype(np.float64)
        lo, hi = np.percentile(fr, [1, 99])
        fr = np.clip(fr, lo, hi)  # a few very bright dopants / dark holes must not dominate
        power += np.abs(np.fft.rfft2((fr - fr.mean()) * win)) ** 2  # half-plane: P(-k) = P(k)
    power[:, 0] = 0.0  # kx = 0 holds the scan-line (row-to-row) noise
    # radius in units of the smaller side's frequency step: radius r <=> period n / r px
    ky = np.fft.fftfreq(ny) * n
    kx = np.fft.rfftfreq(nx) * n
    rad = np.hypot(ky[:, None], kx[None, :])
    top = n // 2  # Nyquist along the smaller side
    lo = 3        # fewer than 3 periods across the frame is not a lattice
    if top - lo < 4:
        raise ScaleVAEError("the frame is too small to measure the lattice spacing; give the "
                            "atom spacing in px as 'atoms:SIZE'")
    keep = (rad >= lo - 1.5) & (rad < top + 1.5) & (power > 0)
    p, rr = power[keep], rad[keep]
    bins = np.round(rr).astype(int)
    order = np.argsort(bins, kind="stable")
    p, rr, bins = p[order], rr[order], bins[order]
    edges = np.searchsorted(bins, np.arange(lo - 1, top + 3))
    best, best_r, spot = -np.inf, None, 0.0
    for r in range(lo, top + 1):
        sl = slice(edges[r - lo], edges[r - lo + 3])  # bins r-1, r, r+1
        ring = p[sl]
        if len(ring) < 8:
            continue
        med = np.median(ring)
        excess = np.clip(ring - med, 0, None)
        total = excess.sum()
        if total > best:
            best, spot = total, ring.max() / max(med, 1e-300)
            best_r = float((excess * rr[sl]).sum() / max(total, 1e-300))
    if best_r is None or spot < 30:
        raise ScaleVAEError(
            "the image shows no lattice periodicity (no sharp peak in its power spectrum; "
            f"the strongest ring's brightest spot is {spot:.0f} x its median, < 30); give the "
            "atom spacing in px as 'atoms:SIZE' or use 'grid:STEP'")
    return n / best_r


def _detect(frame, spacing, fraction, noise_k=_NOISE_K, lonely=None, band_pass=True):
    """Columns of one frame for a given spacing: refined (y, x) and their contrast.

    ``lonely``: maxima with no other kept maximum within this distance (px) are dropped;
    default ``_LONELY * spacing``. ``band_pass=False`` takes the maxima of the smoothed frame
    instead of the band-passed one (for trial spacings below the true one, where a narrow
    band-pass splits noise into many maxima).
    """
    from skimage.feature import peak_local_max

    frame = frame.astype(np.float32)  # float32 halves the filters' memory traffic
    s = max(_SMOOTH * spacing, 0.7)
    smooth = ndi.gaussian_filter(frame, s)
    # local background: the floor between columns (a minimum filter), robust to bright dopants
    size = max(3, int(round(2 * spacing)) | 1)
    floor = ndi.gaussian_filter(ndi.minimum_filter(smooth, size=size), spacing)
    contrast = smooth - floor
    # noise of the smoothed frame: white noise sigma / (2 sqrt(pi) s) for a Gaussian of sigma s;
    # a floor keeps a noise-free image from passing every flat-top ripple
    noise = max(_noise_sigma(frame) / (2 * np.sqrt(np.pi) * s),
                1e-3 * float(np.ptp(contrast)))
    # Candidates are maxima of the band-passed frame (scale-normalised -LoG): it ignores slopes,
    # so a dim column on the tail of a bright neighbour (C beside Si) is a maximum there even
    # where the smoothed frame only shows a shoulder. mode="nearest": a reflecting edge would
    # mirror a column next to the edge into a ghost neighbour that pulls its maximum outward.
    if band_pass:
        sl = max(_BAND * spacing, 0.8)
        band = -ndi.gaussian_laplace(frame, sl, mode="nearest") * (sl * sl)
    else:
        band = contrast
    peaks = peak_local_max(band, min_distance=1, threshold_abs=0, exclude_border=False)
    if len(peaks) == 0:
        return np.empty((0, 2)), np.empty(0)
    h = contrast[peaks[:, 0], peaks[:, 1]]
    ok = h > noise_k * noise
    peaks, h = peaks[ok], h[ok]
    if len(peaks) == 0:
        return np.empty((0, 2)), np.empty(0)
    # non-maximum suppression among the maxima only, strongest band response first: a max
    # filter as wide as the minimum distance would drop a dim column next to a bright one
    keep = _suppress(peaks, band[peaks[:, 0], peaks[:, 1]], _MIN_DIST * spacing)
    peaks, h = peaks[keep], h[keep]
    ok = h > fraction * np.median(h)
    peaks, h = peaks[ok], h[ok]
    # isolated maxima (noise in vacuum or holes) have no other column within _LONELY spacings
    if len(peaks) > 1:
        d, _ = cKDTree(peaks).query(peaks, k=2)
        alone = d[:, 1] > (_LONELY * spacing if lonely is None else lonely)
        peaks, h = peaks[~alone], h[~alone]
    # positions: a parabola through 3 px along y and x of the band-passed frame, whose maxima
    # are not pulled toward a brighter neighbour's slope
    if not band_pass:
        band = ndi.gaussian_filter(frame, max(0.2 * spacing, 0.7))
    return _refine(band, peaks), h


def _suppress(peaks, h, radius):
    """Greedy non-maximum suppression: keep maxima with no higher kept maximum within radius."""
    order = np.argsort(-h, kind="stable")
    pairs = cKDTree(peaks).query_pairs(radius, output_type="ndarray")
    keep = np.ones(len(peaks), bool)
    if len(pairs) == 0:
        return keep
    rank = np.empty(len(h), np.intp)
    rank[order] = np.arange(len(h))
    # orient each pair from the higher-ranked (brighter) maximum to the lower one
    a, b = pairs[:, 0], pairs[:, 1]
    swap = rank[a] > rank[b]
    hi = np.where(swap, b, a)
    lo = np.where(swap, a, b)
    srt = np.argsort(rank[hi], kind="stable")
    hi, lo = hi[srt], lo[srt]
    start = np.searchsorted(rank[hi], np.arange(len(h)))
    stop = np.searchsorted(rank[hi], np.arange(len(h)), side="right")
    for i, idx in enumerate(order):  # brightest first
        if keep[idx] and start[i] < stop[i]:
            keep[lo[start[i]:stop[i]]] = False
    return keep


def _refine(image, peaks):
    """Sub-pixel maxima: 3-point parabola along y and x, moved to the best pixel first."""
    ny, nx = image.shape
    p = peaks.astype(np.intp)
    for _ in range(2):  # the smoother copy's maximum may be a pixel away
        r = np.clip(p[:, 0], 1, ny - 2)
        c = np.clip(p[:, 1], 1, nx - 2)
        win = np.stack([image[r + dy, c + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)
        k = np.argmax(win, axis=1)
        p = np.column_stack([r + k // 3 - 1, c + k % 3 - 1])
    r = np.clip(p[:, 0], 1, ny - 2)
    c = np.clip(p[:, 1], 1, nx - 2)
    out = []
    for a, b, d, base in ((image[r - 1, c], image[r, c], image[r + 1, c], r),
                          (image[r, c - 1], image[r, c], image[r, c + 1], c)):
        den = a - 2 * b + d
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(den < 0, 0.5 * (a - d) / den, 0.0)
        out.append(base + np.clip(shift, -0.5, 0.5))
    out = np.column_stack(out)
    # frames smaller than 3 px along an axis cannot happen (_stack3); keep points in the frame
    out[:, 0] = np.clip(out[:, 0], 0, ny - 1)
    out[:, 1] = np.clip(out[:, 1], 0, nx - 1)
    return out


def _sample_frames(data, n=4):
    return data[np.unique(np.linspace(0, len(data) - 1, min(len(data), n)).astype(int))]


# ----------------------------------------------------------------------------- public

def estimate_spacing(image):
    """Nearest-neighbour spacing (px) of the bright columns, measured from the image itself.

    The period of the strongest lattice reflection is found in the whitened, radially
    averaged power spectrum of the clipped frame; columns are then detected with a smoothing
    and a minimum distance that are small fractions of that period, and the spacing is the
    median nearest-neighbour distance of the confident detections (so that for graphene it is
    the C-C bond, not the 1.5-bond period of the strongest reflection or the sublattice period).

    Parameters
    ----------
    image : (y, x) or (frame, y, x) array
        Atoms brighter than the background. For a stack, up to 4 frames spread over it are
        used and the median of their spacings returned.

    Returns
    -------
    spacing : float
        Median nearest-neighbour distance of the columns, in px.

    Raises
    ------
    ScaleVAEError
        If the image shows no periodicity or no columns are found.

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    ...           for cy in range(4, 128, 10) for cx in range(4, 128, 10))
    >>> img = img + np.random.default_rng(0).normal(0, 0.02, img.shape)  # noise, as measured
    >>> round(estimate_spacing(img))
    10
    """
    data = _stack3(image)
    frames = _sample_frames(data)
    period = _strongest_period(frames)
    # A fraction of the period that is below the nearest-neighbour distance of the common
    # lattices: honeycomb (bond = 2/3 period of its strongest, (100), ring; 0.87 bond if
    # the (110) ring wins), square (1 period), hexagonal (1.15 periods).
    trial = 0.45 * period
    spacings = []
    for fr in frames:
        for _ in range(4):
            # the trial is a fraction of the true spacing: judge loneliness by the period
            yx, _h = _detect(fr, trial, fraction=0.5, noise_k=5.0, lonely=1.3 * period,
                             band_pass=False)
            if len(yx) < 3:
                break
            d, _ = cKDTree(yx).query(yx, k=2)
            nn = float(np.median(d[:, 1]))
            # maxima packed at the minimum distance are noise on broad columns: smooth more
            if nn > 1.4 * _MIN_DIST * trial:
                break
            trial *= 1.5
        if len(yx) < 3:
            continue
        # the median over all neighbour pairs (not of each column's nearest) is not pulled
        # down by position noise
        pairs = cKDTree(yx).query_pairs(1.25 * nn, output_type="ndarray")
        dist = np.hypot(*(yx[pairs[:, 0]] - yx[pairs[:, 1]]).T) if len(pairs) else [nn]
        spacings.append(float(np.median(dist)))
    return float(np.median(spacings))


def atom_keypoints(stack, size=None, threshold=None):
    """Positions of atom columns (bright maxima) in atomically resolved images, sub-pixel.

    Local maxima of each band-passed frame (negative Laplacian of Gaussian, sigma 0.25
    ``size``) at least 0.5 ``size`` apart are kept when their contrast above the local
    background (the frame smoothed with sigma 0.15 ``size`` minus a minimum filter over
    2 ``size``, smoothed) exceeds 4 times the noise of the smoothed frame and ``threshold``
    times the median contrast of the columns, and when another kept maximum lies within
    1.6 ``size``. Positions are refined by a 3-point parabola along y and x through the
    maximum of the band-passed frame.

    Parameters
    ----------
    stack : (frame, y, x) or (y, x) array
        Images with atoms brighter than the background (invert dark-atom images first).
    size : float, optional
        Nearest-neighbour spacing of the columns in px (for graphene the C-C bond). Default:
        measured with :func:`estimate_spacing` (logged at INFO level).
    threshold : float, optional
        Minimum column contrast as a fraction of the median column contrast, in [0, 1);
        default 0.3. Lower it to keep faint columns, raise it to drop contamination.

    Returns
    -------
    points : (n, 3) float64 array
        ``frame, y, x`` with fractional positions, sorted by frame.

    Raises
    ------
    ScaleVAEError
        If no column is found or the input is invalid. Fewer than ``MIN_KEYPOINTS`` columns
        give a warning that states the number.

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    ...           for cy in range(9, 120, 10) for cx in range(9, 120, 10))
    >>> pts = atom_keypoints(img, size=10)
    >>> len(pts)
    144
    >>> float(np.abs(pts[:, 1:] % 10 - 9).max()) < 0.15  # on the lattice, to sub-pixel accuracy
    True
    """
    data = _stack3(stack)
    if size is None:
        size = estimate_spacing(data)
        log.info("atom spacing measured from the image: %.2f px", size)
    if isinstance(size, bool) or not isinstance(size, (numbers.Real, str, np.floating)):
        raise ScaleVAEError(f"the atom spacing must be a number of pixels, got {size!r}")
    try:
        size = float(size)
    except ValueError:
        raise ScaleVAEError(f"the atom spacing must be a number of pixels, got {size!r}") from None
    if not np.isfinite(size) or size < 2:
        raise ScaleVAEError(f"the atom spacing must be at least 2 px, got {size!r}")
    if size > min(data.shape[1:]) / 2:
        raise ScaleVAEError(
            f"an atom spacing of {size:g} px does not fit twice in the {data.shape[1]} x "
            f"{data.shape[2]} px frame; give the spacing in px ('atoms:SIZE') or a larger image")
    fraction = _FRACTION if threshold is None else threshold
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise ScaleVAEError(f"threshold must be a number in [0, 1), got {threshold!r}") from None
    if not 0 <= fraction < 1:
        raise ScaleVAEError(f"threshold is a fraction of the median column contrast in [0, 1), "
                            f"got {threshold!r}")
    out = []
    for i, frame in enumerate(data):
        yx, _ = _detect(frame, size, fraction)
        if len(yx):
            yx = yx[np.lexsort((yx[:, 1], yx[:, 0]))]  # by y, then x
            out.append(np.column_stack([np.full(len(yx), i, float), yx]))
    if not out:
        raise ScaleVAEError(
            f"no atoms found (spacing {size:.3g} px, threshold {fraction:g}); give the atom "
            "spacing in px as 'atoms:SIZE', lower the threshold, or use 'grid:STEP'")
    pts = np.concatenate(out)
    if len(pts) < MIN_KEYPOINTS:
        warnings.warn(
            f"only {len(pts)} atoms found (spacing {size:.3g} px) - too few keypoints to train "
            f"on (fewer than {MIN_KEYPOINTS}); check the spacing ('atoms:SIZE'), use a larger "
            "image or 'grid:STEP'", stacklevel=2)
    return pts
