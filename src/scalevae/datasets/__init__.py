"""Synthetic example data with known ground truth.

Four generators mimic the paper's data sets and one adds a case built to test the method itself:

- :func:`ferroelectric_domains` -- PFM amplitude of an a/c domain film (paper Section IV);
- :func:`graphene_movie` -- STEM HAADF movie of graphene damaged by the beam (Section V);
- :func:`combinatorial_library` -- AFM topography across a composition spread (Section VI);
- :func:`two_scale_texture` -- one fine texture, two large-scale arrangements, with an exact
  critical window below which no descriptor can tell the two regions apart.

Every generator is deterministic for a ``seed``, runs in well under a few seconds at its default
size and returns an :class:`Example` whose ``truth`` dictionary holds what the image was built
from. ``load_example(name)`` picks one by name from :data:`EXAMPLES`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import ScaleVAEError

__all__ = [
    "Example",
    "ferroelectric_domains",
    "graphene_movie",
    "combinatorial_library",
    "two_scale_texture",
    "EXAMPLES",
    "load_example",
]


@dataclass
class Example:
    """A synthetic data set and the ground truth it was built from.

    Attributes
    ----------
    name : str
        Registry name (see :data:`EXAMPLES`).
    images : ndarray of float32, shape (frame, y, x)
        The image stack.
    keypoints : ndarray of float64, shape (n, 3) or None
        Columns ``frame, y, x`` in pixels, or None where a grid is the natural choice.
    pixel_size : float
        Physical size of one pixel, in ``unit``.
    unit : str
        Unit of ``pixel_size``.
    control : ndarray of float64, shape (frame,) or None
        Per-frame control value (time, composition), or None.
    control_name : str or None
        What ``control`` is.
    truth : dict
        Ground truth; the keys are documented by each generator.
    default_windows : list of int
        Window sizes in pixels suited to this example.
    default_keypoints : str or None
        Keypoint spec (``"grid:4"``) or None when ``keypoints`` is given.
    description : str
        One line saying what the data show.

    The object also answers ``example["images"]`` like a dictionary.
    """

    name: str
    images: np.ndarray
    keypoints: np.ndarray | None
    pixel_size: float
    unit: str
    control: np.ndarray | None
    control_name: str | None
    truth: dict = field(default_factory=dict)
    default_windows: list = field(default_factory=list)
    default_keypoints: str | None = None
    description: str = ""

    def __getitem__(self, key):
        if key not in self.keys():
            raise KeyError(f"{key!r}; an Example has {', '.join(self.keys())}")
        return getattr(self, key)

    def keys(self):
        return [f for f in self.__dataclass_fields__]


# --------------------------------------------------------------------------------------------
# helpers


def _check_shape(shape, minimum, name="shape"):
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ScaleVAEError(f"{name} must be two integers (ny, nx), got {shape!r}") from None
    if ny < minimum or nx < minimum:
        raise ScaleVAEError(f"{name} {shape!r} is too small: use at least {minimum} px per side")
    return ny, nx


def _check_positive(value, name):
    if not np.isfinite(value) or value <= 0:
        raise ScaleVAEError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _signed_distance(mask):
    """Signed distance (px) to the boundary of ``mask``: positive inside, negative outside."""
    if mask.all() or not mask.any():
        return np.full(mask.shape, np.inf if mask.all() else -np.inf)
    # The boundary lies between pixels, hence the half pixel.
    return np.where(mask, ndimage.distance_transform_edt(mask) - 0.5,
                    0.5 - ndimage.distance_transform_edt(~mask))


def _smooth_noise(rng, shape, sigma):
    """Gaussian random field with unit variance and correlation length ``sigma`` px."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / f.std()


def _scan_lines(rng, image, line_sigma, pixel_sigma):
    """Add per-line offsets (the fast scan axis is x) and white noise, as a scanning probe does."""
    offsets = line_sigma * rng.standard_normal(image.shape[0])
    # A few lines jump further (tip pick-up, feedback ringing).
    jumps = rng.random(image.shape[0]) < 0.02
    offsets[jumps] += 3 * line_sigma * rng.standard_normal(jumps.sum())
    return image + offsets[:, None] + pixel_sigma * rng.standard_normal(image.shape)


