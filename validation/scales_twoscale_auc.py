"""Where the latents actually separate the two regions of the two-scale texture, per window.

For every stored ``twoscale{W}_r*_s*.nc`` (validation/scales_store.py): the region (left /
right half) predicted from the final-state ``z`` by a 25-nearest-neighbour classifier, 5-fold
cross-validated ROC AUC per window; keypoints whose largest window straddles the border are
left out. Compared in SCALES.md with the rises ``find_scales`` reports.

    PYTHONPATH=src python validation/scales_twoscale_auc.py DIR
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def region_auc(path):
    """{window: AUC} for one stored two-scale run."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    sys.path.insert(0, str(HERE))
    from scales_store import example
    from scalevae.results import load_result

    ds = load_result(path)
    name, seed = path.stem.split("_r")[0], int(path.stem.split("_s")[-1])
    ex = example(name, seed)
    nx = ex.images.shape[-1]
    x = ds["x"].values
    keep = np.abs(x - (nx - 1) / 2) > ds["window"].values.max() / 2
    region = (x >= nx / 2).astype(int)[keep]
    out = {}
    for w in ds["window"].values:
        z = ds["z_mean"].sel(state="final", window=w).values[keep]
        p = cross_val_predict(KNeighborsClassifier(25), z, region, cv=5,
                              method="predict_proba")[:, 1]
        out[int(w)] = float(roc_auc_score(region, p))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in sorted(args.folder.glob("twoscale*_r*_s*.nc")):
            auc = region_auc(p)
            print(p.name, " ".join(f"{w}:{a:.2f}" for w, a in auc.items()), flush=True)


if __name__ == "__main__":
    main()
