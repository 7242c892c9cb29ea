"""The report's content: a list of figure sections, and the text blocks around them.

A :class:`Section` is one figure: a title (the heading above it), a ``compute`` function that
reads the result Dataset (and the models or the input image) through a :class:`Context`, a
``draw`` function that turns what ``compute`` returned into a matplotlib figure, and a caption.
:data:`DATA_SECTIONS` and :data:`TRAINING_SECTIONS` are drawn once; :data:`STATE_SECTIONS` once
per state (``final`` and ``instant``), each with the :class:`Context` of that state. The text
blocks around them live in :mod:`.text`.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import xarray as xr

from .. import analysis as an
from .. import plot
from ..errors import ScaleVAEError
from .page import esc, figure_html, note
from .text import stored_scales, with_pooled_answer

_MAX_PANELS = 5
_MAX_PEAKS = 6  # density peaks shown (and decoded) per window
_N_OUTLIERS = 10  # keypoints circled on the outlier maps
# Keypoints that define the density for the outlier scores: the cost grows with
# (keypoints x this), and 5000 points already give a smooth 2-D density.
_OUTLIER_REFERENCE = 5000


class Models:
    """Loads a run's checkpoints lazily, once each; remembers why they could not be loaded."""

    def __init__(self, run_dir):
        self.run_dir, self.cache, self.error = run_dir, {}, None
        # the explorer (main thread) and the state sections (the report's worker) both ask
        self._lock = threading.Lock()

    def get(self, window=None):
        """The model of ``window`` (px; None: the final model), or None if it cannot load."""
        with self._lock:
            return self._get(window)

    def _get(self, window):
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


@dataclass
class Context:
    """What the sections read: the run's Dataset, input image, models and pixel size, plus,
    for a state's sections (:meth:`for_state`), that state's density and length scales."""

    ds: xr.Dataset
    image: np.ndarray | None
    models: Models
    phys: tuple
    notes: set = field(default_factory=set)  # shown once at the end of the page
    state: str | None = None
    density: Any = None
    scales_source: Any = None  # the state's length scales, or a future of them
    recommended: int | None = None  # the recommended window, always a panel
    encoder: Any = None  # an Executor that encodes the rendered figures (page.figure_html)

    @property
    def scales(self):
        """The state's length scales (waited for when they are being computed); None below
        two windows."""
        source = self.scales_source
        return source.result() if hasattr(source, "result") else source

    @property
    def windows(self):
        return [int(w) for w in self.ds["window"].values]

    @property
    def points(self):
        ds = self.ds
        return np.column_stack([ds["frame"].values, ds["y"].values, ds["x"].values])

    @property
    def panel_windows(self):
        """The windows shown as panels (at most ``_MAX_PANELS``, spread over the range, the
        recommended window among them)."""
        return self.panels(_MAX_PANELS)

    def panels(self, n):
        """At most ``n`` windows spread over the range, the recommended window among them."""
        return panels_with(self.windows, n, self.recommended)

    @property
    def n_frames(self):
        ds = self.ds
        return len(np.unique(ds["frame"].values)) if "frame" in ds.coords else 1

    def for_state(self, state, pool=None, scales=None):
        """This context for one state's sections: its latent density and length scales
        (``scales`` when given; the ones the run stored for the state its recommendation
        reads, :func:`stored_scales`; else computed, on ``pool`` when given: the sections that
        do not need them go ahead meanwhile)."""
        if scales is None and self.ds.sizes["window"] >= 2:
            scales = stored_scales(self.ds, state)
            if scales is None:
                # this state's own reading; the other state's check belongs to the answer
                # the run stored
                scales = (an.length_scales(self.ds, state, check_state=False) if pool is None
                          else pool.submit(an.length_scales, self.ds, state, check_state=False))
            else:
                scales = with_pooled_answer(scales, self.ds)
        return dataclasses.replace(self, state=state, density=an.latent_density(self.ds, state),
                                   scales_source=scales)


def panels_with(windows, n, keep=None):
    """At most ``n`` of ``windows`` spread over the range (:func:`scalevae.plot.pick_panels`),
    with ``keep`` (when it is one of them) replacing the nearest pick that is not an end.

    Examples
    --------
    >>> panels_with([8, 12, 16, 20, 24, 28, 32], 3)
    [8, 20, 32]
    >>> panels_with([8, 12, 16, 20, 24, 28, 32], 3, keep=12)
    [8, 12, 32]
    """
    windows = [int(w) for w in windows]
    picks = [int(w) for w in plot.pick_panels(windows, n)]
    if keep is None or int(keep) not in windows or int(keep) in picks:
        return picks
    keep = int(keep)
    inner = [i for i in range(len(picks)) if 0 < i < len(picks) - 1] or list(range(len(picks)))
    at = windows.index(keep)
    nearest = min(inner, key=lambda i: abs(windows.index(picks[i]) - at))
    picks[nearest] = keep
    return sorted(picks)