# --------------------------------------------------------------------------------------------
# 1. ferroelectric a/c domains (PFM amplitude)


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
    period = _check_positive(period, "period")
    if period < 8:
        raise ScaleVAEError(f"period {period} px is too small to draw walls: use period >= 8")
    ny, nx = _check_shape(shape, int(np.ceil(2 * period)))
    noise = float(noise)
    if noise < 0:
        raise ScaleVAEError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)

    # Bundles: nearest seed after a smooth warp of the coordinates, so borders are not straight.
    n_bundles = max(2, int(round(ny * nx / (4.5 * period) ** 2)))
    seeds = rng.uniform([0, 0], [ny, nx], size=(n_bundles, 2))
    warp = 0.6 * period
    wy = yy + warp * _smooth_noise(rng, (ny, nx), 1.5 * period)
    wx = xx + warp * _smooth_noise(rng, (ny, nx), 1.5 * period)
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
    u = u + 1.0 * _smooth_noise(rng, (ny, nx), 0.5 * period)
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
    pol_field = _smooth_noise(rng, (ny, nx), 0.3 * period)
    c_plus = pol_field < 1.2
    d_ac = _signed_distance(a_mask)  # > 0 inside a domains
    d_cc = _signed_distance(c_plus)

    # Amplitude: a ~ 0.05, c ~ 1 with a slow multilevel modulation, zero crossing at c/c walls.
    m_a = 0.5 * (1 + np.tanh(d_ac / 1.5))
    c_level = 1.0 + 0.25 * _smooth_noise(rng, (ny, nx), 2.0 * period)
    c_amp = c_level * np.abs(np.tanh(d_cc / 1.2))
    clean = 0.05 * m_a + (1 - m_a) * c_amp

    blurred = ndimage.gaussian_filter(clean, 1.0)
    image = _scan_lines(rng, blurred, 0.5 * noise, noise)

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
        default_windows=list(range(8, 65, 8)), default_keypoints="grid:4",
        description="PFM amplitude of an a/c ferroelastic domain film (synthetic)",
    )


# --------------------------------------------------------------------------------------------
# 2. graphene under the electron beam (STEM HAADF movie)

_CC = 1.42  # C-C bond length, Angstrom
_A_LAT = 2.46  # graphene lattice constant, Angstrom


def _graphene_lattice(center, radius, angle):
    """Graphene atoms (y, x) in Angstrom within ``radius`` of ``center``, and their sublattice."""
    a1 = _A_LAT * np.array([1.0, 0.0])  # (x, y) lattice vectors
    a2 = _A_LAT * np.array([0.5, np.sqrt(3) / 2])
    basis = np.array([[0.0, 0.0], (a1 + a2) / 3])  # A and B, 1.42 A apart
    n = int(np.ceil(radius / (_A_LAT * np.sqrt(3) / 2))) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    cells = i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2
    xy = np.concatenate([cells + basis[0], cells + basis[1]])
    sub = np.repeat([0, 1], len(cells))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    xy = xy @ rot.T
    keep = np.hypot(*xy.T) <= radius
    yx = xy[keep][:, ::-1] + center
    return yx, sub[keep]


