"""One call from an image (file, array or stack) to the SI-VAE result Dataset.

:func:`run` chains the steps of DESIGN.md as named steps: read the input -> check the options ->
keypoints -> normalisation and configuration -> run folder -> progressive training -> final
encoding -> result -> recommended window -> save -> report. The command line is a thin layer
over it.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__, config
from .analysis.multiscale import pronounced_period, spectral_baseline
from .errors import ScaleVAEError
from .io import ImageStack, as_stack, read_image
from .keypoints import make_keypoints, select_inside
from .model import SIVAE
from .patches import check_windows_fit, extract_patches, fit_normalization, parse_windows
from .results import RESULT_FORMATS, RunRecord, build_result
from .rundir import RunDir, fingerprint
from .training import (Progress, TrainConfig, cpu_threads, encode, encode_in_blocks,
                       encode_sharded, resolve_device, setup_distributed, train_progressive,
                       training_subset)
from .saving import (recommended_scales, flag_epoch_cap, recommendation, save, save_by_regions,
                     writes_regions)
from .training.distributed import broadcast_error

# Keep each window's patches for the final encoding when they fit in this budget: cutting them
# again costs as much as cutting them the first time.
PATCH_CACHE_BYTES = 256 * 2**20


def run(images, windows=None, keypoints=config.KEYPOINTS, *, channel: str | None = None,
        pixel_size: float | None = None, unit: str | None = None, control=None,
        control_name: str | None = None, patch_size: int | None = None,
        invariance: str = config.INVARIANCE, latent_dim: int = config.LATENT_DIM,
        epochs: int = config.EPOCHS, batch_size: int = config.BATCH_SIZE, lr: float = config.LR,
        seed: int = config.SEED, device: str = config.DEVICE, padding: str | None = None,
        out=None, result_format: str = "auto", resume: bool = False,
        overwrite: bool = False, quiet: bool = False,
        report: bool = True, keypoint_options: dict | None = None,
        train_options: dict | None = None):
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
        Further :class:`~scalevae.training.TrainConfig` fields, e.g. ``{"max_train_points": None}``
        to train on every keypoint instead of a fixed random subset of at most 16,384 (all
        keypoints are encoded either way; the result's ``n_train_points`` says how many trained).

    Returns
    -------
    xarray.Dataset
        The result of DESIGN.md (``z_mean``, ``z_std``, ``angle``, ``loss``, ``kl``, ...).

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
    timings = {}
    t = time.perf_counter()
    stack = read_input(images, channel, pixel_size, unit, control, control_name)
    timings["read"] = time.perf_counter() - t

    config.check_invariance(invariance)
    latent_dim = config.check_latent_dim(latent_dim)
    windows, windows_reason = _windows(windows, stack, padding, keypoints)
    r, patch_reason = config.check_patch_size(patch_size, windows, stack.data)
    cfg = TrainConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                      **(train_options or {}))
    dev = resolve_device(device)
    # under torchrun: join the process group; `train_dev` is this rank's device (cuda:LOCAL_RANK)
    dist, train_dev = setup_distributed(dev)

    t = time.perf_counter()
    points, n_dropped = _keypoints(keypoints, stack, windows, padding, keypoint_options)
    timings["keypoints"] = time.perf_counter() - t

    normalization = fit_normalization(stack.data)
    settings = _settings(stack, windows, keypoints, keypoint_options, padding, points, n_dropped,
                         r, patch_reason, invariance, latent_dim, seed, dev, cfg)
    settings["windows_reason"] = windows_reason
    run_dir = _prepare_run_dir(out, stack, points, settings, resume, overwrite, dist,
                               result_format)
    by_regions = writes_regions(run_dir, dist, len(points), len(windows), latent_dim)
    patches = _Patches(stack, points, windows, r, padding, normalization)
    model = _new_model(r, latent_dim, invariance, seed)
    per_window, final = _train_and_encode(model, patches, windows, cfg, seed, train_dev, run_dir,
                                          settings["fingerprint"], resume, quiet, timings, dist,
                                          by_regions)
    if by_regions:  # `final` is this rank's shard: written into the store, never gathered
        record = _record(stack, points, windows, per_window, [res.instant for res in per_window],
                         invariance, r, settings, normalization, n_dropped, cfg, seed, timings,
                         dist)
        return save_by_regions(run_dir, record, final, per_window, cfg, dist, report, timings,
                                quiet)
    ds = build_result(_record(stack, points, windows, per_window, final, invariance, r, settings,
                              normalization, n_dropped, cfg, seed, timings, dist))
    flag_epoch_cap(ds, per_window, cfg)
    ds.attrs.update(recommendation(recommended_scales(ds)))
    if run_dir is not None and (dist is None or dist.is_main):
        save(run_dir, ds, report, timings, quiet)
    return ds


# ----------------------------------------------------------------------------- the steps

def read_input(images, channel, pixel_size, unit, control, control_name) -> ImageStack:
    """The input as a validated ImageStack, the user's calibration and control applied."""
    if unit is not None and pixel_size is None:
        raise ScaleVAEError(f"a unit ({unit!r}) was given without a pixel size; give both "
                            "(e.g. --pixel-size 2.5 --unit nm) or neither")
    if isinstance(images, ImageStack):
        stack = images
    elif isinstance(images, (str, Path)):
        stack = read_image(images, channel=channel)
    else:
        stack = as_stack(images, pixel_size=pixel_size, unit=unit, control=control,
                         control_name=control_name)
    if pixel_size is not None and (stack.pixel_size, stack.unit) != (pixel_size, unit):
        # The user's calibration wins over the file's (instruments store wrong ones too).
        file_size, file_unit = stack.pixel_size, stack.unit
        stack = as_stack(stack, pixel_size=pixel_size, unit=unit)  # checks value and unit
        if file_size is not None:
            stack.metadata["file_pixel_size"] = [file_size, file_unit]
            warnings.warn(f"the pixel size given ({pixel_size} {unit}) replaces the file's "
                          f"({file_size:.6g} {file_unit})", UserWarning, stacklevel=3)
    if control is not None and stack.control is None:
        stack = as_stack(stack, control=control, control_name=control_name)  # checks the values
    return stack


