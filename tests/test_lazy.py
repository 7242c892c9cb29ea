"""Stacks larger than memory: .npy files above io.lazy.LAZY_BYTES are read frame by frame."""

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scalevae
from scalevae.io import as_stack, lazy, read_image
from scalevae.patches import extract_patches, fit_normalization
from scalevae.testing import write_sine_stack

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_lazy_frames_read_like_the_array(tmp_path, monkeypatch):
    path = write_sine_stack(tmp_path / "s.npy", 3, 32)
    eager = np.load(path)
    monkeypatch.setattr(lazy, "LAZY_BYTES", 1024)
    stack = read_image(path)
    assert lazy.is_lazy(stack.data) and stack.data.shape == eager.shape
    np.testing.assert_array_equal(stack.data[1], eager[1])
    np.testing.assert_array_equal(stack.data[0:2], eager[0:2])
    pts = np.array([[0, 16, 16], [2, 10.5, 20]])
    norm = fit_normalization(stack)
    assert norm == fit_normalization(eager)  # all pixels sampled: the same numbers
    np.testing.assert_array_equal(extract_patches(stack.data, pts, 8, 8, normalization=norm),
                                  extract_patches(eager, pts, 8, 8, normalization=norm))


def test_lazy_stack_runs_and_matches_the_eager_run(tmp_path, monkeypatch):
    path = write_sine_stack(tmp_path / "s.npy", 2, 48)
    kw = dict(windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True, report=False)
    eager = scalevae.run(np.load(path), **kw)
    monkeypatch.setattr(lazy, "LAZY_BYTES", 1024)
    lazily = scalevae.run(path, out=tmp_path / "run", **kw)
    np.testing.assert_array_equal(eager.z_mean.values, lazily.z_mean.values)
    np.testing.assert_array_equal(np.load(tmp_path / "run" / "input.npy"), np.load(path))


def _write(kind, path, a):
    if kind == "h5":
        import h5py

        with h5py.File(path, "w") as h5:
            h5.create_dataset("stack", data=a, chunks=(1,) + a.shape[1:])
    elif kind == "zarr":
        import zarr

        z = zarr.open_array(str(path), mode="w", shape=a.shape, chunks=(1,) + a.shape[1:],
                            dtype=a.dtype)
        z[...] = a
    else:
        import tifffile

        tifffile.imwrite(path, a, photometric="minisblack")  # 3 frames, not RGB
    return path


@pytest.mark.parametrize("kind", ["h5", "zarr", "tif"])
def test_hdf5_zarr_tiff_stacks_are_read_frame_by_frame(tmp_path, monkeypatch, kind):
    eager = np.load(write_sine_stack(tmp_path / "s.npy", 3, 32))
    path = _write(kind, tmp_path / f"s.{kind}", eager)
    monkeypatch.setattr(lazy, "LAZY_BYTES", 1024)
    stack = read_image(path)
    assert lazy.is_lazy(stack.data) and stack.data.shape == eager.shape
    np.testing.assert_array_equal(stack.data[1], eager[1])
    np.testing.assert_array_equal(stack.data[[0, 2]], eager[[0, 2]])
    assert fit_normalization(stack) == fit_normalization(eager)
    pts = np.array([[0, 16, 16], [2, 10.5, 20]])
    np.testing.assert_array_equal(extract_patches(stack.data, pts, 8, 8),
                                  extract_patches(eager, pts, 8, 8))


def test_open_h5py_and_zarr_arrays_are_read_frame_by_frame(tmp_path, monkeypatch):
    import h5py
    import zarr

    eager = np.load(write_sine_stack(tmp_path / "s.npy", 2, 16))
    monkeypatch.setattr(lazy, "LAZY_BYTES", 1024)
    z = zarr.open_array(str(_write("zarr", tmp_path / "s.zarr", eager)), mode="r")
    assert lazy.is_lazy(as_stack(z).data)
    with h5py.File(_write("h5", tmp_path / "s.h5", eager), "r") as h5:
        s = as_stack(h5["stack"])
        assert lazy.is_lazy(s.data)
        np.testing.assert_array_equal(s.data[1], eager[1])


def _peak_rss_mb(args):
    code = ("import resource, subprocess, sys; "
            "r = subprocess.run([sys.executable, '-m', 'scalevae', 'run', *sys.argv[1:]]); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                         text=True, env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, timeout=1800)
    rc, mb = out.stdout.split()[-2:]
    assert rc == "0", out.stderr[-2000:]
    return float(mb)


@pytest.mark.slow  # writes and reads a 2 GB stack: minutes on 2 cores
def test_2gb_stack_peak_rss_well_below_its_size(tmp_path):
    path = write_sine_stack(tmp_path / "big.npy", 500, 1024)  # 500 x 1024 x 1024 float32 = 2.1 GB
    args = ["--keypoints", "grid:128", "--windows", "8,16", "--epochs", "1", "--no-report",
            "--quiet"]
    peak = _peak_rss_mb([path, *args, "--out", tmp_path / "run"])
    assert peak < 0.5 * path.stat().st_size / 2**20


def test_result_as_zarr_opens_like_netcdf(tmp_path):
    import xarray as xr

    from scalevae.cli import main

    img = np.load(write_sine_stack(tmp_path / "s.npy", 1, 40))
    kw = dict(windows=[8, 12], keypoints="grid:8", epochs=1, quiet=True, report=False)
    nc = scalevae.run(img, out=tmp_path / "nc", **kw)
    zr = scalevae.run(img, out=tmp_path / "zr", result_format="zarr", **kw)
    assert (tmp_path / "zr" / "result.zarr").is_dir() and not (tmp_path / "zr" / "result.nc").exists()
    with xr.open_dataset(tmp_path / "zr" / "result.zarr", engine="zarr") as ds:
        np.testing.assert_array_equal(ds.z_mean.values, nc.z_mean.values)
    loaded = scalevae.load_result(tmp_path / "zr")
    np.testing.assert_array_equal(loaded.z_mean.values, zr.z_mean.values)
    # --format on the command line; --resume rewrites the result in the format asked
    assert main(["run", str(tmp_path / "s.npy"), "--windows", "8,12", "--keypoints", "grid:8",
                 "--epochs", "1", "--quiet", "--no-report", "--out", str(tmp_path / "nc"),
                 "--resume", "--format", "zarr"]) == 0
    assert (tmp_path / "nc" / "result.zarr").is_dir() and not (tmp_path / "nc" / "result.nc").exists()
