"""Defaults, choices and validators of a run, in one place.

The command line (argparse defaults, choices and help), :func:`scalevae.run` (its signature) and
:class:`scalevae.training.TrainConfig` (its fields) all read these values, so a default is
written once.

Examples
--------
>>> from scalevae import config
>>> config.EPOCHS, config.KEYPOINTS, config.INVARIANCES
(30, 'grid:4', ('none', 'rotation', 'rotation+translation'))
>>> config.default_windows((256, 256))
[8, 14, 20, 26, 32, 38, 44, 50, 56, 62]
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import ScaleVAEError
from .patches import PADDING_MODES

# the model's invariance modes (model.SIVAE reads them from here)
INVARIANCES = ("none", "rotation", "rotation+translation")

# ----------------------------------------------------------------------------- model
INVARIANCE = "rotation"
LATENT_DIM = 2

# ----------------------------------------------------------------------------- training
EPOCHS = 30  # a cap per window: training stops earlier on convergence
BATCH_SIZE = 128
LR = 1e-3
SEED = 0
# Train on at most this many keypoints (a fixed random subset); every keypoint is encoded.
MAX_TRAIN_POINTS = 16384
ALL_POINTS = "all"  # the command line's word for "train on every keypoint" (None in Python)
DEVICE = "auto"
DEVICES = ("auto", "cpu", "cuda")

# ----------------------------------------------------------------------------- length scales
# The state whose regrouping curve gives the recommended window. "instant": each window encoded
# by the model just trained on it. The final model, trained last on the largest windows,
# encodes the small windows outside what it was last fitted to, and its curve lags the known
# scale (validation/RESULTS.md, fourteenth round: within one window step 33 of 39 stored runs
# read from the instant state, 23 of 39 from the final one; the two-scale texture 5 of 5
# against 0 of 5).
SCALES_STATE = "instant"

# ----------------------------------------------------------------------------- patches
KEYPOINTS = "grid:4"
PADDING_MODES = PADDING_MODES  # re-exported: the choices of ``padding`` (None: drop border points)
SMALLEST_PATCH = 4  # px: the common patch size must be at least this
# Shrinking the largest window more than this to the patch size averages its fine structure away.
MAX_SHRINK = 4
# px: the largest patch chosen automatically (defined beside the rule that uses it)
from .patches.size import MAX_DEFAULT_PATCH  # noqa: E402

# The default windows: from 8 px to a quarter of the smaller frame side (at most 64 px), in
# at most 12 even steps; from down to 4 px where a grid samples a finer period (see below).
FIRST_WINDOW = 8
FIRST_WINDOW_MIN = 4
LAST_WINDOW_MAX = 64
MAX_WINDOW_STEPS = 12


def default_windows(frame_shape, period=None) -> list[int]:
    """The window sizes used when none are given, for frames of ``frame_shape`` (y, x).

    From :data:`FIRST_WINDOW` (8 px) to a quarter of the smaller frame side (at most
    :data:`LAST_WINDOW_MAX`, 64 px) in at most :data:`MAX_WINDOW_STEPS` even steps. With
    ``period`` (px: the image's own period, e.g.
    :func:`scalevae.analysis.multiscale.pronounced_period`) the range starts at about a third of
    it when that is below 8 px (even, at least :data:`FIRST_WINDOW_MIN`): the regrouping a
    structure causes starts when the window reaches about half its size, and a range that
    starts above that sees only the end of the rise (validation/RESULTS.md, thirteenth round:
    domains of period 12 px were read as a gradual change over 8-64 px, as 10-16 px from
    4 px).

    Examples
    --------
    >>> default_windows((48, 48))
    [8, 10, 12]
    >>> default_windows((256, 256), period=11.8)
    [4, 10, 16, 22, 28, 34, 40, 46, 52, 58, 64]
    """
    first = FIRST_WINDOW
    if period is not None and np.isfinite(period) and period > 0:
        first = int(np.clip(2 * round(period / 6), FIRST_WINDOW_MIN, FIRST_WINDOW))
    top = max(first, min(LAST_WINDOW_MAX, min(frame_shape) // 4))
    step = max(2, int(np.ceil((top - first) / MAX_WINDOW_STEPS / 2)) * 2)
    return list(range(first, top + 1, step))


def check_invariance(invariance: str) -> str:
    """``invariance`` if it is one of :data:`INVARIANCES`, else a ScaleVAEError naming them.

    Examples
    --------
    >>> check_invariance("rotation")
    'rotation'
    """
    if invariance not in INVARIANCES:
        raise ScaleVAEError(f"unknown invariance {invariance!r}; use one of {', '.join(INVARIANCES)}")
    return invariance


def check_latent_dim(latent_dim) -> int:
    """``latent_dim`` as an int, at least 1.

    Examples
    --------
    >>> check_latent_dim(2)
    2
    """
    if int(latent_dim) < 1:
        raise ScaleVAEError(f"latent dimension must be at least 1 (got {latent_dim})")
    return int(latent_dim)


def check_patch_size(patch_size, windows, stack=None) -> tuple[int, str]:
    """The common patch size and why: ``patch_size`` if given, else chosen from the image.

    Without ``patch_size`` the size comes from the image's own spectrum
    (:func:`scalevae.patches.size.default_patch_size`): large enough that the finest
    structure the largest window holds keeps a few px after shrinking, bounded by
    :data:`MAX_DEFAULT_PATCH` px for the training cost; without an image (``stack`` None) it is
    the smallest window. Refuses a size under :data:`SMALLEST_PATCH` px, and warns when a size
    the user gave shrinks the largest window more than :data:`MAX_SHRINK`-fold.

    Returns
    -------
    size : int
    reason : str
        One sentence for the output.

    Examples
    --------
    >>> check_patch_size(None, [8, 16, 24])
    (8, 'the smallest window')
    >>> check_patch_size(12, [8, 16, 24])
    (12, 'given')
    """
    if patch_size is None:
        r = int(windows[0])  # the smallest window bounds what any patch size can hold
        reason = "the smallest window"
    else:
        r, reason = int(patch_size), "given"
    if r < SMALLEST_PATCH:
        raise ScaleVAEError(f"patch size must be at least {SMALLEST_PATCH} px (got {r}"
                            f"{'' if patch_size else ', the smallest window'}); use windows of "
                            f"at least {SMALLEST_PATCH} px, or give a larger --patch-size")
    if patch_size is None and stack is not None:
        from .patches.size import default_patch_size

        r, reason = default_patch_size(stack, windows, max_size=MAX_DEFAULT_PATCH)
    if patch_size is not None and windows[-1] / r > MAX_SHRINK:
        warnings.warn(f"the largest window ({windows[-1]} px) is shrunk {windows[-1] / r:.0f}-fold "
                      f"to the common patch size ({r} px): structure finer than about "
                      f"{windows[-1] / r:.0f} px is averaged away there; a larger patch_size "
                      "(--patch-size) keeps it", UserWarning, stacklevel=3)
    return r, reason


def check_train_settings(epochs, batch_size, lr, max_train_points):
    """Validate the training numbers; return ``max_train_points`` as an int (or None: all).

    Examples
    --------
    >>> check_train_settings(30, 128, 1e-3, 100.0)
    100
    """
    if int(epochs) < 1:
        raise ScaleVAEError(f"epochs must be at least 1 (got {epochs}); "
                            "it is the cap on training epochs per window")
    if int(batch_size) < 1:
        raise ScaleVAEError(f"batch size must be at least 1 (got {batch_size})")
    if lr <= 0:
        raise ScaleVAEError(f"learning rate must be positive (got {lr})")
    if max_train_points is None:
        return None
    if isinstance(max_train_points, bool) or int(max_train_points) < 1:
        raise ScaleVAEError(f"max_train_points must be a positive number of keypoints or "
                            f"None for all (got {max_train_points!r})")
    return int(max_train_points)