def _windows(windows, stack, padding, keypoints=None) -> tuple[np.ndarray, str]:
    """The window sizes in px (the default rule when None) and why; without padding they must
    fit. A grid's default range starts below 8 px when the image has a pronounced finer period
    (config.default_windows); atom and feature keypoints sit on the structure's basic unit,
    whose windows below it carry nothing, so theirs never does."""
    frame_shape = stack.data.shape[1:]
    reason = "given"
    if windows is None:
        period = None
        if isinstance(keypoints, str) and keypoints.split(":")[0] == "grid":
            period = pronounced_period(stack.data)
        windows = config.default_windows(frame_shape, period)
        reason = "default: 8 px to a quarter of the smaller frame side (at most 64 px)"
        if windows[0] < config.FIRST_WINDOW:
            reason = (f"default: from {windows[0]} px, about a third of the image's spectral "
                      f"period ({period:.1f} px), so that the range brackets the regrouping "
                      "it causes")
    windows = np.asarray(parse_windows(windows, stack.pixel_size, stack.unit), dtype=np.int64)
    if padding is None:
        check_windows_fit(windows, frame_shape)
    return windows, reason


def _keypoints(keypoints, stack, windows, padding, options):
    """The keypoints whose largest window fits (or all, with padding) and how many were dropped."""
    points = make_keypoints(keypoints, stack.data, **(options or {}))
    return select_inside(points, stack.data.shape[1:], windows[-1], padding=padding)


def _settings(stack, windows, keypoints, keypoint_options, padding, points, n_dropped, r,
              patch_reason, invariance, latent_dim, seed, dev, cfg) -> dict:
    """The run's configuration as stored in config.json and the result (with its fingerprint)."""
    settings = {
        "input": stack.source, "channel": stack.channel, "windows": windows.tolist(),
        "keypoints": _spec(keypoints), "keypoint_options": keypoint_options or {},
        "padding": padding, "n_keypoints": int(len(points)), "n_dropped": int(n_dropped),
        "patch_size": r, "patch_size_reason": patch_reason, "invariance": invariance, "latent_dim": int(latent_dim),
        "seed": int(seed), "device": str(dev), "train": cfg.__dict__, "version": __version__,
    }
    settings["fingerprint"] = fingerprint(stack.data, points, settings)
    return settings


def _prepare_run_dir(out, stack, points, settings, resume, overwrite, dist=None,
                     result_format="auto") -> RunDir | None:
    """The run folder, checked and holding config.json and input.npy; None without ``out``.

    In a distributed run rank 0 alone checks and writes it; its error, if any, is raised on
    every rank."""
    if result_format not in RESULT_FORMATS:
        raise ScaleVAEError(f"unknown result format {result_format!r}; use one of "
                            f"{', '.join(RESULT_FORMATS)}")
    if out is None:
        return None
    run_dir = RunDir(out, result_format)
    if dist is None:
        run_dir.prepare(settings["fingerprint"], resume, overwrite)
        run_dir.write_inputs(settings, stack.data)
        return run_dir
    message = None
    if dist.is_main:
        try:
            run_dir.prepare(settings["fingerprint"], resume, overwrite)
            run_dir.write_inputs(settings, stack.data)
        except ScaleVAEError as exc:
            message = str(exc)
    broadcast_error(message, dist)  # also the barrier: the folder is ready on every rank after it
    return run_dir


class _Patches:
    """``patches(window)``: the normalised patches of every keypoint, kept for the final encoding
    when they fit in :data:`PATCH_CACHE_BYTES`; ``patches(window, index)`` those of the
    keypoints ``index`` (a slice or an index array); ``seconds`` is the time spent cutting them.

    When all windows' patches would not fit, the source is ``streaming``: training cuts its
    subset, and encoding cuts the keypoints block by block (training.progressive)."""

    def __init__(self, stack, points, windows, r, padding, normalization):
        self.stack, self.points, self.r = stack, points, r
        self.padding, self.normalization = padding, normalization
        self.n_points = len(points)
        self.streaming = len(points) * r * r * 4 * len(windows) > PATCH_CACHE_BYTES
        self.cache, self.seconds = (None if self.streaming else {}), 0.0

    def __call__(self, w, index=None):
        if self.cache is not None and int(w) in self.cache:
            cached = self.cache[int(w)]
            return cached if index is None else cached[index]
        t0 = time.perf_counter()
        points = self.points if index is None else self.points[index]
        p = extract_patches(self.stack.data, points, int(w), self.r, padding=self.padding,
                            normalization=self.normalization)
        self.seconds += time.perf_counter() - t0
        if self.cache is not None and index is None:
            self.cache[int(w)] = p
        return p


