"""The HTML report: one self-contained file with every figure, readable in a real browser."""

import base64
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from scalevae.testing import FakeModel, make_fake_result, make_image

from scalevae import analysis as an
from scalevae import report
from scalevae.report import page as report_page
from scalevae.report import sections
from scalevae.report import text as report_text

SCRIPT = re.compile(r"<script\b([^>]*)>.*?</script>", re.S | re.I)
IMG = re.compile(r'<img src="data:image/(?:png|webp);base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')
MAGIC = {"png": lambda b: b[:8] == b"\x89PNG\r\n\x1a\n",
         "webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"}

# Caption beginnings of every figure the report must hold (per state where marked).
DATA_FIGS = ["Input image", "Patches around four random keypoints", "Training loss",
             "KL divergence per latent"]
STATE_FIGS = ["Kernel density of (z1, z2) per window, on one grid shared by all windows, with "
              "its peaks", "Patches decoded", "Each keypoint coloured",
              "Scores of the principal components", "Principal patterns",
              "Mean and dispersion", "Latent change between consecutive windows",
              "Outlier score of every keypoint"]


def _fake_loader(monkeypatch, calls):
    """Route scalevae.results.load_model to FakeModel (whatever the real module holds)."""

    def load_model(run_dir, window=None, device="cpu"):
        calls.append(window)
        return FakeModel(patch_size=8)

    try:
        import scalevae.results as results

        monkeypatch.setattr(results, "load_model", load_model)
    except ImportError:
        monkeypatch.setitem(sys.modules, "scalevae.results",
                            types.SimpleNamespace(load_model=load_model))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A stack run with input.npy and checkpoints: every figure of the report exists."""
    run = tmp_path_factory.mktemp("run")
    ds = make_fake_result(n_windows=5, grid=(12, 12), n_frames=2, control=True)
    ds.to_netcdf(run / "result.nc", engine="h5netcdf")
    np.save(run / "input.npy", make_image(n_frames=2))
    (run / "checkpoints").mkdir()
    for w in ds.window.values:
        (run / "checkpoints" / f"window_{int(w):04d}.pt").write_bytes(b"")
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        _fake_loader(mp, calls)
        mp.setattr(report_page, "_DPI", 40)  # the content is what matters here, not the sharpness
        assert report.write_report(run) is None  # the report returns nothing back
    return run / "report.html", calls


def test_report_holds_every_figure_for_both_states(full_run):
    path, calls = full_run
    assert path.name == "report.html" and path.exists()
    page = path.read_text(encoding="utf-8")
    imgs = IMG.findall(page)
    # every image is embedded: PNG for plots, WebP for the photograph-like figures
    assert len(imgs) == SCRIPT.sub("", page).count("<img")
    kinds = re.findall(r'<img src="data:image/(png|webp);base64,([A-Za-z0-9+/=]{16})', page)
    assert {k for k, _ in kinds} == {"png", "webp"}
    for kind, head in kinds:
        assert MAGIC[kind](base64.b64decode(head)), kind
    webp = [alt for (kind, _), (_, alt) in zip(kinds, imgs) if kind == "webp"]
    assert any(a.startswith("Input image") for a in webp)
    assert not any(a.startswith("Training loss") for a in webp)
    alts = [alt for _, alt in imgs]
    for cap in DATA_FIGS:
        assert sum(a.startswith(cap) for a in alts) == 1, cap
    for cap in STATE_FIGS:
        assert sum(a.startswith(cap) for a in alts) == 2, cap  # instant and final
    # each model loaded once (side by side on the report's threads): the final model, and
    # one per shown window for the instant state
    assert calls.count(None) == 1
    assert sorted(c for c in calls if c is not None) == [8, 12, 16, 20, 24]


def test_report_states_the_run_and_its_recommendation(full_run):
    page = full_run[0].read_text(encoding="utf-8")
    # a recommendation, conclusive or not, with the rule that gave it and the baselines
    assert "Recommended descriptor size" in page or "No conclusive descriptor size" in page
    for text in ("middle (half-way window) of the strongest rise", "Baselines:", "px (", "nm)",
                 "&quot;latent_dim&quot;: 2",  # the configuration, pretty-printed
                 "2 x 80 x 96",  # image shape
                 "288 over 2 frame(s)", "collapsed to the prior",  # z2's KL is 0.01 nats
                 "Timings", "train", "Normalisation", "Instant state", "Final state"):
        assert text in page, text


def test_report_is_self_contained(full_run):
    page = full_run[0].read_text(encoding="utf-8")
    # scripts (BokehJS, the explorer) are inline: none names a source to fetch
    assert all("src" not in attrs for attrs in SCRIPT.findall(page)) and SCRIPT.findall(page)
    html = SCRIPT.sub("", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|file:)""", html, re.I)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "<script" not in html
    assert list(full_run[0].parent.glob("*.tmp")) == []  # atomic write left no temp file


