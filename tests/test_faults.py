"""The fault table of the README, one test per fault: what happens, and that nothing is lost.

Each fault is met as a cluster user meets it: two runs started into one folder at the same
moment, a checkpoint damaged on disk, a process stopped by SIGTERM or SIGKILL, a full disk (a
real one: a small tmpfs, mounted where the tests run as root) and a file-size limit
(``RLIMIT_FSIZE``, ``ulimit -f``). "Nothing lost" is always checked the same way: the run,
continued with ``--resume``, gives exactly the numbers of an uninterrupted run.

Kill-and-resume of one process at a random moment and of a 2-rank torchrun job are longer and
marked slow (``test_resume.py`` holds the single-process SIGKILL test).
"""

import errno
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import scalevae
import scalevae._lock as lock_mod
import scalevae.training as train_mod
from conftest import wave_image
from scalevae._lock import LOCK_NAME, FolderLock, lock_folder
from scalevae.cli import main
from scalevae.errors import ScaleVAEError
from scalevae.results import load_result

pytestmark = pytest.mark.filterwarnings("ignore:training of window")  # tiny runs hit the cap

SRC = str(Path(__file__).resolve().parents[1] / "src")
OPTIONS = ["--windows", "8,12,16", "--keypoints", "grid:4", "--epochs", "2", "--seed", "5",
           "--quiet", "--no-report"]
# a child process runs the CLI with this process's torch thread count, so that its float sums
# run in the same order; a file-size limit or a pause can be set up before it starts
CHILD = """
import os, sys, time, torch
torch.set_num_threads({threads})
import scalevae.training.progressive as progressive
from scalevae.cli import main
pause = os.environ.get("FAULTS_PAUSE_AT_WINDOW")
if pause:  # sleep when that window starts training: a signal then meets a run mid-window
    real = progressive.train_window
    calls = []
    def train_window(*a, **k):
        calls.append(1)
        if len(calls) == int(pause):
            time.sleep(120)
        return real(*a, **k)
    progressive.train_window = train_window
ready, go = os.environ.get("FAULTS_READY"), os.environ.get("FAULTS_GO")
if ready:  # imports done: say so, then start together with the other process
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
sys.exit(main(sys.argv[1:]))
"""


def child(args, env=None, **kw):
    """Start ``scalevae`` CLI ``args`` in a new process; warnings silenced unless asked."""
    environ = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONWARNINGS="ignore::UserWarning", PYTHONDONTWRITEBYTECODE="1")
    environ.update(env or {})
    code = CHILD.format(threads=torch.get_num_threads())
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run_args(image, out, *extra):
    return ["run", str(image), *OPTIONS, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults_input") / "image.npy"
    np.save(path, wave_image((64, 64), seed=3))  # 144 keypoints at grid:4
    return path


@pytest.fixture(scope="module")
def reference(image, tmp_path_factory):
    """The uninterrupted run every faulted run must reproduce exactly once resumed."""
    out = tmp_path_factory.mktemp("faults_reference") / "run"
    with pytest.warns(UserWarning):  # the epoch cap of this tiny run
        assert main(run_args(image, out)) == 0
    return out


def copy_of(reference, folder):
    return Path(shutil.copytree(reference, folder))


def assert_same_result(a, b):
    da, db = load_result(a), load_result(b)
    for name in ("z_mean", "z_std", "angle", "loss", "kl", "window", "y", "x"):
        np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)
    assert da.attrs["config"] == db.attrs["config"]


def one_error_line(err):
    """The single ``scalevae: error:`` line of ``err`` (warnings may precede it)."""
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("scalevae: error:")]
    assert len(errors) == 1, err
    return errors[0]


def leftovers(folder):
    return sorted(p.name for p in Path(folder).rglob("*")
                  if p.name.endswith(".tmp") or p.name.endswith(".stale"))


def saved_windows(folder):
    return sorted(p.name for p in (Path(folder) / "checkpoints").glob("window_*.pt"))


# ----------------------------------------------------------------------------- two runs, one folder