def graphene_movie(n_frames=10, shape=(128, 128), seed=0, pixel_size=0.16, dose=300.0,
                   drift=0.3, fwhm=0.9, vacancy_rate=2.0, stone_wales_rate=0.3, si_rate=0.3):
    """STEM HAADF movie of monolayer graphene accumulating beam damage, with atom-level truth.

    Atoms sit on the real graphene lattice (C-C 1.42 A, lattice constant 2.46 A, two-atom
    basis, random in-plane rotation). Each frame is an incoherent Z-contrast image: a Gaussian
    probe of the given FWHM per atom with weight ``Z**1.7`` (C: 6, Si: 14), normalised so that a
    carbon column peaks at 1, plus a weak background, then Poisson noise at ``dose`` counts per
    carbon peak (the image is counts / dose). The stage drifts by a random walk of sub-pixel
    steps between frames and atoms vibrate by 0.03 A (rms, per axis).

    Frame 0 is pristine. From frame 1 on the beam adds, per frame, a Poisson number of

    - vacancies (mean ``vacancy_rate``): the first one at a random atom near the centre, the
      next ones preferentially at under-coordinated atoms next to existing vacancies, so that
      holes grow;
    - Stone-Wales rotations (mean ``stone_wales_rate``): a C-C bond of a pristine region is
      rotated by 90 degrees about its centre (and shortened to 1.32 A; neighbours unrelaxed);
    - Si substitutions (mean ``si_rate``): a carbon atom at a hole edge (or anywhere, before the
      first hole) becomes Si.

    Defects never heal, so the number of defects never decreases.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : tuple of int
        Frame size (ny, nx) in px.
    seed : int
        Random seed.
    pixel_size : float
        Angstrom per pixel; the default 0.16 puts the C-C distance at 8.9 px.
    dose : float
        Expected counts at a carbon column; lower is noisier.
    drift : float
        Standard deviation (px) of the drift step between frames, per axis.
    fwhm : float
        Probe FWHM in Angstrom.
    vacancy_rate, stone_wales_rate, si_rate : float
        Mean number of new defects of each kind per frame.

    Returns
    -------
    Example
        ``images`` (n_frames, ny, nx); ``keypoints`` are the positions (frame, y, x, drift
        included) of all atoms present whose centre lies in the frame; ``control`` is the frame
        index (time in frames). ``truth`` holds, per keypoint row,

        - ``sublattice`` : int8, 0 = A, 1 = B;
        - ``element`` : int8, atomic number (6 or 14);
        - ``atom_id`` : int, the atom's index, to follow it across frames;
        - ``distance_to_defect`` : float, px to the nearest defect site of that frame (inf in a
          defect-free frame);

        and per frame or in general

        - ``defects`` : list of (frame, y, x, kind) with kind ``"vacancy"``,
          ``"stone_wales"`` (the bond centre) or ``"si"``: every defect present in each frame,
          at its drifted position;
        - ``defect_count`` : int (n_frames,), number of defects present per frame;
        - ``drift`` : float (n_frames, 2), the y, x shift of each frame in px;
        - ``cc_distance`` : C-C distance in px; ``lattice_angle`` : rotation in degrees;
        - ``clean`` : float32 (n_frames, ny, nx), the images before noise.

    Examples
    --------
    >>> ex = graphene_movie(n_frames=3, shape=(64, 64), seed=0)
    >>> ex.images.shape
    (3, 64, 64)
    >>> ex.keypoints.shape[1], round(ex.truth["cc_distance"], 2)
    (3, 8.88)
    """
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ScaleVAEError(f"n_frames must be at least 1, got {n_frames}")
    ny, nx = _check_shape(shape, 16)
    pixel_size = _check_positive(pixel_size, "pixel_size")
    dose = _check_positive(dose, "dose")
    fwhm = _check_positive(fwhm, "fwhm")
    for name, rate in [("drift", drift), ("vacancy_rate", vacancy_rate),
                       ("stone_wales_rate", stone_wales_rate), ("si_rate", si_rate)]:
        if not np.isfinite(rate) or rate < 0:
            raise ScaleVAEError(f"{name} must be >= 0, got {rate!r}")
    rng = np.random.default_rng(seed)

    cc = _CC / pixel_size
    sigma = fwhm / pixel_size / (2 * np.sqrt(2 * np.log(2)))
    # Drift: a random walk starting at zero; atoms are kept so that the drifted frame stays covered.
    shifts = np.cumsum(drift * rng.standard_normal((n_frames, 2)), axis=0)
    shifts -= shifts[0]
    centre = np.array([(ny - 1) / 2, (nx - 1) / 2])
    reach = 0.5 * np.hypot(ny, nx) + np.abs(shifts).max() + 4 * sigma + 2 * cc
    angle = rng.uniform(0, np.pi / 3)
    pos, sub = _graphene_lattice(np.zeros(2), reach * pixel_size, angle)
    pos = pos / pixel_size + centre + rng.uniform(-0.5, 0.5, 2) * cc
    n_atoms = len(pos)
    element = np.full(n_atoms, 6, dtype=np.int8)
    present = np.ones(n_atoms, dtype=bool)
    rotated = np.zeros(n_atoms, dtype=bool)

    # Neighbour table of the pristine lattice (-1 pads atoms at the edge of the patch).
    pairs = cKDTree(pos).query_pairs(1.2 * cc, output_type="ndarray")
    neighbours = np.full((n_atoms, 3), -1)
    fill = np.zeros(n_atoms, dtype=int)
    for i, j in np.concatenate([pairs, pairs[:, ::-1]]):
        neighbours[i, fill[i]] = j
        fill[i] += 1
    complete = fill == 3
    # Damage happens in the middle of the field of view, where it is seen.
    central = np.hypot(*(pos - centre).T) < 0.3 * min(ny, nx)

    defects = []  # (y, x, kind), undrifted, permanent
    per_frame = []
    images, clean_images = [], []
    key_rows, key_sub, key_el, key_id, key_dist = [], [], [], [], []
    yy = np.arange(ny, dtype=float)
    xx = np.arange(nx, dtype=float)
    for f in range(n_frames):
        if f > 0:
            _beam_damage(rng, pos, present, element, rotated, neighbours, complete, central,
                         defects, vacancy_rate, stone_wales_rate, si_rate)
        per_frame.append(len(defects))
        jitter = 0.03 / pixel_size * rng.standard_normal((n_atoms, 2))
        p = pos + shifts[f] + jitter
        idx = np.flatnonzero(present)
        weight = (element[idx].astype(float) / 6.0) ** 1.7
        # Separable Gaussians: the image is Gy^T diag(w) Gx, one matrix product per frame.
        gy = np.exp(-0.5 * ((yy[None, :] - p[idx, 0:1]) / sigma) ** 2)
        gx = np.exp(-0.5 * ((xx[None, :] - p[idx, 1:2]) / sigma) ** 2)
        clean = (gy * weight[:, None]).T @ gx + 0.05
        images.append(rng.poisson(clean * dose) / dose)
        clean_images.append(clean)

        inside = idx[(p[idx, 0] >= -0.5) & (p[idx, 0] < ny - 0.5)
                     & (p[idx, 1] >= -0.5) & (p[idx, 1] < nx - 0.5)]
        key_rows.append(np.column_stack([np.full(len(inside), f), p[inside]]))
        key_sub.append(sub[inside])
        key_el.append(element[inside])
        key_id.append(inside)
        if defects:
            sites = np.array([d[:2] for d in defects], dtype=float)
            key_dist.append(cKDTree(sites).query(pos[inside] + jitter[inside])[0])
        else:
            key_dist.append(np.full(len(inside), np.inf))

    defect_list = [(f, y + shifts[f, 0], x + shifts[f, 1], kind)
                   for f in range(n_frames) for (y, x, kind) in defects[:per_frame[f]]]
    truth = {
        "sublattice": np.concatenate(key_sub).astype(np.int8),
        "element": np.concatenate(key_el).astype(np.int8),
        "atom_id": np.concatenate(key_id),
        "distance_to_defect": np.concatenate(key_dist),
        "defects": defect_list,
        "defect_count": np.array(per_frame),
        "drift": shifts,
        "cc_distance": cc,
        "lattice_angle": float(np.rad2deg(angle)),
        "clean": np.array(clean_images, dtype=np.float32),
    }
    return Example(
        name="graphene", images=np.array(images, dtype=np.float32),
        keypoints=np.concatenate(key_rows).astype(np.float64), pixel_size=pixel_size,
        unit="A", control=np.arange(n_frames, dtype=np.float64), control_name="frame",
        truth=truth, default_windows=[12, 16, 20, 24, 32, 40, 48], default_keypoints=None,
        description="STEM HAADF movie of graphene accumulating beam damage (simulated)",
    )