def test_report_without_image_or_checkpoints_notes_what_it_skipped(tmp_path, monkeypatch,
                                                                      capsys):
    make_fake_result(n_windows=3, grid=(8, 9)).to_netcdf(tmp_path / "result.nc",
                                                         engine="h5netcdf")
    monkeypatch.setattr(report_page, "_DPI", 40)
    report.write_report(tmp_path)
    lines = capsys.readouterr().err.splitlines()  # one progress line per part, on stderr
    assert lines[0].startswith("report: 1/") and "explorer" in "".join(lines)
    assert lines[-1].startswith(f"report: {len(lines)}/{len(lines)} writing")
    path = tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "no model checkpoints" in page and "input.npy" in page
    alts = [alt for _, alt in IMG.findall(page)]
    assert not any(a.startswith("Patches decoded") or a.startswith("Input image") for a in alts)
    # without checkpoints the density peaks are still shown, only their patches are not
    assert sum(a.startswith("Kernel density") and "its peaks" in a for a in alts) == 2
    assert sum(a.startswith("Each keypoint coloured") for a in alts) == 2
    # a failure while building the report leaves the old one untouched
    old = path.read_bytes()
    monkeypatch.setattr(an, "latent_density", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        report.write_report(tmp_path, image=make_image(), quiet=True)
    assert capsys.readouterr().err == ""  # quiet: no progress lines
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "result.nc"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var d = document.createElement('div'); d.id = 'imgcheck';
  d.textContent = ok + '/' + imgs.length;
  document.body.appendChild(d);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: "
                    "apt-get install -y chromium); the browser check needs it")
def test_report_renders_every_image_in_a_headless_browser(full_run, tmp_path):
    page = full_run[0].read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<div id="imgcheck">(\d+)/(\d+)</div>', out)
    assert m, "the page's load check did not run: " + out[-500:]
    loaded, total = int(m.group(1)), int(m.group(2))
    assert total == SCRIPT.sub("", page).count("<img") > 0 and loaded == total


def test_an_image_given_replaces_input_npy(tmp_path):
    np.save(tmp_path / "input.npy", np.zeros((1, 4, 4), np.float32))
    assert report._load_image(tmp_path, None).shape == (1, 4, 4)
    given = report._load_image(tmp_path, make_image())
    assert given.shape == (1, 80, 96) and given.dtype == np.float32
    assert report._load_image(tmp_path / "nothing", None) is None


def test_peaks_are_decoded_by_each_windows_own_model_in_the_instant_state(monkeypatch):
    ds = make_fake_result(n_windows=3)
    dens = an.latent_density(ds, "instant", grid_size=24)
    seen = []

    class Models:
        def get(self, window=None):
            seen.append(window)
            return FakeModel(patch_size=8)

    wins = [int(w) for w in ds.window.values]
    pk = sections._peaks(dens, wins, Models(), "instant")
    assert seen == wins and pk["patch"].shape[1:] == (8, 8)
    assert set(pk["window"].values) <= set(wins) and pk.sizes["peak"] >= len(wins)
    seen.clear()
    pk = sections._peaks(an.latent_density(ds, grid_size=24), wins, Models(), "final")
    assert seen == [None] and "patch" in pk


