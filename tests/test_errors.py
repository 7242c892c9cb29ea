"""Bad input never gives a traceback: one clear line on stderr and exit code 2 (issue 6).

Every case goes through the command line (``scalevae.cli.main``) as a user would meet it, and
the message is checked for *what* is wrong and *how* to fix it. Reader-level details of the
file formats are tested in test_io.py; here the point is what the user sees.
"""

import errno
import functools
import logging
import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scalevae
from conftest import wave_image
from scalevae.cli import main
from scalevae.errors import ScaleVAEError
from scalevae.io import read_image

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
FAST = ["--windows", "8,12,16", "--keypoints", "grid:8", "--epochs", "1", "--quiet",
        "--no-report"]


def cli_error(capsys, argv):
    """Run the CLI; assert exit 2 and exactly one 'scalevae: error:' line; return that line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("scalevae: error: "), err
    return lines[0]


def image(seed=0, shape=(48, 48)):
    return wave_image(shape, seed)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One folder of good and bad input files, made once."""
    import h5py
    import tifffile
    from PIL import Image

    d = tmp_path_factory.mktemp("inputs")
    good = image()
    rng = np.random.default_rng(1)
    np.save(d / "good.npy", good)

    def cut(src, dst, frac=0.5):
        raw = Path(src).read_bytes()
        (d / dst).write_bytes(raw[:int(len(raw) * frac)])

    tifffile.imwrite(d / "good.tif", good)
    cut(d / "good.tif", "truncated.tif")
    (d / "garbage.tif").write_bytes(b"II*\x00" + rng.bytes(400))
    with h5py.File(d / "good.h5", "w") as h5:
        h5["image"] = good
    cut(d / "good.h5", "truncated.h5")
    (d / "garbage.h5").write_bytes(rng.bytes(600))
    with h5py.File(d / "two.h5", "w") as h5:
        h5["height"] = good
        h5["phase"] = good[::-1].copy()
    cut(d / "good.npy", "truncated.npy")
    (d / "garbage.npy").write_bytes(rng.bytes(300))
    np.savez(d / "two.npz", height=good, phase=good[::-1])
    cut(d / "two.npz", "truncated.npz")
    # an Igor version-5 header whose block sizes promise far more bytes than the file has
    (d / "truncated.ibw").write_bytes(struct.pack("<hhl", 5, 0, 0) + struct.pack("<l", 10**6)
                                      + bytes(56) + rng.bytes(100))
    (d / "garbage.ibw").write_bytes(rng.bytes(300))
    (d / "garbage.dm3").write_bytes(rng.bytes(300))
    Image.fromarray((rng.random((48, 48)) * 255).astype("uint8")).save(d / "good.png")
    cut(d / "good.png", "truncated.png")
    (d / "image.xyz").write_text("not an image")
    (d / "image").write_bytes(b"no extension")
    np.save(d / "one_d.npy", good.ravel())
    np.save(d / "four_d.npy", np.stack([np.stack([good, good])] * 2))
    np.save(d / "rgb.npy", rng.random((48, 48, 3)))
    np.save(d / "rgba.npy", rng.random((48, 48, 4)))
    np.save(d / "complex.npy", good + 1j * good[::-1])
    for name, value in (("nan", np.nan), ("inf", np.inf), ("neginf", -np.inf)):
        a = good.copy()
        a[5, 7] = value
        np.save(d / f"{name}.npy", a)
    np.save(d / "constant.npy", np.full((48, 48), 3.0))
    np.save(d / "const_frame.npy", np.stack([good, np.zeros_like(good)]))
    np.save(d / "small.npy", good[:12, :12])
    np.save(d / "tiny.npy", good[:5, :5])
    np.save(d / "empty_stack.npy", np.zeros((0, 48, 48)))
    np.save(d / "strings.npy", np.array([["a"] * 48] * 48))
    kp = {
        "kp_no_x.csv": "frame,y\n0,20\n",
        "kp_no_header.csv": "0,20,20\n0,24,24\n",
        "kp_frame.csv": "frame,y,x\n3,20,20\n",
        "kp_neg_frame.csv": "frame,y,x\n-1,20,20\n",
        "kp_frac_frame.csv": "frame,y,x\n0.5,20,20\n",
        "kp_text.csv": "frame,y,x\n0,twenty,20\n",
        "kp_nan.csv": "frame,y,x\n0,nan,20\n",
        "kp_short_row.csv": "frame,y,x\n0,20\n",
        "kp_outside.csv": "frame,y,x\n0,20,20\n0,20,100\n",
        "kp_negative.csv": "frame,y,x\n0,-3,20\n",
        "kp_border.csv": "frame,y,x\n0,1,1\n0,46,46\n0,2,40\n",
        "kp_header_only.csv": "frame,y,x\n",
        "kp_empty.csv": "",
    }
    for name, text in kp.items():
        (d / name).write_text(text)
    np.save(d / "kp_shape.npy", np.zeros((4, 5)))
    (d / "kp_binary.csv").write_bytes(b"\x00\x01\x02" * 2000)  # a binary file: one long "line"
    (d / "kp_garbage.npy").write_bytes(rng.bytes(200))
    # every reader: an empty file, the first bytes only, garbage, and a file with no image
    for ext in EMPTY:
        (d / f"empty.{ext}").write_bytes(b"")
    np.savez(d / "good.npz", height=good)
    Image.fromarray((rng.random((48, 48)) * 255).astype("uint8")).save(d / "good.jpg")
    for ext in ("tif", "npy", "npz", "png"):
        cut(d / f"good.{ext}", f"head.{ext}", 16 / (d / f"good.{ext}").stat().st_size)
    cut(d / "good.jpg", "truncated.jpg")
    for ext in ("npz", "png", "jpg", "dm4"):
        (d / f"garbage.{ext}").write_bytes(rng.bytes(300))
    with h5py.File(d / "no_images.h5", "w") as h5:
        h5.create_group("empty")
    np.savez(d / "no_arrays.npz")
    import zarr

    zarr.open_group(str(d / "no_arrays.zarr"), mode="w")
    return d


