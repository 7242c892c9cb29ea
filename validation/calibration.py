"""Calibration of the recommended window's uncertainty on images with known length scales.

Trains ``scalevae.run`` with the defaults a new user gets (``quiet=True, report=False``, every
other argument left out) on the generators of ``scalevae.datasets`` -- a/c domain images of
period 12, 16, 20, 24, 32 and 40 px and the two-scale texture (critical window 24 px), image
seeds 0-5 -- three models per image (seeds s, s + 1, s + 2, each a default run, the same
patches), and scores :func:`scalevae.analysis.recommend.recommend` on them, both for each model
alone (what a default run answers) and for the three pooled (what ``--repeats 3`` answers: the
same models, trained side by side there): of the answers flagged conclusive, the share within
one window step of the truth (target >= 95 %), and how often a conclusive answer is given at
all; beside it, the rule without the check of the result's other state, to show what that
check does. It also measures how many position subsets the statistic needs, how many
bootstrap resamples the probabilities need, the cost, and the README's PTO file with seeds 0
and 1. Writes ``validation/CALIBRATION.md`` whole.

Each model's result is cached (``--cache``, one ``.nc`` per model), so re-scoring a new rule
costs no training. Run from the repository root::

    python validation/calibration.py --train     # train what is missing, then score
    python validation/calibration.py             # score the cached runs only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PERIODS = (12, 16, 20, 24, 32, 40)
CRITICAL_WINDOW = 24
SEEDS = tuple(range(6))
PTO = dict(channel="AmplitudeRetrace", keypoints="grid:4", windows="8:64:4")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
REPEATS = 3


def cases(seeds=SEEDS):
    """(kind, truth px, seed) of every calibration run, seed by seed."""
    return [c for s in seeds for c in
            [("domains", p, s) for p in PERIODS] + [("twoscale", CRITICAL_WINDOW, s)]]


def cache_name(cache, kind, truth, seed, model=0):
    return Path(cache) / f"{kind}_P{truth}_s{seed}_m{model}.nc"


def train(cache, kind, truth, seed, model):
    """One default run (seed ``seed + model``) on the generated image of ``seed``, cached."""
    import scalevae
    from scalevae.datasets import ferroelectric_domains, two_scale_texture
    from scalevae.results import save_result

    ex = (ferroelectric_domains(period=truth, seed=seed) if kind == "domains"
          else two_scale_texture(critical_window=truth, seed=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # default-settings warnings are what a user sees too
        ds = scalevae.run(ex.images, seed=seed + model, quiet=True, report=False)
    path = cache_name(cache, kind, truth, seed, model)
    tmp = path.with_suffix(".tmp.nc")
    save_result(ds, tmp)
    tmp.rename(path)


def step_error(windows, answer, truth):
    """|answer - truth| in window steps (the median step of the run's windows)."""
    return abs(answer - truth) / float(np.median(np.diff(windows)))


def score(cache, seeds=SEEDS, models=REPEATS):
    """Rows per image: one per model alone (``pooled`` False) and one for the models pooled
    (``pooled`` True), each with truth, answer, interval, conclusive share, error in steps,
    ``conclusive`` (the rule) and ``unchecked`` (the rule without the other state's check)."""
    from scalevae.analysis.recommend import other_state, recommend
    from scalevae.analysis.scales import regrouping_evidence
    from scalevae.analysis._common import scales_state
    from scalevae.results import load_result

    def row(kind, truth, seed, w, rec, model):
        return dict(kind=kind, truth=truth, seed=seed, windows=w,
                    answer=int(rec["recommended_window"]),
                    interval=(int(rec["interval_low"]), int(rec["interval_high"])),
                    share=float(rec["conclusive_share"]), conclusive=bool(rec["conclusive"]),
                    # the rule without the check: what this state alone says
                    unchecked=bool(rec["conclusive_alone" if "conclusive_alone" in rec
                                       else "conclusive"]),
                    model=model, pooled=model < 0,
                    agrees=bool(rec["check_agrees"]) if "check_agrees" in rec else True,
                    error=step_error(w, int(rec["recommended_window"]), truth),
                    inside=int(rec["interval_low"]) <= truth <= int(rec["interval_high"]))

    rows = []
    for kind, truth, seed in cases(seeds):
        paths = [cache_name(cache, kind, truth, seed, k) for k in range(models)]
        if not all(p.exists() for p in paths):
            continue
        results = [load_result(p) for p in paths]
        state = scales_state(results[0])
        w = results[0]["window"].values.astype(int)
        ev = [regrouping_evidence(ds, state) for ds in results]
        check = [regrouping_evidence(ds, other_state(ds, state)) for ds in results]
        for k, ds in enumerate(results):
            rec = recommend(ds, state, evidence=[ev[k]], check_evidence=check[k])
            rows.append(row(kind, truth, seed, w, rec, k))
        if models > 1:
            rec = recommend(results, state, evidence=ev, check_evidence=check[0])
            rows.append(row(kind, truth, seed, w, rec, -1))
    return rows


def wilson(k, n, z=1.96):
    """95 % Wilson interval of a proportion k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def _measured(path, what, compute):
    """``compute()`` for one cached run, kept beside it as JSON (``<run>.<what>.json``): the
    raw answers, so that the curves are re-scored with a new threshold without recomputing."""
    store = path.with_suffix(f".{what}.json")
    if store.exists() and store.stat().st_mtime >= path.stat().st_mtime:
        return json.loads(store.read_text())
    text = json.dumps(compute())
    store.write_text(text)
    return json.loads(text)  # the same keys (text) whether computed now or read back


def _decision(window, share):
    from scalevae.analysis.recommend import CONCLUSIVE_SHARE

    return int(window), share >= CONCLUSIVE_SHARE


def subsets_curve(cache, seeds=SEEDS):
    """How many interleaved position subsets are enough: per run, the answer from S of them
    (evenly spaced) against the answer from all; returns {S: (agree, n)}."""
    from scalevae.analysis.recommend import recommend
    from scalevae.analysis.scales import regrouping_evidence
    from scalevae.results import load_result

    def compute(path):
        ds = load_result(path)
        full = regrouping_evidence(ds, max_subsets=10_000)
        k = len(full.sums)
        out = {}
        for s in range(1, k + 1):
            pick = np.unique(np.linspace(0, k - 1, s).round().astype(int))
            r = recommend(ds, evidence=[dataclasses.replace(full, sums=full.sums[pick])],
                          check_state=False)
            out[s] = (int(r["recommended_window"]), float(r["conclusive_share"]))
        return out

    agree = {}
    for kind, truth, seed in cases(seeds):
        path = cache_name(cache, kind, truth, seed)
        if not path.exists():
            continue
        answers = {int(s): v for s, v in _measured(path, "subsets",
                                                   lambda: compute(path)).items()}
        ref = _decision(*answers[max(answers)])
        for s, v in answers.items():
            a, n = agree.get(s, (0, 0))
            agree[s] = (a + (_decision(*v) == ref), n + 1)
    return agree


def resamples_curve(cache, seeds=SEEDS, sizes=(250, 500, 1000, 2000), other_seeds=(8, 9)):
    """How many resamples: per run and size B, the largest change of any window's probability
    when the bootstrap's seed changes; returns {B: (median, max, decisions changed, n)}."""
    from scalevae.analysis.recommend import RESAMPLE_SEED, recommend
    from scalevae.analysis.scales import regrouping_evidence
    from scalevae.results import load_result

    def compute(path):
        ds = load_result(path)
        ev = [regrouping_evidence(ds)]
        out = {}
        for b in sizes:
            recs = [recommend(ds, n_resamples=b, seed=s, evidence=ev, check_state=False)
                    for s in (RESAMPLE_SEED, *other_seeds)]
            out[b] = [(r["probability"].values.tolist(), int(r["recommended_window"]),
                       float(r["conclusive_share"])) for r in recs]
        return out

    dev, flips = {b: [] for b in sizes}, {b: 0 for b in sizes}
    for kind, truth, seed in cases(seeds):
        path = cache_name(cache, kind, truth, seed)
        if not path.exists():
            continue
        runs = _measured(path, "resamples", lambda: compute(path))
        for b in sizes:
            p = np.array([r[0] for r in runs[str(b)]])
            dev[b].append(float(np.abs(p[1:] - p[0]).max()))
            flips[b] += len({_decision(r[1], r[2]) for r in runs[str(b)]}) > 1
    return {b: (float(np.median(v)), float(np.max(v)), flips[b], len(v))
            for b, v in dev.items() if v}


def cost(path):
    """CPU seconds of the statistic's precomputation and of the bootstrap on one result."""
    from scalevae.analysis.recommend import recommend
    from scalevae.analysis.scales import regrouping_evidence
    from scalevae.results import load_result

    ds = load_result(path)
    t = time.process_time()
    ev = regrouping_evidence(ds)
    t_ev = time.process_time() - t
    t = time.process_time()
    recommend(ds, evidence=[ev], check_state=False)
    t_b = time.process_time() - t
    t = time.process_time()
    recommend(ds, evidence=[ev])
    return t_ev, t_b, time.process_time() - t - t_b, ev


def pto(cache, image, seeds=(0, 1), do_train=False):
    """The README's PTO file with the README's flags, seeds 0 and 1: answer and wording."""
    import scalevae
    from scalevae.analysis.recommend import describe_recommendation, recommend
    from scalevae.results import load_result, save_result

    rows = []
    for seed in seeds:
        path = Path(cache) / f"pto_s{seed}.nc"
        if not path.exists() and do_train and image is not None:
            ds = scalevae.run(image, seed=seed, quiet=True, report=False, **PTO)
            save_result(ds, path.with_suffix(".tmp.nc"))
            path.with_suffix(".tmp.nc").rename(path)
        if path.exists():
            rec = recommend(load_result(path))
            rows.append((seed, int(rec["recommended_window"]), bool(rec["conclusive"]),
                         describe_recommendation(rec)))
    return rows


def _summary(rows, what, key="conclusive"):
    con = [r for r in rows if r[key]]
    k = sum(r["error"] <= 1 for r in con)
    lo, hi = wilson(k, len(con))
    return [f"- {what}: conclusive answers within one window step **{k} of {len(con)}**"
            + (f" ({100 * k / len(con):.0f} %; 95 % Wilson interval {100 * lo:.0f}-"
               f"{100 * hi:.0f} %)" if con else "") + "; target >= 95 %. Conclusive answers "
            f"given: {len(con)} of {len(rows)}"
            + (f" ({100 * len(con) / len(rows):.0f} %)" if rows else "")
            + f". Any answer within one step: {sum(r['error'] <= 1 for r in rows)} of "
            f"{len(rows)}; truth inside the interval: {sum(r['inside'] for r in rows)} of "
            f"{len(rows)}."]


def _per_image(rows):
    L = ["| image | truth (px) | n | answers (px; * conclusive) | conclusive | conclusive "
         "and right | right (all) | truth in interval |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, truth in [("domains", p) for p in PERIODS] + [("twoscale", CRITICAL_WINDOW)]:
        cell = [r for r in rows if r["kind"] == kind and r["truth"] == truth]
        if not cell:
            L.append(f"| {kind} | {truth} | 0 | - | - | - | - | - |")
            continue
        con = [r for r in cell if r["conclusive"]]
        L.append(f"| {kind} | {truth} | {len(cell)} | "
                 + ", ".join(f"{r['answer']}{'*' if r['conclusive'] else ''}" for r in cell)
                 + f" | {len(con)} | {sum(r['error'] <= 1 for r in con)} | "
                 f"{sum(r['error'] <= 1 for r in cell)} | {sum(r['inside'] for r in cell)} |")
    return L


def page(rows, agree, resamples, costs, pto_rows, args, held=()):
    from scalevae.analysis.recommend import CONCLUSIVE_SHARE, INTERVAL_MASS, N_RESAMPLES
    from scalevae.analysis.scales import MAX_SUBSETS, SUBSET_POINTS

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip() or "unknown"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_expected = len(cases(args.seeds))
    alone = [r for r in rows if not r["pooled"]]
    pooled = [r for r in rows if r["pooled"]]
    n_runs = len({(r["kind"], r["truth"], r["seed"]) for r in rows})
    L = ["# Calibration of the recommended window", "",
         f"Written by `validation/calibration.py` on {now}, commit {commit}. Default runs "
         "of `scalevae.run` (`quiet=True, report=False`, every other argument left out), "
         f"{REPEATS} models per image (seeds s, s + 1, s + 2 on image seed s; one CPU thread "
         "each; the first models were trained inside `repeats=3` runs, which train the first "
         "model exactly as a default run does). a/c domains "
         f"(`ferroelectric_domains`, 256 x 256) of period {', '.join(map(str, PERIODS))} px "
         f"and the two-scale texture (`two_scale_texture`, 256 x 384, critical window "
         f"{CRITICAL_WINDOW} px); image seeds {', '.join(map(str, args.seeds))}. A hit is an "
         "answer within one window step of the truth (the period; the critical window). Rule: "
         f"`scalevae.analysis.recommend` with {N_RESAMPLES} resamples per model, conclusive "
         f"when >= {100 * CONCLUSIVE_SHARE:.0f} % of them find a single rise within one step "
         "of the answer and the result's other state (the final model's encoding), read by "
         "the same rule, is conclusive within one step of it too; interval holding "
         f"{100 * INTERVAL_MASS:.0f} %. 'One model' scores every model alone: what a default "
         f"run answers, each model a sample of it; 'pooled' scores the {REPEATS} models' "
         f"resamples pooled, the first model's final state checked: what `--repeats "
         f"{REPEATS}` answers.", "",
         f"Images scored: {n_runs} of {n_expected}"
         + ("" if n_runs == n_expected else " (the others did not finish training in the "
            "time this page was written in; n per cell below)") + ".", "",
         "## Summary", ""]
    L += _summary(alone, "One model (default)")
    L += _summary(pooled, f"{REPEATS} models pooled (`--repeats {REPEATS}`)")
    L += ["", "Without the check of the other state (the rule before it; the same answers, "
          "conclusive on the share alone):", ""]
    L += _summary(alone, "One model, unchecked", "unchecked")
    L += _summary(pooled, f"{REPEATS} models pooled, unchecked", "unchecked")
    if held:
        L += ["", f"## Held out: image seeds {', '.join(map(str, args.holdout))}", "",
              "New images, one default run each (seed = image seed), trained and scored after "
              "the rule was fixed (the table above was partly seen while choosing it):", ""]
        L += _summary(held, "One model (default), held out")
        L += _summary(held, "One model, held out, unchecked", "unchecked")
        L += [""] + _per_image(held)
    L += ["", "## One model", ""] + _per_image(alone)
    L += ["", f"## {REPEATS} models pooled", ""] + _per_image(pooled)
    L += ["", "## The threshold (chosen once, before this table; one model)", "",
          "Share of resamples that must find a single rise within one window step of the "
          "answer (and the other state's reading agreeing, as in the rule). Precision: "
          "conclusive answers within one step; rate: answers flagged conclusive.", "",
          "| threshold | conclusive | within one step | precision (95 % Wilson) | rate |",
          "| --- | --- | --- | --- | --- |"]
    for t in THRESHOLDS:
        c = [r for r in alone if r["share"] >= t and r["agrees"]]
        kk = sum(r["error"] <= 1 for r in c)
        a, b = wilson(kk, len(c))
        L.append(f"| {t:.2f}{' (used)' if abs(t - CONCLUSIVE_SHARE) < 1e-9 else ''} | "
                 f"{len(c)} | {kk} | "
                 + (f"{100 * kk / len(c):.0f} % ({100 * a:.0f}-{100 * b:.0f} %)" if c else "-")
                 + f" | {100 * len(c) / max(len(alone), 1):.0f} % |")
    L += ["", "Per image (conclusive share = resamples with a single rise within one step of "
          "the answer; model `pooled` = the models together):", "",
          "| image | truth | seed | model | answer | interval | share | steps off |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        L.append(f"| {r['kind']} | {r['truth']} | {r['seed']} | "
                 f"{'pooled' if r['pooled'] else r['seed'] + r['model']} | {r['answer']}"
                 f"{'*' if r['conclusive'] else ''} | {r['interval'][0]}-{r['interval'][1]} | "
                 + ("-" if r["pooled"] else f"{r['share']:.2f}") + f" | {r['error']:.1f} |")
    L += ["", "## How many position subsets", "",
          f"The statistic averages interleaved subsets of {SUBSET_POINTS} keypoints in "
          f"canonical (frame, y, x) order, at most {MAX_SUBSETS}. Runs whose answer (window "
          "and conclusive flag) from S evenly spaced subsets equals the answer from all of "
          f"them (runs of seeds {', '.join(map(str, args.curve_seeds))}):", "",
          "| S | same answer |", "| --- | --- |"]
    for s, (a, n) in sorted(agree.items()):
        L.append(f"| {s} | {a} of {n} |")
    L += ["", "## How many resamples", "",
          "Largest change of any window's probability when the bootstrap seed changes (two "
          "other seeds), and runs whose decision (window, conclusive) changed (runs of seeds "
          f"{', '.join(map(str, args.curve_seeds))}):", "",
          "| resamples | median | max | decisions changed |", "| --- | --- | --- | --- |"]
    for b, (med, mx, fl, n) in sorted(resamples.items()):
        L.append(f"| {b} | {med:.3f} | {mx:.3f} | {fl} of {n} |")
    if costs:
        t_ev, t_b, t_check, ev = costs
        L += ["", "## Cost", "",
              f"On the PTO result ({ev.n_points} keypoints, {len(ev.windows)} windows, "
              f"{len(ev.sums)} subsets, {ev.n_tiles} tiles): the ranks and their tile sums "
              f"{t_ev:.1f} s, the bootstrap ({N_RESAMPLES} resamples) {t_b:.1f} s, the other "
              f"state's check (both again) {t_check:.1f} s of CPU time, on a shared 2-core "
              "machine under load (`bench_pto.py` times the whole run on an idle one)."]
    L += ["", "## Real data: PTO_Funakubo0004.h5, seeds 0 and 1", "",
          "`--channel AmplitudeRetrace --keypoints grid:4 --windows 8:64:4`:", ""]
    L += [f"- seed {s}: {text}" for s, _, _, text in pto_rows] or ["- not run"]
    if len(pto_rows) == 2:
        (_, a, ca, _), (_, b, cb, _) = pto_rows
        same = abs(a - b) <= 4
        L.append(f"- answers {a} and {b} px: {'within' if same else 'not within'} one window "
                 f"step; conclusive: {ca} and {cb}.")
    (HERE / "CALIBRATION.md").write_text("\n".join(L) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/calib-models"),
                    help="folder of the cached runs (one .nc per run)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--train", action="store_true", help="train the runs not yet cached")
    ap.add_argument("--pto", type=Path, default=None,
                    help="the README's PTO file (PTO_Funakubo0004.h5), to train its two runs")
    ap.add_argument("--holdout", type=int, nargs="*", default=[6, 7],
                    help="image seeds trained (one model each) after the rule was fixed")
    ap.add_argument("--curve-seeds", type=int, nargs="+", default=[0, 1],
                    help="seeds whose runs measure the subsets and resamples curves")
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.train:
        for kind, truth, seed in cases(args.seeds):
            for model in range(REPEATS):
                if not cache_name(args.cache, kind, truth, seed, model).exists():
                    train(args.cache, kind, truth, seed, model)
        for kind, truth, seed in cases(args.holdout):
            if not cache_name(args.cache, kind, truth, seed).exists():
                train(args.cache, kind, truth, seed, 0)
    rows = score(args.cache, args.seeds)
    pto_rows = pto(args.cache, args.pto, do_train=args.train)
    pto_path = args.cache / "pto_s0.nc"
    page(rows, subsets_curve(args.cache, args.curve_seeds),
         resamples_curve(args.cache, args.curve_seeds),
         cost(pto_path) if pto_path.exists() else None, pto_rows, args,
         score(args.cache, args.holdout, models=1))


if __name__ == "__main__":
    main()