def _beam_damage(rng, pos, present, element, rotated, neighbours, complete, central, defects,
                 vacancy_rate, stone_wales_rate, si_rate):
    """Apply one frame's worth of beam damage in place; append new defects (y, x, kind)."""
    def missing_neighbours():
        nb_present = np.where(neighbours >= 0, present[np.maximum(neighbours, 0)], True)
        return 3 - nb_present.sum(1)

    for _ in range(rng.poisson(vacancy_rate)):
        carbon = present & (element == 6) & central
        edge = missing_neighbours()
        if (edge[carbon] > 0).any():
            # Under-coordinated atoms at hole edges are sputtered first: the hole grows.
            w = np.where(carbon, edge.astype(float) ** 2, 0.0)
        else:
            w = carbon.astype(float)
        if w.sum() == 0:
            break
        i = rng.choice(len(pos), p=w / w.sum())
        present[i] = False
        defects.append((pos[i, 0], pos[i, 1], "vacancy"))

    for _ in range(rng.poisson(stone_wales_rate)):
        # A bond between two atoms whose neighbourhoods are intact and untouched so far.
        intact = present & complete & central & ~rotated & (element == 6)
        intact &= np.all(present[neighbours] & ~rotated[neighbours], axis=1)  # complete: no -1
        cand = [(i, j) for i in np.flatnonzero(intact)
                for j in neighbours[i] if j > i and intact[j]]
        if not cand:
            break
        i, j = cand[rng.integers(len(cand))]
        mid = 0.5 * (pos[i] + pos[j])
        for k in (i, j):
            # 90 degrees about the bond centre; the rotated bond relaxes to 1.32 A (DFT).
            d = (pos[k] - mid) * (1.32 / _CC)
            pos[k] = mid + np.array([-d[1], d[0]])
        rotated[[i, j]] = True
        defects.append((mid[0], mid[1], "stone_wales"))

    for _ in range(rng.poisson(si_rate)):
        carbon = present & (element == 6) & central & ~rotated
        edge = missing_neighbours()
        cand = carbon & (edge > 0) if (carbon & (edge > 0)).any() else carbon
        if not cand.any():
            break
        i = rng.choice(np.flatnonzero(cand))
        element[i] = 14
        defects.append((pos[i, 0], pos[i, 1], "si"))