def _skipped(exc, caption):
    return f"{caption.split('.')[0]}: skipped ({exc})"


@dataclass(frozen=True)
class Section:
    """One figure of the report.

    ``compute(ctx)`` returns the figure's data, or None when an input is missing (the note
    ``missing(ctx)`` is shown instead); ``draw(data, ctx)`` returns the matplotlib figure.
    An exception of ``errors`` from either skips the figure with the note ``skipped(exc,
    caption)``. ``when(ctx)`` False leaves the section out, heading included.
    """

    title: str | None
    compute: Callable[[Context], Any]
    draw: Callable[[Any, Context], Any]
    caption: str | Callable[[Context], str]
    when: Callable[[Context], bool] = lambda ctx: True
    missing: Callable[[Context], str] | None = None
    errors: tuple = (ScaleVAEError,)
    skipped: Callable[[Exception, str], str] = _skipped
    lossy: bool = False  # a photograph-like figure: WebP (page.figure_html)
    needs_scales: bool = False  # reads the state's length scales (computed last)

    @property
    def label(self):
        """A short name for progress lines: the title, or the caption's first words."""
        text = self.title or (self.caption if isinstance(self.caption, str) else "figure")
        text = text.split(".")[0].split(" (")[0].split(";")[0]
        return text if len(text) <= 50 else text[:text.rfind(" ", 0, 50)] + " ..."

    def computed(self, ctx):
        """``compute(ctx)`` (None where the section is left out), or the exception of
        ``errors`` it raised, returned (not raised) so that it can run ahead on another thread
        and :meth:`render` shows it as a note."""
        if not self.when(ctx):
            return None
        try:
            return self.compute(ctx)
        except self.errors as exc:
            return _Failed(exc)

    def render(self, ctx, computed=None):
        """The section's HTML parts (heading, then the figure or a note); ``computed``: a
        future of :meth:`computed`, when it ran ahead (default: computed here)."""
        if not self.when(ctx):
            return []
        out = [f"<h3>{esc(self.title)}</h3>"] if self.title else []
        caption = self.caption(ctx) if callable(self.caption) else self.caption
        data = self.computed(ctx) if computed is None else computed.result()
        try:
            if isinstance(data, _Failed):
                raise data.exc
            out.append(note(self.missing(ctx)) if data is None
                       else figure_html(self.draw(data, ctx), caption, self.lossy,
                                        ctx.encoder))
        except self.errors as exc:
            out.append(note(self.skipped(exc, caption)))
        return out


@dataclass(frozen=True)
class _Failed:
    """What :meth:`Section.computed` returns when ``compute`` raised one of its ``errors``."""

    exc: Exception


def _patches_skipped(exc, caption):
    if isinstance(exc, ImportError):
        return f"Example patches skipped: patch extraction unavailable ({exc})."
    return f"Example patches skipped: {exc}"


DATA_SECTIONS = [
    Section(None, lambda c: c.points if c.image is not None else None,
            lambda pts, c: plot.plot_keypoints(c.image, pts, int(pts[0, 0]), *c.phys),
            "Input image (first frame with keypoints) and its keypoints.",
            missing=lambda c: "No input image (input.npy) in the run folder: the keypoint "
                              "overview and example patches are skipped.", lossy=True),
    Section(None, lambda c: c.points,
            lambda pts, c: plot.plot_example_patches(c.image, pts, c.panels(_MAX_PANELS + 1), 4,
                                                     0, _MAX_PANELS + 1, *c.phys),
            "Patches around four random keypoints at growing windows, each at its own size "
            "(before resampling).",
            when=lambda c: c.image is not None, errors=(ImportError, ScaleVAEError),
            skipped=_patches_skipped, lossy=True),
]

TRAINING_SECTIONS = [
    Section(None, lambda c: c.ds, lambda ds, c: plot.plot_loss(ds, *c.phys),
            "Training loss per epoch; windows are trained one after another, smallest first."),
    Section(None, lambda c: c.ds, lambda ds, c: plot.plot_kl(ds, *c.phys),
            "KL divergence per latent at the end of each window (posterior-collapse check)."),
]


def _manifolds(c):
    """Decoded latent grids of the shown windows, up to the first model that does not load."""
    manifolds = {}
    for w in c.panel_windows:
        model = c.models.get(None if c.state == "final" else w)
        if model is None:
            break
        manifolds[w] = an.latent_representation(model, an.populated_extent(c.ds, c.state, w))
    return manifolds or None


def _latent_images(c):
    if c.image is None:
        c.notes.add("The input image (input.npy) is missing: latent maps are drawn without it.")
    return an.latent_images(c.ds, c.state)


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


def _outlier_windows(c):
    """The recommended window (when there is one) and the largest."""
    last = c.windows[-1]
    if c.scales is None:
        return [last]
    return sorted({int(c.scales["recommended_window"]), last})


def _outlier_caption(c):
    return ("Outlier score of every keypoint (-ln of the latent density at its latent value; "
            "higher = rarer) at the " + ("recommended and " if len(_outlier_windows(c)) > 1
                                         else "")
            + "largest window, with the rarest keypoints circled, and the scores' histogram.")


