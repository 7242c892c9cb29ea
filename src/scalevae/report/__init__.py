"""A run's report: one self-contained HTML file a microscopist can open anywhere.

:func:`write_report` reads ``RUN_DIR/result.nc`` (and ``input.npy`` and the checkpoints when
present) and writes ``RUN_DIR/report.html``: the recommended length scale with its evidence,
every figure of :mod:`scalevae.plot` for the instant and final states, the training curves, the
per-latent KL (posterior-collapse check), timings and the full configuration. Figures are
embedded as PNG (base64), styles are inline, nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import xarray as xr

from .. import analysis as an
from .. import plot
from .._atomic import atomic_write
from ..errors import ScaleVAEError
from ..results import load_result
from ..io.units import physical_pixel

__all__ = ["write_report"]

_DPI = 90
_MAX_PANELS = 5
_MAX_PEAKS = 6  # density peaks shown (and decoded) per window
_N_OUTLIERS = 10  # keypoints circled on the outlier maps
# Keypoints that define the density for the outlier scores: the cost grows with
# (keypoints x this), and 5000 points already give a smooth 2-D density.
_OUTLIER_REFERENCE = 5000

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       background: #f6f7f9; color: #1d2330; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2em 1.6em 3em; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.1em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #d5dae3; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin: 1.4em 0 0.4em; }
.sub { color: #5b6475; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; background: #fff; }
td, th { border: 1px solid #d5dae3; padding: 0.25em 0.7em; text-align: left; font-size: 0.93em; }
th { background: #eef1f5; }
figure { background: #fff; border: 1px solid #d5dae3; border-radius: 6px; padding: 0.6em;
         margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #3d4554; font-size: 0.9em; margin-top: 0.4em; }
.big { font-size: 1.5em; font-weight: 600; color: #0b6e4f; }
.card { background: #fff; border: 1px solid #d5dae3; border-left: 5px solid #0b6e4f;
        border-radius: 6px; padding: 0.8em 1.1em; margin: 1em 0; }
.warn { border-left-color: #c0392b; }
.note { color: #7a4b00; background: #fff6e5; border: 1px solid #f0d9a8; border-radius: 4px;
        padding: 0.4em 0.8em; margin: 0.5em 0; font-size: 0.92em; }
pre { background: #fff; border: 1px solid #d5dae3; padding: 0.8em; overflow-x: auto;
      font-size: 0.85em; }
nav a { margin-right: 1em; }
"""


def _esc(text):
    return html.escape(str(text))


def _figure_html(fig, caption):
    buf = io.BytesIO()
    # zlib level 3 instead of 6: files ~10 % larger, encoding twice as fast
    fig.savefig(buf, format="png", dpi=_DPI, pil_kwargs={"compress_level": 3})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _note(text):
    return f'<p class="note">{_esc(text)}</p>'


