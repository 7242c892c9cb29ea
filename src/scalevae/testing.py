"""Small synthetic result Datasets with exactly the result's names (docs/internals.md, "The
result"), and a fake decoder.

Used by the analysis, plot and report tests so they do not need a trained model.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr


class FakeModel:
    """Stands in for ``scalevae.model.SIVAE``: ``decode`` draws stripes whose orientation
    follows ``z1`` and whose period follows ``z2``."""

    def __init__(self, patch_size=8, latent_dim=2):
        self.patch_size = patch_size
        self.latent_dim = latent_dim
        self.calls = 0

    def decode(self, z, angle=None, shift=None):
        import torch

        self.calls += 1
        r = self.patch_size
        c = torch.arange(r, dtype=torch.float32) - (r - 1) / 2
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        theta = z[:, 0, None, None]
        period = 3 + (z[:, 1, None, None].abs() if z.shape[1] > 1 else 0)
        return torch.sin(2 * np.pi * (xx * torch.cos(theta) + yy * torch.sin(theta)) / period)


def make_fake_result(n_windows=5, grid=(10, 12), n_frames=1, latent_dim=2, scattered=False,
                     control=False, seed=0, windows=None, z_mean=None, step=4, n_epochs=6,
                     z_std=None):
    """A result Dataset shaped like ``scalevae.run``'s.

    Keypoints are a ``grid`` (ny, nx) with spacing ``step`` px on every frame, or, with
    ``scattered``, random positions. ``z_mean`` (window, point, latent) overrides the latents
    of both states, ``z_std`` (same shape) their posterior widths (default 0.1).
    """
    rng = np.random.default_rng(seed)
    windows = np.asarray(windows if windows is not None else 8 + 4 * np.arange(n_windows), int)
    nw = len(windows)
    ny, nx = grid
    if scattered:
        n = ny * nx
        pts = [(f, y, x) for f in range(n_frames)
               for y, x in rng.uniform(20, 20 + step * max(ny, nx), (n, 2))]
    else:
        pts = [(f, 20 + step * i, 20 + step * j) for f in range(n_frames)
               for i in range(ny) for j in range(nx)]
    pts = np.array(pts, float)
    npt = len(pts)
    if z_mean is None:
        # Latents that depend on position with a pattern that sharpens with the window.
        ph = pts[:, 2][None, :] / 9.0 + windows[:, None] / 20.0
        z1 = np.sin(ph) + 0.1 * pts[:, 0][None, :]
        z2 = np.cos(pts[:, 1][None, :] / 7.0) * (windows[:, None] / windows.max())
        zs = [z1, z2] + [0.3 * rng.standard_normal((nw, npt)) for _ in range(latent_dim - 2)]
        z_mean = np.stack(zs[:latent_dim], -1) + 0.05 * rng.standard_normal((nw, npt, latent_dim))
    z_mean = np.asarray(z_mean, float)
    latent_dim = z_mean.shape[-1]
    zm = np.stack([z_mean + 0.02 * rng.standard_normal(z_mean.shape), z_mean])
    loss = np.full((nw, n_epochs), np.nan)
    for i in range(nw):
        e = n_epochs - (i % 2)
        loss[i, :e] = 100.0 / (1 + np.arange(e)) + 10 + i
    ds = xr.Dataset(
        {"z_mean": (("state", "window", "point", "latent"), zm),
         "z_std": (("state", "window", "point", "latent"),
                   np.full(zm.shape, 0.1) if z_std is None else np.stack([z_std, z_std])),
         "angle": (("state", "window", "point"), rng.uniform(-np.pi, np.pi, zm.shape[:3])),
         "shift": (("state", "window", "point", "axis"), 0.05 * rng.standard_normal(
             zm.shape[:3] + (2,))),
         "loss": (("window", "epoch"), loss),
         "kl": (("window", "latent"), np.tile(np.linspace(2.0, 0.01, latent_dim), (nw, 1)))},
        coords={"state": ["instant", "final"], "window": windows,
                "latent": [f"z{i + 1}" for i in range(latent_dim)], "axis": ["y", "x"],
                "epoch": np.arange(n_epochs),
                "frame": ("point", pts[:, 0].astype(int)), "y": ("point", pts[:, 1]),
                "x": ("point", pts[:, 2])},
        attrs={"config": json.dumps({"windows": windows.tolist(), "keypoints": f"grid:{step}",
                                     "invariance": "rotation", "latent_dim": latent_dim,
                                     "epochs": n_epochs, "seed": seed}),
               "patch_size": int(windows[0]), "pixel_size": 3.9, "unit": "nm",
               "normalization": json.dumps({"offset": 0.0, "scale": 1.0, "rule": "minmax"}),
               "version": "0.1.0", "invariance": "rotation",
               "timings": json.dumps({"keypoints": 0.1, "patches": 1.2, "train": 30.5})})
    ds["loss"].attrs["units"] = "nats"
    ds["kl"].attrs["units"] = "nats"
    if control:
        ds = ds.assign_coords(control=("frame", np.linspace(0, 10, n_frames)))
        ds["control"].attrs["name"] = "time (s)"
    if not scattered:
        ds.attrs["grid_shape"] = [ny, nx]
    return ds


def make_image(n_frames=1, shape=(80, 96), seed=0):
    """An input stack (frame, y, x) float32 that covers the fake result's keypoints."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.sin(xx / 5.0) * np.cos(yy / 7.0)
    return (img[None] + 0.1 * rng.standard_normal((n_frames, *shape))).astype(np.float32)


def write_sine_stack(path, frames, side, seed=0):
    """A ``(frames, side, side)`` float32 ``.npy`` of sines plus noise, written frame by frame
    (never whole in memory: stacks larger than memory for the lazy-reading tests and the
    memory benchmark); returns ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_sine_stack(pathlib.Path(tempfile.mkdtemp()) / "s.npy", 2, 16)
    >>> np.load(p).shape
    (2, 16, 16)
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side]
    base = (np.sin(x / 3.0) + np.cos(y / 5.0)).astype("float32")
    a = np.lib.format.open_memmap(path, "w+", np.float32, (frames, side, side))
    for f in range(frames):
        a[f] = base + 0.3 * rng.normal(size=base.shape).astype("float32")
    a.flush()
    del a
    return path
