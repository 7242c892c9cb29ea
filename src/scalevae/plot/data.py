"""Figures of the input: the image with its keypoints, and example patches (paper Fig. 2)."""

from __future__ import annotations

import numpy as np

from .._checks import as_frames
from ..errors import ScaleVAEError
from ..io.units import physical_pixel
from ..keypoints import inside_mask
from ..patches import extract_patches
from ._layout import (_dot_size, _figure, _frame_image, _show_image, _suptitle, pick_panels,
                      window_label)

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
    stack = as_frames(stack).astype(np.float32, copy=False)
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
