"""The README's PTO run end to end, by stage, with its report; pyroVED's iVAE beside it on the
same patches for the same epochs; a large stack run with its report (peak memory).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_pto.py --write
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_pto.py --stack-gb 2 --write   # + 2 GB row

* PTO run: ``PTO_Funakubo0004.h5`` AmplitudeRetrace, ``keypoints="grid:4"``, windows 8:64:4,
  ``epochs`` 30 (the cap; training stops on convergence), report on, in a fresh process: wall
  from before ``import scalevae`` to the report written, the stages the result stores
  (``timings``: read, keypoints, patches, train, encode, report), the report's size, the
  process's peak RSS (VmHWM).
* pyroVED: ``iVAE((16, 16), 2, invariances=["r", "t"])`` with its defaults (``SVItrainer``,
  batch 128), trained window after window on the same patches as the run (cut from the run's
  ``input.npy`` with its normalisation, min-max scaled to [0, 1] for pyroVED's Bernoulli
  likelihood) for as many epochs at each window as the run trained there; in its own process
  (``--peer-python``: the peers venv, benchmarks/README.md), after the PTO run, with the same
  thread budget (``torch.set_num_threads``). Without pyroVED the row says so.
* Large stack: a ``(frames, 1024, 1024)`` float32 ``.npy`` of ``--stack-gb`` GB (sines plus
  noise, as tests/test_lazy.py), ``scalevae run`` on it with grid:128, windows 8,16, 1 epoch,
  and its report; peak RSS of the CLI process. 0 skips it (the default: a 2 GB file costs
  minutes to write).
* The report is written by a process forked as the run starts (``scalevae.report.background``:
  it imports the report's libraries while the model trains); ``report`` is the run's wait for it,
  and its peak RSS is given beside the run's (the largest forked process: the worker or its
  helper; the pages it shares with the run count in both).
* Seeds: the same PTO run with ``repeats=--seeds`` (3): the models side by side on the same
  patches, the thread budget shared (``--repeats``), end to end in a fresh process.
* ``--write`` puts the table into ``benchmarks/RESULTS_pto.md`` (whole: date, commit, machine,
  threads, load average at the start). A ratio is only a ratio when both sides ran idle: the
  load average at the start is part of the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PTO = ROOT.parent / "shared" / "data" / "real" / "PTO_Funakubo0004.h5"
PEERS = ROOT / "benchmarks" / ".venv-peers" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "RESULTS_pto.md"

_HWM = """
def _hwm_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
"""

PTO_CHILD = _HWM + r"""
import json, sys, time, warnings
t0 = time.perf_counter()
sys.path.insert(0, {src!r})
import scalevae
import numpy as np, torch
torch.set_num_threads({threads})
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    res = scalevae.run({data!r}, channel="AmplitudeRetrace", keypoints="grid:4",
                 windows=list(range(8, 65, 4)), epochs={epochs}, out={out!r}, quiet=True,
                 device={device!r}, repeats={repeats}, threads={train_threads})
