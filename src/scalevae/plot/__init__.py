"""Figures of a run, one function per figure type of the paper.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (so it works
headless, in threads, and never opens a window); save it with ``fig.savefig(...)``. Windows are
labelled in px and, when the pixel size is known, in physical units too ("16 px (62.4 nm)").
"""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..errors import ScaleVAEError
from ..io.units import physical_pixel

__all__ = [
    "window_label",
    "plot_keypoints",
    "plot_example_patches",
    "plot_latent_distributions",
    "plot_latent_manifolds",
    "plot_latent_images",
    "plot_kde_pca",
    "plot_trajectory_pca",
    "plot_stack_statistics",
    "plot_length_scales",
    "plot_kde_peaks",
    "plot_outlier_scores",
    "plot_loss",
    "plot_kl",
]

# Below this KL (nats) a latent carries (almost) nothing: the posterior collapsed to the prior.
COLLAPSE_NATS = 0.05


# --------------------------------------------------------------------------- helpers


def window_label(window, pixel_size=None, unit=None):
    """``"16 px"``, or ``"16 px (62.4 nm)"`` when the pixel size and unit are known.

    Examples
    --------
    >>> window_label(16, 3.9, "nm")
    '16 px (62.4 nm)'
    >>> window_label(16)
    '16 px'
    """
    ps, un = physical_pixel(pixel_size, unit)
    text = f"{int(window)} px"
    return text if ps is None else f"{text} ({float(window) * ps:.3g} {un})"


def _window_axis(ax, pixel_size, unit, which="x", secondary=True):
    """Label a window axis in px, with a secondary axis in physical units when known."""
    getattr(ax, f"set_{which}label")("window (px)")
    ps, un = physical_pixel(pixel_size, unit)
    if ps is not None and secondary:
        fwd, inv = (lambda w: w * ps), (lambda v: v / ps)
        if which == "x":
            sec = ax.secondary_xaxis("top", functions=(fwd, inv))
            sec.set_xlabel(f"window ({un})", fontsize=9)
        else:
            sec = ax.secondary_yaxis("right", functions=(fwd, inv))
            sec.set_ylabel(f"window ({un})", fontsize=9)
        sec.tick_params(labelsize=8)


def pick_panels(values, max_panels):
    """At most ``max_panels`` of ``values``, evenly spread, first and last included."""
    values = list(values)
    if len(values) <= max_panels:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, max_panels)).astype(int))
    return [values[i] for i in idx]


def _figure(ncols, nrows, panel=2.4, dpi=90, left=0.75, right=0.25, bottom=0.6, top=0.55,
            wgap=0.75, hgap=0.75, width_ratios=None, aspect=1.0):
    """Figure with a fixed grid of panels (``panel`` inches high, ``aspect`` times as wide),
    margins and gaps in inches.

    A fixed layout instead of matplotlib's constrained layout: it draws once instead of
    twice and skips measuring every tick label, several times faster for report-sized grids.
    """
    ratios = np.ones(ncols) if width_ratios is None else np.asarray(width_ratios, float)
    ratios = ratios * aspect
    inner = panel * ratios.sum() + wgap * (ncols - 1)
    width = left + inner + right
    height = bottom + panel * nrows + hgap * (nrows - 1) + top
    fig = Figure(figsize=(width, height), dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False, width_ratios=list(ratios))
    fig.subplots_adjust(left=left / width, right=(left + inner) / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wgap / (panel * ratios.mean()),
                        hspace=hgap / panel)
    return fig, axes


def _suptitle(fig, text):
    fig.suptitle(text, fontsize=10, y=1 - 0.08 / fig.get_figheight(), va="top")


def _colorbar(fig, im, axes, label=None, gap=0.12, width=0.12):
    """Colorbar right of ``axes`` (one axes or a row of them), sized to them, in inches."""
    axes = np.atleast_1d(axes)
    pos = [a.get_position() for a in axes]
    x1 = max(p.x1 for p in pos)
    y0, y1 = min(p.y0 for p in pos), max(p.y1 for p in pos)
    w = fig.get_figwidth()
    cax = fig.add_axes([x1 + gap / w, y0, width / w, y1 - y0])
    cb = fig.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=8)
    if label:
        cb.set_label(label, fontsize=9)
    return cb


