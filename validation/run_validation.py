"""Validate the SI-VAE against synthetic data with known answers (issue 3).

Runs every check of ``validation/scoring.py`` (the full method, ``scalevae.run``, on every
generator of ``scalevae.datasets``) with several seeds, and writes the measured part of
``validation/RESULTS.md`` (a table of the scores per seed, their mean and spread, and the
threshold) and figures under ``validation/figures/``. The measured part lies between the
``MEASURED_BEGIN`` and ``MEASURED_END`` markers; the hand-written findings around it are kept.

Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python validation/run_validation.py [--seeds 0 1 2] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scoring import THRESHOLDS, VALIDATIONS, passes

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"

#: The lines that enclose the part of RESULTS.md this script writes.
MEASURED_BEGIN = "<!-- measured: written by run_validation.py, do not edit by hand -->"
MEASURED_END = "<!-- end of the measured part -->"

# --------------------------------------------------------------------------- figures


def _figures(name, seed, details):
    """Write the figures of one validation run (latent distributions per window, key scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scalevae.analysis import latent_density

    FIGURES.mkdir(parents=True, exist_ok=True)
    ds = details["ds"]
    dens = latent_density(ds, grid_size=64)
    windows = dens["window"].values
    n = len(windows)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.5), squeeze=False)
    g1, g2 = dens["z1_grid"].values, dens["z2_grid"].values
    for ax, w in zip(axes[0], windows):
        ax.imshow(dens.sel(window=w).values.T, origin="lower", cmap="magma", aspect="auto",
                  extent=[g1[0], g1[-1], g2[0], g2[-1]])
        ax.set_title(f"w = {int(w)} px", fontsize=9)
        ax.set_xlabel("z1", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("z2", fontsize=8)
    fig.suptitle(f"{name} (seed {seed}): final-state latent density per window", fontsize=10)
    fig.tight_layout()
    fig.savefig(FIGURES / f"{name}_density_seed{seed}.png", dpi=80)
    plt.close(fig)

    fig = None
    if name == "sublattice":
        w, sub = details["window"], details["sub"]
        z = ds["z_mean"].sel(state="final", window=w).values
        a = ds["angle"].sel(state="final", window=w).values
        fig, ax = plt.subplots(1, 2, figsize=(8, 3.4))
        for k, c in ((0, "tab:blue"), (1, "tab:orange")):
            m = sub == k
            ax[0].scatter(z[m, 0], z[m, 1], s=5, c=c, alpha=0.6, label="AB"[k])
            ax[1].hist(np.degrees(np.mod(a[m], 2 * np.pi / 3)), bins=48, range=(0, 120),
                       color=c, alpha=0.6, label="AB"[k])
        ax[0].set(xlabel="z1", ylabel="z2", title=f"z by sublattice, w = {w} px")
        ax[1].set(xlabel="latent angle mod 120 (deg)", ylabel="atoms",
                  title="angle by sublattice (expect 60 deg apart)")
        ax[0].legend(fontsize=8)
        ax[1].legend(fontsize=8)
    elif name == "movie":
        fig, ax = plt.subplots(1, 2, figsize=(8, 3.4))
        d = np.minimum(details["dist"], 80)
        ax[0].scatter(d, details["score"], s=4, alpha=0.5)
        ax[0].axvline(details["window"] / 4, color="r", lw=0.8)
        ax[0].axvline(details["window"] / 2, color="r", lw=0.8, ls="--")
        ax[0].set(xlabel="distance to nearest defect (px, capped)",
                  ylabel="distance from bulk mode (post. std)",
                  title=f"w = {details['window']} px")
        ax[1].plot(details["counts"], details["dispersion"], "o-")
        ax[1].set(xlabel="defects in frame", ylabel="latent dispersion (post. std)",
                  title="per-frame dispersion vs defect count")
    elif name == "library":
        fig, ax = plt.subplots(figsize=(4.2, 3.4))
        ax.plot(details["size"], details["per_frame"], "o-")
        ax.set(xlabel="true mean grain diameter (px)", ylabel="PCA-1 score of frame mean latents",
               title="library: per-frame PCA-1 vs grain size")
    elif name == "twoscale":
        fig, ax = plt.subplots(1, 2, figsize=(8, 3.4))
        acc = details["acc"]
        ax[0].plot(list(acc), list(acc.values()), "o-", label="from z")
        ax[0].plot(list(acc), list(details["oracle"].values()), "s--", label="oracle (count)")
        ax[0].axvline(details["critical"], color="r", lw=0.8, label="critical W")
        ax[0].axhline(0.5, color="gray", lw=0.8, ls=":")
        ax[0].set(xlabel="window (px)", ylabel="balanced accuracy (region from z)", ylim=(0.4, 1.02))
        ax[0].legend(fontsize=8)
        sc = details["scales"]
        rise = sc["change_from_first"].values
        ax[1].plot(sc["window"].values, rise, "o-", label="regrouping from smallest window")
        ax[1].axhline(0.5 * np.nanmax(rise), color="gray", lw=0.8, ls=":", label="half maximum")
        ax[1].axvspan(int(sc["recommended_low"]), int(sc["recommended_high"]), color="g",
                      alpha=0.12, label="recommended range")
        ax[1].axvline(details["critical"], color="r", lw=0.8, label="critical W")
        ax[1].axvline(details["recommended"], color="g", lw=0.8, ls="--", label="recommended")
        ax[1].set(xlabel="window (px)", ylabel="change from the smallest window")
        ax[1].legend(fontsize=7)
    elif name == "domains":
        fig, ax = plt.subplots(1, 2, figsize=(8, 3.4))
        w0 = int(ds["window"].values[0])
        z = ds["z_mean"].sel(state="final", window=w0).values
        for k, (lab, c) in enumerate(zip(("a", "c", "wall"), ("tab:blue", "tab:orange", "k"))):
            m = details["labels"] == k
            ax[0].scatter(z[m, 0], z[m, 1], s=3, c=c, alpha=0.5, label=lab)
        ax[0].set(xlabel="z1", ylabel="z2", title=f"z by truth label, w = {w0} px")
        ax[0].legend(fontsize=8, markerscale=3)
        ax[1].plot(ds["window"].values, details["info"], "o-")
        ax[1].set(xlabel="window (px)", ylabel="latent information (nats)",
                  title="broadening: spread / posterior width")
    if fig is not None:
        fig.tight_layout()
        fig.savefig(FIGURES / f"{name}_scores_seed{seed}.png", dpi=80)
        plt.close(fig)


# --------------------------------------------------------------------------- report


def measured_section(table, seeds, timings):
    """The measured part of RESULTS.md: the score table over seeds and the run times."""
    lines = [
        "# Validation results",
        "",
        "Written by `validation/run_validation.py` (the full method, `scalevae.run`, on the "
        "synthetic examples of `scalevae.datasets`, each seed a new data set *and* a new model "
        "initialisation). Sizes and windows: `SETTINGS` in `validation/scoring.py`; readings of "
        "the latent space: its module docstring. `spread` is the sample standard deviation over "
        "seeds.",
        "",
        "| check | meaning | " + " | ".join(f"seed {s}" for s in seeds)
        + " | mean ± spread | threshold | pass |",
        "| --- | --- | " + " | ".join("---" for _ in seeds) + " | --- | --- | --- |",
    ]
    for name, (op, thr, meaning) in THRESHOLDS.items():
        vals = [table.get((name, s), np.nan) for s in seeds]
        v = np.array(vals, float)
        ok = [passes(name, x) for x in v if np.isfinite(x)]
        mean = np.nanmean(v) if np.isfinite(v).any() else np.nan
        sd = np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else np.nan
        meaning = meaning.replace("|", "\\|")  # a bare | would split the table cell
        lines.append(f"| `{name}` | {meaning} | " + " | ".join(f"{x:.3g}" for x in v)
                     + f" | {mean:.3g} ± {sd:.2g} | {op} {thr} | {sum(ok)}/{len(ok)} |")
    lines += ["", "Run time per validation and seed (s): "
              + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())]
    return "\n".join(lines)