def test_the_report_computes_the_same_length_scales_each_time():
    # the report computes the evidence it shows from the Dataset, so it must be deterministic
    ds = make_fake_result(n_windows=4)
    assert an.length_scales(ds).identical(an.length_scales(ds))


def test_sections_skip_with_a_note_and_leave_out_what_does_not_apply():
    from scalevae import ScaleVAEError

    def fail(ctx):
        raise ScaleVAEError("no such thing")

    ctx = sections.Context(make_fake_result(), None, None, (None, None))
    failing = sections.Section("Title", fail, None, "My figure. More words.")
    assert failing.render(ctx) == ["<h3>Title</h3>",
                                   '<p class="note">My figure: skipped (no such thing)</p>']
    missing = sections.Section(None, lambda c: None, None, "cap", missing=lambda c: "absent")
    assert missing.render(ctx) == ['<p class="note">absent</p>']
    assert sections.Section("T", fail, None, "c", when=lambda c: False).render(ctx) == []


def test_the_recommended_window_is_one_of_the_panels():
    ctx = sections.Context(make_fake_result(n_windows=12), None, None, (None, None))
    assert 16 not in ctx.panel_windows and len(ctx.panel_windows) == 5
    ctx.recommended = 16
    for n in (3, 4, 5, 6):
        panels = ctx.panels(n)
        assert 16 in panels and len(panels) == n and panels == sorted(panels)
        assert panels[0] == 8 and panels[-1] == 52  # the ends stay
    assert ctx.panel_windows == ctx.panels(5)


def test_the_explorer_is_in_the_report(full_run):
    page = full_run[0].read_text(encoding="utf-8")
    assert "<h2 id='explorer'>Explorer</h2>" in page and "window.scalevaeExplorer" in page
    assert "Drawn: 288 of 288 keypoints." in page and "Patches are stored for" in page


def test_an_inconclusive_answer_is_shown_neutral_with_its_reason():
    rec = {"window": 20, "low": 8, "high": 52, "state": "instant", "conclusive": False,
           "gradual": True, "still_rising": False, "significant": True, "rises": [],
           "rule": "rises", "note": ""}
    card = report_text.recommendation_card(rec, (None, None))
    assert "No conclusive descriptor size" in card and "changes gradually" in card
    assert "class='big'" not in card and "inconclusive" in card and "20 px" in card
    card = report_text.recommendation_card(dict(rec, conclusive=True), (None, None))
    assert "class='big'>20 px<" in card and "inconclusive" not in card


def test_the_card_reads_the_stored_recommendation_not_a_recomputed_one():
    ds = make_fake_result(n_windows=5)
    ds.attrs.update(recommended_window=12, recommended_window_range=[8, 16],
                    recommended_window_state="final", recommended_window_conclusive=1,
                    length_scales='[{"onset": 8, "middle": 12, "end": 16, "strength": 1.0}]')
    rec = report_text.stored_recommendation(ds, scales=None)
    assert (rec["window"], rec["low"], rec["high"], rec["state"]) == (12, 8, 16, "final")
    del ds.attrs["recommended_window"]
    computed = an.length_scales(ds)
    assert report_text.stored_recommendation(ds, computed)["window"] == int(
        computed["recommended_window"])


def test_a_large_input_npy_is_read_frame_by_frame(tmp_path, monkeypatch):
    # above the lazy-read size the report reads input.npy frame by frame, never whole
    from scalevae.io.lazy import NpyFrames

    ds = make_fake_result(n_windows=3, grid=(8, 9), n_frames=2)
    ds.to_netcdf(tmp_path / "result.nc", engine="h5netcdf")
    np.save(tmp_path / "input.npy", make_image(n_frames=2))
    monkeypatch.setattr(report, "read_lazily", lambda nbytes: True)
    assert isinstance(report._load_image(tmp_path, None), NpyFrames)
    whole = []
    monkeypatch.setattr(NpyFrames, "__array__", lambda self, *a, **k: whole.append(1) or 1 / 0)
    monkeypatch.setattr(report_page, "_DPI", 30)
    report.write_report(tmp_path, quiet=True)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert whole == [] and "Baselines:" in page and "Input image" in page


