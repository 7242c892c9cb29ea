"""One call from an image (file, array or stack) to the SI-VAE result Dataset.

:func:`run` chains the steps of DESIGN.md: read -> keypoints -> patches -> progressive training ->
final encoding -> result (-> report). The command line is a thin layer over it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from ._atomic import atomic_write, check_writable, remove_leftovers
from .errors import ScaleVAEError
from .io import ImageStack, as_stack, read_image
from .keypoints import make_keypoints, select_inside
from .model import INVARIANCES, SIVAE
from .patches import check_windows_fit, extract_patches, fit_normalization, parse_windows
from .results import build_result, save_result
from .training import TrainConfig, encode, resolve_device, train_progressive, training_subset

RUN_FILES = ("config.json", "result.nc", "report.html", "input.npy", "checkpoints")


def run(images, windows=None, keypoints="grid:4", *, channel: str | None = None,
        pixel_size: float | None = None, unit: str | None = None, control=None,
        control_name: str | None = None, patch_size: int | None = None,
        invariance: str = "rotation", latent_dim: int = 2, epochs: int = 30,
        batch_size: int = 128, lr: float = 1e-3, seed: int = 0, device: str = "auto",
        padding: str | None = None, out=None, resume: bool = False, overwrite: bool = False,
        quiet: bool = False, report: bool = True, keypoint_options: dict | None = None,
        train_options: dict | None = None):
    """Run the SI-VAE on an image or image stack and return the result Dataset.

    Parameters
    ----------
    images : str, Path, numpy.ndarray or ImageStack
        A file (TIFF, NumPy, PNG, NSID HDF5, Igor .ibw, Gatan .dm3/.dm4), a 2-D image, a
        ``(frame, y, x)`` stack, or an :class:`~scalevae.io.ImageStack`.
    windows : str or sequence of int, optional
        Window sizes: ``"8:64:4"`` (px), ``"20nm:200nm:20nm"`` (needs a pixel size), or a list.
        Default: from 8 px to a quarter of the smaller frame side (at most 64), 12 steps at most.
    keypoints : str or array
        ``"grid:STEP"``, ``"atoms"`` / ``"atoms:SIZE"``, ``"sift"``, a CSV/NumPy file with
        ``frame,y,x``, or an ``(n, 3)`` array. Keypoints whose largest window does not fit inside
        the frame are dropped (and counted) unless ``padding`` is given.
    patch_size : int, optional
        Common size every window is resampled to; default the smallest window.
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
    resume : bool
        Continue the run in ``out`` from its last finished window.
    overwrite : bool
        Replace an earlier run in ``out``.
    quiet, report : bool
        No progress bar; write ``report.html`` into ``out``.
    keypoint_options : dict, optional
        Keyword arguments of the keypoint detector (e.g. ``{"threshold": 0.2}`` for atoms).
    train_options : dict, optional
        Further :class:`~scalevae.train.TrainConfig` fields, e.g. ``{"max_train_points": None}``
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
    stack = _as_image_stack(images, channel, pixel_size, unit, control, control_name)
    timings["read"] = time.perf_counter() - t

    if invariance not in INVARIANCES:
        raise ScaleVAEError(f"unknown invariance {invariance!r}; use one of {', '.join(INVARIANCES)}")
    if int(latent_dim) < 1:
        raise ScaleVAEError(f"latent dimension must be at least 1 (got {latent_dim})")
    frame_shape = stack.data.shape[1:]
    windows = _windows(windows, stack, frame_shape)
    if padding is None:
        check_windows_fit(windows, frame_shape)
    r = int(patch_size or windows[0])
    if r < 4:
        raise ScaleVAEError(f"patch size must be at least 4 px (got {r}"
                            f"{'' if patch_size else ', the smallest window'}); use windows of "
                            "at least 4 px, or give a larger --patch-size")
    if windows[-1] / r > 4:
        warnings.warn(f"the largest window ({windows[-1]} px) is shrunk {windows[-1] / r:.0f}-fold "
                      f"to the common patch size ({r} px): structure finer than about "
                      f"{windows[-1] / r:.0f} px is averaged away there; a larger patch_size "
                      "(--patch-size) keeps it", UserWarning, stacklevel=2)
    cfg = TrainConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                      **(train_options or {}))
    dev = resolve_device(device)

    t = time.perf_counter()
    spec = keypoints if isinstance(keypoints, str) else "array"
    points = make_keypoints(keypoints, stack.data, **(keypoint_options or {}))
    points, n_dropped = select_inside(points, frame_shape, windows[-1], padding=padding)
    timings["keypoints"] = time.perf_counter() - t

    normalization = fit_normalization(stack.data)
    config = {
        "input": stack.source, "channel": stack.channel, "windows": windows.tolist(),
        "keypoints": spec, "keypoint_options": keypoint_options or {}, "padding": padding,
        "n_keypoints": int(len(points)), "n_dropped": int(n_dropped), "patch_size": r,
        "invariance": invariance, "latent_dim": int(latent_dim), "seed": int(seed),
        "device": str(dev), "train": cfg.__dict__, "version": __version__,
    }
    fingerprint = _fingerprint(stack.data, points, config)
    config["fingerprint"] = fingerprint

    out = Path(out) if out is not None else None
    ckdir = None
    if out is not None:
        _prepare_out(out, fingerprint, resume, overwrite)
        ckdir = out / "checkpoints"
        ckdir.mkdir(exist_ok=True)
        # a killed run may have left half-written temporaries of its own files
        remove_leftovers(out, [n for n in RUN_FILES if "." in n])
        remove_leftovers(ckdir, ["window_*.pt"])
        _write_json(out / "config.json", config)
        atomic_write(out / "input.npy", lambda tmp: _save_npy(tmp, stack.data))

    patch_time = [0.0]
    # Keep each window's patches for the final encoding when they fit in a modest budget
    # (256 MiB): cutting them again costs as much as cutting them the first time.
    cache = {} if len(points) * r * r * 4 * len(windows) <= 256 * 2**20 else None

    def get_patches(w):
        if cache is not None and int(w) in cache:
            return cache[int(w)]
        t0 = time.perf_counter()
        p = extract_patches(stack.data, points, int(w), r, padding=padding,
                            normalization=normalization)
        patch_time[0] += time.perf_counter() - t0
        if cache is not None:
            cache[int(w)] = p
        return p

    torch.manual_seed(int(seed))
    model = SIVAE(r, int(latent_dim), invariance)
    t = time.perf_counter()
    with _Progress(windows, quiet) as progress, _cpu_threads(dev, r):
        model, per_window = train_progressive(windows, get_patches, model, cfg, seed=seed,
                                              device=dev, checkpoint_dir=ckdir,
                                              fingerprint=fingerprint, resume=resume,
                                              progress=progress)
        timings["train"] = time.perf_counter() - t - patch_time[0]

        t = time.perf_counter()
        patch_before = patch_time[0]
        final = []
        for w in windows:
            x = torch.from_numpy(get_patches(w)).to(dev)
            final.append(encode(model, x))
    del cache
    timings["patches"] = patch_time[0]
    timings["encode"] = time.perf_counter() - t - (patch_time[0] - patch_before)

    ds = build_result(
        windows, points, [res.instant for res in per_window], final,
        [res.losses for res in per_window], [res.kl for res in per_window],
        invariance=invariance, patch_size=r, config=config, normalization=normalization,
        pixel_size=stack.pixel_size, unit=stack.unit, control=stack.control,
        control_name=stack.control_name, grid_shape=_grid_shape(spec, points, stack),
        extra_attrs={"n_dropped": int(n_dropped), "timings": timings,
                     "n_train_points": _n_train_points(len(points), cfg, seed),
                     "image_shape": list(stack.data.shape),
                     "window_seconds": [res.seconds for res in per_window],
                     # what was done to the input (e.g. colour -> grayscale), shown by the CLI
                     "input_note": stack.metadata.get("converted", "")})
    capped = [int(res.window) for res in per_window if res.at_cap]
    # a netCDF attribute cannot be an empty list: JSON text, "[]" when every window converged
    ds.attrs["windows_at_epoch_cap"] = json.dumps(capped)
    if capped:
        warnings.warn(f"training of window(s) {', '.join(map(str, capped))} px ran all "
                      f"{cfg.epochs} epochs of the cap without converging; their latents may "
                      f"still change with more training (epochs={2 * cfg.epochs}, or "
                      f"--epochs {2 * cfg.epochs})", stacklevel=2)
    scales = _final_scales(ds)
    ds.attrs.update(_recommendation(scales))
    if out is not None:
        # saved before the report, so a failing report never costs the result; saved again
        # after it only to add the report's time to `timings` (a small file, atomic writes)
        save_result(ds, out / "result.nc")
        if report:
            from .report import write_report

            t = time.perf_counter()
            write_report(out, result=ds, scales={"final": scales} if scales is not None else None)
            timings["report"] = time.perf_counter() - t
            ds.attrs["timings"] = json.dumps(timings)
            save_result(ds, out / "result.nc")
        ds.attrs["run_dir"] = str(out)
    return ds


