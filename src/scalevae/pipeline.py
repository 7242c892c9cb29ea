"""A run, executed: read -> plan -> patches -> train -> encode -> result -> save once -> report.

:func:`read_input` turns what the user gave into an :class:`~scalevae.io.ImageStack`;
:func:`scalevae.plan.make_plan` decides everything; :func:`execute` carries a plan out.
:func:`scalevae.run` (a new run) and :mod:`scalevae.reuse` (a finished run applied to a new
image) are two siblings over these steps; the command line sits above both.

The result is written once, before the report, so that a failing report never costs the
result; the report's own time is added to the returned Dataset's ``timings`` only.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import config
from .answer import (answer_evidence, flag_epoch_cap, pool_repeats,  # noqa: F401
                     recommendation, recommended_scales, start_repeats)
from .errors import ScaleVAEError
from .io import ImageStack, as_stack, read_image
from .model import SIVAE
from .patches import extract_patches
from .plan import Plan
from .results import RESULT_FORMATS, ZARR_BYTES, RunRecord, build_result, estimated_nbytes
from .results import final_state_part, result_attrs
from .rundir import RunDir
from .store import write_sharded
from .training import (Progress, cpu_threads, encode, encode_in_blocks, encode_sharded,
                       train_progressive, training_subset)
from .training.distributed import broadcast_error

__all__ = ["read_input", "execute", "prepare_run_dir", "PatchSource", "new_model",
           "recommendation", "recommended_scales", "grid_shape"]

# Keep each window's patches for the final encoding when they fit in this budget: cutting them
# again costs as much as cutting them the first time.
PATCH_CACHE_BYTES = 256 * 2**20


def read_input(images, channel=None, pixel_size=None, unit=None, control=None,
               control_name=None) -> ImageStack:
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
                          f"({file_size:.6g} {file_unit})", UserWarning, stacklevel=4)
    if control is not None and stack.control is None:
        stack = as_stack(stack, control=control, control_name=control_name)  # checks the values
    return stack


def prepare_run_dir(out, stack: ImageStack, plan: Plan, resume=False, overwrite=False,
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
    message = None
    if plan.dist is None or plan.dist.is_main:
        try:
            run_dir.prepare(plan.fingerprint, resume, overwrite)
            run_dir.write_inputs(plan.settings, stack.data)
        except ScaleVAEError as exc:
            if plan.dist is None:
                raise
            message = str(exc)
    if plan.dist is not None:
        broadcast_error(message, plan.dist)  # also the barrier: the folder is ready after it
    return run_dir


def execute(plan: Plan, stack: ImageStack, run_dir: RunDir | None = None, *, resume=False,
            quiet=False, report=True, timings: dict | None = None, repeats: int = 1,
            threads: int | None = None):
    """Carry out ``plan`` on ``stack``: train, encode, build the result, save it into
    ``run_dir`` (once) and write the report; the result Dataset. ``repeats`` > 1 trains that
    many models on the same patches side by side and pools their recommendation
    (:func:`start_repeats`, :func:`pool_repeats`); ``threads``: the CPU threads training
    may use (default one per model: :func:`training_threads`), shared out among the repeats."""
    repeats = int(repeats)
    if repeats < 1:
        raise ScaleVAEError(f"repeats must be at least 1 (got {repeats})")
    if repeats > 1 and (plan.dist is not None or _writes_regions(run_dir, plan)):
        raise ScaleVAEError("repeats > 1 is for one process with a netCDF result; under "
                            "torchrun run each seed as its own job")
    threads = training_threads(threads, repeats)
    timings = {} if timings is None else timings
    timings.update(plan.seconds)
    dist = plan.dist
    by_regions = _writes_regions(run_dir, plan)
    patches = PatchSource(stack, plan)
    # not under torchrun: a fork of a process in a process group would copy its connections
    reporter = _start_report_worker() if report and run_dir is not None and dist is None else None
    t = time.perf_counter()
    others = start_repeats(plan, patches, run_dir, resume, repeats, threads)
    timings["start_repeats"] = time.perf_counter() - t
    try:
        trained, final = _train_then_encode(plan, patches, run_dir, resume, quiet, timings,
                                            by_regions, threads)
        instant = [res.instant for res in trained]
        # by_regions: `final` is this rank's shard, written into the store and never gathered;
        # the record's final state is a placeholder the store leaves empty
        record = RunRecord(plan.windows, plan.points, instant,
                           instant if by_regions else final,
                           [res.losses for res in trained], [res.kl for res in trained],
                           attrs=_run_attrs(stack, plan, trained, timings, threads),
                           control=stack.control, control_name=stack.control_name)
        ds = build_result(record)
        if reporter is not None and not by_regions:
            reporter.prepare(ds)  # the report's own computing starts beside the recommending
        if by_regions:
            ds = write_sharded(run_dir.path / "result.zarr", ds,
                               final_state_part(final, plan.windows), dist,
                               lambda stored: _finish(stored, trained, plan.train))
            run_dir.result_format = "zarr"
            if dist.is_main:
                (run_dir.path / "result.nc").unlink(missing_ok=True)
        else:
            # model 0's regrouping evidence (both states) serves its own answer and the pooled
            evidence = answer_evidence(ds) if others is not None else (None, None)
            _finish(ds, trained, plan.train, *evidence)
            if others is not None:
                pool_repeats(ds, plan, stack, others, quiet, timings, *evidence)
            if run_dir is not None and (dist is None or dist.is_main):
                run_dir.save_result(ds)
    except BaseException:
        if others is not None:  # the other models stop too; their finished windows are saved
            others.cancel()
        if reporter is not None:
            reporter.close()
        raise
    if run_dir is not None:
        if report and (dist is None or dist.is_main):
            write_report_timed(run_dir, ds, timings, quiet, reporter)
        ds.attrs["run_dir"] = str(run_dir.path)
    return ds


def training_threads(threads: int | None, repeats: int = 1) -> int:
    """CPU threads each model trains with: one by default (:data:`config.TRAIN_THREADS`);
    ``threads`` given, that budget shared out among ``repeats`` models trained side by side,
    at least one each.

    Examples
    --------
    >>> training_threads(None), training_threads(None, repeats=3)
    (1, 1)
    >>> training_threads(4, repeats=2), training_threads(2, repeats=3)
    (2, 1)
    """
    if threads is None:
        return config.TRAIN_THREADS
    if int(threads) < 1:
        raise ScaleVAEError(f"threads must be at least 1 (got {threads})")
    return max(1, int(threads) // int(repeats))


def _start_report_worker():
    """The process that imports the report's libraries while the run trains and then writes
    the report (:mod:`scalevae.report.background`); None where it is not forked."""
    from .report.background import start_report_worker

    return start_report_worker()


class PatchSource:
    """``patches(window)``: the normalised patches of every keypoint, kept for the final encoding
    when they fit in :data:`PATCH_CACHE_BYTES`; ``patches(window, index)`` those of the
    keypoints ``index`` (a slice or an index array); ``seconds`` is the time spent cutting them.

    When all windows' patches would not fit, the source is ``streaming``: training cuts its
    subset, and encoding cuts the keypoints block by block (training.progressive)."""

    def __init__(self, stack: ImageStack, plan: Plan):
        self.stack, self.points, self.r = stack, plan.points, plan.patch_size
        self.padding, self.normalization = plan.padding, plan.normalization
        self.n_points = len(plan.points)
        self.cache_bytes = PATCH_CACHE_BYTES  # read at run time: a test or benchmark sets it
        self.streaming = self.n_points * self.r ** 2 * 4 * len(plan.windows) > self.cache_bytes
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


def new_model(plan: Plan) -> SIVAE:
    """The untrained model, its initial weights drawn from a generator seeded with
    ``plan.seed`` (the numbers ``torch.manual_seed(seed)`` gave, without touching the global
    random state)."""
    with torch.random.fork_rng(devices=[]):  # the layers' own initialisation draws globally
        model = SIVAE(plan.patch_size, plan.latent_dim, plan.invariance)
    generator = torch.Generator().manual_seed(plan.seed)
    for layer in model.modules():  # in construction order: the order they drew in
        if isinstance(layer, torch.nn.Linear):
            # torch.nn.Linear.reset_parameters, with our generator
            torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0
                torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return model


def _train_then_encode(plan, patches, run_dir, resume, quiet, timings, by_regions, threads):
    """Train through the windows, then encode every window with the final model (with
    ``by_regions``, this rank's shard of the keypoints only)."""
    dist = plan.dist
    try:
        return _trained_and_encoded(plan, patches, run_dir, resume,
                                    quiet or (dist is not None and not dist.is_main), timings,
                                    by_regions, threads)
    except RuntimeError as exc:  # gloo/NCCL: a peer process died or hung up
        if dist is None:
            raise
        raise ScaleVAEError(
            f"rank {dist.rank} of {dist.world_size} lost the other processes of the "
            f"distributed run ({str(exc).splitlines()[0][:120]}); one of them stopped. "
            "Finished windows are saved in --out: rerun the same command with --resume "
            "to continue") from exc


def _trained_and_encoded(plan, patches, run_dir, resume, quiet, timings, by_regions, threads):
    dev, dist, windows = plan.train_device, plan.dist, plan.windows
    t = time.perf_counter()
    with Progress(windows, quiet) as progress, cpu_threads(dev, threads):
        model, trained = train_progressive(
            windows, patches, new_model(plan), plan.train, seed=plan.seed, device=dev,
            checkpoint_dir=run_dir.checkpoints if run_dir is not None else None,
            fingerprint=plan.fingerprint, resume=resume, progress=progress, dist=dist)
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
    return trained, final


def _run_attrs(stack, plan, trained, timings, threads) -> dict:
    """The result's attributes for a new run."""
    extra = {"n_dropped": plan.n_dropped, "timings": timings,
             # CPU threads per model: float sums (and so the last digits) follow this count
             "train_threads": int(threads) if plan.train_device.type == "cpu" else 0,
             "n_train_points": _n_train_points(len(plan.points), plan.train, plan.seed),
             "image_shape": list(stack.data.shape),
             "window_seconds": [res.seconds for res in trained],
             # what was done to the input (e.g. colour -> grayscale), shown by the CLI
             "input_note": stack.metadata.get("converted", ""),
             "patch_size_reason": plan.patch_size_reason,
             "windows_reason": plan.windows_reason,
             # a baseline without the model, beside the recommended window (px; NaN if none)
             "spectral_period": plan.spectral_period,
             # what the keypoint detector measured (atoms: the lattice, the masked share)
             **plan.keypoint_details}
    if plan.dist is not None:
        extra["world_size"] = int(plan.dist.world_size)  # processes that trained it (torchrun)
    return result_attrs(plan.settings, plan.invariance, plan.patch_size, plan.normalization,
                        stack.pixel_size, stack.unit, grid_shape(plan.keypoints, plan.points),
                        **extra)


def _finish(ds, trained, cfg, evidence=None, check=None) -> dict:
    """Add what needs the whole result: the windows at the epoch cap and the recommendation
    (from ``evidence`` and ``check``, the regrouping evidence of both states, when computed
    already); the attributes added."""
    flag_epoch_cap(ds, trained, cfg)
    added = {"windows_at_epoch_cap": ds.attrs["windows_at_epoch_cap"],
             **recommendation(recommended_scales(ds, evidence, check))}
    ds.attrs.update(added)
    return added


def _writes_regions(run_dir, plan) -> bool:
    """Whether each rank writes its shard of the final encoding into a Zarr result: a
    distributed run with ``--out`` whose result is (or, for ``auto``, will be) Zarr."""
    if plan.dist is None or run_dir is None:
        return False
    if run_dir.result_format == "auto":
        return estimated_nbytes(len(plan.points), len(plan.windows),
                                plan.latent_dim) > ZARR_BYTES
    return run_dir.result_format == "zarr"


def write_report_timed(run_dir: RunDir, ds, timings: dict, quiet: bool,
                       reporter=None) -> None:
    """Write report.html and add its time to ``timings`` and ``ds.attrs["timings"]`` (the
    returned Dataset's; the saved file keeps the times before it); by ``reporter`` (a
    :class:`scalevae.report.background.ReportWorker` started with the run) when given."""
    t = time.perf_counter()
    if reporter is not None:
        reporter.write(run_dir.path, ds, quiet=quiet)
    else:
        from .report import write_report

        write_report(run_dir.path, result=ds, quiet=quiet)  # quiet: no progress lines
    timings["report"] = time.perf_counter() - t
    ds.attrs["timings"] = json.dumps(timings)


# ----------------------------------------------------------------------------- helpers

def _n_train_points(n, cfg, seed) -> int:
    """How many keypoints train_progressive trains on (its subset, or all of them)."""
    subset = training_subset(n, cfg.max_train_points, seed)
    return n if subset is None else len(subset)


def grid_shape(spec, points):
    """(ny, nx) of the keypoint grid when the keypoints are one full grid per frame.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:8:4, 0:12:4]
    >>> pts = np.column_stack([np.zeros(6), yy.ravel(), xx.ravel()])
    >>> grid_shape("grid:4", pts), grid_shape("atoms", pts)
    ((2, 3), None)
    """
    if not (isinstance(spec, str) and spec.startswith("grid")):
        return None
    first = points[points[:, 0] == points[0, 0]]
    ny, nx = len(np.unique(first[:, 1])), len(np.unique(first[:, 2]))
    n_frames = len(np.unique(points[:, 0]))
    return (ny, nx) if ny * nx * n_frames == len(points) else None