def _several_windows(c):
    return c.ds.sizes["window"] >= 2


def _draw_peaks(peaks, c):
    """The densities with their peaks (and the patch decoded at each); the densities alone
    when no window has a peak."""
    if peaks.sizes.get("peak", 0) == 0:
        return plot.plot_latent_distributions(c.density.sel(window=c.panel_windows),
                                              _MAX_PANELS, *c.phys)
    return plot.plot_kde_peaks(peaks, c.density, _MAX_PANELS, _MAX_PEAKS, *c.phys)


STATE_SECTIONS = [
    # the densities and their peaks in one figure: the peaks figure's top row is the density
    # of each shown window on the shared grid (a figure of its own drew the same images)
    Section("Latent distributions and their peaks (candidate structural elements)",
            lambda c: _peaks(c.density, c.panel_windows, c.models, c.state), _draw_peaks,
            "Kernel density of (z1, z2) per window, on one grid shared by all windows, with "
            "its peaks numbered highest first (top), and the patch the decoder draws at each "
            "peak, angle 0 (bottom, when the model loads): the distinct structures the "
            "keypoints group into at that window."),
    Section("Latent representations", _manifolds,
            lambda m, c: plot.plot_latent_manifolds(m, _MAX_PANELS, c.state, *c.phys),
            "Patches decoded from a 9 x 9 grid over the populated part of each window's latent "
            "space (2-98 % quantiles), angle 0, shift 0.",
            missing=lambda c: f"Decoded latent grids skipped: {c.models.error}", lossy=True),
    Section("Latent images", _latent_images,
            lambda li, c: plot.plot_latent_images(li.sel(window=c.panels(_MAX_PANELS - 1)),
                                                  c.image, _MAX_PANELS - 1, *c.phys),
            "Each keypoint coloured by its latent value and angle, per window.", lossy=True),
    Section("Unusual keypoints",
            lambda c: [an.outlier_scores(c.ds, c.state, w, n_reference=_OUTLIER_REFERENCE)
                       for w in _outlier_windows(c)],
            lambda scores, c: plot.plot_outlier_scores(scores, c.image, _N_OUTLIERS, *c.phys),
            _outlier_caption, lossy=True, needs_scales=True),
    Section("PCA of the latent distributions across windows", lambda c: an.kde_pca(c.density),
            lambda p, c: plot.plot_kde_pca(p, *c.phys),
            "Scores of the principal components of the KDEs vs window (left) and the "
            "components as latent-space images.", when=_several_windows),
    Section("PCA of per-keypoint latent trajectories",
            lambda c: an.trajectory_pca(c.ds, c.state),
            lambda t, c: plot.plot_trajectory_pca(t, c.image, *c.phys),
            "Principal patterns of the keypoints' latent trajectories over the windows (top) "
            "and each keypoint's loading on them (bottom).", when=_several_windows, lossy=True),
    Section("Stack statistics",
            lambda c: an.stack_statistics(c.ds, c.state, smooth_sigma=None),
            lambda s, c: plot.plot_stack_statistics(s, True, *c.phys),
            "Mean and dispersion of each latent per frame and window, each row's mean over "
            "windows removed.", when=lambda c: c.n_frames > 1),
    Section("Length scales", lambda c: c.scales,
            lambda s, c: plot.plot_length_scales(s, *c.phys),
            lambda c: "Latent change between consecutive windows per unit log-window; "
                      + c.scales.attrs["rule"] + ".",
            when=lambda c: c.scales is not None, needs_scales=True),
]


def state_computed(pool, ctx, needs_scales):
    """The :meth:`Section.computed` of the state sections that do (``needs_scales``) or do
    not read the length scales, submitted to ``pool``: ``{index in STATE_SECTIONS: future}``.
    The report submits every state's sections without scales first, so that a worker waiting
    for a state's scales never holds up the others."""
    return {k: pool.submit(sec.computed, ctx) for k, sec in enumerate(STATE_SECTIONS)
            if sec.needs_scales == needs_scales}


def state_part(ctx, step=None, computed=None):
    """The HTML of one state (``ctx`` from :meth:`Context.for_state`): heading, then figures;
    ``step(label)`` is called as each figure starts (progress); ``computed``: the sections'
    futures from :func:`state_computed`, when their data were computed ahead."""
    out = [f"<h2 id='{ctx.state}'>Latent space, {ctx.state} state</h2>",
           "<p class='sub'>" + (
               "Each window encoded by the final model (trained on all windows): latent "
               "coordinates are comparable across windows." if ctx.state == "final" else
               "Each window encoded right after training on it: how the model saw that scale.")
           + "</p>"]
    for k, section in enumerate(STATE_SECTIONS):
        if step is not None:
            step(f"{section.label} ({ctx.state})")
        out += section.render(ctx, None if computed is None else computed[k])
    return out