EMPTY = ("tif", "npy", "npz", "png", "jpg", "h5", "ibw", "dm3", "dm4")


@pytest.fixture(scope="module")
def finished(files, tmp_path_factory):
    """A finished run of the good image (FAST options) to copy into a test's folder."""
    base = tmp_path_factory.mktemp("finished")
    assert main([str(a) for a in run_args(files, base)]) == 0
    return base / "run"


def finished_in(finished, tmp_path):
    import shutil

    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def run_args(files, tmp_path, name="good.npy", *extra, fast=FAST):
    return ["run", files / name, *fast, *extra, "--out", tmp_path / "run"]


# (input file, regex the message must match: what is wrong ... how to fix it)
BAD_FILES = [
    ("missing.npy", r"file not found: .*missing\.npy"),
    ("image.xyz", r"unknown file type '\.xyz'; supported: .*\.tif"),
    ("image", r"unknown file type '\(no extension\)'"),
    ("truncated.tif", r"could not read .*truncated\.tif as TIFF.*truncated or corrupt"),
    ("garbage.tif", r"could not read .*garbage\.tif as TIFF.*truncated or corrupt"),
    ("truncated.h5", r"could not read .*truncated\.h5 as HDF5.*truncated or corrupt"),
    ("garbage.h5", r"could not read .*garbage\.h5 as HDF5.*truncated or corrupt"),
    ("truncated.npy", r"could not read .*truncated\.npy as NumPy.*truncated or corrupt"),
    ("garbage.npy", r"garbage\.npy is not a NumPy \.npy file \(no NumPy header.*corrupt"),
    ("truncated.npz", r"could not read .*truncated\.npz.*truncated or corrupt"),
    ("truncated.ibw", r"could not read .*truncated\.ibw as Igor binary wave.*truncated or corrupt"),
    ("garbage.ibw", r"could not read .*garbage\.ibw as Igor binary wave.*truncated or corrupt"),
    ("garbage.dm3", r"could not read .*garbage\.dm3 as DigitalMicrograph.*truncated or corrupt"),
    ("truncated.png", r"could not read .*truncated\.png as PNG.*truncated or corrupt"),
    ("one_d.npy", r"need a 2-D image .* got 1-D shape \(2304,\); reshape it"),
    ("four_d.npy", r"got 4-D shape \(2, 2, 48, 48\); .*reshape\(-1, ny, nx\)"),
    ("rgb.npy", r"looks like an RGB\(A\) colour image.*convert it to grayscale"),
    ("rgba.npy", r"looks like an RGB\(A\) colour image.*convert it to grayscale"),
    ("complex.npy", r"the image is complex .*np\.abs\(a\)"),
    ("nan.npy", r"1 non-finite values \(1 NaN, 0 inf\).*y=5, x=7.*cannot train on them: fill"),
    ("inf.npy", r"\(0 NaN, 1 inf\).*cannot train on them"),
    ("neginf.npy", r"\(0 NaN, 1 inf\).*cannot train on them"),
    ("constant.npy", r"frame 0 is constant \(every pixel = 3\); it holds no structure"),
    ("const_frame.npy", r"frame 1 is constant.*drop it"),
    ("small.npy", r"largest window \(16 px\) is larger than the image \(12 x 12 px\); use smaller"),
    ("tiny.npy", r"5 x 5 pixels, too small: at least 8 x 8"),
    ("empty_stack.npy", r"no frames"),
    ("strings.npy", r"non-numeric dtype .*pass numbers"),
    *[(f"empty.{ext}", rf"empty\.{ext} is empty \(0 bytes\); the file was not written "
       "completely .*copy it again") for ext in EMPTY],
    ("head.tif", r"could not read .*head\.tif as TIFF.*truncated or corrupt"),
    ("head.npy", r"could not read .*head\.npy as NumPy.*truncated or corrupt"),
    ("head.npz", r"could not read .*head\.npz as NumPy archive: BadZipFile.*truncated or corr"),
    ("head.png", r"could not read .*head\.png as PNG.*truncated or corrupt"),
    ("truncated.jpg", r"could not read .*truncated\.jpg as JPEG.*truncated or corrupt"),
    ("garbage.npz", r"garbage\.npz is not a NumPy \.npz archive \(no zip signature"),
    ("garbage.png", r"could not read .*garbage\.png as PNG.*truncated or corrupt"),
    ("garbage.jpg", r"could not read .*garbage\.jpg as JPEG.*truncated or corrupt"),
    ("garbage.dm4", r"could not read .*garbage\.dm4 as DigitalMicrograph.*truncated or corrupt"),
    ("no_images.h5", r"no_images\.h5 holds no 2-D or 3-D numeric dataset"),
    ("no_arrays.npz", r"no_arrays\.npz holds no image arrays \(it holds no arrays at all\); "
                      r"save the image with np\.savez"),
    ("no_arrays.zarr", r"no_arrays\.zarr holds no 2-D or 3-D array"),
]


