"""The report's interactive explorer: linked views of one run, drawn with Bokeh.

:func:`explorer_html` returns the HTML of the explorer section: the input image with every drawn
keypoint coloured by a chosen latent (or the angle), the latent scatter of the chosen window and
state, a window slider, an instant/final toggle, the patches of one keypoint at every window (as
the model saw them, and the final model's reconstruction) and its latent trajectory z(w).
Selecting with the box or lasso tool in either view selects the same keypoints in the other
(one shared Bokeh data source); a click on a keypoint shows its patches and trajectory.

Everything is inline (BokehJS; the latents as base64 float16 arrays, 3 significant digits, more
than a scatter plot resolves; the patches as one WebP image per kind, decoded by the browser),
so the page works offline from ``file://``. The same actions are exposed to scripts and tests as
``window.scalevaeExplorer``: ``setWindow(px)``, ``setState(name)``, ``selectPoint(i)`` and
``selectLatentBox(z1min, z1max, z2min, z2max)`` (returns the selected point indices), where point
indices are those of ``result.nc``.
"""

from __future__ import annotations

import base64
import json

import numpy as np

from ._explorer_assets import _CSS, _JS
from .page import esc, json_attr, note

__all__ = ["explorer_html", "explorer_patches", "drawn_points", "patch_points"]

#: Keypoints drawn at most; larger runs draw an even subsample (stated in the page).
MAX_DRAWN = 20000
#: Keypoints whose patches (input and reconstruction, every window) are stored in the page:
#: 120 keep the page's patches near 0.4 MB (WebP, quality :data:`PATCH_QUALITY`).
MAX_PATCH_POINTS = 120
#: WebP quality of the stored patches (grey levels within a few of 255 of the exact ones).
PATCH_QUALITY = 90
#: Longest side of the background image, in pixels (larger frames are shown subsampled).
MAX_IMAGE_SIDE = 512


def drawn_points(n_points, max_drawn=MAX_DRAWN):
    """Indices of the keypoints the explorer draws: all of them, or an even subsample.

    Parameters
    ----------
    n_points : int
        Keypoints in the run.
    max_drawn : int
        The most drawn.

    Returns
    -------
    (m,) int array
        Sorted point indices, ``m = min(n_points, max_drawn)``.

    Examples
    --------
    >>> drawn_points(5, 10)
    array([0, 1, 2, 3, 4])
    >>> drawn_points(10, 4)
    array([0, 3, 6, 9])
    """
    if n_points <= max_drawn:
        return np.arange(n_points)
    return np.unique(np.round(np.linspace(0, n_points - 1, max_drawn)).astype(int))


def patch_points(drawn, max_patch_points=MAX_PATCH_POINTS):
    """The drawn keypoints whose patches the page stores: all, or an even subsample.

    Examples
    --------
    >>> patch_points(np.arange(0, 20, 2), 3)
    array([ 0,  8, 18])
    """
    drawn = np.asarray(drawn)
    if len(drawn) <= max_patch_points:
        return drawn
    return drawn[np.unique(np.round(np.linspace(0, len(drawn) - 1, max_patch_points))
                           .astype(int))]


def _b64(array, dtype):
    return base64.b64encode(np.ascontiguousarray(array, dtype).tobytes()).decode("ascii")


def _atlas_webp(patches):
    """uint8 patches (window, point, r, r) as one grey WebP image, base64: row block ``k`` is
    point ``k``, column block ``w`` window ``w`` (what the page's script cuts them from)."""
    import io

    from PIL import Image

    nw, n, r, _ = patches.shape
    atlas = np.ascontiguousarray(patches.transpose(1, 2, 0, 3).reshape(n * r, nw * r))
    buf = io.BytesIO()
    Image.fromarray(atlas).save(buf, format="webp", quality=PATCH_QUALITY, method=4)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _to_uint8(values, lo, hi):
    scaled = (np.asarray(values, np.float64) - lo) / (hi - lo if hi > lo else 1.0)
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def _background(image, frame):
    """The frame under the keypoints as uint8 (1-99 % stretch) and its subsampling step."""
    img = np.asarray(image[frame], np.float32)
    step = int(np.ceil(max(img.shape) / MAX_IMAGE_SIDE))
    small = img[::step, ::step]
    lo, hi = np.nanpercentile(small, [1, 99])
    return _to_uint8(np.nan_to_num(small, nan=float(lo)), lo, hi), step


