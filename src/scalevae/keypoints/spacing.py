"""The columns' spacing from the radially averaged spectrum and trial detections.

The fallback of :func:`.atoms.estimate_spacing` where the Bragg peaks do not form a credible
lattice (:func:`.lattice.measure_lattice` fails its checks), and the detection helpers the
atoms detector shares: the period of the strongest reflection ring (the ring of the whitened,
radially averaged power spectrum with the most excess power), then the median neighbour
distance of columns detected with a fraction of that period.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ..errors import ScaleVAEError

_SMOOTH = 0.15      # Gaussian smoothing sigma for finding maxima, in spacings
_BAND = 0.25       # sigma of the -LoG band-pass whose maxima are the candidates, in spacings
_MIN_DIST = 0.5     # minimum distance between trial maxima, in spacings
_NOISE_K = 4.0      # contrast must exceed this many noise sigmas of the smoothed frame
_LONELY = 1.6       # a column needs another one within this many spacings


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


def _contrast(frame, spacing, truncate=4.0):
    """The frame as float32, its smoothing sigma (px) and its contrast above the local floor.

    The frame is smoothed with ``_SMOOTH`` spacing; the floor is the minimum over two spacings
    (between the columns, robust to bright dopants), smoothed over a spacing.
    """
    frame = frame.astype(np.float32)  # float32 halves the filters' memory traffic
    s = max(_SMOOTH * spacing, 0.7)
    smooth = ndi.gaussian_filter(frame, s)
    size = max(3, int(round(2 * spacing)) | 1)
    floor = ndi.gaussian_filter(ndi.minimum_filter(smooth, size=size), spacing, truncate=truncate)
    return frame, s, smooth, smooth - floor


def _band_pass(frame, sigma):
    """Scale-normalised negative Laplacian of Gaussian (sigma px, at least 0.8).

    It ignores slopes, so a dim column on the tail of a bright neighbour (C beside Si) is a
    maximum of its own where the smoothed frame only shows a shoulder. mode="nearest": a
    reflecting edge would mirror a column next to the edge into a ghost neighbour that pulls
    its maximum outward.
    """
    sl = max(sigma, 0.8)
    return -ndi.gaussian_laplace(frame, sl, mode="nearest") * (sl * sl)


def _strong_maxima(band, contrast, threshold, min_dist, fraction, mask=None):
    """Maxima of ``band`` whose ``contrast`` exceeds ``threshold`` (inside ``mask``), at least
    ``min_dist`` px from a stronger one, and above ``fraction`` of the median contrast.

    Returns the maxima (n, 2) int and their contrast.
    """
    from skimage.feature import peak_local_max

    peaks = peak_local_max(band, min_distance=1, threshold_abs=0, exclude_border=False)
    h = contrast[peaks[:, 0], peaks[:, 1]] if len(peaks) else np.empty(0)
    ok = h > threshold
    if mask is not None and len(peaks):
        ok &= mask[peaks[:, 0], peaks[:, 1]]
    peaks, h = peaks[ok], h[ok]
    if len(peaks) == 0:
        return np.empty((0, 2), np.intp), np.empty(0)
    # non-maximum suppression among the maxima only, strongest band response first: a max
    # filter as wide as the minimum distance would drop a dim column next to a bright one
    keep = _suppress(peaks, band[peaks[:, 0], peaks[:, 1]], min_dist)
    peaks, h = peaks[keep], h[keep]
    ok = h > fraction * np.median(h)
    return peaks[ok], h[ok]


def _not_alone(peaks, radius):
    """Maxima with another one within ``radius`` px (isolated ones are noise in vacuum, holes)."""
    if len(peaks) < 2:
        return np.ones(len(peaks), bool)
    d, _ = cKDTree(peaks).query(peaks, k=2)
    return d[:, 1] <= radius


def _trial_detect(frame, spacing, fraction, noise_k=_NOISE_K, lonely=None, band_pass=True):
    """Columns of one frame for a given spacing: refined (y, x) and their contrast.

    ``lonely``: maxima with no other kept maximum within this distance (px) are dropped;
    default ``_LONELY * spacing``. ``band_pass=False`` takes the maxima of the smoothed frame
    instead of the band-passed one (for trial spacings below the true one, where a narrow
    band-pass splits noise into many maxima).
    """
    frame, s, _smooth, contrast = _contrast(frame, spacing)
    # noise of the smoothed frame: white noise sigma / (2 sqrt(pi) s) for a Gaussian of sigma s;
    # a floor keeps a noise-free image from passing every flat-top ripple
    noise = max(_noise_sigma(frame) / (2 * np.sqrt(np.pi) * s),
                1e-3 * float(np.ptp(contrast)))
    band = _band_pass(frame, _BAND * spacing) if band_pass else contrast
    peaks, h = _strong_maxima(band, contrast, noise_k * noise, _MIN_DIST * spacing, fraction)
    keep = _not_alone(peaks, _LONELY * spacing if lonely is None else lonely)
    peaks, h = peaks[keep], h[keep]
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


def ring_spacing(frames):
    """Median neighbour distance (px) of columns detected with a fraction of the ring period."""
    period = _strongest_period(frames)
    trial = 0.45 * period
    spacings = []
    for fr in frames:
        for _ in range(4):
            # the trial is a fraction of the true spacing: judge loneliness by the period
            yx, _h = _trial_detect(fr, trial, fraction=0.5, noise_k=5.0, lonely=1.3 * period,
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
    if not spacings:
        raise ScaleVAEError("no atom columns found to measure their spacing; give the atom "
                            "spacing in px as 'atoms:SIZE' or use 'grid:STEP'")
    return float(np.median(spacings))