@pytest.mark.parametrize("name, message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_input_file_gives_one_clear_line(files, tmp_path, capsys, name, message):
    line = cli_error(capsys, run_args(files, tmp_path, name))
    assert re.search(message, line), line
    assert not (tmp_path / "run" / "result.nc").exists()


def test_no_library_log_lines_on_a_broken_file(files, tmp_path, capsys, caplog):
    """tifffile logs a warning of its own for a broken file; on the command line it would be
    a second, confusing line before ours."""
    caplog.set_level(logging.WARNING)
    cli_error(capsys, run_args(files, tmp_path, "garbage.tif"))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("real, frac", [("P0089OP0027.ibw", 0.5), ("SI-HAADF.dm3", 0.5),
                                        ("PTO_Funakubo0002.h5", 0.5), ("SI-HAADF.dm3", 0.01),
                                        ("PTO_Funakubo0004.h5", 0.001),
                                        ("PTO_Funakubo0004.h5", 0.3), ("scan_0001.ibw", 0.002),
                                        ("SI-HAADF.dm3", 0.9)])
def test_truncated_real_files(tmp_path, capsys, real, frac):
    src = REAL / real
    if not src.is_file():
        pytest.skip(f"real data file {src} is absent (it lives in shared/ beside the repo)")
    raw = src.read_bytes()
    bad = tmp_path / f"cut{src.suffix}"
    bad.write_bytes(raw[:int(len(raw) * frac)])
    line = cli_error(capsys, ["run", bad, *FAST, "--out", tmp_path / "run"])
    assert f"could not read {bad}" in line and "truncated or corrupt" in line


# one file per reader, cut anywhere: (file, channel); real files from shared/data/real
TRUNCATED_SOURCES = [("good.tif", None), ("good.npy", None), ("good.npz", None),
                     ("good.png", None), ("good.jpg", None), ("good.h5", None),
                     ("PTO_Funakubo0004.h5", "AmplitudeRetrace"),
                     ("scan_0001.ibw", "Amplitude1Retrace"), ("SI-HAADF.dm3", None)]


@pytest.mark.parametrize("name, channel", TRUNCATED_SOURCES, ids=[c[0] for c in TRUNCATED_SOURCES])
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep=st.floats(0.0, 1.0, exclude_max=True))
def test_a_file_cut_anywhere_gives_one_clear_line_or_a_valid_image(files, tmp_path, name,
                                                                   channel, keep):
    """Cut at any length (hypothesis picks, shrinking to the shortest failing cut), a file is
    either refused with one line naming it or read as a valid image, never a traceback."""
    from test_io_fuzz import check_read

    src = files / name if name.startswith("good") else REAL / name
    if not src.is_file():
        pytest.skip(f"real data file {src} is absent (it lives in shared/ beside the repo)")
    raw = _bytes(src)
    cut = tmp_path / f"cut{src.suffix}"
    cut.write_bytes(raw[:int(len(raw) * keep)])
    try:
        read_image(cut, channel)
    except ScaleVAEError as exc:
        line = " ".join(str(exc).split())
        assert str(cut) in line and ("truncated or corrupt" in line or "is empty" in line
                                     or "not a NumPy" in line), line
        return
    check_read(cut, channel)  # read: it must be a valid image