def _frame_image(image, frame=0):
    if image is None:
        return None
    image = np.asarray(image)
    return image if image.ndim == 2 else image[min(int(frame), len(image) - 1)]


def _show_image(ax, img):
    lo, hi = np.percentile(img, [1, 99])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")


def _point_map(ax, values, y, x, image=None, cmap="viridis", vmin=None, vmax=None):
    """Values at keypoints over the image: a tiled image for a regular grid, else dots."""
    from ..analysis import grid_layout

    if image is not None:
        _show_image(ax, image)
    else:
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    import xarray as xr

    pts = xr.Dataset(coords={"y": ("point", y), "x": ("point", x)})
    layout = grid_layout(pts)
    if layout is not None:
        _, _, iy, ix, uy, ux = layout
        grid = np.full((len(uy), len(ux)), np.nan)
        grid[iy, ix] = values
        dy = uy[1] - uy[0]
        dx = ux[1] - ux[0]
        im = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                       alpha=0.75 if image is not None else 1.0,
                       extent=(ux[0] - dx / 2, ux[-1] + dx / 2, uy[-1] + dy / 2, uy[0] - dy / 2))
    else:
        span = max(image.shape) if image is not None else max(np.ptp(y), np.ptp(x), 1.0)
        area = max(np.ptp(y) * np.ptp(x), span)
        s = _dot_size(len(values), area, ax.get_position().width * ax.figure.get_figwidth()
                      / span)
        im = ax.scatter(x, y, c=values, s=s, cmap=cmap, vmin=vmin, vmax=vmax, linewidths=0)
        if image is None:
            ax.invert_yaxis()
            ax.set_aspect("equal")
    return im


def _dot_size(n, area_px, inch_per_px, fill=0.8):
    """Marker area (pt^2) so that ``n`` dots spread over ``area_px`` pixels are ``fill`` of
    their spacing wide (0.8: nearly touching, a map; 0.35: sparse marks on an image)."""
    spacing_pt = np.sqrt(area_px / max(n, 1)) * inch_per_px * 72
    return float(np.clip((fill * spacing_pt) ** 2, 0.3, 60.0))


def _robust_limits(v):
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [1, 99])
    return (lo, hi) if hi > lo else (lo - 1, hi + 1)


# --------------------------------------------------------------------------- data


def plot_keypoints(image, points, frame=0, pixel_size=None, unit=None):
    """The input image (one frame of a stack) with its keypoints (paper Fig. 2a).

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_keypoints(np.random.rand(32, 32), np.array([[0, 10.0, 12.0]]))
    """
    img = _frame_image(image, frame)
    points = np.asarray(points, float)
    ny, nx = img.shape
    panel = 5.0
    fig, ax = _figure(1, 1, panel=panel, left=0.7, top=0.45)
    ax = ax[0, 0]
    _show_image(ax, img)
    sel = points[points[:, 0] == frame] if points.shape[1] == 3 else points
    yx = sel[:, -2:]
    area = max(np.ptp(yx[:, 0]) * np.ptp(yx[:, 1]), 1.0) if len(yx) > 1 else ny * nx
    ax.scatter(yx[:, 1], yx[:, 0], s=_dot_size(len(yx), area, panel / max(ny, nx), 0.45),
               c="#ff2020", linewidths=0)
    ps, un = physical_pixel(pixel_size, unit)
    scale = f", 1 px = {ps:.3g} {un}" if ps else ""
    ax.set_title(f"frame {frame}: {len(yx)} keypoints{scale}", fontsize=10)
    return fig