def test_two_runs_started_at_once_into_one_folder_one_runs_the_other_names_it(
        image, reference, tmp_path):
    """Two resubmissions of one job (both with --resume) start at the same instant: exactly one
    runs; the other exits 2 naming it (pid, host, start, command) and writes nothing."""
    out, go = tmp_path / "run", tmp_path / "go"
    procs = [child(run_args(image, out, "--resume"),
                   env={"FAULTS_READY": str(tmp_path / f"ready{i}"), "FAULTS_GO": str(go)})
             for i in range(2)]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.touch()
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    winner = procs[[rc for rc, _, _ in results].index(0)]
    refused = next(err for rc, _, err in results if rc == 2)
    line = one_error_line(refused)
    assert f"--out {out} is in use by another scalevae run (pid {winner.pid} on host " \
           f"{socket.gethostname()}, started " in line, line
    assert "command: " in line and "--resume" in line and "choose another --out" in line
    assert not (out / LOCK_NAME).exists()  # released when the winner ended
    assert_same_result(out, reference)


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(image, reference, tmp_path,
                                                                    capsys):
    """A process holding the folder's lock refuses every other run into it, --resume or not;
    killed with SIGKILL it leaves its lock file behind, which the next run takes over with a
    one-line notice (the kernel released the lock itself)."""
    out = copy_of(reference, tmp_path / "run")
    code = ("import sys, time; from scalevae._lock import lock_folder; "
            "held = lock_folder(sys.argv[1]); print('held', flush=True); time.sleep(300)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=SRC))
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ([], ["--resume"], ["--overwrite"]):
            assert main(run_args(image, out, *extra)) == 2
            line = one_error_line(capsys.readouterr().err)
            assert f"is in use by another scalevae run (pid {holder.pid} on host" in line
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert (out / LOCK_NAME).exists()  # SIGKILL: no chance to remove it
    with pytest.warns(UserWarning) as caught:
        assert main(run_args(image, out, "--resume")) == 0
    notices = [str(w.message) for w in caught if "ended without releasing it" in str(w.message)]
    assert len(notices) == 1 and f"(pid {holder.pid} on host" in notices[0], notices
    assert not (out / LOCK_NAME).exists()
    assert_same_result(out, reference)


def test_without_flock_the_record_is_the_lock_and_a_stale_one_is_taken_over(tmp_path,
                                                                             monkeypatch):
    """File systems without flock (some Lustre and NFS mounts): the holder record is created
    exclusively; a record whose process is gone, or whose heartbeat stopped, is taken over."""
    def no_flock(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_mod.fcntl, "flock", no_flock)
    first = FolderLock(tmp_path / LOCK_NAME)
    with pytest.raises(ScaleVAEError, match=f"in use by another scalevae run \\(pid {os.getpid()}"):
        FolderLock(tmp_path / LOCK_NAME)  # (lock_folder would share a lock within a process)
    old = time.time() - lock_mod.STALE_SECONDS - 5
    os.utime(tmp_path / LOCK_NAME, (old, old))  # its heartbeat stopped long ago
    record = json.loads((tmp_path / LOCK_NAME).read_text())
    record["pid"] = record["pid"] + 1  # so that the takeover notice is given
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    os.utime(tmp_path / LOCK_NAME, (old, old))
    with pytest.warns(UserWarning, match="ended without releasing it"):
        second = FolderLock(tmp_path / LOCK_NAME)
    first.release()  # the first holder no longer owns the file: it must leave it alone
    assert (tmp_path / LOCK_NAME).exists()
    # a dead process on this host: its record goes at once, heartbeat or not
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    record = dict(json.loads((tmp_path / LOCK_NAME).read_text()), pid=int(dead))
    second.release()
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    with pytest.warns(UserWarning, match=f"pid {dead} on host"):
        third = FolderLock(tmp_path / LOCK_NAME)
    third.release()
    assert not (tmp_path / LOCK_NAME).exists() and leftovers(tmp_path) == []


def test_one_process_shares_its_own_lock(tmp_path):
    """A notebook rerunning a failed run while the old traceback still holds the first run's
    folder is not refused: the lock is between processes."""
    a = lock_folder(tmp_path)
    assert lock_folder(tmp_path) is a
    a.release()
    assert lock_folder(tmp_path) is not a


# ----------------------------------------------------------------------------- damaged checkpoints

def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _flip_a_bit(path):  # same size: only the hash can tell
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_bit], ids=["truncated", "bit flip"])
def test_damaged_checkpoint_is_retrained_from_the_window_before(image, reference, tmp_path,
                                                                capsys, monkeypatch, damage):
    out = copy_of(reference, tmp_path / "run")
    (out / "result.nc").unlink()
    damage(out / "checkpoints" / "window_0012.pt")
    trained = []
    real = train_mod.train_window

    def train_window(model, patches, *a, **k):
        trained.append(1)
        return real(model, patches, *a, **k)

    monkeypatch.setattr(train_mod.progressive, "train_window", train_window)
    with pytest.warns(UserWarning) as caught:
        assert main(run_args(image, out, "--resume")) == 0
    notes = [str(w.message) for w in caught if "window_0012.pt is damaged" in str(w.message)]
    assert len(notes) == 1 and "retraining window 12 px from the weights after window 8 px" \
        in notes[0], notes
    # only window 12 was trained again: window 16 started from the very weights retrained
    assert len(trained) == 1
    assert_same_result(out, reference)