# --------------------------------------------------------------------------------------------
# 3. combinatorial library (AFM topography across a composition spread)


def _grain_field(rng, size, spacing, facet, aspect):
    """Height (px units of height) and grain labels of a square field of hillock grains.

    Seeds on a jittered hexagonal grid; each grain is a spherical cap around its seed, made
    triangular (three facets, random in-plane orientation) in proportion to ``facet``. The
    surface is the upper envelope of all grains, and each pixel belongs to the highest one, so
    triangular caps give triangular grains.
    """
    rows = int(np.ceil(size / (spacing * np.sqrt(3) / 2))) + 3
    cols = int(np.ceil(size / spacing)) + 3
    r, c = np.mgrid[-1:rows - 1, -1:cols - 1].astype(float)
    seeds = np.stack([r * spacing * np.sqrt(3) / 2, (c + 0.5 * (r % 2)) * spacing], -1)
    seeds = seeds.reshape(-1, 2) + rng.uniform(0, spacing, 2) - spacing
    seeds += 0.22 * spacing * rng.standard_normal(seeds.shape)
    n = len(seeds)
    phi = rng.uniform(0, 2 * np.pi, n)
    cap = 0.85 * spacing * rng.uniform(0.85, 1.15, n)  # cap radius: grains differ in size
    yy, xx = np.mgrid[0:size, 0:size]
    pix = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)
    # Candidate grains per pixel: round caps need the Voronoi neighbours, triangles a few more.
    near = cKDTree(seeds).query(pix, k=8 if facet > 0 else 6)[1]
    d = pix[:, None, :] - seeds[near]
    r_eu = np.hypot(d[..., 0], d[..., 1])
    dist = r_eu
    if facet > 0:
        # Triangular "distance": the largest projection on three normals 120 degrees apart.
        normals = phi[:, None] + np.array([0, 2, 4]) * np.pi / 3
        cos_n, sin_n = np.cos(normals)[near], np.sin(normals)[near]
        r_tri = np.max(d[..., 1:2] * cos_n + d[..., 0:1] * sin_n, axis=-1)
        dist = (1 - facet) * r_eu + facet * r_tri / 0.83  # 0.83: mean of r_tri / r_eu
    dist = dist / cap[near]
    h = cap[near] * aspect * (np.sqrt(1 - np.minimum(dist, 1) ** 2) - 2 * np.maximum(dist - 1, 0))
    best = np.argmax(h, axis=1)
    height = h[np.arange(len(pix)), best].reshape(size, size)
    labels = near[np.arange(len(pix)), best].reshape(size, size)
    return height, labels


