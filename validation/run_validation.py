"""Validate the SI-VAE against synthetic data with known answers; write validation/RESULTS.md.

Runs every check of ``validation/scoring.py`` (the full method, ``scalevae.run``, on the
generators of ``scalevae.datasets``) over several seeds, stores the raw scores with the commit,
date, settings and machine in ``validation/scores.json``, and writes ``validation/RESULTS.md``
whole from that file: one table per check, nothing written by hand. Figures of the first seed
go to ``validation/figures/``. Run from the repository root (about an hour on two cores)::

    make validation
    python validation/run_validation.py [--seeds 0 1 2 3 4 5] [--only NAME ...]
    python validation/run_validation.py --page-only      # rewrite RESULTS.md from scores.json
    python validation/run_validation.py --quick --out DIR  # tiny settings, seconds: a smoke test

``--only`` re-measures some checks and keeps the stored scores of the others; each table names
the commit its scores were measured at, so a page mixing commits says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root makes `validation` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.scoring import QUICK, RECORDED, SETTINGS, THRESHOLDS, VALIDATIONS, passes  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEEDS = [0, 1, 2, 3, 4, 5]

# --------------------------------------------------------------------------- figures


def _figures(name, seed, details, folder):
    """Write the figures of one validation run (latent distributions per window, key scores)
    into ``folder``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scalevae.analysis import latent_density

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / f"{name}_density_seed{seed}.png"]
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
    fig.savefig(written[0], dpi=80)
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
        written.append(folder / f"{name}_scores_seed{seed}.png")
        fig.tight_layout()
        fig.savefig(written[-1], dpi=80)
        plt.close(fig)
    return written


# --------------------------------------------------------------------------- provenance


