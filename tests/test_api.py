"""End-to-end runs through scalevae.run: the stored Dataset is DESIGN.md's contract."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

import scalevae
from scalevae.analysis import length_scales
from scalevae.results import load_model, load_result


def texture(shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 1.5).astype(np.float32)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    ds = scalevae.run(texture(), windows="8:16:4", keypoints="grid:8", epochs=2, out=out,
                      quiet=True, report=False, seed=3)
    return ds, out


def test_result_has_the_names_dims_and_coords_of_the_design(small_run):
    ds, out = small_run
    assert list(ds.window.values) == [8, 12, 16]
    assert list(ds.state.values) == ["instant", "final"]
    assert list(ds.latent.values) == ["z1", "z2"]
    n = ds.sizes["point"]
    assert ds.z_mean.dims == ("state", "window", "point", "latent")
    assert ds.z_mean.shape == (2, 3, n, 2)
    assert ds.z_std.dims == ds.z_mean.dims and bool((ds.z_std > 0).all())
    assert ds.angle.dims == ("state", "window", "point")
    assert ds.loss.dims[0] == "window" and ds.loss.dims[1] == "epoch"
    assert ds.kl.dims == ("window", "latent")
    for c in ("frame", "y", "x"):
        assert ds[c].dims == ("point",)
    # every kept keypoint has its whole largest window inside the 64 x 64 frame
    half = (16 - 1) / 2
    assert float(ds.y.min()) >= half and float(ds.y.max()) <= 63 - half
    # the patch size comes from the image's spectrum, between the smallest window and the bound
    assert 8 <= ds.attrs["patch_size"] <= 16 and ds.attrs["patch_size"] % 4 == 0
    assert "px" in ds.attrs["patch_size_reason"]
    cfg = json.loads(ds.attrs["config"])
    assert cfg["windows"] == [8, 12, 16] and cfg["seed"] == 3
    assert json.loads(ds.attrs["normalization"])["scale"] > 0
    assert (out / "config.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "manifest.json", "window_0008.pt", "window_0012.pt", "window_0016.pt"]


def test_result_carries_the_recommended_window_and_its_evidence(small_run):
    ds, out = small_run
    saved = load_result(out)
    for d in (ds, saved):
        assert int(d.attrs["recommended_window"]) in (8, 12, 16)
        assert int(d.attrs["recommended_window_significant"]) in (0, 1)
        lo, hi = (int(v) for v in d.attrs["recommended_window_range"])
        assert lo <= int(d.attrs["recommended_window"]) <= hi
        assert "rise" in d.attrs["recommended_window_rule"]
        # a weak answer (not significant, or not conclusive) always says why
        weak = not (int(d.attrs["recommended_window_significant"])
                    and int(d.attrs["recommended_window_conclusive"]))
        assert not weak or d.attrs["recommended_window_note"] != ""
        assert isinstance(json.loads(d.attrs["length_scales"]), list)
        assert int(d.attrs["length_scales_gradual"]) in (0, 1)
        assert not int(d.attrs["length_scales_gradual"]) or not int(
            d.attrs["recommended_window_conclusive"])
        # read from the instant state (config.SCALES_STATE), and length_scales(ds) without a
        # state reads the same one: a user recomputing the scales gets the stored answer
        assert d.attrs["recommended_window_state"] == "instant"
        # checked against the other state: conclusive only where the final state agrees
        check = json.loads(d.attrs["recommended_window_check"])
        assert check["state"] == "final" and check["window"] in (8, 12, 16)
        assert not int(d.attrs["recommended_window_conclusive"]) or check["agrees"]
        again = length_scales(d)
        assert again.attrs["state"] == "instant"
        assert int(again["recommended_window"]) == int(d.attrs["recommended_window"])


def test_a_result_saved_before_the_state_attribute_is_read_from_its_final_state(small_run):
    """Results written before recommended_window_state existed were read from the final
    state; re-reading them must not silently switch to another state's answer."""
    ds, _ = small_run
    old = ds.copy()
    del old.attrs["recommended_window_state"]
    assert length_scales(old).attrs["state"] == "final"
    assert length_scales(old, state="instant").attrs["state"] == "instant"