def plot_example_patches(stack, points, windows, n=4, seed=0, max_windows=6, pixel_size=None,
                         unit=None):
    """A few random keypoints' patches at several windows, at their own size (paper Fig. 2b).

    Uses ``scalevae.patches.extract_patches`` with ``size = window`` (no resampling).

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_example_patches(np.random.rand(1, 64, 64), np.array([[0, 32.0, 32.0]]),
    ...                            [8, 16])
    """
    from ..patches import extract_patches

    stack = np.asarray(stack, np.float32)
    stack = stack[None] if stack.ndim == 2 else stack
    points = np.asarray(points, float)
    if len(points) == 0:
        raise ScaleVAEError("no keypoints to show patches for")
    wins = pick_panels([int(w) for w in windows], max_windows)
    # Prefer keypoints whose largest shown patch lies inside the frame; pad only if none does.
    half = (max(wins) - 1) / 2
    ny, nx = stack.shape[1:]
    inside = ((points[:, 1] >= half) & (points[:, 1] <= ny - 1 - half)
              & (points[:, 2] >= half) & (points[:, 2] <= nx - 1 - half))
    pool = points[inside] if inside.any() else points
    padding = None if inside.any() else "constant"
    rng = np.random.default_rng(seed)
    sel = pool[np.sort(rng.choice(len(pool), min(n, len(pool)), replace=False))]
    fig, axes = _figure(len(wins), len(sel), panel=1.4, left=0.45, bottom=0.1, top=0.55,
                        wgap=0.12, hgap=0.12)
    for j, w in enumerate(wins):
        patches = extract_patches(stack, sel, w, w, padding=padding)
        for i, p in enumerate(patches):
            ax = axes[i, j]
            ax.imshow(p, cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(window_label(w, pixel_size, unit), fontsize=9)
            if j == 0:
                ax.set_ylabel(f"({sel[i, 1]:.0f}, {sel[i, 2]:.0f}) px", fontsize=8)
    _suptitle(fig, "patches around random keypoints (y, x) at growing windows")
    return fig


# --------------------------------------------------------------------------- latent space


def _latent_row(ax, j, xlabel, ylabel):
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel if j == 0 else "", fontsize=9)
    ax.tick_params(labelsize=8)


def plot_latent_distributions(density, max_panels=6, pixel_size=None, unit=None):
    """Latent density per window, a row of panels on the shared grid (paper Figs. 3a-c, 5a-d).

    Parameters
    ----------
    density : xarray.DataArray
        From :func:`scalevae.analysis.latent_density`.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import latent_density
    >>> fig = plot_latent_distributions(latent_density(make_fake_result(), grid_size=16))
    """
    wins = pick_panels(density["window"].values, max_panels)
    grid_dims = [d for d in density.dims if d != "window"]
    fig, axes = _figure(len(wins), 1, panel=2.1, left=0.55, wgap=0.35, bottom=0.5)
    for j, (ax, w) in enumerate(zip(axes[0], wins)):
        d = density.sel(window=w)
        g = [density[k].values for k in grid_dims]
        if len(grid_dims) == 1:
            ax.plot(g[0], d.values)
            _latent_row(ax, j, "z1", "density")
        else:
            ax.imshow(d.values.T, origin="lower", aspect="auto", cmap="magma",
                      extent=(g[0][0], g[0][-1], g[1][0], g[1][-1]))
            _latent_row(ax, j, grid_dims[0].replace("_grid", ""),
                        grid_dims[1].replace("_grid", ""))
        ax.set_title(window_label(w, pixel_size, unit), fontsize=9)
    _suptitle(fig, f"latent distribution (KDE), {density.attrs.get('state', '')} state")
    return fig


def _mosaic(rep):
    """n x n decoded patches -> one image; z1 left to right, z2 bottom to top."""
    v = rep.values
    if v.ndim == 3:  # one latent: a single row
        v = v[:, None]
    n1, n2, r, _ = v.shape
    return v[:, ::-1].transpose(1, 2, 0, 3).reshape(n2 * r, n1 * r)


def plot_latent_manifolds(manifolds, max_panels=6, state="", pixel_size=None, unit=None):
    """Decoded grids of latent points per window (paper Figs. 3d-f, 5e-h).

    Parameters
    ----------
    manifolds : dict
        ``{window: DataArray}`` from :func:`scalevae.analysis.latent_representation`.

    Examples
    --------
    >>> from scalevae.testing import FakeModel
    >>> from scalevae.analysis import latent_representation
    >>> fig = plot_latent_manifolds({8: latent_representation(FakeModel(), [[-1, 1], [-1, 1]], 4)})
    """
    wins = pick_panels(sorted(manifolds), max_panels)
    fig, axes = _figure(len(wins), 1, panel=2.5, left=0.8, wgap=0.85, bottom=0.5)
    for j, (ax, w) in enumerate(zip(axes[0], wins)):
        rep = manifolds[w]
        g1 = rep["z1_grid"].values
        g2 = rep["z2_grid"].values if "z2_grid" in rep.dims else np.array([-0.5, 0.5])
        h1 = (g1[1] - g1[0]) / 2 if len(g1) > 1 else 0.5
        h2 = (g2[1] - g2[0]) / 2 if len(g2) > 1 else 0.5
        ax.imshow(_mosaic(rep), cmap="gray", aspect="auto", interpolation="nearest",
                  extent=(g1[0] - h1, g1[-1] + h1, g2[0] - h2, g2[-1] + h2))
        _latent_row(ax, 0, "z1", "z2" if "z2_grid" in rep.dims else "")
        ax.set_title(window_label(w, pixel_size, unit), fontsize=9)
    _suptitle(fig, "latent representation (decoded latent grid)"
              + (f", {state} state" if state else ""))
    return fig