def _patches(ds, image, models, idx):
    """Input patches (as the model saw them) and final-model reconstructions of points ``idx``
    at every window, uint8 (window, point, r, r) each, on one shared grey scale; or the
    reason they are missing."""
    if image is None:
        return None, "no input image (input.npy) in the run folder"
    from ..patches import extract_patches

    norm = json_attr(ds, "normalization")
    config = json_attr(ds, "config") or {}
    r = int(ds.attrs.get("patch_size", 0))
    if not isinstance(norm, dict) or r < 1:
        return None, "the result holds no normalisation or patch size"
    pts = np.column_stack([ds["frame"].values, ds["y"].values, ds["x"].values])[idx]
    windows = [int(w) for w in ds["window"].values]
    seen = np.stack([extract_patches(image, pts, w, r, padding=config.get("padding"),
                                     normalization=norm) for w in windows])
    lo, hi = np.nanpercentile(seen, [0.5, 99.5])
    model = models.get(None) if models is not None else None
    recon = None if model is None else _decode(model, ds, idx)
    return (_to_uint8(seen, lo, hi), None if recon is None else _to_uint8(recon, lo, hi)), None


def _decode(model, ds, idx):
    """The final model's patches (window, point, r, r) at the final state's z, angle and shift
    of points ``idx``, every window in one batch."""
    import torch

    def values(name):
        v = ds[name].sel(state="final").values[:, idx]  # (window, point, ...)
        return torch.as_tensor(v.reshape(-1, *v.shape[2:]), dtype=torch.float32)

    extra = {name: values(name) for name in ("angle", "shift") if name in ds}
    with torch.inference_mode():
        out = model.decode(values("z_mean"), **extra)
    return out.detach().float().cpu().numpy().reshape(ds.sizes["window"], len(idx),
                                                      *out.shape[-2:])


def _payload(ds, image, models, drawn, stored, patches=None):
    """The arrays the page's script reads: latents per state, positions, patches
    (``patches``: :func:`explorer_patches`, computed here when None)."""
    states = [str(s) for s in ds["state"].values]
    latents = [str(k) for k in ds["latent"].values]
    variables = latents + (["angle"] if "angle" in ds else [])
    data = {"windows": [int(w) for w in ds["window"].values], "states": states,
            "latents": latents, "variables": variables, "n_points": int(ds.sizes["point"]),
            "drawn": drawn.tolist(), "patch_points": stored.tolist(),
            "frame": ds["frame"].values[drawn].astype(int).tolist(),
            "x": _b64(ds["x"].values[drawn], np.float32),
            "y": _b64(ds["y"].values[drawn], np.float32),
            "z": {}, "angle": {}, "range": {}}
    data.update(explorer_patches(ds, image, models, stored) if patches is None else patches)
    for s in states:
        z = ds["z_mean"].sel(state=s).transpose("window", "point", "latent").values[:, drawn]
        data["z"][s] = _b64(z, np.float16)  # (window, drawn, latent)
        ranges = {k: [float(np.nanmin(z[..., i])), float(np.nanmax(z[..., i]))]
                  for i, k in enumerate(latents)}
        if "angle" in ds:
            a = ds["angle"].sel(state=s).transpose("window", "point").values[:, drawn]
            data["angle"][s] = _b64(a, np.float16)
            ranges["angle"] = [float(np.nanmin(a)), float(np.nanmax(a))]
        data["range"][s] = ranges
    return data


def _first_state(states, state):
    """The state the explorer opens on: ``state`` (the one the recommendation reads) when the
    result holds it, else the final one."""
    return state if state in states else ("final" if "final" in states else states[0])


