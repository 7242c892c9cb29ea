"""Full SI-VAE sweeps end to end through the command line: wall time, peak RSS, time per stage.

Run (main venv; the pyroVED projection needs benchmarks/.venv-peers, see README.md):

    python benchmarks/bench_sweep.py real  [--threads 2,1] [--repeats 1] [--write]
    python benchmarks/bench_sweep.py scale [--points 15000,30000,all] [--epochs 1] [--write]

real:  ``scalevae run ../shared/data/real/PTO_Funakubo0004.h5 --channel AmplitudeRetrace
       --keypoints grid:4 --windows 8:64:4`` with default training, under ``/usr/bin/time``; the
       stage split is the result's ``attrs["timings"]``. Thread counts alternate within each
       repeat. pyroVED's time for the same optimiser steps is projected from its measured
       per-epoch time on the same 8 x 8 patches (window 8), measured alternately with a scalevae
       epoch in the peers venv, times the number of epochs this sweep ran (warm-started
       progressive training is the same number of epochs whichever model runs them).
scale: a 1024 x 1024 synthetic domain image, grid:4 keypoints (written to a CSV, first N of
       them) at 15 windows 8:64:4, ``--epochs`` per window (capped: say so), peak RSS and time.
"""

import os

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REAL = ROOT.parent / "shared" / "data" / "real" / "PTO_Funakubo0004.h5"
PEERS_PY = HERE / ".venv-peers" / "bin" / "python"
SCALEVAE = [sys.executable, "-m", "scalevae"]  # the interpreter running this script


def timed(cmd, threads):
    """Run ``cmd`` under /usr/bin/time; (wall s, user+sys s, peak RSS MiB)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf.name, *cmd], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall, user, sys_, rss = tf.read().split()[-4:]
    return float(wall), float(user) + float(sys_), float(rss) / 1024


def stage_times(run_dir):
    import xarray as xr
    with xr.open_dataset(Path(run_dir) / "result.nc") as ds:
        timings = json.loads(ds.attrs["timings"])
        epochs = int(np.isfinite(ds["loss"].values).sum())
        n_points = ds.sizes["point"]
    return timings, epochs, n_points


def run_cli(args, out, threads):
    shutil.rmtree(out, ignore_errors=True)
    wall, cpu, rss = timed([*SCALEVAE, "run", *args, "--quiet", "--out", str(out)], threads)
    timings, epochs, n_points = stage_times(out)
    load = os.getloadavg()[0]
    return dict(wall=wall, cpu=cpu, rss=rss, timings=timings, epochs=epochs, points=n_points, load=load)


def pyroved_projection(epochs, n_points, threads=2, pairs=3):
    """Median s/epoch of pyroVED iVAE(r) and of scalevae SIVAE(rotation) on the window-8 patches."""
    if not PEERS_PY.exists():
        return None
    code = f"""
import os, sys, time, json, statistics
sys.path.insert(0, {str(HERE / 'peer_stub')!r}); sys.path.insert(0, {str(HERE)!r})
import numpy as np, torch
torch.set_num_threads({threads})
from scalevae.io import read_image
from scalevae.keypoints import make_keypoints, select_inside
from scalevae.patches import extract_patches, fit_normalization
from scalevae.model import SIVAE
from scalevae.training import TrainConfig, train_window
import pyroved as pv
s = read_image({str(REAL)!r}, channel="AmplitudeRetrace")
pts, _ = select_inside(make_keypoints("grid:4", s.data), s.data.shape[1:], 64)
p = extract_patches(s.data, pts, 8, 8, normalization=fit_normalization(s.data))
lo, hi = float(p.min()), float(p.max())
x01 = torch.from_numpy(((p - lo) / (hi - lo)).astype(np.float32))
peer = pv.models.iVAE((8, 8), latent_dim=2, invariances=["r"], seed=0, device="cpu")
trainer = pv.trainers.SVItrainer(peer, device="cpu")
loader = pv.utils.init_dataloader(x01, batch_size=128)
ours = SIVAE(8, 2, "rotation")
tp, to = [], []
for k in range({pairs} + 1):
    t = time.perf_counter(); trainer.step(loader); tp.append(time.perf_counter() - t)
    t = time.perf_counter()
    train_window(ours, torch.from_numpy(p), TrainConfig(epochs=1, min_epochs=1), torch.Generator().manual_seed(k))
    to.append(time.perf_counter() - t)