def _n_train_points(n, cfg, seed) -> int:
    """How many keypoints train_progressive trains on (its subset, or all of them)."""
    subset = training_subset(n, cfg.max_train_points, seed)
    return n if subset is None else len(subset)


def _final_scales(ds):
    """Length scales of the final state (None below 3 windows: too few to recommend one)."""
    if ds.sizes["window"] < 3:
        return None
    from .analysis import length_scales

    return length_scales(ds, state="final")


def _recommendation(scales) -> dict:
    """The recommended descriptor size, stored with the result for automated pipelines."""
    if scales is None:
        return {}
    # pipelines read the window; `recommended_window_significant` == 0 means no window
    # regrouped the keypoints above the posterior noise (weak evidence, see the note)
    return {"recommended_window": int(scales["recommended_window"]),
            # the windows the evidence allows (analysis.length_scales): how sharp the answer is
            "recommended_window_range": [int(scales["recommended_low"]),
                                         int(scales["recommended_high"])],
            "recommended_window_significant": int(bool(scales["significant"])),
            "recommended_window_rule": scales.attrs.get("rule", ""),
            "recommended_window_note": scales.attrs.get("note", "")}


def _as_image_stack(images, channel, pixel_size, unit, control, control_name) -> ImageStack:
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
        control = np.asarray(control)
        if control.shape != (stack.data.shape[0],):
            raise ScaleVAEError(f"control has {control.size} values but the stack has "
                                f"{stack.data.shape[0]} frames; give one value per frame")
        stack.control, stack.control_name = control, control_name
    return stack