def _figures(ds, image, data, recommended, shown_state=None):
    """The Bokeh layout (image view, latent view, trajectory, widgets) and the frame shown."""
    from bokeh.layouts import column, row
    from bokeh.models import (BoxSelectTool, CDSView, ColumnDataSource, CustomJS, IndexFilter,
                              LassoSelectTool, LinearColorMapper, Range1d, Span, TapTool)
    from bokeh.palettes import Greys256, Viridis256
    from bokeh.plotting import figure

    windows = data["windows"]
    frames = np.asarray(data["frame"])
    frame = int(frames[0]) if len(frames) else 0
    start = windows.index(recommended) if recommended in windows else len(windows) - 1
    state = _first_state(data["states"], shown_state)
    z = np.frombuffer(base64.b64decode(data["z"][state]), np.float16).reshape(
        len(windows), len(data["drawn"]), len(data["latents"]))[start]
    lo, hi = data["range"][state][data["variables"][0]]
    z = z.astype(np.float32)  # float16 would reach Bokeh as a list of numbers
    src = ColumnDataSource({"x": np.frombuffer(base64.b64decode(data["x"]), np.float32),
                            "y": np.frombuffer(base64.b64decode(data["y"]), np.float32),
                            "z1": z[:, 0], "z2": z[:, 1] if z.shape[1] > 1 else z[:, 0] * 0,
                            "c": z[:, 0], "point": np.asarray(data["drawn"], np.int32)},
                           name="sv_points")
    cmap = LinearColorMapper(palette=Viridis256, low=lo, high=hi, name="sv_cmap")
    tools = "pan,wheel_zoom,reset"
    common = dict(tools=tools, width=420, height=400, toolbar_location="above")

    if image is not None:
        h, w = image.shape[-2:]
    else:
        h, w = float(np.max(ds["y"])) + 1, float(np.max(ds["x"])) + 1
    img_fig = figure(title=f"Keypoints on frame {frame}", x_range=Range1d(-0.5, w - 0.5),
                     y_range=Range1d(h - 0.5, -0.5), match_aspect=True, name="sv_image",
                     **common)
    if image is not None:
        bg, step = _background(image, frame)
        img_fig.image(image=[bg], x=-0.5, y=-0.5, dw=w, dh=h,
                      # Greys256 runs black to white: low values dark, as in the static
                      # figures (matplotlib's "gray") and the patches below
                      color_mapper=LinearColorMapper(palette=Greys256, low=0, high=255))
    on_frame = IndexFilter(np.flatnonzero(frames == frame).tolist())
    img_pts = img_fig.scatter("x", "y", source=src, view=CDSView(filter=on_frame), size=5,
                              fill_color={"field": "c", "transform": cmap}, line_color=None,
                              nonselection_fill_alpha=0.15, selection_line_color="red")
    lat_fig = figure(title="Latent space", x_axis_label=data["latents"][0],
                     y_axis_label=data["latents"][min(1, len(data["latents"]) - 1)],
                     name="sv_latent", **common)
    lat_pts = lat_fig.scatter("z1", "z2", source=src, size=4, alpha=0.6,
                              fill_color={"field": "c", "transform": cmap}, line_color=None,
                              nonselection_fill_alpha=0.1, selection_line_color="red")
    for fig, rend in ((img_fig, img_pts), (lat_fig, lat_pts)):
        fig.add_tools(BoxSelectTool(renderers=[rend]), LassoSelectTool(renderers=[rend]),
                      TapTool(renderers=[rend]))
    img_fig.add_layout(_colorbar(cmap), "right")

    traj = ColumnDataSource({"w": [], **{k: [] for k in data["latents"]}}, name="sv_traj")
    traj_fig = figure(title="Trajectory z(w) of the clicked keypoint", width=420, height=250,
                      x_axis_label="window (px)", tools="pan,wheel_zoom,reset",
                      toolbar_location="above", name="sv_trajfig")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b"]
    for i, k in enumerate(data["latents"]):
        traj_fig.line("w", k, source=traj, color=colours[i % 5], legend_label=k, line_width=2)
        traj_fig.scatter("w", k, source=traj, color=colours[i % 5], size=4)
    traj_fig.add_layout(Span(location=windows[start], dimension="height",
                             line_dash="dashed", name="sv_span"))

    src.selected.js_on_change("indices", CustomJS(
        code="window.scalevaeExplorer && window.scalevaeExplorer._selected();"))
    layout = column(row(img_fig, lat_fig), traj_fig, name="sv_layout")
    return layout, frame


def _controls(data, recommended, shown_state=None):
    """The window slider, state toggle and colour choice as plain HTML (Bokeh's widgets
    would add 0.4 MB of script to the page for three inputs), and the status line."""
    windows, states = data["windows"], data["states"]
    start = windows.index(recommended) if recommended in windows else len(windows) - 1
    state = _first_state(states, shown_state)
    radios = "".join(f"<label><input type='radio' name='sv-state' value='{esc(s)}'"
                     f"{' checked' if s == state else ''}> {esc(s)}</label> " for s in states)
    options = "".join(f"<option>{esc(v)}</option>" for v in data["variables"])
    return ("<div class='sv-controls'><label><span id='sv-wlabel'>window: "
            f"{windows[start]} px</span> <input type='range' id='sv-slider' min='0' "
            f"max='{max(len(windows) - 1, 1)}' step='1' value='{start}'"
            f"{' disabled' if len(windows) < 2 else ''}></label> {radios}"
            f"<label>colour by <select id='sv-colour'>{options}</select></label></div>"
            "<div id='sv-status' class='sub'></div>")


def _colorbar(cmap):
    from bokeh.models import ColorBar

    return ColorBar(color_mapper=cmap, width=8, name="sv_colorbar")