def plot_latent_images(images, image=None, max_panels=5, pixel_size=None, unit=None):
    """Each keypoint coloured by its latent value (and angle), per window, over the image.

    Parameters
    ----------
    images : xarray.Dataset
        From :func:`scalevae.analysis.latent_images`; stacks show their first frame.
    image : array, optional
        The input image or stack, drawn underneath.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import latent_images
    >>> fig = plot_latent_images(latent_images(make_fake_result()))
    """
    wins = pick_panels(images["window"].values, max_panels)
    rows = [str(k) for k in images["latent"].values] + (["angle"] if "angle" in images else [])
    fig, axes = _figure(len(wins), len(rows), panel=2.3, left=0.7, right=1.0, wgap=0.95,
                        hgap=0.35)
    grid = images.attrs.get("layout") == "grid"
    frame0 = None
    bg = _frame_image(image, 0)
    for i, row in enumerate(rows):
        var = images["angle"] if row == "angle" else images["z"].sel(latent=row)
        if "frame" in var.dims:
            frame0 = var["frame"].values[0]
            var = var.isel(frame=0)
        elif not grid and "frame" in var.coords:
            frame0 = var["frame"].values.min()
            var = var.isel(point=np.flatnonzero(var["frame"].values == frame0))
        cmap, (lo, hi) = "twilight", (-np.pi, np.pi)
        for j, w in enumerate(wins):
            ax = axes[i, j]
            v = var.sel(window=w)
            if row != "angle":
                # Own colour range per window: the spread of a latent often changes by orders
                # of magnitude between windows, and one shared range would flatten all but one.
                cmap, (lo, hi) = "viridis", _robust_limits(v.values)
            if grid:
                gy, gx = np.meshgrid(v["gy"].values, v["gx"].values, indexing="ij")
                im = _point_map(ax, v.values.ravel(), gy.ravel(), gx.ravel(), bg, cmap, lo, hi)
            else:
                im = _point_map(ax, v.values, v["y"].values, v["x"].values, bg, cmap, lo, hi)
            ax.tick_params(labelsize=8)
            if i == 0:
                ax.set_title(window_label(w, pixel_size, unit), fontsize=9)
            if j > 0:
                ax.set_ylabel("")
                ax.set_yticklabels([])
            if i < len(rows) - 1:
                ax.set_xlabel("")
                ax.set_xticklabels([])
            if row != "angle":
                _colorbar(fig, im, ax, row if j == len(wins) - 1 else None, gap=0.06)
        if row == "angle":
            _colorbar(fig, im, axes[i], "angle (rad)", gap=0.06)
    title = f"latent images, {images.attrs.get('state', '')} state"
    _suptitle(fig, title + (f" (frame {frame0})" if frame0 is not None else ""))
    return fig


