"""Synthetic STEM HAADF movie of graphene accumulating beam damage (paper Section V)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..errors import ScaleVAEError
from ._common import Example, check_frames, check_positive, check_shape

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
    n_frames = check_frames(n_frames, 1)
    ny, nx = check_shape(shape, 16)
    pixel_size = check_positive(pixel_size, "pixel_size")
    dose = check_positive(dose, "dose")
    fwhm = check_positive(fwhm, "fwhm")
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
