"""Synthetic AFM topography across a composition spread (paper Section VI)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ._common import Example, check_frames, check_noise, check_positive, check_shape, scan_lines

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
    n_frames = check_frames(n_frames, 2, " to span compositions")
    ny, nx = check_shape(shape, 32)
    pixel_size = check_positive(pixel_size, "pixel_size")
    tip_radius = check_positive(tip_radius, "tip_radius")
    check_noise(noise)
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
        images.append(scan_lines(rng, crop, 0.5 * noise * relief, noise * relief))
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
