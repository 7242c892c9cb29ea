"""Descriptors from a finished run: labels, default window, new points, patches, export."""

import numpy as np
import pytest
import xarray as xr

import scalevae
from scalevae.cli import main
from scalevae.descriptors import descriptors, feature_matrix
from scalevae.errors import ScaleVAEError
from scalevae.patches import extract_patches

from conftest import wave_image


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    with pytest.warns(UserWarning):  # few keypoints, one epoch: both are warned about
        scalevae.run(wave_image((56, 56)), windows=[8, 12, 16], keypoints="grid:4", epochs=1,
                     quiet=True, report=False, out=folder, overwrite=True)
    return scalevae.load_run(folder)


def test_default_is_the_recommended_window_labelled_per_point(run):
    d = run.descriptors(kind="both")
    res = run.result
    w = int(res.attrs["recommended_window"])
    assert d.attrs["window"] == w and d.attrs["recommended_window"] == w
    assert list(d.attrs["recommended_window_range"]) == list(res.attrs["recommended_window_range"])
    assert "recommended_window_conclusive" in d.attrs
    assert d.z_mean.dims == ("point", "latent") and d.z_std.dims == ("point", "latent")
    assert d.angle.dims == ("point",)
    assert d.patch.shape == (res.sizes["point"], run.patch_size, run.patch_size)
    np.testing.assert_array_equal(d.y.values, res.y.values)
    np.testing.assert_array_equal(d.frame.values, res.frame.values)
    state = d.attrs["state"]
    np.testing.assert_array_equal(d.z_mean.values,
                                  res.z_mean.sel(state=state, window=w).values)
    assert feature_matrix(d).shape == (res.sizes["point"], res.sizes["latent"])
    assert feature_matrix(d, "both").shape[1] == res.sizes["latent"] + run.patch_size ** 2


def test_patches_are_what_the_model_sees(run):
    d = run.descriptors(window=16, kind="patches")
    pts = np.column_stack([d.frame.values, d.y.values, d.x.values])
    expected = extract_patches(run.input_stack().data, pts, 16, run.patch_size,
                               normalization=run.normalization)
    np.testing.assert_array_equal(d.patch.values, expected)
    assert "z_mean" not in d


@pytest.mark.parametrize("state", ["instant", "final"])
def test_new_points_at_the_keypoints_give_the_stored_latents(run, state):
    res = run.result
    yx = np.column_stack([res.y.values, res.x.values])[::3]
    d = run.descriptors(window=12, points=yx, state=state)
    np.testing.assert_allclose(d.z_mean.values,
                               res.z_mean.sel(state=state, window=12).values[::3], atol=1e-5)
    assert d.sizes["point"] == len(yx) and (d.frame.values == 0).all()


def test_a_new_image_is_described_at_the_run_windows_physical_length(run):
    img = np.rot90(wave_image((56, 56), seed=3)).copy()
    d = run.descriptors(window=8, image=img, points=[[20.0, 20.0], [30.5, 27.0]])
    assert d.sizes["point"] == 2 and d.attrs["window_px"] == 8
    grid = run.descriptors(window=8, image=img)  # the run's keypoint rule on the new image
    assert grid.sizes["point"] > 50 and np.isfinite(grid.z_mean.values).all()


def test_bad_window_and_kind_are_refused_naming_the_fix(run):
    with pytest.raises(ScaleVAEError, match="8, 12, 16"):
        run.descriptors(window=10)
    with pytest.raises(ScaleVAEError, match="latents, patches, both"):
        run.descriptors(kind="pixels")


@pytest.mark.parametrize("suffix", [".nc", ".npz"])
def test_export_cli_round_trip(run, tmp_path, capsys, suffix):
    out = tmp_path / f"d{suffix}"
    assert main(["export", str(run.path), "--window", "12", "--kind", "both",
                 "--out", str(out)]) == 0
    expected = descriptors(run, window=12, kind="both")
    if suffix == ".nc":
        got = xr.open_dataset(out, engine="h5netcdf").load()
        xr.testing.assert_allclose(got[["z_mean", "patch"]], expected[["z_mean", "patch"]])
        assert got.attrs["window"] == 12
    else:
        got = np.load(out)
        np.testing.assert_array_equal(got["z_mean"], expected.z_mean.values)
        np.testing.assert_array_equal(got["x"], expected.x.values)
    assert str(out) in capsys.readouterr().out


def test_export_to_an_unknown_format_exits_2(run, tmp_path, capsys):
    assert main(["export", str(run.path), "--out", str(tmp_path / "d.csv")]) == 2
    assert ".nc" in capsys.readouterr().err
