"""The crystal lattice of an atomically resolved image, measured from its own Bragg peaks.

:func:`measure_lattice` finds the first-order Bragg peaks in the windowed power spectrum
(:func:`skimage.feature.peak_local_max` on the log power with its radial median removed),
groups them into grains (a 6-fold set for a hexagonal lattice, a 4-fold set for a square one,
at one radius; grains differ by their angle) and fits each grain's reciprocal basis to all of
its peaks and their harmonics. Hexagonal and honeycomb lattices share their Bragg peaks; they
are told apart in real space: a honeycomb's Bragg-filtered image has a second column a third of
the way along the cell's diagonal from each column, a hexagonal one the centre of a triangle.

The Bragg filter and the lattice-presence map built on a measured lattice are in :mod:`.bragg`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from ..errors import ScaleVAEError
from .bragg import bragg_filter

__all__ = ["Lattice", "measure_lattice", "with_missed_grains"]

_SPOT_RATIO = 12.0     # a grain's strongest Bragg peak stands this many times above its ring's median
_WEAK_RATIO = 6.0      # its other orders need only this (they are looked for where expected)
_ANGLE_TOL = 4.0       # degrees: two peaks belong to one set when their angles differ by this
_RADIUS_TOL = 0.08     # ... and their radii by this fraction
_MAX_PEAKS = 200       # strongest spectrum maxima examined
_SECOND_SITE = 0.3     # honeycomb: filtered value at the other sublattice / a column's above this
_MISSED_AREA = 0.1     # look for missed grains where this fraction of the frame shows no lattice
_SLOW = 0.4            # peaks inside this fraction of the first-order radius are slow variation


@dataclass(frozen=True)
class Lattice:
    """A measured lattice.

    Attributes
    ----------
    kind : str
        ``"hexagonal"``, ``"honeycomb"`` or ``"square"``.
    constant : float
        Lattice constant ``a`` in px (mean over grains).
    bond : float
        Nearest-neighbour distance of the columns in px: ``a / sqrt(3)`` for honeycomb, ``a``
        otherwise.
    orientations : tuple of float
        Per grain, the angle of a real-space lattice vector in degrees, from +x towards +y (image
        rows), modulo 60 (hexagonal, honeycomb) or 90 (square).
    bases : tuple of (2, 2) arrays
        Per grain, the reciprocal basis vectors (rows, ``(ky, kx)`` in cycles/px).
    """

    kind: str
    constant: float
    bond: float
    orientations: tuple
    bases: tuple

    @property
    def n_grains(self):
        return len(self.bases)


def _spectrum(frame, window=None):
    """Windowed power spectrum (fftshifted) and the log power with its radial median removed.

    ``window``: (y, x) weights; default a Hann window."""
    f = np.asarray(frame, np.float64)
    lo, hi = np.percentile(f, [1, 99])
    f = np.clip(f, lo, hi)  # a few very bright dopants or dark holes must not dominate
    ny, nx = f.shape
    win = np.outer(np.hanning(ny), np.hanning(nx)) if window is None else window
    mean = (f * win).sum() / max(win.sum(), 1e-300)
    power = np.abs(np.fft.fftshift(sfft.fft2((f - mean) * win, workers=-1))) ** 2
    ky = (np.arange(ny) - ny // 2) / ny
    kx = (np.arange(nx) - nx // 2) / nx
    k = np.hypot(ky[:, None], kx[None, :])
    logp = np.log(power + 1e-30 * power.max() + 1e-300)
    # radial median: the smooth, isotropic background (noise, slow background, amorphous ring)
    rbin = np.round(k * min(ny, nx)).astype(int)
    order = np.lexsort((logp.ravel(), rbin.ravel()))  # by ring, then by value
    counts = np.bincount(rbin.ravel())
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    vals = logp.ravel()[order]
    med = np.where(counts > 0, vals[np.minimum(starts + counts // 2, vals.size - 1)], 0.0)
    base = np.exp(med)[rbin]
    white = logp - med[rbin]
    white[:, nx // 2 - 1:nx // 2 + 2] = 0.0  # kx = 0 (and its window lobes): scan-line noise
    white[k * min(ny, nx) < 3] = 0.0  # fewer than 3 periods across the frame is not a lattice
    white[k > 0.5] = 0.0
    return power - base, white, ky, kx


def _peaks(frame, window=None):
    """Half-plane Bragg peak candidates: k vectors (n, 2) in cycles/px, log heights above the
    ring's median, and excess powers (over 3 x 3 bins)."""
    from skimage.feature import peak_local_max

    excess, white, ky, kx = _spectrum(frame, window)
    ny, nx = white.shape
    half = white.copy()
    half[: ny // 2] = 0.0  # P(-k) = P(k): keep ky >= 0
    half[ny // 2, : nx // 2] = 0.0
    idx = peak_local_max(half, min_distance=2, threshold_abs=np.log(_WEAK_RATIO),
                         exclude_border=1, num_peaks=_MAX_PEAKS)
    if len(idx) == 0:
        return np.empty((0, 2)), np.empty(0), np.empty(0)
    # sub-bin position: centroid of the power over 3 x 3 bins
    vec = []
    for r, c in idx:
        w = np.clip(excess[r - 1:r + 2, c - 1:c + 2], 0, None) + 1e-300
        dy, dx = np.mgrid[-1:2, -1:2]
        vec.append([ky[r] + (w * dy).sum() / w.sum() / ny, kx[c] + (w * dx).sum() / w.sum() / nx])
    power = [excess[r - 1:r + 2, c - 1:c + 2].sum() for r, c in idx]
    return np.array(vec), white[idx[:, 0], idx[:, 1]], np.array(power)


def _rot(v, deg):
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([c * v[0] + s * v[1], -s * v[0] + c * v[1]])


def _match(vec, target, tol):
    """Index of the peak (or its mirror -k) within tol (cycles/px) of target, else -1."""
    d = np.minimum(np.hypot(*(vec - target).T), np.hypot(*(vec + target).T))
    i = int(np.argmin(d))
    return i if d[i] <= tol else -1


def _hits(vec, targets, tol):
    return sum(_match(vec, t, tol) >= 0 for t in targets)


def _finer_found(vec, strong, targets, tol, n):
    """A finer reciprocal lattice shows: two of its directions have a peak, or every direction
    off the blanked kx = 0 line has a strong one (n: the frame's width in px)."""
    if _hits(vec, targets, tol) >= 2:
        return True
    open_ = [t for t in targets if abs(t[1]) * n > 1.5]
    return 0 < len(open_) < len(targets) and _hits(vec[strong], open_, tol) == len(open_)


def _kinds(vec, g, n):
    """The lattice kinds with a peak where they put one beside g (hexagonal: at 60 or 120
    degrees; square: at 90 degrees)."""
    tol = max(_RADIUS_TOL * np.hypot(*g), 1.5 / n)
    return [kind for kind, angles in (("hexagonal", (60, 120)), ("square", (90,)))
            if _hits(vec, [_rot(g, a) for a in angles], tol)]


def _grain(vec, strong, g, n, kind, finer=True):
    """The lattice of ``kind`` through peak g: (kind, basis) with the finest one that explains it.

    ``vec`` holds the weaker peaks too: a finer reciprocal lattice (g was a higher order) is
    accepted when at least two of its independent first-order directions show a peak
    (``finer=False``: g is taken as the first order).
    """
    tol = max(_RADIUS_TOL * np.hypot(*g), 1.5 / n)
    for _ in range(3 if finer else 0):
        coarser = ([[_rot(g, a) / np.sqrt(3) for a in (30, 90, 150)]] if kind == "hexagonal"
                   else [[_rot(g, a) / np.sqrt(2) for a in (45, 135)]])
        coarser.append([_rot(g, a) / 2 for a in ((0, 60, 120) if kind == "hexagonal" else (0, 90))])
        for targets in coarser:  # first orders of a finer reciprocal lattice
            if _finer_found(vec, strong, targets, tol, n):
                g = next(vec[_match(vec, t, tol)] for t in targets if _match(vec, t, tol) >= 0)
                break
        else:
            break
    g2 = _rot(g, 60 if kind == "hexagonal" else 90)
    return kind, np.array([g, g2])


def _fit_basis(vec, basis, tol):
    """Peaks explained as integer combinations of `basis`; the basis refined on them (lstsq)."""
    hk = np.rint(vec @ np.linalg.inv(basis))
    pred = hk @ basis
    ok = (np.hypot(*(vec - pred).T) <= tol) & (np.abs(hk).sum(1) > 0) & (np.abs(hk).max(1) <= 4)
    if ok.sum() >= 2:
        sol, *_ = np.linalg.lstsq(hk[ok], vec[ok], rcond=None)
        if np.linalg.matrix_rank(hk[ok]) == 2:
            basis = sol
    return basis, ok


def _credible(vec, power, basis, kind, tol, shape):
    """A lattice's fitted basis is of its kind (equal lengths, 60 or 90 degrees) and its
    first-order peaks are all present and of comparable power (within 10 x).

    Symmetry-equivalent reflections of a crystal are about equally strong; a chance match of
    streaks (scan-line artefacts, tiling) is not. A direction on the kx = 0 line, which the
    spectrum leaves out (scan-line noise), may be missing.
    """
    lengths = np.hypot(*basis.T)
    angle = np.rad2deg(np.arccos(np.clip(basis[0] @ basis[1] / lengths.prod(), -1, 1)))
    if abs(lengths[0] / lengths[1] - 1) > 2 * _RADIUS_TOL or \
            abs(angle - (60 if kind == "hexagonal" else 90)) > 2 * _ANGLE_TOL:
        return False  # the fitted basis is not of that kind (e.g. a rectangular lattice)
    dirs = [basis[0], basis[1]] + ([basis[1] - basis[0]] if kind == "hexagonal" else [])
    found, blank = [], 0
    for d in dirs:
        j = _match(vec, d, tol)
        if j >= 0:
            found.append(power[j])
        elif abs(d[1]) * shape[1] > 1.5:
            return False
        else:
            blank += 1
    return (len(found) + blank >= 2 and len(found) >= 1
            and max(found) <= 10 * max(min(found), 1e-300))


def _firsts(bases, period):
    """Which bases are the first of their orientation (a boolean per basis): a split Bragg
    peak can seed the same grain twice."""
    seen, out = [], []
    for b in bases:
        real = np.linalg.inv(b).T
        ang = np.rad2deg(np.arctan2(real[:, 0], real[:, 1]))
        a = float(np.rad2deg(np.angle(np.mean(np.exp(1j * np.deg2rad(ang) * 360 / period))))
                  * period / 360 % period)
        dup = any(abs((a - x + period / 2) % period - period / 2) < 2 * _ANGLE_TOL for x in seen)
        out.append(not dup)
        seen.append(a)
    return out


def _count_kind(frame, bases, kind, constant):
    """'honeycomb' when the Bragg-filtered image has a second column beside each one, else `kind`.

    Per grain, at the stronger half of the filtered image's maxima, the value a third of the way
    along ``u + v`` (real lattice vectors 60 degrees apart), on either side, over the maximum's:
    a honeycomb's other sublattice sits there (about 1); a hexagonal lattice has the centre of a
    triangle there (about 0). Sampling the sites, unlike counting maxima per cell, holds at low
    dose and beside contamination.
    """
    from skimage.feature import peak_local_max

    if kind != "hexagonal":
        return kind
    ratios = []
    for filt, basis in zip(bragg_filter(frame, bases, kind, per_grain=True), bases):
        u, v = np.linalg.inv(basis).T  # real lattice vectors (y, x) in px
        v = u + v if u @ v < 0 else v
        pk = peak_local_max(filt, min_distance=max(1, int(0.3 * constant)),
                            exclude_border=max(1, int(constant)))
        if len(pk) < 4:
            continue
        val = filt[pk[:, 0], pk[:, 1]]
        pk, val = pk[val > np.median(val)], val[val > np.median(val)]  # the grain's own region
        beside = [ndi.map_coordinates(filt, (pk + sign * (u + v) / 3).T, order=1, mode="nearest")
                  for sign in (1, -1)]
        ratios.append(np.max(beside, axis=0) / val)
    if not ratios:
        return kind
    return "honeycomb" if np.median(np.concatenate(ratios)) > _SECOND_SITE else "hexagonal"


def measure_lattice(frame, window=None):
    """Lattice type, constant, bond length and per-grain orientation from the image's Bragg peaks.

    Parameters
    ----------
    frame : (y, x) array
        One atomically resolved image (columns brighter or darker than the background).
    window : (y, x) array, optional
        Weights of the frame's pixels in its power spectrum; default a Hann window.

    Returns
    -------
    Lattice

    Raises
    ------
    ScaleVAEError
        If the power spectrum shows no set of Bragg peaks (no lattice).

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)   # square, a = 10 px
    ...           for cy in range(4, 128, 10) for cx in range(4, 128, 10))
    >>> img = img + np.random.default_rng(0).normal(0, 0.05, img.shape)
    >>> lat = measure_lattice(img)
    >>> lat.kind, round(lat.constant, 1), lat.n_grains
    ('square', 10.0, 1)
    """
    frame = np.asarray(frame, np.float64)
    vec, strength, power = _peaks(frame, window)
    grains, pool, explained = [], np.ones(len(vec), bool), np.zeros(len(vec), bool)
    # seeds: the peaks that carry the most power first (a lattice of bright columns, not a
    # sharp but faint texture), among those standing far above their ring
    for i in np.argsort(-power, kind="stable"):
        if not pool[i] or strength[i] < np.log(_SPOT_RATIO):
            continue
        # where both kinds have a peak beside this one (two hexagonal grains about 30 degrees
        # apart put peaks 90 degrees apart; noise or contamination puts a stray one anywhere),
        # the credible lattice that explains the most peak power
        fits = []
        for kind in _kinds(vec, vec[i], frame.shape[1]):
            if grains and kind != grains[0][0]:  # every grain is of the first one's kind
                continue
            for finer in (True, False):  # the finer lattice may be a chance match of noise
                kind, basis = _grain(vec, strength >= np.log(_SPOT_RATIO), vec[i],
                                     frame.shape[1], kind, finer)
                tol = max(_RADIUS_TOL * np.hypot(*basis[0]), 1.5 / min(frame.shape))
                basis, ok = _fit_basis(vec, basis, tol)
                if (ok & pool).sum() >= 2 and _credible(vec, power, basis, kind, tol, frame.shape):
                    fits.append((power[ok].sum(), kind, basis, ok))
                    break
        if not fits:
            pool[i] = False
            continue
        _, kind, basis, ok = max(fits, key=lambda fit: fit[0])
        grains.append((kind, basis, power[ok].sum()))
        explained |= ok
        pool &= ~ok
    if not grains:
        raise ScaleVAEError(
            "the image shows no lattice periodicity (no set of Bragg peaks in its power "
            "spectrum); give the atom spacing in px as 'atoms:SIZE' or use 'grid:STEP'")
    # sharp peaks far inside the first order (periods of several cells) are the slow variation of
    # contamination or background, not a lattice that the grains leave unexplained
    inner = np.hypot(*vec.T) < _SLOW * np.hypot(*grains[0][1][0])
    sharp = np.flatnonzero((strength >= np.log(_SPOT_RATIO)) & ~inner)
    if not explained[sharp[np.argmax(power[sharp])]]:
        raise ScaleVAEError(
            "the strongest Bragg peak fits no hexagonal, honeycomb or square lattice (a "
            "rectangular or oblique one?); give the atom spacing in px as 'atoms:SIZE'")
    first = grains[0][1]
    radius = np.hypot(*first[0])
    # grains: sets at the radius of the strongest one (other radii are its harmonics or noise)
    grains = [g for g in grains if abs(np.hypot(*g[1][0]) / radius - 1) < 2 * _RADIUS_TOL]
    kind = grains[0][0]
    period = 60.0 if kind == "hexagonal" else 90.0
    bases = [g[1] for g in grains]
    bases = tuple(b for b, first in zip(bases, _firsts(bases, period)) if first)
    consts, angles = [], []
    for b in bases:
        real = np.linalg.inv(b).T  # rows: real-space lattice vectors (y, x) in px
        consts.append(np.mean(np.hypot(*real.T)))
        ang = np.rad2deg(np.arctan2(real[:, 0], real[:, 1]))
        angle = float(np.rad2deg(np.angle(np.mean(np.exp(1j * np.deg2rad(ang) * 360 / period))))
                      * period / 360 % period)
        angles.append(angle)
    constant = float(np.median(consts))
    kind = _count_kind(frame, bases, kind, constant)
    bond = constant / np.sqrt(3) if kind == "honeycomb" else constant
    return Lattice(kind, constant, float(bond), tuple(angles), bases)


def with_missed_grains(frame, lattice, mask):
    """``lattice`` and the grains its measurement missed, looked for where ``mask`` shows none.

    A small grain at the frame's edge is faint under the Hann window of the first look: the
    spectrum is taken again with a window on the region without lattice (smoothed over a
    lattice constant, tapered at the frame's edges); a lattice of the same kind and constant
    (within 3 %) found there adds its orientations that are new.

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    ...           for cy in range(4, 128, 10) for cx in range(4, 128, 10))
    >>> lat = measure_lattice(img)
    >>> with_missed_grains(img, lat, np.ones(img.shape, bool)) is lat  # nothing is missing
    True
    """
    from scipy.signal.windows import tukey

    missing = ~np.asarray(mask, bool)
    if missing.mean() < _MISSED_AREA:
        return lattice
    taper = np.outer(tukey(frame.shape[0], 0.2), tukey(frame.shape[1], 0.2))
    try:
        other = measure_lattice(frame, ndi.gaussian_filter(missing * 1.0, lattice.constant) * taper)
    except ScaleVAEError:
        return lattice
    if other.kind != lattice.kind or abs(other.constant / lattice.constant - 1) > 0.03:
        return lattice
    period = 90.0 if lattice.kind == "square" else 60.0
    new = [(b, a) for b, a in zip(other.bases, other.orientations)
           if all(abs((a - o + period / 2) % period - period / 2) > 2 * _ANGLE_TOL
                  for o in lattice.orientations)]
    if not new:
        return lattice
    return Lattice(lattice.kind, lattice.constant, lattice.bond,
                   lattice.orientations + tuple(a for _, a in new),
                   lattice.bases + tuple(b for b, _ in new))