def test_a_checkpoint_after_a_retrained_window_is_reused_only_if_it_started_from_its_weights(
        image, reference, tmp_path, monkeypatch):
    """Window 16's checkpoint says it started from other weights than those window 12 is
    retrained to (as after a retraining on another machine): it is retrained too."""
    import hashlib
    import io

    out = copy_of(reference, tmp_path / "run")
    (out / "result.nc").unlink()
    _truncate(out / "checkpoints" / "window_0012.pt")
    last = out / "checkpoints" / "window_0016.pt"
    ck = torch.load(last, weights_only=True)
    ck["parent_state"] = "0" * 64
    buffer = io.BytesIO()
    torch.save(ck, buffer)
    last.write_bytes(buffer.getvalue())  # a sound file, listed as such in the manifest
    manifest = json.loads((out / "checkpoints" / "manifest.json").read_text())
    manifest["checkpoints"][last.name] = {"bytes": len(buffer.getvalue()),
                                          "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}
    (out / "checkpoints" / "manifest.json").write_text(json.dumps(manifest))
    trained = []
    real = train_mod.train_window

    def train_window(*a, **k):
        trained.append(1)
        return real(*a, **k)

    monkeypatch.setattr(train_mod.progressive, "train_window", train_window)
    with pytest.warns(UserWarning, match="window_0012.pt is damaged"):
        assert main(run_args(image, out, "--resume")) == 0
    assert len(trained) == 2
    assert_same_result(out, reference)


def test_damaged_checkpoint_of_a_finished_run_is_refused_by_name_when_applied(reference,
                                                                              tmp_path, capsys):
    out = copy_of(reference, tmp_path / "run")
    applied = scalevae.apply(out, wave_image((64, 64), seed=4), report=False)
    assert set(json.loads(applied.attrs["timings"])) == {"read", "encode"}  # as a run has them
    _truncate(out / "checkpoints" / "window_0016.pt")
    with pytest.raises(ScaleVAEError, match=r"window_0016\.pt is damaged: 1000 bytes where"):
        scalevae.load_model(out)
    new = np.asarray(wave_image((64, 64), seed=4))
    np.save(tmp_path / "new.npy", new)
    assert main(["apply", str(out), str(tmp_path / "new.npy"), "--out", str(tmp_path / "a"),
                 "--no-report"]) == 2
    assert "window_0016.pt is damaged" in one_error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- full disk

def _limit(n_bytes):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_file_size_limit_while_writing_the_result_and_a_checkpoint(image, reference, tmp_path):
    """``ulimit -f``: the limit hits result.nc (a resumed finished run) and then a checkpoint
    (a new run). Before, HDF5 crashed the process (exit -11) and torch.save gave a traceback."""
    out = copy_of(reference, tmp_path / "run")
    result = out / "result.nc"
    before = result.read_bytes()
    limit = ((out / "input.npy").stat().st_size + len(before)) // 2
    assert (out / "input.npy").stat().st_size < limit < len(before)
    proc = child(run_args(image, out, "--resume"), preexec_fn=_limit(limit))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    line = one_error_line(err)
    assert f"could not write {result}: the file-size limit was hit" in line and "--resume" in line
    assert result.read_bytes() == before and leftovers(out) == []

    new = tmp_path / "new"
    proc = child(run_args(image, new), preexec_fn=_limit(limit))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    line = one_error_line(err)
    assert "window_0008.pt: the file-size limit was hit" in line
    assert saved_windows(new) == [] and leftovers(new) == []
    assert main(run_args(image, new, "--resume")) == 0  # the limit lifted: nothing lost
    assert_same_result(new, reference)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real file system that runs out of space."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs Linux and root (the RLIMIT_FSIZE test and the "
                    "simulated full-disk tests cover the rest)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk, leave):
    """Fill ``disk`` until ``leave`` bytes are free; returns the filler file."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


def test_full_disk_keeps_the_old_result_and_the_finished_windows(image, reference, small_disk,
                                                                 capsys):
    out = copy_of(reference, small_disk / "run")
    result = out / "result.nc"
    before = result.read_bytes()
    # room for config.json, input.npy and the lock, not for a new result.nc beside the old
    filler = _fill(small_disk, 36 * 1024)
    assert main(run_args(image, out, "--resume")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"could not write {result}: the disk is full" in line and "--resume" in line
    assert result.read_bytes() == before and leftovers(small_disk) == []

    # the run is killed before its last window, the disk fills up meanwhile
    (out / "checkpoints" / "window_0016.pt").unlink()
    result.unlink()
    filler.unlink()
    filler = _fill(small_disk, 100 * 1024)  # less than one checkpoint
    assert main(run_args(image, out, "--resume")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "window_0016.pt: the disk is full" in line
    assert saved_windows(out) == ["window_0008.pt", "window_0012.pt"]
    assert leftovers(small_disk) == []
    filler.unlink()  # space freed: resume, nothing lost
    assert main(run_args(image, out, "--resume")) == 0
    assert_same_result(out, reference)


# ----------------------------------------------------------------------------- stopped processes

@pytest.mark.parametrize("sig", [signal.SIGTERM,
                                 pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGKILL"])
def test_stopped_in_a_window_then_resumed_gives_the_uninterrupted_result(image, reference,
                                                                         tmp_path, capsys, sig):
    """A batch system ends a job (SIGTERM, then SIGKILL after its grace time) while window 12
    trains: window 8 is kept, and --resume gives the numbers of the uninterrupted run."""
    out = tmp_path / "run"
    proc = child(run_args(image, out), env={"FAULTS_PAUSE_AT_WINDOW": "2"})
    deadline = time.monotonic() + 300
    while saved_windows(out) != ["window_0008.pt"]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)  # the manifest follows the checkpoint
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode == -sig
    assert saved_windows(out) == ["window_0008.pt"] and not (out / "result.nc").exists()
    with pytest.warns(UserWarning, match="ended without releasing it"):
        assert main(run_args(image, out, "--resume")) == 0
    assert_same_result(out, reference)
    assert leftovers(out) == [] and not (out / LOCK_NAME).exists()


# ----------------------------------------------------------------------------- torchrun

@pytest.mark.slow  # several minutes on 2 busy cores
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the rank through /proc")
def test_two_ranks_killed_and_resumed_give_the_uninterrupted_numbers(tmp_path):
    """A 2-rank torchrun job loses rank 1 to SIGKILL after window 8: the job stops naming the
    rank, and the same command with --resume (window 8's checkpoint damaged meanwhile, so both
    ranks retrain it) gives exactly the numbers of an uninterrupted 2-rank job."""
    from test_distributed import ARGS, _image, _rank_pid, _torchrun

    img = _image(tmp_path / "img.npy")
    args = [str(img), *ARGS, "--epochs", "40", "--quiet"]
    full = _torchrun([*args, "--out", str(tmp_path / "full")])
    _, err = full.communicate(timeout=600)
    assert full.returncode == 0, err[-2000:]

    out = tmp_path / "run"
    job = _torchrun([*args, "--out", str(out)], start_new_session=True)
    first = out / "checkpoints" / "window_0008.pt"
    deadline = time.monotonic() + 300
    while not first.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.exists(), job.communicate()[1][-2000:]
    os.kill(_rank_pid(job.pid, 1), signal.SIGKILL)
    _, err = job.communicate(timeout=300)
    assert job.returncode != 0
    assert "rank " in err, err[-3000:]
    assert not (out / "result.nc").exists()
    _truncate(first)
    again = _torchrun([*args, "--out", str(out), "--resume"])
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert "window_0008.pt is damaged" in err
    assert_same_result(out, tmp_path / "full")
