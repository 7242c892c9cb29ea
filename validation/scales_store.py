"""Store the training runs that validation/SCALES.md re-scores (run once; re-scoring takes seconds).

Each run is ``scalevae.run`` with the default keypoints (grid:4) and windows 8:64:4 on one
generator and seed; the patch size is ``scalevae.patches.size.default_patch_size`` of the image
(the proposed default) unless ``--patch`` names one. Results go to ``DIR/{name}_r{patch}_s{seed}.nc``
with the training time in ``attrs["timings"]``.

    OMP_NUM_THREADS=1 PYTHONPATH=src python validation/scales_store.py DIR domains24 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

WINDOWS = "8:64:4"


def example(name, seed):
    """The generator behind ``name``: ``domains{P}`` (period P px) or ``twoscale{W}``."""
    from scalevae.datasets import ferroelectric_domains, two_scale_texture

    if name.startswith("domains"):
        return ferroelectric_domains(shape=(256, 256), period=int(name[7:]), seed=seed)
    if name.startswith("twoscale"):
        return two_scale_texture(shape=(256, 384), critical_window=int(name[8:]), seed=seed)
    raise SystemExit(f"unknown example {name!r}")


def store(folder, name, seed, patch=None):
    import scalevae
    from scalevae.patches import parse_windows
    from scalevae.patches.size import default_patch_size
    from scalevae.results import save_result

    ex = example(name, seed)
    r = patch or default_patch_size(ex.images, parse_windows(WINDOWS))[0]
    path = Path(folder) / f"{name}_r{r}_s{seed}.nc"
    if path.exists():
        return path
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = scalevae.run(ex.images, windows=WINDOWS, keypoints="grid:4", seed=seed,
                          patch_size=r, quiet=True, report=False)
    save_result(ds, path)
    print(f"{path.name}: {time.perf_counter() - t:.0f} s", flush=True)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("names", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--patch", type=int, default=None)
    args = ap.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for s in args.seeds:
        for n in args.names:
            store(args.folder, n, s, args.patch)


if __name__ == "__main__":
    main()
