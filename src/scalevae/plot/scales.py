"""Figures of scale: latent statistics per frame and window (paper Figs. 7, 10) and the
length-scale analysis with its recommended window."""

from __future__ import annotations

import numpy as np

from ._layout import _colorbar, _figure, _suptitle, _window_axis, window_label

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
        # the rule's curve: every rise of it is a length scale, the strongest one recommended
        c = scales["change_from_first"]
        ax2.plot(w, c, "o-", color="tab:green", ms=3, label="regrouping from the smallest window")
        if "rise_onset" in scales:
            for k, (o, e) in enumerate(zip(scales["rise_onset"].values,
                                           scales["rise_end"].values)):
                ax2.axvspan(int(o), int(e), color="tab:orange", alpha=0.10, lw=0,
                            label="rises (length scales)" if k == 0 else None)
    ax2.set_ylabel("regrouping")
    ax2.set_xlabel("window (px)")
    ax2.legend(fontsize=8)
    pooled = scales.attrs.get("pooled_models")
    _suptitle(fig, f"{_answer(scales, rec, pixel_size, unit)}"
              + (f" ({pooled} models pooled; curves of the first)" if pooled else "")
              + f", {scales.attrs.get('state', '')} state")
    return fig


def _answer(scales, rec, pixel_size, unit):
    """The figure's title, worded as the report's card: a number only when conclusive,
    otherwise the interval and why (gradual, or still rising).

    Examples
    --------
    >>> import xarray as xr
    >>> _answer(xr.Dataset({"conclusive": False, "gradual": True, "recommended_low": 12,
    ...                     "recommended_high": 40}), 16, None, None)
    'no conclusive window (gradual): 12-40 px, most probable 16 px'
    """
    label = window_label(rec, pixel_size, unit)
    if "conclusive" not in scales or bool(scales["conclusive"]):
        return f"recommended window: {label}"
    why = ("gradual" if bool(scales.get("gradual", False)) else
           "still rising" if bool(scales.get("still_rising", True)) else "uncertain")
    interval = (f"{int(scales['recommended_low'])}-{int(scales['recommended_high'])} px, "
                if "recommended_low" in scales else "")
    return f"no conclusive window ({why}): {interval}most probable {label}"
