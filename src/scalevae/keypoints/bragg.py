"""Bragg filtering and the lattice-presence map of a measured lattice (:mod:`.lattice`).

:func:`bragg_filter` keeps only the lattice's spots (Gaussian spots at every reciprocal-lattice
point of each grain up to the second order); :func:`lattice_order` is the local fraction of
the image's lattice-band power that falls on those spots: high on crystal, low on amorphous
material, contamination, vacuum and holes; :func:`lattice_mask` is where it marks a lattice,
:func:`residual_noise` the noise of a smoothed frame measured against its lattice, and
:func:`lattice_sites` the lattice's column sites (the Bragg-filtered frame's maxima).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

__all__ = ["bragg_filter", "lattice_order", "lattice_mask", "lattice_sites", "residual_noise",
           "smooth_fft"]

_SPOT_SIGMA = 0.2      # Bragg-filter spot sigma as a fraction of |g1|: the filter is local to ~1 cell
_MAX_ORDER = 2.05      # spots up to this multiple of |g1| (honeycomb needs the (110) ring at sqrt 3)
_ORDER_WINDOW = 0.75   # lattice constants: the order map's smoothing (sigma)
_SHARE_WINDOW = 0.4    # ... of which the powers' share is taken over this fraction
ORDER_LEVEL = 0.35     # lattice: order above r0 + this x (q90 - r0)
COVERED_EXCESS = 1.4   # an amorphous layer on the lattice: local contrast above this x median
COVERED_RADIUS = 1.5   # lattice constants: radius of the disk of the local median contrast
_EDGE_PAD = 2.0        # lattice constants of mirrored margin for the order map's FFTs
_ORDER_CLIP = 97.0     # percentile: brighter pixels (dopants, bright contamination) are clipped


def smooth_fft(image, sigma):
    """Gaussian smoothing (sigma px) by the FFT: periodic edges, cheap for wide kernels."""
    ny, nx = image.shape
    k2 = np.fft.fftfreq(ny)[:, None] ** 2 + np.fft.rfftfreq(nx)[None, :] ** 2
    return sfft.irfft2(sfft.rfft2(image, workers=-1) * np.exp(-2 * (np.pi * sigma) ** 2 * k2),
                       s=image.shape, workers=-1)


def _spot_masks(shape, bases, kind):
    """Per grain, the real Fourier mask (Gaussian spots at +-G up to _MAX_ORDER |g1|, no DC).

    Each spot is drawn on a patch of +-4 sigma around it (wrapping around the spectrum's edges).
    """
    ny, nx = shape
    masks = []
    for b in bases:
        g1 = np.hypot(*b[0])
        sig = _SPOT_SIGMA * g1
        ry, rx = int(np.ceil(4 * sig * ny)), int(np.ceil(4 * sig * nx))
        m = np.zeros(shape)
        for h in range(-3, 4):
            for k in range(-3, 4):
                gy, gx = h * b[0] + k * b[1]
                if (h, k) == (0, 0) or np.hypot(gy, gx) > _MAX_ORDER * g1:
                    continue
                iy = np.arange(int(round(gy * ny)) - ry, int(round(gy * ny)) + ry + 1)
                ix = np.arange(int(round(gx * nx)) - rx, int(round(gx * nx)) + rx + 1)
                spot = np.exp(-((iy[:, None] / ny - gy) ** 2 + (ix[None, :] / nx - gx) ** 2)
                              / (2 * sig * sig))
                sub = np.ix_(iy % ny, ix % nx)
                m[sub] = np.maximum(m[sub], spot)
        masks.append(m)
    return masks


def bragg_filter(frame, bases, kind, per_grain=False):
    """The image kept at the lattice's Bragg spots (each grain's, up to the second order).

    Returns the sum over grains, or a list per grain with ``per_grain=True``.
    """
    f = np.asarray(frame, np.float64)
    spec = sfft.rfft2(f - f.mean(), workers=-1)  # the masks are symmetric: half a spectrum
    half = f.shape[1] // 2 + 1
    out = [sfft.irfft2(spec * m[:, :half], s=f.shape, workers=-1)
           for m in _spot_masks(f.shape, bases, kind)]
    return out if per_grain else np.sum(out, axis=0)


def lattice_order(frame, lattice, window=None):
    """Local fraction of lattice-band power on the Bragg spots, and the level that marks a lattice.

    The lattice band is an annulus from half the first-order radius to past the largest spot;
    white noise puts the fraction ``r0`` of its power on the spots (the spots' share of the
    annulus), amorphous material about as much, a crystal much more. The fraction is smoothed
    over ``window`` px (default 0.75 lattice constant: a wider one lets a bright amorphous
    patch spill over the lattice beside it), the powers themselves over 0.4 of it.

    Returns
    -------
    order : (y, x) array
    threshold : float
        ``r0 + ORDER_LEVEL (q90 - r0)``, ``q90`` the 90th percentile of ``order``: a region is lattice
        when its order exceeds this.
    """
    f = np.asarray(frame, np.float64)
    lo, hi = np.percentile(f, [0.5, _ORDER_CLIP])
    ny, nx = f.shape
    # mirrored margins of two cells: the FFT's periodic edges would join unlike edges of the
    # frame, and that step's power would mark a strip along the edges as no lattice
    pad = min(int(round(_EDGE_PAD * lattice.constant)), ny - 1, nx - 1)
    f = np.pad(np.clip(f, lo, hi) - np.clip(f, lo, hi).mean(), pad, mode="reflect")
    spec = sfft.rfft2(f, workers=-1)
    half = f.shape[1] // 2 + 1
    spots = np.max(_spot_masks(f.shape, lattice.bases, lattice.kind), axis=0)
    g1 = np.hypot(*lattice.bases[0][0])
    k = np.hypot(np.fft.fftfreq(f.shape[0])[:, None], np.fft.fftfreq(f.shape[1])[None, :])
    band = ((k > 0.5 * g1) & (k < (_MAX_ORDER + 2 * _SPOT_SIGMA) * g1)).astype(float)
    spots = spots * band
    inner = (slice(pad, pad + ny), slice(pad, pad + nx))
    bragg = sfft.irfft2(spec * spots[:, :half], s=f.shape, workers=-1)[inner]
    total = sfft.irfft2(spec * band[:, :half], s=f.shape, workers=-1)[inner]
    w = _ORDER_WINDOW * lattice.constant if window is None else window
    # smoothed on a grid of a quarter window (reflecting edges): the powers vary over a cell
    step = max(1, int(w / 4))
    cy, cx = ny // step, nx // step

    def local(power):
        blocks = power[:cy * step, :cx * step].reshape(cy, step, cx, step).mean(axis=(1, 3))
        return ndi.gaussian_filter(blocks, _SHARE_WINDOW * w / step, mode="reflect")

    # the share is taken over part of the window and then smoothed over the rest (the same
    # width in all): a share of powers smoothed over the whole window lets a bright patch's
    # power outweigh the lattice's well beyond its edge
    coarse = local(bragg ** 2) / np.maximum(local(total ** 2), 1e-300)
    coarse = ndi.gaussian_filter(coarse, np.sqrt(1 - _SHARE_WINDOW ** 2) * w / step,
                                 mode="reflect")
    order = np.repeat(np.repeat(coarse, step, 0), step, 1)
    order = np.pad(order, [(0, ny - order.shape[0]), (0, nx - order.shape[1])], mode="edge")
    r0 = float((spots ** 2).sum() / band.sum())
    q90 = float(np.percentile(order, 90))
    return order, r0 + ORDER_LEVEL * max(q90 - r0, 0.0)


def _covered(contrast, order, mask, step, cell):
    """Where a thin amorphous layer lies on the lattice, on the grid of ``mask`` (``step`` px).

    The lattice beneath still shows, so the order passes, but the layer's own atoms raise the
    contrast above the local floor (which ignores slow backgrounds) over the lattice's, and
    add power off the Bragg spots: where the local median contrast (over a disk of
    COVERED_RADIUS lattice constants, in which a dopant is one bright column) exceeds
    COVERED_EXCESS times its median on the lattice region, and the order is below its median
    there. A grain boundary lowers the order but adds no material, a slow background adds no
    contrast; regions narrower than a cell are opened away (the grid step is a quarter cell).
    """
    ny, nx = mask.shape
    blocks = contrast[:ny * step, :nx * step]
    blocks = np.pad(blocks, [(0, ny * step - blocks.shape[0]), (0, nx * step - blocks.shape[1])],
                    mode="edge").reshape(ny, step, nx, step).mean(axis=(1, 3))
    local = ndi.median_filter(blocks, footprint=_disk(COVERED_RADIUS * cell / step),
                              mode="reflect")
    covered = ((local > COVERED_EXCESS * np.median(local[mask]))
               & (order < np.median(order[mask])))
    # the median over a disk that straddles the layer's (convex) edge stays the lattice's until
    # most of the disk lies on the layer: the region ends inside the edge and is grown by a
    # quarter cell (one grid step), after holes narrower than two cells are filled
    covered = ndi.binary_opening(covered, _disk(2))
    return ndi.binary_dilation(ndi.binary_closing(covered, _disk(4)), _disk(1))


def _disk(radius):
    r = int(radius)
    return np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= radius


def lattice_mask(frame, lattice, contrast=None):
    """True where the frame shows its lattice (:func:`lattice_order` above its level).

    With ``contrast`` (the frame above its local floor), not where a thin amorphous layer
    covers the lattice (:func:`_covered`). Cleaned at the scale of a lattice constant: regions
    narrower than about one cell (in either sense) are noise in the order map, not lattice or
    amorphous material.
    """
    order, level = lattice_order(frame, lattice)
    # the order map is smooth over a cell: clean it on a grid of a quarter cell
    step = max(1, int(lattice.constant / 4))
    order = order[step // 2::step, step // 2::step]
    mask = order > level
    if contrast is not None and mask.any():
        mask &= ~_covered(contrast, order, mask, step, lattice.constant)
    disk = np.hypot(*np.mgrid[-2:3, -2:3]) <= 2  # half a cell
    mask = ndi.binary_closing(ndi.binary_opening(mask, disk), disk, border_value=1)
    mask = np.repeat(np.repeat(mask, step, 0), step, 1)[:frame.shape[0], :frame.shape[1]]
    return np.pad(mask, [(0, frame.shape[0] - mask.shape[0]), (0, frame.shape[1] - mask.shape[1])],
                  mode="edge")


def residual_noise(smooth, lattice, mask):
    """Noise sigma of the smoothed frame: robust spread (MAD) of what the lattice does not explain.

    The residual is the smoothed frame less its slow part (below half the first-order Bragg
    radius) and less its Bragg-filtered part, on the lattice region; measured at the scale of
    the detection, it includes correlated (scan) noise that pixel differences miss.
    """
    model = bragg_filter(smooth, lattice.bases, lattice.kind)
    g1 = np.hypot(*lattice.bases[0][0])
    k = np.hypot(np.fft.fftfreq(smooth.shape[0])[:, None], np.fft.fftfreq(smooth.shape[1])[None, :])
    half = smooth.shape[1] // 2 + 1
    high = sfft.irfft2(sfft.rfft2(smooth, workers=-1) * (k > 0.5 * g1)[:, :half], s=smooth.shape,
                       workers=-1)
    resid = (high - model)[mask] if mask.any() else (high - model).ravel()
    return 1.4826 * float(np.median(np.abs(resid - np.median(resid)))), model


def lattice_sites(model, mask, separation):
    """The lattice's sites: maxima (int y, x) of the Bragg-filtered frame ``model`` inside
    ``mask``, at least ``separation`` px apart."""
    from skimage.feature import peak_local_max

    sites = peak_local_max(model, min_distance=max(1, int(separation)), threshold_abs=0,
                           exclude_border=False)
    return sites[mask[sites[:, 0], sites[:, 1]]]
