"""The layers of a run folder, as napari's reader contract wants them (LayerData tuples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def get_reader(path):
    """napari's reader hook: a reader for a scalevae run folder, None for anything else."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir() and (p / "result.nc").is_file():
        return _read
    return None


def _read(path):
    if isinstance(path, list):
        path = path[0]
    return run_layers(path)


def run_layers(run_dir, state: str = "final") -> list:
    """The layers of a run folder: input image, keypoints with latent features, latent maps.

    Parameters
    ----------
    run_dir : str or Path
        A folder holding ``result.nc`` (and ``input.npy`` for the image layer).
    state : {"final", "instant"}
        Which encoding the features and maps show.

    Returns
    -------
    list of (data, kwargs, layer_type)
        ``image`` ``input`` (frame, y, x); ``points`` ``keypoints`` (frame, y, x) whose
        features hold ``{latent}_w{window}`` (and ``angle_w{window}``) for every window; and per
        latent (and the angle) an ``image`` of shape (window, frame, y, x) when the keypoints
        are a grid, else a ``points`` layer with coordinates (window, frame, y, x) coloured by
        the value. The window axis comes first, so napari shows it as a slider.

    Examples
    --------
    >>> import tempfile
    >>> from scalevae.testing import make_fake_result
    >>> folder = Path(tempfile.mkdtemp())
    >>> make_fake_result(windows=[8, 12]).to_netcdf(folder / "result.nc", engine="h5netcdf")
    >>> [(kw["name"], kind) for _, kw, kind in run_layers(folder)][:3]
    [('keypoints', 'points'), ('z1 (final)', 'image'), ('z2 (final)', 'image')]
    """
    from ..results import load_result

    run_dir = Path(run_dir)
    ds = load_result(run_dir).sel(state=state)
    layers = []
    image = run_dir / "input.npy"
    if image.is_file():
        # mapped, not read: napari reads the frame it shows, so a stack larger than memory opens
        layers.append((np.load(image, mmap_mode="r"), {"name": "input", "colormap": "gray"},
                       "image"))
    coords = np.c_[ds.frame.values, ds.y.values, ds.x.values].astype(float)
    windows = ds.window.values.astype(int)
    values = {str(k): ds.z_mean.sel(latent=k).values for k in ds.latent.values}  # (window, point)
    if "angle" in ds:
        values["angle"] = ds.angle.values
    features = {f"{name}_w{w}": v[i] for name, v in values.items() for i, w in enumerate(windows)}
    features.update(frame=ds.frame.values, y=ds.y.values, x=ds.x.values)
    layers.append((coords, {"name": "keypoints", "features": features, "size": 2,
                            "face_color": "white", "metadata": {"windows": windows.tolist()}},
                   "points"))
    grid = _grid(coords)
    for name, v in values.items():
        cmap = "twilight" if name == "angle" else "viridis"
        meta = {"windows": windows.tolist(), "state": state, "run_dir": str(run_dir)}
        if grid is not None:
            index, shape, translate, scale = grid
            maps = np.full((len(windows),) + shape, np.nan, np.float32)
            maps[:, index[0], index[1], index[2]] = v
            layers.append((maps, {"name": f"{name} ({state})", "colormap": cmap,
                                  "translate": (0, 0) + translate, "scale": (1, 1) + scale,
                                  "metadata": meta}, "image"))
        else:
            n = len(coords)
            pts = np.c_[np.repeat(np.arange(len(windows)), n), np.tile(coords, (len(windows), 1))]
            layers.append((pts, {"name": f"{name} ({state})", "size": 3,
                                 "features": {"value": v.ravel()}, "face_color": "value",
                                 "face_colormap": cmap, "metadata": meta}, "points"))
    return layers


def _grid(coords):
    """(index, (frames, ny, nx), (y0, x0), (dy, dx)) when the keypoints lie on one regular grid."""
    frames = coords[:, 0].astype(int)
    ys, xs = np.unique(coords[:, 1]), np.unique(coords[:, 2])
    if len(ys) < 2 or len(xs) < 2:
        return None
    dy, dx = np.diff(ys), np.diff(xs)
    if not (np.allclose(dy, dy[0]) and np.allclose(dx, dx[0])):
        return None
    iy = np.rint((coords[:, 1] - ys[0]) / dy[0]).astype(int)
    ix = np.rint((coords[:, 2] - xs[0]) / dx[0]).astype(int)
    shape = (int(frames.max()) + 1, len(ys), len(xs))
    if len(set(zip(frames, iy, ix))) != len(coords):
        return None
    return (frames, iy, ix), shape, (float(ys[0]), float(xs[0])), (float(dy[0]), float(dx[0]))