def plot_kde_pca(pca, pixel_size=None, unit=None):
    """KDE-PCA: scores vs window and the components as latent-space images (paper Fig. 4).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import latent_density, kde_pca
    >>> fig = plot_kde_pca(kde_pca(latent_density(make_fake_result(), grid_size=16)))
    """
    comps = pca["component"].values
    fig, axes = _figure(len(comps) + 1, 1, panel=2.2, left=0.65, top=0.95, wgap=0.5,
                        width_ratios=[1.6] + [1] * len(comps))
    axes = axes[0]
    evr = pca["explained_variance_ratio"].values
    w = pca["window"].values
    for c, e in zip(comps, evr):
        axes[0].plot(w, pca["scores"].sel(component=c), "o-", ms=3, label=f"PC{c} ({e:.0%})")
    axes[0].set_ylabel("PCA score")
    axes[0].legend(fontsize=8)
    _window_axis(axes[0], pixel_size, unit)
    grid_dims = [d for d in pca["components"].dims if d != "component"]
    for j, (ax, c) in enumerate(zip(axes[1:], comps)):
        comp = pca["components"].sel(component=c)
        if len(grid_dims) == 1:
            ax.plot(pca[grid_dims[0]], comp)
            _latent_row(ax, j, "z1", "weight")
        else:
            g1, g2 = pca[grid_dims[0]].values, pca[grid_dims[1]].values
            m = float(np.abs(comp).max()) or 1.0
            ax.imshow(comp.values.T, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-m,
                      vmax=m, extent=(g1[0], g1[-1], g2[0], g2[-1]))
            _latent_row(ax, j, "z1", "z2")
        ax.set_title(f"PC{c}", fontsize=9)
    _suptitle(fig, "PCA of the latent densities across windows, "
              f"{pca.attrs.get('state', '')} state")
    return fig


def plot_trajectory_pca(tpca, image=None, pixel_size=None, unit=None):
    """Trajectory PCA: component curves vs window and loading maps (paper Fig. 6).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import trajectory_pca
    >>> fig = plot_trajectory_pca(trajectory_pca(make_fake_result()))
    """
    comps = tpca["component"].values
    fig, axes = _figure(len(comps), 2, panel=2.6, left=0.8, right=1.0, top=1.05, wgap=1.8,
                        hgap=0.75)
    w = tpca["window"].values
    frame = tpca["frame"].values if "frame" in tpca.coords else np.zeros(tpca.sizes["point"])
    f0 = frame.min()
    on = frame == f0
    bg = _frame_image(image, f0)
    for j, c in enumerate(comps):
        ax = axes[0, j]
        for lat in tpca["latent"].values:
            ax.plot(w, tpca["components"].sel(component=c, latent=lat), "o-", ms=3, label=lat)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_ylabel("component weight")
        e = float(tpca["explained_variance_ratio"].sel(component=c))
        ax.set_title(f"PC{c} ({e:.0%} of variance)", fontsize=9)
        ax.legend(fontsize=8)
        _window_axis(ax, pixel_size, unit)
        load = tpca["loadings"].sel(component=c).values[on]
        m = float(np.nanmax(np.abs(load))) or 1.0
        im = _point_map(axes[1, j], load, tpca["y"].values[on], tpca["x"].values[on], bg,
                        "RdBu_r", -m, m)
        _colorbar(fig, im, axes[1, j], f"PC{c} loading")
    _suptitle(fig, "PCA of per-keypoint latent trajectories, "
              f"{tpca.attrs.get('state', '')} state"
              + (f" (maps: frame {f0})" if len(np.unique(frame)) > 1 else ""))
    return fig


def plot_stack_statistics(stats, normalized=True, pixel_size=None, unit=None):
    """Mean and dispersion of each latent as (frame x window) heatmaps (paper Figs. 7, 10).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import stack_statistics
    >>> fig = plot_stack_statistics(stack_statistics(make_fake_result(n_frames=3)))
    """
    suffix = "_norm" if normalized else ""
    lats = stats["latent"].values
    fig, axes = _figure(2, len(lats), panel=2.8, left=0.8, right=1.0, top=1.05, wgap=1.8,
                        hgap=0.9)
    w = stats["window"].values.astype(float)
    if "control" in stats.coords and np.all(np.diff(stats["control"].values) > 0):
        yv = stats["control"].values.astype(float)
        ctrl = stats["control"].attrs
        ylabel = ctrl.get("long_name") or ctrl.get("name") or "control"
        if ctrl.get("units"):
            ylabel += f" ({ctrl['units']})"
    else:
        yv = stats["frame"].values.astype(float)
        ylabel = "frame"
    for i, lat in enumerate(lats):
        for j, name in enumerate(("mean", "dispersion")):
            ax = axes[i, j]
            v = stats[name + suffix].sel(latent=lat).values
            m = float(np.nanmax(np.abs(v))) or 1.0
            kw = dict(cmap="RdBu_r", vmin=-m, vmax=m) if normalized else dict(cmap="viridis")
            im = ax.pcolormesh(w, yv, v, shading="nearest", **kw)
            ax.set_ylabel(ylabel)
            _window_axis(ax, pixel_size, unit, secondary=i == 0)
            ax.set_title(f"{name} of {lat}" + (" (row mean removed)" if normalized else ""),
                         fontsize=9)
            _colorbar(fig, im, ax)
    _suptitle(fig, "latent statistics per frame and window, "
              f"{stats.attrs.get('state', '')} state")
    return fig