def commit():
    """Short hash of HEAD, ``+dirty`` when src/ or validation/ (other than its pages) differ
    from it; "unknown" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        # the pages and figures this script writes itself do not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "validation",
                                ":!validation/*.md", ":!validation/scores.json",
                                ":!validation/figures"],
                               cwd=ROOT, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def machine():
    """One line: CPUs, architecture, Python, torch and the threads torch used."""
    import torch

    return (f"{os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def measure(name, seeds, quick=False, figures=None):
    """Run one check over ``seeds``: its entry of scores.json (scores per seed and provenance)."""
    kwargs = QUICK[name] if quick else {}
    entry = {"commit": commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
             "machine": machine(), "quick": quick,
             "settings": repr(kwargs if quick else SETTINGS[name]),
             "scores": {}, "seconds": {}, "figures": []}
    for seed in seeds:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores, details = VALIDATIONS[name](seed, **kwargs)
        entry["seconds"][str(seed)] = round(time.perf_counter() - t, 1)
        entry["scores"][str(seed)] = {k: float(v) for k, v in scores.items()}
        print(f"{name} seed {seed}: " + ", ".join(f"{k}={v:.3g}" for k, v in scores.items())
              + f" ({entry['seconds'][str(seed)]:.0f} s)", flush=True)
        if figures is not None and seed == seeds[0]:
            entry["figures"] = [p.name for p in _figures(name, seed, details, figures)]
    return entry


# --------------------------------------------------------------------------- the page


def _cell(x):
    return "nan" if not np.isfinite(x) else f"{x:.3g}"


def check_table(name, entry):
    """The Markdown section of one check: what it asks, its settings and provenance, its table."""
    seeds = sorted(entry["scores"], key=int)
    doc = (VALIDATIONS[name].__doc__ or "").strip().split("\n\n")[0]
    seconds = ", ".join(f"{entry['seconds'][s]:.0f}" for s in seeds)
    lines = [f"## {name}", "", " ".join(line.strip() for line in doc.splitlines()), "",
             f"- settings: `{entry['settings']}`",
             f"- measured at commit `{entry['commit']}` on {entry['date']}, {entry['machine']}",
             f"- run time per seed (s): {seconds}"]
    if entry.get("figures"):
        lines.append("- figures (seed " + seeds[0] + "): "
                     + ", ".join(f"[{f}](figures/{f})" for f in entry["figures"]))
    lines += ["", "| score | meaning | " + " | ".join(f"seed {s}" for s in seeds)
              + " | mean ± spread | threshold | pass |",
              "| --- | --- | " + " | ".join("---" for _ in seeds) + " | --- | --- | --- |"]
    names = [k for k in entry["scores"][seeds[0]]]
    why = []
    for score in [k for k in names if k in THRESHOLDS] + [k for k in names if k not in THRESHOLDS]:
        v = np.array([entry["scores"][s].get(score, np.nan) for s in seeds], float)
        ok = np.isfinite(v)
        mean = _cell(np.nanmean(v)) if ok.any() else "nan"
        spread = _cell(np.nanstd(v, ddof=1)) if ok.sum() > 1 else "-"
        if score in THRESHOLDS:
            op, thr, meaning = THRESHOLDS[score]
            rule = f"{op} {thr}"
            judged = f"{sum(passes(score, x) for x in v[ok])}/{len(v)}"
        else:
            meaning, reason = RECORDED.get(score, ("", "no threshold"))
            rule, judged = "recorded", "-"
            why.append(f"`{score}` is recorded, not asserted: {reason}.")
        meaning = meaning.replace("|", "\\|")  # a bare | would split the table cell
        lines.append(f"| `{score}` | {meaning} | " + " | ".join(_cell(x) for x in v)
                     + f" | {mean} ± {spread} | {rule} | {judged} |")
    if why:
        lines += [""] + why
    return "\n".join(lines)


def page(stored):
    """RESULTS.md, whole: a summary row per check, then one section per check."""
    quick = any(e.get("quick") for e in stored.values())
    lines = ["# Validation results", "",
             "Written whole by `validation/run_validation.py` (`make validation`) from "
             "`validation/scores.json`: rerun the script rather than editing this page. Each "
             "check runs the full method (`scalevae.run`) on a synthetic example of "
             "`scalevae.datasets` whose answer is known; each seed is a new data set *and* a new "
             "model initialisation. How the latent space is read: the docstring of "
             "`validation/scoring.py`. `spread` is the sample standard deviation over seeds; "
             "`pass` counts the seeds that meet the threshold. Earlier rounds: "
             "[HISTORY.md](HISTORY.md).", "",
             "The recommended window's calibration on known answers (of the answers flagged "
             "conclusive, how many lie within one window step of the truth, over 126 models and "
             "held-out images) has its own page, [CALIBRATION.md](CALIBRATION.md), written by "
             "`validation/calibration.py`; `period_conclusive` below adds six more models.", ""]
    if quick:
        lines += ["**Quick configuration** (`--quick`): tiny images and two epochs, a smoke "
                  "test of the script; these scores say nothing about the method.", ""]
    lines += ["| check | seeds | scores passing on every seed | commit | date |",
              "| --- | --- | --- | --- | --- |"]
    for name in [n for n in VALIDATIONS if n in stored]:
        entry = stored[name]
        seeds = sorted(entry["scores"], key=int)
        judged = [k for k in entry["scores"][seeds[0]] if k in THRESHOLDS]
        every = sum(all(passes(k, entry["scores"][s][k]) for s in seeds) for k in judged)
        lines.append(f"| [{name}](#{name}) | {', '.join(seeds)} | {every}/{len(judged)} | "
                     f"`{entry['commit']}` | {entry['date']} |")
    for name in [n for n in VALIDATIONS if n in stored]:
        lines += ["", check_table(name, stored[name])]
    return "\n".join(lines) + "\n"


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    p.add_argument("--only", nargs="+", choices=list(VALIDATIONS), default=list(VALIDATIONS))
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--page-only", action="store_true",
                   help="measure nothing: rewrite RESULTS.md from the stored scores")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings (scoring.QUICK), first seed only; needs --out")
    p.add_argument("--out", type=Path, default=HERE,
                   help="folder of scores.json, RESULTS.md and figures/ (default: validation/)")
    args = p.parse_args(argv)
    if args.quick and args.out.resolve() == HERE:
        p.error("--quick writes a smoke-test page: give --out DIR, not validation/")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "scores.json"
    stored = json.loads(store.read_text()) if store.exists() else {}
    if not args.page_only:
        seeds = args.seeds[:1] if args.quick else args.seeds
        figures = None if args.no_figures else args.out / "figures"
        for name in args.only:
            stored[name] = measure(name, seeds, quick=args.quick, figures=figures)
            store.write_text(json.dumps(stored, indent=1) + "\n")
    out = args.out / "RESULTS.md"
    out.write_text(page(stored))
    print(out)


if __name__ == "__main__":
    sys.exit(main())
