"""Peak memory with many keypoints: every patch held vs patches cut block by block.

A 2048 x 2048 image, grid:4 (~257 000 keypoints), windows 16 and 32 px, 16 px patches, one epoch
on a 16 384-keypoint training subset: all patches of a window are 257 000 x 16 x 16 x 4 B =
~260 MB. ``held`` raises ``api.PATCH_CACHE_BYTES`` so that every window's patches are cut at
once and kept (the behaviour below the budget); ``streamed`` is the default above it. Each
variant runs in its own process; peak RSS from ``resource.getrusage``.

    OMP_NUM_THREADS=2 python benchmarks/bench_many_keypoints.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import resource, sys, time, warnings
import numpy as np
from scipy import ndimage
sys.path.insert(0, {src!r})
import scalevae, scalevae.pipeline as api
if {held}:
    api.PATCH_CACHE_BYTES = 1 << 40
rng = np.random.default_rng(0)
img = ndimage.gaussian_filter(rng.normal(size=(2048, 2048)), 3).astype("float32")
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ds = scalevae.run(img, windows=[16, 32], keypoints="grid:4", patch_size=16, epochs=1,
                      quiet=True, report=False)
print(ds.sizes["point"], round(time.perf_counter() - t, 1),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def main():
    for name, held in (("held", True), ("streamed", False)):
        out = subprocess.run([sys.executable, "-c", CHILD.format(src=str(ROOT / "src"),
                                                                 held=held)],
                             capture_output=True, text=True, check=True).stdout.split()
        print(f"{name}: {out[0]} keypoints, {out[1]} s, peak RSS {out[2]} MiB")


if __name__ == "__main__":
    main()
