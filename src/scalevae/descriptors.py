"""Descriptors from a finished run, for downstream learning (Gaussian processes, active learning).

:func:`descriptors` (and :meth:`scalevae.runs.Run.descriptors`) gives, at one window (the run's
recommended window by default), the invariant latents and/or the resampled, normalised patches
of the run's keypoints, of new positions on the run's input, or of positions on a new image, as
one labelled :class:`xarray.Dataset` with dims ``point``, ``latent`` (and ``py``, ``px`` for the
patches), coordinates ``frame``, ``y``, ``x`` on ``point``, and the window with its uncertainty
in the attributes. :func:`feature_matrix` turns it into the ``(n, d)`` array a regressor takes;
:func:`export` writes it to netCDF or ``.npz`` (``scalevae export``).

The run's own keypoints read the latents stored in the result; new positions are encoded with
the model of the chosen state (``instant``: the model saved after the window, the state the
recommendation reads; ``final``: the model after the last window), so a new position at a
keypoint gets the stored numbers again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import ScaleVAEError

KINDS = ("latents", "patches", "both")
EXPORT_SUFFIXES = (".nc", ".npz")
# attributes of the run's result that describe how sure the recommended window is, copied
# when present (the answer's work may add a probability per window; read, never required)
_UNCERTAINTY_ATTRS = ("recommended_window_range", "recommended_window_conclusive",
                      "recommended_window_significant", "recommended_window_state",
                      "recommended_window_note", "length_scales_gradual")


def descriptors(run, window=None, points=None, kind="latents", *, image=None, state=None,
                pixel_size=None, unit=None, channel=None, device="cpu") -> xr.Dataset:
    """Latents and/or patches of a finished run at one window, labelled per point.

    Parameters
    ----------
    run : Run or str or Path
        A :class:`scalevae.runs.Run` or a run folder.
    window : int, optional
        A window of the run, in px of the run's input. Default: the result's
        ``recommended_window``.
    points : array, optional
        ``(n, 2)`` ``y, x`` (frame 0) or ``(n, 3)`` ``frame, y, x`` in px. Default: the run's
        keypoints (without ``image``) or the run's keypoint rule on ``image`` (those whose window
        fits).
    kind : {"latents", "patches", "both"}
        ``latents``: ``z_mean``, ``z_std`` (point, latent) and ``angle`` (point) where the run is
        rotation-invariant; ``patches``: ``patch`` (point, py, px), normalised with the run's
        rule and resampled to its patch size, exactly what the model sees.
    image : array, str or Path, optional
        A new image (file, 2-D array or stack) to describe instead of the run's input.
    state : {"instant", "final"}, optional
        Which model's latents; default the state the recommendation was read from.
    pixel_size, unit, channel :
        The new image's calibration and channel (see :meth:`Run.encode`): the window keeps its
        physical length.
    device : str
        Device for encoding new positions.

    Returns
    -------
    xarray.Dataset
        Attributes ``window`` (px of the run), ``window_px`` (px of the image described),
        ``state``, ``patch_size``, ``run_dir``, ``recommended_window`` and its uncertainty as
        the run's result stores it (``recommended_window_range``, ``_conclusive``, ...).

    Examples
    --------
    >>> import tempfile, numpy as np, scalevae
    >>> img = np.random.default_rng(0).normal(size=(48, 48)).astype("float32")
    >>> folder = tempfile.mkdtemp()
    >>> _ = scalevae.run(img, windows=[8, 12, 16], keypoints="grid:8", epochs=1, quiet=True,
    ...                  report=False, out=folder, overwrite=True)
    >>> d = descriptors(folder, window=12, kind="both")
    >>> d.z_mean.dims, d.patch.dims, d.attrs["window"]
    (('point', 'latent'), ('point', 'py', 'px'), 12)
    """
    from .reuse import Run, load_run

    run = run if isinstance(run, Run) else load_run(run)
    if kind not in KINDS:
        raise ScaleVAEError(f"unknown descriptor kind {kind!r}; use one of {', '.join(KINDS)}")
    window = _window(run, window)
    state = _state(run, state)
    if image is None:
        stack = None
        window_px = window
    else:
        from .pipeline import read_input

        stack = read_input(image, channel, pixel_size, unit, None, None)
        window_px = int(run.window_px(stack.pixel_size, stack.unit)[
            int(np.flatnonzero(run.windows == window)[0])])
    own = points is None and stack is None
    if own:
        pts = np.column_stack([run.result.frame.values, run.result.y.values,
                               run.result.x.values]).astype(np.float64)
    else:
        pts = _points(run, stack, points, window_px)
    data = {}
    need_patches = kind != "latents" or not own
    if need_patches:
        source = run.input_stack().data if stack is None else stack.data
        from .patches import extract_patches

        patches = extract_patches(source, pts, window_px, run.patch_size,
                                  padding=run.config.get("padding"),
                                  normalization=run.normalization)
    if kind != "patches":
        enc = _stored(run, state, window) if own else _encode(run, state, window, patches,
                                                              device)
        data.update(_latent_vars(enc, run.result.latent.values))
    if kind != "latents":
        data["patch"] = (("point", "py", "px"), patches)
    ds = xr.Dataset(data, coords={"point": np.arange(len(pts)),
                                  "frame": ("point", pts[:, 0].astype(np.int64)),
                                  "y": ("point", pts[:, 1]), "x": ("point", pts[:, 2])})
    if kind != "patches":
        ds = ds.assign_coords(latent=run.result.latent.values)
    ds.attrs.update(_attrs(run, window, window_px, state, kind, stack))
    return ds


def feature_matrix(ds: xr.Dataset, kind: str = "latents") -> np.ndarray:
    """The ``(n, d)`` float64 array of a descriptor Dataset that a regressor takes.

    ``latents``: ``z_mean`` (the invariant latents; the angle is orientation, left out);
    ``patches``: the flattened patches; ``both``: side by side.

    Examples
    --------
    >>> ds = xr.Dataset({"z_mean": (("point", "latent"), np.ones((3, 2)))})
    >>> feature_matrix(ds).shape
    (3, 2)
    """
    parts = []
    if kind in ("latents", "both"):
        parts.append(ds["z_mean"].values.reshape(ds.sizes["point"], -1))
    if kind in ("patches", "both"):
        parts.append(ds["patch"].values.reshape(ds.sizes["point"], -1))
    if not parts or any(name not in ds for name in _needed(kind)):
        raise ScaleVAEError(f"the descriptors hold no {kind!r}; ask descriptors(..., "
                            f"kind={kind!r})")
    return np.concatenate(parts, axis=1).astype(np.float64)


def export(run, out, window=None, kind="latents") -> Path:
    """Write the descriptors of a run's keypoints to ``out`` (``.nc`` netCDF or ``.npz``).

    ``.npz`` holds one array per variable and coordinate plus ``attrs`` (JSON text).

    Examples
    --------
    >>> import tempfile, numpy as np, scalevae
    >>> img = np.random.default_rng(0).normal(size=(48, 48)).astype("float32")
    >>> folder = tempfile.mkdtemp()
    >>> _ = scalevae.run(img, windows=[8, 12, 16], keypoints="grid:8", epochs=1, quiet=True,
    ...                  report=False, out=folder, overwrite=True)
    >>> path = export(folder, folder + "/d.npz", window=8)
    >>> sorted(np.load(path).files)[:3]
    ['angle', 'attrs', 'frame']
    """
    out = Path(out)
    if out.suffix.lower() not in EXPORT_SUFFIXES:
        raise ScaleVAEError(f"cannot write descriptors to {out.name!r}; name the file .nc "
                            "(netCDF) or .npz (NumPy)")
    if not out.parent.is_dir():
        raise ScaleVAEError(f"the folder {out.parent} does not exist; create it first")
    ds = descriptors(run, window=window, kind=kind)
    from ._atomic import atomic_write

    def write(tmp):
        if out.suffix.lower() == ".nc":
            ds.to_netcdf(tmp, engine="h5netcdf")
        else:
            with open(tmp, "wb") as fh:
                np.savez(fh, attrs=json.dumps(ds.attrs), **{
                    name: ds[name].values for name in [*ds.data_vars, *ds.coords]})

    atomic_write(out, write)
    return out


# ----------------------------------------------------------------------------- helpers

def _needed(kind):
    return {"latents": ("z_mean",), "patches": ("patch",), "both": ("z_mean", "patch")}[kind]


def _window(run, window) -> int:
    """The window asked for, or the recommended one; it must be one of the run's."""
    if window is None:
        if "recommended_window" not in run.result.attrs:
            raise ScaleVAEError("the run stores no recommended window (fewer than 3 windows?); "
                                f"give one of its windows: window= one of "
                                f"{run.windows.tolist()} px")
        window = run.result.attrs["recommended_window"]
    try:
        w = int(window)
    except (TypeError, ValueError):
        raise ScaleVAEError(f"window must be a whole number of px, got {window!r}") from None
    if w not in run.windows:
        raise ScaleVAEError(f"window {window!r} px is not one of the run's windows "
                            f"({', '.join(map(str, run.windows.tolist()))} px); pick one")
    return w