def plot_length_scales(scales, pixel_size=None, unit=None):
    """Latent change per log-window with its peaks and the recommended window.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import length_scales
    >>> fig = plot_length_scales(length_scales(make_fake_result()))
    """
    fig, axes = _figure(1, 2, panel=2.0, aspect=2.85, left=0.8, right=0.3, top=1.0, hgap=0.25)
    ax, ax2 = axes[0, 0], axes[1, 0]
    ax2.sharex(ax)
    w = scales["window"].values
    ax.plot(w, scales["score"], "o-", ms=4, label="change above noise per ln(window)"
            if bool(scales.get("significant", True)) else "change per ln(window) (none above noise)")
    pk = scales["peak"].values
    ax.plot(w[pk], scales["score"].values[pk], "v", color="tab:red", ms=8, label="peaks")
    rec = int(scales["recommended_window"])
    for a in (ax, ax2):
        a.axvline(rec, color="tab:green", ls="--", lw=1.2)
    if "recommended_low" in scales:
        lo, hi = int(scales["recommended_low"]), int(scales["recommended_high"])
        ax.axvspan(lo, hi, color="tab:green", alpha=0.12, lw=0,
                   label=f"recommended range ({lo}-{hi} px)")
    ax.set_ylabel("change score")
    ax.tick_params(labelbottom=False)
    ax.legend(fontsize=8)
    _window_axis(ax, pixel_size, unit)
    ax.set_xlabel("")
    ax2.plot(w, scales["density_change"], "s-", ms=3, label="KDE change (Hellinger)")
    ax2.plot(w, scales["structure_change"], "^-", ms=3,
             label="keypoint regrouping (1 - rank corr.)")
    if "noise_floor" in scales:
        ax2.plot(w, scales["noise_floor"], ":", color="0.4", lw=1.2,
                 label="regrouping from the posterior width alone")
    if "change_from_first" in scales:
        # the rule's curve: the recommendation is where it first reaches half its maximum
        c = scales["change_from_first"]
        ax2.plot(w, c, "o-", color="tab:green", ms=3, label="regrouping from the smallest window")
        ax2.axhline(0.5 * float(c.max()), color="tab:green", lw=0.8, ls=":")
    ax2.set_ylabel("regrouping")
    ax2.set_xlabel("window (px)")
    ax2.legend(fontsize=8)
    _suptitle(fig, f"recommended window: {window_label(rec, pixel_size, unit)}, "
              f"{scales.attrs.get('state', '')} state")
    return fig


# --------------------------------------------------------------------------- downstream