@functools.lru_cache(maxsize=None)
def _bytes(path):
    return Path(path).read_bytes()


CHANNELS = [
    ("two.npz", "amplitude", r"'amplitude' not found in .*two\.npz; available arrays: height, phase"),
    ("two.h5", "amplitude", r"'amplitude' not found in .*two\.h5; available channels: .*height.*phase"),
    ("two.npz", None, r"has 2 arrays: height, phase; choose one with .*--channel NAME"),
    ("two.h5", None, r"has 2 channels: .*height.*phase.*--channel NAME"),
    ("good.npy", "height", r"single image and no channels, but channel='height' was given; leave"),
]


@pytest.mark.parametrize("name, channel, message", CHANNELS)
def test_channel_not_in_file_lists_the_channels(files, tmp_path, capsys, name, channel, message):
    extra = ["--channel", channel] if channel else []
    line = cli_error(capsys, run_args(files, tmp_path, name, *extra))
    assert re.search(message, line), line


def test_channels_command_lists_and_errors(files, capsys):
    assert main(["channels", str(files / "two.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()  # name, shape, pixel size, unit per channel
    assert [ln.split()[0] for ln in lines] == ["height", "phase"]
    line = cli_error(capsys, ["channels", files / "missing.h5"])
    assert "file not found" in line


# (extra CLI options on the good 48 x 48 image, regex for the message)
BAD_OPTIONS = [
    (["--windows", "0,8"], r"windows 0,8: 0 is 0 px; windows must be at least 1 px"),
    (["--windows=-8,8"], r"-8 is -8 px; windows must be at least 1 px \(positive\)"),
    (["--windows", "8:16:0"], r"the STEP must be positive"),
    (["--windows", "16,12,8"], r"they must increase, but 12 \(12 px\) follows 16"),
    (["--windows", "8,8,12"], r"8 and 8 both round to 8 px; use a larger step"),
    (["--windows", "16:8:4"], r"STOP is smaller than START"),
    (["--windows", "8:64:8"], r"largest window \(64 px\) is larger than the image \(48 x 48 px\)"),
    (["--windows", "8,abc"], r"cannot read the window 'abc'.*e\.g\. '8:64:4'"),
    (["--windows", "8:16"], r"a range needs START:STOP:STEP"),
    (["--windows", ""], r"no windows given"),
    (["--windows", "20nm:60nm:20nm"],
     r"in nm but the image's pixel size is unknown; give the windows in pixels .* or give the pixel"),
    (["--windows", "20nm:60nm:20nm", "--pixel-size", "2", "--unit", "s"],
     r"cannot convert 20 nm to pixels of 2 s"),
    (["--windows", "2,4"], r"at least 4 px \(got 2, the smallest window\); use windows of at "
                           r"least 4 px, or give a larger --patch-size"),
    (["--patch-size", "2"], r"patch size must be at least 4 px \(got 2\)"),
    (["--keypoints", "grid:0"], r"grid step in 'grid:0' must be a positive whole number"),
    (["--keypoints", "grid:-4"], r"grid step .* must be a positive whole number"),
    (["--keypoints", "grid:2.5"], r"grid step .* must be a positive whole number"),
    (["--keypoints", "grid"], r"'grid' needs a step in px, e.g. 'grid:4'"),
    (["--keypoints", "atoms:big"], r"atom size must be a number of px"),
    (["--keypoints", "sift:3"], r"'sift' takes no argument"),
    (["--keypoints", "hexagons"], r"unknown keypoints 'hexagons'; use 'grid:STEP'"),
    (["--latent-dim", "0"], r"latent dimension must be at least 1 \(got 0\)"),
    (["--latent-dim", "-2"], r"latent dimension must be at least 1"),
    (["--epochs", "0"], r"epochs must be at least 1 \(got 0\)"),
    (["--batch-size", "0"], r"batch size must be at least 1 \(got 0\)"),
    (["--device", "tpu"], r"unknown device 'tpu'; use auto, cpu or cuda"),
    (["--pixel-size", "-2", "--unit", "nm"], r"pixel_size must be positive"),
    (["--pixel-size", "0", "--unit", "nm"], r"pixel_size must be positive"),
    (["--pixel-size", "2"], r"pixel_size 2 was given without a unit"),
    (["--unit", "nm"], r"a unit \('nm'\) was given without a pixel size; give both"),
    # argparse's own errors get the same one-line form
    (["--invariance", "scale"], r"invalid choice: 'scale'.*scalevae run --help"),
    (["--latent-dim", "two"], r"--latent-dim: invalid int value: 'two'"),
    (["--epochs", "1.5"], r"--epochs: invalid int value"),
    (["--padding", "mirror"], r"--padding: invalid choice"),
    (["--no-such-option"], r"unrecognized arguments: --no-such-option"),
]


@pytest.mark.parametrize("extra, message", BAD_OPTIONS, ids=[" ".join(c[0]) for c in BAD_OPTIONS])
def test_bad_option_gives_one_clear_line(files, tmp_path, capsys, extra, message):
    line = cli_error(capsys, run_args(files, tmp_path, "good.npy", *extra))
    assert re.search(message, line), line


def test_missing_required_arguments(capsys):
    line = cli_error(capsys, ["run", "x.npy"])
    assert "required: --out" in line
    line = cli_error(capsys, [])
    assert "required" in line and "command" in line


def test_cuda_without_a_gpu(files, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present here")
    line = cli_error(capsys, run_args(files, tmp_path, "good.npy", "--device", "cuda"))
    assert "no CUDA GPU" in line and "--device cpu" in line


BAD_KEYPOINTS = [
    ("kp_no_x.csv", r"lacks the column\(s\) x; its header is 'frame,y' and must name frame, y and x"),
    ("kp_no_header.csv", r"lacks the column\(s\) frame, y, x"),
    ("kp_frame.csv", r"frame 3 in row 0 is past the last frame \(0\); the image has 1 frame"),
    ("kp_neg_frame.csv", r"frame -1 in row 0 is negative"),
    ("kp_frac_frame.csv", r"frame 0.5 in row 0 is not a whole number"),
    ("kp_text.csv", r"row 2: 'twenty' is not a number"),
    ("kp_nan.csv", r"row 2: NaN or infinite value; remove that row"),
    ("kp_short_row.csv", r"row 2: too few values"),
    ("kp_outside.csv", r"1 of 2 keypoints .* lie outside the 48 x 48 image.*x=100.*column order"),
    ("kp_negative.csv", r"lie outside the 48 x 48 image.*y=-3"),
    ("kp_border.csv", r"no keypoint lies far enough inside the 48 x 48 frame for a window of 16 px"
                      r".*use smaller windows, a finer grid, or padding: padding='reflect' "
                      r"\(--padding reflect\)"),
    ("kp_header_only.csv", r"has a header but no keypoints"),
    ("kp_empty.csv", r"is empty; it needs a header frame,y,x"),
    ("kp_shape.npy", r"must have shape \(n, 3\) with columns frame, y, x.*got shape \(4, 5\)"),
    ("kp_missing.csv", r"keypoint file .*kp_missing\.csv.* does not exist"),
    ("kp_binary.csv", r"lacks the column\(s\) frame, y, x; its header is '[^']{77,400}\.\.\.' and"),
    ("kp_garbage.npy", r"cannot read keypoint file .*kp_garbage\.npy' as NumPy: no NumPy header"),
]


@pytest.mark.parametrize("name, message", BAD_KEYPOINTS, ids=[c[0] for c in BAD_KEYPOINTS])
def test_bad_keypoint_file(files, tmp_path, capsys, name, message):
    fast = [a if a != "grid:8" else str(files / name) for a in FAST]
    line = cli_error(capsys, run_args(files, tmp_path, "good.npy", fast=fast))
    assert re.search(message, line), line


def test_grid_too_coarse_for_the_border_rule(files, tmp_path, capsys):
    """grid:100 on 48 px puts one point in the centre; the 48 px window cannot fit around it."""
    fast = [a if a != "8,12,16" else "8,24,48" for a in FAST]
    fast = [a if a != "grid:8" else "grid:5" for a in fast]
    line = cli_error(capsys, run_args(files, tmp_path, "good.npy", fast=fast))
    assert "no keypoint lies far enough inside" in line and "padding" in line


def test_extreme_outlier_pixel(files, tmp_path, capsys):
    """One 1e30 pixel among values near 1 is finite, so it passes the checks on reading, but
    the training loss overflows: that must be a clear error, not a traceback."""
    a = image()
    a[20, 20] = 1e30
    np.save(tmp_path / "outlier.npy", a)
    line = cli_error(capsys, ["run", tmp_path / "outlier.npy", *FAST, "--out", tmp_path / "run"])
    assert "training diverged" in line and "extreme values" in line and "np.clip" in line


def test_a_multi_line_library_message_still_gives_one_line(files, tmp_path, capsys,
                                                           monkeypatch):
    import scalevae.io

    def broken(path, channel, names_only=False):
        raise ValueError("the library says\n  something\non three lines")

    monkeypatch.setitem(scalevae.io._READERS, "NumPy", broken)
    line = cli_error(capsys, run_args(files, tmp_path))
    assert "ValueError: the library says something on three lines" in line


def test_input_that_is_a_folder(files, tmp_path, capsys):
    line = cli_error(capsys, ["run", files, *FAST, "--out", tmp_path / "run"])
    assert "is a folder; give an image file" in line


# ----------------------------------------------------------------------------- accepted input

def test_batch_larger_than_the_data_still_trains(tmp_path):
    """The peers silently train 0 steps when the batch exceeds the data; we train full batches."""
    ds = scalevae.run(image(), windows=[8, 12, 16], keypoints="grid:8", epochs=2,
                      batch_size=100_000, quiet=True, report=False)
    assert ds.sizes["point"] == 16
    loss = ds.loss.values
    assert np.isfinite(loss[:, :2]).all()
    # the model learnt something: training changed the latents between windows' states
    assert not np.array_equal(ds.z_mean.sel(state="instant").values,
                              ds.z_mean.sel(state="final").values)


def test_colour_png_is_converted_and_the_user_is_told(files, tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(3)
    png = tmp_path / "colour.png"
    Image.fromarray((rng.random((48, 48, 4)) * 255).astype("uint8")).save(png)
    argv = ["run", png, *[a for a in FAST if a != "--quiet"], "--out", tmp_path / "run"]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert "RGBA to grayscale" in out
    ds = xr.open_dataset(tmp_path / "run" / "result.nc")
    assert "RGBA to grayscale" in ds.attrs["input_note"]
    ds.close()


# ----------------------------------------------------------------------------- API

@pytest.mark.parametrize("array, message", [
    (np.zeros(100), "got 1-D"),
    (np.zeros((2, 2, 48, 48)), "got 4-D"),
    (np.random.default_rng(0).random((48, 48, 3)), "RGB"),
    (np.ones((48, 48), complex), "complex"),
    (np.full((48, 48), np.nan), "non-finite"),
    (np.full((48, 48), 1.0), "constant"),
])
def test_api_raises_scalevae_error_for_bad_arrays(array, message):
    with pytest.raises(ScaleVAEError, match=message):
        scalevae.run(array, windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True)


@pytest.mark.parametrize("kw, message", [
    (dict(windows=[8, 8]), "both round"),
    (dict(windows=[16, 8]), "must increase"),
    (dict(windows=[-8, 8]), "positive"),
    (dict(windows=[8, 64]), "larger than the image"),
    (dict(windows=["20nm", "40nm"]), "pixel size is unknown"),
    (dict(keypoints="grid:0"), "positive whole number"),
    (dict(latent_dim=0), "latent dimension"),
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(invariance="scale"), "unknown invariance 'scale'"),
    (dict(keypoints=np.array([[0, 20, 200.0]])), "outside"),
    (dict(pixel_size=-1.0, unit="nm"), "pixel_size must be positive"),
])
def test_api_raises_scalevae_error_for_bad_options(kw, message):
    args = dict(windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True)
    args.update(kw)
    with pytest.raises(ScaleVAEError, match=message):
        scalevae.run(image(), **args)


# ----------------------------------------------------------------------------- output folder

def test_output_folder_with_unrelated_files_is_refused(files, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "thesis.docx").write_text("years of work")
    line = cli_error(capsys, run_args(files, tmp_path))
    assert "not empty and holds no scalevae run" in line and "choose a new or empty folder" in line
    assert (out / "thesis.docx").read_text() == "years of work"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.docx"]


def test_output_path_that_is_a_file(files, tmp_path, capsys):
    (tmp_path / "run").write_text("x")
    line = cli_error(capsys, run_args(files, tmp_path))
    assert "is a file; give a folder" in line


def test_output_folder_with_another_run(files, finished, tmp_path, capsys):
    finished_in(finished, tmp_path)
    before = (tmp_path / "run" / "result.nc").read_bytes()
    line = cli_error(capsys, run_args(files, tmp_path))
    assert "already holds a scalevae run; add --resume" in line and "--overwrite" in line
    line = cli_error(capsys, run_args(files, tmp_path, "good.npy", "--seed", "7", "--resume"))
    assert "holds a run with other settings or input" in line and "seed 0" in line
    line = cli_error(capsys, run_args(files, tmp_path, "good.npy", "--latent-dim", "3",
                                      "--resume"))
    assert "other settings" in line
    assert (tmp_path / "run" / "result.nc").read_bytes() == before
    (tmp_path / "run" / "config.json").write_text("{ half a json")
    line = cli_error(capsys, run_args(files, tmp_path, "good.npy", "--resume"))
    assert "config.json is damaged" in line


def _tmp_files(folder):
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")
            or p.name.startswith(".write-test")]


def test_read_only_output_folder(files, tmp_path, capsys, monkeypatch):
    """Tests run as root in CI and root ignores chmod 0o555, so the refusal of the OS is
    simulated: every attempt to create a file raises EROFS, as on a read-only mount."""
    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    line = cli_error(capsys, run_args(files, tmp_path))
    assert "cannot write to the output folder" in line and "choose another --out" in line
    assert "Read-only" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores folder permissions (the simulated test covers it)")
def test_read_only_output_folder_for_real(files, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        line = cli_error(capsys, run_args(files, tmp_path))
    finally:
        out.chmod(0o755)
    assert "cannot write to the output folder" in line


def test_folder_turns_read_only_after_the_check(files, tmp_path, capsys, monkeypatch):
    """The early check passed, then the folder could not take a file (mount went read-only):
    still one clear line, and no stray temporary file."""
    real = tempfile.mkstemp

    def refuse(*a, **k):
        if str(k.get("prefix", "")).startswith(".result.nc"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*a, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    line = cli_error(capsys, run_args(files, tmp_path))
    assert "could not write" in line and "result.nc" in line and "not writable" in line
    assert _tmp_files(tmp_path / "run") == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_while_writing_the_result_keeps_the_old_one(files, finished, tmp_path, capsys,
                                                              monkeypatch, code):
    argv = run_args(files, tmp_path)
    finished_in(finished, tmp_path)
    result = tmp_path / "run" / "result.nc"
    before = result.read_bytes()

    import scalevae._atomic as atomic

    def full(path, data):  # half the file reaches the disk, then the disk is full
        def half(tmp):
            Path(tmp).write_bytes(bytes(data[:len(data) // 2]))
            raise OSError(code, os.strerror(code))
        return atomic.atomic_write(path, half)

    monkeypatch.setattr(atomic, "atomic_write_bytes", full)
    line = cli_error(capsys, argv + ["--resume"])
    assert "the disk is full" in line and "--resume" in line
    assert result.read_bytes() == before
    assert _tmp_files(tmp_path / "run") == []
    monkeypatch.undo()
    assert scalevae.load_result(result).sizes["window"] == 3  # still a valid result


def test_full_disk_before_the_file_can_even_be_created(files, finished, tmp_path, capsys,
                                                       monkeypatch):
    argv = run_args(files, tmp_path)
    finished_in(finished, tmp_path)
    before = (tmp_path / "run" / "result.nc").read_bytes()
    real = tempfile.mkstemp

    def full(*a, **k):
        if str(k.get("prefix", "")).startswith(".result.nc"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(tempfile, "mkstemp", full)
    line = cli_error(capsys, argv + ["--resume"])
    assert "disk is full" in line
    assert (tmp_path / "run" / "result.nc").read_bytes() == before
    assert _tmp_files(tmp_path / "run") == []


def test_report_of_a_folder_without_a_run(tmp_path, capsys):
    line = cli_error(capsys, ["report", tmp_path])
    assert "no result at" in line and "scalevae run" in line


def test_report_of_a_damaged_result(files, finished, tmp_path, capsys):
    finished_in(finished, tmp_path)
    result = tmp_path / "run" / "result.nc"
    result.write_bytes(result.read_bytes()[:500])
    line = cli_error(capsys, ["report", tmp_path / "run"])
    assert "not a readable scalevae result" in line and "--resume" in line


def test_unknown_demo(tmp_path, capsys):
    line = cli_error(capsys, ["demo", "unicorns", "--out", tmp_path / "run"])
    assert "unknown example 'unicorns'" in line
