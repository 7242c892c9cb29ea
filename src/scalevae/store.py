"""Where a result is written: netCDF, a Zarr store, or a Zarr store written shard by shard.

:mod:`scalevae.results` says what a result holds (the schema); this module only writes
Datasets, atomically: a crash never leaves a partial result, readers see the old file or the
new one. It knows nothing of the schema beyond dimension names: the per-point variables of a
sharded write are those on ``(state, ..., point, ...)``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
import xarray as xr

from ._atomic import atomic_write_netcdf
from .errors import ScaleVAEError

__all__ = ["ZARR_BYTES", "RESULT_FORMATS", "result_format", "save_result", "estimated_nbytes",
           "start_sharded_zarr", "write_final_region", "finish_sharded_zarr", "set_zarr_attrs"]

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
    >>> from scalevae.results import load_result
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
        values[_final_index(ds)] = np.nan
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


def write_final_region(tmp, part: Mapping[str, np.ndarray], start: int, stop: int,
                       like: xr.Dataset) -> None:
    """Write one shard (points ``start:stop``) of the final state into the store ``tmp``.

    ``part`` maps each per-point variable to its values ``(window, point, ...)`` for the shard,
    in the units of the result (:func:`scalevae.results.final_state_part`); ``like`` is the
    Dataset the store was started from (names, dims, dtypes)."""
    if stop <= start:
        return
    final = _final_index(like)
    data = {name: (like[name].dims, np.asarray(part[name])[None].astype(like[name].dtype))
            for name in _per_point(like)}
    xr.Dataset(data).to_zarr(tmp, mode="r+", zarr_format=2,
                             region={"state": slice(final, final + 1),
                                     "point": slice(start, stop)})


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


def _final_index(ds: xr.Dataset) -> int:
    """Where the ``final`` state sits on the ``state`` dimension."""
    return list(ds["state"].values).index("final")


def _per_point(ds: xr.Dataset) -> list[str]:
    return [v for v in ds.data_vars if ds[v].dims[:1] == ("state",) and "point" in ds[v].dims]


def _attr(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value




def write_sharded(path, ds: xr.Dataset, part: Mapping[str, np.ndarray], dist, finish) -> xr.Dataset:
    """Write ``ds`` as the Zarr store ``path``, each rank of the torchrun run ``dist`` writing
    its own shard ``part`` of the final state (:func:`write_final_region`); rank 0 then adds
    the attributes ``finish(ds)`` returns (it receives the stored result opened lazily, so
    that only what it reads is loaded) and swaps the store in. Every rank returns the saved
    result, opened lazily; any rank's failure is raised on all."""
    import torch.distributed as tdist

    from .training.distributed import broadcast_error, shard_bounds, shard_size

    path = Path(path)
    n = ds.sizes["point"]
    box = [None, None]  # rank 0's error, the temporary store
    if dist.is_main:
        try:  # the final state of `ds` is a placeholder: the store holds NaN there
            box[1] = str(start_sharded_zarr(ds, path, shard_size(n, dist.world_size)))
        except (OSError, ValueError) as exc:
            box[0] = f"could not write {path} ({exc}); check the disk space and permissions"
    tdist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise ScaleVAEError(box[0])
    tmp = Path(box[1])
    start, stop = shard_bounds(n, dist.world_size, dist.rank)
    error = ""
    try:
        with xr.open_zarr(tmp, consolidated=True) as like:
            write_final_region(tmp, part, start, stop, like)
    except Exception as exc:  # noqa: BLE001 - any failure: every rank must hear of it
        error = f"rank {dist.rank} could not write points {start}-{stop} into {tmp} ({exc})"
    errors = [None] * dist.world_size
    tdist.all_gather_object(errors, error)  # also the barrier: every shard is written after it
    if any(errors):
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise ScaleVAEError("; ".join(e for e in errors if e) + "; rerun the same command with "
                            "--resume (the trained windows are kept)")
    message = None
    if dist.is_main:
        try:
            # opened lazily: `finish` reads what it needs (the state the recommendation reads,
            # a few subsets of it), never the whole result at once
            with xr.open_dataset(tmp, engine="zarr", consolidated=True) as stored:
                attrs = finish(stored)
            finish_sharded_zarr(tmp, path, attrs)
        except (OSError, ValueError, ScaleVAEError) as exc:
            message = f"could not finish {path} ({exc}); rerun the same command with --resume"
    broadcast_error(message, dist)
    # every rank returns the saved result opened lazily (loaded as it is read)
    return xr.open_dataset(path, engine="zarr", consolidated=True)
