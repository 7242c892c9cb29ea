"""Latent images: each keypoint coloured by its latent value and angle, per window, drawn as one
mosaic image over the input frame."""

from __future__ import annotations

import numpy as np

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
