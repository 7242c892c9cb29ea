"""The report written by a process forked when the run starts, so that its libraries are
imported on an idle core while the model trains.

A run trains on one thread (``config.TRAIN_THREADS``), and the report's libraries (matplotlib,
Bokeh, scikit-learn, scikit-image) cost about a second of imports on the critical path after
training; importing them on a thread of the run's own process instead slows training by as
much (the importing thread holds the interpreter lock that each training step needs between
its torch calls). :class:`ReportWorker` forks one process as the run starts: it imports them
and waits; after the result is saved, :meth:`ReportWorker.write` hands it the result and waits
for ``report.html``. The worker is a fork of the run (nothing is imported twice); it exits with
the run, and by itself when the run's process is gone. Where ``fork`` is not the platform's
way (Windows, macOS), :func:`start_report_worker` returns None and the report is written in the
run's process as before.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

__all__ = ["ReportWorker", "start_report_worker"]

#: How often the worker checks that the run that forked it is still there (s).
_PARENT_POLL_SECONDS = 0.5
#: How much of a core the load average must leave idle for the worker to start (cores):
#: on 2 cores, a 1-minute load average up to 1.5 (an idle machine reads 0 to 1).
SPARE_CORE = 0.5
#: The largest result handed to the worker (bytes): it is pickled to it (twice: prepare,
#: write), a copy each; a larger one is reported in the run's own process. The README's
#: PTO run's is ~3 MB.
PICKLED_BYTES = 256 * 2**20


def start_report_worker() -> "ReportWorker | None":
    """A :class:`ReportWorker` started now; None where processes are not forked (only Linux
    forks safely with the libraries loaded) or no core is to spare (:func:`_core_to_spare`).

    Examples
    --------
    >>> worker = start_report_worker()
    >>> worker is None or worker.alive()
    True
    >>> if worker is not None:
    ...     worker.close()
    """
    if not sys.platform.startswith("linux") or "fork" not in mp.get_all_start_methods():
        return None
    if not _core_to_spare():
        return None
    return ReportWorker()


def _core_to_spare() -> bool:
    """Whether the machine has a core the run does not use: the 1-minute load average at
    least :data:`SPARE_CORE` below the core count. Without one, the worker's work only
    competes with the run's (measured on 2 cores at a load of 6: 5 % slower end to end)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not known here: as if a core were free
        return True
    return load <= (os.cpu_count() or 1) - SPARE_CORE


class ReportWorker:
    """One forked process that imports the report's libraries now and writes the report when
    :meth:`write` is called (:func:`scalevae.report.write_report`, the same arguments)."""

    def __init__(self):
        self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"),
                                         initializer=_ignore_interrupts, initargs=(os.getpid(),))
        self._warm = self._pool.submit(_import_report_libraries)

    def alive(self) -> bool:
        """Whether the worker can still take the report."""
        return self._pool is not None and not getattr(self._pool, "_broken", False)

    def prepare(self, result) -> None:
        """Start on what the report computes from ``result``'s latents alone while the run
        finishes it (recommends, saves): the length scales of the states it will not store
        (the recommendation reads and stores one, :func:`scalevae.pipeline.recommendation`;
        the report computes the others)."""
        if self.alive() and _small(result):
            self._pool.submit(_prepare_scales, result)

    def write(self, run_dir, result, quiet=False):
        """Write ``run_dir/report.html`` from ``result`` in the worker and wait for it; the
        report's own exceptions are raised here. A worker that died (killed, out of memory)
        or could not import a library, and a result above :data:`PICKLED_BYTES`, leave the
        report to this process (as without a worker)."""
        from . import write_report

        try:
            if self.alive() and _small(result) and self._warm_ok():
                return self._pool.submit(_write, run_dir, result, quiet).result()
        except BrokenProcessPool:
            pass
        finally:
            self.close()
        return write_report(run_dir, result=result, quiet=quiet)

    def _warm_ok(self) -> bool:
        try:
            self._warm.result()
        except BrokenProcessPool:
            raise
        except Exception:  # noqa: BLE001 (a library missing: the report says so, written here)
            return False
        return True

    def close(self) -> None:
        """Stop the worker (at once, if it is busy); harmless when it has stopped."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # idle, or busy for a run that has failed: nothing to wait for
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def __del__(self):
        if getattr(self, "_pool", None) is not None:
            self.close()


def _small(result) -> bool:
    """Whether ``result`` (a Dataset, or None: read from the run folder) goes to the worker."""
    return result is None or result.nbytes <= PICKLED_BYTES


def _ignore_interrupts(parent_pid):
    """In the worker: Ctrl-C is the run's to handle (it stops the worker), and the worker ends
    when the run's process is gone (a killed run leaves no worker behind)."""
    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _import_report_libraries():
    """Import what writing the report imports (the modules imported inside its functions
    too) and load what each library loads on first use (Pillow's format plugins, Matplotlib's
    font), so that the report starts with all of it in place."""
    from bokeh.embed import components  # noqa: F401
    from bokeh.embed.bundle import bundle_for_objs_and_resources  # noqa: F401
    from bokeh.layouts import column  # noqa: F401
    from bokeh.models import ColorBar  # noqa: F401
    from bokeh.plotting import figure  # noqa: F401
    from bokeh.resources import INLINE  # noqa: F401
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import AutoLocator  # noqa: F401
    from PIL import Image
    from skimage.feature import peak_local_max  # noqa: F401
    from sklearn.decomposition import PCA  # noqa: F401
    from threadpoolctl import threadpool_limits  # noqa: F401

    from .. import plot  # noqa: F401
    from ..analysis import baselines, multiscale  # noqa: F401
    from ..patches import extract_patches  # noqa: F401
    from ..results import load_model  # noqa: F401
    from . import explorer, sections, text  # noqa: F401

    Image.init()
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().set_title("0")
    FigureCanvasAgg(fig).draw()


