"""The result Dataset of a run (docs/internals.md, "The result"): its schema, built, loaded,
validated.

The file is plain netCDF4/HDF5: ``xarray.open_dataset("result.nc")`` reads it without scalevae;
results too large for one file are a Zarr store, ``xarray.open_dataset("result.zarr",
engine="zarr")``. Writing them is :mod:`scalevae.store`'s (its functions are importable from
here too). Angles are in radians, shifts in pixels of the input image, windows in pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from . import __version__
from .errors import ScaleVAEError
# the writers moved to scalevae.store; importable from here as before
from .store import (RESULT_FORMATS, ZARR_BYTES, estimated_nbytes,  # noqa: F401
                    finish_sharded_zarr, result_format, save_result, set_zarr_attrs,
                    start_sharded_zarr, write_final_region)

STATES = ("instant", "final")
REQUIRED = {
    "z_mean": ("state", "window", "point", "latent"),
    "z_std": ("state", "window", "point", "latent"),
    "loss": ("window", "epoch"),
    "kl": ("window", "latent"),
}


@dataclass
class RunRecord:
    """Everything a run produced that goes into its result Dataset.

    Attributes
    ----------
    windows : sequence of int
        Window sizes in px, in training order (the ``window`` coordinate).
    points : numpy.ndarray
        ``(n, 3)`` keypoints ``frame, y, x``.
    instant, final : sequence of dict
        Per window, the encoding (:func:`scalevae.training.encode`: ``z_mean``, ``z_std``
        (n, k), ``angle`` (n,), ``shift`` (n, 2) in patch half-widths) by that window's own model
        and by the final model.
    losses : sequence of sequence of float
        Per window, the training loss per epoch run.
    kl : sequence of array
        Per window, the KL per latent at its end.
    attrs : dict
        The global attributes (:func:`result_attrs`).
    window_px : sequence of int, optional
        The windows in px of the image the patches were cut from, when it is not the
        ``windows`` (a run applied to an image of another pixel size): shifts are converted
        with these.
    control, control_name :
        Per-frame control values and what they are, if any.
    """

    windows: Sequence[int]
    points: np.ndarray
    instant: Sequence[dict]
    final: Sequence[dict]
    losses: Sequence[Sequence[float]]
    kl: Sequence[np.ndarray]
    attrs: dict = field(default_factory=dict)
    window_px: Sequence[int] | None = None
    control: np.ndarray | None = None
    control_name: str | None = None


def result_attrs(config: dict, invariance: str, patch_size: int, normalization: dict,
                 pixel_size=None, unit=None, grid_shape=None, **extra) -> dict:
    """The global attributes of a result: the schema's own, then ``extra`` (non-scalars as
    JSON text, which netCDF stores).

    Examples
    --------
    >>> a = result_attrs({}, "rotation", 8, {}, n_dropped=3, image_shape=[1, 40, 40])
    >>> a["patch_size"], a["image_shape"], a["unit"]
    (8, '[1, 40, 40]', '')
    """
    attrs = {
        "title": "scalevae SI-VAE result",
        "config": json.dumps(config, default=_json_default),
        "version": __version__,
        "invariance": invariance,
        "patch_size": int(patch_size),
        "normalization": json.dumps(normalization, default=_json_default),
        "pixel_size": float(pixel_size) if pixel_size is not None else np.nan,
        "unit": unit or "",
    }
    if grid_shape is not None:
        attrs["grid_shape"] = np.asarray(grid_shape, dtype=np.int64)
    for key, value in extra.items():
        attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    return attrs


def shift_to_px(shift, window_px):
    """Latent shifts in half-widths of the common patch -> px of the input image.

    ``shift`` is ``(..., window, point, axis)`` (the result's ``(state, window, point, axis)``
    or one state's ``(window, point, axis)``); ``window_px`` the windows in px of the image the
    patches were cut from. The one place this conversion is written.

    Examples
    --------
    >>> shift_to_px(np.ones((2, 1, 2)), [8, 16])[:, 0, 0].tolist()
    [4.0, 8.0]
    """
    half = np.asarray(window_px) / 2.0
    return np.asarray(shift) * half.reshape((-1,) + (1,) * 2)


def final_state_part(final: Sequence[dict], window_px) -> dict:
    """The final state's per-point variables, ``(window, point, ...)``, in the result's units:
    what a rank writes into its region of a sharded result
    (:func:`scalevae.store.write_final_region`)."""
    part = {key: np.stack([f[key] for f in final]) for key in final[0]}
    if "shift" in part:
        part["shift"] = shift_to_px(part["shift"], window_px)
    return part


def build_result(record: RunRecord) -> xr.Dataset:
    """Assemble the result Dataset (docs/internals.md, "The result") from a run's record.

    Examples
    --------
    >>> import numpy as np
    >>> enc = {"z_mean": np.zeros((4, 2)), "z_std": np.ones((4, 2)), "angle": np.zeros(4)}
    >>> rec = RunRecord(windows=[8, 12], points=np.zeros((4, 3)), instant=[enc, enc],
    ...                 final=[enc, enc], losses=[[1.0, 0.5]] * 2, kl=[np.ones(2)] * 2,
    ...                 attrs=result_attrs({}, "rotation", 8, {}))
    >>> dict(build_result(rec).z_mean.sizes)
    {'state': 2, 'window': 2, 'point': 4, 'latent': 2}
    """
    instant, final, losses = record.instant, record.final, record.losses
    control, control_name = record.control, record.control_name
    windows = np.asarray(record.windows, dtype=np.int64)
    window_px = windows if record.window_px is None else np.asarray(record.window_px)
    points = np.asarray(record.points, dtype=np.float64)
    k = instant[0]["z_mean"].shape[1]
    n_epoch = max(len(v) for v in losses)
    loss = np.full((len(windows), n_epoch), np.nan)
    for i, v in enumerate(losses):
        loss[i, :len(v)] = v

    def stack(key):
        return np.stack([np.stack([s[key] for s in state]) for state in (instant, final)])

    coords = {
        "state": list(STATES), "window": windows, "latent": [f"z{j + 1}" for j in range(k)],
        "epoch": np.arange(1, n_epoch + 1),
        "frame": ("point", points[:, 0].astype(np.int64)),
        "y": ("point", points[:, 1]), "x": ("point", points[:, 2]),
    }
    data = {
        "z_mean": (REQUIRED["z_mean"], stack("z_mean").astype(np.float32)),
        "z_std": (REQUIRED["z_std"], stack("z_std").astype(np.float32)),
        "loss": (REQUIRED["loss"], loss),
        "kl": (REQUIRED["kl"], np.stack(record.kl).astype(np.float64)),
    }
    if "angle" in instant[0]:
        data["angle"] = (("state", "window", "point"), stack("angle").astype(np.float32))
    if "shift" in instant[0]:
        data["shift"] = (("state", "window", "point", "axis"),
                         shift_to_px(stack("shift"), window_px).astype(np.float32))
        coords["axis"] = ["y", "x"]
    if control is not None:
        coords["control"] = ("frame", np.asarray(control))
    ds = xr.Dataset(data, coords=coords)
    ds["window"].attrs.update(units="px", long_name="window size")
    ds["y"].attrs.update(units="px")
    ds["x"].attrs.update(units="px")
    ds["z_mean"].attrs["long_name"] = "posterior mean of the invariant latents"
    ds["z_std"].attrs["long_name"] = "posterior standard deviation of the invariant latents"
    ds["loss"].attrs.update(long_name="training loss (negative ELBO per patch)", units="nats",
                            note="NaN after a window's training stopped (converged)")
    ds["kl"].attrs.update(long_name="KL divergence per latent at the end of the window",
                          units="nats", note="near 0 means that latent collapsed (carries nothing)")
    if "angle" in ds:
        ds["angle"].attrs.update(units="rad", long_name="latent rotation",
                                 note="counter-clockwise as displayed (row 0 at the top)")
    if "shift" in ds:
        ds["shift"].attrs.update(units="px", long_name="latent translation (dy, dx)")
    if control is not None and control_name:
        ds["control"].attrs["long_name"] = control_name
    ds.attrs.update(record.attrs)
    return ds


def load_result(path) -> xr.Dataset:
    """Open a run's result: ``path`` is ``result.nc``, ``result.zarr`` or the run folder holding one."""
    path = Path(path)
    if path.is_dir() and path.suffix != ".zarr":
        path = path / ("result.zarr" if (path / "result.zarr").exists() else "result.nc")
    if not path.exists():
        raise ScaleVAEError(f"no result at {path}; run `scalevae run ... --out FOLDER` first")
    try:
        engine = "zarr" if path.suffix == ".zarr" else "h5netcdf"
        with xr.open_dataset(path, engine=engine) as ds:
            ds = ds.load()
    except Exception as exc:  # noqa: BLE001
        raise ScaleVAEError(f"{path} is not a readable scalevae result ({exc}); if it is a "
                            "damaged run result, the same `scalevae run ... --resume` rewrites it "
                            "from the checkpoints") from exc
    validate_result(ds)
    return ds


def validate_result(ds: xr.Dataset) -> None:
    """Check the schema's names and dims (docs/internals.md, "The result"); raise ScaleVAEError
    naming what is missing."""
    for name, dims in REQUIRED.items():
        if name not in ds:
            raise ScaleVAEError(f"result lacks the variable {name!r}; not a scalevae result?")
        if tuple(ds[name].dims) != dims:
            raise ScaleVAEError(f"result variable {name!r} has dims {ds[name].dims}, expected {dims}")
    for name in ("window", "frame", "y", "x", "latent", "state"):
        if name not in ds.coords:
            raise ScaleVAEError(f"result lacks the coordinate {name!r}")
    for name in ("config", "patch_size", "normalization", "version"):
        if name not in ds.attrs:
            raise ScaleVAEError(f"result lacks the attribute {name!r}")


def config_of(ds: xr.Dataset) -> dict:
    """The run configuration stored in the result."""
    return json.loads(ds.attrs["config"])


def load_model(run_dir, window: int | None = None, device="cpu"):
    """The model saved after ``window`` (None: the final model, i.e. after the last window)."""
    from .training import load_checkpoint, model_from_checkpoint

    folder = Path(run_dir) / "checkpoints"
    files = sorted(folder.glob("window_*.pt"))
    if not files:
        raise ScaleVAEError(f"no checkpoints in {folder}; is {run_dir} a scalevae run folder?")
    if window is None:
        path = files[-1]
    else:
        path = folder / f"window_{int(window):04d}.pt"
        if not path.exists():
            have = [int(f.stem.split("_")[1]) for f in files]
            raise ScaleVAEError(f"no checkpoint for window {window} in {folder}; have {have}")
    return model_from_checkpoint(load_checkpoint(path), device)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
