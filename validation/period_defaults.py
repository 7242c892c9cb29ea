"""Domain images of several periods run at the default settings (windows chosen by the run),
or at given windows for comparison: the recommended window against the known period.

Recorded, not asserted (the asserted check is ``period`` in ``scoring.py``). One line per run:
windows, patch size, recommended window, conclusive, gradual, every rise (onset / middle / end
px, strength). From the repository root, about a minute per run on two cores::

    OMP_NUM_THREADS=1 PYTHONPATH=src python validation/period_defaults.py 12 16 20 --seeds 0 1 2
    OMP_NUM_THREADS=1 PYTHONPATH=src python validation/period_defaults.py 12 --windows 8:62:6
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root makes `validation` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.scoring import rises_text  # noqa: E402


def one(period, seed, windows=None):
    """Run the default pipeline on ``ferroelectric_domains(period)`` (256 x 256, grid:4)."""
    import scalevae
    from scalevae.analysis import length_scales
    from scalevae.datasets import ferroelectric_domains

    ex = ferroelectric_domains(shape=(256, 256), period=period, seed=seed)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = scalevae.run(ex.images, windows=windows, keypoints="grid:4", seed=seed,
                          quiet=True, report=False)
    ls = length_scales(ds)  # the state the run's recommendation was read from
    w = ds["window"].values
    rises = rises_text(ls)
    rec = int(ls.recommended_window)
    step = int(w[1] - w[0])
    print(f"period {period} seed {seed}: windows {w[0]}:{w[-1]}:{step}, patch "
          f"{ds.attrs['patch_size']}, recommended {rec} px ({abs(rec - period) / step:.2f} "
          f"steps), conclusive {bool(ls.conclusive)}, gradual {bool(ls.gradual)}; rises "
          f"{rises}; {time.perf_counter() - t:.0f} s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("periods", type=float, nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--windows", default=None, help="START:STOP:STEP (default: the run's rule)")
    args = ap.parse_args(argv)
    for p in args.periods:
        for s in args.seeds:
            one(p, s, args.windows)


if __name__ == "__main__":
    main()