def _new_model(r, latent_dim, invariance, seed) -> SIVAE:
    """The untrained model, its initial weights drawn from ``seed``."""
    torch.manual_seed(int(seed))
    return SIVAE(r, int(latent_dim), invariance)


def _train_and_encode(model, patches, windows, cfg, seed, dev, run_dir, fp, resume, quiet,
                      timings, dist=None, by_regions=False):
    """Train through the windows, then encode every window with the final model (with
    ``by_regions``, this rank's shard of the keypoints only)."""
    if dist is None:
        return _train_then_encode(model, patches, windows, cfg, seed, dev, run_dir, fp, resume,
                                  quiet, timings, None)
    try:
        return _train_then_encode(model, patches, windows, cfg, seed, dev, run_dir, fp, resume,
                                  quiet or not dist.is_main, timings, dist, by_regions)
    except RuntimeError as exc:  # gloo/NCCL: a peer process died or hung up
        raise ScaleVAEError(
            f"rank {dist.rank} of {dist.world_size} lost the other processes of the "
            f"distributed run ({str(exc).splitlines()[0][:120]}); one of them stopped. "
            "Finished windows are saved in --out: rerun the same command with --resume "
            "to continue") from exc


def _train_then_encode(model, patches, windows, cfg, seed, dev, run_dir, fp, resume, quiet,
                       timings, dist, by_regions=False):
    t = time.perf_counter()
    with Progress(windows, quiet) as progress, cpu_threads(dev, patches.r):
        model, per_window = train_progressive(
            windows, patches, model, cfg, seed=seed, device=dev,
            checkpoint_dir=run_dir.checkpoints if run_dir is not None else None,
            fingerprint=fp, resume=resume, progress=progress, dist=dist)
        timings["train"] = time.perf_counter() - t - patches.seconds

        t = time.perf_counter()
        patch_before = patches.seconds
        if by_regions or patches.streaming:
            # by_regions: this rank's shard only, written into the store by the caller
            final = [encode_in_blocks(model, patches, w, patches.n_points, dev, dist,
                                      gather=not by_regions) for w in windows]
        else:
            enc = encode if dist is None else (lambda m, x: encode_sharded(m, x, dist))
            final = [enc(model, torch.from_numpy(patches(w)).to(dev)) for w in windows]
    patches.cache = None
    timings["patches"] = patches.seconds
    timings["encode"] = time.perf_counter() - t - (patches.seconds - patch_before)
    return per_window, final


def _record(stack, points, windows, per_window, final, invariance, r, settings, normalization,
            n_dropped, cfg, seed, timings, dist=None) -> RunRecord:
    """What goes into the result Dataset."""
    extra = {"n_dropped": int(n_dropped), "timings": timings,
             "n_train_points": _n_train_points(len(points), cfg, seed),
             "image_shape": list(stack.data.shape),
             "window_seconds": [res.seconds for res in per_window],
             # what was done to the input (e.g. colour -> grayscale), shown by the CLI
             "input_note": stack.metadata.get("converted", ""),
             "patch_size_reason": settings.get("patch_size_reason", ""),
             "windows_reason": settings.get("windows_reason", ""),
             # a baseline without the model, beside the recommended window (px; NaN if none)
             "spectral_period": spectral_baseline(stack.data)}
    if dist is not None:
        extra["world_size"] = int(dist.world_size)  # processes that trained it (torchrun)
    return RunRecord(windows, points, per_window, final, invariance=invariance, patch_size=r,
                     config=settings, normalization=normalization, pixel_size=stack.pixel_size,
                     unit=stack.unit, control=stack.control, control_name=stack.control_name,
                     grid_shape=grid_shape(settings["keypoints"], points), extra_attrs=extra)


# ----------------------------------------------------------------------------- helpers

def _spec(keypoints) -> str:
    return keypoints if isinstance(keypoints, str) else "array"


def _n_train_points(n, cfg, seed) -> int:
    """How many keypoints train_progressive trains on (its subset, or all of them)."""
    subset = training_subset(n, cfg.max_train_points, seed)
    return n if subset is None else len(subset)


def grid_shape(spec, points):
    """(ny, nx) of the keypoint grid when the keypoints are one full grid per frame."""
    if not (isinstance(spec, str) and spec.startswith("grid")):
        return None
    first = points[points[:, 0] == points[0, 0]]
    ny, nx = len(np.unique(first[:, 1])), len(np.unique(first[:, 2]))
    n_frames = len(np.unique(points[:, 0]))
    return (ny, nx) if ny * nx * n_frames == len(points) else None
