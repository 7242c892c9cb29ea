"""Shared figure machinery: fixed-grid figures, colorbars, window axes, mosaics of tiles.

Every figure of :mod:`scalevae.plot` is built from these helpers, without ``pyplot``.

Cost rules the figures follow (the report draws ~20 of them): grids of images are one mosaic
image in one axes (:func:`_mosaic_image`), not an axes per tile; a title gets ``y=1.0`` where
no axis sits on top of its panel, which skips matplotlib's search for overlapping tick labels
at every draw (the title lands where that search would put it); at most five ticks per axis
(:func:`thin_ticks`, applied by the report when it renders).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..io.units import physical_pixel

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

    A fixed layout instead of matplotlib's constrained layout: the figure draws once, and no
    tick label is measured to place the panels.
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


#: Major ticks per linear axis at most (:func:`thin_ticks`): each tick costs about a
#: millisecond to build and draw, and matplotlib's default puts up to ten on a panel.
MAX_TICKS = 4


def thin_ticks(fig, nbins=MAX_TICKS):
    """At most ``nbins + 1`` major ticks (at round numbers) on every automatically ticked
    linear axis of ``fig``, and no minor ticks on a logarithmic one (its decades stay
    labelled): a report of ~20 figures otherwise spends most of its drawing time building
    tick marks. Axes with ticks set explicitly are left as they are.

    Examples
    --------
    >>> fig, axes = _figure(1, 1)
    >>> _ = axes[0, 0].plot([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    >>> thin_ticks(fig)
    >>> len(axes[0, 0].get_yticks()) <= MAX_TICKS + 3
    True
    """
    from matplotlib.ticker import AutoLocator, LogLocator, MaxNLocator, NullLocator

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if type(axis.get_major_locator()) is AutoLocator:
                axis.set_major_locator(MaxNLocator(nbins, steps=[1, 2, 2.5, 5, 10]))
            if isinstance(axis.get_minor_locator(), LogLocator):
                axis.set_minor_locator(NullLocator())


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
    """One frame of ``image`` (2-D, a stack, or a frame source read on demand: the frame is
    indexed before anything is converted, so only it is read)."""
    if image is None:
        return None
    if getattr(image, "ndim", np.ndim(image)) == 2:
        return np.asarray(image)
    return np.asarray(image[min(int(frame), len(image) - 1)])


def _show_image(ax, img):
    lo, hi = np.percentile(img, [1, 99])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")


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


# --------------------------------------------------------------------------- mosaics
# A grid of tiles drawn as one RGB image in one axes: drawing cost is that of one image, where
# one axes per tile cost ~50 ms each in tick set-up alone (163 axes made the report 18 s).

#: Longest side of one mosaic tile, in pixels (about a 2.3-inch panel at the report's 90 dpi).
TILE_PIXELS = 200


def _grey(img):
    """A frame as grey levels in [0, 1] on the 1-99 % stretch (as :func:`_show_image`)."""
    img = np.asarray(img, np.float32)
    lo, hi = np.nanpercentile(img, [1, 99])
    return np.clip((np.nan_to_num(img, nan=float(lo)) - lo) / (hi - lo if hi > lo else 1.0),
                   0.0, 1.0)


def _grey_minmax(img):
    """An image as grey levels in [0, 1] on its own min-max range (as a lone ``imshow``
    draws it); NaN drawn as the minimum."""
    img = np.asarray(img, np.float32)
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    return np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def _tile_step(shape):
    """Subsampling step so that a frame of ``shape`` fits :data:`TILE_PIXELS`."""
    return max(1, int(np.ceil(max(shape) / TILE_PIXELS)))


def _point_tile(rgba, y, x, shape, spacing, background=None, alpha=0.75):
    """Keypoint colours ``rgba`` (n, 4) painted as squares ``spacing`` px wide at (y, x) over
    a frame of ``shape`` (grey ``background`` in [0, 1] underneath, at ``1 - alpha``): one RGB
    tile, subsampled to :data:`TILE_PIXELS` (values at keypoints over the image, as pixels)."""
    step = _tile_step(shape)
    h, w = (int(np.ceil(s / step)) for s in shape)
    if background is not None:
        grey = background[::step, ::step][:h, :w]
        tile = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    else:
        tile = np.full((h, w, 3), 0.94, np.float32)  # the frame, light grey
    keep = np.isfinite(rgba).all(1) & np.isfinite(y) & np.isfinite(x)
    rgba, y, x = rgba[keep], y[keep], x[keep]
    d = max(1, int(round(spacing / step)))
    iy = np.round(y / step).astype(int) - d // 2
    ix = np.round(x / step).astype(int) - d // 2
    paint = np.full((h, w), -1, np.int64)
    order = np.arange(len(rgba))
    for oy in range(d):
        for ox in range(d):
            yy, xx = iy + oy, ix + ox
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            paint[yy[ok], xx[ok]] = order[ok]
    on = paint >= 0
    a = alpha if background is not None else 1.0
    tile[on] = (1 - a) * tile[on] + a * rgba[paint[on], :3]
    return tile


def _spacing(y, x, shape):
    """Typical distance (px) between keypoints: the grid step, or sqrt(area / n)."""
    uy, ux = np.unique(y), np.unique(x)
    if 1 < len(uy) * len(ux) <= 4 * len(y):  # a (nearly) regular grid
        return float(min(np.min(np.diff(uy)), np.min(np.diff(ux))))
    area = max(np.ptp(y) * np.ptp(x), 1.0) if len(y) > 1 else float(shape[0] * shape[1])
    return 0.8 * float(np.sqrt(area / max(len(y), 1)))


def _mosaic_image(tiles, gap=6):
    """Tiles ``[[rgb, ...], ...]`` (rows of equal-shape RGB arrays) -> one white-gapped RGB
    image, and each tile's (x0, y0, x1, y1) box in it."""
    rows, cols = len(tiles), len(tiles[0])
    th, tw = tiles[0][0].shape[:2]
    out = np.ones((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), np.float32)
    boxes = []
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            y0, x0 = i * (th + gap), j * (tw + gap)
            out[y0:y0 + th, x0:x0 + tw] = t
            boxes.append((x0, y0, x0 + tw, y0 + th))
    return out, boxes


def _mosaic_axes(fig, rect, mosaic):
    """One axes at ``rect`` (figure fraction) showing ``mosaic`` without ticks."""
    ax = fig.add_axes(rect)
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    return ax
