"""Atom (bright column) detection for atomically resolved HAADF-STEM images.

The lattice comes first (:mod:`.lattice`): its Bragg peaks give the type, the lattice
constant and the bond (the nearest-neighbour spacing), one orientation per grain, and the
region where the image shows the lattice at all (amorphous material, contamination, vacuum,
holes and thin amorphous layers on the lattice get no keypoint: :func:`.bragg.lattice_mask`).
Within that region (:func:`detect_atoms`) the columns are the local maxima of the band-passed
frame (a scale-normalised negative Laplacian of Gaussian of sigma 0.3 bond, which ignores
slopes, so a dim column on the tail of a bright neighbour is still a maximum), at least 0.6 bond
apart, whose contrast above the local floor exceeds 4 noise sigmas (the robust spread of the
smoothed frame's residual from its Bragg-filtered lattice, correlated scan noise included) and a
fraction of the median column contrast; not where the Bragg-filtered frame has no column, nor
alone. At low dose the noise can move a column's band-pass maximum onto a neighbour's: the
lattice's sites (maxima of the Bragg-filtered frame) with no maximum near them are kept where
the frame's own contrast exceeds 3 noise sigmas (a vacancy has none). Positions: a 3-point
parabola along y and x through the band-passed plus the Bragg-filtered frame, which at low dose
averages out the noise of a single column.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import ScaleVAEError
from .bragg import lattice_mask, lattice_sites, residual_noise
from .lattice import measure_lattice, with_missed_grains
from .spacing import (_band_pass, _contrast, _noise_sigma, _not_alone, _refine, _strong_maxima,
                      ring_spacing)
from .select import MIN_KEYPOINTS  # one threshold for every keypoint source

__all__ = ["AtomDetection", "detect_atoms", "atom_detection", "estimate_spacing", "atom_keypoints",
           "atom_windows", "MIN_KEYPOINTS"]

log = logging.getLogger(__name__)


_BAND = 0.3        # sigma of the -LoG band-pass whose maxima are the candidates, in spacings
_MIN_DIST = 0.6     # minimum distance between maxima, in spacings
_NOISE_K = 4.0      # contrast must exceed this many noise sigmas of the smoothed frame
_SITE_K = 3.0       # ... or this many at a lattice site where the band-pass has no maximum
_SITE_SEP = 0.5     # lattice sites (maxima of the Bragg-filtered frame) at least this far apart
_FRACTION = 0.3     # ... and this fraction of the median column contrast
_LONELY = 1.6       # a column needs another one within this many spacings
_OFF_SITE = 0.25    # a column's Bragg-filtered value is above -this x the median column's
_MASK_WARN = 0.05   # warn when more than this fraction of the image shows no lattice


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


def _credible_lattice(frame, spacing):
    """The frame's lattice, or None where it is not the columns' lattice.

    Not when a given ``spacing`` disagrees with its bond by more than 25 %: the user's
    spacing wins, and the lattice may be a texture (scan or tiling artefacts).
    """
    lat = measure_lattice(frame)
    if spacing is not None and abs(lat.bond / spacing - 1) > 0.25:
        log.info("atoms: the Bragg lattice (bond %.3g px) disagrees with the given spacing "
                 "%.3g px: no lattice mask", lat.bond, spacing)
        return None
    return lat


def _detect(prepared, spacing, fraction, lattice=None, mask=None):
    """Columns of one frame (``prepared``: its ``_contrast(frame, spacing, truncate=2.5)``):
    refined (y, x) and their contrast (the module's docstring: how). Candidates: maxima of the
    band-passed frame above _NOISE_K noise sigmas, _MIN_DIST apart, above `fraction` of the
    median contrast, inside `mask`, not off the lattice's sites (_OFF_SITE), not alone
    (_LONELY); with a lattice, its sites with no candidate whose own contrast exceeds _SITE_K
    noise sigmas (a vacancy has none).
    """
    frame, s, smooth, contrast = prepared
    model = None
    if lattice is not None:
        noise, model = residual_noise(smooth, lattice, mask)
    else:  # white noise sigma / (2 sqrt(pi) s) for a Gaussian of sigma s
        noise = _noise_sigma(frame) / (2 * np.sqrt(np.pi) * s)
    noise = max(noise, 1e-3 * float(np.ptp(contrast)))  # a noise-free image: not every ripple
    band = _band_pass(frame, _BAND * spacing)
    peaks, h = _strong_maxima(band, contrast, _NOISE_K * noise, _MIN_DIST * spacing, fraction,
                              mask)
    if len(peaks) == 0:
        return np.empty((0, 2)), np.empty(0)
    if model is not None:  # noise between columns sits where the lattice has no column
        on = model[peaks[:, 0], peaks[:, 1]]
        ok = on > -_OFF_SITE * np.median(on)
        peaks, h = peaks[ok], h[ok]
        sites = lattice_sites(model, mask, _SITE_SEP * spacing)  # those with no candidate:
        sites = sites[cKDTree(peaks).query(sites)[0] > _MIN_DIST * spacing] if len(peaks) else sites
        hs = contrast[sites[:, 0], sites[:, 1]]
        ok = (hs > _SITE_K * noise) & (hs > fraction * np.median(h))
        peaks, h = np.concatenate([peaks, sites[ok]]), np.concatenate([h, hs[ok]])
    keep = _not_alone(peaks, _LONELY * spacing)
    peaks, h = peaks[keep], h[keep]
    if model is None:
        # positions: a parabola through 3 px along y and x of the band-passed frame, whose
        # maxima are not pulled toward a brighter neighbour's slope
        return _refine(band, peaks), h
    # with a lattice, the parabola goes through the band-passed frame plus the Bragg-filtered
    # one (each over its median column value): at low dose the lattice, averaged over about a
    # cell, steadies positions that the noise of one column would scatter
    unit = np.median(band[peaks[:, 0], peaks[:, 1]]), np.median(model[peaks[:, 0], peaks[:, 1]])
    return _refine(band / unit[0] + model / unit[1], peaks), h


def _sample_frames(data, n=4):
    return data[np.unique(np.linspace(0, len(data) - 1, min(len(data), n)).astype(int))]


def _check_spacing(size, shape):
    if isinstance(size, bool) or not isinstance(size, (numbers.Real, str, np.floating)):
        raise ScaleVAEError(f"the atom spacing must be a number of pixels, got {size!r}")
    try:
        size = float(size)
    except ValueError:
        raise ScaleVAEError(f"the atom spacing must be a number of pixels, got {size!r}") from None
    if not np.isfinite(size) or size < 2:
        raise ScaleVAEError(f"the atom spacing must be at least 2 px, got {size!r}")
    if size > min(shape) / 2:
        raise ScaleVAEError(
            f"an atom spacing of {size:g} px does not fit twice in the {shape[0]} x "
            f"{shape[1]} px frame; give the spacing in px ('atoms:SIZE') or a larger image")
    return size


def _check_fraction(threshold):
    fraction = _FRACTION if threshold is None else threshold
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise ScaleVAEError(f"threshold must be a number in [0, 1), got {threshold!r}") from None
    if not 0 <= fraction < 1:
        raise ScaleVAEError(f"threshold is a fraction of the median column contrast in [0, 1), "
                            f"got {threshold!r}")
    return fraction


# ----------------------------------------------------------------------------- public

@dataclass(frozen=True)
class AtomDetection:
    """Atom columns found in an image or stack, with the lattice they were found on.

    Attributes
    ----------
    points : (n, 3) float64 array
        ``frame, y, x`` (sub-pixel), sorted by frame, then y, then x.
    lattices : tuple of Lattice or None
        Per frame, the lattice measured from its Bragg peaks (None where none was found and the
        spacing was given).
    mask : (frame, y, x) bool array
        True where the frame shows its lattice; no column is looked for elsewhere.
    masked_fraction : float
        Fraction of the pixels outside the lattice (amorphous material, contamination, vacuum,
        holes), over all frames.
    spacing : float
        The nearest-neighbour spacing (bond) used, in px.
    """

    points: np.ndarray
    lattices: tuple
    mask: np.ndarray
    masked_fraction: float
    spacing: float

    @property
    def lattice(self):
        """The first frame's lattice (None if none was measured)."""
        return self.lattices[0] if self.lattices else None


def estimate_spacing(image):
    """Nearest-neighbour spacing (px) of the columns, from the image's own Bragg peaks.

    The bond of :func:`.lattice.measure_lattice`: for a honeycomb (graphene) the C-C bond,
    ``a / sqrt(3)``, for hexagonal and square lattices the lattice constant.

    Parameters
    ----------
    image : (y, x) or (frame, y, x) array
        For a stack, up to 4 frames spread over it are measured and the median returned.

    Returns
    -------
    spacing : float

    Raises
    ------
    ScaleVAEError
        If the image shows no lattice.

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    ...           for cy in range(4, 128, 10) for cx in range(4, 128, 10))
    >>> img = img + np.random.default_rng(0).normal(0, 0.02, img.shape)
    >>> round(estimate_spacing(img), 1)
    10.0
    """
    frames = _sample_frames(_stack3(image))
    return float(np.median([measure_lattice(fr).bond for fr in frames]))


def detect_atoms(image, spacing=None, threshold=None, mask_amorphous=True):
    """Atom columns where the image shows a lattice, and the lattice they sit on.

    Per frame: the lattice is measured from the Bragg peaks (:func:`.lattice.measure_lattice`,
    looked at again where it leaves much of the frame: :func:`.lattice.with_missed_grains`); the
    lattice region is where the local share of Bragg-spot power is high
    (:func:`.bragg.lattice_order`), less where a thin amorphous layer lies on it (its contrast
    well above the lattice's: :func:`.bragg.lattice_mask`); columns are the maxima of the
    band-passed frame there, at least 0.6 ``spacing`` apart, whose contrast exceeds 4 noise
    sigmas (the robust spread of what the lattice does not explain) and ``threshold`` times the
    median column contrast, that lie on a bright site of the Bragg-filtered frame and have a
    neighbour within 1.6 ``spacing``, and the lattice's sites without such a maximum whose
    contrast exceeds 3 noise sigmas; positions are refined to sub-pixel accuracy, on the
    band-passed plus the Bragg-filtered frame. The masked fraction is logged at INFO level.

    Parameters
    ----------
    image : (y, x) or (frame, y, x) array
        Columns brighter than the background (invert dark-atom images first).
    spacing : float, optional
        Nearest-neighbour spacing in px (for graphene the C-C bond). Default: the bond of the
        measured lattice.
    threshold : float, optional
        Minimum column contrast as a fraction of the median column contrast, in [0, 1);
        default 0.3.
    mask_amorphous : bool
        Look for columns only where the frame shows its lattice (default); False looks
        everywhere.

    Returns
    -------
    AtomDetection

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    ...           for cy in range(9, 120, 10) for cx in range(9, 120, 10))
    >>> det = detect_atoms(img)
    >>> len(det.points), det.lattice.kind, round(det.spacing, 1), det.masked_fraction < 0.2
    (144, 'square', 10.0, True)
    """
    data = _stack3(image)
    if spacing is not None:
        spacing = _check_spacing(spacing, data.shape[1:])
    fraction = _check_fraction(threshold)
    lattices, masks, out, bonds = [], [], [], []
    for i, frame in enumerate(data):
        try:
            lat = _credible_lattice(frame, spacing)
        except ScaleVAEError:
            lat = None
        if spacing is not None:
            bond = spacing
        else:  # no lattice: the ring spectrum's spacing (raises where there is none either)
            bond = _check_spacing(lat.bond if lat else ring_spacing(frame[None]), data.shape[1:])
        prepared = _contrast(frame, bond, truncate=2.5)  # the mask's and the detection's
        mask = (lattice_mask(frame, lat, prepared[3]) if lat is not None and mask_amorphous
                else np.ones(frame.shape, bool))
        more = with_missed_grains(frame, lat, mask) if lat is not None and mask_amorphous else lat
        if more is not lat:  # a grain the first look missed: the mask again
            lat, mask = more, lattice_mask(frame, more, prepared[3])
        yx, _ = _detect(prepared, bond, fraction, lat, mask)
        # a column on the mask's edge may be refined to just outside it
        yx = yx[mask[tuple(np.clip(np.round(yx).astype(int), 0, np.array(mask.shape) - 1).T)]]
        if len(yx):
            yx = yx[np.lexsort((yx[:, 1], yx[:, 0]))]  # by y, then x
            out.append(np.column_stack([np.full(len(yx), i, float), yx]))
        lattices.append(lat)
        masks.append(mask)
        bonds.append(bond)
    mask = np.stack(masks)
    masked = float(1.0 - mask.mean())
    bond = float(np.median(bonds))
    log.info("atoms: spacing %.2f px; %.1f %% of the image shows no lattice and is masked",
             bond, 100 * masked)
    pts = np.concatenate(out) if out else np.empty((0, 3))
    return AtomDetection(pts, tuple(lattices), mask, masked, float(bond))


def atom_keypoints(stack, size=None, threshold=None):
    """Positions of atom columns (bright maxima) in atomically resolved images, sub-pixel.

    The points of :func:`detect_atoms` (columns only where the image shows its lattice).

    Parameters
    ----------
    stack : (frame, y, x) or (y, x) array
    size : float, optional
        Nearest-neighbour spacing of the columns in px; default measured from the Bragg peaks.
    threshold : float, optional
        Minimum column contrast as a fraction of the median column contrast, in [0, 1).

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
    >>> err = np.abs(pts[:, 1:] % 10 - 9).max(1)  # on the lattice, to sub-pixel accuracy
    >>> float(np.median(err)) < 0.05, float(err.max()) < 0.2  # corners: the FFT's periodic edges
    (True, True)
    """
    return atom_detection(stack, size, threshold).points


def atom_detection(stack, size=None, threshold=None) -> AtomDetection:
    """:func:`detect_atoms` with the checks of :func:`atom_keypoints` (an error when no column is
    found, a warning when few are or much of the image shows no lattice), for a run to store.

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    ...           for cy in range(9, 120, 10) for cx in range(9, 120, 10))
    >>> det = atom_detection(img, size=10)
    >>> len(det.points), det.spacing
    (144, 10.0)
    """
    det = detect_atoms(stack, spacing=size, threshold=threshold)
    pts = det.points
    if det.masked_fraction > _MASK_WARN:
        warnings.warn(f"{100 * det.masked_fraction:.0f} % of the image shows no lattice "
                      "(amorphous material, contamination, vacuum or holes): no atoms are "
                      "looked for there", stacklevel=2)
    if len(pts) == 0:
        raise ScaleVAEError(
            f"no atoms found (spacing {det.spacing:.3g} px, threshold "
            f"{_check_fraction(threshold):g}); give the atom spacing in px as 'atoms:SIZE', "
            "lower the threshold, or use 'grid:STEP'")
    if len(pts) < MIN_KEYPOINTS:
        warnings.warn(
            f"only {len(pts)} atoms found (spacing {det.spacing:.3g} px) - too few keypoints to "
            f"train on (fewer than {MIN_KEYPOINTS}); check the spacing ('atoms:SIZE'), use a "
            "larger image or 'grid:STEP'", stacklevel=2)
    return det


def atom_windows(bond_px, frame_shape):
    """Default windows (px) for atom keypoints: from about one bond to about ten bonds.

    Even sizes from the bond (at least 4 px) to ten bonds, at most half the smaller frame side
    (so that keypoints in the central part keep their largest window), in at most
    ``MAX_WINDOW_STEPS`` steps.

    Examples
    --------
    >>> atom_windows(12.0, (512, 512))
    [12, 22, 32, 42, 52, 62, 72, 82, 92, 102, 112]
    >>> atom_windows(36.0, (1568, 192))
    [36, 42, 48, 54, 60, 66, 72, 78, 84, 90, 96]
    """
    from ..config import MAX_WINDOW_STEPS  # config imports patches, which import keypoints

    bond = float(bond_px)
    if not np.isfinite(bond) or bond <= 0:
        raise ScaleVAEError(f"the bond length must be a positive number of px, got {bond_px!r}")
    first = max(4, 2 * int(round(bond / 2)))
    top = max(first, 2 * int(min(10 * bond, min(frame_shape) / 2) // 2))
    step = max(2, int(np.ceil((top - first) / MAX_WINDOW_STEPS / 2)) * 2)
    return list(range(first, top + 1, step))
