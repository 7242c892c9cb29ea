"""The report written by the run's forked worker (scalevae.report.background): the same
figures as the report written in the run's own process, the report's errors raised in the run,
and no process left behind."""

import os
import re
import sys

import numpy as np
import pytest
from scalevae.testing import make_fake_result, make_image

from scalevae import report
from scalevae.errors import ScaleVAEError
from scalevae.report import background
from scalevae.report import page as report_page

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the worker is forked on Linux only")

IMG = re.compile(r'<img src="data:image/(?:png|webp);base64,([A-Za-z0-9+/=]+)"')
NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")


def _run_dir(path, ds):
    path.mkdir()
    ds.to_netcdf(path / "result.nc", engine="h5netcdf")
    np.save(path / "input.npy", make_image())
    return path


def _processes(worker):
    return list((getattr(worker._pool, "_processes", None) or {}).values())


def test_worker_report_has_the_same_figures_and_numbers(tmp_path, monkeypatch):
    # the worker computes the length scales of the state the result does not store ahead
    # (prepare) and hands them to the report: every figure and every number as if the
    # report had computed them itself
    monkeypatch.setattr(report_page, "_DPI", 30)  # set before the fork: the worker's too
    ds = make_fake_result(n_windows=5)
    here = _run_dir(tmp_path / "here", ds)
    there = _run_dir(tmp_path / "there", ds)
    report.write_report(here, result=ds, quiet=True)
    worker = background.ReportWorker()
    processes = _processes(worker)
    worker.prepare(ds)
    assert worker.write(there, ds, quiet=True) is None
    a = (here / "report.html").read_text()
    b = (there / "report.html").read_text()
    assert len(IMG.findall(a)) >= 10
    assert IMG.findall(a) == IMG.findall(b)
    # the text without tags (Bokeh's element ids differ from one document to the next)
    text = [re.sub(r"<script\b.*?</script>|<[^>]*>", " ", page, flags=re.S)
            for page in (a, b)]
    assert NUMBER.findall(text[0].replace(str(here), "")) == \
        NUMBER.findall(text[1].replace(str(there), ""))
    # the worker is gone once the report is written
    assert processes and not any(p.is_alive() for p in processes)
    assert not worker.alive()


def test_worker_raises_the_reports_error_here(tmp_path):
    worker = background.ReportWorker()
    processes = _processes(worker)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScaleVAEError, match="result"):
        worker.write(tmp_path / "empty", None, quiet=True)  # no result.nc to read
    assert not any(p.is_alive() for p in processes)


def test_worker_closed_before_the_report_leaves_no_process():
    # a run that fails (or is interrupted) closes the worker, importing or idle
    worker = background.ReportWorker()
    processes = _processes(worker)
    assert worker.alive() and processes
    worker.close()
    worker.close()  # harmless twice
    assert not any(p.is_alive() for p in processes)
    assert not worker.alive()


def test_a_result_too_large_to_hand_over_is_reported_here(tmp_path, monkeypatch):
    monkeypatch.setattr(report_page, "_DPI", 30)
    ds = make_fake_result(n_windows=3)
    run = _run_dir(tmp_path / "run", ds)
    worker = background.ReportWorker()
    processes = _processes(worker)
    monkeypatch.setattr(background, "PICKLED_BYTES", 0)
    worker.prepare(ds)  # not handed over either
    here = []
    monkeypatch.setattr(report, "write_report",
                        lambda *a, **k: here.append(1) or background_write(*a, **k))
    worker.write(run, ds, quiet=True)
    assert here == [1] and (run / "report.html").exists()
    assert not any(p.is_alive() for p in processes)


background_write = report.write_report


def test_the_worker_starts_only_with_a_core_to_spare(monkeypatch):
    # a machine whose cores are all busy: the report is written in the run's process
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 1.0, 0.0, 0.0))
    assert background.start_report_worker() is None
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    worker = background.start_report_worker()
    assert worker is not None and worker.alive()
    worker.close()
