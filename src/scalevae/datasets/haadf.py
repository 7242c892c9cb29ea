"""A HAADF-STEM image simulator for graphene with a known answer (true atom positions).

Incoherent Z-contrast imaging: each atom column is a Gaussian probe image (FWHM ``fwhm`` A)
of weight ``(Z / 6) ** 1.7`` (C = 1, Si ~ 4.2). Optional: Si dopants, single vacancies,
holes, a grain boundary (two lattices rotated against each other meeting along a line; atoms of
the second grain closer than 0.8 bond to the first are removed), amorphous contamination
patches (an atom-scale random texture inside smooth blobs), a slow background, scan-line
jitter and line-offset noise, Poisson shot noise at ``dose`` counts per carbon peak and
Gaussian read noise.
"""

from __future__ import annotations

__all__ = ["simulate_haadf", "degrade", "resample", "match_points", "near", "CC"]

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

CC = 1.42  # C-C bond, Angstrom


def _honeycomb(shape, bond, angle, origin):
    """Honeycomb atom positions (y, x) in px covering ``shape`` (plus a margin)."""
    a = bond * np.sqrt(3)
    a1 = a * np.array([1.0, 0.0])
    a2 = a * np.array([0.5, np.sqrt(3) / 2])
    basis = np.array([[0.0, 0.0], (a1 + a2) / 3])
    reach = 0.5 * np.hypot(*shape) + 3 * a
    n = int(np.ceil(reach / (a * np.sqrt(3) / 2))) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    cells = i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2
    xy = np.concatenate([cells + basis[0], cells + basis[1]])
    c, s = np.cos(angle), np.sin(angle)
    xy = xy @ np.array([[c, -s], [s, c]]).T
    yx = xy[:, ::-1] + np.array([(shape[0] - 1) / 2, (shape[1] - 1) / 2]) + origin
    m = 2 * bond
    keep = ((yx[:, 0] > -m) & (yx[:, 0] < shape[0] - 1 + m)
            & (yx[:, 1] > -m) & (yx[:, 1] < shape[1] - 1 + m))
    return yx[keep]