#: True in a worker process (the report worker, its helper); there, nothing but the worker
#: runs, so that forking a helper is safe (no other thread holds a lock the fork would copy).
_IN_WORKER = False
#: In the report worker: what its helper renders, ``(ctx, state, scales)`` (read after the fork).
_HELPER_JOB = None


class _StateHelper:
    """A forked process rendering one state's part of the report (:func:`state_elsewhere`)."""

    def __init__(self, ctx, state, scales):
        global _HELPER_JOB
        self.ctx, self.state, self.scales = ctx, state, scales
        _HELPER_JOB = (ctx, state, scales)
        self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"),
                                         initializer=_ignore_interrupts,
                                         initargs=(os.getpid(),))
        self._job = self._pool.submit(_render_state)  # forks now

    def result(self):
        """``{"data": [...], "training": [...], "state": [...]}``: the HTML parts of the data
        and training sections and of the state; their notes and model error are the report's
        too. A helper that died hands the work back to this process."""
        try:
            parts, notes, error = self._job.result()
        except BrokenProcessPool:
            parts, notes, error = _render_state(self.ctx, self.state, self.scales)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.ctx.notes.update(notes)
        if error is not None and self.ctx.models.error is None:
            self.ctx.models.error = error
        return parts


def state_elsewhere(ctx, state, scales=None):
    """In the report worker: a helper process (forked now) that renders the data and training
    sections and ``state``'s part of the report from ``ctx``
    (:func:`scalevae.report.sections.state_part`; ``scales``: that state's length scales when
    known); ``.result()`` their HTML parts. None elsewhere: in a user's process, other threads
    may hold locks that a fork would copy locked."""
    if not _IN_WORKER:
        return None
    return _StateHelper(ctx, state, scales)


def _render_state(ctx=None, state=None, scales=None):
    """The data and training sections and one state's part of the report, their notes and the
    models' error (in the helper: :data:`_HELPER_JOB`), computed and drawn with threads of
    this process, the report's way."""
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    from .sections import (DATA_SECTIONS, TRAINING_SECTIONS, Models, state_computed,
                           state_part)

    if ctx is None:
        ctx, state, scales = _HELPER_JOB
        # fresh models (their lock and cache), notes of its own, returned
        ctx = dataclasses.replace(ctx, models=Models(ctx.models.run_dir), notes=set())
    with ThreadPoolExecutor(max_workers=2) as pool:
        ctx = dataclasses.replace(ctx, encoder=pool)
        sctx = ctx.for_state(state, pool, scales)
        computed = state_computed(pool, sctx, False)
        computed.update(state_computed(pool, sctx, True))
        parts = {"data": [h for sec in DATA_SECTIONS for h in sec.render(ctx)],
                 "training": [h for sec in TRAINING_SECTIONS for h in sec.render(ctx)],
                 "state": state_part(sctx, None, computed)}
        parts = {k: [h if isinstance(h, str) else h.result() for h in v]
                 for k, v in parts.items()}
    return parts, sorted(ctx.notes), ctx.models.error


#: In the worker: the length scales :func:`_prepare_scales` computed, ``{state: Dataset}``.
_PREPARED: dict = {}


def _prepare_scales(result):
    """In the worker: the length scales of every state of ``result`` but the one its
    recommendation will read and store (the report's slowest computation), kept for
    :func:`_write`; the same call as the report's own (:meth:`.sections.Context.for_state`)."""
    from ..analysis import length_scales
    from ..analysis._common import scales_state
    from . import _lean_runtime

    _PREPARED.clear()
    if result.sizes["window"] < 2:
        return
    stored = scales_state(result)
    with _lean_runtime():  # BLAS on one thread: the run recommends on the other core
        for state in (str(s) for s in result["state"].values):
            if state != stored:
                # that state's own reading, as the report's (the check is the stored answer's)
                _PREPARED[state] = length_scales(result, state, check_state=False)


def _write(run_dir, result, quiet):
    """In the worker: the report, with the length scales prepared for the states the result
    does not store."""
    from . import write_report
    from .text import stored_scales

    scales = {s: v for s, v in _PREPARED.items() if stored_scales(result, s) is None}
    _PREPARED.clear()
    write_report(run_dir, result=result, quiet=quiet, scales=scales)
