"""Patch extraction speed and memory: scalevae.patches against an AtomAI-style loop.

Run: python benchmarks/bench_patches.py [--repeats 3] [--all-routes] [--write]

* 1024 x 1024 random image, 16,384 grid keypoints (step 8), 15 windows 8..64 step 4,
  output size 8 and 32, padding 'reflect' (so every keypoint has every window).
* Baseline: what AtomAI-style code does, a Python loop over keypoints that slices each window
  out of the (once padded) image and resizes it, with cv2.resize(INTER_AREA, anti-aliased)
  when opencv is installed, else skimage.transform.resize(anti_aliasing=True).
* Ours: scalevae.patches.extract_patches (automatic route), its gather route forced, and the
  gather route with scipy.ndimage.map_coordinates(order=1) in place of the hand-written gather.
* Timings alternate between methods within each repeat; medians are reported, of wall time
  and of CPU time (user + sys of this process, which the other jobs on a shared machine
  inflate much less than wall time). 2 threads. The forced routes run with --all-routes.
* Peak memory of iter_patches over 60,000 keypoints x 15 windows, in a fresh process.

With --write the table is written to benchmarks/RESULTS_patches.md.
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "2"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import skimage  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

import scalevae  # noqa: E402
from scalevae.keypoints import grid_keypoints  # noqa: E402
from scalevae.patches import _PatchIterator, extract_patches  # noqa: E402

try:
    import cv2
    cv2.setNumThreads(2)
except ImportError:
    cv2 = None

WINDOWS = list(range(8, 65, 4))
N_SIDE = 1024


def atomai_style(img, pts, windows, size):
    """Loop of slices + per-patch resize (keypoints at pixel centres of even windows: exact slices)."""
    pad = max(windows) // 2 + 1
    big = np.pad(img, pad, mode="symmetric")
    out = []
    for w in windows:
        res = np.empty((len(pts), size, size), np.float32)
        top = np.round(pts[:, 1] - (w - 1) / 2).astype(int) + pad
        left = np.round(pts[:, 2] - (w - 1) / 2).astype(int) + pad
        for k in range(len(pts)):
            patch = big[top[k]:top[k] + w, left[k]:left[k] + w]
            if cv2 is not None:
                res[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
            else:
                from skimage.transform import resize
                res[k] = resize(patch, (size, size), order=1, anti_aliasing=True)
        out.append(res)
    return out


def ours(img, pts, windows, size):
    return [extract_patches(img, pts, w, size, padding="reflect") for w in windows]


def ours_route(img, pts, windows, size, route):
    out = []
    for w in windows:
        it = _PatchIterator(img, pts, w, size, "reflect", None, 4096)
        res = np.empty((len(pts), size, size), np.float32)
        for s in range(0, len(pts), 4096):
            q = pts[s:s + 4096]
            if route == "map_coordinates":
                it._load(0)
                prefiltered, margin = it._prefiltered()
                sy = (q[:, 1, None] + it.offsets + margin)[:, :, None]
                sx = (q[:, 2, None] + it.offsets + margin)[:, None, :]
                coords = np.broadcast_arrays(sy, sx)
                res[s:s + len(q)] = ndi.map_coordinates(prefiltered, coords, order=1, mode="nearest")
            else:
                res[s:s + len(q)] = it._sample(0, q[:, 1], q[:, 2], route=route)
        out.append(res)
    return out


def peak_rss(n_points, size):
    """Peak RSS (MiB) of iter_patches over n_points x 15 windows, measured in a fresh process."""
    # VmHWM, not ru_maxrss: ru_maxrss of a child survives exec and can report the parent's size
    code = f"""
import tracemalloc, numpy as np
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return float(line.split()[1]) / 1024
from scalevae.keypoints import grid_keypoints
from scalevae.patches import iter_patches
img = np.random.default_rng(0).random(({N_SIDE}, {N_SIDE}), dtype=np.float32)
pts = grid_keypoints(img.shape, 4)[:{n_points}]
base = hwm()
tracemalloc.start()
acc = 0.0
for w in {WINDOWS}:
    for start, p in iter_patches(img, pts, w, {size}, padding="reflect"):
        acc += float(p[:, 0, 0].sum())   # consume the batch, as a trainer would
