"""Figures of the latent space: distributions, decoded manifolds, KDE-PCA, trajectory PCA
(paper Figs. 3-6), density peaks and outlier scores (latent images: :mod:`.maps`)."""

from __future__ import annotations

import numpy as np

from ..errors import ScaleVAEError
from ._layout import (_figure, _frame_image, _suptitle, _window_axis, pick_panels,
                      window_label)

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
        ax.set_title(window_label(w, pixel_size, unit), fontsize=9, y=1.0)
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

    One mosaic image, a tile per window (z1 left to right, z2 bottom to top, each tile on its
    own min-max grey scale, bright = high), the latent range of each tile printed under it.

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
    from matplotlib.figure import Figure

    from ._layout import _grey_minmax, _mosaic_axes, _mosaic_image

    wins = pick_panels(sorted(manifolds), max_panels)
    grids = [_mosaic(manifolds[w]) for w in wins]
    side = max(max(g.shape) for g in grids)
    tiles = []
    for g in grids:  # each on its own grey scale, padded white to a common square
        tile = np.ones((side, side, 3), np.float32)
        tile[:g.shape[0], :g.shape[1]] = _grey_minmax(g)[..., None]
        tiles.append(tile)
    mosaic, boxes = _mosaic_image([tiles], gap=max(6, side // 12))
    panel, left, right, top, bottom = 2.5, 0.3, 0.3, 0.75, 0.75
    width = left + panel * len(wins) * mosaic.shape[1] / (len(wins) * side) + right
    height = top + bottom + (width - left - right) * mosaic.shape[0] / mosaic.shape[1]
    fig = Figure(figsize=(width, height), dpi=90)
    ax = _mosaic_axes(fig, [left / width, bottom / height, (width - left - right) / width,
                            (height - top - bottom) / height], mosaic)
    for w, (x0, y0, x1, y1) in zip(wins, boxes):
        rep = manifolds[w]
        ax.text((x0 + x1) / 2, y0 - 4, window_label(w, pixel_size, unit), ha="center",
                va="bottom", fontsize=9)
        g1 = rep["z1_grid"].values
        text = f"z1 {g1[0]:.2g} to {g1[-1]:.2g}"
        if "z2_grid" in rep.dims:
            g2 = rep["z2_grid"].values
            text += f", z2 {g2[0]:.2g} to {g2[-1]:.2g}"
        ax.text((x0 + x1) / 2, y1 + 4, text, ha="center", va="top", fontsize=8)
    ax.set_xlabel("z1 left to right, z2 bottom to top (each tile's latent range under it)",
                  fontsize=9, labelpad=16)
    _suptitle(fig, "latent representation (decoded latent grid)"
              + (f", {state} state" if state else ""))
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
        ax.set_title(f"PC{c}", fontsize=9, y=1.0)
    _suptitle(fig, "PCA of the latent densities across windows, "
              f"{pca.attrs.get('state', '')} state")
    return fig


def plot_trajectory_pca(tpca, image=None, pixel_size=None, unit=None):
    """Trajectory PCA: component curves vs window and loading maps (paper Fig. 6).

    Top: each component's weight per latent and window. Bottom: one mosaic, each keypoint's
    loading on each component painted over the frame, on one colour scale from minus to plus
    the component's largest absolute loading (printed in its tile).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> from scalevae.analysis import trajectory_pca
    >>> fig = plot_trajectory_pca(trajectory_pca(make_fake_result()))
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from ._layout import _grey, _mosaic_axes, _mosaic_image, _point_tile, _spacing

    comps = tpca["component"].values
    panel, maps_h, gap = 2.6, 2.6, 0.75
    bottom = 0.6
    fig, axes = _figure(len(comps), 1, panel=panel, left=0.8, right=1.0, top=1.05, wgap=1.8,
                        bottom=bottom + maps_h + gap)
    w = tpca["window"].values
    frame = tpca["frame"].values if "frame" in tpca.coords else np.zeros(tpca.sizes["point"])
    f0 = frame.min()
    on = frame == f0
    bg = _frame_image(image, f0)
    y, x = tpca["y"].values[on].astype(float), tpca["x"].values[on].astype(float)
    shape = bg.shape if bg is not None else (int(np.nanmax(y)) + 1, int(np.nanmax(x)) + 1)
    spacing, grey = _spacing(y, x, shape), (_grey(bg) if bg is not None else None)
    tiles, extremes = [], []
    for j, c in enumerate(comps):
        ax = axes[0, j]
        for lat in tpca["latent"].values:
            ax.plot(w, tpca["components"].sel(component=c, latent=lat), "o-", ms=3, label=lat)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_ylabel("component weight")
        e = float(tpca["explained_variance_ratio"].sel(component=c))
        # the window axis in physical units and the latents' legend once, on the first panel
        ax.set_title(f"PC{c} ({e:.0%} of variance)", fontsize=9,
                     **({} if j == 0 else {"y": 1.0}))
        if j == 0:
            ax.legend(fontsize=8, loc="best")
        _window_axis(ax, pixel_size, unit, secondary=j == 0)
        load = tpca["loadings"].sel(component=c).values[on]
        m = float(np.nanmax(np.abs(load))) or 1.0
        rgba = colormaps["RdBu_r"](Normalize(-m, m)(load))
        rgba[~np.isfinite(load)] = np.nan
        tiles.append(_point_tile(rgba, y, x, shape, spacing, grey))
        extremes.append(m)
    mosaic, boxes = _mosaic_image([tiles])
    width, height = fig.get_figwidth(), fig.get_figheight()
    left, inner = axes[0, 0].get_position().x0, axes[0, -1].get_position().x1
    # the mosaic's own aspect, as wide as the row above allows, centred under it
    span = min((inner - left) * width, maps_h * mosaic.shape[1] / mosaic.shape[0]) / width
    x0 = (left + inner - span) / 2
    ax = _mosaic_axes(fig, [x0, bottom / height, span, maps_h / height], mosaic)
    for c, m, (bx0, by0, bx1, _) in zip(comps, extremes, boxes):
        ax.text((bx0 + bx1) / 2, by0 - 4, f"PC{c} loading (\u00b1{m:.3g})", ha="center",
                va="bottom", fontsize=9)
    ax.set_xlabel("each tile is the frame: x (px) left to right, y (px) top to bottom",
                  fontsize=8)
    cax = fig.add_axes([x0 + span + 0.15 / width, bottom / height, 0.12 / width,
                        maps_h / height])
    cb = fig.colorbar(ScalarMappable(Normalize(-1, 1), "RdBu_r"), cax=cax, ticks=[-1, 0, 1])
    cb.ax.set_yticklabels(["-max", "0", "+max"], fontsize=8)
    cb.set_label("loading / the component's largest |loading|", fontsize=8)
    _suptitle(fig, "PCA of per-keypoint latent trajectories, "
              f"{tpca.attrs.get('state', '')} state"
              + (f" (maps: frame {f0})" if len(np.unique(frame)) > 1 else ""))
    return fig


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
        ax.set_title(f"{window_label(w, pixel_size, unit)}: {len(sel)} peak(s)", fontsize=9, y=1.0)
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
    _suptitle(fig, "latent distribution (KDE) and its peaks (candidate structural elements), "
              f"{density.attrs.get('state', '')} state")
    return fig
