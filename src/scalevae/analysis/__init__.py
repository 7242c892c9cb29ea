"""Analyses of a run's latent space across windows (the paper's Figs. 3-7 and 10).

Every function takes the result Dataset (``scalevae.results``; names in DESIGN.md) or the output
of another function here, and returns an ``xarray`` Dataset or DataArray. Nothing here plots.

- :func:`latent_density`: kernel density of ``(z1, z2)`` per window on one shared grid.
- :func:`populated_extent`, :func:`latent_representation`: decode an n x n grid of latent points.
- :func:`latent_images`: latent values mapped back onto the keypoints.
- :func:`kde_pca`: PCA of the densities across windows.
- :func:`trajectory_pca`: PCA of every keypoint's latent trajectory over the windows.
- :func:`stack_statistics`: mean and dispersion of each latent per (frame, window).
- :func:`length_scales`: where the latent structure changes most, and a recommended window.
- :func:`kde_peaks`, :func:`outlier_scores`: candidate structural elements and unusual keypoints.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage, signal, stats

from ..errors import ScaleVAEError

__all__ = [
    "latent_density",
    "populated_extent",
    "latent_representation",
    "latent_images",
    "kde_pca",
    "trajectory_pca",
    "stack_statistics",
    "length_scales",
    "kde_peaks",
    "outlier_scores",
]

# Above this many keypoints the kernel density is fitted on a fixed random subset: the density
# of 20,000 points is indistinguishable from that of more, and the cost stays bounded.
_MAX_KDE_POINTS = 20000


# --------------------------------------------------------------------------- helpers


def _state_z(ds, state):
    """``z_mean`` of one state as (window, point, latent), with a helpful error."""
    if "z_mean" not in ds:
        raise ScaleVAEError("the result has no 'z_mean' variable; pass a result Dataset "
                            "from scalevae.run or scalevae.results.load_result")
    states = [str(s) for s in ds["state"].values] if "state" in ds.coords else []
    if "state" in ds["z_mean"].dims:
        if state not in states:
            raise ScaleVAEError(f"state {state!r} is not in the result; choose one of {states}")
        z = ds["z_mean"].sel(state=state)
    else:
        z = ds["z_mean"]
    return z.transpose("window", "point", "latent")


def _kde_axes(ds_or_z):
    """Names of the latents the densities use: the first two (or the only one)."""
    names = [str(v) for v in ds_or_z["latent"].values]
    return names[:2]


def _bandwidth(z, rule, step):
    """Per-axis Gaussian kernel width for points ``z`` (n, d).

    ``"scott"``: ``h_d = sigma_d * n ** (-1 / (d + 4))``; ``"silverman"``:
    ``h_d = sigma_d * (n * (d + 2) / 4) ** (-1 / (d + 4))``; a number: that width in latent
    units. Never narrower than one grid step ``step`` so a collapsed latent (sigma = 0) gives a
    one-cell-wide ridge instead of a singular density.
    """
    n, d = z.shape
    if isinstance(rule, str):
        sigma = z.std(axis=0, ddof=1) if n > 1 else np.zeros(d)
        if rule == "scott":
            h = sigma * n ** (-1.0 / (d + 4))
        elif rule == "silverman":
            h = sigma * (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
        else:
            raise ScaleVAEError(f"bandwidth {rule!r} is unknown; use 'scott', 'silverman' "
                                "or a positive number (kernel width in latent units)")
    else:
        if not np.isfinite(rule) or rule <= 0:
            raise ScaleVAEError(f"bandwidth must be positive, got {rule!r}")
        h = np.full(d, float(rule))
    return np.maximum(h, step)


def _kde_on_grid(z, grids, h):
    """Product-Gaussian KDE of ``z`` (n, d) evaluated on the outer product of ``grids``."""
    n = len(z)
    dens = 0.0
    # Chunked so that the (points x grid) kernel matrices stay small for large n.
    for s in range(0, n, 8192):
        k = [np.exp(-0.5 * ((g[None, :] - z[s:s + 8192, i, None]) / h[i]) ** 2)
             / (h[i] * np.sqrt(2 * np.pi)) for i, g in enumerate(grids)]
        dens = dens + (k[0].sum(0) if len(k) == 1 else k[0].T @ k[1])
    return dens / max(n, 1)


def _subset(n, m, seed=0):
    """Fixed random subset of ``range(n)`` of at most ``m`` indices (sorted)."""
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def _model_device(model):
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return "cpu"


def _decode(model, z):
    """Decode latent points ``z`` (n, k) in one batched call; returns float32 (n, r, r)."""
    import torch  # imported here: the analyses that do not decode should not need torch

    device = _model_device(model)
    with torch.inference_mode():
        out = model.decode(torch.as_tensor(np.asarray(z, np.float32), device=device))
    return out.detach().float().cpu().numpy().reshape(len(z), *out.shape[-2:])


# --------------------------------------------------------------------------- densities


def latent_density(ds, state="final", grid_size=64, bandwidth="scott"):
    """Kernel density of the latent distribution per window, on one grid shared by all windows.

    Parameters
    ----------
    ds : xarray.Dataset
        Result Dataset with ``z_mean`` (state, window, point, latent).
    state : {"final", "instant"}
        Which encoding to use.
    grid_size : int
        Number of grid points along each latent axis.
    bandwidth : {"scott", "silverman"} or float
        Kernel width rule. The kernel is a product of 1-D Gaussians, one width per latent axis,
        chosen per window: Scott's rule ``h = sigma * n ** (-1 / (d + 4))`` (default), Silverman's
        ``h = sigma * (n * (d + 2) / 4) ** (-1 / (d + 4))``, or a fixed width in latent units;
        never narrower than one grid step.

    Returns
    -------
    density : xarray.DataArray
        ``(window, z1_grid, z2_grid)`` (``(window, z1_grid)`` when the model has one latent;
        the first two latents when it has more), normalised to integrate to 1 over the grid.
        The grid spans the 0.5-99.5 % quantiles of all windows' latents pooled, padded by 15 %
        of that range on each side, so that densities of different windows are comparable.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> d = latent_density(make_fake_result(), grid_size=32)
    >>> d.dims
    ('window', 'z1_grid', 'z2_grid')
    """
    z = _state_z(ds, state)
    names = _kde_axes(z)
    zz = z.sel(latent=names).values  # (window, point, d)
    finite = zz[np.isfinite(zz).all(-1)]
    if len(finite) < 2:
        raise ScaleVAEError(f"state {state!r} has fewer than two finite latent points; "
                            "check that the run finished")
    lo, hi = np.quantile(finite, [0.005, 0.995], axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - 0.15 * span, hi + 0.15 * span
    grids = [np.linspace(lo[i], hi[i], int(grid_size)) for i in range(len(names))]
    steps = np.array([g[1] - g[0] for g in grids])
    cell = float(np.prod(steps))

    out, widths = [], []
    for w in range(zz.shape[0]):
        pts = zz[w][np.isfinite(zz[w]).all(-1)]
        pts = pts[_subset(len(pts), _MAX_KDE_POINTS)]
        h = _bandwidth(pts, bandwidth, steps)
        dens = _kde_on_grid(pts, grids, h)
        total = dens.sum() * cell
        out.append(dens / total if total > 0 else dens)
        widths.append(h)
    widths = np.array(widths)
    dims = ("window",) + tuple(f"{n}_grid" for n in names)
    coords = {"window": z["window"].values}
    coords.update({f"{n}_grid": g for n, g in zip(names, grids)})
    coords.update({f"bandwidth_{n}": ("window", widths[:, i]) for i, n in enumerate(names)})
    return xr.DataArray(np.array(out), dims=dims, coords=coords, name="density",
                        attrs={"state": state, "bandwidth_rule": str(bandwidth),
                               "latents": ",".join(names)})


def populated_extent(ds, state="final", window=None, q=(0.02, 0.98)):
    """Range of each latent that the keypoints actually populate.

    Parameters
    ----------
    ds : xarray.Dataset
        Result Dataset.
    state : {"final", "instant"}
    window : int or None
        Window in px; None pools all windows.
    q : (float, float)
        Lower and upper quantile: the extent leaves out the rarest ``q[0]`` and ``1 - q[1]``.

    Returns
    -------
    extent : numpy.ndarray
        ``(latent_dim, 2)``: ``[low, high]`` per latent; a collapsed latent gets ``[-1, 1]``
        around its value so that a grid over it is still well defined.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> populated_extent(make_fake_result()).shape
    (2, 2)
    """
    z = _state_z(ds, state)
    if window is not None:
        if int(window) not in z["window"].values:
            raise ScaleVAEError(f"window {window} is not in the result; choose one of "
                                f"{[int(w) for w in z['window'].values]}")
        z = z.sel(window=int(window))
    zz = z.values.reshape(-1, z.sizes["latent"])
    zz = zz[np.isfinite(zz).all(-1)]
    ext = np.quantile(zz, q, axis=0).T
    flat = ext[:, 1] - ext[:, 0] <= 1e-9
    ext[flat] = ext[flat].mean(1, keepdims=True) + np.array([-1.0, 1.0])
    return ext


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
    patches = _decode(model, z)
    r = patches.shape[-1]
    dims = tuple(f"z{i + 1}_grid" for i in range(m)) + ("py", "px")
    coords = {f"z{i + 1}_grid": a for i, a in enumerate(axes)}
    return xr.DataArray(patches.reshape(*([int(n)] * m), r, r), dims=dims, coords=coords,
                        name="decoded")


# --------------------------------------------------------------------------- latent images


def grid_layout(ds, tol=1e-6):
    """Integer (frame, iy, ix) per point and the grid axes if the keypoints form a regular grid."""
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
    z = _state_z(ds, state)
    ang = None
    if "angle" in ds:
        ang = ds["angle"].sel(state=state) if "state" in ds["angle"].dims else ds["angle"]
        ang = ang.transpose("window", "point")
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


# --------------------------------------------------------------------------- PCA


def kde_pca(density, n_components=4):
    """PCA of the latent densities across windows (paper Fig. 4).

    Each window's density on the shared grid is one sample; the components are latent-space
    images and the scores show how each component's weight changes with the window.

    Parameters
    ----------
    density : xarray.DataArray
        Output of :func:`latent_density`.
    n_components : int
        Number of components; at most the number of windows.

    Returns
    -------
    pca : xarray.Dataset
        ``scores`` (window, component), ``components`` (component, z1_grid, z2_grid),
        ``mean`` (z1_grid, z2_grid), ``explained_variance_ratio`` (component).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> p = kde_pca(latent_density(make_fake_result(), grid_size=16), n_components=2)
    >>> p["scores"].dims
    ('window', 'component')
    """
    from sklearn.decomposition import PCA

    nw = density.sizes["window"]
    if nw < 2:
        raise ScaleVAEError("PCA across windows needs at least two windows; "
                            "run with more window sizes (e.g. --windows 8:64:8)")
    grid_dims = [d for d in density.dims if d != "window"]
    x = density.transpose("window", *grid_dims).values.reshape(nw, -1)
    nc = int(min(n_components, nw, x.shape[1]))
    pca = PCA(n_components=nc, svd_solver="full").fit(x)
    shape = [density.sizes[d] for d in grid_dims]
    comp = xr.DataArray(pca.components_.reshape(nc, *shape), dims=("component", *grid_dims))
    return xr.Dataset(
        {"scores": (("window", "component"), pca.transform(x)),
         "components": comp,
         "mean": (tuple(grid_dims), pca.mean_.reshape(shape)),
         "explained_variance_ratio": ("component", pca.explained_variance_ratio_)},
        coords={"window": density["window"].values, "component": np.arange(1, nc + 1),
                **{d: density[d].values for d in grid_dims}},
        attrs=dict(density.attrs))


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

    z = _state_z(ds, state).transpose("point", "latent", "window")
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
    point_coords = {c: ("point", ds[c].values) for c in ("frame", "y", "x") if c in ds.coords}
    return xr.Dataset(
        {"components": (("component", "latent", "window"),
                        pca.components_.reshape(nc, z.sizes["latent"], z.sizes["window"])),
         "loadings": (("point", "component"), load),
         "explained_variance_ratio": ("component", pca.explained_variance_ratio_),
         "center": (("latent", "window"), center),
         "scale": ("latent", scale)},
        coords={"component": np.arange(1, nc + 1), "latent": z["latent"].values,
                "window": z["window"].values, **point_coords},
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
    z = _state_z(ds, state)
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


# --------------------------------------------------------------------------- length scales


def _distance_ranks(z):
    """Ranks of the pairwise latent distances of keypoints ``z`` (m, k), as float."""
    from scipy.spatial.distance import pdist

    return stats.rankdata(pdist(z)).astype(float)


def _structure_change(ra, rb):
    """1 - Spearman correlation of the pairwise latent distances of the same keypoints
    (``ra``, ``rb``: their ranks at two windows).

    Invariant to any rotation, shift or uniform scaling of the latent space, so it measures a
    change of which keypoints resemble which, not a drift of the encoder between windows.
    """
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return 0.0 if np.ptp(ra) == np.ptp(rb) else 1.0
    return float(np.clip(1.0 - np.corrcoef(ra, rb)[0, 1], 0.0, 1.0))


def _regrouping_floor(ds, state, zz, sub, ranks, n_draws):
    """Per window: the regrouping that posterior noise alone causes (see length_scales)."""
    if not n_draws or "z_std" not in ds:
        return np.zeros(len(zz))
    zs = ds["z_std"].sel(state=state) if "state" in ds["z_std"].dims else ds["z_std"]
    sd = zs.transpose("window", "point", "latent").values
    rng = np.random.default_rng(2)  # fixed: the same result gives the same floor
    floor = np.zeros(len(zz))
    for i in range(len(zz)):
        z, s = zz[i, sub], np.nan_to_num(sd[i, sub])
        floor[i] = np.mean([_structure_change(ranks[i], _distance_ranks(
            z + s * rng.standard_normal(z.shape))) for _ in range(int(n_draws))])
    return floor


def _standardized(ds, state):
    """``ds`` with each window's latents centred on their median and divided by their
    interquartile range (per latent), so densities compare shapes, not the overall scale."""
    z = _state_z(ds, state)
    med = z.median("point")
    iqr = z.quantile(0.75, "point") - z.quantile(0.25, "point")
    iqr = iqr.where(iqr > 0, 1.0).drop_vars("quantile", errors="ignore")
    zs = ((z - med) / iqr).expand_dims(state=[state])
    return xr.Dataset({"z_mean": zs.transpose("state", "window", "point", "latent")})


def _half_maximum_run(score, best):
    """First and last index of the contiguous run around ``best`` with ``score >= score[best] / 2``."""
    keep = score >= 0.5 * score[best]
    lo = hi = best
    while lo > 0 and keep[lo - 1]:
        lo -= 1
    while hi < len(score) - 1 and keep[hi + 1]:
        hi += 1
    return lo, hi


def _first_reaching(curve, fraction):
    """Index of the first window whose ``curve`` reaches ``fraction`` of its maximum."""
    return int(np.argmax(curve >= fraction * curve.max()))


def length_scales(ds, state="final", density=None, n_pairs_points=500, n_draws=3):
    """Characteristic length scales: windows where the latent structure changes most.

    For each window ``w_i`` (i > 1) the change from ``w_(i-1)`` is measured two ways:

    - ``density_change``: Hellinger distance between the two windows' latent densities, in
      [0, 1]; each window's latents are first centred on their median and divided by their
      interquartile range, so that a mere shrinking or growing of the latent cloud (common
      when the encoder maps larger windows closer to the prior) does not count, only a change
      of its shape;
    - ``structure_change``: 1 - Spearman correlation between the pairwise latent distances of
      the same keypoints at the two windows (a fixed random subset of ``n_pairs_points``), in
      [0, 1]: it sees keypoints regrouping even when the overall density stays the same, and
      ignores a mere drift of the encoder between windows.

    **Noise floor.** The latents are posterior means; the model itself cannot tell keypoints
    apart closer than their posterior width ``z_std``. ``noise_floor`` is the regrouping that
    this width alone produces at one window: ``structure_change`` between the means and a
    posterior sample ``z_mean + z_std * eps`` (mean of ``n_draws`` draws). Only the regrouping
    above the larger floor of the two windows counts: ``excess_change``. Without it, a
    pattern that looks the same at every window (a perfect lattice, whose patches differ only by
    their phase) gets a score made of encoder noise, and the division by the small log-steps
    of large windows hands the recommendation to the largest window.

    ``change`` is the mean of the two measures (reported as evidence), and
    ``score = excess_change / ln(w_i / w_(i-1))`` is the significant regrouping per unit of
    log-scale (the density distance is left out of the score: its noise floor, divided by the
    small log-steps of large windows, would favour the largest window), so that windows
    spaced linearly are not biased towards small windows (8 -> 12 px is a far bigger step in
    scale than 60 -> 64 px) and a scale-free (self-similar) image gives a flat score.

    **Rule.** ``change_from_first`` is the regrouping between the smallest window and each
    window (the same rank measure), less the larger of the two windows' noise floors: how far
    the keypoints' latent relations have moved from their finest-scale description. It rises
    while structure of the image's own scale enters the patches and levels off once larger
    windows only add more of the same. ``recommended_window`` is the first window at which it
    reaches half of its maximum over the window range, the middle of that rise: the size
    at which the descriptor has moved halfway from the local description to the large-window
    one. Measured on synthetic a/c domains with the default settings (periods 12-40 px, four
    seeds each, ``validation/PERIOD_SWEEP.md``), this lands within one window step of the period
    in 20 of 24 runs (the period lies inside the range in 24 of 24), where the peak of
    ``score`` did in 10. The recommendation depends on the window range: a range that stops
    before the rise levels off moves it down. If no window
    regroups the keypoints above the noise floor, ``significant`` is False and the rule runs on
    the raw regrouping: read it as "no length scale in this window range" (``attrs["note"]``
    says so). ``score`` and its ``peak`` flags stay as evidence of where the regrouping is
    fastest (other scales).

    **Range.** ``recommended_low`` .. ``recommended_high`` span the first windows at which
    ``change_from_first`` reaches a quarter and three quarters of its maximum (the rise from
    local to large-window description), widened to the contiguous windows around the
    fastest regrouping whose ``score`` is at least half of its maximum (a change that keeps its
    pace instead of levelling off). A narrow range is a sharp change of scale; a range that
    spans most of the windows means the evidence for one size is weak.

    Parameters
    ----------
    ds : xarray.Dataset
        Result Dataset with at least two windows.
    state : {"final", "instant"}
    density : xarray.DataArray, optional
        Densities to compare instead of the standardised ones (e.g. :func:`latent_density`
        of the same state, to count changes of scale too).
    n_pairs_points : int
        Keypoints used for the pairwise-distance comparison.
    n_draws : int
        Posterior draws averaged for the noise floor (0: no floor, every change counts).

    Returns
    -------
    scales : xarray.Dataset
        ``density_change``, ``structure_change``, ``noise_floor``, ``excess_change``,
        ``change``, ``score``, ``peak`` (bool) and ``prominence`` on ``window`` (NaN / False
        for the first window; ``noise_floor`` and ``change_from_first`` are per window), the
        0-d ints ``recommended_window``, ``recommended_low`` and ``recommended_high`` (px) and
        the 0-d bool ``significant``. ``attrs["rule"]`` states the rule.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> s = length_scales(make_fake_result(n_windows=6))
    >>> int(s["recommended_window"]) in s["window"].values
    True
    """
    z = _state_z(ds, state)
    windows = z["window"].values.astype(int)
    if len(windows) < 2:
        raise ScaleVAEError("length scales need at least two windows; run with more window "
                            "sizes (e.g. --windows 8:64:8)")
    if density is None:
        density = latent_density(_standardized(ds, state), state, grid_size=48)
    p = density.transpose("window", ...).values.reshape(len(windows), -1)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-300)
    hell = np.sqrt(np.clip(1.0 - np.sqrt(p[1:] * p[:-1]).sum(1), 0.0, 1.0))

    zz = z.values
    ok = np.isfinite(zz).all(axis=(0, 2))
    sub = np.flatnonzero(ok)[_subset(int(ok.sum()), n_pairs_points, seed=1)]
    ranks = [_distance_ranks(zz[i, sub]) for i in range(len(windows))]
    struct = np.array([_structure_change(ranks[i - 1], ranks[i])
                       for i in range(1, len(windows))])

    floor = _regrouping_floor(ds, state, zz, sub, ranks, n_draws)
    excess = np.clip(struct - np.maximum(floor[1:], floor[:-1]), 0.0, None)
    significant = bool((excess > 0).any())

    change = 0.5 * (hell + struct)
    # The score uses the keypoints' regrouping only: the KDE distance has a noise floor that
    # the division by small log-steps at large windows inflates (measured: it made the largest
    # window win on the domain demo, whose period of 24 px the regrouping score finds).
    log_step = np.log(windows[1:] / windows[:-1])
    score = (excess if significant else struct) / log_step
    # Pad with values below the minimum so that a maximum at either end counts as a peak.
    pad = np.concatenate([[score.min() - 1], score, [score.min() - 1]])
    peaks, props = signal.find_peaks(pad, prominence=0)
    peaks = peaks - 1
    prom = np.full(len(windows), np.nan)
    is_peak = np.zeros(len(windows), bool)
    if len(peaks) and props["prominences"].max() > 0:
        prom[peaks + 1] = props["prominences"]
        is_peak[peaks + 1] = True

    # Regrouping relative to the smallest window, above the posterior-noise floor.
    from_first = np.array([_structure_change(ranks[0], r) for r in ranks])
    if significant:
        from_first = np.clip(from_first - np.maximum(floor, floor[0]), 0.0, None)
    from_first[0] = 0.0
    if from_first.max() > 0:
        # from_first[0] = 0 < any fraction of a positive maximum: every index is >= 1
        rec_i, lo_i, hi_i = (_first_reaching(from_first, f) for f in (0.5, 0.25, 0.75))
    else:  # nothing changes at all: no scale to find, the largest raw step is weak evidence
        rec_i = lo_i = hi_i = int(np.argmax(score)) + 1
    # A change that keeps going at the same pace (no level-off) must widen the range too: add
    # the run of windows around the fastest regrouping that regroup at least half as fast.
    s_lo, s_hi = _half_maximum_run(score, int(np.argmax(score)))
    lo_i, hi_i = min(lo_i, s_lo + 1), max(hi_i, s_hi + 1)
    rec = int(windows[rec_i])

    nan = np.array([np.nan])
    return xr.Dataset(
        {"density_change": ("window", np.concatenate([nan, hell])),
         "structure_change": ("window", np.concatenate([nan, struct])),
         "noise_floor": ("window", floor),
         "excess_change": ("window", np.concatenate([nan, excess])),
         "change": ("window", np.concatenate([nan, change])),
         "score": ("window", np.concatenate([nan, score])),
         "peak": ("window", is_peak),
         "prominence": ("window", prom),
         "recommended_window": ((), rec),
         "change_from_first": ("window", from_first),
         "recommended_low": ((), int(windows[lo_i])),
         "recommended_high": ((), int(windows[hi_i])),
         "significant": ((), significant)},
        coords={"window": windows},
        attrs={"state": state,
               "rule": "recommended window = first window at which the keypoints' latent "
                       "regrouping relative to the smallest window (1 - rank correlation of "
                       "their pairwise latent distances, less the regrouping the posterior "
                       "width alone produces) reaches half its maximum over the window range; "
                       "range: where it reaches a quarter and three quarters, widened to the "
                       "windows regrouping at least half as fast as the fastest",
               "note": "" if significant else (
                   "no window regroups the keypoints by more than their posterior width "
                   "alone does: within the model's resolution, which keypoints resemble which "
                   "does not change with the window (e.g. a perfect lattice, structure finer "
                   "than the patches resolve, or latents that carry little information); the "
                   "recommended window comes from the raw regrouping and is weak evidence")})


# --------------------------------------------------------------------------- downstream


def kde_peaks(density, model=None, min_distance=2, threshold_rel=0.1, num_peaks=10):
    """Local maxima of the latent density per window: candidate structural elements.

    Parameters
    ----------
    density : xarray.DataArray
        Output of :func:`latent_density`.
    model : object, optional
        Decoder (see :func:`latent_representation`); if given, the patch at each peak is
        decoded (angle 0, shift 0) in one batched call.
    min_distance : int
        Minimum separation of peaks in grid cells.
    threshold_rel : float
        Peaks lower than this fraction of the window's highest density are dropped.
    num_peaks : int
        At most this many peaks per window, highest first.

    Returns
    -------
    peaks : xarray.Dataset
        One row per peak on dimension ``peak``: ``window`` (px), ``z`` (peak, latent) position,
        ``height`` (density there) and, with a model, ``patch`` (peak, py, px).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> pk = kde_peaks(latent_density(make_fake_result(), grid_size=32))
    >>> pk["z"].dims
    ('peak', 'latent')
    """
    from skimage.feature import peak_local_max

    grid_dims = [d for d in density.dims if d != "window"]
    names = [d[: -len("_grid")] for d in grid_dims]
    axes = [density[d].values for d in grid_dims]
    rows = []
    for w in density["window"].values:
        d = density.sel(window=w).values
        if d.ndim == 1:
            idx = signal.find_peaks(np.concatenate([[0], d, [0]]), distance=min_distance,
                                    height=threshold_rel * d.max())[0][:, None] - 1
            idx = idx[np.argsort(-d[idx[:, 0]])][:num_peaks]
        else:
            idx = peak_local_max(d, min_distance=min_distance, threshold_rel=threshold_rel,
                                 exclude_border=False, num_peaks=num_peaks)
        for ij in idx:
            rows.append((int(w), [axes[a][ij[a]] for a in range(len(axes))], d[tuple(ij)]))
    zpos = np.array([r[1] for r in rows], float).reshape(len(rows), len(names))
    out = xr.Dataset({"window": ("peak", np.array([r[0] for r in rows], int)),
                      "z": (("peak", "latent"), zpos),
                      "height": ("peak", np.array([r[2] for r in rows], float))},
                     coords={"latent": names})
    if model is not None and rows:
        k = int(getattr(model, "latent_dim", len(names)))
        zfull = np.zeros((len(rows), k), np.float32)
        zfull[:, : len(names)] = zpos
        out["patch"] = (("peak", "py", "px"), _decode(model, zfull))
    return out


def outlier_scores(ds, state="final", window=None, n_reference=_MAX_KDE_POINTS):
    """How unusual each keypoint's latent is at one window: ``-log`` of the latent density there.

    The density is the same product-Gaussian KDE (Scott's rule) as :func:`latent_density`,
    fitted on all keypoints of that window (a fixed subset of ``n_reference`` if more) and
    evaluated at each keypoint; higher means rarer.

    Parameters
    ----------
    ds : xarray.Dataset
    state : {"final", "instant"}
    window : int, optional
        Window in px; the largest by default.
    n_reference : int
        At most this many keypoints define the density; the cost grows with
        (keypoints x ``n_reference``), so a smaller value is faster for very many keypoints.

    Returns
    -------
    score : xarray.DataArray
        ``(point,)`` with the keypoints' ``frame``, ``y``, ``x``.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> outlier_scores(make_fake_result()).dims
    ('point',)
    """
    z = _state_z(ds, state)
    if window is None:
        window = int(z["window"].values[-1])
    if int(window) not in z["window"].values:
        raise ScaleVAEError(f"window {window} is not in the result; choose one of "
                            f"{[int(w) for w in z['window'].values]}")
    zz = z.sel(window=int(window), latent=_kde_axes(z)).values.astype(float)
    ok = np.isfinite(zz).all(-1)
    ref = zz[ok][_subset(int(ok.sum()), int(n_reference))]
    h = _bandwidth(ref, "scott", np.full(zz.shape[1], 1e-6))
    dens = np.full(len(zz), np.nan)
    # Chunks of ~2 million kernel values (~50 MB of temporaries) whatever the number of points.
    step = max(1, 2 ** 21 // max(len(ref), 1))
    for s in range(0, len(zz), step):
        q = zz[s:s + step]
        k = np.exp(-0.5 * (((q[:, None, :] - ref[None]) / h) ** 2).sum(-1))
        dens[s:s + step] = k.mean(1) / np.prod(h * np.sqrt(2 * np.pi))
    score = -np.log(np.maximum(dens, 1e-300))
    score[~ok] = np.nan
    coords = {c: ("point", ds[c].values) for c in ("frame", "y", "x") if c in ds.coords}
    return xr.DataArray(score, dims=("point",), coords=coords, name="outlier_score",
                        attrs={"state": state, "window": int(window)})
