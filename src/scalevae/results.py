"""The result Dataset of a run (DESIGN.md, "What is stored"): build, save, load, validate.

The file is plain netCDF4/HDF5: ``xarray.open_dataset("result.nc")`` reads it without scalevae;
results too large for one file are a Zarr store, ``xarray.open_dataset("result.zarr",
engine="zarr")``.
Angles are in radians, shifts in pixels of the input image, windows in pixels.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xarray as xr

from . import __version__
from ._atomic import atomic_write_netcdf
from .errors import ScaleVAEError

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
        Window sizes in px, in training order.
    points : numpy.ndarray
        ``(n, 3)`` keypoints ``frame, y, x``.
    per_window : sequence
        One training result per window with ``instant`` (a dict from
        :func:`scalevae.training.encode`), ``losses`` (per epoch) and ``kl`` (per latent), e.g.
        :class:`scalevae.training.WindowResult`.
    final : sequence of dict
        Per window, the final model's encoding (``z_mean``, ``z_std`` (n, k), ``angle`` (n,),
        ``shift`` (n, 2) in patch half-widths).
    invariance, patch_size, config, normalization :
        The run's settings, stored as attributes.
    pixel_size, unit, control, control_name :
        The input's calibration and control values, if any.
    grid_shape : (int, int), optional
        ``(ny, nx)`` when the keypoints are one full grid per frame.
    extra_attrs : dict
        Further attributes (non-scalars are stored as JSON text).
    """

    windows: Sequence[int]
    points: np.ndarray
    per_window: Sequence[Any]
    final: Sequence[dict]
    invariance: str
    patch_size: int
    config: dict
    normalization: dict
    pixel_size: float | None = None
    unit: str | None = None
    control: np.ndarray | None = None
    control_name: str | None = None
    grid_shape: tuple[int, int] | None = None
    extra_attrs: dict = field(default_factory=dict)


def build_result(record: RunRecord) -> xr.Dataset:
    """Assemble the result Dataset (DESIGN.md, "What is stored") from a run's record.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> enc = {"z_mean": np.zeros((4, 2)), "z_std": np.ones((4, 2)), "angle": np.zeros(4)}
    >>> trained = SimpleNamespace(instant=enc, losses=[1.0, 0.5], kl=np.ones(2))
    >>> rec = RunRecord(windows=[8, 12], points=np.zeros((4, 3)), per_window=[trained] * 2,
    ...                 final=[enc, enc], invariance="rotation", patch_size=8, config={},
    ...                 normalization={})
    >>> dict(build_result(rec).z_mean.sizes)
    {'state': 2, 'window': 2, 'point': 4, 'latent': 2}
    """
    windows, points, final = record.windows, record.points, record.final
    instant = [res.instant for res in record.per_window]
    losses = [res.losses for res in record.per_window]
    kl = [res.kl for res in record.per_window]
    control, control_name = record.control, record.control_name
    windows = np.asarray(windows, dtype=np.int64)
    points = np.asarray(points, dtype=np.float64)
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
        "kl": (REQUIRED["kl"], np.stack(kl).astype(np.float64)),
    }
    if "angle" in instant[0]:
        data["angle"] = (("state", "window", "point"), stack("angle").astype(np.float32))
    if "shift" in instant[0]:
        # Half-widths of the common patch -> pixels of the input image, per window.
        half = (windows / 2.0)[None, :, None, None]
        data["shift"] = (("state", "window", "point", "axis"),
                         (stack("shift") * half).astype(np.float32))
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
    ds.attrs.update({
        "title": "scalevae SI-VAE result",
        "config": json.dumps(record.config, default=_json_default),
        "version": __version__,
        "invariance": record.invariance,
        "patch_size": int(record.patch_size),
        "normalization": json.dumps(record.normalization, default=_json_default),
        "pixel_size": float(record.pixel_size) if record.pixel_size is not None else np.nan,
        "unit": record.unit or "",
    })
    if record.grid_shape is not None:
        ds.attrs["grid_shape"] = np.asarray(record.grid_shape, dtype=np.int64)
    for key, value in record.extra_attrs.items():
        ds.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    return ds


# results above this many bytes are written as Zarr (a folder of chunks) instead of netCDF
ZARR_BYTES = 2 * 2**30
RESULT_FORMATS = ("auto", "netcdf", "zarr")


def result_format(ds: xr.Dataset, fmt: str = "auto") -> str:
    """``"netcdf"`` or ``"zarr"``: the format asked, or for ``"auto"`` Zarr above :data:`ZARR_BYTES`.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> result_format(make_fake_result()), result_format(make_fake_result(), "zarr")
    ('netcdf', 'zarr')
    """
    if fmt not in RESULT_FORMATS:
        raise ScaleVAEError(f"unknown result format {fmt!r}; use one of {', '.join(RESULT_FORMATS)}")
    if fmt == "auto":
        return "zarr" if ds.nbytes > ZARR_BYTES else "netcdf"
    return fmt


