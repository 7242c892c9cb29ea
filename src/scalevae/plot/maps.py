"""Maps over the input frame, each drawn as one mosaic image: latent images (each keypoint
coloured by its latent value and angle, per window) and outlier scores."""

from __future__ import annotations

import numpy as np

from ..errors import ScaleVAEError
from ._layout import _frame_image, _robust_limits, _suptitle, pick_panels, window_label


def plot_latent_images(images, image=None, max_panels=5, pixel_size=None, unit=None):
    """Each keypoint coloured by its latent value (and angle), per window, over the image.

    One mosaic: a row per latent (and the angle), a column per window, each tile the whole
    frame with the keypoints painted over it (one image, one axes: drawn in a fraction of the
    time a grid of axes takes).

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
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from ._layout import _grey, _mosaic_axes, _mosaic_image, _point_tile, _spacing

    wins = pick_panels(images["window"].values, max_panels)
    rows = [str(k) for k in images["latent"].values] + (["angle"] if "angle" in images else [])
    grid = images.attrs.get("layout") == "grid"
    frame0 = None
    bg = _frame_image(image, 0)
    tiles, ranges = [], []
    for row in rows:
        var = images["angle"] if row == "angle" else images["z"].sel(latent=row)
        if "frame" in var.dims:
            frame0 = var["frame"].values[0]
            var = var.isel(frame=0)
        elif not grid and "frame" in var.coords:
            frame0 = var["frame"].values.min()
            var = var.isel(point=np.flatnonzero(var["frame"].values == frame0))
        if grid:
            gy, gx = np.meshgrid(var["gy"].values, var["gx"].values, indexing="ij")
            y, x = gy.ravel().astype(float), gx.ravel().astype(float)
        else:
            y, x = var["y"].values.astype(float), var["x"].values.astype(float)
        shape = bg.shape if bg is not None else (int(np.nanmax(y)) + 1, int(np.nanmax(x)) + 1)
        spacing = _spacing(y, x, shape)
        grey = _grey(bg) if bg is not None else None
        tiles.append([])
        ranges.append([])
        for w in wins:
            v = var.sel(window=w).values.ravel()
            if row == "angle":
                cmap, (lo, hi) = "twilight", (-np.pi, np.pi)
            else:
                # Own colour range per window: the spread of a latent often changes by orders
                # of magnitude between windows, and one shared range would flatten all but one.
                cmap, (lo, hi) = "viridis", _robust_limits(v)
            rgba = colormaps[cmap](Normalize(lo, hi)(v))
            rgba[~np.isfinite(v)] = np.nan
            tiles[-1].append(_point_tile(rgba, y, x, shape, spacing, grey))
            ranges[-1].append((lo, hi))
    mosaic, boxes = _mosaic_image(tiles)
    mh, mw = mosaic.shape[:2]
    panel = 2.3  # inches per tile column
    left, right, top, bottom = 0.8, 1.5, 0.7, 0.45
    width = left + panel * len(wins) * (1 + 6 / tiles[0][0].shape[1])
    height = top + bottom + (width - left) * mh / mw
    width += right
    fig = Figure(figsize=(width, height), dpi=90)
    ax = _mosaic_axes(fig, [left / width, bottom / height, (width - left - right) / width,
                            (height - top - bottom) / height], mosaic)
    for j, w in enumerate(wins):
        x0, y0, x1, _ = boxes[j]
        ax.text((x0 + x1) / 2, y0 - 4, window_label(w, pixel_size, unit), ha="center",
                va="bottom", fontsize=9)
    for i, row in enumerate(rows):
        x0, y0, _, y1 = boxes[i * len(wins)]
        ax.text(x0 - 6, (y0 + y1) / 2, row, ha="right", va="center", fontsize=10, rotation=90)
        if row == "angle":
            continue
        for j in range(len(wins)):
            bx0, _, _, by1 = boxes[i * len(wins) + j]
            lo, hi = ranges[i][j]
            ax.text(bx0 + 2, by1 - 2, f"{lo:.3g} to {hi:.3g}", fontsize=7, va="bottom",
                    ha="left", bbox=dict(fc="white", ec="none", alpha=0.7, pad=1))
    shape_txt = f"{tiles[0][0].shape[1]} x {tiles[0][0].shape[0]}"
    ax.set_xlabel("each tile is the whole frame: x (px) left to right, y (px) top to bottom"
                  + (f" (drawn at {shape_txt} px)" if bg is None else ""), fontsize=9)
    bar_h = (height - top - bottom) / height
    n_lat = len(rows) - (1 if "angle" in rows else 0)
    cax = fig.add_axes([1 - (right - 0.25) / width, bottom / height + bar_h * (1 - n_lat / len(rows)),
                        0.12 / width, bar_h * n_lat / len(rows)])
    cb = fig.colorbar(ScalarMappable(Normalize(0, 1), "viridis"), cax=cax, ticks=[0, 1])
    cb.ax.set_yticklabels(["low", "high"], fontsize=8)
    cb.set_label("latent, each tile's 1-99 % range (printed in it)", fontsize=8)
    if "angle" in rows:
        cax = fig.add_axes([1 - (right - 0.25) / width, bottom / height,
                            0.12 / width, bar_h / len(rows) * 0.95])
        cb = fig.colorbar(ScalarMappable(Normalize(-np.pi, np.pi), "twilight"), cax=cax)
        cb.ax.tick_params(labelsize=8)
        cb.set_label("angle (rad)", fontsize=8)
    title = f"latent images, {images.attrs.get('state', '')} state"
    _suptitle(fig, title + (f" (frame {frame0})" if frame0 is not None else ""))
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
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from ._layout import _grey, _mosaic_axes, _mosaic_image, _point_tile, _spacing, _tile_step

    first = scores[0]
    frame = first["frame"].values if "frame" in first.coords else np.zeros(first.size, int)
    v0 = np.where(np.isfinite(first.values), first.values, -np.inf)
    f0 = frame[int(np.argmax(v0))]
    on = frame == f0
    bg = _frame_image(image, f0)
    y, x = first["y"].values[on].astype(float), first["x"].values[on].astype(float)
    shape = bg.shape if bg is not None else (int(np.nanmax(y)) + 1, int(np.nanmax(x)) + 1)
    spacing, grey = _spacing(y, x, shape), (_grey(bg) if bg is not None else None)
    # the maps: one mosaic, a tile per window, each on its own 1-99 % colour range
    tiles, ranges, marks = [], [], []
    for sc in scores:
        v = sc.values[on]
        lo, hi = _robust_limits(v)
        rgba = colormaps["inferno"](Normalize(lo, hi)(v))
        rgba[~np.isfinite(v)] = np.nan
        tiles.append(_point_tile(rgba, y, x, shape, spacing, grey))
        ranges.append((lo, hi))
        marks.append(np.argsort(-np.where(np.isfinite(v), v, -np.inf))[:n_mark])
    mosaic, boxes = _mosaic_image([tiles])
    step = _tile_step(shape)
    panel, hist_w, left, gap, right, top, bottom = 2.9, 2.9, 0.3, 1.45, 0.3, 0.75, 0.6
    maps_w = panel * mosaic.shape[1] / tiles[0].shape[1]
    height = top + bottom + panel * mosaic.shape[0] / tiles[0].shape[0]
    width = left + maps_w + gap + hist_w + right
    fig = Figure(figsize=(width, height), dpi=90)
    ax = _mosaic_axes(fig, [left / width, bottom / height, maps_w / width,
                            (height - top - bottom) / height], mosaic)
    for sc, (lo, hi), order, (bx0, by0, bx1, by1) in zip(scores, ranges, marks, boxes):
        mx, my = bx0 + x[order] / step, by0 + y[order] / step
        ax.scatter(mx, my, s=70, facecolors="none", edgecolors="#37e0ff", linewidths=1.2)
        for n, (px, py) in enumerate(zip(mx, my), 1):
            ax.annotate(str(n), (px, py), xytext=(5, 4), textcoords="offset points",
                        color="#37e0ff", fontsize=7, fontweight="bold")
        ax.text((bx0 + bx1) / 2, by0 - 4, window_label(sc.attrs.get("window", 0), pixel_size,
                                                         unit), ha="center", va="bottom",
                fontsize=9)
        ax.text(bx0 + 2, by1 - 2, f"{lo:.3g} to {hi:.3g}", fontsize=7, va="bottom", ha="left",
                bbox=dict(fc="white", ec="none", alpha=0.7, pad=1))
    ax.set_xlim(-0.5, mosaic.shape[1] - 0.5)
    ax.set_ylim(mosaic.shape[0] - 0.5, -0.5)
    # where each window's tile lies in the mosaic and its px per frame px, for scripts and tests
    ax.tile_boxes, ax.tile_step = boxes, step
    ax.set_xlabel("each tile is the frame: x (px) left to right, y (px) top to bottom",
                  fontsize=8)
    cax = fig.add_axes([(left + maps_w + 0.12) / width, bottom / height, 0.12 / width,
                        (height - top - bottom) / height])
    cb = fig.colorbar(ScalarMappable(Normalize(0, 1), "inferno"), cax=cax, ticks=[0, 1])
    cb.ax.set_yticklabels(["low", "high"], fontsize=8)
    cb.set_label("outlier score, each tile's 1-99 % range (printed in it)", fontsize=8)
    hx = fig.add_axes([(left + maps_w + gap) / width, bottom / height, hist_w / width,
                       (height - top - bottom) / height])
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
