"""One fine texture, two large-scale arrangements of voids, and an exact critical window."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..errors import ScaleVAEError
from ._common import Example, check_noise, check_shape, hex_lattice

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
    ny, nx = check_shape(shape, 8 * wc)
    check_noise(noise)
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
    left = hex_lattice(rng, spacing[0], (ny, nx))
    left = left[(left[:, 1] >= 0) & (left[:, 1] < nx / 2)]
    right = hex_lattice(rng, spacing[1], (ny, nx))
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