def save_result(ds: xr.Dataset, path) -> Path:
    """Write ``ds`` to ``path`` atomically: a crash never leaves a partial result.

    A path ending in ``.zarr`` is written as a Zarr store (a folder; ``xr.open_dataset(path,
    engine="zarr")`` reads it), anything else as netCDF4/HDF5.

    Examples
    --------
    >>> import tempfile, os
    >>> from scalevae.testing import make_fake_result
    >>> d = tempfile.mkdtemp()
    >>> for name in ("result.nc", "result.zarr"):
    ...     _ = save_result(make_fake_result(), os.path.join(d, name))
    >>> load_result(os.path.join(d, "result.zarr")).z_mean.dims
    ('state', 'window', 'point', 'latent')
    """
    path = Path(path)
    if path.suffix == ".zarr":
        return _save_zarr(ds, path)
    return atomic_write_netcdf(ds, path)  # built in memory: HDF5 never writes to disk


def _save_zarr(ds: xr.Dataset, path: Path) -> Path:
    """Write a Zarr store beside ``path`` and swap it in: readers see the old or the new store."""
    tmp = _zarr_temporary(path)
    try:
        # Zarr format 2: its string types and consolidated metadata are in the specification
        # (format 3 has neither yet), so any Zarr reader opens it
        ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _zarr_temporary(path: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename the finished store ``tmp`` to ``path``, replacing an older one."""
    old = None
    if path.exists():  # a folder cannot be replaced in one rename: move the old one aside
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# Sharded writing (a data-parallel run): rank 0 writes the Dataset with the final state left
# empty (NaN) to a temporary store whose point chunks are the ranks' shards, every rank writes
# its shard of the final state into its own chunks (no two ranks share a chunk), and rank 0
# adds the attributes that need all of it and swaps the store in.

def estimated_nbytes(n_points: int, n_windows: int, latent_dim: int) -> int:
    """Upper estimate of a result's size in bytes, before it exists (for ``result_format``)."""
    per_point = 2 * n_windows * (2 * latent_dim + 3) * 4 + 24  # both states; angle, shift
    return int(n_points) * per_point


def start_sharded_zarr(ds: xr.Dataset, path, chunk: int) -> Path:
    """Write ``ds`` to a temporary store beside ``path`` with its final state emptied and the
    point dimension in chunks of ``chunk``; returns the temporary's path."""
    path = Path(path)
    template = ds.copy()
    encoding = {}
    for name in _per_point(ds):
        values = template[name].values.copy()
        values[STATES.index("final")] = np.nan
        template[name] = (ds[name].dims, values, ds[name].attrs)
        encoding[name] = {"chunks": tuple(1 if d == "state" else min(chunk, ds.sizes[d])
                                          if d == "point" else ds.sizes[d] for d in ds[name].dims)}
    tmp = _zarr_temporary(path)
    try:
        template.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2, encoding=encoding)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def write_final_region(tmp, final: Sequence[dict], start: int, stop: int, like: xr.Dataset) -> None:
    """Write one shard (points ``start:stop``) of the final state into the store ``tmp``.

    ``final`` holds per window the final model's encoding of the shard (as for
    :class:`RunRecord`); ``like`` is the Dataset the store was started from (names, dims, the
    pixel scale of ``shift``)."""
    if stop <= start:
        return
    part = {}
    for name in _per_point(like):
        values = np.stack([f[name] for f in final])[None]
        if name == "shift":  # half-widths of the common patch -> pixels, as build_result does
            values = values * (like["window"].values / 2.0)[None, :, None, None]
        part[name] = (like[name].dims, values.astype(like[name].dtype))
    xr.Dataset(part).to_zarr(tmp, mode="r+", zarr_format=2,
                             region={"state": slice(1, 2), "point": slice(start, stop)})


def finish_sharded_zarr(tmp, path, attrs: dict) -> Path:
    """Add ``attrs`` to the store ``tmp`` and swap it in as ``path``."""
    tmp, path = Path(tmp), Path(path)
    try:
        set_zarr_attrs(tmp, attrs)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def set_zarr_attrs(path, attrs: dict) -> None:
    """Add or replace global attributes of the Zarr store ``path`` (and its consolidated
    metadata, which readers use)."""
    import zarr

    group = zarr.open_group(Path(path), mode="r+", zarr_format=2)
    group.attrs.update({k: _attr(v) for k, v in attrs.items()})
    zarr.consolidate_metadata(Path(path), zarr_format=2)


def _per_point(ds: xr.Dataset) -> list[str]:
    return [v for v in ds.data_vars if ds[v].dims[:1] == ("state",) and "point" in ds[v].dims]


def _attr(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


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
    """Check the names and dims of DESIGN.md; raise ScaleVAEError naming what is missing."""
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
