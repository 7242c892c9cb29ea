"""Other readouts of the regrouping curve, scored on the stored domain runs (twelfth round,
validation/RESULTS.md): quantiles of the curve, its fastest rise, the density-change peak.

    PYTHONPATH=src python validation/scales_readouts.py   # reads /work/research/scales/runs
"""
import glob, re, sys, warnings

import numpy as np
import xarray as xr

warnings.simplefilter("ignore")
from scalevae.analysis import length_scales
res = {}
for f in sorted(glob.glob(sys.argv[1] + "/domains*.nc" if len(sys.argv) > 1 else "/work/research/scales/runs/domains*.nc")):
    ds = xr.load_dataset(f); ls = length_scales(ds)
    name=f.split('/')[-1][:-3]; P=int(re.findall(r"\d+", name)[0])
    w = ls.window.values; c = np.nan_to_num(ls.change_from_first.values)
    env = np.maximum.accumulate(c); top = env[-1]
    cand = {}
    cand["current"] = int(ls.recommended_window)
    for q in (0.5, 0.6, 0.75, 0.9):
        cand[f"q{q}"] = int(w[np.argmax(env >= q*top)])
    sl = np.diff(env)/np.diff(np.log(w)); cand["maxslope"] = int(w[1:][np.argmax(sl)])
    # structure_change peak
    cand["dens_peak"] = int(w[1:][np.nanargmax(ls.density_change.values[1:])])
    res[name] = (P, cand)
keys = list(next(iter(res.values()))[1])
for k in keys:
    hits = {}
    for name,(P,c) in res.items():
        hits.setdefault(P, []).append(abs(c[k]-P) <= 4)
    print(f"{k:10s}", {P: f"{sum(h)}/{len(h)}" for P,h in sorted(hits.items())}, " answers:", {P: [res[n][1][k] for n in res if res[n][0]==P] for P in sorted(hits)})
