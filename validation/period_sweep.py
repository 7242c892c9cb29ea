"""How well the recommended window recovers a known domain period (default settings).

Runs ``scalevae.run`` with the defaults a new user gets (keypoints ``grid:4``, windows
``8:64:4``, patch size 8 px) on synthetic a/c domain images (256 x 256) of several periods and
seeds, and writes ``validation/PERIOD_SWEEP.md``: the recommended window, its range
(``recommended_window_range``), and whether each lands within one window step of the period.
Recorded, not asserted (the asserted check is ``period`` in ``run_validation.py``).

Run from the repository root (about an hour on 2 cores)::

    OMP_NUM_THREADS=1 .venv/bin/python validation/period_sweep.py [--periods 12 16 ...] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def recommend(period, seed):
    """(recommended, low, high) in px for one synthetic domain image."""
    import scalevae
    from scalevae.datasets import ferroelectric_domains

    ex = ferroelectric_domains(shape=(256, 256), period=period, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 8-fold shrink warning: these are the defaults
        ds = scalevae.run(ex.images, windows="8:64:4", keypoints="grid:4", seed=seed,
                          quiet=True, report=False)
    lo, hi = ds.attrs["recommended_window_range"]
    return int(ds.attrs["recommended_window"]), int(lo), int(hi)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--periods", type=int, nargs="+", default=[12, 16, 20, 24, 32, 40])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = ap.parse_args(argv)
    rows, hits, inside, n = [], 0, 0, 0
    for p in args.periods:
        cells = []
        for s in args.seeds:
            rec, lo, hi = recommend(p, s)
            print(f"period {p} seed {s}: {rec} px ({lo}-{hi})", flush=True)
            hits += abs(rec - p) <= 4
            inside += lo <= p <= hi
            n += 1
            cells.append(f"{rec} ({lo}-{hi})")
        rows.append(f"| {p} | " + " | ".join(cells) + " |")
    head = "| period (px) | " + " | ".join(f"seed {s}" for s in args.seeds) + " |"
    text = "\n".join([
        "# Period sweep: recommended window vs a known domain period", "",
        "Written by `validation/period_sweep.py`: `scalevae.run` with the default settings",
        "(grid:4, windows 8:64:4, patch size 8 px) on `ferroelectric_domains(shape=(256, 256),",
        "period=P, seed=s)`. Each cell: recommended window (range), px.", "", head, "|" + " --- |" * (len(args.seeds) + 1), *rows, "",
        f"Within one window step (4 px) of the period: {hits}/{n}; period inside the range: "
        f"{inside}/{n}.", ""])
    (HERE / "PERIOD_SWEEP.md").write_text(text)


if __name__ == "__main__":
    main()
