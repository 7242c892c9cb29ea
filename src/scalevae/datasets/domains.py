"""Synthetic PFM amplitude image of an a/c ferroelastic domain film (paper Section IV)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import ScaleVAEError
from ._common import (Example, check_noise, check_positive, check_shape, scan_lines,
                      signed_distance, smooth_noise)

def ferroelectric_domains(shape=(256, 256), period=24, seed=0, noise=0.05):
    """PFM amplitude image of an a/c ferroelastic domain film with known domain map.

    A geometric construction of what a vertical PFM amplitude image of a tetragonal film
    (PbTiO3 on a cubic substrate) shows:

    - the film splits into *bundles* (warped Voronoi cells, a few periods across) in which
      in-plane **a domains** run as parallel stripes along x (0 degrees) or y (90 degrees), the
      two orthogonal a/c variants, with the characteristic ``period``;
    - about half of the stripes stop inside their bundle in a tapered **needle** tip;
    - the out-of-plane **c domains** between them carry up (+) or down (-) polarisation;
      the 180-degree **c/c walls** between c+ and c- regions form closed loops;
    - vertical PFM amplitude is ~0 in a domains and high in c domains; it goes through zero
      across a c/c wall (the response changes sign), which shows as a thin dark line; a/c walls
      have a smooth tanh profile about 1.5 px wide; the c-domain response varies slowly
      (multilevel contrast);
    - the tip blurs the image (Gaussian, 1 px), and each scan line (fast axis x) has its own
      offset on top of white noise.

    Parameters
    ----------
    shape : tuple of int
        Image size (ny, nx) in px; at least ``2 * period``.
    period : float
        a/c stripe period in px (a domain plus c domain), at least 8.
    seed : int
        Random seed; the same seed gives the same image.
    noise : float
        White-noise standard deviation relative to the c-domain amplitude (~1); the per-line
        offsets have half of it.

    Returns
    -------
    Example
        One frame (``images.shape == (1, ny, nx)``), ``pixel_size`` 10 nm, no keypoints (use a
        grid). ``truth`` holds

        - ``labels`` : int8 (ny, nx), 0 = a domain, 1 = c domain, 2 = wall (pixels within 1 px
          of an a/c wall or of a c/c wall inside c);
        - ``walls`` : bool (ny, nx), ``labels == 2``;
        - ``cc_walls`` : bool (ny, nx), the c/c wall pixels only;
        - ``polarization`` : int8 (ny, nx), +1 / -1 for c+ / c- (0 in a domains);
        - ``orientation`` : float (ny, nx), stripe direction of the bundle in degrees;
        - ``bundles`` : int (ny, nx), bundle index;
        - ``needles`` : (n, 2) float, y, x of needle tips (to about 1 px: walls meander);
        - ``period`` : float, stripe period in px;
        - ``clean`` : float32 (ny, nx), the amplitude before blur and noise.

    Examples
    --------
    >>> ex = ferroelectric_domains(shape=(96, 96), period=16, seed=1)
    >>> ex.images.shape, ex.images.dtype
    ((1, 96, 96), dtype('float32'))
    >>> sorted(set(ex.truth["labels"].ravel().tolist()))
    [0, 1, 2]
    """
    period = check_positive(period, "period")
    if period < 8:
        raise ScaleVAEError(f"period {period} px is too small to draw walls: use period >= 8")
    ny, nx = check_shape(shape, int(np.ceil(2 * period)))
    noise = float(noise)
    check_noise(noise)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)

    # Bundles: nearest seed after a smooth warp of the coordinates, so borders are not straight.
    n_bundles = max(2, int(round(ny * nx / (4.5 * period) ** 2)))
    seeds = rng.uniform([0, 0], [ny, nx], size=(n_bundles, 2))
    warp = 0.6 * period
    wy = yy + warp * smooth_noise(rng, (ny, nx), 1.5 * period)
    wx = xx + warp * smooth_noise(rng, (ny, nx), 1.5 * period)
    bundles = cKDTree(seeds).query(np.stack([wy.ravel(), wx.ravel()], 1))[1].reshape(ny, nx)
    # Both variants must be present; the rest random.
    horizontal = rng.random(n_bundles) < 0.5
    horizontal[0], horizontal[1] = True, False
    tilt = np.deg2rad(rng.normal(0, 1.5, n_bundles))  # slight misalignment, as in real films

    # Stripe coordinates in each pixel's own bundle: u across the stripes, v along them.
    ang = np.where(horizontal, 0.0, np.pi / 2)[bundles] + tilt[bundles]
    u = -np.sin(ang) * xx + np.cos(ang) * yy
    v = np.cos(ang) * xx + np.sin(ang) * yy
    # Walls meander by about a pixel, as strain relaxes unevenly.
    u = u + 1.0 * smooth_noise(rng, (ny, nx), 0.5 * period)
    phase = rng.uniform(0, period, n_bundles)
    u = u + phase[bundles]
    k = np.floor(u / period).astype(int)
    du = u - (k + 0.5) * period
    a_frac = rng.uniform(0.35, 0.5, n_bundles)  # a-domain fraction of the period per bundle

    # Per-stripe needle: stripe (bundle, k) ends at v_end with a tapered tip pointing +v or -v.
    k_off = k.min()
    n_k = k.max() - k_off + 1
    length = max(ny, nx)
    ends = rng.random((n_bundles, n_k)) < 0.6
    stripe_width = rng.uniform(0.75, 1.25, (n_bundles, n_k))
    direction = np.where(rng.random((n_bundles, n_k)) < 0.5, 1.0, -1.0)
    # Tips fall inside the image and most of each stripe exists.
    v_end = length * (0.5 + direction * rng.uniform(-0.2, 0.45, (n_bundles, n_k)))
    taper = 1.5 * period
    b, kk = bundles, k - k_off
    along = direction[b, kk] * (v_end[b, kk] - v)  # > 0 on the side where the stripe exists
    width = np.where(ends[b, kk], np.clip(along / taper, 0, 1) ** 0.8, 1.0)
    half = 0.5 * a_frac[b] * stripe_width[b, kk] * period * width
    a_mask = np.abs(du) < half

    # c+/c- regions: a thresholded smooth field gives islands bounded by closed c/c walls.
    pol_field = smooth_noise(rng, (ny, nx), 0.3 * period)
    c_plus = pol_field < 1.2
    d_ac = signed_distance(a_mask)  # > 0 inside a domains
    d_cc = signed_distance(c_plus)

    # Amplitude: a ~ 0.05, c ~ 1 with a slow multilevel modulation, zero crossing at c/c walls.
    m_a = 0.5 * (1 + np.tanh(d_ac / 1.5))
    c_level = 1.0 + 0.25 * smooth_noise(rng, (ny, nx), 2.0 * period)
    c_amp = c_level * np.abs(np.tanh(d_cc / 1.2))
    clean = 0.05 * m_a + (1 - m_a) * c_amp

    blurred = ndimage.gaussian_filter(clean, 1.0)
    image = scan_lines(rng, blurred, 0.5 * noise, noise)

    cc_walls = (np.abs(d_cc) <= 1.0) & ~a_mask
    walls = (np.abs(d_ac) <= 1.0) | cc_walls
    labels = np.where(walls, 2, np.where(a_mask, 0, 1)).astype(np.int8)
    polarization = np.where(a_mask, 0, np.where(c_plus, 1, -1)).astype(np.int8)

    # Needle tips that fall inside their own bundle in the image, for reference.
    needles = []
    for bi, ki in zip(*np.nonzero(ends)):
        a0 = (0.0 if horizontal[bi] else np.pi / 2) + tilt[bi]
        uc = (ki + k_off + 0.5) * period - phase[bi]
        y = np.cos(a0) * uc + np.sin(a0) * v_end[bi, ki]
        x = -np.sin(a0) * uc + np.cos(a0) * v_end[bi, ki]
        iy, ix = int(round(y)), int(round(x))
        if 0 <= iy < ny and 0 <= ix < nx and bundles[iy, ix] == bi:
            needles.append((y, x))
    needles = np.array(needles, dtype=float).reshape(-1, 2)

    truth = {
        "labels": labels,
        "walls": walls,
        "cc_walls": cc_walls,
        "polarization": polarization,
        "orientation": np.rad2deg(ang),
        "bundles": bundles,
        "needles": needles,
        "period": float(period),
        "clean": clean.astype(np.float32),
    }
    return Example(
        name="domains", images=image[None].astype(np.float32), keypoints=None, pixel_size=10.0,
        unit="nm", control=None, control_name=None, truth=truth,
        default_windows=list(range(8, 65, 4)), default_keypoints="grid:4",
        description="PFM amplitude of an a/c ferroelastic domain film (synthetic)",
    )
