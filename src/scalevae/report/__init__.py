"""A run's report: one self-contained HTML file a microscopist can open anywhere.

:func:`write_report` reads ``RUN_DIR/result.nc`` (and ``input.npy`` and the checkpoints when
present) and writes ``RUN_DIR/report.html``: the recommended length scale with its evidence,
an interactive explorer (:mod:`.explorer`: linked image and latent views, a window slider,
each keypoint's patches and trajectory), every figure of :mod:`scalevae.plot` for the instant
and final states, the training curves, the per-latent KL (posterior-collapse check), timings and
the full configuration. Figures are embedded as PNG (base64), BokehJS and styles are inline,
nothing is fetched from the network.

What lives where: :mod:`.page` is the HTML shell (styles, escaping, tables, embedded figures);
:mod:`.sections` is the content, the report as a list of figure sections (title, compute from
the Dataset, draw, caption); :mod:`.text` the text blocks between them; :mod:`.explorer` the
interactive explorer; this module puts them in order.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import analysis as an
from .._atomic import atomic_write
from ..analysis._common import scales_state
from ..io.lazy import NpyFrames, read_lazily
from ..io.units import physical_pixel
from ..results import load_result

__all__ = ["write_report"]


def _load_image(run_dir, image):
    """The image or stack the figures draw: ``image`` as float32, or ``input.npy``: read
    whole when small, else frame by frame on demand (:class:`scalevae.io.lazy.NpyFrames`,
    ordinary file reads: a memory map's touched pages would count against the process), so
    a stack larger than memory costs the report only the frames and patches it draws."""
    if image is not None:
        data = getattr(image, "data", image)
        return np.asarray(data, np.float32)
    path = run_dir / "input.npy"
    if not path.exists():
        return None
    if read_lazily(path.stat().st_size):
        return NpyFrames(path)
    return np.load(path).astype(np.float32, copy=False)


class _Progress:
    """Counts the report's steps and hands ``(step, total, label)`` to a callback as each
    step starts."""

    def __init__(self, total, callback):
        self.done, self.total, self.callback = 0, total, callback

    def __call__(self, label):
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total, label)


def _print_progress(done, total, label):
    print(f"report: {done}/{total} {label}", file=sys.stderr, flush=True)


#: The interpreter's thread switch interval while the report is written (s; Python's default
#: is 0.005): the drawing thread holds the GIL almost all the time, and each short Python step
#: of a computing worker between two GIL-free numpy calls would otherwise wait up to 5 ms.
_SWITCH_INTERVAL = 0.0005
#: Garbage-collection thresholds while the report is written (Python's default: 700, 10, 10):
#: the figures and Bokeh models are hundreds of thousands of short-lived objects, and at the
#: default a full collection walks the caller's whole heap (torch, xarray) every few figures, a
#: fifth of the report's CPU time on the README's run; young collections still free each
#: figure's reference cycles (collection off altogether kept ~100 MiB more).
_GC_THRESHOLDS = (50_000, 20, 20)


@contextlib.contextmanager
def _lean_runtime():
    """While the report is written: BLAS and torch on one thread each (the report runs its
    own threads, drawing and computing, and BLAS or torch pools spinning beside them on a
    small machine cost more CPU time than they save), the GIL handed over sooner
    (:data:`_SWITCH_INTERVAL`), garbage collected less often (:data:`_GC_THRESHOLDS`). The
    caller's settings come back after."""
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    torch = sys.modules.get("torch")  # loaded only when the caller or a model needs it
    before = torch.get_num_threads() if torch is not None else None
    interval = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    try:
        sys.setswitchinterval(min(interval, _SWITCH_INTERVAL))
        gc.set_threshold(*_GC_THRESHOLDS)
        with threadpool_limits(1):
            if torch is not None:
                torch.set_num_threads(1)
            yield
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
        if torch is not None:
            torch.set_num_threads(before)


def write_report(run_dir, image=None, result=None, quiet=False, progress=None,
                 scales=None) -> None:
    """Write ``run_dir/report.html``: one self-contained HTML report of a run.

    The report reads the result Dataset only and changes nothing in it: the recommendation is
    the one the run stored (``recommended_window*`` attributes), and so are the length scales
    of its state (``length_scale_curves``); the other state's are computed from the latents.
    The file is written atomically (a temporary file renamed into place), so a failure while
    building the report leaves an older report untouched.

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
    quiet : bool
        No progress lines.
    progress : callable, optional
        Called as ``progress(step, total, label)`` as each part of the report starts;
        default (unless ``quiet``): one line ``report: 3/26 Latent representations (final)``
        per part on stderr.
    scales : dict, optional
        ``{state: length scales}`` of states the result does not store, when the caller has
        computed them already (:func:`scalevae.analysis.length_scales` of ``result`` and that
        state, with its defaults: :mod:`.background` computes them while the run saves).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scalevae.testing import make_fake_result
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> make_fake_result().to_netcdf(d / "result.nc", engine="h5netcdf")
    >>> write_report(d, quiet=True)
    >>> (d / "report.html").exists()
    True
    """
    # here, not at the top: a run imports this package as it starts (.background), and the
    # figures' libraries (Matplotlib, Bokeh) are the report worker's to import meanwhile
    from .background import state_elsewhere
    from .explorer import explorer_html, explorer_patches
    from .page import esc, html_page, json_attr, json_block, note
    from .sections import (DATA_SECTIONS, STATE_SECTIONS, TRAINING_SECTIONS, Context, Models,
                           state_computed, state_part)
    from .text import (baselines_html, recommendation_card, stored_recommendation,
                       stored_scales, summary_table, training_text)

    run_dir = Path(run_dir)
    ds = load_result(run_dir) if result is None else result
    ctx = Context(ds, _load_image(run_dir, image), Models(run_dir),
                  physical_pixel(ds.attrs.get("pixel_size"), ds.attrs.get("unit")))

    states = [s for s in ("final", "instant") if s in [str(v) for v in ds["state"].values]]
    step = _Progress(len(DATA_SECTIONS) + len(TRAINING_SECTIONS) + 3
                     + len(states) * (len(STATE_SECTIONS) + 1),
                     None if quiet else (progress or _print_progress))

    body = ["<h1>SI-VAE report</h1>",
            f"<p class='sub'>{esc(run_dir.resolve())}</p>",
            "<nav><a href='#explorer'>Explorer</a><a href='#data'>Data</a>"
            "<a href='#training'>Training</a>"
            "<a href='#final'>Final state</a><a href='#instant'>Instant state</a>"
            "<a href='#config'>Configuration</a></nav>"]
    # Worker threads compute (numpy, scipy and torch, which release the GIL) while this
    # thread draws (matplotlib and Bokeh, which hold it): each is a pure function of the
    # Dataset. The slowest piece, the length scales of the state the run did not store, starts
    # first; this thread draws what needs no worker meanwhile, then the state whose scales the
    # result holds. Two workers (a third cost ~80 MiB more peak memory): the sections
    # waiting for those scales are submitted last, so they hold up nothing else.
    with contextlib.ExitStack() as stack:
        stack.enter_context(_lean_runtime())
        # the recommendation as the run stored it (the recommended window is a panel of every
        # figure); a result saved without it reads it from its state's scales, computed first
        rec, known = stored_recommendation(ds), dict(scales or {})
        if rec is None and scales_state(ds) in states:
            known[scales_state(ds)] = an.length_scales(ds, scales_state(ds))
            rec = stored_recommendation(ds, known[scales_state(ds)])
        if rec is not None:
            ctx.recommended = rec["window"]
        # in the run's report worker, a second process draws one state (drawing holds the
        # GIL: a process of its own is the only way to draw on both cores); forked here,
        # before this process starts any thread
        elsewhere = states[-1] if len(states) > 1 else None
        helper = (state_elsewhere(ctx, elsewhere, known.get(elsewhere))
                  if elsewhere is not None else None)
        here = [s for s in states if helper is None or s != elsewhere]
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=2))
        ctx.encoder = pool  # figures are encoded on the workers, after what they compute
        for state in states:
            step(f"latent density and length scales ({state})")
        # the length scales the result does not hold start first, on a worker (for_state);
        # the states are drawn in the opposite order, the stored one first
        slow_first = sorted(here, key=lambda s: stored_scales(ds, s) is not None)
        state_ctxs = {s: ctx.for_state(s, pool, known.get(s)) for s in slow_first}
        patches = pool.submit(explorer_patches, ds, ctx.image, ctx.models)
        drawn = slow_first[::-1]
        computed = {s: state_computed(pool, state_ctxs[s], False) for s in drawn}
        waiting = [s for s in drawn if hasattr(state_ctxs[s].scales_source, "result")]
        for s in drawn:  # the sections that read scales: the computed ones' last
            if s not in waiting:
                computed[s].update(state_computed(pool, state_ctxs[s], True))
        baselines = (pool.submit(baselines_html, ds, ctx.image, rec["state"], ctx.phys)
                     if rec is not None and ds.sizes["window"] >= 2 else None)
        for s in waiting:
            computed[s].update(state_computed(pool, state_ctxs[s], True))

        # the data and training sections: here, or by the helper
        drawn_here = {"data": [], "training": []}
        for key, sections in (("data", DATA_SECTIONS), ("training", TRAINING_SECTIONS)):
            for section in sections if helper is None else ():
                step(section.label)
                drawn_here[key] += section.render(ctx)
        step("explorer")
        explorer = explorer_html(ds, ctx.image, ctx.models, ctx.recommended,
                                 rec["state"] if rec is not None else None, patches)
        state_parts = {s: state_part(state_ctxs[s], step, computed[s]) for s in drawn}
        if helper is not None:
            for section in DATA_SECTIONS + TRAINING_SECTIONS + STATE_SECTIONS:
                step(section.label)
            drawn_here = helper.result()
            state_parts[elsewhere] = drawn_here["state"]
        data_part = (["<h2 id='data'>Data</h2>", summary_table(ds, ctx.image, ctx.phys)]
                     + drawn_here["data"] + ["<h2 id='training'>Training</h2>"]
                     + drawn_here["training"] + training_text(ds, ctx.phys))
        step("baselines")
        card = []
        if baselines is not None:
            card = [recommendation_card(rec, ctx.phys, baselines.result())]
        elif ds.sizes["window"] < 2:
            card = [note("Only one window: length scales need at least two.")]
    body += card + explorer + data_part + [h for s in states for h in state_parts[s]]

    body += ["<h2 id='config'>Configuration</h2>", json_block(json_attr(ds, "config"))]
    norm = json_attr(ds, "normalization")
    if norm is not None:
        body.append("<h3>Normalisation</h3>" + json_block(norm))
    if ctx.notes or ctx.models.error:
        body.append("<h2>Notes</h2>")
        body += [note(n) for n in sorted(ctx.notes)]
        if ctx.models.error:
            body.append(note(f"Decoded figures skipped: {ctx.models.error}"))

    page = html_page(run_dir.name, body)
    step(f"writing {run_dir / 'report.html'} ({len(page.encode('utf-8')) / 1e6:.1f} MB)")
    atomic_write(run_dir / "report.html",
                 lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
