"""Reusing a finished run on new images: scalevae.load_run(...).encode and scalevae.apply.

The CLI's `scalevae apply` is in test_cli.py.
"""

import json

import numpy as np
import pytest

import scalevae
from conftest import wave_image
from scalevae.errors import ScaleVAEError

WINDOWS = [8, 12, 16]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short run on a square image (so that np.rot90 keeps its shape)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.warns(UserWarning, match="epoch"):  # 2 epochs is the cap, on purpose
        ds = scalevae.run(wave_image((48, 48)), windows=WINDOWS, keypoints="grid:4", epochs=2,
                          quiet=True, report=False, out=out)
    return out, ds


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny run on an image with a pixel size of 2 nm."""
    from scalevae.io import as_stack

    out = tmp_path_factory.mktemp("calibrated") / "run"
    stack = as_stack(wave_image((40, 40), seed=1), pixel_size=2.0, unit="nm")
    with pytest.warns(UserWarning, match="epoch"):
        scalevae.run(stack, windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True,
                     report=False, out=out)
    return out


def test_encoding_the_training_image_reproduces_the_run(trained):
    out, ds = trained
    run = scalevae.load_run(out)
    new = run.encode(run.input_stack())
    assert new.z_mean.dims == ("state", "window", "point", "latent")
    assert new.window.values.tolist() == WINDOWS
    np.testing.assert_array_equal(new.y.values, ds.y.values)
    for name in ("z_mean", "z_std", "angle"):
        np.testing.assert_allclose(new[name].values, ds[name].values, atol=1e-5, rtol=0)
    # the models' training record comes along, so the result reads like a run's
    np.testing.assert_array_equal(new.kl.values, ds.kl.values)
    assert new.attrs["applied_from"] == str(out)
    assert json.loads(new.attrs["window_px"]) == WINDOWS


def _angle_error(delta, orders=(1, 2, 3, 4, 6)):
    """Distance of ``delta`` to the nearest multiple of 2 pi / m, the best order m per point.

    The encoder gives an m-fold symmetric patch's angle modulo 360/m degrees (model.py,
    _symmetric_angle), m in {1, 2, 3, 4, 6}.
    """
    errs = []
    for m in orders:
        period = 2 * np.pi / m
        d = np.mod(delta + period / 2, period) - period / 2
        errs.append(np.abs(d))
    return np.min(errs, axis=0)


def test_a_rotated_image_keeps_z_and_turns_the_angle_by_90_degrees(trained, tmp_path):
    out, ds = trained
    img = np.load(out / "input.npy")[0]
    rotated = np.rot90(img)  # counter-clockwise as displayed
    # np.rot90 moves (y, x) to (nx - 1 - x, y): the same keypoints in the rotated image
    nx = img.shape[1]
    points = np.c_[np.zeros(ds.sizes["point"]), nx - 1 - ds.x.values, ds.y.values]
    new = scalevae.apply(out, rotated, out=tmp_path / "applied", keypoints=points, report=False)
    for state in ("final", "instant"):
        old = ds.sel(state=state)
        got = new.sel(state=state)
        z_err = np.abs(got.z_mean.values - old.z_mean.values) / old.z_std.values
        # the 12-copy encoder holds 90 degree turns exactly: measured max ~2e-8 posterior std
        assert z_err.max() < 0.3, (state, z_err.max())
        angle_err = _angle_error(got.angle.values - old.angle.values - np.pi / 2)
        assert np.rad2deg(angle_err).max() < 0.1, (state, np.rad2deg(angle_err).max())


def test_windows_stay_physical_lengths_when_the_pixel_size_differs(calibrated):
    run = scalevae.load_run(calibrated)
    img = np.kron(np.load(calibrated / "input.npy")[0], np.ones((2, 2))).astype("float32")
    new = run.encode(img, pixel_size=1.0, unit="nm")  # half the run's 2 nm pixels
    assert new.window.values.tolist() == [8, 12]  # the run's windows: the physical identity
    assert json.loads(new.attrs["window_px"]) == [16, 24]
    cfg = json.loads(new.attrs["config"])
    assert cfg["keypoints"] == "grid:16"  # the grid step is a length too
    assert new.attrs["pixel_size"] == 1.0
    # the same pixel size in other units gives the same windows
    same = run.encode(img, pixel_size=0.001, unit="um")
    assert json.loads(same.attrs["window_px"]) == [16, 24]


def test_a_pixel_size_on_one_side_only_is_refused_naming_the_option(trained, calibrated):
    img = wave_image((48, 48))
    with pytest.raises(ScaleVAEError, match="--pixel-size"):
        scalevae.load_run(calibrated).encode(img)  # the run has 2 nm, the array none
    with pytest.raises(ScaleVAEError, match="--pixel-size"):
        scalevae.load_run(trained[0]).encode(img, pixel_size=2.0, unit="nm")


def test_windows_larger_than_the_new_image_are_refused(trained, calibrated):
    with pytest.raises(ScaleVAEError, match="larger than the image"):
        scalevae.load_run(trained[0]).encode(wave_image((12, 12)))
    with pytest.raises(ScaleVAEError, match="larger than the image"):
        # 12 px of 2 nm are 48 px of 0.5 nm: more than a 40 px image
        scalevae.load_run(calibrated).encode(wave_image((40, 40)), pixel_size=0.5, unit="nm")


def test_apply_writes_a_result_folder_naming_its_source(trained, tmp_path):
    out, _ = trained
    target = tmp_path / "applied"
    ds = scalevae.apply(out, wave_image((48, 48), seed=5), out=target, report=False)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "input.npy", "result.nc"]
    cfg = json.loads((target / "config.json").read_text())
    assert cfg["applied_from"] == str(out)
    back = scalevae.load_result(target)
    np.testing.assert_array_equal(back.z_mean.values, ds.z_mean.values)
    with pytest.raises(ScaleVAEError, match="--overwrite"):
        scalevae.apply(out, wave_image((48, 48)), out=target, report=False)
    with pytest.raises(ScaleVAEError, match="the run folder itself"):
        scalevae.apply(out, wave_image((48, 48)), out=out, report=False, overwrite=True)


def test_a_folder_without_a_run_is_refused(tmp_path):
    with pytest.raises(ScaleVAEError, match="no model checkpoints"):
        scalevae.load_run(tmp_path)
    with pytest.raises(ScaleVAEError, match="not a folder"):
        scalevae.load_run(tmp_path / "missing")


def test_array_keypoints_must_be_given_again(tmp_path):
    img = wave_image((40, 40))
    pts = np.array([[0, 20.0, 20.0], [0, 14.0, 22.0]])
    with pytest.warns(UserWarning, match="epoch"):
        scalevae.run(img, windows=[8, 12], keypoints=pts, epochs=1, quiet=True, report=False,
                     out=tmp_path / "run")
    run = scalevae.load_run(tmp_path / "run")
    with pytest.raises(ScaleVAEError, match="give keypoints"):
        run.encode(img)
    assert run.encode(img, keypoints=pts).sizes["point"] == 2


def test_decode_takes_the_result_arrays_as_they_are(trained):
    out, ds = trained
    model = scalevae.load_model(out)
    sel = ds.sel(state="final", window=WINDOWS[-1]).isel(point=slice(0, 3))
    patches = model.decode(sel.z_mean, angle=sel.angle)  # xarray in: no torch TypeError
    assert tuple(patches.shape) == (3, 8, 8)
    post = model.encode(patches.detach().numpy())  # NumPy in
    assert tuple(post["z_mean"].shape) == (3, 2)


def test_apply_quiet_writes_the_report_without_progress_lines(trained, tmp_path, capsys):
    """`scalevae apply --quiet` is honoured: the report is written, its progress lines are not."""
    import numpy as np

    from scalevae.cli import main

    out, _ = trained
    image = tmp_path / "new.npy"
    np.save(image, wave_image((48, 48), seed=6))
    assert main(["apply", str(out), str(image), "--quiet", "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "a" / "report.html").exists()
    assert "report:" not in captured.err and "result:" in captured.out