print(base, hwm(), tracemalloc.get_traced_memory()[1] / 2**20)
"""
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return tuple(float(v) for v in out.stdout.split())


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="8,32")
    ap.add_argument("--all-routes", action="store_true", help="also time the forced gather routes")
    ap.add_argument("--write", action="store_true", help="write benchmarks/RESULTS_patches.md")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    img = rng.random((N_SIDE, N_SIDE), dtype=np.float32)
    pts = grid_keypoints(img.shape, 8)
    assert len(pts) == 16384
    baseline = ("AtomAI-style loop, cv2.resize INTER_AREA" if cv2 is not None
                else "AtomAI-style loop, skimage resize anti_aliasing")
    methods = {
        "baseline": lambda r: atomai_style(img, pts, WINDOWS, r),
        "scalevae (auto route)": lambda r: ours(img, pts, WINDOWS, r),
        "scalevae gather route, NumPy take": lambda r: ours_route(img, pts, WINDOWS, r, "gather"),
        "scalevae gather route, map_coordinates": lambda r: ours_route(img, pts, WINDOWS, r, "map_coordinates"),
    }
    if not args.all_routes:
        methods = {k: v for k, v in methods.items() if "route," not in k}
    mem = {r: peak_rss(57_600, r) for r in (8, 32)}  # first, while this process is small
    rows, loads = [], []
    for r in (int(s) for s in args.sizes.split(",")):
        # the same numbers first: routes agree; the baseline equals ours where r == w (a plain slice)
        sub = pts[:4096]
        expect = ours(img, sub, [8, 36], r)
        for route in ("gather", "map_coordinates"):
            got = ours_route(img, sub, [8, 36], r, route)
            assert all(np.abs(g - e).max() < 1e-4 for g, e in zip(got, expect)), route
        if r == 8:
            assert np.abs(atomai_style(img, sub, [8], 8)[0] - expect[0]).max() < 1e-6
        times = {m: [] for m in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                t, c = time.perf_counter(), time.process_time()
                fn(r)
                times[name].append((time.perf_counter() - t, time.process_time() - c))
                print(f"r={r} {name}: {times[name][-1]}", file=sys.stderr, flush=True)
            loads.append(os.getloadavg()[0])
        base = statistics.median(t for t, _ in times["baseline"])
        base_cpu = statistics.median(c for _, c in times["baseline"])
        for name, ts in times.items():
            med, med_cpu = statistics.median(t for t, _ in ts), statistics.median(c for _, c in ts)
            rows.append((r, baseline if name == "baseline" else name, med, base / med, med_cpu, base_cpu / med_cpu))

    lines = [
        "# Patch extraction benchmark",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}; 2 threads (OMP/BLAS/cv2); "
        + ("quiet (load below the core count, next line)" if statistics.median(loads) < os.cpu_count()
           else "shared with other jobs (load above the core count, next line): timings are noisy"),
        f"- versions: Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-image {skimage.__version__}, opencv {cv2.__version__ if cv2 else 'not installed'}, "
        f"scalevae {scalevae.__version__}",
        f"- command: `python benchmarks/bench_patches.py --repeats {args.repeats}"
        f"{' --all-routes' if args.all_routes else ''} --write`",
        f"- load average during the timings (median): {statistics.median(loads):.1f} on {os.cpu_count()} CPUs",
        f"- task: {N_SIDE} x {N_SIDE} random float32 image, {len(pts)} grid keypoints (step 8), "
        f"{len(WINDOWS)} windows 8..64 step 4, padding 'reflect'; all patches of all windows; "
        f"median of {args.repeats} alternating repeats",
        "",
        "| output size | method | median wall (s) | speed-up (wall) | median CPU (s) | speed-up (CPU) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r} | {name} | {t:.3f} | {s:.1f}x | {c:.3f} | {sc:.1f}x |" for r, name, t, s, c, sc in rows]
    lines += [
        "",
        "Peak memory of `iter_patches` (batch 4096) over 57,600 keypoints (all grid:4 points of the image) x 15 windows, fresh process "
        "(peak RSS = VmHWM; peak traced = tracemalloc peak of NumPy allocations during extraction):",
        "",
        "| output size | RSS after imports + image (MiB) | peak RSS (MiB) | peak traced (MiB) | all patches at once would be (MiB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r} | {b:.0f} | {p:.0f} | {t:.0f} | {57_600 * 15 * r * r * 4 / 2**20:.0f} |"
              for r, (b, p, t) in mem.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (Path(__file__).resolve().parent / "RESULTS_patches.md").write_text(text)


if __name__ == "__main__":
    main()