wall = time.perf_counter() - t0
ds = scalevae.load_result({out!r})
loss = ds["loss"].transpose("window", "epoch").values
# the returned result holds the report's time too (the file is saved once, before the report)
print(json.dumps({{"wall": wall, "timings": json.loads(res.attrs["timings"]),
                  "epochs_per_window": np.isfinite(loss).sum(1).tolist(),
                  "keypoints": int(ds.sizes["point"]), "windows": int(ds.sizes["window"]),
                  "patch_size": int(ds.attrs["patch_size"]), "peak_mib": _hwm_mib(),
                  # the report worker and its helper (forked processes, reaped): the largest
                  "worker_peak_mib": __import__("resource").getrusage(
                      __import__("resource").RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "report_mb": __import__("os").path.getsize({out!r} + "/report.html") / 1e6}}))
"""

PEER_CHILD = _HWM + r"""
import json, sys, time
sys.path.insert(0, {stub!r})
sys.path.insert(0, {src!r})
import numpy as np, torch
torch.set_num_threads({threads})
try:
    import pyroved as pv
except ImportError as exc:
    print(json.dumps({{"error": f"pyroVED not importable here ({{exc}})"}}))
    raise SystemExit(0)
import scalevae
from scalevae.patches import extract_patches
ds = scalevae.load_result({out!r})
image = np.load({out!r} + "/input.npy", mmap_mode="r")
norm = json.loads(ds.attrs["normalization"])
r = int(ds.attrs["patch_size"])
pts = np.column_stack([ds["frame"].values, ds["y"].values, ds["x"].values])
epochs = np.isfinite(ds["loss"].transpose("window", "epoch").values).sum(1)
patches = [extract_patches(image, pts, int(w), r, normalization=norm) for w in ds["window"].values]
lo, hi = np.percentile(patches[0], [0.5, 99.5])
model = pv.models.iVAE((r, r), latent_dim=2, invariances=["r", "t"], seed=0, device="cpu")
trainer = pv.trainers.SVItrainer(model, device="cpu")
t0 = time.perf_counter()
for p, n in zip(patches, epochs):
    x = torch.from_numpy(np.clip((p - lo) / (hi - lo), 0, 1).astype(np.float32))
    loader = pv.utils.init_dataloader(x, batch_size=128)
    for _ in range(int(n)):
        trainer.step(loader)
train = time.perf_counter() - t0
print(json.dumps({{"train": train, "epochs": int(epochs.sum()), "version": pv.__version__,
                  "peak_mib": _hwm_mib()}}))
"""

EPOCH_CHILD = r"""
import json, sys, time
sys.path.insert(0, {src!r})
import numpy as np, torch
torch.set_num_threads({threads})
import scalevae
from scalevae.model import SIVAE
from scalevae.patches import extract_patches
from scalevae.training import TrainConfig
from scalevae.training.loop import train_step
ds = scalevae.load_result({out!r})
image = np.load({out!r} + "/input.npy", mmap_mode="r")
pts = np.column_stack([ds["frame"].values, ds["y"].values, ds["x"].values])
r = int(ds.attrs["patch_size"])
x = torch.from_numpy(extract_patches(image, pts, int(ds["window"][0]), r,
                                     normalization=json.loads(ds.attrs["normalization"])))
torch.manual_seed(0)
model = SIVAE(r, int(ds.sizes["latent"]), ds.attrs["invariance"])
opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
cfg, gen = TrainConfig(), torch.Generator().manual_seed(0)
def epoch():
    order = torch.randperm(len(x), generator=gen)
    for s in range(0, len(x), cfg.batch_size):
        train_step(model, opt, x[order[s:s + cfg.batch_size]], cfg, gen, 1.0)
epoch()
times = []
for _ in range(5):
    t0 = time.perf_counter(); epoch(); times.append(time.perf_counter() - t0)
print(json.dumps({{"threads": {threads}, "epoch": sorted(times)[2]}}))
"""

STACK_CHILD = r"""
import resource, subprocess, sys, time
t0 = time.perf_counter()
r = subprocess.run([sys.executable, "-m", "scalevae", "run", *sys.argv[1:]])
print(r.returncode, round(time.perf_counter() - t0, 1),
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def _child(python, code, env=None):
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, **(env or {})))
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def pto_run(out, epochs, threads, device, repeats=1, train_threads=None):
    code = PTO_CHILD.format(src=str(SRC), threads=threads, data=str(PTO), epochs=epochs,
                            out=str(out), device=device, repeats=repeats,
                            train_threads=train_threads)
    return _child(sys.executable, code)


