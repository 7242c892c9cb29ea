"""One call from an image (file, array or stack) to the SI-VAE result Dataset.

:func:`run` reads the input, makes the run's :class:`~scalevae.plan.Plan` (every choice, with
its reason) and has :func:`scalevae.pipeline.execute` carry it out: keypoints -> patches ->
progressive training -> final encoding -> result -> save -> report. :func:`scalevae.apply`
(:mod:`scalevae.reuse`) is its sibling for a finished run; the command line is a thin layer
over both.
"""

from __future__ import annotations

import time

from . import config
from ._names import renamed_keywords
from .pipeline import execute, grid_shape, prepare_run_dir, read_input  # noqa: F401 (old home)
from .plan import make_plan

__all__ = ["run"]


@renamed_keywords(input="images", image="images", stack="images")
def run(images, windows=None, keypoints=config.KEYPOINTS, *, channel: str | None = None,
        pixel_size: float | None = None, unit: str | None = None, control=None,
        control_name: str | None = None, patch_size: int | None = None,
        invariance: str = config.INVARIANCE, latent_dim: int = config.LATENT_DIM,
        epochs: int = config.EPOCHS, batch_size: int = config.BATCH_SIZE, lr: float = config.LR,
        seed: int = config.SEED, device: str = config.DEVICE, padding: str | None = None,
        max_train_points: int | None = config.MAX_TRAIN_POINTS,
        out=None, result_format: str = "auto", resume: bool = False,
        overwrite: bool = False, quiet: bool = False,
        report: bool = True, keypoint_options: dict | None = None,
        train_options: dict | None = None, repeats: int = 1,
        threads: int | None = None):
    """Run the SI-VAE on an image or image stack and return the result Dataset.

    Parameters
    ----------
    images : str, Path, numpy.ndarray or ImageStack
        A file (TIFF, NumPy, PNG, NSID HDF5, Igor .ibw, Gatan .dm3/.dm4), a 2-D image, a
        ``(frame, y, x)`` stack, or an :class:`~scalevae.io.ImageStack`.
    windows : str or sequence of int, optional
        Window sizes: ``"8:64:4"`` (px), ``"20nm:200nm:20nm"`` (needs a pixel size), or a list.
        Default (:func:`scalevae.config.default_windows`): from 8 px to a quarter of the smaller
        frame side (at most 64), 12 steps at most; with a grid, from about a third of the
        image's period when that is finer (down to 4 px) and its spectral peak stands out
        eight-fold. The result's ``windows_reason`` says which.
    keypoints : str or array
        ``"grid:STEP"``, ``"atoms"`` / ``"atoms:SPACING"`` (nearest-neighbour spacing in px;
        without it the spacing comes from the image's periodicity), ``"sift"``, a CSV/NumPy file
        with ``frame,y,x``, or an ``(n, 3)`` array. Keypoints whose largest window does not fit inside
        the frame are dropped (and counted) unless ``padding`` is given.
    channel : str, optional
        Channel to read from a multi-channel file (e.g. ``"AmplitudeRetrace"``);
        :func:`scalevae.io.list_channels` lists them.
    pixel_size : float, optional
        Size of one pixel in ``unit``; replaces the file's calibration (with a warning).
    unit : str, optional
        Unit of ``pixel_size`` (``"nm"``, ``"um"``, ``"A"``...); needs ``pixel_size``.
    control : array_like, optional
        One control value per frame (time, temperature, composition...), stored as the
        ``control`` coordinate.
    control_name : str, optional
        What ``control`` is (its ``long_name``).
    patch_size : int, optional
        Common size every window is resampled to. Default: chosen from the image's spectrum so
        that the finest structure the largest window holds keeps about 4 px per period after
        shrinking, between the smallest window and ``config.MAX_DEFAULT_PATCH`` (16 px); the
        result's ``patch_size_reason`` says why.
    invariance : {"rotation", "none", "rotation+translation"}
    latent_dim, epochs, batch_size, lr, seed :
        Model size, cap on epochs per window (training stops earlier on convergence), batch
        size, learning rate and random seed (same seed, same machine: same numbers).
    device : {"auto", "cpu", "cuda"}
    padding : {None, "reflect", "constant", "nearest", "wrap"}
        Keep border keypoints by padding the frame instead of dropping them.
    max_train_points : int or None
        Train on at most this many keypoints, one fixed random subset drawn from the seed
        (default 16,384); None trains on every keypoint. Every keypoint is encoded either way;
        the result's ``n_train_points`` says how many trained.
    out : path, optional
        Run folder for ``result.nc``, ``config.json``, checkpoints and ``report.html``. Without
        it nothing is written and the run cannot be resumed.
    result_format : {"auto", "netcdf", "zarr"}
        How ``out`` stores the result: ``result.nc`` (netCDF), or ``result.zarr`` (a Zarr
        store, for results that would not fit in one file); ``"auto"`` picks Zarr above
        :data:`scalevae.results.ZARR_BYTES`. :func:`scalevae.load_result` opens either.
    resume : bool
        Continue the run in ``out`` from its last finished window.
    overwrite : bool
        Replace an earlier run in ``out``.
    quiet, report : bool
        No progress bar; write ``report.html`` into ``out``.
    keypoint_options : dict, optional
        Keyword arguments of the keypoint detector (e.g. ``{"threshold": 0.2}`` for atoms).
    train_options : dict, optional
        Further :class:`~scalevae.training.TrainConfig` fields (e.g. ``{"patience": 4}``).

    repeats : int
        Models trained on the same patches, side by side (seeds ``seed``, ``seed + 1``, ...;
        the others in worker processes, checkpointed in ``checkpoints/seed_N/``). The result
        holds the first; the recommended window pools the resampled answers of all of them
        (``recommended_window_repeats``), so that one model that is confidently wrong is not
        read as a conclusive answer (validation/CALIBRATION.md).
    threads : int, optional
        CPU threads for training, shared among the ``repeats`` (default: one per model,
        ``config.TRAIN_THREADS``; 2 trains 1.45x faster on two idle cores and 2x slower when
        another process keeps a core busy); stored as ``train_threads``. The same count gives
        the same numbers.

    Returns
    -------
    xarray.Dataset
        The result (``z_mean``, ``z_std``, ``angle``, ``loss``, ``kl``, ...; docs/internals.md).

    Examples
    --------
    >>> import numpy as np, scalevae
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(size=(48, 48)).astype("float32")
    >>> ds = scalevae.run(img, windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True,
    ...                   report=False)
    >>> ds.z_mean.dims
    ('state', 'window', 'point', 'latent')
    """
    t = time.perf_counter()
    stack = read_input(images, channel, pixel_size, unit, control, control_name)
    timings = {"read": time.perf_counter() - t}
    train = {"epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
             "max_train_points": max_train_points, **(train_options or {})}
    plan = make_plan(stack, windows=windows, keypoints=keypoints,
                     keypoint_options=keypoint_options, padding=padding, patch_size=patch_size,
                     invariance=invariance, latent_dim=latent_dim, train=train, seed=seed,
                     device=device)
    run_dir = prepare_run_dir(out, stack, plan, resume, overwrite, result_format)
    return execute(plan, stack, run_dir, resume=resume, quiet=quiet, report=report,
                   timings=timings, repeats=repeats, threads=threads)
