"""Converged runs: 2 gloo ranks against 1 process, with a second seed as the yardstick.

A VAE's latents are defined up to a rotation/reflection of the latent space, so the per-latent
correlation is the wrong yardstick between two trainings; this compares what a user reads: the
recommended window and its range, every rise, and per window the rank agreement (Spearman) of
the keypoints' pairwise latent distances (final state) between two runs. The same figures
between two single-process runs that differ only in their seed say how much any retraining
moves them.

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed_agreement.py FOLDER [--write]

prints the figures as JSON; ``--write`` also stores them in
``benchmarks/distributed_agreement.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--keypoints", "grid:6", "--windows", "8:64:8", "--quiet", "--no-report"]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _run(cmd, out):
    t = time.perf_counter()
    done = subprocess.run(cmd + ["--out", str(out)], env=_env(), capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    return time.perf_counter() - t


def _pair_agreement(a, b, n=400, seed=0):
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    idx = np.random.default_rng(seed).choice(a.sizes["point"], min(n, a.sizes["point"]),
                                             replace=False)
    out = []
    for w in a.window.values:
        za = a.z_mean.sel(state="final", window=w).values[idx]
        zb = b.z_mean.sel(state="final", window=w).values[idx]
        out.append(float(spearmanr(pdist(za), pdist(zb))[0]))
    return out


def main(folder, write=False):
    import scalevae
    from scalevae.datasets import ferroelectric_domains

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    img = folder / "domains.npy"
    np.save(img, ferroelectric_domains(shape=(256, 256), period=24, seed=0).images[0])
    single = [sys.executable, "-m", "scalevae", "run", str(img), *ARGS]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "scalevae", "run", str(img), *ARGS]
    times = {"1 process, seed 0": _run(single + ["--seed", "0"], folder / "one0"),
             "1 process, seed 1": _run(single + ["--seed", "1"], folder / "one1"),
             "2 ranks, seed 0": _run(two + ["--seed", "0"], folder / "two0")}
    runs = {k: scalevae.load_result(folder / d)
            for k, d in zip(times, ("one0", "one1", "two0"))}
    report = {"wall_s": times, "runs": {}, "agreement": {}}
    for k, ds in runs.items():
        report["runs"][k] = {
            "recommended": int(ds.attrs["recommended_window"]),
            "range": [int(v) for v in ds.attrs["recommended_window_range"]],
            "conclusive": int(ds.attrs["recommended_window_conclusive"]),
            "rises": json.loads(ds.attrs["length_scales"]),
            "epochs": [int(np.isfinite(row).sum()) for row in ds.loss.values],
            "final_loss": [float(row[np.isfinite(row)][-1]) for row in ds.loss.values]}
    base = runs["1 process, seed 0"]
    for k in ("1 process, seed 1", "2 ranks, seed 0"):
        report["agreement"][f"1 process seed 0 vs {k}"] = _pair_agreement(base, runs[k])
    text = json.dumps(report, indent=1)
    print(text)
    if write:
        (ROOT / "benchmarks" / "distributed_agreement.json").write_text(text + "\n")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="where the three runs are written")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    main(args.folder, args.write)