def _table(rows, header=None):
    head = "".join(f"<th>{_esc(h)}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def _json_attr(ds, key):
    """An attribute that may hold JSON text; None when absent or unreadable."""
    value = ds.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _load_image(run_dir, image):
    if image is not None:
        data = getattr(image, "data", image)
        return np.asarray(data, np.float32)
    path = run_dir / "input.npy"
    return np.load(path).astype(np.float32) if path.exists() else None


class _Models:
    """Loads checkpoints lazily, once each; remembers why they could not be loaded."""

    def __init__(self, run_dir):
        self.run_dir, self.cache, self.error = run_dir, {}, None

    def get(self, window=None):
        if self.error is not None:
            return None
        if window not in self.cache:
            if not any(self.run_dir.glob("checkpoints/*.pt")):
                # checked first: importing the model code (torch) costs seconds
                self.error = f"no model checkpoints in {self.run_dir / 'checkpoints'}"
                return None
            try:
                from ..results import load_model

                self.cache[window] = load_model(self.run_dir, window=window)
            except ImportError as exc:
                self.error = f"the model loader is not available ({exc})"
            except (ScaleVAEError, OSError, RuntimeError, KeyError) as exc:
                self.error = str(exc)
            if self.error is not None:
                return None
        return self.cache[window]


def _summary(ds, image, phys):
    ps, unit = phys
    windows = [int(w) for w in ds["window"].values]
    shape = tuple(image.shape) if image is not None else _json_attr(ds, "image_shape")
    frames = np.unique(ds["frame"].values) if "frame" in ds.coords else [0]
    rows = [
        ("image (frames, y, x)", "unknown" if shape is None else " x ".join(map(str, shape))),
        ("pixel size", f"{ps:g} {unit}" if ps else "unknown (windows in px only)"),
        ("keypoints", f"{ds.sizes['point']} over {len(frames)} frame(s)"
         + (f"; {ds.attrs['n_dropped']} dropped (largest window not inside the image)"
            if "n_dropped" in ds.attrs else "")),
        ("windows", ", ".join(plot.window_label(w, ps, unit) for w in windows)),
        ("patch size (common resampled size)", f"{int(ds.attrs.get('patch_size', 0))} px"),
        ("invariance", ds.attrs.get("invariance", "unknown")),
        ("latent dimensions", ds.sizes["latent"]),
        ("scalevae version", ds.attrs.get("version", "unknown")),
    ]
    if "control" in ds.coords:
        c = ds["control"]
        name = c.attrs.get("long_name") or c.attrs.get("name") or "control"
        rows.append((name, f"{float(c.min()):g} ... {float(c.max()):g}"))
    return _table(rows)


def _training(ds, phys):
    out = ["<h2 id='training'>Training</h2>"]
    out.append(_figure_html(plot.plot_loss(ds, *phys), "Training loss per epoch; windows are "
                            "trained one after another, smallest first."))
    out.append(_figure_html(plot.plot_kl(ds, *phys), "KL divergence per latent at the end of "
                            "each window (posterior-collapse check)."))
    kl_last = ds["kl"].isel(window=-1)
    dead = [str(k) for k in ds["latent"].values
            if float(kl_last.sel(latent=k)) < plot.COLLAPSE_NATS]
    if dead:
        out.append(f'<div class="card warn">Latent(s) {_esc(", ".join(dead))} carry less than '
                   f"{plot.COLLAPSE_NATS} nats at the last window: they collapsed to the prior "
                   "and hold no information. Figures of those latents show noise.</div>")
    else:
        out.append(f'<div class="card">Every latent carries more than {plot.COLLAPSE_NATS} '
                   "nats at the last window: no posterior collapse.</div>")
    rows = [(str(k), f"{float(v):.3g}") for k, v in zip(ds["latent"].values, kl_last.values)]
    out.append(_table(rows, ["latent", "KL at the last window (nats)"]))
    timings = _json_attr(ds, "timings")
    if isinstance(timings, dict) and timings:
        out.append("<h3>Timings</h3>")
        out.append(_table([(k, f"{float(v):.2f}") for k, v in timings.items()],
                          ["stage", "seconds"]))
    per_window = _json_attr(ds, "window_seconds")
    if isinstance(per_window, list) and len(per_window) == ds.sizes["window"]:
        out.append(_table([(plot.window_label(w, *phys), f"{float(s):.2f}")
                           for w, s in zip(ds["window"].values, per_window)],
                          ["window", "training seconds"]))
    return out


def _state_section(ds, state, image, models, phys, notes, scales=None):
    """All per-state figures; returns (html parts, length-scale Dataset or None). ``scales``:
    that state's :func:`~scalevae.analysis.length_scales`, when the caller has it already."""
    out = [f"<h2 id='{state}'>Latent space, {state} state</h2>"]
    out.append("<p class='sub'>" + (
        "Each window encoded by the final model (trained on all windows): latent coordinates "
        "are comparable across windows." if state == "final" else
        "Each window encoded right after training on it: how the model saw that scale.")
        + "</p>")
    density = an.latent_density(ds, state)

    def add(make, caption):
        try:
            out.append(_figure_html(make(), caption))
        except ScaleVAEError as exc:
            out.append(_note(f"{caption.split('.')[0]}: skipped ({exc})"))

    if scales is None and ds.sizes["window"] >= 2:
        scales = an.length_scales(ds, state)
    out.append("<h3>Latent distributions</h3>")
    add(lambda: plot.plot_latent_distributions(density, _MAX_PANELS, *phys),
        "Kernel density of (z1, z2) per window, on one grid shared by all windows.")

    out.append("<h3>Latent representations</h3>")
    wins = plot.pick_panels([int(w) for w in ds["window"].values], _MAX_PANELS)
    manifolds = {}
    for w in wins:
        model = models.get(None if state == "final" else w)
        if model is None:
            break
        manifolds[w] = an.latent_representation(model, an.populated_extent(ds, state, w))
    if manifolds:
        add(lambda: plot.plot_latent_manifolds(manifolds, _MAX_PANELS, state, *phys),
            "Patches decoded from a 9 x 9 grid over the populated part of each window's latent "
            "space (2-98 % quantiles), angle 0, shift 0.")
    else:
        out.append(_note(f"Decoded latent grids skipped: {models.error}"))

    out.append("<h3>Latent images</h3>")
    if image is None:
        notes.add("The input image (input.npy) is missing: latent maps are drawn without it.")
    add(lambda: plot.plot_latent_images(an.latent_images(ds, state), image, _MAX_PANELS - 1,
                                        *phys),
        "Each keypoint coloured by its latent value and angle, per window.")

    out.append("<h3>Candidate structural elements (peaks of the latent density)</h3>")
    add(lambda: plot.plot_kde_peaks(_peaks(density, wins, models, state), density,
                                    _MAX_PANELS, _MAX_PEAKS, *phys),
        "Peaks of the latent density of each window, numbered highest first (top), and the "
        "patch the decoder draws at each peak, angle 0 (bottom, when the model loads): the "
        "distinct structures the keypoints group into at that window.")
    out.append("<h3>Unusual keypoints</h3>")
    shown = sorted({int(scales["recommended_window"]), int(ds["window"].values[-1])}
                   if scales is not None else {int(ds["window"].values[-1])})
    add(lambda: plot.plot_outlier_scores(
        [an.outlier_scores(ds, state, w, n_reference=_OUTLIER_REFERENCE) for w in shown],
        image, _N_OUTLIERS, *phys),
        "Outlier score of every keypoint (-ln of the latent density at its latent value; "
        "higher = rarer) at the " + ("recommended and " if len(shown) > 1 else "")
        + "largest window, with the rarest keypoints circled, and the scores' histogram.")

    if ds.sizes["window"] >= 2:
        out.append("<h3>PCA of the latent distributions across windows</h3>")
        add(lambda: plot.plot_kde_pca(an.kde_pca(density), *phys),
            "Scores of the principal components of the KDEs vs window (left) and the "
            "components as latent-space images.")
        out.append("<h3>PCA of per-keypoint latent trajectories</h3>")
        add(lambda: plot.plot_trajectory_pca(an.trajectory_pca(ds, state), image, *phys),
            "Principal patterns of the keypoints' latent trajectories over the windows (top) "
            "and each keypoint's loading on them (bottom).")
    n_frames = len(np.unique(ds["frame"].values)) if "frame" in ds.coords else 1
    if n_frames > 1:
        out.append("<h3>Stack statistics</h3>")
        add(lambda: plot.plot_stack_statistics(
            an.stack_statistics(ds, state, smooth_sigma=None), True, *phys),
            "Mean and dispersion of each latent per frame and window, each row's mean over "
            "windows removed.")
    if scales is not None:
        out.append("<h3>Length scales</h3>")
        add(lambda: plot.plot_length_scales(scales, *phys),
            "Latent change between consecutive windows per unit log-window; "
            + scales.attrs["rule"] + ".")
    return out, scales


def _peaks(density, wins, models, state):
    """Density peaks of the shown windows, with the patch decoded at each when the model(s)
    load: the final model for the final state, each window's own model for the instant one."""
    dens = density.sel(window=wins)
    if state == "final":
        return an.kde_peaks(dens, models.get(None), num_peaks=_MAX_PEAKS)
    parts = [an.kde_peaks(dens.sel(window=[w]), models.get(w), num_peaks=_MAX_PEAKS)
             for w in wins]
    if any("patch" not in p for p in parts):  # a checkpoint is missing: positions only
        parts = [p.drop_vars("patch", errors="ignore") for p in parts]
    return xr.concat(parts, "peak")


def _range_html(scales, rec, phys):
    lo, hi = (int(scales[k]) for k in ("recommended_low", "recommended_high"))
    if lo == hi == rec:
        return "<div>Range: this window alone (a sharp change of scale).</div>"
    return (f"<div>Range: {_esc(plot.window_label(lo, *phys))} to "
            f"{_esc(plot.window_label(hi, *phys))} (the rise of the regrouping from a quarter "
            "to three quarters, and the windows regrouping at least half as fast as the "
            "fastest).</div>")


def _recommendation(scales, phys):
    rec = int(scales["recommended_window"])
    peaks = [int(w) for w in scales["window"].values[scales["peak"].values]]
    peak_labels = [plot.window_label(w, *phys) for w in peaks]
    return ("<div class='card'><div>Recommended descriptor size (final state)</div>"
            f"<div class='big'>{_esc(plot.window_label(rec, *phys))}</div>"
            + _range_html(scales, rec, phys) +
            f"<div>{_esc(scales.attrs['rule'])}.</div>"
            + (f"<div><b>Caution:</b> {_esc(scales.attrs['note'])}.</div>"
               if scales.attrs.get("note") else "")
            + (f"<div>Peaks of the window-to-window regrouping (evidence of other scales): "
               f"{_esc(', '.join(peak_labels))}.</div>" if peak_labels else "")
            + "<div>Evidence: the <a href='#final'>length-scale figure</a> of each state.</div>"
            "</div>")


def write_report(run_dir, image=None, result=None, scales=None):
    """Write ``run_dir/report.html``: one self-contained HTML report of a run.

    Parameters
    ----------
    run_dir : str or Path
        A run folder holding ``result.nc``; ``input.npy`` (the input stack) and
        ``checkpoints/`` are used when present, and the figures that need them are skipped
        with a note otherwise.
    image : array_like, optional
        The input image or stack (frame, y, x) to draw under the keypoint maps, instead of
        ``input.npy``.
    result : xarray.Dataset, optional
        The run's result, when the caller holds it already (``scalevae.run`` does), instead of
        reading ``result.nc`` again.
    scales : dict, optional
        ``{state: length_scales(result, state)}`` already computed by the caller (``run``
        computes the final state's for its recommendation); missing states are computed here.

    Returns
    -------
    path : Path
        The report, written atomically (a temporary file renamed into place).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scalevae.testing import make_fake_result
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> make_fake_result().to_netcdf(d / "result.nc", engine="h5netcdf")
    >>> write_report(d).name
    'report.html'
    """
    run_dir = Path(run_dir)
    ds = load_result(run_dir) if result is None else result
    stack = _load_image(run_dir, image)
    phys = physical_pixel(ds.attrs.get("pixel_size"), ds.attrs.get("unit"))
    models = _Models(run_dir)
    notes = set()

    body = ["<h1>SI-VAE report</h1>",
            f"<p class='sub'>{_esc(run_dir.resolve())}</p>",
            "<nav><a href='#data'>Data</a><a href='#training'>Training</a>"
            "<a href='#final'>Final state</a><a href='#instant'>Instant state</a>"
            "<a href='#config'>Configuration</a></nav>"]
    states = [s for s in ("final", "instant") if s in [str(v) for v in ds["state"].values]]
    sections, scales = [], dict(scales or {})
    for state in states:
        part, scales[state] = _state_section(ds, state, stack, models, phys, notes,
                                             scales.get(state))
        sections += part
    if scales.get("final") is not None:
        body.append(_recommendation(scales["final"], phys))
    elif ds.sizes["window"] < 2:
        body.append(_note("Only one window: length scales need at least two."))

    body.append("<h2 id='data'>Data</h2>")
    body.append(_summary(ds, stack, phys))
    points = np.column_stack([ds["frame"].values, ds["y"].values, ds["x"].values])
    if stack is not None:
        body.append(_figure_html(plot.plot_keypoints(stack, points, int(points[0, 0]), *phys),
                                 "Input image (first frame with keypoints) and its keypoints."))
        try:
            fig = plot.plot_example_patches(stack, points, ds["window"].values, 4, 0,
                                            _MAX_PANELS + 1, *phys)
            body.append(_figure_html(fig, "Patches around four random keypoints at growing "
                                     "windows, each at its own size (before resampling)."))
        except ImportError as exc:
            body.append(_note(f"Example patches skipped: patch extraction unavailable ({exc})."))
        except ScaleVAEError as exc:
            body.append(_note(f"Example patches skipped: {exc}"))
    else:
        body.append(_note("No input image (input.npy) in the run folder: the keypoint overview "
                          "and example patches are skipped."))
    body += _training(ds, phys)
    body += sections

    body.append("<h2 id='config'>Configuration</h2>")
    config = _json_attr(ds, "config")
    body.append("<pre>" + _esc(json.dumps(config, indent=2, default=str)
                               if not isinstance(config, str) else config) + "</pre>")
    norm = _json_attr(ds, "normalization")
    if norm is not None:
        body.append("<h3>Normalisation</h3><pre>" + _esc(json.dumps(norm, indent=2, default=str)
                                                          if not isinstance(norm, str) else norm)
                    + "</pre>")
    if notes or models.error:
        body.append("<h2>Notes</h2>")
        body += [_note(n) for n in sorted(notes)]
        if models.error:
            body.append(_note(f"Decoded figures skipped: {models.error}"))

    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>SI-VAE report: {_esc(run_dir.name)}</title><style>{_CSS}</style></head>"
            "<body><main>" + "\n".join(body) + "</main></body></html>\n")
    path = run_dir / "report.html"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