def median_run(n, run):
    """The run of median wall time among ``n`` fresh ones (``run(k)``, k = 0 .. n - 1), with
    every wall time in ``walls``: one run's wall time moves by a few seconds between
    otherwise equal runs on this machine."""
    runs = [run(k) for k in range(n)]
    walls = [r["wall"] for r in runs]
    pick = dict(sorted(runs, key=lambda r: r["wall"])[n // 2])
    pick["walls"] = walls
    return pick


def peer_run(out, threads, python):
    if not Path(python).exists():
        return {"error": f"no peers venv at {python} (benchmarks/README.md sets it up)"}
    code = PEER_CHILD.format(stub=str(ROOT / "benchmarks" / "peer_stub"), src=str(SRC),
                             threads=threads, out=str(out))
    return _child(python, code)


def epoch_threads(out, max_threads):
    """One window-epoch of the run's first window on 1 and on ``max_threads`` threads, with
    OpenMP threads that sleep at a barrier (PASSIVE, scalevae's default) or spin (ACTIVE,
    OpenMP's), on the idle machine and with one core kept busy by another process; each
    setting's best of 2 alternated rounds. {(busy, threads, policy): seconds}."""
    settings = [(1, "PASSIVE"), (max_threads, "PASSIVE"), (max_threads, "ACTIVE")]
    best = {}
    for busy in (False, True):
        hog = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None)
        try:
            for _ in range(2):
                for th, policy in dict.fromkeys(settings):
                    code = EPOCH_CHILD.format(src=str(SRC), out=str(out), threads=th)
                    sec = _child(sys.executable, code, env={"OMP_WAIT_POLICY": policy})["epoch"]
                    key = (busy, th, policy)
                    best[key] = min(best.get(key, float("inf")), sec)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    return best


def write_stack(path, gb, side=1024):
    """A (frames, side, side) float32 .npy of about ``gb`` GB, frame by frame (never whole)."""
    sys.path.insert(0, str(SRC))
    from scalevae.testing import write_sine_stack

    frames = max(1, int(round(gb * 1e9 / (4 * side * side))))
    write_sine_stack(path, frames, side)
    return frames


def stack_run(tmp, gb, threads):
    path = Path(tmp) / "stack.npy"
    frames = write_stack(path, gb)
    out = Path(tmp) / "stack_run"
    args = [str(path), "--keypoints", "grid:128", "--windows", "8,16", "--epochs", "1",
            "--quiet", "--out", str(out)]
    res = subprocess.run([sys.executable, "-c", STACK_CHILD, *args], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(SRC),
                                             OMP_NUM_THREADS=str(threads)))
    rc, wall, peak = res.stdout.split()[-3:]
    if rc != "0":
        raise RuntimeError(res.stderr[-3000:])
    return {"frames": frames, "file_mib": path.stat().st_size / 2**20, "wall": float(wall),
            "peak_mib": float(peak), "report_mb": (out / "report.html").stat().st_size / 1e6}


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def commit():
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(pto, peer, stack, args, load, seeds=None, epochs=None, fast=None):
    t = pto["timings"]
    n_ep = sum(pto["epochs_per_window"])
    lines = [
        "# The PTO run end to end, pyroVED beside it, a large stack with its report",
        "",
        f"Written whole by `benchmarks/bench_pto.py` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit "
        f"{commit()}; {machine()}; {args.threads} thread(s) for both programs "
        f"(`torch.set_num_threads`; scalevae trains each model on one unless `--threads`), device {args.device}; load average at the start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min): a ratio is a ratio "
        "only when it is near 0.",
        "",
        f"PTO_Funakubo0004.h5 AmplitudeRetrace, grid:4, windows 8:64:4: {pto['keypoints']} "
        f"keypoints x {pto['windows']} windows, {pto['patch_size']} px patches, {n_ep} "
        f"window-epochs (cap {args.epochs} per window).",
        "",
        "| stage | seconds |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {float(v):.2f} |" for k, v in t.items()]
    walls = ", ".join(f"{w:.1f}" for w in pto.get("walls", [pto["wall"]]))
    lines += [f"| **end to end** (fresh process, imports included; the median of "
              f"{len(pto.get('walls', [1]))} runs: {walls} s, its stages above) | "
              f"**{pto['wall']:.1f}** |",
              "",
              f"Report: {t.get('report', float('nan')):.2f} s, {pto['report_mb']:.2f} MB. "
              f"Peak RSS of the run: {pto['peak_mib']:.0f} MiB (its report worker, a "
              f"forked process: {pto.get('worker_peak_mib', 0):.0f} MiB).",
              "",
              "| model, same patches and epochs | training (s) | per epoch (s) | ratio |",
              "| --- | --- | --- | --- |",
              f"| scalevae SIVAE (rotation) | {t['train']:.1f} | {t['train'] / n_ep:.3f} | 1 |"]
    if fast is not None:
        ft = fast["timings"]
        lines.append(f"| scalevae, `--threads {args.threads}` (idle machine only) | "
                     f"{ft['train']:.1f} | {ft['train'] / n_ep:.3f} | "
                     f"{ft['train'] / t['train']:.2f} |")
    if "error" in peer:
        lines.append(f"| pyroVED iVAE (r, t) | not run: {peer['error']} | | |")
    else:
        lines.append(f"| pyroVED {peer['version']} iVAE (r, t) | {peer['train']:.1f} | "
                     f"{peer['train'] / peer['epochs']:.3f} | "
                     f"{peer['train'] / t['train']:.1f}x slower |")
    lines.append("")
    if fast is not None:
        lines += [f"With `--threads {args.threads}` on the idle machine the same run takes "
                  f"**{fast['wall']:.1f} s** end to end (median of "
                  f"{', '.join(f'{w:.1f}' for w in fast.get('walls', [fast['wall']]))} s; "
                  f"report {fast['timings']['report']:.2f} "
                  f"s); pyroVED is then {peer.get('train', float('nan')) / fast['timings']['train']:.1f}x "
                  "slower.", ""]
    if epochs:
        lines += ["One window-epoch (the first window's patches, batch 128, median of 5, best "
                  "of 2 alternated rounds); OpenMP threads that sleep at a barrier (PASSIVE) "
                  "or spin (ACTIVE, OpenMP's default); on the idle machine and with one core "
                  "kept busy by another process (why each model trains on one thread by "
                  "default, `config.TRAIN_THREADS`):", "",
                  "| threads | wait policy | idle (s) | one core busy (s) |",
                  "| --- | --- | --- | --- |"]
        for th, policy in dict.fromkeys((k[1], k[2]) for k in epochs):
            lines.append(f"| {th} | {policy} | {epochs[(False, th, policy)]:.3f} | "
                         f"{epochs[(True, th, policy)]:.3f} |")
        lines.append("")
    if seeds is not None:
        st = seeds["timings"]
        lines += [f"The same run with `repeats={args.seeds}` ({args.seeds} models side by side on "
                  "the same patches, the threads shared; fresh process, report included): "
                  f"**{seeds['wall']:.1f} s** end to end; training of the first model "
                  f"{st['train']:.1f} s, waiting for the others after it "
                  f"{st.get('repeats_wait', 0):.1f} s, report {st.get('report', 0):.2f} s.", ""]
    if stack is not None:
        lines += ["| large stack with its report | frames | file | wall | peak RSS | report |",
                  "| --- | --- | --- | --- | --- | --- |",
                  f"| grid:128, windows 8,16, 1 epoch | {stack['frames']} x 1024 x 1024 | "
                  f"{stack['file_mib']:.0f} MiB | {stack['wall']:.0f} s | "
                  f"{stack['peak_mib']:.0f} MiB | {stack['report_mb']:.2f} MB |", ""]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--peer-python", default=str(PEERS))
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--stack-gb", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, default=3, help="repeats of the seeds row; 0 skips it")
    ap.add_argument("--runs", type=int, default=3,
                    help="fresh runs of the PTO run (default and --threads); the median counts")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    if not PTO.exists():
        sys.exit(f"{PTO} is absent (the real data live in shared/ beside the repository)")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pto"
        pto = median_run(args.runs, lambda k: pto_run(
            out if k == 0 else Path(tmp) / f"pto_{k}", args.epochs, args.threads, args.device))
        peer = ({"error": "--no-peer"} if args.no_peer
                else peer_run(out, args.threads, args.peer_python))
        fast = (median_run(args.runs, lambda k: pto_run(
            Path(tmp) / f"pto_threads_{k}", args.epochs, args.threads, args.device,
            train_threads=args.threads)) if args.threads > 1 else None)
        seeds = (pto_run(Path(tmp) / "pto_repeats", args.epochs, args.threads, args.device,
                         repeats=args.seeds) if args.seeds > 1 else None)
        epochs = epoch_threads(out, args.threads)
        stack = stack_run(tmp, args.stack_gb, args.threads) if args.stack_gb > 0 else None
    text = table(pto, peer, stack, args, load, seeds, epochs, fast)
    print(text)
    if args.write:
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