def _state(run, state) -> str:
    state = state or str(run.result.attrs.get("recommended_window_state", "instant"))
    if state not in run.result.state.values:
        raise ScaleVAEError(f"unknown state {state!r}; use 'instant' or 'final'")
    return state


def _points(run, stack, points, window_px) -> np.ndarray:
    """New positions as checked (n, 3) keypoints; default the run's rule on the new image."""
    from .keypoints import check_points, make_keypoints, select_inside

    data = run.input_stack().data if stack is None else stack.data
    if points is None:
        spec = run._keypoint_spec(None, run.window_px(stack.pixel_size, stack.unit))
        pts = make_keypoints(spec, data, **(run.config.get("keypoint_options") or {}))
        return select_inside(pts, data.shape[1:], window_px, padding=run.config.get("padding"))[0]
    return check_points(points, data.shape[0], "points")


def _stored(run, state, window) -> dict:
    sel = run.result.sel(state=state, window=window)
    return {name: sel[name].values for name in ("z_mean", "z_std", "angle") if name in sel}


def _encode(run, state, window, patches, device) -> dict:
    import torch

    from .training import encode, resolve_device

    dev = resolve_device(device)
    model = run.model(window if state == "instant" else None, dev)
    enc = encode(model, torch.from_numpy(patches).to(dev))
    return {name: enc[name] for name in ("z_mean", "z_std", "angle") if name in enc}