def combinatorial_library(n_frames=12, shape=(128, 128), seed=0, pixel_size=4.0,
                          tip_radius=10.0, noise=0.03):
    """AFM topography at ``n_frames`` positions along a composition spread, with grain truth.

    Models the Mo_x(CrVTaW)_(1-x) library of the paper (0.14 <= x <= 0.88): grains grow with x,
    their mean equivalent diameter following ``6 + 24 * t**1.5`` px with
    ``t = (x - 0.14) / 0.74`` (monotonic, slightly nonlinear), and their shape changes from
    triangular facets at low x to round domes above x ~ 0.65. Each grain is a spherical cap
    (height ∝ sqrt(R**2 - r**2)) on a jittered hexagonal arrangement of seeds; the visible grain
    is the highest cap. The AFM tip (a paraboloid of ``tip_radius`` nm) dilates the surface
    (``scipy.ndimage.grey_dilation``), which fills the grooves between grains, and each scan
    line (fast axis x) gets its own offset on top of white noise.

    Parameters
    ----------
    n_frames : int
        Number of positions along the spread (>= 2).
    shape : tuple of int
        Image size (ny, nx) in px.
    seed : int
        Random seed.
    pixel_size : float
        nm per pixel.
    tip_radius : float
        Tip apex radius in nm.
    noise : float
        White-noise standard deviation relative to the grain relief of each frame; the per-line
        offsets have half of it.

    Returns
    -------
    Example
        Heights in nm, ``images`` (n_frames, ny, nx); no keypoints (use a grid); ``control`` is
        the composition x. ``truth`` holds

        - ``composition`` : float (n_frames,), x;
        - ``grain_size`` : float (n_frames,), mean equivalent diameter ``sqrt(4 A / pi)`` in px
          of the grains in the label map (measured on the simulated field around the frame,
          grains cut by its border excluded, so that large grains are counted fairly);
        - ``target_grain_size`` : float (n_frames,), the diameter the seeds were placed for;
        - ``faceting`` : float (n_frames,), 1 = triangular grains, 0 = round;
        - ``labels`` : int32 (n_frames, ny, nx), grain index per pixel (per frame);
        - ``clean`` : float32 (n_frames, ny, nx), the dilated topography before noise.

    Examples
    --------
    >>> ex = combinatorial_library(n_frames=3, shape=(64, 64), seed=0)
    >>> ex.images.shape, ex.control_name
    ((3, 64, 64), 'composition')
    >>> bool(np.all(np.diff(ex.truth["grain_size"]) > 0))
    True
    """
    n_frames = int(n_frames)
    if n_frames < 2:
        raise ScaleVAEError(f"n_frames must be at least 2 to span compositions, got {n_frames}")
    ny, nx = _check_shape(shape, 32)
    pixel_size = _check_positive(pixel_size, "pixel_size")
    tip_radius = _check_positive(tip_radius, "tip_radius")
    if noise < 0:
        raise ScaleVAEError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)

    x = np.linspace(0.14, 0.88, n_frames)
    t = (x - 0.14) / 0.74
    target = 6.0 + 24.0 * t ** 1.5
    facet = np.clip((0.65 - x) / 0.2, 0, 1)
    aspect = 0.35  # cap height / cap radius

    images, clean_images, labels, sizes = [], [], [], []
    for f in range(n_frames):
        # Hexagonal cell area sqrt(3)/2 s^2 equals pi d^2 / 4 for the target diameter d.
        spacing = target[f] * np.sqrt(np.pi / (2 * np.sqrt(3)))
        margin = int(np.ceil(target[f])) + 6
        size = max(ny, nx) + 2 * margin
        height, lab = _grain_field(rng, size, spacing, facet[f], aspect)
        height *= pixel_size  # heights in nm

        # Tip dilation: image = max over s of (h(x + s) - tip(s)), tip(s) = |s|^2 / (2 R).
        relief = aspect * 0.85 * spacing * pixel_size
        rp = int(np.ceil(np.sqrt(2 * tip_radius * relief) / pixel_size))
        sy, sx = np.mgrid[-rp:rp + 1, -rp:rp + 1] * pixel_size
        tip = -(sy ** 2 + sx ** 2) / (2 * tip_radius)
        dilated = ndimage.grey_dilation(height, structure=tip, mode="nearest")

        y0, x0 = (size - ny) // 2, (size - nx) // 2
        crop = dilated[y0:y0 + ny, x0:x0 + nx]
        crop = crop - np.median(crop)
        images.append(_scan_lines(rng, crop, 0.5 * noise * relief, noise * relief))
        clean_images.append(crop)
        _, frame_labels = np.unique(lab[y0:y0 + ny, x0:x0 + nx], return_inverse=True)
        labels.append(frame_labels.reshape(ny, nx))

        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        area = np.bincount(lab.ravel())
        area[border] = 0
        area = area[area > 0]
        sizes.append(np.mean(np.sqrt(4 * area / np.pi)))

    truth = {
        "composition": x,
        "grain_size": np.array(sizes),
        "target_grain_size": target,
        "faceting": facet,
        "labels": np.array(labels, dtype=np.int32),
        "clean": np.array(clean_images, dtype=np.float32),
    }
    return Example(
        name="library", images=np.array(images, dtype=np.float32), keypoints=None,
        pixel_size=pixel_size, unit="nm", control=x, control_name="composition", truth=truth,
        default_windows=[8, 12, 16, 24, 32, 48, 64], default_keypoints="grid:8",
        description="AFM topography across a Mo_x(CrVTaW)_(1-x) composition spread (synthetic)",
    )


