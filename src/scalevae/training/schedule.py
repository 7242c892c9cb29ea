"""Training settings and the schedule they imply: steps per epoch, KL warm-up, epoch cap, subset."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import config
from ..errors import ScaleVAEError


@dataclass
class TrainConfig:
    """Training settings (all stored in the result's ``config``).

    epochs : cap on epochs per window; training stops earlier on convergence.
    min_epochs : epochs always run per window at the full KL weight (the first window runs
        ``2 * min_epochs`` of them after its warm-up).
    patience, tol : converged when the best loss improved by less than ``tol`` nats per modelled
        pixel over the last ``patience`` epochs (a scale-free unit: patches are normalised).
    warmup_steps : KL weight ramps from 0 to 1 over the first steps of the first window (at most
        half of that window's step budget), so the decoder learns to use the latents before
        the KL term can switch them off (collapse); convergence is judged after it.
    augment : in the rotation modes, half of each batch is rotated by a random angle and the
        latents of a rotated patch are pulled to those of the original (``consistency`` weight,
        in units of the posterior variance), which trains ``z`` to be invariant to rotations
        between the encoder's exact ones.
    max_train_points : train on at most this many keypoints, one fixed random subset (drawn
        from the seed) used at every window so that each window continues on the same points;
        every keypoint is still encoded in both states. None: all keypoints.

    Examples
    --------
    >>> TrainConfig(epochs=5).min_epochs
    3
    >>> TrainConfig(epochs=2).min_epochs
    2
    """

    epochs: int = config.EPOCHS
    min_epochs: int = 3
    patience: int = 2
    tol: float = 2e-3
    batch_size: int = config.BATCH_SIZE
    lr: float = config.LR
    warmup_steps: int = 300
    augment: bool = True
    consistency: float = 1.0
    max_train_points: int | None = config.MAX_TRAIN_POINTS

    def __post_init__(self):
        self.max_train_points = check_train_settings(
            self.epochs, self.batch_size, self.lr, self.max_train_points)
        self.min_epochs = min(self.min_epochs, self.epochs)


def steps_per_epoch(cfg: TrainConfig, n: int) -> int:
    """Optimiser steps in one epoch over ``n`` patches.

    Examples
    --------
    >>> steps_per_epoch(TrainConfig(batch_size=128), 300), steps_per_epoch(TrainConfig(), 50)
    (3, 1)
    """
    # a batch larger than the data still trains (one full batch)
    return math.ceil(n / min(cfg.batch_size, n))


def warmup_steps(cfg: TrainConfig, n: int, first: bool) -> int:
    """KL warm-up steps of a window trained on ``n`` patches: only the first window has one,
    at most half of its ``cfg.epochs`` budget.

    Examples
    --------
    >>> warmup_steps(TrainConfig(epochs=30), 1280, first=True)
    150
    >>> warmup_steps(TrainConfig(epochs=30), 1280, first=False)
    0
    """
    if not (first and cfg.warmup_steps):
        return 0
    return min(int(cfg.warmup_steps), cfg.epochs * steps_per_epoch(cfg, n) // 2)


def epoch_cap(cfg: TrainConfig, n: int, first: bool) -> int:
    """Most epochs a window trains: ``cfg.epochs`` at full KL weight, plus the first window's
    warm-up epochs on top, so that every window has the same budget for converging.

    Examples
    --------
    >>> epoch_cap(TrainConfig(epochs=30), 1280, first=True), epoch_cap(TrainConfig(), 1280, False)
    (45, 30)
    """
    return cfg.epochs + math.ceil(warmup_steps(cfg, n, first) / steps_per_epoch(cfg, n))


def training_subset(n, max_points, seed):
    """Sorted indices of the keypoints to train on, or None for all ``n`` of them.

    Examples
    --------
    >>> training_subset(10, None, 0) is None, training_subset(10, 20, 0) is None
    (True, True)
    >>> len(training_subset(100, 20, 0))
    20
    """
    if max_points is None or n <= max_points:
        return None
    return np.sort(np.random.default_rng([int(seed), 7]).choice(n, int(max_points), replace=False))


#: Window ``i`` of a run draws its randomness from ``seed * WINDOW_SEED_STRIDE + i`` (a prime
#: larger than any window count: no two (seed, window) pairs share a stream).
WINDOW_SEED_STRIDE = 100_003


def window_seed(seed: int, i: int) -> int:
    """The seed of window ``i``'s own generator, so that a resumed run draws what an
    uninterrupted one does.

    Examples
    --------
    >>> window_seed(0, 3), window_seed(1, 0)
    (3, 100003)
    """
    return int(seed) * WINDOW_SEED_STRIDE + i


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