def test_the_length_scales_the_run_stored_are_drawn_not_computed_again(tmp_path, monkeypatch):
    # a run stores its recommendation state's length scales (pipeline.recommendation): the
    # report draws them and computes only the other state's
    import json

    from scalevae.pipeline import recommendation

    ds = make_fake_result(n_windows=4, grid=(8, 9))
    stored = an.length_scales(ds, "instant")
    ds.attrs.update(recommendation(stored))
    assert report_text.stored_scales(ds, "instant").identical(stored)
    assert json.loads(ds.attrs["length_scale_curves"])["attrs"]["state"] == "instant"
    computed = []
    real = an.length_scales
    monkeypatch.setattr(an, "length_scales",
                        lambda d, state=None, **k: computed.append(state) or real(d, state, **k))
    monkeypatch.setattr(report_page, "_DPI", 30)
    report.write_report(tmp_path, result=ds, quiet=True)
    assert computed == ["final"]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count('alt="Latent change between consecutive windows') == 2  # both states
    # a result whose windows differ from the stored curves' computes them again
    assert report_text.stored_scales(ds.isel(window=[0, 1, 2]), "instant") is None


def test_the_report_gives_back_the_callers_runtime_settings(tmp_path):
    import gc

    before = (sys.getswitchinterval(), gc.get_threshold(), gc.isenabled())
    report.write_report(tmp_path, result=make_fake_result(n_windows=3), quiet=True)
    assert (sys.getswitchinterval(), gc.get_threshold(), gc.isenabled()) == before


def test_the_densities_are_drawn_even_where_no_window_has_a_peak():
    ds = make_fake_result(n_windows=3)
    ctx = sections.Context(ds, None, None, (None, None)).for_state("final")
    none = an.kde_peaks(ctx.density).isel(peak=[])
    fig = sections._draw_peaks(none, ctx)
    assert fig.texts[0].get_text().startswith("latent distribution (KDE)")
    assert len(fig.axes) == len(ctx.panel_windows) and fig.axes[0].images


def test_pooled_models_card_and_figure_state_the_pooled_answer(tmp_path, monkeypatch):
    """--repeats: the card gives the pooled answer with each model's own, and the length-scale
    figure of that state states the same answer (not the first model's)."""
    import json

    from scalevae.pipeline import recommendation

    ds = make_fake_result(n_windows=4, grid=(8, 9))
    ds.attrs.update(recommendation(an.length_scales(ds, "instant")))
    w = [int(v) for v in ds["window"].values]
    ds.attrs.update(recommended_window=w[2], recommended_window_interval=[w[1], w[3]],
                    recommended_window_range=[w[1], w[3]], recommended_window_conclusive=0,
                    recommended_window_answer="gradual", recommended_window_repeats=2,
                    recommended_window_per_model=json.dumps(
                        [{"seed": 0, "window": w[1], "conclusive": True},
                         {"seed": 1, "window": w[3], "conclusive": False}]))
    rec = report_text.stored_recommendation(ds)
    card = report_text.recommendation_card(rec, (None, None))
    assert "No conclusive descriptor size" in card and "changes gradually" in card
    assert f"seed 0: {w[1]} px (conclusive), seed 1: {w[3]} px." in card
    scales = report_text.with_pooled_answer(report_text.stored_scales(ds, "instant"), ds)
    assert int(scales["recommended_window"]) == w[2] and not bool(scales["conclusive"])
    from scalevae import plot

    fig = plot.plot_length_scales(scales)
    title = fig._suptitle.get_text()
    assert title.startswith(f"no conclusive window (gradual): {w[1]}-{w[3]} px, most probable "
                            f"{w[2]} px (2 models pooled")