def _latent_vars(enc, latents) -> dict:
    out = {"z_mean": (("point", "latent"), np.asarray(enc["z_mean"], np.float32)),
           "z_std": (("point", "latent"), np.asarray(enc["z_std"], np.float32))}
    if "angle" in enc:
        out["angle"] = (("point",), np.asarray(enc["angle"], np.float32))
    return out


def _attrs(run, window, window_px, state, kind, stack) -> dict:
    res = run.result.attrs
    attrs = {"window": int(window), "window_px": int(window_px), "state": state, "kind": kind,
             "patch_size": int(run.patch_size), "run_dir": str(run.path),
             "window_units": "px of the run's input (window_px: of the image described)"}
    if run.pixel_size is not None:
        attrs.update(pixel_size=float(run.pixel_size), unit=str(run.unit),
                     window_physical=float(window * run.pixel_size))
    if stack is not None:
        attrs["image"] = str(stack.source)
    if "recommended_window" in res:
        attrs["recommended_window"] = int(res["recommended_window"])
    for key in _UNCERTAINTY_ATTRS + tuple(k for k in res if "probab" in k):
        if key in res:
            value = res[key]
            attrs[key] = value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value
    for name in run.result.data_vars:
        # a probability per window, if the answer's analysis stored one as a variable
        if "probab" in name and run.result[name].dims == ("window",):
            attrs["window_probability"] = json.dumps(dict(zip(
                run.windows.tolist(), np.round(run.result[name].values, 4).tolist())))
    return attrs