print(json.dumps(dict(peer=statistics.median(tp[1:]), ours=statistics.median(to[1:]), n=len(p))))
"""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([str(PEERS_PY), "-c", code], capture_output=True, text=True, env=env, check=True)
    print(f"projection, {threads} thread(s): {out.stdout.strip()}", file=sys.stderr, flush=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def header(title, command):
    import scalevae
    import torch
    return [f"# {title}", "", f"- date: {datetime.date.today().isoformat()}",
            f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}; shared with other engineers' "
            "jobs (load average per row: above 2 means the 2 cores were oversubscribed and wall "
            "times are inflated; CPU s = user + sys of the process)",
            f"- versions: Python {platform.python_version()}, torch {torch.__version__}, numpy "
            f"{np.__version__}, scalevae {scalevae.__version__}",
            f"- command: `{command}`", ""]


STAGES = ("read", "keypoints", "patches", "train", "encode", "report")


def main_real(args):
    out = Path(tempfile.mkdtemp(prefix="sweep_"))
    cli = [str(REAL), "--channel", "AmplitudeRetrace", "--keypoints", "grid:4", "--windows", "8:64:4"]
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    for rep in range(0 if args.projection_only else args.repeats):
        for th in threads:
            row = run_cli(cli, out / f"t{th}", th)
            row["threads"] = th
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    epochs = rows[0]["epochs"] if rows else args.projection_only
    proj = {th: pyroved_projection(epochs, None, threads=th) for th in threads} if not args.no_peers else {}
    lines = header("Full sweep on the real PTO image",
                   f"python benchmarks/bench_sweep.py real --threads {args.threads} "
                   f"--repeats {args.repeats}")
    lines += ["`scalevae run ../shared/data/real/PTO_Funakubo0004.h5 --channel AmplitudeRetrace "
              "--keypoints grid:4 --windows 8:64:4` (256 x 256 image, default training: "
              "up to 30 epochs per window with early stop, batch 128, rotation invariance), report included.", "",
              "| threads | keypoints | epochs run (all windows) | wall s | CPU s | peak RSS MiB | "
              + " | ".join(f"{s} s" for s in STAGES) + " | load avg |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in STAGES) + " | ---: |"]
    for r in rows:
        lines.append(f"| {r['threads']} | {r['points']} | {r['epochs']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                     f"{r['rss']:.0f} | " + " | ".join(f"{r['timings'].get(s, float('nan')):.1f}" for s in STAGES)
                     + f" | {r['load']:.1f} |")
    for th in threads:
        walls = [r["wall"] for r in rows if r["threads"] == th]
        if not walls:
            continue
        lines.append("")
        lines.append(f"- median wall with {th} thread(s): {statistics.median(walls):.1f} s over {len(walls)} run(s)")
    if proj:
        steps = epochs
        n = next(iter(proj.values()))["n"]
        lines += ["", "pyroVED projection (same optimiser steps: the same number of epochs on the "
                  f"same {n} patches of 8 x 8, warm start through 15 windows; pyroVED iVAE(['r']) "
                  "defaults; its epoch time measured alternately with a scalevae epoch "
                  "in one process, first epoch left out, median of 3):", "",
                  "| threads | model | s / epoch | epochs | projected training s | ratio pyroVED / scalevae |",
                  "| ---: | --- | ---: | ---: | ---: | ---: |"]
        for th, pr in proj.items():
            lines += [f"| {th} | scalevae SIVAE(rotation) | {pr['ours']:.3f} | {steps} | {pr['ours'] * steps:.0f} | |",
                      f"| {th} | pyroVED iVAE(['r']) | {pr['peer']:.3f} | {steps} | {pr['peer'] * steps:.0f} | "
                      f"{pr['peer'] / pr['ours']:.1f}x |"]
        lines.append(f"- load average at the end: {os.getloadavg()[0]:.1f}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write and not args.projection_only:
        (HERE / "RESULTS_sweep.md").write_text(text)


def main_scale(args):
    from scalevae.datasets import ferroelectric_domains
    from scalevae.keypoints import grid_keypoints, select_inside
    tmp = Path(tempfile.mkdtemp(prefix="scale_"))
    ex = ferroelectric_domains(shape=(1024, 1024), seed=0)
    np.save(tmp / "image.npy", ex.images[0].astype(np.float32))
    pts, _ = select_inside(grid_keypoints((1, 1024, 1024), 4), (1024, 1024), 64)
    counts = [len(pts) if c == "all" else int(c) for c in args.points.split(",")]
    rows = []
    for n in counts:
        if n > len(pts):
            raise SystemExit(f"only {len(pts)} grid:4 keypoints fit the largest window; ask for fewer")
        csv = tmp / f"kp_{n}.csv"
        np.savetxt(csv, pts[:n], delimiter=",", header="frame,y,x", comments="", fmt="%g")
        cli = [str(tmp / "image.npy"), "--keypoints", str(csv), "--windows", "8:64:4",
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)] + ([] if args.report else ["--no-report"])
        row = run_cli(cli, tmp / f"run_{n}", args.threads)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    lines = header("Scale: 1024 x 1024 image, grid:4 keypoints x 15 windows",
                   f"python benchmarks/bench_sweep.py scale --points {args.points} "
                   f"--epochs {args.epochs} --batch-size {args.batch_size} --threads {args.threads}" + (" --report" if args.report else ""))
    lines += [f"Synthetic ferroelectric domains 1024 x 1024 ({len(pts)} grid:4 keypoints fit the 64 px "
              f"window; the first N are used), windows 8:64:4, **epochs capped at {args.epochs} per "
              "window** (a full default run at 60k keypoints is too long on this shared machine), "
              f"batch {args.batch_size}, {args.threads} thread(s), report {'included' if args.report else 'off'}.", "",
              "| keypoints | epochs run | wall s | CPU s | CPU s per 1k keypoints | peak RSS MiB | "
              + " | ".join(f"{s} s" for s in STAGES) + " | load avg |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in STAGES) + " | ---: |"]
    for r in rows:
        lines.append(f"| {r['points']} | {r['epochs']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                     f"{1000 * r['cpu'] / r['points']:.2f} | {r['rss']:.0f} | "
                     + " | ".join(f"{r['timings'].get(s, float('nan')):.1f}" for s in STAGES)
                     + f" | {r['load']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (HERE / "RESULTS_scale.md").write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=["real", "scale"])
    ap.add_argument("--threads", default=None, help="real: list, e.g. 2,1; scale: one number")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--points", default="15000,30000,all", help="'all': every grid:4 keypoint (57,600)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128, help="scale: training batch size")
    ap.add_argument("--report", action="store_true", help="scale: write the HTML report too")
    ap.add_argument("--projection-only", type=int, metavar="EPOCHS",
                    help="real: skip the sweeps, project pyroVED for this many epochs (table not written)")
    ap.add_argument("--no-peers", action="store_true", help="real: skip the pyroVED projection")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.case == "real":
        args.threads = args.threads or "2,1"
        main_real(args)
    else:
        args.threads = int(args.threads or 2)
        main_scale(args)


if __name__ == "__main__":
    main()
