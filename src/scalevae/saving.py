"""Saving a run: the result (one file, or a Zarr store written shard by shard by the ranks of
a data-parallel run), the recommended window stored with it, and the report.

:func:`scalevae.run` calls these as its last steps; :func:`recommended_scales` and
:func:`recommendation` also serve ``scalevae.apply``.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import xarray as xr

from .errors import ScaleVAEError
from .results import (ZARR_BYTES, build_result, estimated_nbytes, finish_sharded_zarr,
                      load_result, set_zarr_attrs, start_sharded_zarr, write_final_region)
from .rundir import RunDir
from .training.distributed import broadcast_error, shard_bounds, shard_size


def recommended_scales(ds):
    """Length scales of the state the recommendation reads (:data:`config.SCALES_STATE` for a
    new result); None below 3 windows: too few to recommend one."""
    if ds.sizes["window"] < 3:
        return None
    from .analysis import length_scales

    return length_scales(ds)  # the state: analysis._common.scales_state


def recommendation(scales) -> dict:
    """The recommended descriptor size and every length scale, stored with the result."""
    if scales is None:
        return {}
    rises = [{"onset": int(o), "middle": int(m), "end": int(e), "strength": round(float(s), 3)}
             for o, m, e, s in zip(scales["rise_onset"].values, scales["rise_middle"].values,
                                   scales["rise_end"].values, scales["rise_strength"].values)]
    from .analysis.recommend import recommendation_attrs

    # pipelines read the window and `recommended_window_conclusive` (from the bootstrap
    # distribution: analysis.recommend); `_significant`, `length_scales_still_rising` and
    # `length_scales_gradual` are superseded by it and kept for older readers
    return {**recommendation_attrs(scales),
            "recommended_window": int(scales["recommended_window"]),
            "recommended_window_state": str(scales.attrs.get("state", "final")),
            # = recommended_window_interval (superseded name): the windows holding 90 %
            "recommended_window_range": [int(scales["recommended_low"]),
                                         int(scales["recommended_high"])],
            "recommended_window_significant": int(bool(scales["significant"])),
            "recommended_window_conclusive": int(bool(scales["conclusive"])),
            "length_scales_still_rising": int(bool(scales["still_rising"])),
            # the recommended rise spans > 4x in window: no single size, range-dependent
            "length_scales_gradual": int(bool(scales["gradual"])),
            # every rise of the regrouping, strongest first (JSON text: netCDF-safe)
            "length_scales": json.dumps(rises),
            "recommended_window_rule": scales.attrs.get("rule", ""),
            "recommended_window_note": scales.attrs.get("note", "")}


def flag_epoch_cap(ds, per_window, cfg) -> None:
    """Name the windows that trained to the epoch cap, in the result and a warning."""
    capped = [int(res.window) for res in per_window if res.at_cap]
    # a netCDF attribute cannot be an empty list: JSON text, "[]" when every window converged
    ds.attrs["windows_at_epoch_cap"] = json.dumps(capped)
    if capped:
        warnings.warn(f"training of window(s) {', '.join(map(str, capped))} px ran all "
                      f"{cfg.epochs} epochs of the cap without converging; their latents may "
                      f"still change with more training (epochs={2 * cfg.epochs}, or "
                      f"--epochs {2 * cfg.epochs})", stacklevel=3)


def save(run_dir: RunDir, ds, report: bool, timings: dict, quiet: bool) -> None:
    """Save the result, write the report, and save again with the report's time."""
    # saved before the report, so a failing report never costs the result; saved again
    # after it only to add the report's time to `timings` (a small file, atomic writes)
    run_dir.save_result(ds)
    if report:
        write_report_timed(run_dir, ds, timings, quiet)
        run_dir.save_result(ds)
    ds.attrs["run_dir"] = str(run_dir.path)


def write_report_timed(run_dir: RunDir, ds, timings: dict, quiet: bool) -> None:
    """Write report.html and add its time to ``timings`` and ``ds.attrs["timings"]``."""
    from .report import write_report

    t = time.perf_counter()
    write_report(run_dir.path, result=ds, quiet=quiet)  # quiet: no progress lines
    timings["report"] = time.perf_counter() - t
    ds.attrs["timings"] = json.dumps(timings)


def writes_regions(run_dir, dist, n_points, n_windows, latent_dim) -> bool:
    """Whether each rank writes its shard of the final encoding into a Zarr result: a
    distributed run with ``--out`` whose result is (or, for ``auto``, will be) Zarr."""
    if dist is None or run_dir is None:
        return False
    if run_dir.result_format == "auto":
        return estimated_nbytes(n_points, n_windows, latent_dim) > ZARR_BYTES
    return run_dir.result_format == "zarr"


def save_by_regions(run_dir, record, final, per_window, cfg, dist, report, timings, quiet):
    """Write the result as a Zarr store in which each rank writes its own shard of the final
    encoding (``final``), then (rank 0) the recommendation and the report; every rank returns
    the saved result."""
    import torch.distributed as tdist

    n = len(record.points)
    path = run_dir.path / "result.zarr"
    box = [None, None]  # rank 0's error, the temporary store
    if dist.is_main:
        try:  # the final state of the record is a placeholder: the store holds NaN there
            chunk = shard_size(n, dist.world_size)
            box[1] = str(start_sharded_zarr(build_result(record), path, chunk))
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
            write_final_region(tmp, final, start, stop, like)
    except Exception as exc:  # noqa: BLE001 - any failure: every rank must hear of it
        error = f"rank {dist.rank} could not write points {start}-{stop} into {tmp} ({exc})"
    errors = [None] * dist.world_size
    tdist.all_gather_object(errors, error)  # also the barrier: every shard is written after it
    if any(errors):
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise ScaleVAEError("; ".join(e for e in errors if e) + "; rerun the same command with "
                            "--resume (the trained windows are kept)")
    message, ds = None, None
    if dist.is_main:
        try:
            with xr.open_zarr(tmp, consolidated=True) as stored:
                ds = stored.load()  # the whole result, as it will be saved
            flag_epoch_cap(ds, per_window, cfg)
            added = {"windows_at_epoch_cap": ds.attrs["windows_at_epoch_cap"],
                     **recommendation(recommended_scales(ds))}
            ds.attrs.update(added)
            finish_sharded_zarr(tmp, path, added)
            run_dir.result_format = "zarr"
            (run_dir.path / "result.nc").unlink(missing_ok=True)
            if report:
                write_report_timed(run_dir, ds, timings, quiet)
                set_zarr_attrs(path, {"timings": ds.attrs["timings"]})
        except (OSError, ValueError, ScaleVAEError) as exc:
            message = f"could not finish {path} ({exc}); rerun the same command with --resume"
    broadcast_error(message, dist)
    if ds is None:  # the other ranks read what rank 0 saved
        ds = load_result(path)
    ds.attrs["run_dir"] = str(run_dir.path)
    return ds
