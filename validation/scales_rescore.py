"""Re-score stored runs (validation/scales_store.py): old rule vs find_scales vs baselines.

For every ``DIR/{name}_r{patch}_s{seed}.nc``: the known length scale of the generator (domain
period, or the two-scale critical window W), the recommendation of
``scalevae.analysis.length_scales`` (the old rule: half-way point of the whole regrouping
curve), of ``scalevae.analysis.multiscale.find_scales`` (middle of the strongest rise; every
rise listed), the FFT baseline ``spectral_period`` and the patch-statistics baseline
(find_scales on the curve of ``patch_statistics``), and the training time. Prints a Markdown
table; seconds, no training.

    PYTHONPATH=src python validation/scales_rescore.py DIR
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def score(path):
    import sys

    sys.path.insert(0, str(HERE))
    from scales_store import example
    from scalevae.analysis import length_scales
    from scalevae.analysis.multiscale import find_scales, patch_statistics, spectral_period
    from scalevae.results import load_result

    name, r, seed = re.match(r"(\w+?)_r(\d+)_s(\d+)\.nc", path.name).groups()
    ex = example(name, int(seed))
    known = ex.truth.get("period", ex.truth.get("critical_window"))
    ds = load_result(path)
    ls = length_scales(ds)
    fs = find_scales(ls)
    ps = patch_statistics(ex.images, ds)
    base = find_scales(ps)
    t = json.loads(ds.attrs["timings"]) if isinstance(ds.attrs["timings"], str) else {}
    rises = ", ".join(f"{int(a)}-{int(m)}-{int(b)} ({s:.2f})" for a, m, b, s in zip(
        fs["onset"].values, fs["middle"].values, fs["end"].values, fs["strength"].values))
    return dict(name=name, patch=int(r), seed=int(seed), known=float(known),
                old=int(ls["recommended_window"]), new=int(fs["recommended_window"]),
                new_range=(int(fs["recommended_low"]), int(fs["recommended_high"])),
                rises=rises, still=bool(fs["still_rising"]), conclusive=bool(fs["conclusive"]), sig=bool(fs["significant"]),
                fft=spectral_period(ex.images, max_period=64),
                stats=int(base["recommended_window"]),
                agree=(float(ps["agreement"][0]), float(ps["agreement"][-1])), train=t.get("train", np.nan),
                curve=np.round(ls["change_from_first"].values, 2).tolist(),
                windows=ls["window"].values.tolist())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--curves", action="store_true", help="also print each regrouping curve")
    args = ap.parse_args(argv)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in sorted(args.folder.glob("*_r*_s*.nc")):
            rows.append(score(p))
    print("| run | patch | known | old rule | find_scales (range) | rises onset-middle-end "
          "(strength) | still rising | FFT period | patch-stats | agreement w1 / wn | train (s) |")
    print("| --- " * 11 + "|")
    for d in rows:
        print(f"| {d['name']} s{d['seed']} | {d['patch']} | {d['known']:g} | {d['old']} | "
              f"{d['new']} ({d['new_range'][0]}-{d['new_range'][1]}) | {d['rises']} | "
              f"{'yes' if d['still'] else 'no'}{'' if d['conclusive'] else ' (inconclusive)'} | {d['fft']:.1f} | {d['stats']} | "
              f"{d['agree'][0]:.2f} / {d['agree'][1]:.2f} | "
              f"{d['train']:.0f} |")
    for key in ("old", "new", "new_conclusive", "stats"):
        hits = {}
        for d in rows:
            v = d["new"] if key == "new_conclusive" else d[key]
            ok = abs(v - d["known"]) <= 4 and (key != "new_conclusive" or d["conclusive"])
            hits.setdefault(d["name"], []).append(ok)
        print(f"\n{key}: " + ", ".join(f"{n} {sum(h)}/{len(h)}" for n, h in hits.items()),
              end="")
    print()
    if args.curves:
        for d in rows:
            print(d["name"], d["seed"], d["windows"], d["curve"])


if __name__ == "__main__":
    main()
