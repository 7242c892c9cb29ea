"""Defaults and choices of a run, in one place: the ground floor of the package.

The command line (argparse defaults, choices and help), :func:`scalevae.run` (its signature),
:class:`scalevae.training.TrainConfig` (its fields), the patch-size rule and the spectrum all
read these values, so a default is written once. This module imports nothing from the package
(and nothing heavy), so that reading a default costs no reader, no torch and no numpy; the
checks of what a user gives live beside the code that uses it (:mod:`scalevae.plan`,
:mod:`scalevae.training.schedule`).

Examples
--------
>>> from scalevae import config
>>> config.EPOCHS, config.KEYPOINTS, config.INVARIANCES
(30, 'grid:4', ('none', 'rotation', 'rotation+translation'))
>>> config.default_windows((256, 256))
[8, 14, 20, 26, 32, 38, 44, 50, 56, 62]
"""

from __future__ import annotations

import math

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
# scale (the comparison of the two states is in validation/RESULTS.md).
SCALES_STATE = "instant"

# ----------------------------------------------------------------------------- patches
KEYPOINTS = "grid:4"
# the choices of ``padding`` (None: drop the keypoints whose largest window leaves the frame)
PADDING_MODES = ("reflect", "constant", "nearest", "wrap")
SMALLEST_PATCH = 4  # px: the common patch size must be at least this
# Shrinking the largest window more than this to the patch size averages its fine structure away.
MAX_SHRINK = 4
#: px: upper bound of the automatic patch size. A training step costs about (r / 8) ** 2 times
#: the 8 px one (validation/scales_cost.py). Larger sizes: give patch_size.
MAX_DEFAULT_PATCH = 16
#: CPU threads one model trains with unless told (``--threads``). The model is many ops far
#: smaller than a scheduler tick: two threads train a 16 px epoch 1.45x faster on two idle
#: cores, but 2x slower than one thread as soon as another process keeps one core busy (a
#: thread waits at every op for one that is not running); benchmarks/RESULTS_pto.md. Every
#: core is used by models side by side instead (``--repeats``).
TRAIN_THREADS = 1
#: A period keeps ~4 px after shrinking: 2 px is the Nyquist limit, and the anti-aliasing
#: prefilter already damps a 2-3 px period to a fraction of its contrast.
PIXELS_PER_PERIOD = 4

# ----------------------------------------------------------------------------- spectrum
#: Share of the above-noise, within-window spectral power that lies at periods >= the fine period.
POWER_FRACTION = 0.9
#: Frames averaged for the spectrum (a stack's frames share their structure).
SPECTRUM_FRAMES = 8
#: The white-noise floor of the spectrum: median power at frequencies above this (cycles/px),
#: where smooth structure has decayed.
NOISE_FLOOR_FREQUENCY = 0.4
#: A spectral peak at least this far above the image's scale-free (power-law) background, in
#: ln power (ln 8: eight-fold), is a period of the image's own; a threshold set on the
#: generators and the real files (validation/RESULTS.md), not a calibrated test.
PRONOUNCED_PEAK = math.log(8)
# A spectral period at or below this (px) is the pixel or noise limit (white noise peaks at
# 2 px), not a structure of the image: no baseline, no window advice from it.
NOISE_LIMIT_PERIOD = 2.5

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
    :func:`scalevae.spectrum.pronounced_period`) the range starts at about a third of
    it when that is below 8 px (even, at least :data:`FIRST_WINDOW_MIN`): the regrouping a
    structure causes starts when the window reaches about half its size, and a range that
    starts above that sees only the end of the rise (validation/RESULTS.md).

    Examples
    --------
    >>> default_windows((48, 48))
    [8, 10, 12]
    >>> default_windows((256, 256), period=11.8)
    [4, 10, 16, 22, 28, 34, 40, 46, 52, 58, 64]
    """
    first = FIRST_WINDOW
    if period is not None and math.isfinite(period) and period > 0:
        first = min(max(2 * round(period / 6), FIRST_WINDOW_MIN), FIRST_WINDOW)
    top = max(first, min(LAST_WINDOW_MAX, min(frame_shape) // 4))
    step = max(2, math.ceil((top - first) / MAX_WINDOW_STEPS / 2) * 2)
    return list(range(first, top + 1, step))