# --------------------------------------------------------------------------------------------
# 4. two regions that differ only beyond a known window size


def _hex_lattice(rng, spacing, shape):
    """Points of a hexagonal lattice (nearest distance ``spacing``, rows along x) with a random
    offset, covering ``shape`` with a margin of two spacings."""
    ny, nx = shape
    row = spacing * np.sqrt(3) / 2
    oy, ox = rng.uniform(0, row), rng.uniform(0, spacing)
    ys = np.arange(oy - 2 * row, ny + 2 * row, row)
    k = np.arange(len(ys))
    xs = np.arange(ox - 2 * spacing, nx + 2 * spacing, spacing)
    yy = np.repeat(ys, len(xs))
    xx = (xs[None, :] + (k[:, None] % 2) * spacing / 2).ravel()
    return np.stack([yy, xx], 1)


def two_scale_texture(shape=(256, 384), critical_window=24, seed=0, noise=0.05):
    """One fine texture, two large-scale arrangements of voids, and an exact critical window.

    A film with the same fine texture everywhere (an isotropic band-limited random texture of
    wavelength ``W / 6``, contrast 10 % of the film level) is perforated by round voids (radius
    ``W / 4``, level zero), ``W = critical_window``. Both halves hold the same number of voids
    per area, arranged differently on a larger scale:

    - region 0 (left half): spread evenly, a hexagonal lattice of spacing ``1.5 * sqrt(2) * W``;
    - region 1 (right half): segregated into bands of width ``4 W`` (a hexagonal lattice of
      spacing ``1.5 W``, twice as dense) with void-free bands of the same width between them.

    **Critical window.** Any two voids of either region are at least ``W`` apart edge to edge
    (region 1, inside a band: ``1.5 W - 2 R = W``; region 0: ``1.62 W``), so a disk of diameter
    ``w <= W`` (the part of a window the rotation-invariant model sees; for a square window,
    its diagonal ``w * sqrt(2)`` must be ``<= W``) touches at most one void. At a
    uniformly random position it touches one with a probability set by the void density alone
    (the same in both halves), the void then lies at a uniformly distributed offset, and the
    texture around it is the same stationary texture: the distribution of window contents is
    the same in both regions, and no descriptor of that size, however clever, can tell them
    apart. Above ``W`` a window inside a band can hold two voids, which region 0 cannot until
    ``1.62 W``; from about ``1.5 W`` on, windows in region 1 hold two or three voids (in a band)
    or none (between bands) while region 0's hold one or two: the local void fraction tells the
    regions apart. ``critical_window = W`` is the smallest window at which the local statistics
    differ, up to the one-pixel softening of the void edges.

    Parameters
    ----------
    shape : tuple of int
        Image size (ny, nx) in px; at least ``8 * critical_window`` each (one band period
        along y, two band widths per half along x).
    critical_window : int
        W in px, at least 12.
    seed : int
        Random seed.
    noise : float
        Gaussian noise standard deviation relative to the film level.

    Returns
    -------
    Example
        One frame; no keypoints (use a grid); ``pixel_size`` 1 px. ``truth`` holds

        - ``region`` : uint8 (ny, nx), 0 = left (even voids), 1 = right (banded voids);
        - ``critical_window`` : int, W in px;
        - ``voids`` : (n, 2) float, y, x of the void centres (each inside its own half);
        - ``void_radius`` : float, R = W / 4 px;
        - ``void_spacing`` : dict region -> nearest centre-to-centre distance in px;
        - ``band`` : bool (ny,), rows of region 1 inside a void band;
        - ``texture_wavelength`` : float, px;
        - ``clean`` : float32 (ny, nx), the image before noise.

    Examples
    --------
    >>> ex = two_scale_texture(shape=(128, 128), critical_window=16, seed=0)
    >>> ex.images.shape, ex.truth["critical_window"], ex.truth["void_radius"]
    ((1, 128, 128), 16, 4.0)
    >>> np.bincount(ex.truth["region"].ravel()).tolist()
    [8192, 8192]
    """
    try:
        wc = int(critical_window)
    except (TypeError, ValueError):
        raise ScaleVAEError(
            f"critical_window must be an integer, got {critical_window!r}") from None
    if wc != critical_window or wc < 12:
        raise ScaleVAEError(f"critical_window must be an integer >= 12 px, got {critical_window!r}")
    ny, nx = _check_shape(shape, 8 * wc)
    if noise < 0:
        raise ScaleVAEError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)

    # Fine texture: white noise through an isotropic Gaussian ring filter at 1 / wavelength.
    lam = wc / 6
    k = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :])
    ring = np.exp(-0.5 * ((k - 1 / lam) / (0.25 / lam)) ** 2)
    g = np.fft.ifft2(np.fft.fft2(rng.standard_normal((ny, nx))) * ring).real
    texture = 1 + 0.1 * g / g.std()

    radius, dense = wc / 4, 1.5 * wc          # dense spacing - 2 radius = W, edge to edge
    spacing = {0: dense * np.sqrt(2), 1: dense}  # same density: spacing ratio sqrt(2)
    band_width = 4 * wc
    left = _hex_lattice(rng, spacing[0], (ny, nx))
    left = left[(left[:, 1] >= 0) & (left[:, 1] < nx / 2)]
    right = _hex_lattice(rng, spacing[1], (ny, nx))
    right = right[(right[:, 1] >= nx / 2) & (right[:, 1] < nx)]
    # Bands: a random phase of the 2 * band_width period, so that every lattice row is in a
    # band with probability 1/2 and the expected density equals region 0's.
    phase = rng.uniform(0, 2 * band_width)
    right = right[(right[:, 0] - phase) % (2 * band_width) < band_width]
    voids = np.concatenate([left, right])

    yy, xx = np.mgrid[0:ny, 0:nx]
    dist = cKDTree(voids).query(np.stack([yy.ravel(), xx.ravel()], 1))[0].reshape(ny, nx)
    film = np.clip(dist - radius + 0.5, 0.0, 1.0)   # one-pixel soft edge
    clean = texture * film
    image = clean + noise * rng.standard_normal((ny, nx))

    region = np.zeros((ny, nx), dtype=np.uint8)
    region[:, nx // 2:] = 1
    inside = (voids[:, 0] > -radius) & (voids[:, 0] < ny + radius)
    truth = {
        "region": region,
        "critical_window": wc,
        "voids": voids[inside],
        "void_radius": float(radius),
        "void_spacing": {0: float(spacing[0]), 1: float(spacing[1])},
        "band": (np.arange(ny) - phase) % (2 * band_width) < band_width,
        "texture_wavelength": float(lam),
        "clean": clean.astype(np.float32),
    }
    return Example(
        name="twoscale", images=image[None].astype(np.float32), keypoints=None, pixel_size=1.0,
        unit="px", control=None, control_name=None, truth=truth,
        default_windows=[8, 12, 16, 20, 24, 28, 32, 40, 48], default_keypoints="grid:4",
        description="one fine texture, voids spread evenly (left) or in bands (right): the "
                    f"regions differ only in windows larger than {wc} px",
    )


# --------------------------------------------------------------------------------------------
# registry

#: Example generators by name; each takes ``seed`` and its own keyword arguments.
EXAMPLES = {
    "domains": ferroelectric_domains,
    "graphene": graphene_movie,
    "library": combinatorial_library,
    "twoscale": two_scale_texture,
}


def load_example(name, seed=0, **kw):
    """Generate the example data set ``name`` (see :data:`EXAMPLES`).

    Parameters
    ----------
    name : str
        One of ``"domains"``, ``"graphene"``, ``"library"``, ``"twoscale"``.
    seed : int
        Random seed; the same seed gives the same data.
    **kw
        Keyword arguments of the generator (``shape``, ``n_frames``, ...).

    Returns
    -------
    Example

    Examples
    --------
    >>> ex = load_example("twoscale", shape=(128, 128), critical_window=16)
    >>> ex.name, ex.default_keypoints
    ('twoscale', 'grid:4')
    """
    if not isinstance(name, str) or name not in EXAMPLES:
        raise ScaleVAEError(f"unknown example {name!r}: choose one of {', '.join(EXAMPLES)}")
    func = EXAMPLES[name]
    allowed = [p for p in inspect.signature(func).parameters if p != "seed"]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ScaleVAEError(f"example {name!r} has no option {', '.join(unknown)}; "
                            f"its options are {', '.join(allowed)}")
    return func(seed=seed, **kw)