def _patch_mosaic(patches, gap=1):
    """(k, r, r) patches -> one image, ``ceil(sqrt(k))`` per row, NaN gaps between them;
    returns the image and each patch's centre (x, y) in mosaic pixels."""
    k, r = len(patches), patches.shape[-1]
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    step = r + gap
    mos = np.full((rows * step - gap, cols * step - gap), np.nan, np.float32)
    centres = []
    for i, p in enumerate(patches):
        y0, x0 = (i // cols) * step, (i % cols) * step
        mos[y0:y0 + r, x0:x0 + r] = p
        centres.append((x0, y0))
    return mos, centres


def plot_kde_peaks(peaks, density, max_panels=5, max_peaks=6, pixel_size=None, unit=None):
    """Peaks of the latent density (candidate structural elements) and the patch at each.

    Top row: each window's latent density with its peaks numbered, highest first. Bottom row
    (when ``peaks`` holds decoded patches): the patch the decoder draws at each numbered peak,
    in the model's canonical orientation, on one grey scale per window, so that each window's
    distinct structural elements can be read off directly.

    Parameters
    ----------
    peaks : xarray.Dataset
        From :func:`scalevae.analysis.kde_peaks` (with a model for the patches).
    density : xarray.DataArray
        The densities the peaks were found on (:func:`scalevae.analysis.latent_density`).
    max_panels : int
        At most this many windows, evenly spread.
    max_peaks : int
        At most this many peaks per window (the highest).

    Examples
    --------
    >>> from scalevae.testing import FakeModel, make_fake_result
    >>> from scalevae.analysis import latent_density, kde_peaks
    >>> d = latent_density(make_fake_result(), grid_size=24)
    >>> fig = plot_kde_peaks(kde_peaks(d, FakeModel()), d)
    """
    pw = peaks["window"].values
    wins = pick_panels([w for w in density["window"].values if np.any(pw == w)], max_panels)
    if not wins:
        raise ScaleVAEError("the latent densities have no peaks to show")
    has_patch = "patch" in peaks
    grid_dims = [d for d in density.dims if d != "window"]
    fig, axes = _figure(len(wins), 2 if has_patch else 1, panel=2.1, left=0.55, wgap=0.35,
                        hgap=0.55, bottom=0.5)
    for j, w in enumerate(wins):
        ax = axes[0, j]
        sel = np.flatnonzero(pw == w)
        sel = sel[np.argsort(-peaks["height"].values[sel])][:max_peaks]
        zp = peaks["z"].values[sel]
        d = density.sel(window=w)
        g = [density[k].values for k in grid_dims]
        if len(grid_dims) == 1:
            ax.plot(g[0], d.values, color="0.3")
            ax.plot(zp[:, 0], peaks["height"].values[sel], "o", color="tab:red", ms=4)
            _latent_row(ax, j, "z1", "density")
            pos = np.column_stack([zp[:, 0], peaks["height"].values[sel]])
        else:
            ax.imshow(d.values.T, origin="lower", aspect="auto", cmap="magma",
                      extent=(g[0][0], g[0][-1], g[1][0], g[1][-1]))
            ax.plot(zp[:, 0], zp[:, 1], "o", mfc="none", mec="#37e0ff", ms=7, mew=1.2)
            _latent_row(ax, j, "z1", "z2")
            pos = zp[:, :2]
        for n, (px, py) in enumerate(pos, 1):
            ax.annotate(str(n), (px, py), xytext=(4, 3), textcoords="offset points",
                        color="#37e0ff" if len(grid_dims) > 1 else "tab:red", fontsize=8,
                        fontweight="bold")
        ax.set_title(f"{window_label(w, pixel_size, unit)}: {len(sel)} peak(s)", fontsize=9)
        if has_patch:
            ax = axes[1, j]
            mos, centres = _patch_mosaic(peaks["patch"].values[sel])
            ax.imshow(mos, cmap="gray", interpolation="nearest")
            for n, (x0, y0) in enumerate(centres, 1):
                ax.text(x0 + 0.3, y0 + 0.3, str(n), color="#37e0ff", fontsize=8,
                        fontweight="bold", va="top", ha="left")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("decoded patch at each peak", fontsize=8)
    _suptitle(fig, "peaks of the latent density (candidate structural elements), "
              f"{density.attrs.get('state', '')} state")
    return fig


def plot_outlier_scores(scores, image=None, n_mark=10, pixel_size=None, unit=None):
    """Per-keypoint outlier score (-log latent density) as a map over the image.

    One map per window given, with the ``n_mark`` most unusual keypoints circled and numbered
    (1 = rarest), and a histogram of the scores of every window (right): a long right tail
    means rare structures (defects, contamination, scan artefacts) the map locates. For a
    stack, the maps show the frame that holds the rarest keypoint of the first window.

    Parameters
    ----------
    scores : xarray.DataArray or list of them
        From :func:`scalevae.analysis.outlier_scores` (its ``window`` attribute labels it).
    image : array, optional
        The input image or stack, drawn underneath.
    n_mark : int
        Number of keypoints to circle per window.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import outlier_scores
    >>> fig = plot_outlier_scores(outlier_scores(make_fake_result()))
    """
    scores = [scores] if not isinstance(scores, (list, tuple)) else list(scores)
    if not scores:
        raise ScaleVAEError("no outlier scores to plot")
    first = scores[0]
    frame = first["frame"].values if "frame" in first.coords else np.zeros(first.size, int)
    v0 = np.where(np.isfinite(first.values), first.values, -np.inf)
    f0 = frame[int(np.argmax(v0))]
    on = frame == f0
    bg = _frame_image(image, f0)
    fig, axes = _figure(len(scores) + 1, 1, panel=2.9, left=0.7, right=0.3, wgap=1.45,
                        top=0.75)
    axes = axes[0]
    for ax, sc in zip(axes[:-1], scores):
        v = sc.values[on]
        y, x = sc["y"].values[on], sc["x"].values[on]
        lo, hi = _robust_limits(v)
        im = _point_map(ax, v, y, x, bg, "inferno", lo, hi)
        order = np.argsort(-np.where(np.isfinite(v), v, -np.inf))[:n_mark]
        ax.scatter(x[order], y[order], s=70, facecolors="none", edgecolors="#37e0ff",
                   linewidths=1.2)
        for n, i in enumerate(order, 1):
            ax.annotate(str(n), (x[i], y[i]), xytext=(5, 4), textcoords="offset points",
                        color="#37e0ff", fontsize=7, fontweight="bold")
        ax.tick_params(labelsize=8)
        ax.set_title(window_label(sc.attrs.get("window", 0), pixel_size, unit), fontsize=9)
        _colorbar(fig, im, ax, "outlier score", gap=0.06)
    hx = axes[-1]
    for sc in scores:
        v = sc.values[np.isfinite(sc.values)]
        hx.hist(v, bins=50, histtype="step", lw=1.2,
                label=window_label(sc.attrs.get("window", 0), pixel_size, unit))
    hx.set_yscale("log")
    hx.set_xlabel("outlier score (-ln latent density)", fontsize=9)
    hx.set_ylabel("keypoints", fontsize=9)
    hx.tick_params(labelsize=8)
    hx.legend(fontsize=8)
    multi = len(np.unique(frame)) > 1
    _suptitle(fig, "how unusual each keypoint's latent is (circled: the rarest), "
              f"{first.attrs.get('state', '')} state" + (f" (maps: frame {f0})" if multi else ""))
    return fig


# --------------------------------------------------------------------------- training


def plot_loss(ds, pixel_size=None, unit=None):
    """Training loss per epoch, windows one after another (progressive training).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> fig = plot_loss(make_fake_result())
    """
    loss = ds["loss"].transpose("window", "epoch").values
    w = ds["window"].values
    fig, ax = _figure(1, 1, panel=3.0, aspect=1.67, left=0.9, right=1.1, top=0.45)
    ax = ax[0, 0]
    norm = Normalize(w.min(), w.max() if w.max() > w.min() else w.min() + 1)
    sm = ScalarMappable(norm=norm, cmap="viridis")
    start = 0
    for i, row in enumerate(loss):
        row = row[np.isfinite(row)]
        x = start + np.arange(1, len(row) + 1)
        ax.plot(x, row, color=sm.to_rgba(w[i]), lw=1.2)
        start += len(row)
        ax.axvline(start + 0.5, color="0.85", lw=0.5)
    ax.set_xlabel("epoch (cumulative over windows)")
    units = ds["loss"].attrs.get("units", "")
    ax.set_ylabel("training loss" + (f" ({units})" if units else ""))
    _colorbar(fig, sm, ax, "window (px)")
    ax.set_title("progressive training: loss per epoch, coloured by window", fontsize=10)
    return fig


def plot_kl(ds, pixel_size=None, unit=None):
    """KL divergence per latent at the end of each window: a latent near 0 has collapsed.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> fig = plot_kl(make_fake_result())
    """
    fig, ax = _figure(1, 1, panel=3.0, aspect=1.6, left=0.9, right=0.3, top=0.95)
    ax = ax[0, 0]
    w = ds["window"].values
    for lat in ds["latent"].values:
        ax.plot(w, ds["kl"].sel(latent=lat), "o-", ms=3, label=str(lat))
    ax.axhline(COLLAPSE_NATS, color="tab:red", ls=":", lw=1,
               label=f"collapse level ({COLLAPSE_NATS} nats)")
    ax.set_ylabel("KL per latent (nats)")
    ax.set_ylim(bottom=0)
    _window_axis(ax, pixel_size, unit)
    ax.legend(fontsize=8)
    _suptitle(fig, "KL per latent at the end of each window")
    return fig
