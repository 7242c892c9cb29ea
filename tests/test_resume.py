"""Killed, interrupted and resumed runs lose nothing and give the same numbers (issue 6).

A run saves each window's checkpoint (weights and instant latents) as soon as the window is
done; ``--resume`` continues from the last finished window and gives exactly the result of an
uninterrupted run with the same seed. Every file is written under a temporary name and renamed
into place, so a crash never leaves half a file where a good one was.
"""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import scalevae
import scalevae.training as train_mod
import scalevae.training.checkpoints as checkpoints_mod
from scalevae._atomic import atomic_write
from conftest import wave_image
from scalevae.cli import main
from scalevae.errors import ScaleVAEError
from scalevae.results import load_result, save_result

WINDOWS = [8, 12, 16]


image = wave_image


def argv(npy, out, *extra):
    return ["run", str(npy), "--windows", ",".join(map(str, WINDOWS)), "--keypoints", "grid:8",
            "--epochs", "2", "--seed", "5", "--quiet", "--no-report", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def reference(npy, tmp_path_factory):
    """An uninterrupted run: the numbers every resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(argv(npy, out)) == 0
    return out


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


def checkpoints(run):
    return sorted(p.name for p in (Path(run) / "checkpoints").glob("window_*.pt"))


def leftovers(run):
    return [p for p in Path(run).rglob("*") if p.name.endswith(".tmp")]


def assert_same_result(a, b):
    da, db = load_result(a), load_result(b)
    for name in ("z_mean", "z_std", "angle", "loss", "kl"):
        np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)
    for name in ("window", "frame", "y", "x"):
        np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)
    assert da.attrs["config"] == db.attrs["config"]


# ----------------------------------------------------------------------------- checkpoints

def test_each_window_saves_a_safe_checkpoint_with_its_instant_latents(reference):
    ds = load_result(reference)
    assert checkpoints(reference) == [f"window_{w:04d}.pt" for w in WINDOWS]
    for w in WINDOWS:
        # weights_only=True: no pickled code can run when a checkpoint is opened
        ck = torch.load(reference / "checkpoints" / f"window_{w:04d}.pt", weights_only=True)
        assert ck["window"] == w
        np.testing.assert_array_equal(ck["instant"]["z_mean"].numpy(),
                                      ds.z_mean.sel(state="instant", window=w).values)
        np.testing.assert_array_equal(ck["instant"]["angle"].numpy(),
                                      ds.angle.sel(state="instant", window=w).values)
    # the final model is the last window's checkpoint
    model = scalevae.load_model(reference)
    ck = torch.load(reference / "checkpoints" / "window_0016.pt", weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["state_dict"][k])
    assert leftovers(reference) == []


def test_same_seed_same_numbers_and_another_seed_differs():
    kw = dict(windows=WINDOWS, keypoints="grid:8", epochs=2, quiet=True, report=False)
    a = scalevae.run(image(), seed=3, **kw)
    b = scalevae.run(image(), seed=3, **kw)
    xr.testing.assert_equal(a, b)  # every variable and coordinate, bit for bit
    c = scalevae.run(image(), seed=4, **kw)
    assert not np.array_equal(a.z_mean.values, c.z_mean.values)


# ----------------------------------------------------------------------------- interruptions

@pytest.mark.parametrize("how", ["ctrl-c in training", "ctrl-c while saving",
                                 "disk full while saving"])
def test_interrupted_run_keeps_finished_windows_and_resumes_to_the_same_result(
        npy, reference, tmp_path, capsys, monkeypatch, how):
    out = tmp_path / "run"
    real_train, real_write = train_mod.train_window, checkpoints_mod.atomic_write_bytes
    calls = {"train": 0, "save": 0}

    def train_window(*a, **k):
        calls["train"] += 1
        if how == "ctrl-c in training" and calls["train"] == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in window 12
        return real_train(*a, **k)

    def write(path, data):  # the checkpoint's bytes reach the disk
        calls["save"] += 1
        if calls["save"] == 2:
            def half(tmp):
                Path(tmp).write_bytes(bytes(data[:len(data) // 2]))
                if how == "ctrl-c while saving":
                    raise KeyboardInterrupt
                if how == "disk full while saving":
                    raise OSError(errno.ENOSPC, "No space left on device")
            return atomic_write(path, half)
        return real_write(path, data)

    monkeypatch.setattr(train_mod.progressive, "train_window", train_window)
    monkeypatch.setattr(checkpoints_mod, "atomic_write_bytes", write)
    rc = main(argv(npy, out))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--resume" in lines[0], err
    if how.startswith("ctrl-c"):
        assert rc == 130 and lines[0].startswith("scalevae: interrupted")
    else:
        assert rc == 2 and lines[0].startswith("scalevae: error:") and "disk is full" in err
    assert checkpoints(out) == ["window_0008.pt"]  # the finished window is kept
    assert not (out / "result.nc").exists()
    assert leftovers(out) == []
    monkeypatch.undo()

    assert main(argv(npy, out)) == 2  # without --resume the folder is protected ...
    assert "add --resume" in capsys.readouterr().err
    assert main(argv(npy, out, "--resume")) == 0  # ... with it the run completes
    assert_same_result(out, reference)


def test_resume_retrains_only_the_missing_windows_and_ignores_stale_temporaries(
        npy, reference, tmp_path, monkeypatch):
    """What a SIGKILL in window 12 leaves behind, including a temporary file of a write that
    never finished."""
    out = copy_run(reference, tmp_path / "run")
    for name in ("result.nc", "checkpoints/window_0012.pt", "checkpoints/window_0016.pt"):
        (out / name).unlink()
    (out / "checkpoints" / ".window_0012.pt.k1ll3d.tmp").write_bytes(b"partial")
    trained = []
    real = train_mod.train_window

    def train_window(model, patches, *a, **k):
        trained.append(patches.shape)
        return real(model, patches, *a, **k)

    monkeypatch.setattr(train_mod.progressive, "train_window", train_window)
    assert main(argv(npy, out, "--resume")) == 0
    assert len(trained) == 2  # windows 12 and 16; window 8 came from its checkpoint
    assert_same_result(out, reference)
    assert leftovers(out) == []  # the killed write's temporary file is cleaned up


def test_resume_of_a_finished_run_changes_nothing(npy, reference, tmp_path):
    out = copy_run(reference, tmp_path / "run")
    assert main(argv(npy, out, "--resume")) == 0
    assert_same_result(out, reference)


def test_damaged_result_is_rewritten_by_resume(npy, reference, tmp_path):
    out = copy_run(reference, tmp_path / "run")
    (out / "result.nc").write_bytes(b"\x89HDF\r\n" + os.urandom(300))
    with pytest.raises(ScaleVAEError, match="--resume"):
        load_result(out)
    assert main(argv(npy, out, "--resume")) == 0
    assert_same_result(out, reference)


def _tamper(path, **changes):
    ck = torch.load(path, weights_only=True)
    ck.update(changes)
    torch.save(ck, path)


class _Evil:
    """Unpickling this would create a file: a checkpoint must never run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("damage, message", [
    ("truncate", "checkpoint .*window_0012.pt is damaged: 1000 bytes where .* retraining"),
    ("garbage", "window_0012.pt is damaged: 2000 bytes"),
    ("other config", "window_0012.pt was made with a different configuration.*new --out folder"),
    ("other format", "is not a scalevae checkpoint of format"),
    ("pickled code", "window_0012.pt is damaged.* retraining window 12 px"),
])
def test_bad_checkpoint_is_retrained_or_refused_with_a_clear_message(
        npy, reference, tmp_path, capsys, damage, message):
    """A checkpoint that is not the file written (manifest.json: size, SHA-256) is retrained
    with one warning; a sound checkpoint of another run or format (a folder of an older version,
    without a manifest) is refused by name."""
    import re

    out = copy_run(reference, tmp_path / "run")
    (out / "result.nc").unlink()
    (out / "checkpoints" / "window_0016.pt").unlink()
    path = out / "checkpoints" / "window_0012.pt"
    marker = tmp_path / "code-ran"
    if damage.startswith("other"):
        (out / "checkpoints" / "manifest.json").unlink()
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(os.urandom(2000))
    elif damage == "other config":
        _tamper(path, fingerprint="0123456789abcdef")
    elif damage == "other format":
        _tamper(path, format=99)
    else:
        torch.save({"format": 1, "payload": _Evil(marker)}, path)
    with pytest.warns(UserWarning) as caught:
        rc = main(argv(npy, out, "--resume"))
    err = capsys.readouterr().err + " ".join(str(w.message) for w in caught)
    assert "Traceback" not in err
    assert re.search(message, err), err
    assert not marker.exists()
    if damage.startswith("other"):
        assert rc == 2
        return
    assert rc == 0
    assert_same_result(out, reference)


# ----------------------------------------------------------------------------- atomic files

@pytest.mark.parametrize("crash", [RuntimeError("writer bug"), KeyboardInterrupt(),
                                   MemoryError()])
def test_crash_while_saving_the_result_keeps_the_old_file(reference, tmp_path, monkeypatch,
                                                           crash):
    out = copy_run(reference, tmp_path / "run")
    path = out / "result.nc"
    before = path.read_bytes()
    ds = load_result(path)

    def broken(self, *a, **k):  # the file is built in memory, then written
        raise crash

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(type(crash)):
        save_result(ds, path)
    assert path.read_bytes() == before
    assert leftovers(out) == []
    monkeypatch.undo()
    load_result(path)  # still a valid result


def test_written_files_follow_the_umask(reference):
    """Temporary files are private (0600); the renamed result must be readable as usual."""
    mask = os.umask(0)
    os.umask(mask)
    for name in ("result.nc", "config.json", "checkpoints/window_0008.pt"):
        mode = (reference / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~mask, (name, oct(mode))


# ----------------------------------------------------------------------------- SIGKILL

@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_window_then_resume_gives_the_uninterrupted_result(tmp_path):
    """A real process killed with SIGKILL (no chance to clean up) in the middle of a window."""
    img = tmp_path / "image.npy"
    np.save(img, image((48, 48), seed=2))
    windows = "8,12,16,20"
    args = ["run", str(img), "--windows", windows, "--keypoints", "grid:4", "--epochs", "4",
            "--seed", "1", "--quiet", "--no-report"]
    killed, full = tmp_path / "killed", tmp_path / "full"
    # same thread count as this process: float sums then run in the same order
    code = ("import sys, torch; torch.set_num_threads(%d); from scalevae.cli import main; "
            "sys.exit(main(sys.argv[1:]))" % torch.get_num_threads())
    proc = subprocess.Popen([sys.executable, "-c", code, *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = killed / "checkpoints" / "window_0008.pt"
    deadline = time.monotonic() + 300
    while not first.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = checkpoints(killed)
    assert "window_0020.pt" not in done and not (killed / "result.nc").exists(), done

    assert main(args + ["--out", str(killed), "--resume"]) == 0
    assert main(args + ["--out", str(full)]) == 0
    assert_same_result(killed, full)
