"""The latent space made visible: decoded latent grids, latent values mapped onto the keypoints,
PCA of the keypoints' latent trajectories, and per-frame statistics of a stack."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage

from ..errors import ScaleVAEError
from ._common import decode, point_coords, state_variable, state_z


# --------------------------------------------------------------------------- decoded grids


def latent_representation(model, extent, n=9):
    """Decode an ``n x n`` grid of latent points in one batched call (paper Fig. 3d-f).

    Parameters
    ----------
    model : object
        Anything with ``decode(z, angle=None, shift=None)`` returning ``(n, r, r)`` and a
        ``latent_dim`` attribute, e.g. ``scalevae.results.load_model(run_dir)``.
    extent : array_like
        ``[[z1_low, z1_high], [z2_low, z2_high], ...]``, e.g. from :func:`populated_extent`.
        Latents beyond the first two are held at 0, the prior's mean.
    n : int
        Grid points per latent axis.

    Returns
    -------
    patches : xarray.DataArray
        ``(z1_grid, z2_grid, py, px)`` (``(z1_grid, py, px)`` for a one-latent model), decoded
        with angle 0 and shift 0, i.e. in the model's canonical orientation.

    Examples
    --------
    >>> from scalevae.testing import FakeModel
    >>> latent_representation(FakeModel(), [[-2, 2], [-2, 2]], n=3).shape
    (3, 3, 8, 8)
    """
    k = int(getattr(model, "latent_dim", 2))
    extent = np.asarray(extent, float)
    m = min(k, 2)
    if extent.ndim != 2 or extent.shape[0] < m or extent.shape[1] != 2:
        raise ScaleVAEError(f"extent must be [[low, high]] per latent (at least {m} rows), "
                            f"got shape {extent.shape}")
    axes = [np.linspace(extent[i, 0], extent[i, 1], int(n)) for i in range(m)]
    mesh = np.meshgrid(*axes, indexing="ij")
    z = np.zeros((mesh[0].size, k), np.float32)
    for i in range(m):
        z[:, i] = mesh[i].ravel()
    patches = decode(model, z)
    r = patches.shape[-1]
    dims = tuple(f"z{i + 1}_grid" for i in range(m)) + ("py", "px")
    coords = {f"z{i + 1}_grid": a for i, a in enumerate(axes)}
    return xr.DataArray(patches.reshape(*([int(n)] * m), r, r), dims=dims, coords=coords,
                        name="decoded")


# --------------------------------------------------------------------------- latent images


def grid_layout(ds, tol=1e-6):
    """Where each keypoint sits on a regular grid, if the keypoints form one.

    A grid with holes (some points dropped) still counts, as long as at least half of its
    cells are filled and no cell holds two keypoints.

    Parameters
    ----------
    ds : xarray.Dataset
        Anything with the keypoints' ``y``, ``x`` (and optionally ``frame``) coordinates.
    tol : float
        Positions closer than this (px) count as the same grid line.

    Returns
    -------
    layout : tuple or None
        ``(frames, fi, iy, ix, uy, ux)``: the distinct frames, each point's index into them,
        its integer row and column on the grid, and the grid's y and x positions in px;
        None when the keypoints do not form a regular grid.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> frames, fi, iy, ix, uy, ux = grid_layout(make_fake_result(grid=(6, 7)))
    >>> len(uy), len(ux)
    (6, 7)
    """
    y, x = ds["y"].values.astype(float), ds["x"].values.astype(float)
    f = ds["frame"].values if "frame" in ds.coords else np.zeros(len(y), int)
    uy, ux = np.unique(np.round(y / tol) * tol), np.unique(np.round(x / tol) * tol)
    if len(uy) < 2 or len(ux) < 2:
        return None
    dy, dx = np.diff(uy), np.diff(ux)
    if np.ptp(dy) > 1e-3 * dy.mean() or np.ptp(dx) > 1e-3 * dx.mean():
        return None
    iy = np.rint((y - uy[0]) / dy.mean()).astype(int)
    ix = np.rint((x - ux[0]) / dx.mean()).astype(int)
    frames, fi = np.unique(f, return_inverse=True)
    cells = len(frames) * len(uy) * len(ux)
    flat = (fi * len(uy) + iy) * len(ux) + ix
    # A grid with holes (a few points dropped) is still a grid; one with duplicates is not.
    if len(np.unique(flat)) != len(flat) or len(flat) < 0.5 * cells:
        return None
    return frames, fi, iy, ix, uy, ux


def latent_images(ds, state="final", windows=None):
    """Latent values (and angle) of every keypoint, as images when the keypoints form a grid.

    Parameters
    ----------
    ds : xarray.Dataset
        Result Dataset.
    state : {"final", "instant"}
    windows : sequence of int, optional
        Windows to keep (px); all by default.

    Returns
    -------
    images : xarray.Dataset
        If the keypoints form a regular grid (``attrs["layout"] == "grid"``): ``z``
        ``(window, latent, gy, gx)`` and ``angle`` ``(window, gy, gx)`` with ``gy``/``gx`` the
        grid positions in px (a ``frame`` dimension after ``latent`` for stacks; holes are NaN).
        Otherwise (``"points"``): ``z`` ``(window, latent, point)`` and ``angle``
        ``(window, point)`` with the keypoints' ``frame``, ``y``, ``x`` coordinates.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> latent_images(make_fake_result(grid=(6, 7)))["z"].dims
    ('window', 'latent', 'gy', 'gx')
    """
    z = state_z(ds, state)
    ang = None
    if "angle" in ds:
        ang = state_variable(ds, "angle", state).transpose("window", "point")
    if windows is not None:
        z = z.sel(window=list(windows))
        ang = ang.sel(window=list(windows)) if ang is not None else None
    layout = grid_layout(ds)
    if layout is None:
        out = xr.Dataset({"z": z.transpose("window", "latent", "point")})
        if ang is not None:
            out["angle"] = ang
        out.attrs.update(layout="points", state=state)
        return out
    frames, fi, iy, ix, uy, ux = layout
    nw, nk = z.sizes["window"], z.sizes["latent"]
    img = np.full((nw, nk, len(frames), len(uy), len(ux)), np.nan, np.float32)
    img[:, :, fi, iy, ix] = z.values.transpose(0, 2, 1)
    coords = {"window": z["window"].values, "latent": z["latent"].values,
              "frame": frames, "gy": uy, "gx": ux}
    out = xr.Dataset({"z": (("window", "latent", "frame", "gy", "gx"), img)}, coords=coords)
    if ang is not None:
        a = np.full((nw, len(frames), len(uy), len(ux)), np.nan, np.float32)
        a[:, fi, iy, ix] = ang.values
        out["angle"] = (("window", "frame", "gy", "gx"), a)
    if len(frames) == 1:
        out = out.isel(frame=0, drop=True)
    out.attrs.update(layout="grid", state=state)
    return out


# --------------------------------------------------------------------------- trajectories


def trajectory_pca(ds, state="final", n_components=3):
    """PCA of every keypoint's latent trajectory over the windows (paper Fig. 6).

    Each keypoint is one sample ``[Z1(w1..wn), Z2(w1..wn), ...]``. Standardisation: each
    column is centred over the keypoints, and each latent is divided by its standard deviation
    pooled over all windows and keypoints, so every latent weighs the same while the shape of
    its change with the window is kept (per-column scaling would flatten that shape).

    Parameters
    ----------
    ds : xarray.Dataset
        Result Dataset.
    state : {"final", "instant"}
    n_components : int

    Returns
    -------
    pca : xarray.Dataset
        ``components`` (component, latent, window): the trajectory patterns, in standardised
        units; ``loadings`` (point, component): each keypoint's weight on each pattern (the
        paper's loading maps), with the keypoints' ``frame``, ``y``, ``x``;
        ``explained_variance_ratio`` (component); ``center`` (latent, window) and ``scale``
        (latent) used for standardising.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> trajectory_pca(make_fake_result())["loadings"].dims
    ('point', 'component')
    """
    from sklearn.decomposition import PCA

    z = state_z(ds, state).transpose("point", "latent", "window")
    v = z.values.astype(float)
    ok = np.isfinite(v).all(axis=(1, 2))
    if ok.sum() < 2:
        raise ScaleVAEError("trajectory PCA needs at least two keypoints with finite latents "
                            "in every window")
    center = v[ok].mean(0)
    scale = (v[ok] - center).std(axis=(0, 2))
    scale = np.where(scale > 0, scale, 1.0)
    x = ((v - center) / scale[None, :, None]).reshape(len(v), -1)
    nc = int(min(n_components, ok.sum(), x.shape[1]))
    pca = PCA(n_components=nc, svd_solver="full").fit(x[ok])
    load = np.full((len(v), nc), np.nan)
    load[ok] = pca.transform(x[ok])
    return xr.Dataset(
        {"components": (("component", "latent", "window"),
                        pca.components_.reshape(nc, z.sizes["latent"], z.sizes["window"])),
         "loadings": (("point", "component"), load),
         "explained_variance_ratio": ("component", pca.explained_variance_ratio_),
         "center": (("latent", "window"), center),
         "scale": ("latent", scale)},
        coords={"component": np.arange(1, nc + 1), "latent": z["latent"].values,
                "window": z["window"].values, **point_coords(ds)},
        attrs={"state": state})


# --------------------------------------------------------------------------- stacks


def stack_statistics(ds, state="final", smooth_sigma=None):
    """Mean and dispersion of each latent per (frame, window) (paper Figs. 7 and 10).

    Parameters
    ----------
    ds : xarray.Dataset
        Result Dataset of a stack (works for one frame too).
    state : {"final", "instant"}
    smooth_sigma : float or (float, float), optional
        Gaussian smoothing of the normalised maps, in (frames, windows) steps.

    Returns
    -------
    stats : xarray.Dataset
        ``mean`` and ``dispersion`` (standard deviation over the frame's keypoints), both
        (frame, window, latent), raw; ``mean_norm`` and ``dispersion_norm``: the same with each
        row (frame) normalised by subtracting its mean across windows, as in the paper, then
        smoothed if asked. Carries the ``control`` coordinate on ``frame`` when the result has it.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> s = stack_statistics(make_fake_result(n_frames=3))
    >>> bool(abs(s["mean_norm"].mean("window")).max() < 1e-6)
    True
    """
    z = state_z(ds, state)
    if "frame" not in z.coords:
        z = z.assign_coords(frame=("point", np.zeros(z.sizes["point"], int)))
    g = z.groupby("frame")
    mean = g.mean("point").transpose("frame", "window", "latent")
    disp = g.std("point").transpose("frame", "window", "latent")
    out = xr.Dataset({"mean": mean, "dispersion": disp})
    for name in ("mean", "dispersion"):
        norm = out[name] - out[name].mean("window")
        if smooth_sigma is not None:
            sig = np.broadcast_to(np.asarray(smooth_sigma, float), (2,))
            norm = norm.copy(data=ndimage.gaussian_filter(norm.values, (*sig, 0), mode="nearest"))
        out[f"{name}_norm"] = norm
    if "control" in ds.coords and ds["control"].dims == ("frame",):
        # control is indexed by frame position; keypoint frames are those positions.
        frames = out["frame"].values.astype(int)
        ctrl = ds["control"].values
        if frames.max() < len(ctrl):
            out = out.assign_coords(control=("frame", ctrl[frames]))
            out["control"].attrs.update(ds["control"].attrs)
    out.attrs.update(state=state, smooth_sigma=str(smooth_sigma))
    return out
