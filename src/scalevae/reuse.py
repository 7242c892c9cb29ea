"""Reuse a finished run: encode new images with its models, windows and normalisation.

:func:`load_run` opens a run folder as a :class:`Run`; :meth:`Run.encode` turns a new image
(file, array or stack) into a result Dataset of the same layout as the run's own: the final
model at every window (state ``final``) and each window's own model at its window (state
``instant``). :func:`apply` does the same and writes the result into a folder; ``scalevae
apply`` is a thin layer over it.

The windows are physical lengths: when the new image's pixel size differs from the run's, each
window is cut with ``round(window * run_pixel / new_pixel)`` px of the new image, resampled to the
run's patch size. The result's ``window`` coordinate stays the run's windows; the attribute
``window_px`` holds the windows in px of the new image.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

from ._names import renamed_keywords
from .errors import ScaleVAEError
from .io import ImageStack, as_stack
from .io.units import physical_pixel, physical_to_pixels
from .keypoints import make_keypoints, select_inside
from .patches import extract_patches
from .pipeline import grid_shape, read_input, recommendation, recommended_scales
from .spectrum import spectral_baseline
from .results import RunRecord, build_result, config_of, load_model, load_result, result_attrs
from .rundir import RunDir
from .training import encode, resolve_device

__all__ = ["Run", "load_run", "apply"]


class Run:
    """A finished run folder, opened for reuse (see :func:`load_run`).

    Attributes
    ----------
    path : Path
        The run folder.
    result : xarray.Dataset
        The run's own result.
    config : dict
        The run's configuration (``config`` attribute of the result).
    windows : ndarray of int
        The run's windows in px of its own input.
    patch_size : int
        Common size every window is resampled to.
    normalization : dict
        ``{"offset", "scale"}`` applied to every patch.
    pixel_size, unit : float or None, str or None
        The run input's physical pixel size (None when it had none).
    """

    def __init__(self, path, result: xr.Dataset):
        self.path = Path(path)
        self.result = result
        self.config = config_of(result)
        self.windows = np.asarray(result.window.values, dtype=np.int64)
        self.patch_size = int(result.attrs["patch_size"])
        self.normalization = json.loads(result.attrs["normalization"])
        self.pixel_size, self.unit = physical_pixel(result.attrs.get("pixel_size"),
                                                    result.attrs.get("unit"))
        self._models = {}

    def __repr__(self):
        size = f", pixel {self.pixel_size:g} {self.unit}" if self.pixel_size else ""
        return (f"<scalevae.Run {self.path} windows {self.windows.tolist()} px, "
                f"patch {self.patch_size} px{size}>")

    def model(self, window: int | None = None, device="cpu"):
        """The model saved after ``window`` (None: the final one), loaded once and kept."""
        key = (None if window is None else int(window), str(device))
        if key not in self._models:
            self._models[key] = load_model(self.path, window=window, device=device)
        return self._models[key]

    def input_stack(self) -> ImageStack:
        """The run's own input (``input.npy``) with the run's pixel size."""
        path = self.path / "input.npy"
        if not path.exists():
            raise ScaleVAEError(f"{path} is missing; the run folder is incomplete")
        return as_stack(np.load(path), pixel_size=self.pixel_size, unit=self.unit,
                        source=str(path))

    def window_px(self, pixel_size=None, unit=None) -> np.ndarray:
        """The run's windows in px of an image with this pixel size (same physical lengths).

        Examples
        --------
        >>> from scalevae.testing import make_fake_result
        >>> run = Run("run", make_fake_result(windows=[8, 16]).assign_attrs(
        ...     pixel_size=2.0, unit="nm"))
        >>> run.window_px(1.0, "nm").tolist(), run.window_px(4.0, "nm").tolist()
        ([16, 32], [4, 8])
        """
        new_size, new_unit = physical_pixel(pixel_size, unit)
        if self.pixel_size is None and new_size is None:
            return self.windows.copy()
        if self.pixel_size is None or new_size is None:
            known = "the run's input" if new_size is None else "the new image"
            other = "the new image" if new_size is None else "the run's input"
            raise ScaleVAEError(
                f"{known} has a physical pixel size but {other} has none, so the windows "
                f"cannot be matched; give the new image's pixel size (--pixel-size and --unit, "
                f"or pixel_size=, unit=)" + (" equal to the run's" if new_size is not None else
                                            f" ({self.pixel_size:g} {self.unit} per px in the run)"))
        ratio = physical_to_pixels(self.pixel_size, self.unit, new_size, new_unit)
        px = np.rint(self.windows * ratio).astype(np.int64)
        if px.min() < 2:
            raise ScaleVAEError(
                f"the new image's pixels ({new_size:g} {new_unit}) are too coarse for this run: "
                f"its smallest window ({self.windows[0]} px of {self.pixel_size:g} {self.unit}) "
                f"covers {self.windows[0] * ratio:.2g} px of it; use an image with finer pixels")
        return px

    @renamed_keywords(input="images", image="images", stack="images")
    def encode(self, images, keypoints=None, *, channel: str | None = None,
               pixel_size: float | None = None, unit: str | None = None,
               keypoint_options: dict | None = None, device: str = "auto") -> xr.Dataset:
        """Encode a new image with this run's models; a result Dataset of the run's layout.

        Parameters
        ----------
        images : str, Path, numpy.ndarray or ImageStack
            A file, a 2-D image, a ``(frame, y, x)`` stack or an ImageStack.
        keypoints : str or array, optional
            As in :func:`scalevae.run`. Default: the run's keypoint rule, its grid step or atom
            size scaled with the pixel size; required when the run's keypoints were an array.
        channel : str, optional
            Channel to read from a multi-channel file.
        pixel_size, unit : optional
            The new image's calibration (replaces the file's).
        keypoint_options : dict, optional
            Keyword arguments of the keypoint detector; default the run's when ``keypoints``
            is not given.
        device : {"auto", "cpu", "cuda"}
            ``auto``: CUDA when present, else the CPU.

        Returns
        -------
        xarray.Dataset
            ``z_mean``, ``z_std`` ``(state, window, point, latent)``, ``angle``, ``shift`` as in
            the run's result; ``loss`` and ``kl`` are the run's (the models' training record);
            attributes ``applied_from`` (the run folder) and ``window_px``.

        Examples
        --------
        >>> import tempfile, numpy as np, scalevae
        >>> img = np.random.default_rng(0).normal(size=(40, 40)).astype("float32")
        >>> done = scalevae.run(img, windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True,
        ...                     report=False, out=tempfile.mkdtemp())
        >>> run = scalevae.load_run(done.attrs["run_dir"])
        >>> ds = run.encode(np.rot90(img))
        >>> ds.z_mean.dims, ds.attrs["applied_from"] == str(run.path)
        (('state', 'window', 'point', 'latent'), True)
        """
        import torch

        stack = read_input(images, channel, pixel_size, unit)
        if keypoint_options is None and keypoints is None:
            keypoint_options = self.config.get("keypoint_options") or {}
        window_px = self.window_px(stack.pixel_size, stack.unit)
        padding = self.config.get("padding")
        frame_shape = stack.data.shape[1:]
        if padding is None and window_px.max() > min(frame_shape):
            raise ScaleVAEError(
                f"the run's largest window ({self.windows[-1]} px of the run's input) is "
                f"{window_px.max()} px in this image, larger than the image "
                f"({frame_shape[0]} x {frame_shape[1]} px); use a larger image or one with "
                "coarser pixels")
        spec = self._keypoint_spec(keypoints, window_px)
        points, n_dropped = select_inside(make_keypoints(spec, stack.data,
                                                         **(keypoint_options or {})),
                                          frame_shape, int(window_px.max()), padding=padding)

        dev = resolve_device(device)
        final_model = self.model(None, dev)
        r = self.patch_size
        instant, final = [], []
        for w_run, w in zip(self.windows, window_px):
            p = torch.from_numpy(extract_patches(stack.data, points, int(w), r, padding=padding,
                                                 normalization=self.normalization)).to(dev)
            instant.append(encode(self.model(int(w_run), dev), p))
            final.append(encode(final_model, p))
        return self._result(stack, points, n_dropped, spec, window_px, instant, final)

    def descriptors(self, window=None, points=None, kind="latents", **kw) -> xr.Dataset:
        """Latents and/or patches at one window (default: the recommended one); see
        :func:`scalevae.descriptors.descriptors`."""
        from .descriptors import descriptors

        return descriptors(self, window=window, points=points, kind=kind, **kw)

    # ------------------------------------------------------------------ helpers

    def _keypoint_spec(self, keypoints, window_px):
        """The user's keypoints, else the run's rule in px of the new image."""
        if keypoints is not None:
            return keypoints
        spec = self.config.get("keypoints")
        if not isinstance(spec, str) or spec == "array":
            raise ScaleVAEError("the run's keypoints were given as an array, so they cannot be "
                                "made again for a new image; give keypoints (--keypoints "
                                "grid:STEP, atoms, sift or a FILE.csv)")
        name, _, arg = spec.partition(":")
        ratio = window_px[-1] / self.windows[-1]
        if ratio != 1 and arg and name in ("grid", "atoms"):
            # the grid step and the atom size are lengths too: keep them physical
            value = float(arg) * ratio
            arg = str(max(1, int(round(value)))) if name == "grid" else f"{value:.4g}"
            spec = f"{name}:{arg}"
        return spec

    def _result(self, stack, points, n_dropped, spec, window_px, instant, final):
        run = self.result
        spec = spec if isinstance(spec, str) else "array"
        settings = dict(self.config, input=stack.source, channel=stack.channel, keypoints=spec,
                        n_keypoints=int(len(points)), n_dropped=int(n_dropped),
                        window_px=window_px.tolist(), applied_from=str(self.path))
        extra = {"applied_from": str(self.path), "window_px": window_px.tolist(),
                 "n_dropped": int(n_dropped), "image_shape": list(stack.data.shape),
                 "input_note": stack.metadata.get("converted", ""),
                 # the new image's own model-free baseline, in its px
                 "spectral_period": spectral_baseline(stack.data)}
        for key in ("n_train_points", "windows_at_epoch_cap"):
            if key in run.attrs:  # netCDF gives numpy scalars back
                value = run.attrs[key]
                extra[key] = value.item() if isinstance(value, np.generic) else value
        losses = [run.loss.sel(window=w).values for w in self.windows]
        ds = build_result(RunRecord(
            self.windows, points, instant, final,
            # loss has NaN after each window stopped: build_result pads the rows again
            losses=[v[np.isfinite(v)] for v in losses],
            kl=[run.kl.sel(window=w).values for w in self.windows],
            attrs=result_attrs(settings, run.attrs["invariance"], self.patch_size,
                               self.normalization, stack.pixel_size, stack.unit,
                               grid_shape(spec, points), **extra),
            # the patches were cut with window_px of the new image: shifts in its px
            window_px=window_px, control=stack.control, control_name=stack.control_name))
        ds.attrs.update(recommendation(recommended_scales(ds)))
        return ds


def load_run(run_dir) -> Run:
    """Open a finished run folder for reuse: its result, configuration and models.

    Parameters
    ----------
    run_dir : str or Path
        A folder written by :func:`scalevae.run` (``--out``): ``result.nc`` and
        ``checkpoints/``.

    Returns
    -------
    Run
        ``run.encode(image)`` encodes a new image; ``run.model(window)`` gives a model.

    Examples
    --------
    >>> import tempfile, numpy as np, scalevae
    >>> img = np.random.default_rng(0).normal(size=(40, 40)).astype("float32")
    >>> folder = tempfile.mkdtemp()
    >>> _ = scalevae.run(img, windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True,
    ...                  report=False, out=folder, overwrite=True)
    >>> run = scalevae.load_run(folder)
    >>> run.windows.tolist(), run.patch_size in (8, 12, 16)
    ([8, 12], True)
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ScaleVAEError(f"{path} is not a folder; give the --out folder of a finished run")
    if not any((path / "checkpoints").glob("window_*.pt")):
        raise ScaleVAEError(f"{path} holds no model checkpoints (checkpoints/window_*.pt); "
                            "give the --out folder of a finished `scalevae run`")
    return Run(path, load_result(path))


@renamed_keywords(input="images", image="images", stack="images")
def apply(run_dir, images, out=None, *, keypoints=None, channel: str | None = None,
          pixel_size: float | None = None, unit: str | None = None,
          keypoint_options: dict | None = None, device: str = "auto", overwrite: bool = False,
          report: bool = True, quiet: bool = False) -> xr.Dataset:
    """Encode a new image with a finished run and write the result into ``out``.

    Parameters
    ----------
    run_dir : str or Path
        The finished run (see :func:`load_run`).
    images, keypoints, channel, pixel_size, unit, keypoint_options, device :
        As in :meth:`Run.encode`.
    out : path, optional
        Folder for ``result.nc``, ``config.json`` (naming the source run), ``input.npy`` and
        ``report.html``; nothing is written without it.
    overwrite : bool
        Replace an earlier result in ``out``.
    report : bool
        Write ``report.html`` into ``out``.
    quiet : bool
        No progress lines while the report is written.

    Returns
    -------
    xarray.Dataset
        As :meth:`Run.encode`.

    Examples
    --------
    >>> import tempfile, numpy as np, scalevae
    >>> img = np.random.default_rng(0).normal(size=(40, 40)).astype("float32")
    >>> folder, new = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = scalevae.run(img, windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True,
    ...                  report=False, out=folder, overwrite=True)
    >>> ds = scalevae.apply(folder, img[::-1].copy(), out=new, report=False, overwrite=True)
    >>> sorted(p.name for p in Path(new).iterdir())
    ['config.json', 'input.npy', 'result.nc']
    """
    run = load_run(run_dir)
    target = None
    if out is not None:
        target = RunDir(out)
        if target.path.resolve() == run.path.resolve():
            raise ScaleVAEError(f"--out {out} is the run folder itself; give a new folder for "
                                "the applied result")
        # a folder of ours is replaced only with overwrite; anything else is refused
        target.prepare("apply", resume=False, overwrite=overwrite)
    t0 = time.perf_counter()
    stack = read_input(images, channel, pixel_size, unit)
    timings = {"read": time.perf_counter() - t0}
    t0 = time.perf_counter()
    ds = run.encode(stack, keypoints, keypoint_options=keypoint_options, device=device)
    timings["encode"] = time.perf_counter() - t0  # keypoints, patches and both states
    ds.attrs["timings"] = json.dumps(timings)  # seconds, as a run's result has them
    if target is not None:
        _write(target, ds, stack.data, report, quiet)
    return ds


def _write(target, ds, data, report, quiet):
    """config.json, input.npy, result.nc and the report, each written atomically."""
    target.write_config_and_input(json.loads(ds.attrs["config"]), data)
    target.save_result(ds)
    if report:
        from .report import write_report

        write_report(target.path, result=ds, quiet=quiet)
    ds.attrs["run_dir"] = str(target.path)