def explorer_patches(ds, image=None, models=None, stored=None):
    """The patches the explorer's page stores (input and reconstruction atlases of the
    :func:`patch_points`, WebP), apart from the Bokeh views so that the report computes
    them on a worker thread: the entries ``patch_size``, ``seen``, ``recon`` and
    ``patch_note`` of the page's data. ``stored``: the points whose patches are stored
    (default :func:`patch_points` of :func:`drawn_points`)."""
    if stored is None:
        stored = patch_points(drawn_points(ds.sizes["point"], MAX_DRAWN), MAX_PATCH_POINTS)
    patches, why = _patches(ds, image, models, stored)
    data = {}
    if patches is not None:
        seen, recon = patches
        data["patch_size"] = int(seen.shape[-1])
        data["seen"] = _atlas_webp(seen)  # (window, stored point, r, r) as an image
        data["recon"] = None if recon is None else _atlas_webp(recon)
    data["patch_note"] = why or ("" if patches[1] is not None else
                                 "reconstructions skipped: the final model did not load")
    return data


def explorer_html(ds, image=None, models=None, recommended=None, state=None, patches=None):
    """The explorer section of the report: linked views of one run (see the module docs).

    Parameters
    ----------
    ds : xarray.Dataset
        The run's result.
    image : (frame, y, x) array, optional
        The input stack: drawn under the keypoints and cut into the patches shown per keypoint
        (with the run's normalisation and patch size). Without it the keypoints are drawn on
        a blank canvas and no patches are shown.
    models : object with ``get(window)``, optional
        Gives the final model (``get(None)``) that decodes the reconstructions; None or a
        model that does not load leaves them out, with a note.
    recommended : int, optional
        The window (px) shown first; default the largest.
    patches : dict or concurrent.futures.Future of one, optional
        :func:`explorer_patches` of the same arguments, when computed elsewhere (a future is
        waited for only after the Bokeh views are built).
    state : {"instant", "final"}, optional
        The state shown first: the one the recommendation reads (the report's card); default
        the final state.

    Returns
    -------
    list of str
        HTML parts: heading, explanation, the Bokeh views with BokehJS inline, the data and
        the script that defines ``window.scalevaeExplorer``.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> parts = explorer_html(make_fake_result(n_windows=3))
    >>> any("window.scalevaeExplorer" in p for p in parts)
    True
    """
    from bokeh.embed import components
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE

    drawn = drawn_points(ds.sizes["point"], MAX_DRAWN)
    stored = patch_points(drawn, MAX_PATCH_POINTS)
    data = _payload(ds, image, models, drawn, stored, {} if patches is not None else None)
    layout, frame = _figures(ds, image, data, recommended, state)
    script, div = components(layout)
    bundle = bundle_for_objs_and_resources([layout], INLINE)
    if patches is not None:
        data.update(patches.result() if hasattr(patches, "result") else patches)
    n, m = ds.sizes["point"], len(drawn)
    intro = (f"<p>Drag the window slider, switch instant/final, colour the keypoints by a latent "
             f"or the angle. Box- or lasso-select in either view to select the same keypoints in "
             f"the other; click a keypoint for its patch at every window and its trajectory "
             f"z(w). The image shows the keypoints of frame {frame}; the latent view holds every "
             f"drawn keypoint.</p>")
    caps = [f"Drawn: {m} of {n} keypoints" + (f" (an even subsample; at most {MAX_DRAWN} are "
                                               "drawn)." if m < n else ".")]
    if "seen" in data:
        caps.append(f"Patches are stored for {len(stored)} keypoint(s)"
                    + (f" (an even subsample of the drawn ones; at most {MAX_PATCH_POINTS})"
                       if len(stored) < m else "")
                    + f": point {esc(', '.join(map(str, stored[:8])))}"
                    + (" ... (all listed in the page's data as patch_points)"
                       if len(stored) > 8 else "") + ".")
    out = ["<h2 id='explorer'>Explorer</h2>", f"<style>{_CSS}</style>", intro,
           "<p class='sub'>" + " ".join(caps) + "</p>"]
    if data.get("patch_note"):
        out.append(note(f"Explorer patches: {data['patch_note']}."))
    out += [bundle.js_raw and "\n".join(f"<script>{js}</script>" for js in bundle.js_raw),
            _controls(data, recommended, state), div, script, "<div id='sv-patches'>Click a keypoint to see its patches.</div>",
            "<script type='application/json' id='sv-data'>"
            + json.dumps(data).replace("</", "<\\/") + "</script>",
            f"<script>{_JS}</script>"]
    return out