def replace_measured(text, section):
    """``text`` with the part between the markers replaced by ``section``; the rest unchanged.

    Text without the markers (or no text) gets the marked section at its top.
    """
    block = f"{MEASURED_BEGIN}\n{section}\n{MEASURED_END}"
    start, end = text.find(MEASURED_BEGIN), text.find(MEASURED_END)
    if start < 0 or end < start:
        return block + "\n\n" + text if text else block + "\n"
    return text[:start] + block + text[end + len(MEASURED_END):]


def _write_results(table, seeds, timings, path=HERE / "RESULTS.md"):
    text = path.read_text() if path.exists() else ""
    path.write_text(replace_measured(text, measured_section(table, seeds, timings)))
    return path


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", choices=list(VALIDATIONS), default=list(VALIDATIONS))
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--report-only", action="store_true",
                   help="only merge validation/results*.json into RESULTS.md")
    p.add_argument("--json", type=Path, default=HERE / "results.json",
                   help="raw scores (merged with an earlier file, so runs can be split)")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    raw = json.loads(args.json.read_text()) if args.json.exists() else {}
    timings = raw.pop("_timings", {})
    if args.report_only:
        # Merge every raw-score file beside this script (runs may be split across processes).
        for f in sorted(HERE.glob("results*.json")):
            raw.update(json.loads(f.read_text()))
            timings.update(raw.pop("_timings", {}))
        args.only = []
    for name in args.only:
        for seed in args.seeds:
            t = time.perf_counter()
            scores, details = VALIDATIONS[name](seed)
            timings[f"{name}/{seed}"] = time.perf_counter() - t
            for k, v in scores.items():
                raw[f"{k}|{seed}"] = v
            print(f"{name} seed {seed}: " + ", ".join(f"{k}={v:.3g}" for k, v in scores.items())
                  + f" ({timings[f'{name}/{seed}']:.0f} s)", flush=True)
            if not args.no_figures:
                _figures(name, seed, details)
            args.json.write_text(json.dumps({**raw, "_timings": timings}, indent=1))
    raw.pop("_timings", None)
    seeds = sorted({int(k.split("|")[1]) for k in raw})
    table = {(k.split("|")[0], int(k.split("|")[1])): v for k, v in raw.items()}
    print(_write_results(table, seeds, timings))


if __name__ == "__main__":
    sys.exit(main())