def _render(shape, pos, weight, sigma):
    """Sum of Gaussians (sigma px) at ``pos`` with ``weight``, by local patches."""
    ny, nx = shape
    r = int(np.ceil(4 * sigma))
    off = np.arange(-r, r + 1)
    iy = np.floor(pos[:, 0]).astype(int)
    ix = np.floor(pos[:, 1]).astype(int)
    out = np.zeros(ny * nx)
    chunk = max(1, 4_000_000 // len(off) ** 2)
    for k in range(0, len(pos), chunk):
        sl = slice(k, k + chunk)
        yy = iy[sl, None] + off[None, :]  # (n, k)
        xx = ix[sl, None] + off[None, :]
        gy = np.exp(-0.5 * ((yy - pos[sl, 0:1]) / sigma) ** 2) * ((yy >= 0) & (yy < ny))
        gx = np.exp(-0.5 * ((xx - pos[sl, 1:2]) / sigma) ** 2) * ((xx >= 0) & (xx < nx))
        vals = (gy[:, :, None] * gx[:, None, :]) * weight[sl, None, None]
        flat = np.clip(yy, 0, ny - 1)[:, :, None] * nx + np.clip(xx, 0, nx - 1)[:, None, :]
        out += np.bincount(flat.ravel(), vals.ravel(), minlength=ny * nx)
    return out.reshape(ny, nx)


def simulate_haadf(shape=(512, 512), bond=12.0, seed=0, fwhm=1.0, dose=20.0, read_noise=0.05,
             n_si=0, vacancies=0, holes=0, hole_radius=3.0, grain_boundary=False, gb_angle=25.0,
             contamination=0.0, background=0.5, jitter=0.3, line_noise=0.02, angle=None):
    """Simulated HAADF image of graphene and the true atom positions.

    Parameters
    ----------
    shape : (ny, nx)
    bond : float
        C-C distance in px (pixel size = 1.42 / bond A/px).
    fwhm : float
        Probe FWHM in A.
    dose : float
        Expected counts at a carbon peak (low = noisy).
    read_noise : float
        Gaussian noise sigma, in units of a carbon peak.
    n_si : int
        Number of Si substitutions.
    vacancies : int
        Number of single vacancies.
    holes : int
        Number of holes of radius ``hole_radius`` bonds.
    grain_boundary : bool
        Two grains rotated by ``gb_angle`` degrees meeting along a random line through the centre.
    contamination : float
        Amplitude (carbon peaks) of amorphous contamination patches (0: none).
    background : float
        Amplitude (carbon peaks) of the slow background.
    jitter : float
        Scan-line jitter, px (rms x shift per line, correlated over a few lines).
    line_noise : float
        rms offset per scan line (carbon peaks).

    Returns
    -------
    image : (ny, nx) float32
    atoms : (n, 2) float64, true (y, x) of every atom (jitter not included)
    info : dict
        ``element`` (atomic number per atom), ``contamination`` (mask of the amorphous
        patches) and ``sigma_px`` (the probe's Gaussian sigma in px).

    Examples
    --------
    >>> img, atoms, info = simulate_haadf(shape=(64, 64), bond=8, n_si=1, seed=0)
    >>> img.shape, atoms.shape[1], int((info["element"] == 14).sum())
    ((64, 64), 2, 1)
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    sigma = fwhm / (CC / bond) / (2 * np.sqrt(2 * np.log(2)))
    if angle is None:
        angle = rng.uniform(0, np.pi / 3)
    pos = _honeycomb(shape, bond, angle, rng.uniform(-1, 1, 2) * bond)
    if grain_boundary:
        pos2 = _honeycomb(shape, bond, angle + np.deg2rad(gb_angle), rng.uniform(-1, 1, 2) * bond)
        theta = rng.uniform(0, np.pi)
        nrm = np.array([np.cos(theta), np.sin(theta)])
        c = np.array([(ny - 1) / 2, (nx - 1) / 2]) + rng.uniform(-0.1, 0.1, 2) * np.array(shape)
        side1 = (pos - c) @ nrm < 0
        side2 = (pos2 - c) @ nrm >= 0
        pos, pos2 = pos[side1], pos2[side2]
        d, _ = cKDTree(pos).query(pos2)
        pos = np.concatenate([pos, pos2[d >= 0.8 * bond]])
    # small static displacements (0.03 A rms): thermal / strain
    pos = pos + rng.normal(0, 0.03 / (CC / bond), pos.shape)
    inside = ((pos[:, 0] >= 0) & (pos[:, 0] <= ny - 1) & (pos[:, 1] >= 0) & (pos[:, 1] <= nx - 1))
    keep = np.ones(len(pos), bool)
    for _ in range(holes):
        centre = pos[rng.choice(np.flatnonzero(inside))]
        keep &= np.hypot(*(pos - centre).T) > hole_radius * bond
    if vacancies:
        cand = np.flatnonzero(keep & inside)
        keep[rng.choice(cand, min(vacancies, len(cand)), replace=False)] = False
    pos = pos[keep]
    inside = inside[keep]
    element = np.full(len(pos), 6)
    if n_si:
        cand = np.flatnonzero(inside)
        element[rng.choice(cand, min(n_si, len(cand)), replace=False)] = 14
    weight = (element / 6.0) ** 1.7
    # scan-line jitter: each line is sampled at x + j(y); equivalently atoms move by -j(y)
    clean = _render(shape, pos, weight, sigma)
    if jitter > 0:
        j = ndi.gaussian_filter1d(rng.normal(0, 1, ny), 1.5)
        j *= jitter / max(j.std(), 1e-12)
        yy, xx = np.mgrid[:ny, :nx].astype(float)
        clean = ndi.map_coordinates(clean, [yy, xx + j[:, None]], order=1, mode="nearest")
    contam_mask = np.zeros(shape, bool)
    if contamination > 0:
        blob = ndi.gaussian_filter(rng.normal(size=shape), 0.08 * min(shape))
        blob /= blob.std()
        contam_mask = blob > 1.0
        soft = ndi.gaussian_filter(contam_mask.astype(float), 0.5 * bond)
        texture = ndi.gaussian_filter(rng.normal(size=shape), 0.4 * sigma + 0.5)
        texture = (texture - texture.mean()) / texture.std()
        clean = clean + contamination * soft * (1.0 + 0.5 * texture)
    if background > 0:
        slow = ndi.gaussian_filter(rng.normal(size=shape), 0.15 * min(shape))
        slow = (slow - slow.min()) / max(np.ptp(slow), 1e-12)
        ramp = (np.arange(nx)[None, :] / nx) * 0.3
        clean = clean + background * (slow + ramp)
    clean = clean + 0.1  # vacuum signal floor
    img = rng.poisson(np.clip(clean, 0, None) * dose) / dose
    img = img + rng.normal(0, read_noise, shape) + rng.normal(0, line_noise, (ny, 1))
    return img.astype(np.float32), pos, {"element": element, "contamination": contam_mask,
                                          "sigma_px": sigma}


def degrade(image, dose, seed=0, blur=0.0, jitter=0.0, drift=0.0, line_noise=0.0, points=None):
    """An ideal (noise-free) HAADF image as a microscope records it at a finite dose.

    ``image`` is in units of a carbon column's peak (1 = one carbon peak). In order: probe
    (source-size) blur, a Gaussian of ``blur`` px; slow drift, each scan line shifted along x
    by ``drift`` px per 100 lines (a shear); scan-line jitter, each line shifted along x by
    ``jitter`` px rms, correlated over a few lines; Poisson noise at ``dose`` expected counts
    per carbon peak; a random offset per line of ``line_noise`` carbon peaks rms. With
    ``points`` ((n, 2) y, x), also returns them where the drift and jitter moved them.

    Examples
    --------
    >>> img = degrade(np.ones((32, 32)), dose=100, seed=0, blur=1, jitter=0.5, drift=2)
    >>> img.shape, bool(abs(img.mean() - 1) < 0.05)
    ((32, 32), True)
    """
    rng = np.random.default_rng(seed)
    img = np.asarray(image, np.float64)
    ny, nx = img.shape
    if blur > 0:
        img = ndi.gaussian_filter(img, blur, mode="nearest")
    shift = drift * np.arange(ny) / 100.0
    if jitter > 0:
        j = ndi.gaussian_filter1d(rng.normal(0, 1, ny), 1.5)
        shift = shift + j * jitter / max(j.std(), 1e-12)
    if np.any(shift):
        yy, xx = np.mgrid[:ny, :nx].astype(float)
        img = ndi.map_coordinates(img, [yy, xx + shift[:, None]], order=1, mode="nearest")
    img = rng.poisson(np.clip(img, 0, None) * dose) / dose
    img = img + rng.normal(0, line_noise, (ny, 1)) if line_noise > 0 else img
    if points is None:
        return img.astype(np.float32)
    moved = np.array(points, np.float64).reshape(-1, 2)
    moved[:, 1] -= np.interp(moved[:, 0], np.arange(ny), shift)  # line y samples x + shift(y)
    return img.astype(np.float32), moved


def resample(image, points, mask, factor):
    """A scan image, its points (y, x) and mask on a grid ``factor`` times finer (cubic spline).

    Pixel centres stay at integer coordinates: a point at ``y`` moves to ``y * factor`` to
    the accuracy of the output grid (``zoom`` maps the corner pixels onto each other).

    Examples
    --------
    >>> img, pts, m = resample(np.ones((10, 10)), np.array([[4.5, 9.0]]), np.ones((10, 10), bool), 2)
    >>> img.shape, m.shape, pts.round(2).tolist()
    ((20, 20), (20, 20), [[9.5, 19.0]])
    """
    img = np.asarray(image, np.float64)
    out = ndi.zoom(img, factor, order=3, mode="nearest", grid_mode=False)
    scale = (np.array(out.shape) - 1) / (np.array(img.shape) - 1)
    big = ndi.zoom(np.asarray(mask, np.uint8), factor, order=0, grid_mode=False).astype(bool)
    return out, np.asarray(points, np.float64) * scale, big


def near(points, shape, radius):
    """Boolean image of ``shape``: True within ``radius`` px of any of ``points`` (y, x); None
    when there are none. The ``exclude`` of :func:`match_points` (e.g. doubtful references).

    Examples
    --------
    >>> int(near(np.array([[2.0, 2.0]]), (5, 5), 1).sum()), near(np.empty((0, 2)), (5, 5), 1)
    (5, None)
    """
    if len(points) == 0:
        return None
    seed = np.zeros(shape, bool)
    seed[tuple(np.round(points).astype(int).T)] = True
    return ndi.distance_transform_edt(~seed) <= radius


def match_points(found, truth, radius, margin=0.0, shape=None, exclude=None):
    """Recall and precision of found points (y, x) against true ones, matched within radius.

    Recall: the fraction of true points with a found point within ``radius``; precision: the
    fraction of found points with a true point within ``radius``. With ``shape`` and
    ``margin``, points closer than ``margin`` to the frame's edge are not scored (but still
    match the other side's points); with ``exclude`` (a boolean image), true points on it are
    left out of the recall and found points on it out of the precision.

    Examples
    --------
    >>> match_points(np.array([[1.0, 1.0], [5.0, 5.0]]), np.array([[1.2, 1.0], [9.0, 9.0]]), 0.5)
    (0.5, 0.5)
    """
    found = np.asarray(found, np.float64).reshape(-1, 2)
    truth = np.asarray(truth, np.float64).reshape(-1, 2)

    def keep(p):
        ok = np.ones(len(p), bool)
        if shape is not None:
            ok &= (p >= margin).all(1) & (p[:, 0] <= shape[0] - 1 - margin) \
                & (p[:, 1] <= shape[1] - 1 - margin)
        if exclude is not None:
            iy = np.clip(np.round(p[:, 0]).astype(int), 0, exclude.shape[0] - 1)
            ix = np.clip(np.round(p[:, 1]).astype(int), 0, exclude.shape[1] - 1)
            ok &= ~exclude[iy, ix]
        return ok

    t, f = truth[keep(truth)], found[keep(found)]
    if len(t) == 0 or len(f) == 0:
        return 0.0, 0.0
    # each side is matched against ALL points of the other: a column just inside the margin
    # whose detection lies just outside it is found
    recall = float(np.mean(cKDTree(found).query(t)[0] <= radius))
    precision = float(np.mean(cKDTree(truth).query(f)[0] <= radius))
    return recall, precision
