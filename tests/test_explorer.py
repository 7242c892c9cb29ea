"""The report's explorer: its data, and what it does in a real browser (playwright, system
chromium, no browser download)."""

import json
import re
import shutil
import warnings
from pathlib import Path
import numpy as np
import pytest
import xarray as xr
from scalevae.testing import make_fake_result

from scalevae.report import explorer
from scalevae.report import page as report_page

PTO = (Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
       / "PTO_Funakubo0004.h5")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _data(parts):
    page = "\n".join(parts)
    m = re.search(r"<script type='application/json' id='sv-data'>(.*?)</script>", page, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_subsamples_are_even_and_stated():
    assert explorer.drawn_points(3, 10).tolist() == [0, 1, 2]
    drawn = explorer.drawn_points(1000, 100)
    assert len(drawn) == 100 and drawn[0] == 0 and drawn[-1] == 999
    stored = explorer.patch_points(drawn, 7)
    assert len(stored) == 7 and set(stored) <= set(drawn)


def test_explorer_without_image_or_model_still_draws_latents(monkeypatch):
    monkeypatch.setattr(explorer, "MAX_DRAWN", 50)
    ds = make_fake_result(n_windows=3, grid=(10, 12))
    parts = explorer.explorer_html(ds)
    data = _data(parts)
    assert data["n_points"] == 120 and len(data["drawn"]) == 50
    assert "Drawn: 50 of 120 keypoints (an even subsample" in "".join(parts)
    assert "no input image" in data["patch_note"] and "seen" not in data
    # float16: three significant digits, finer than the scatter plot draws
    z = np.frombuffer(__import__("base64").b64decode(data["z"]["final"]), np.float16)
    want = ds["z_mean"].sel(state="final").values[:, data["drawn"]]
    np.testing.assert_array_equal(z.reshape(want.shape), want.astype(np.float16))


@pytest.fixture(scope="module")
def pto_run(tmp_path_factory):
    """A small, fast real run: a crop of the PTO PFM image, 3 windows, 2 epochs; the report
    written with coarse figures (the explorer is what is tested here)."""
    if not PTO.exists():
        pytest.skip(f"real data {PTO} is absent (it lives in shared/ beside the repo)")
    import scalevae
    from scalevae.io import read_image

    stack = read_image(PTO, channel="AmplitudeRetrace")
    out = tmp_path_factory.mktemp("pto") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scalevae.run(np.asarray(stack.data)[:, :72, :72], windows=[8, 12, 16],
                     keypoints="grid:4", epochs=2, out=out, quiet=True, report=False)
    from scalevae.report import write_report

    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report_page, "_DPI", 30)
        write_report(out, progress=lambda d, t, label: lines.append((d, t, label)))
    return out, lines


def test_the_report_says_what_it_writes_as_it_goes(pto_run):
    _, lines = pto_run
    assert [d for d, _, _ in lines] == list(range(1, len(lines) + 1))
    assert all(t == lines[0][1] for _, t, _ in lines) and lines[-1][0] == lines[-1][1]
    labels = [label for *_, label in lines]
    assert "explorer" in labels and "Latent distributions and their peaks (final)" in labels
    assert labels[0] == "latent density and length scales (final)"
    assert labels[-1].startswith("writing")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: "
                    "apt-get install -y chromium)")
def test_explorer_in_a_real_browser_matches_result_nc(pto_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    run, _ = pto_run
    ds = xr.open_dataset(run / "result.nc", engine="h5netcdf")
    page_html = (run / "report.html").read_text(encoding="utf-8")
    data = _data([page_html])
    drawn = np.asarray(data["drawn"])
    window = 12
    # the explorer opens on the state the report's card reads
    state = str(ds.attrs["recommended_window_state"])
    # the page holds the latents as float16: the box selects on those values
    z = ds["z_mean"].sel(state=state, window=window).values[drawn].astype(np.float16)
    z1lo, z1hi = np.quantile(z[:, 0], [0.2, 0.7])
    z2lo, z2hi = np.quantile(z[:, 1], [0.1, 0.8])
    inside = ((z[:, 0] >= z1lo) & (z[:, 0] <= z1hi) & (z[:, 1] >= z2lo) & (z[:, 1] <= z2hi))
    expected = drawn[inside]
    assert 0 < len(expected) < len(drawn)

    requests = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((run / "report.html").as_uri())
            page.wait_for_function("window.scalevaeExplorer && window.scalevaeExplorer.ready()",
                                   timeout=20000)
            assert page.evaluate("document.querySelector(\"input[name='sv-state']:checked\")"
                                 ".value") == state
            assert page.evaluate(f"scalevaeExplorer.setWindow({window})") == window
            got = page.evaluate("([a, b, c, d]) => scalevaeExplorer.selectLatentBox(a, b, c, d)",
                                [float(z1lo), float(z1hi), float(z2lo), float(z2hi)])
            assert sorted(got) == expected.tolist()
            # the selection is the shared Bokeh one: both views show it
            assert sorted(page.evaluate("scalevaeExplorer.selected()")) == expected.tolist()
            point = int(data["patch_points"][len(data["patch_points"]) // 2])
            assert page.evaluate(f"scalevaeExplorer.selectPoint({point})") == 3
            assert page.locator("#sv-patches canvas.sv-seen").count() == 3
            assert page.locator("#sv-patches canvas.sv-recon").count() == 3
            windows = page.eval_on_selector_all("#sv-patches canvas.sv-seen",
                                                "cs => cs.map(c => +c.dataset.window)")
            assert windows == [8, 12, 16]
            traj = page.evaluate("Bokeh.documents[0].get_model_by_name('sv_traj').data.z1")
            want = ds["z_mean"].sel(state=state, latent="z1").values[:, point]
            np.testing.assert_allclose(traj, want, rtol=1e-3, atol=1e-4)  # float16
            other = "final" if state == "instant" else "instant"
            assert page.evaluate(f"scalevaeExplorer.setState('{other}')") == other
            assert errors == []
        finally:
            browser.close()
    # works offline from file://: nothing but the file itself is requested
    assert {u.split(":")[0] for u in requests} <= {"file", "data", "blob"}


def test_the_background_is_drawn_bright_where_the_image_is_bright():
    # the static figures draw low values dark (matplotlib "gray"); so must the explorer
    ds = make_fake_result(n_windows=3, grid=(6, 6))
    img = np.zeros((1, 40, 40), np.float32)
    img[0, :, 20:] = 1.0  # right half bright
    data = explorer._payload(ds, img, None, explorer.drawn_points(36), np.arange(2))
    layout, _ = explorer._figures(ds, img, data, None)
    fig = layout.select_one({"name": "sv_image"})
    glyph = fig.renderers[0]
    bg = np.asarray(glyph.data_source.data["image"][0])
    palette = glyph.glyph.color_mapper.palette
    assert bg[0, -1] == 255 and bg[0, 0] == 0
    assert palette[-1].lower() in ("#ffffff", "white") and palette[0].lower() == "#000000"
