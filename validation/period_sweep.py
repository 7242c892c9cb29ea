"""How well the recommended window recovers a known domain period (default settings).

Runs ``scalevae.run`` with the defaults a new user gets (keypoints ``grid:4``, windows
``8:64:4``, patch size 8 px) on synthetic a/c domain images (256 x 256) of several periods and
seeds, and writes ``validation/PERIOD_SWEEP.md``: the recommended window, its range
(``recommended_window_range``), and whether each lands within one window step of the period.
Recorded, not asserted (the asserted check is ``period`` in ``scoring.py``).

Run from the repository root (an hour on a slow 2-core machine, ten minutes on a fast one)::

    OMP_NUM_THREADS=1 .venv/bin/python validation/period_sweep.py [--periods 12 16 ...] [--seeds 0 1]

Add ``--store DIR`` to keep every run's result; ``--rescore DIR`` then re-applies the current
length-scale rule to those stored latents (seconds), which is how a change of the rule should
be scored before anything is retrained.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(period, seed):
    """The result Dataset of one synthetic domain image, default settings."""
    import scalevae
    from scalevae.datasets import ferroelectric_domains

    ex = ferroelectric_domains(shape=(256, 256), period=period, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 8-fold shrink warning: these are the defaults
        return scalevae.run(ex.images, windows="8:64:4", keypoints="grid:4", seed=seed,
                            quiet=True, report=False)


def recommend(period, seed, store=None, rescore=None):
    """(recommended, low, high) in px for one synthetic domain image.

    ``store`` (a folder): keep the result there as ``P{period}_s{seed}.nc``. ``rescore`` (a
    folder of such files): read the result from there instead of training, and apply the
    current :func:`scalevae.analysis.length_scales` to it, so that a change of the rule is
    scored on the same latents in seconds instead of an hour.
    """
    from scalevae.analysis import length_scales
    from scalevae.results import load_result, save_result

    name = f"P{period}_s{seed}.nc"
    if rescore is not None:
        s = length_scales(load_result(Path(rescore) / name))
        return (int(s["recommended_window"]), int(s["recommended_low"]),
                int(s["recommended_high"]))
    ds = _run(period, seed)
    if store is not None:
        save_result(ds, Path(store) / name)
    lo, hi = ds.attrs["recommended_window_range"]
    return int(ds.attrs["recommended_window"]), int(lo), int(hi)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--periods", type=int, nargs="+", default=[12, 16, 20, 24, 32, 40])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--store", type=Path, default=None,
                    help="folder to keep each run's result (P{period}_s{seed}.nc)")
    ap.add_argument("--rescore", type=Path, default=None,
                    help="folder of stored results: apply the current rule, no training")
    ap.add_argument("--no-table", action="store_true",
                    help="only run (and store); do not rewrite PERIOD_SWEEP.md")
    args = ap.parse_args(argv)
    if args.store is not None:
        args.store.mkdir(parents=True, exist_ok=True)
    rows, hits, inside, n = [], 0, 0, 0
    for p in args.periods:
        cells = []
        for s in args.seeds:
            rec, lo, hi = recommend(p, s, args.store, args.rescore)
            print(f"period {p} seed {s}: {rec} px ({lo}-{hi})", flush=True)
            hits += abs(rec - p) <= 4
            inside += lo <= p <= hi
            n += 1
            cells.append(f"{rec} ({lo}-{hi})")
        rows.append(f"| {p} | " + " | ".join(cells) + " |")
    if args.no_table:
        return
    head = "| period (px) | " + " | ".join(f"seed {s}" for s in args.seeds) + " |"
    text = "\n".join([
        "# Period sweep: recommended window vs a known domain period", "",
        "Written by `validation/period_sweep.py`: `scalevae.run` with the default settings",
        "(grid:4, windows 8:64:4, patch size 8 px) on `ferroelectric_domains(shape=(256, 256),",
        "period=P, seed=s)`. Each cell: recommended window (range), px.", "", head,
        "|" + " --- |" * (len(args.seeds) + 1), *rows, "",
        f"Within one window step (4 px) of the period: {hits}/{n}; period inside the range: "
        f"{inside}/{n}.", ""])
    (HERE / "PERIOD_SWEEP.md").write_text(text)


if __name__ == "__main__":
    main()
