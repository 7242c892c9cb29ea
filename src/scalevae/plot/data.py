"""Figures of the input: the image with its keypoints, and example patches (paper Fig. 2)."""

from __future__ import annotations

import numpy as np

from .._checks import as_frames
from ..errors import ScaleVAEError
from ..io.units import physical_pixel
from ..keypoints import inside_mask
from ..patches import extract_patches
from matplotlib.figure import Figure

from ._layout import (_dot_size, _figure, _frame_image, _mosaic_axes, _mosaic_image, _show_image,
                      _suptitle, pick_panels, window_label)

#: Side (px) of one example-patch tile in the mosaic: every patch is drawn at it, nearest.
_EXAMPLE_TILE = 128

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
    ax.set_title(f"frame {frame}: {len(yx)} keypoints{scale}", fontsize=10, y=1.0)
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
    stack = as_frames(stack)  # not cast whole: a mapped stack is read only where the patches are
    points = np.asarray(points, float)
    if len(points) == 0:
        raise ScaleVAEError("no keypoints to show patches for")
    wins = pick_panels([int(w) for w in windows], max_windows)
    # Prefer keypoints whose largest shown patch lies inside the frame; pad only if none does.
    inside = inside_mask(points, stack.shape[1:], max(wins))
    pool = points[inside] if inside.any() else points
    padding = None if inside.any() else "constant"
    rng = np.random.default_rng(seed)
    sel = pool[np.sort(rng.choice(len(pool), min(n, len(pool)), replace=False))]
    # One mosaic image (a row per keypoint, a column per window): every patch at its own
    # pixel count, shown as square blocks on a common tile (nearest-neighbour), each on its own
    # min-max grey scale as a lone imshow would draw it.
    tiles = [[None] * len(wins) for _ in sel]
    for j, w in enumerate(wins):
        idx = np.arange(_EXAMPLE_TILE) * w // _EXAMPLE_TILE
        for i, p in enumerate(extract_patches(stack, sel, w, w, padding=padding)):
            p = np.asarray(p, np.float32)
            lo, hi = np.nanmin(p), np.nanmax(p)
            g = np.clip((np.nan_to_num(p, nan=lo) - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
            tiles[i][j] = np.repeat(g[np.ix_(idx, idx)][..., None], 3, axis=2)
    mosaic, boxes = _mosaic_image(tiles, gap=8)
    left, top, bottom, panel = 1.2, 0.75, 0.1, 1.4
    width = left + panel * len(wins) * mosaic.shape[1] / (len(wins) * _EXAMPLE_TILE) + 0.1
    height = top + bottom + (width - left - 0.1) * mosaic.shape[0] / mosaic.shape[1]
    fig = Figure(figsize=(width, height), dpi=90)
    ax = _mosaic_axes(fig, [left / width, bottom / height, (width - left - 0.1) / width,
                            (height - top - bottom) / height], mosaic)
    for j, w in enumerate(wins):
        x0, y0, x1, _ = boxes[j]
        ax.text((x0 + x1) / 2, y0 - 4, window_label(w, pixel_size, unit), ha="center",
                va="bottom", fontsize=9)
    ax.set_yticks([(b[1] + b[3]) / 2 for b in boxes[::len(wins)]],
                  [f"({q[1]:.0f}, {q[2]:.0f}) px" for q in sel], fontsize=8)
    ax.tick_params(left=False)
    ax.patch_windows = wins  # what each column shows, for scripts and tests
    _suptitle(fig, "patches around random keypoints (y, x) at growing windows")
    return fig
