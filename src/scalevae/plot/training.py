"""Figures of training: loss per epoch and KL per latent."""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from ._layout import _colorbar, _figure, _suptitle, _window_axis

# Below this KL (nats) a latent carries (almost) nothing: the posterior collapsed to the prior.
COLLAPSE_NATS = 0.05


def _window_panel(ds, aspect, right, top):
    """One wide panel for a curve over the training run, and the run's windows."""
    fig, axes = _figure(1, 1, panel=3.0, aspect=aspect, left=0.9, right=right, top=top)
    return fig, axes[0, 0], ds["window"].values


def plot_loss(ds, pixel_size=None, unit=None):
    """Training loss per epoch, windows one after another (progressive training).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> fig = plot_loss(make_fake_result())
    """
    loss = ds["loss"].transpose("window", "epoch").values
    fig, ax, w = _window_panel(ds, aspect=1.67, right=1.1, top=0.45)
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
    ax.set_title("progressive training: loss per epoch, coloured by window", fontsize=10, y=1.0)
    return fig


def plot_kl(ds, pixel_size=None, unit=None):
    """KL divergence per latent at the end of each window: a latent near 0 has collapsed.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> fig = plot_kl(make_fake_result())
    """
    fig, ax, w = _window_panel(ds, aspect=1.6, right=0.3, top=0.95)
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
