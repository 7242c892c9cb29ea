"""Analyses of a run's latent space across windows (the paper's Figs. 3-7 and 10).

Every function takes the result Dataset (``scalevae.results``; names in DESIGN.md) or the output
of another function here, and returns an ``xarray`` Dataset or DataArray (or a NumPy array).
Nothing here plots.

What lives where:

- :mod:`.density`: kernel densities of the latents. :func:`latent_density` (per window, on one
  shared grid), :func:`populated_extent` (the range the keypoints populate), :func:`kde_pca`
  (PCA of the densities across windows), :func:`kde_peaks` (candidate structural elements) and
  :func:`outlier_scores` (unusual keypoints).
- :mod:`.latents`: :func:`latent_representation` (decode an n x n grid of latent points),
  :func:`latent_images` and :func:`grid_layout` (latent values mapped back onto the keypoints),
  :func:`trajectory_pca` (PCA of every keypoint's latent trajectory over the windows) and
  :func:`stack_statistics` (mean and dispersion of each latent per frame and window).
- :mod:`.scales`: :func:`length_scales`, where the latent structure changes most, and the
  recommended window.
- ``._common``: private helpers they share (state selection, window checks, subsets, decoding).
"""

from .density import kde_pca, kde_peaks, latent_density, outlier_scores, populated_extent
from .latents import (grid_layout, latent_images, latent_representation, stack_statistics,
                      trajectory_pca)
from .scales import length_scales

__all__ = [
    "latent_density",
    "populated_extent",
    "latent_representation",
    "latent_images",
    "grid_layout",
    "kde_pca",
    "trajectory_pca",
    "stack_statistics",
    "length_scales",
    "kde_peaks",
    "outlier_scores",
]
