"""The command line: what a run writes and prints, and the exit codes scripts rely on.

Bad input through the CLI is in test_errors.py; interrupted and resumed runs in test_resume.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scalevae
from conftest import wave_image
from scalevae.cli import main

FAST = ["--keypoints", "grid:8", "--epochs", "1", "--quiet", "--no-report"]


image = wave_image


@pytest.fixture(scope="module")
def done(npy, tmp_path_factory):
    """One finished run, printed summary included."""
    out = tmp_path_factory.mktemp("done") / "run"
    rc = main(["run", str(npy), "--windows", "8:16:4", "--keypoints", "grid:8", "--epochs", "1",
               "--no-report", "--out", str(out)])
    assert rc == 0
    return out


def test_run_writes_the_run_folder_of_the_design(done):
    assert (done / "result.nc").is_file() and (done / "config.json").is_file()
    assert sorted(p.name for p in (done / "checkpoints").iterdir()) == [
        "manifest.json", "window_0008.pt", "window_0012.pt", "window_0016.pt"]
    ds = scalevae.load_result(done)
    assert ds.window.values.tolist() == [8, 12, 16]  # 8:16:4 includes STOP
    assert ds.z_mean.dims == ("state", "window", "point", "latent")
    # grid:8 on 48 px: centres 3.5, 11.5, ..., 43.5; the 16 px window keeps 7.5 .. 39.5
    assert sorted(set(ds.y.values.tolist())) == [11.5, 19.5, 27.5, 35.5]
    cfg = json.loads((done / "config.json").read_text())
    assert cfg["windows"] == [8, 12, 16] and cfg["keypoints"] == "grid:8"
    assert cfg["n_keypoints"] == 16 and cfg["n_dropped"] == 20


def test_run_prints_a_summary(npy, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", str(npy), "--windows", "8,12", "--keypoints", "grid:8", "--epochs", "1",
            "--no-report", "--out", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["16 keypoints x 2 windows (8..12 px); 20 keypoints dropped at the border",
                     f"result: {out / 'result.nc'}"]


def test_run_prints_the_recommended_window_with_its_range(npy, tmp_path, capsys):
    from scalevae.results import load_result

    out = tmp_path / "run"
    assert main(["run", str(npy), "--windows", "8,12,16", "--keypoints", "grid:8", "--epochs",
                 "1", "--no-report", "--out", str(out)]) == 0
    attrs = load_result(out).attrs
    lines = capsys.readouterr().out.splitlines()
    w = int(attrs["recommended_window"])
    lo, hi = (int(v) for v in attrs["recommended_window_interval"])
    assert [int(v) for v in attrs["recommended_window_range"]] == [lo, hi]
    # one wording (analysis.recommend.describe_recommendation), with the interval every time
    from scalevae.analysis.recommend import describe_recommendation

    assert describe_recommendation(load_result(out)) in lines
    line = describe_recommendation(load_result(out))
    assert (f"{lo}-{hi} px" in line or f"between {lo} and {hi} px" in line) if lo != hi \
        else f"{lo} px" in line
    assert line.startswith(f"recommended descriptor size: {w} px") == bool(
        attrs["recommended_window_conclusive"])


def test_run_says_when_it_trained_on_a_subset(npy, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", str(npy), "--windows", "8,12", "--keypoints", "grid:8", "--epochs", "1",
            "--max-train-points", "10", "--no-report", "--out", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("trained on 10 of the 16 keypoints (a fixed random subset, "
                        "--max-train-points); all of them are encoded")
    ds = scalevae.load_result(out)
    assert ds.attrs["n_train_points"] == 10 and ds.sizes["point"] == 16
    assert json.loads(ds.attrs["config"])["train"]["max_train_points"] == 10


@pytest.mark.parametrize("value, ok", [("all", True), ("0", False), ("many", False)])
def test_max_train_points_values(npy, tmp_path, capsys, value, ok):
    argv = ["run", str(npy), "--windows", "8,12", "--keypoints", "grid:8", "--epochs", "1",
            "--max-train-points", value, "--no-report", "--quiet", "--out", str(tmp_path / "r")]
    assert main(argv) == (0 if ok else 2)
    if not ok:
        err = capsys.readouterr().err
        assert err.startswith("scalevae: error: argument --max-train-points") and "'all'" in err


def test_quiet_hides_the_progress_bar_but_not_the_summary(npy, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", str(npy), "--windows", "8,12", *FAST, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bar
    assert captured.out.splitlines() == [
        "16 keypoints x 2 windows (8..12 px); 20 keypoints dropped at the border",
        f"result: {out / 'result.nc'}"]


def test_apply_encodes_a_new_image_with_a_finished_run(done, tmp_path, capsys):
    new = tmp_path / "new.npy"
    np.save(new, image(seed=4))
    out = tmp_path / "applied"
    assert main(["apply", str(done), str(new), "--quiet", "--no-report", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"applied the run in {done}"
    assert lines[-1] == f"result: {out / 'result.nc'}"
    ds = scalevae.load_result(out)
    assert ds.window.values.tolist() == [8, 12, 16] and ds.sizes["point"] == 16
    assert json.loads((out / "config.json").read_text())["applied_from"] == str(done)


def test_apply_refuses_a_pixel_size_the_run_cannot_match(done, tmp_path, capsys):
    new = tmp_path / "new.npy"
    np.save(new, image(seed=4))
    out = tmp_path / "applied"
    # the run has no pixel size: a pixel size for the new image alone cannot be matched
    assert main(["apply", str(done), str(new), "--pixel-size", "2", "--unit", "nm",
                 "--no-report", "--out", str(out)]) == 2
    assert "--pixel-size" in capsys.readouterr().err


def test_summary_states_the_known_answer_beside_the_recommendation(tmp_path, capsys):
    from argparse import Namespace

    from scalevae.cli import _known_answer, _summary
    from scalevae.datasets import load_example
    from scalevae.testing import make_fake_result

    ds = make_fake_result().assign_attrs(recommended_window=24,
                                         recommended_window_range=[20, 28])
    known = _known_answer(load_example("domains", shape=(64, 64), period=24))
    assert known == "domain period 24 px"
    _summary(ds, Namespace(out=tmp_path), known=known)
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("recommended")][0]
    assert line.endswith("(known answer: domain period 24 px)")


def test_a_gradual_answer_says_so_and_suggests_windows_around_the_spectral_period(tmp_path,
                                                                                capsys):
    from argparse import Namespace

    from scalevae.cli import _summary
    from scalevae.testing import make_fake_result

    ds = make_fake_result().assign_attrs(
        recommended_window=24, recommended_window_range=[8, 60], recommended_window_conclusive=0,
        length_scales_gradual=1, spectral_period=11.8, image_shape="[1, 256, 256]",
        recommended_window_note="the recommended rise spans 12-60 px")
    _summary(ds, Namespace(out=tmp_path))
    out = capsys.readouterr().out
    assert "no single length scale between 8 and 60 px" in out and "gradually" in out
    assert "spectral period is 11.8 px" in out
    assert "--windows 4:24:2" in out
    assert "recommended descriptor size" not in out


def test_advice_never_repeats_the_range_just_run_nor_reads_a_pixel_limit_peak(tmp_path, capsys):
    from argparse import Namespace

    from scalevae.cli import _summary
    from scalevae.testing import make_fake_result

    gradual = dict(recommended_window=12, recommended_window_range=[4, 24],
                   recommended_window_conclusive=0, length_scales_gradual=1,
                   image_shape="[1, 256, 256]")
    ran = make_fake_result(windows=list(range(4, 25, 2)))
    _summary(ran.assign_attrs(spectral_period=11.8, **gradual), Namespace(out=tmp_path))
    out = capsys.readouterr().out
    assert "--windows 4:24:2" not in out and "--windows 4:36:3" in out
    _summary(ran.assign_attrs(spectral_period=2.0, **gradual), Namespace(out=tmp_path))
    out = capsys.readouterr().out
    assert "spectral period" not in out and "--windows" not in out.split("extend")[0]


def test_summary_says_why_the_default_windows_start_below_8_px(tmp_path, capsys):
    from argparse import Namespace

    from scalevae.cli import _summary
    from scalevae.testing import make_fake_result

    reason = ("default: from 4 px, about a third of the image's spectral period (11.8 px), so "
              "that the range brackets the regrouping it causes")
    _summary(make_fake_result().assign_attrs(windows_reason=reason), Namespace(out=tmp_path))
    assert f"windows {reason}" in capsys.readouterr().out
    _summary(make_fake_result().assign_attrs(windows_reason="given"), Namespace(out=tmp_path))
    assert "windows given" not in capsys.readouterr().out


def test_physical_windows_with_a_pixel_size(npy, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(npy), "--windows", "20nm:40nm:10nm", "--pixel-size", "2.5",
                 "--unit", "nm", *FAST, "--out", str(out)]) == 0
    ds = scalevae.load_result(out)
    assert ds.window.values.tolist() == [8, 12, 16]
    assert ds.attrs["pixel_size"] == 2.5 and ds.attrs["unit"] == "nm"


def test_keypoint_file_positions_are_kept(npy, tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,frame\n20,24,0\n30.5,17.25,0\n2,2,0\n")  # any column order
    out = tmp_path / "run"
    argv = ["run", str(npy), "--windows", "8,12", "--keypoints", str(csv), "--epochs", "1",
            "--quiet", "--no-report", "--out", str(out)]
    assert main(argv) == 0
    ds = scalevae.load_result(out)
    # (2, 2) is too close to the border for the 12 px window and is dropped, and counted
    assert ds.y.values.tolist() == [24, 17.25] and ds.x.values.tolist() == [20, 30.5]
    assert ds.attrs["n_dropped"] == 1


def test_overwrite_replaces_a_run(npy, done, tmp_path):
    import shutil

    out = shutil.copytree(done, tmp_path / "run")
    argv = ["run", str(npy), "--windows", "8,12", *FAST, "--out", str(out)]
    assert main(argv) == 2  # protected without --overwrite
    assert main(argv + ["--overwrite"]) == 0
    assert scalevae.load_result(out).window.values.tolist() == [8, 12]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "manifest.json", "window_0008.pt", "window_0012.pt"]  # the old window-16 checkpoint is gone


@pytest.mark.slow  # the report draws every figure: ~5 s alone, 20 s on a loaded machine
def test_report_command_writes_the_html(done, capsys):
    assert main(["report", str(done)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == done / "report.html" and path.stat().st_size > 1000


def test_demo_runs_on_built_in_data(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "domains", "--windows", "8,12", "--keypoints", "grid:32", "--epochs",
                 "1", "--quiet", "--no-report", "--out", str(out)]) == 0
    assert scalevae.load_result(out).sizes["window"] == 2


def test_channels_command(tmp_path, capsys):
    path = tmp_path / "two.npz"
    np.savez(path, height=image(), phase=image(seed=1))
    assert main(["channels", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()  # name, shape, pixel size and unit
    assert [line.split()[0] for line in lines] == ["height", "phase"]
    shape = " x ".join(str(n) for n in (1,) + image().shape)
    assert all(shape in line and "pixel size unknown" in line for line in lines)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"scalevae {scalevae.__version__}"


@pytest.mark.parametrize("args, message", [
    (["channels", "missing.h5"], "scalevae: error: file not found: missing.h5"),
    (["run", "x.npy", "--invariance", "scale", "--out", "o"],
     "scalevae: error: argument --invariance: invalid choice: 'scale'"),
])
def test_installed_command_exits_2_with_one_line(tmp_path, args, message):
    """The real entry point, as a shell script sees it (these fail before torch is imported)."""
    exe = Path(sys.executable).with_name("scalevae")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "scalevae.cli"]
    proc = subprocess.run(cmd + args, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_main_restores_the_process_state_it_changes():
    """The command line formats warnings as one line and quiets tifffile's log while it runs;
    a caller (a notebook, a test, a pipeline calling main) gets both back as they were."""
    import logging
    import warnings

    before = (warnings.formatwarning, logging.getLogger("tifffile").level, list(warnings.filters))
    assert main(["channels", "no-such-file.tif"]) == 2
    after = (warnings.formatwarning, logging.getLogger("tifffile").level, list(warnings.filters))
    assert after == before


def test_progress_is_one_plain_line_per_window_in_a_log(capsys):
    """Without a terminal (a log file, a batch job) the bar would redraw into every line: one
    line per window instead."""
    import numpy as np

    import scalevae

    img = np.random.default_rng(0).normal(size=(40, 40)).astype("float32")
    scalevae.run(img, windows=[8, 12], keypoints="grid:4", epochs=1, report=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert [line.split(":")[1].strip() for line in lines] == ["window 8 px (1 of 2)",
                                                                "window 12 px (2 of 2)"]


def test_repeats_print_each_model_beside_the_pooled_answer(npy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(npy), "--windows", "8,12,16", "--keypoints", "grid:8", "--epochs",
                 "1", "--repeats", "2", "--threads", "2", "--no-report", "--quiet", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "pooled over 2 models; each alone (* conclusive): seed 0: " in text
    assert (out / "checkpoints" / "seed_1" / "window_0016.pt").exists()
    assert main(["run", str(npy), "--threads", "0", "--out", str(tmp_path / "t")]) == 2
    assert "threads must be at least 1" in capsys.readouterr().err
