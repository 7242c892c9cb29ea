"""What every generator shares: the :class:`Example` record, argument checks, and the image
models they reuse (smooth random fields, scan-line noise, signed distances, hexagonal lattices)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import ScaleVAEError

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


def check_shape(shape, minimum, name="shape"):
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ScaleVAEError(f"{name} must be two integers (ny, nx), got {shape!r}") from None
    if ny < minimum or nx < minimum:
        raise ScaleVAEError(f"{name} {shape!r} is too small: use at least {minimum} px per side")
    return ny, nx


def check_positive(value, name):
    if not np.isfinite(value) or value <= 0:
        raise ScaleVAEError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def signed_distance(mask):
    """Signed distance (px) to the boundary of ``mask``: positive inside, negative outside."""
    if mask.all() or not mask.any():
        return np.full(mask.shape, np.inf if mask.all() else -np.inf)
    # The boundary lies between pixels, hence the half pixel.
    return np.where(mask, ndimage.distance_transform_edt(mask) - 0.5,
                    0.5 - ndimage.distance_transform_edt(~mask))


def smooth_noise(rng, shape, sigma):
    """Gaussian random field with unit variance and correlation length ``sigma`` px."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / f.std()


def scan_lines(rng, image, line_sigma, pixel_sigma):
    """Add per-line offsets (the fast scan axis is x) and white noise, as a scanning probe does."""
    offsets = line_sigma * rng.standard_normal(image.shape[0])
    # A few lines jump further (tip pick-up, feedback ringing).
    jumps = rng.random(image.shape[0]) < 0.02
    offsets[jumps] += 3 * line_sigma * rng.standard_normal(jumps.sum())
    return image + offsets[:, None] + pixel_sigma * rng.standard_normal(image.shape)


def hex_lattice(rng, spacing, shape):
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


def check_frames(n_frames, minimum, reason=""):
    """``n_frames`` as an int, at least ``minimum`` (``reason`` says why, after the number)."""
    n_frames = int(n_frames)
    if n_frames < minimum:
        raise ScaleVAEError(f"n_frames must be at least {minimum}{reason}, got {n_frames}")
    return n_frames


def check_noise(noise):
    """Refuse a negative noise level."""
    if noise < 0:
        raise ScaleVAEError(f"noise must be >= 0, got {noise}")
