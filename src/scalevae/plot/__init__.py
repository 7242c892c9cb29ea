"""Figures of a run, one function per figure type of the paper.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (so it works
headless, in threads, and never opens a window); save it with ``fig.savefig(...)``. Windows are
labelled in px and, when the pixel size is known, in physical units too ("16 px (62.4 nm)").

What lives where:

- ``_layout`` -- fixed-grid figures, colorbars, window axes, point maps; :func:`window_label`,
  :func:`pick_panels`;
- ``data`` -- the input: :func:`plot_keypoints`, :func:`plot_example_patches`;
- ``latents`` -- the latent space: distributions, manifolds, KDE-PCA, trajectory PCA, density
  peaks;
- ``maps`` -- maps over the frame, one mosaic each: :func:`plot_latent_images`,
  :func:`plot_outlier_scores`;
- ``scales`` -- :func:`plot_stack_statistics`, :func:`plot_length_scales`;
- ``training`` -- :func:`plot_loss`, :func:`plot_kl` (and :data:`COLLAPSE_NATS`).
"""

from ._layout import pick_panels, window_label
from .data import plot_example_patches, plot_keypoints
from .latents import (plot_kde_pca, plot_kde_peaks, plot_latent_distributions,
                      plot_latent_manifolds, plot_trajectory_pca)
from .maps import plot_latent_images, plot_outlier_scores
from .scales import plot_length_scales, plot_stack_statistics
from .training import COLLAPSE_NATS, plot_kl, plot_loss

__all__ = [
    "window_label",
    "plot_keypoints",
    "plot_example_patches",
    "plot_latent_distributions",
    "plot_latent_manifolds",
    "plot_latent_images",
    "plot_kde_pca",
    "plot_trajectory_pca",
    "plot_stack_statistics",
    "plot_length_scales",
    "plot_kde_peaks",
    "plot_outlier_scores",
    "plot_loss",
    "plot_kl",
]
