"""Multislice HAADF-STEM images of graphene for the atom-detection tests (abTEM + ase).

Writes ``tests/data/graphene_multislice.npz``: a noiseless HAADF image of single-layer graphene
with two grains (rotated 28 degrees against each other, meeting along a line), single
vacancies, Si substitutions and a patch of amorphous carbon on top, simulated with abTEM's PRISM
multislice at 60 kV (30 mrad probe, 60-130 mrad annular detector, one frozen configuration),
together with the true positions of the lattice atoms, their elements and the footprint of the
amorphous patch. The tests add probe (source-size) blur, scan noise and Poisson noise at
several doses themselves (``scalevae.datasets.haadf.degrade``).

abTEM is not a dependency of scalevae; run this in its own environment::

    python3 -m venv /tmp/abtem-venv && /tmp/abtem-venv/bin/pip install abtem ase
    PYTHONPATH=src /tmp/abtem-venv/bin/python validation/simulate_haadf.py

It takes about 10-20 min on two CPU cores (the S-matrix of a 4.4 nm cell).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "graphene_multislice.npz"
SEED = 24
CELL = 44.0          # A, square cell side
MARGIN = 3.0         # A, the scan stays this far from the cell's edges (periodic seams)
SCAN_STEP = 0.3      # A, below the Nyquist step of the 60 kV, 30 mrad probe (0.41 A)
A_GRAPHENE = 2.46    # A
GB_ANGLE = 28.0      # degrees between the grains
N_VACANCIES = 6
N_SILICON = 4
AMORPHOUS_RADIUS = 9.0     # A, patch of amorphous carbon on top of the sheet
AMORPHOUS_THICKNESS = 5.0  # A
AMORPHOUS_DENSITY = 0.1    # atoms / A^3 (about 2 g/cm^3)


def honeycomb(angle_deg, origin, cell):
    """Graphene atom positions (x, y) in A covering the cell, rotated by angle_deg."""
    a = A_GRAPHENE
    a1 = a * np.array([1.0, 0.0])
    a2 = a * np.array([0.5, np.sqrt(3) / 2])
    n = int(cell / a) + 6
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    cells = i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2
    xy = np.concatenate([cells, cells + (a1 + a2) / 3])
    t = np.deg2rad(angle_deg)
    xy = xy @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]).T + origin
    return xy[(xy >= 0).all(1) & (xy < cell).all(1)]


def build(rng):
    """Atoms (x, y, z, Z), the lattice atoms' mask and the amorphous patch (centre, radius)."""
    c = CELL / 2
    g1 = honeycomb(7.0, rng.uniform(0, 2, 2), CELL)
    g2 = honeycomb(7.0 + GB_ANGLE, rng.uniform(0, 2, 2), CELL)
    normal = np.array([np.cos(np.deg2rad(75)), np.sin(np.deg2rad(75))])
    g1 = g1[(g1 - c) @ normal < 0]
    g2 = g2[(g2 - c) @ normal >= 0]
    d, _ = cKDTree(g1).query(g2)
    xy = np.concatenate([g1, g2[d > 1.1]])
    # periodic seams: drop atoms closer than 1.1 A to an earlier one across the cell's edges
    tree = cKDTree(xy, boxsize=CELL)
    pairs = tree.query_pairs(1.1, output_type="ndarray")
    xy = np.delete(xy, np.unique(pairs.max(1)) if len(pairs) else [], axis=0)
    lo, hi = MARGIN + 2, CELL - MARGIN - 2
    inner = np.flatnonzero(((xy > lo) & (xy < hi)).all(1))
    far = inner[np.abs((xy[inner] - c) @ normal) > 3.0]  # defects away from the boundary
    pick = rng.choice(far, N_VACANCIES + N_SILICON, replace=False)
    z = np.full(len(xy), 6)
    z[pick[N_VACANCIES:]] = 14
    keep = np.ones(len(xy), bool)
    keep[pick[:N_VACANCIES]] = False
    xy, z = xy[keep], z[keep]
    # amorphous carbon on top, over part of grain 1 (random positions, 1.3 A apart at least)
    centre = np.array([CELL * 0.3, CELL * 0.3])
    n_am = int(AMORPHOUS_DENSITY * np.pi * AMORPHOUS_RADIUS ** 2 * AMORPHOUS_THICKNESS)
    am = []
    while len(am) < n_am:
        r = AMORPHOUS_RADIUS * np.sqrt(rng.uniform())
        t = rng.uniform(0, 2 * np.pi)
        p = np.array([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t),
                      rng.uniform(1.5, 1.5 + AMORPHOUS_THICKNESS)])
        if not am or np.min(np.linalg.norm(np.array(am) - p, axis=1)) > 1.3:
            am.append(p)
    am = np.array(am)
    sheet = np.column_stack([xy, np.zeros(len(xy)), z])
    amorph = np.column_stack([am, np.full(len(am), 6)])
    return sheet, amorph, centre


def simulate(sheet, amorph):
    import abtem
    from ase import Atoms

    allat = np.concatenate([sheet, amorph])
    z0 = 2.0
    atoms = Atoms(numbers=allat[:, 3].astype(int),
                  positions=np.column_stack([allat[:, 0], allat[:, 1], allat[:, 2] + z0]),
                  cell=[CELL, CELL, z0 + 1.5 + AMORPHOUS_THICKNESS + 2.0], pbc=True)
    pot = abtem.Potential(atoms, sampling=0.12, slice_thickness=2.0, projection="infinite",
                          parametrization="lobato")
    smat = abtem.SMatrix(potential=pot, energy=60e3, semiangle_cutoff=30, interpolation=1)
    scan = abtem.GridScan(start=(MARGIN, MARGIN), end=(CELL - MARGIN, CELL - MARGIN),
                          sampling=SCAN_STEP)
    det = abtem.AnnularDetector(inner=60, outer=130)
    img = smat.scan(scan=scan, detectors=det).compute(scheduler="threads", num_workers=2)
    return np.asarray(img.array, np.float64), float(scan.sampling[0])


def main():
    rng = np.random.default_rng(SEED)
    sheet, amorph, centre = build(rng)
    t = time.time()
    img, step = simulate(sheet, amorph)
    print(f"multislice: {time.time() - t:.0f} s, image {img.shape}, step {step:.4f} A")
    # abTEM's scan image is indexed (x, y): transpose to (y, x); pixel (i, j) at MARGIN + step*(i, j)
    img = img.T
    ny, nx = img.shape
    yx = (sheet[:, [1, 0]] - MARGIN) / step
    inside = (yx > -0.5).all(1) & (yx[:, 0] < ny - 0.5) & (yx[:, 1] < nx - 0.5)
    yy, xx = np.mgrid[:ny, :nx]
    am_mask = np.hypot(yy * step + MARGIN - centre[1], xx * step + MARGIN - centre[0]) \
        <= AMORPHOUS_RADIUS
    img = img / np.median(img)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, image=img.astype(np.float16), atoms_yx=yx[inside].astype(np.float32),
                        element=sheet[inside, 3].astype(np.uint8), amorphous=am_mask,
                        pixel_size_A=np.float32(step), gb_angle=np.float32(GB_ANGLE))
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB): {inside.sum()} lattice atoms, "
          f"{len(amorph)} amorphous atoms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