def _windows(windows, stack, frame_shape) -> np.ndarray:
    if windows is None:
        top = max(8, min(64, min(frame_shape) // 4))
        step = max(2, int(np.ceil((top - 8) / 12 / 2)) * 2)
        windows = list(range(8, top + 1, step))
    return np.asarray(parse_windows(windows, stack.pixel_size, stack.unit), dtype=np.int64)


def _grid_shape(spec, points, stack):
    """(ny, nx) of the keypoint grid when the keypoints are one full grid per frame."""
    if not (isinstance(spec, str) and spec.startswith("grid")):
        return None
    first = points[points[:, 0] == points[0, 0]]
    ny, nx = len(np.unique(first[:, 1])), len(np.unique(first[:, 2]))
    n_frames = len(np.unique(points[:, 0]))
    return (ny, nx) if ny * nx * n_frames == len(points) else None


def _fingerprint(data, points, config) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(data).tobytes())
    h.update(np.ascontiguousarray(points).tobytes())
    keep = {k: v for k, v in config.items() if k not in ("device", "input")}
    h.update(json.dumps(keep, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _prepare_out(out: Path, fingerprint: str, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ScaleVAEError(f"--out {out} is a file; give a folder")
    check_writable(out)
    present = [p for p in out.iterdir() if not p.name.startswith(".")]
    if not present:
        return
    ours = (out / "config.json").exists()
    if not ours:
        raise ScaleVAEError(f"--out {out} is not empty and holds no scalevae run; choose a new "
                            "or empty folder so that nothing of yours is overwritten")
    try:
        old = json.loads((out / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ScaleVAEError(f"{out / 'config.json'} is damaged; choose another --out folder "
                            "or delete that run") from exc
    if resume:
        if old.get("fingerprint") != fingerprint:
            raise ScaleVAEError(f"--out {out} holds a run with other settings or input "
                                f"(windows {old.get('windows')}, keypoints {old.get('keypoints')}, "
                                f"seed {old.get('seed')}); resume with exactly the same options, "
                                "or choose another folder")
        return
    if not overwrite:
        raise ScaleVAEError(f"--out {out} already holds a scalevae run; add --resume to continue "
                            "it, --overwrite to replace it, or choose another folder")
    for name in RUN_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _write_json(path, obj):
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=str)))


def _save_npy(tmp, data):
    with open(tmp, "wb") as fh:
        np.save(fh, data)


@contextlib.contextmanager
def _cpu_threads(device, patch_size):
    """Train small patches on one CPU thread: the model is many tiny ops, and with two threads
    each op waits for the other thread (measured 1.3-5x slower per step at 8 px on 2 cores,
    the larger figure on a busy machine). Large patches keep torch's thread count."""
    before = torch.get_num_threads()
    if device.type == "cpu" and patch_size <= 16:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Progress:
    """A tqdm bar over windows showing window, epoch and loss; silent when ``quiet``."""

    def __init__(self, windows, quiet):
        self.windows, self.quiet, self.bar = windows, quiet, None

    def __enter__(self):
        if not self.quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.windows), unit="window", desc="SI-VAE")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def start_window(self, i, w):
        if self.bar is not None:
            self.bar.set_description(f"window {w} px")

    def epoch(self, i, w, epoch, loss):
        if self.bar is not None:
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}")

    def end_window(self, i, w):
        if self.bar is not None:
            self.bar.update(1)

    def skip_window(self, i, w):
        if self.bar is not None:
            self.bar.set_postfix_str(f"window {w} px loaded from checkpoint")
            self.bar.update(1)
