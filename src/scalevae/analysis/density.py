"""Kernel densities of the latents: the density per window, its PCA across windows, its peaks,
and how rare each keypoint's latent is under it."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import signal

from ..errors import ScaleVAEError
from ._common import (MAX_KDE_POINTS, check_window, decode, point_coords, require_windows,
                      state_z, subset)


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
    z = state_z(ds, state)
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
        pts = pts[subset(len(pts), MAX_KDE_POINTS)]
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
    z = state_z(ds, state)
    if window is not None:
        check_window(z, window)
        z = z.sel(window=int(window))
    zz = z.values.reshape(-1, z.sizes["latent"])
    zz = zz[np.isfinite(zz).all(-1)]
    ext = np.quantile(zz, q, axis=0).T
    flat = ext[:, 1] - ext[:, 0] <= 1e-9
    ext[flat] = ext[flat].mean(1, keepdims=True) + np.array([-1.0, 1.0])
    return ext


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
    require_windows(nw, "PCA across windows needs")
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
        out["patch"] = (("peak", "py", "px"), decode(model, zfull))
    return out


def outlier_scores(ds, state="final", window=None, n_reference=MAX_KDE_POINTS):
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
    z = state_z(ds, state)
    if window is None:
        window = int(z["window"].values[-1])
    check_window(z, window)
    zz = z.sel(window=int(window), latent=_kde_axes(z)).values.astype(float)
    ok = np.isfinite(zz).all(-1)
    score = np.full(len(zz), np.nan)
    if ok.any():
        from sklearn.neighbors import KernelDensity

        ref = zz[ok][subset(int(ok.sum()), int(n_reference))]
        h = _bandwidth(ref, "scott", np.full(zz.shape[1], 1e-6))
        # the product kernel of widths h = scikit-learn's unit-width kernel on z / h, the
        # density divided by prod(h); exact (rtol 0), in log space (no underflow far out)
        kde = KernelDensity(bandwidth=1.0).fit(ref / h)
        score[ok] = np.log(np.prod(h)) - kde.score_samples(zz[ok] / h)
    return xr.DataArray(score, dims=("point",), coords=point_coords(ds), name="outlier_score",
                        attrs={"state": state, "window": int(window)})