def test_result_stores_the_spectral_period_of_a_periodic_image():
    """The model-free baseline beside the recommended window: a stripe period of 12 px."""
    yy, xx = np.mgrid[:96, :96]
    rng = np.random.default_rng(0)
    img = (np.sin(2 * np.pi * xx / 12) + 0.2 * rng.normal(size=xx.shape)).astype("float32")
    ds = scalevae.run(img, windows=[8, 12, 16], keypoints="grid:8", epochs=1, quiet=True,
                      report=False)
    assert abs(float(ds.attrs["spectral_period"]) - 12) < 1


def test_default_windows_start_below_a_fine_period_and_say_why():
    """A grid on 12 px stripes: the default range starts at a third of the period (4 px), so it
    brackets the regrouping the stripes cause; white noise keeps the 8 px start."""
    yy, xx = np.mgrid[:96, :96]
    rng = np.random.default_rng(0)
    img = (np.sin(2 * np.pi * xx / 12) + 0.2 * rng.normal(size=xx.shape)).astype("float32")
    ds = scalevae.run(img, keypoints="grid:8", epochs=1, quiet=True, report=False)
    assert ds["window"].values.tolist() == [4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
    assert "third of the image's spectral period (12." in ds.attrs["windows_reason"]
    noise = rng.normal(size=(96, 96)).astype("float32")
    ds = scalevae.run(noise, keypoints="grid:8", epochs=1, quiet=True, report=False)
    assert int(ds["window"][0]) == 8 and ds.attrs["windows_reason"].startswith("default: 8 px")


def test_atom_keypoints_keep_the_default_start_on_a_fine_lattice():
    """Windows below the bond carry nothing for atom-centred patches: no early start for atoms."""
    from scalevae.plan import choose_windows as _windows
    from scalevae.io import as_stack

    yy, xx = np.mgrid[:96, :96]
    img = (np.sin(2 * np.pi * xx / 12) * np.sin(2 * np.pi * yy / 12)).astype("float32")
    stack = as_stack(img)
    assert int(_windows(None, stack, None, "grid:4")[0][0]) == 4
    assert int(_windows(None, stack, None, "atoms")[0][0]) == 8
    assert _windows([8, 16], stack, None, "grid:4")[1] == "given"


def test_last_window_instant_equals_final(small_run):
    ds, _ = small_run
    np.testing.assert_allclose(ds.z_mean.sel(state="instant", window=16),
                               ds.z_mean.sel(state="final", window=16), atol=1e-5)


def test_result_file_opens_with_plain_xarray(small_run):
    _, out = small_run
    code = ("import sys, xarray as xr; ds = xr.open_dataset(sys.argv[1]); "
            "assert 'scalevae' not in sys.modules; print(ds.z_mean.dims)")
    res = subprocess.run([sys.executable, "-c", code, str(out / "result.nc")],
                         capture_output=True, text=True, check=True)
    assert "state" in res.stdout


def test_load_result_and_model_decode_any_latent_point(small_run):
    _, out = small_run
    ds = load_result(out)
    import torch

    model = load_model(out)
    img = model.decode(torch.zeros(5, 2), angle=torch.zeros(5))
    assert img.shape == (5, ds.attrs["patch_size"], ds.attrs["patch_size"])
    first = load_model(out, window=8)
    assert first.patch_size == ds.attrs["patch_size"]


def test_stack_with_control_values_and_grid_shape():
    imgs = np.stack([texture(seed=s) for s in range(3)])
    ds = scalevae.run(imgs, windows=[8, 12], keypoints="grid:12", epochs=1, quiet=True,
                      report=False, control=[0.1, 0.2, 0.3], control_name="composition")
    assert set(np.unique(ds.frame.values)) == {0, 1, 2}
    assert list(ds.control.values) == [0.1, 0.2, 0.3]
    assert ds.attrs["grid_shape"] is not None


def test_physical_windows_with_a_pixel_size():
    ds = scalevae.run(texture(), windows="16nm:32nm:8nm", pixel_size=2.0, unit="nm",
                      keypoints="grid:16", epochs=1, quiet=True, report=False)
    assert list(ds.window.values) == [8, 12, 16]
    assert ds.attrs["unit"] == "nm" and ds.attrs["pixel_size"] == 2.0


def test_translation_model_stores_shifts_in_pixels():
    ds = scalevae.run(texture(), windows=[8, 16], keypoints="grid:16",
                      invariance="rotation+translation", epochs=1, quiet=True, report=False)
    assert ds["shift"].dims == ("state", "window", "point", "axis")
    assert list(ds.axis.values) == ["y", "x"] and ds["shift"].attrs["units"] == "px"


def test_plain_vae_has_no_angle():
    ds = scalevae.run(texture(), windows=[8, 12], keypoints="grid:16", invariance="none",
                      epochs=1, quiet=True, report=False)
    assert "angle" not in ds and "shift" not in ds


def _wall_labels(ds, image):
    """Domain walls = top 20 % of the smoothed amplitude gradient at the keypoint, interiors =
    bottom 40 %: no ground truth exists for real PFM, and walls are where amplitude changes."""
    sm = ndimage.gaussian_filter(image, 1.0)
    grad = np.hypot(ndimage.sobel(sm, 0), ndimage.sobel(sm, 1))
    g = grad[ds.y.values.round().astype(int), ds.x.values.round().astype(int)]
    wall, interior = g > np.quantile(g, 0.8), g < np.quantile(g, 0.4)
    return wall, wall | interior


def test_real_pfm_latents_tell_domain_walls_from_interiors(real_data, tmp_path):
    """On the real PTO amplitude image the smallest-window latents separate walls from domain
    interiors. Threshold: cross-validated ROC AUC > 0.85 (chance = 0.5); measured 0.94-0.99
    over seeds 0-2 with these settings (and 0.99 for the full 8..64 px run). Windows 8 and 32
    only: the 8 px instant encoding is bit-identical to that of windows 8:32:8 (the largest
    window fixes the keypoints and the patch size; the windows between train after it)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    path = real_data / "PTO_Funakubo0004.h5"
    ds = scalevae.run(path, channel="AmplitudeRetrace", windows="8,32", keypoints="grid:4",
                      epochs=15, quiet=True, report=False, out=tmp_path / "pto")
    image = np.load(tmp_path / "pto" / "input.npy")[0]
    wall, sel = _wall_labels(ds, image)
    z = ds.z_mean.sel(state="instant", window=8).values
    auc = cross_val_score(LogisticRegression(max_iter=1000), z[sel], wall[sel], cv=5,
                          scoring="roc_auc").mean()
    assert auc > 0.85
    assert ds.attrs["unit"] in ("nm", "um")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["PTO_Funakubo0002.h5", "PTO_Funakubo0004.h5", "PZT_thick0004.h5"])
def test_full_run_on_each_real_pfm_file(real_data, tmp_path, name):
    ds = scalevae.run(real_data / name, channel="AmplitudeRetrace", windows="8:64:4",
                      keypoints="grid:4", quiet=True, out=tmp_path / "r")
    assert ds.sizes["window"] == 15
    assert bool(np.isfinite(ds.z_mean).all())
    assert (tmp_path / "r" / "report.html").exists()


def test_windows_stopped_by_the_epoch_cap_are_named_in_a_warning_and_the_result():
    with pytest.warns(UserWarning, match=r"window\(s\) 8, 12 px ran all 1 epochs of the cap"):
        ds = scalevae.run(texture(), windows=[8, 12], keypoints="grid:16", epochs=1, quiet=True,
                          report=False)
    assert json.loads(ds.attrs["windows_at_epoch_cap"]) == [8, 12]


def test_keypoints_too_many_to_hold_are_cut_block_by_block_with_the_same_result(monkeypatch):
    """Above the patch budget the patches are never all in memory: training cuts its subset,
    encoding cuts blocks; the numbers are those of the run that holds every patch, to float
    rounding (cutting fewer keypoints at once may take the other resampling route: measured
    differences <= 1e-5 in z, <= 1.4e-4 rad in the angle)."""
    import scalevae.pipeline as api
    import scalevae.training.progressive as progressive

    rng = np.random.default_rng(3)
    img = ndimage.gaussian_filter(rng.normal(size=(64, 64)), 2).astype("float32")
    kw = dict(windows=[8, 12, 16], keypoints="grid:2", epochs=2, seed=1, quiet=True,
              report=False, train_options={"max_train_points": 200})
    held = scalevae.run(img, **kw)
    n = held.sizes["point"]
    sizes = []
    cut = api.extract_patches

    def recording(stack, points, *a, **k):
        sizes.append(len(points))
        return cut(stack, points, *a, **k)

    monkeypatch.setattr(api, "PATCH_CACHE_BYTES", 0)
    monkeypatch.setattr(api, "extract_patches", recording)
    real_blocks = progressive.encode_in_blocks
    monkeypatch.setattr(api, "encode_in_blocks",
                        lambda *a, **k: real_blocks(*a, **{**k, "block": 100}))
    monkeypatch.setattr(progressive, "encode_in_blocks",
                        lambda *a, **k: real_blocks(*a, **{**k, "block": 100}))
    streamed = scalevae.run(img, **kw)
    assert n > 200 and max(sizes) <= 200  # never all keypoints at once
    for name in ("z_mean", "z_std", "angle"):
        np.testing.assert_allclose(streamed[name].values, held[name].values, rtol=0, atol=1e-3)
    np.testing.assert_allclose(streamed.loss.values, held.loss.values, rtol=1e-5)


@pytest.mark.parametrize("invariance", ["rotation", "none", "rotation+translation"])
def test_initial_weights_come_from_a_generator_and_leave_the_global_state_alone(invariance):
    """The model's initial weights are those torch.manual_seed(seed) gave (results stay the
    numbers they were), drawn from a seeded generator: the caller's global random state is
    not touched."""
    import torch

    from scalevae.model import SIVAE
    from scalevae.pipeline import new_model

    plan = types.SimpleNamespace(patch_size=12, latent_dim=3, invariance=invariance, seed=7)
    torch.manual_seed(7)
    expected = SIVAE(12, 3, invariance).state_dict()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    got = new_model(plan).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    other = new_model(types.SimpleNamespace(**{**vars(plan), "seed": 8})).state_dict()
    assert not all(torch.equal(other[k], got[k]) for k in got)


def test_max_train_points_is_a_keyword_and_old_input_names_still_work_with_a_warning():
    img = np.random.default_rng(0).normal(size=(40, 40)).astype("float32")
    with pytest.warns(FutureWarning, match=r"run\(image=...\) is now run\(images=...\)"):
        ds = scalevae.run(image=img, windows=[8, 12], keypoints="grid:2", epochs=1, quiet=True,
                          report=False, max_train_points=50)
    assert int(ds.attrs["n_train_points"]) == 50 < ds.sizes["point"]
    assert json.loads(ds.attrs["config"])["train"]["max_train_points"] == 50
    with pytest.raises(TypeError, match="images"):
        scalevae.run(img, image=img)


def test_repeats_pool_the_recommendation_of_models_trained_side_by_side(tmp_path):
    import warnings

    from scalevae.analysis.recommend import recommend, recommendation_attrs
    from scalevae.datasets import ferroelectric_domains

    img = ferroelectric_domains(shape=(96, 96), seed=0).images
    kw = dict(windows=[8, 12, 16, 20], keypoints="grid:8", epochs=2, quiet=True, report=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # each model alone, on the thread share it gets beside the other
        alone = [scalevae.run(img, seed=s, threads=1, **kw) for s in (0, 1)]
        two = scalevae.run(img, repeats=2, threads=2, out=tmp_path / "r", **kw)
    assert two.attrs["train_threads"] == 1
    # the first model is the same run; the answer pools both models' resamples, exactly as
    # recommend() pools the two runs made one after the other
    np.testing.assert_array_equal(alone[0].z_mean.values, two.z_mean.values)
    assert two.attrs["recommended_window_repeats"] == 2
    pooled = recommendation_attrs(recommend(alone))
    for name in ("recommended_window", "recommended_window_interval",
                 "recommended_window_probability", "recommended_window_n_resamples",
                 "recommended_window_conclusive", "recommended_window_check"):
        assert np.array_equal(two.attrs[name], pooled[name]), name
    models = json.loads(two.attrs["recommended_window_per_model"])
    assert [m["seed"] for m in models] == [0, 1]
    for m, ds in zip(models, alone):
        assert m["window"] == int(recommend(ds)["recommended_window"])
    # the second model is checkpointed in its own folder, and a resume reads it back
    ckpt = tmp_path / "r" / "checkpoints" / "seed_1"
    assert sorted(p.name for p in ckpt.glob("window_*.pt")) == [
        f"window_{w:04d}.pt" for w in kw["windows"]]
    stamps = {p: p.stat().st_mtime_ns for p in ckpt.glob("window_*.pt")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = scalevae.run(img, repeats=2, threads=2, out=tmp_path / "r", resume=True, **kw)
    assert {p: p.stat().st_mtime_ns for p in ckpt.glob("window_*.pt")} == stamps
    assert again.attrs["recommended_window_probability"] == two.attrs[
        "recommended_window_probability"]
    with pytest.raises(scalevae.ScaleVAEError, match="repeats"):
        scalevae.run(img, repeats=0, **kw)
    with pytest.raises(scalevae.ScaleVAEError, match="threads"):
        scalevae.run(img, threads=0, **kw)
