"""Validate the SI-VAE against synthetic data with known answers (issue 3).

Runs the full method (``scalevae.run``) on every generator of ``scalevae.datasets`` with several
seeds, scores each run against the generator's ground truth, and writes ``validation/RESULTS.md``
(a table of the scores per seed, their mean and spread, and the threshold) and figures under
``validation/figures/``.

Run from the repository root::

    OMP_NUM_THREADS=2 .venv/bin/python validation/run_validation.py [--seeds 0 1 2] [--only NAME ...]

The scoring functions here are imported by ``tests/test_validation.py``, so the tests and this
script measure exactly the same thing. Each ``validate_*`` function runs the method on one
example and returns ``(scores, details)``: ``scores`` maps check names to floats, ``details``
holds what the figures need.

How the latent space is read (the reading a microscopist would use):

- "same z" means the same *within the model's own resolution*: a difference of latent means is
  measured in units of the posterior standard deviation ``z_std``. The latent axes have an
  arbitrary scale, and an encoder is a deterministic function of the pixels, so a classifier on
  the noise-free ``z_mean`` separates any two groups whose means differ at all, even by a
  hundredth of the posterior width; a microscopist reading the latent distribution cannot see
  such a difference. Classifiers therefore see posterior *samples* ``z_mean + z_std * eps``.
- Separations that should be large (defects, regions, domains) are read with the same samples,
  so chance and success are judged on the same footing.
- Latent spread is measured against the posterior width too: the information the latents carry
  about the keypoints, ``sum_k 0.5 * ln(1 + Var(z_mean_k) / mean(z_std_k ** 2))`` (the capacity
  of a Gaussian channel, nats), is unchanged by any rescaling of a latent axis.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"

# --------------------------------------------------------------------------- settings

#: Sizes chosen for a shared 2-core CPU; every example is its generator with these options.
SETTINGS = {
    # Pristine lattice: every atom is bulk, so the two sublattices differ only by the rotation.
    "sublattice": dict(data=dict(n_frames=6, shape=(128, 128), vacancy_rate=0.0,
                                 stone_wales_rate=0.0, si_rate=0.0),
                       windows=[12, 18, 24], read_window=24),
    # 192 x 192: ~200 atoms per frame keep their whole 48 px window. At 128 x 128 only ~60 did,
    # and the damage (a radius of 0.3 of the frame, holes of up to 40 vacancies) covered the
    # whole analysed area: once most atoms sat near a defect, their spread could not grow with
    # more defects (seeds 1 and 4 of 6 gave rho 0.61 and 0.24; at 192 px all six >= 0.988).
    "movie": dict(data=dict(n_frames=10, shape=(192, 192), vacancy_rate=3.0),
                  windows=[12, 24, 36, 48]),
    "library": dict(data=dict(n_frames=8, shape=(128, 128)), windows=[8, 16, 32, 48],
                    keypoints="grid:8"),
    # Non-default patch size (16 px, not the smallest window), fixed a priori from the data: at
    # the largest window (48 px) every elementary feature of interest must keep >= 2 px after
    # resampling. Two-scale: one void (diameter W / 2 = 12 px) keeps 4 px at r = 16 (2 px at
    # r = 8 would be the bare minimum; kept at 16 from the earlier vacancy-lattice generator,
    # whose 6 px sites needed it). Domains: one a or c stripe (half the 16 px period) ->
    # r >= 2 * 48 / 8 = 12, rounded up to the same 16.
    "twoscale": dict(data=dict(shape=(256, 384), critical_window=24),
                     windows=[8, 12, 16, 20, 24, 28, 32, 40, 48], keypoints="grid:6",
                     run=dict(patch_size=16)),
    # Known length scale with the default settings (patch size = smallest window, 4 px steps).
    "period": dict(data=dict(shape=(256, 256), period=24), windows="8:48:4", keypoints="grid:4"),
    "domains": dict(data=dict(shape=(160, 160), period=16), windows=[8, 16, 24, 32, 48],
                    keypoints="grid:4", run=dict(patch_size=16)),
}

#: Check name -> (direction, threshold, what it means). Thresholds are justified in RESULTS.md
#: from the spread over seeds and the value a failing method gives.
THRESHOLDS = {
    "sublattice_z_separation": ("<", 1.0, "max over latents of |mean_A - mean_B| / mean z_std"),
    "sublattice_z_accuracy": ("<", 0.65, "balanced accuracy, sublattice from posterior z samples"),
    "sublattice_angle_offset": ("<", 20.0, "|(circ. mean of 3*angle, A - B) - 180| in degrees"),
    "sublattice_angle_concentration": (">", 0.8, "mean resultant length of 3*angle per sublattice"),
    "defect_auc": (">", 0.75, "ROC AUC, distance from the bulk mode vs near-defect truth"),
    "movie_dispersion_rho": (">", 0.7, "Spearman, per-frame latent dispersion vs defect count"),
    "movie_sublattice_z_separation": ("<", 1.0, "as sublattice_z_separation, bulk atoms of the "
                                      "defect movie at 24 px (z in use)"),
    "library_rho": (">", 0.8, "|Spearman|, PCA 1 of per-frame mean latents vs grain size"),
    "twoscale_acc_below": ("<", 0.65, "balanced accuracy of the region from z, windows < W"),
    "twoscale_gain_above": (">", 0.5, "(accuracy - 0.5) / (oracle - 0.5), windows >= 1.5 W"),
    "twoscale_window_error": ("<=", 1.0, "|recommended - W| in window steps"),
    "twoscale_w_in_range": (">", 0.5, "1 if W lies in the recommended range, else 0"),
    "period_window_error": ("<=", 1.0, "|recommended - domain period| in window steps, defaults"),
    "domains_accuracy_gain": (">", 0.25, "balanced accuracy (a/c/wall) from z minus chance 1/3"),
    "domains_broadening_rho": (">", 0.8, "Spearman, latent information (nats) vs window"),
}

#: Findings and threshold justifications (appended to RESULTS.md; keep in step with the table).
FINDINGS = """
## Tenth round (2026-12-03, later): a calibrated decoder and the angle's order rule; the table above is this round's

**Two model changes**, measured one after the other on seeds 0-5 (same machine as the ninth
round) and kept together:

1. **Calibrated decoder** (`model.SIVAE.loss`): the Gaussian likelihood's noise variance is
   each batch's mean squared residual, its maximum-likelihood value (Rybkin et al. 2021),
   instead of a learned scalar. Found in `make demo`'s 8 px window: its loss fell by about 0.9
   nats per epoch for all 45 epochs (30 plus the warm-up) without levelling off, the rate at
   which Adam moves one scalar (at most the learning rate, 1e-3, per step; 18 steps per epoch;
   52 modelled pixels): the noise scale was still crawling from its start (0.5) towards the
   residual when the cap stopped the window, so the first windows trained to the cap with a
   likelihood too weak for their latents. Now no window of `make demo` or of the PTO run
   reaches the cap, and small runs converge in about half the time (sublattice 2-3 s per run
   instead of 6 s). With this change alone: two-scale window error 4/6 (0, 0, 1, 3, 3, 0),
   period 6/6, period sweep 18/24 (range 21/24), movie dispersion 6/6 but 0.84-1.0, defect
   AUC 0.89-0.96, broadening 1/6, library 5/6; and the fast single-window graphene check
   (below) failed on 6 of seeds 0-29 (4 with the learned noise scale).
2. **The angle's harmonic order** (`model._symmetric_angle`, `agree` 0.8 -> 0.5): a higher
   order now wins only when it is twice as coherent as the lower ones. The failures above were
   all one mode: the angle taken at order 6 (graphene's six-fold second shell), defined modulo
   60 degrees, so both sublattices got the same angle. Fast single-window check (3 frames of
   96 x 96 px, one 24 px window), seeds 0-29: 6 failures with 0.8, 1 with 0.65, none with 0.5.
   (The third round tried 0.5 with the learned noise scale and saw it move failures between
   seeds of the 128 px movie; that movie is no longer the check.)

Both together, the table above (seeds 0-5): sublattice 6/6 (4 checks); defect AUC 6/6
(0.99-1.0; ninth round 0.92-1.0); movie dispersion 6/6 (0.93-1.0); bulk sublattice z 6/6, with
z more in use at 24 px (0.46-2.0 nats; ninth round 0.06-1.3); library 5/6 (seed 4, 0.07, as
before); two-scale below/above W and W in range 6/6, **window error 3/6** (0, 3, 1, 3, 3, 1;
ninth round 2/6); **period 6/6** (0, 0, 0, 1, 0, 1; ninth round 5/6); domain classes 6/6;
broadening 1/6 (0.9, -0.7, -0.9, 0.1, -0.4, -0.6). **Period sweep** (`PERIOD_SWEEP.md`, stored
runs): **20/24 within one window step** (12-32 px: 20/20; 40 px: 0/4, answers 24-32 px),
**the period inside the printed range 24/24** (ninth round 15/24 and 23/24).
PTO_Funakubo0004 (README command): 24 px (281 nm), range 12-32 px (20 px before, one
window step; no window at the epoch cap); `make demo`: 24 px, the synthetic domains' period. The two-scale
window error moves between 2/6 and 4/6 with every change of the training, whichever seeds;
it is the rule's open question (ninth round), not a property of these changes.

## Ninth round (2026-12-03): six seeds on a new machine; a movie large enough for its damage

(Numbers of this round are from the learned noise scale and agree = 0.8, before the tenth round's changes.)

**Everything re-measured on seeds 0-5** (seeds 3-5 without figures), on a different machine
from the eighth round's (another CPU: floating-point reductions differ, so the same seed gives
different latents). The marginal checks change their verdict per seed between the machines
(two-scale window error, seeds 0-2: 3, 0, 1 there, 1, 2, 1 here): a seed's pass or fail in
those rows is a draw, and the six-seed rate is the number to read.

**Validation change: the movie is 192 x 192 px** (was 128 x 128; same damage rates, windows
and reading). At 128 px only about 60 atoms per frame keep their whole 48 px window, the
damage region (radius 0.3 of the frame) covers that whole area, and a growing hole removes
half of them (62 -> 30 keypoints on seed 1): once most analysed atoms sit next to a defect,
their spread cannot grow with more defects. At 128 px on this machine the dispersion check
gave rho 1, 0.61, 1, 1.0, 0.24, 1 (seeds 0-5: 4/6); at 192 px (about 200 atoms per frame)
1, 0.99, 0.99, 0.99, 1, 0.99 (6/6). Defect AUC 0.92-1.0 and the bulk sublattice separation
(0.02-0.16 std) pass on every seed at both sizes. The model did not change.

Other rows, seeds 0-5: sublattice (4 checks) 6/6; defect AUC 6/6; library 5/6 (seed 4:
0.07, the grain size again in the per-frame dispersion, as in the fourth round); two-scale
below W 6/6, above W 6/6 (gain 0.61-1.14), W inside the range 6/6, **window error 2/6** (1, 2, 1,
3, 3, 3: the rule names the fine scale, 12-16 px, on seeds 1 and 3-5); period 5/6 (errors 0,
0, 1, 2, 1, 1); domain classes 6/6; **domain broadening 0/6** (rho 0.7, 0.1, -0.9, 0.6, 0.1,
0.3).

Probes of this round (no change adopted):

- **Training longer** (`epochs=90`, cap per window, seeds 0-2): movie dispersion at 128 px
  still 0.62 on seed 1; domain information still falls at 48 px on every seed; two-scale
  window error 1, 0, 3; period 0, 0, 1. The whole period sweep with `epochs=90`: 17/24
  within one step (against 15/24 at the default 30; period inside the range 23/24 both),
  a difference within the spread of a 24-run count (about 2). The cap is not what limits
  these rows, and the default stays.
- **Period sweep re-measured** (`PERIOD_SWEEP.md`, with the eighth round's training): 15/24
  within one window step (was 17/24), period inside the range 23/24. The script now keeps
  each run's result (`--store`) and re-applies the current rule to stored runs without
  training (`--rescore`).
- **Rule variants, scored on those 24 stored runs and on three two-scale runs** (within one
  step: period sweep / two-scale): half-rise (the rule) 15/24 and 2/3; first reaching 0.6 of
  the maximum 16/24 and 3/3; three quarters 13/24 and 0/3; the knee of the rise 6-8/24 and
  0/3; the distance to the *largest* window halved 8/24; the end of the fastest regrouping
  (level-off) 5-9/24 and 3/3; the window of most latent information (final state) 14/24 and
  0/3; the geometric mean of the half-rise and that peak 19/24 and 1/3. On the domains the
  period sits in the middle of one smooth rise; on the two-scale texture W sits where a fast
  fine-scale rise (voids and texture, 8-16 px) has levelled off and before the arrangement's
  rise (32-48 px). No variant tried serves both, and a rule picked on 27 runs of two
  generators would be fitted to them; the rule stays, with its range, which holds W on 6/6
  and the period on 23/24.
- **Broadening, other measures of spread** (seeds 0-2): the interquartile range and the
  median absolute deviation of z (in posterior widths), the median pairwise latent distance,
  and the differential entropy of the final-state KDE on its shared grid: none rises with the
  window; every one is lower at 48 px than at 24-32 px. The training record says why: from 8
  to 48 px the final loss per patch grows 33 -> 192 nats (seed 0) while the KL of z1 falls
  3.4 -> 2.6 nats: two latents cannot hold the combinatorics of larger windows, the learned
  noise scale absorbs what they miss, and the latents spread less. The paper names the risk
  itself ("large windows reflect irrelevant complexity and can lead to representation
  collapse"). Still the decision of issue 4 (blocked).
## Eighth round (2026-11-25, third session, later): the first window's warm-up on top of the cap

**Training change** (`train.train_window`, `train.epoch_cap`): the first window's KL warm-up
epochs now come on top of the epoch cap instead of out of it, so every window has the same
`epochs` budget at full KL weight for the convergence rule; and a run names the windows that
trained to the cap without converging (a warning, and `windows_at_epoch_cap` in the result).
Found by the seventh round's probe below: on the sublattice check's seed 0, windows 12 and 24
px ran to the 30-epoch cap, and with `epochs=90` the angle concentration went from 0.685 to
0.9998. Every row re-measured (seeds 0-2): **sublattice angle concentration 3/3** (seed 0 0.685
-> 1.0, offset 18.4 -> 0.05 deg; seeds 1-2 0.998, 1.0); sublattice z, defect AUC, movie
sublattice z, library, period (errors 0, 0, 1), domain classes (gain 0.38, 0.45, 0.37) and the
two-scale rows (accuracy below W 0.51, gain 0.92, 0.97, 1.09, window error 3, 0, 1, W in range
3/3) pass as before; movie dispersion still 2/3 (seed 1 0.59, explained below) and domain
broadening 1/3 (Spearman 0.9, 0.1, -0.9). The period sweep (`PERIOD_SWEEP.md`) was measured
before this change and not re-run (an hour on 2 cores); the period row above (3/3) was.

## Seventh round (2026-11-25, third session): a two-scale generator with something to find

**Generator change** (`scalevae.datasets.two_scale_texture`). The old texture (a lattice of
dashes with one missing dash per superlattice cell, square superlattice left, rectangular
right, same density) was exact about W but left nothing a two-latent VAE could pay to encode:
a perfect vacancy counter reached only 0.67-0.70 and the latents collapsed at large windows
(rounds five and earlier). The new one keeps the exact construction and makes the large-scale
arrangement carry the window's variance: the same fine texture (isotropic band-limited random
texture, wavelength W/6) perforated by round voids (radius W/4); left, voids spread evenly on a
hexagonal lattice; right, the same number of voids per area segregated into bands of width 4 W
at twice the density, with void-free bands between. Any two voids of a half are at least W
apart edge to edge, so a disk of diameter <= W (what the rotation-invariant model sees) touches
at most one void, at a uniformly distributed offset, with a probability set by the density
alone: below W no descriptor can tell the halves apart. Above W the local void fraction can.
Designs tried first on seed 0 (not adopted): voids in rows (x spacing 1.5 W) against a square
lattice, dimers, trimers (scored by a void-fraction proxy: 0.57-0.67 at 48 px; the bands give
0.86); with the bands, a stronger fine texture (contrast 25 % of the film) made the rule
recommend 12 px on seed 0 and a periodic fine texture lowered the separation (gain about 0.5);
contrast 10 % is the one kept. The image is 256 x 384 px (W = 24) so that each half holds
bands and gaps after the 24 px border margin.

Rows re-measured: `twoscale_*` only (every other row is unchanged from the sixth round).
Accuracy below W 0.511-0.518 (3/3); gain above 1.5 W 0.95, 1.0, 1.09 (3/3: the VAE matches the
void-count oracle at 40-48 px and passes it at 48 px, where it sees the void fraction, partial
voids included, which a count does not); window error 3, 0, 1 steps (2/3). The rule's range
holds W on every seed (new row `twoscale_w_in_range`). Seed 0 recommends 12 px: the
keypoints' regrouping from the smallest window already reaches 0.36 of its 0.70 maximum at 12
px, the scale of the voids themselves (diameter 12 px) and of the fine texture, before the
rise above W. The data hold two real scales (void and texture size, arrangement); which one
the rule should name is the same open question as the domain generator's two scales (period
and bundles); the rule was not retuned on this generator (the period sweep that chose it takes
an hour to re-measure). `scalevae demo twoscale` (defaults: patch size 8, 4 px grid, seed 0)
recommends 20 px, range 12-40 px, in 2 min 12 s on 2 cores (peak RSS 683 MB).

Probe of this round (no code change): **why the sublattice angle is loose on seed 0**
(concentration 0.685). Recording which harmonic order `model._symmetric_angle` picks per atom
at 24 px: every one of the 58 B atoms (of 310) whose 3 * angle sits away from its sublattice's
mean took order 6 (angle defined modulo 60 degrees, which cannot tell A from B), every other B
atom order 3; 62 A atoms took order 6 too, but the order-6 branch happens to fall on A's
orientation. Mean coherences (orders 1, 2, 3, 4, 6): outliers 0.02, 0.01, 0.55, 0.02, 0.73;
the rest 0.02, 0.01, 0.59, 0.02, 0.64. Jitter alone lowers the coherence at order 6 more than
at order 3, so an order-6 coherence above order 3 means the seed-0 encoder's directions over
the 12 de-rotated copies really are split between the A and B orientations for those atoms
(it sees the six-fold second shell more than the three-fold first). Lowering the agreement
threshold (0.8) would hide that, not fix it; the fix belongs in training (done in the eighth
round, above). The same seed with `epochs=90` (the cap per window; default 30) gives concentration 0.9998 and
offset 0.008 deg: windows 12 and 24 px of the default run train all 30 epochs without the
convergence rule stopping them (window 18 stops after 7). The first window ran to the cap on
the PTO and demo runs too (its KL warm-up took up to half of its budget).

Probe of this round: **movie dispersion on seed 1** (Spearman 0.59). The per-frame dispersion
rises with the defect count up to frame 4 (23 defects: 0.13, 1.10, 2.13, 2.24, 3.08) and then
levels off and falls slightly (3.04, 3.00, 2.84, 2.68, 2.73) while the count goes on to 40: the
hole swallows atoms (62 keypoints in frame 0, 30 in frame 9) and the number of atoms with a
defect within 12 px peaks at frame 4 (30) and falls to 21. The dispersion follows the atoms
near defects, which stop growing with the defect count once a hole forms; the check's reading
(count of defects) is left as it is.

## Sixth round (2026-11-25, later still): the half-rise rule for the recommended window

**Rule change** (`scalevae.analysis.length_scales`): the recommended window is now the first
window at which the keypoints' regrouping relative to the *smallest* window (less the noise
floor) reaches half its maximum, instead of the most prominent peak of the window-to-window
regrouping per log-window; the range is the rise from a quarter to three quarters, widened to
the windows regrouping at least half as fast as the fastest. Found on the stored results of
the period sweep (seeds 0-1, old training, first without the noise floor: 9/12 within one window step, against 6/12 for the
peak rule), then checked on data it was not chosen on: seeds 2-3 (9/12), and all four seeds
with the new training (17/24, against 10/24; period inside the range 23/24, against 17/24).
Rows re-measured: `twoscale_*` and `period_window_error` (the only ones that read the rule):
period error 0, 0, 1 steps (fifth round 1, 1, 1), two-scale window error 3, 2, 3 (3, 3, 4; the
regions are still not separated above W, so there is no regrouping at W to find); every other
row is unchanged from the fifth round. `make demo`: 24 px (the period);
PTO_Funakubo0004: 20 px (range 12-32), the first minimum of its autocorrelation.

## Fifth round (2026-11-25, later): the first window finishes its KL warm-up; every row re-measured

**Training change** (`train.train_window`): the KL weight ramps from 0 to 1 over the first
300 steps of the first window, and the convergence rule judged every epoch. While the weight
ramps up the loss rises, so the rule stopped the first window mid-warm-up (measured: beta
about 0.5 on PTO, 0.3 on the two-scale texture): the first window's latents came from a weaker KL than every other
window's, by an amount that depended on the number of keypoints. Now the warm-up is at most
half of the first window's step budget and only epochs trained entirely at beta = 1 count
for convergence. Every row above was re-measured with it (seeds 0-2). Against the fourth
round: library seed 2 0.07 -> 1.0 (3/3); movie dispersion seed 2 0.54 -> 0.92 but seed 1
1.0 -> 0.59 (still 2/3); sublattice angle concentration seed 0 1.0 -> 0.69 (offset 18 deg,
still under 20; 2/3; seeds 3-5, run as a check, give 0.999 with and without the change);
domain broadening 0/3 -> 1/3 (Spearman 0.9, -0.3, -0.6); two-scale and period unchanged in
substance. The count of failing seeds is the same; the change is kept because it makes the
first window train on the objective the others train on, whatever the data set's size.

Probes of this round (measured before the training change; not rows of the table):

- **Two-scale: why the regions are not separated above W.** The latents stop carrying
  information at the large windows: the latent information (nats, instant state) falls from
  2.7 at 8 px to 0.01 at 48 px on seed 0, and a model trained from scratch on 48 px windows
  alone (with the KL warm-up) collapses the same way (0.0 nats), so it is not the progressive
  training ratcheting into collapse. Where the latents still carry something (32 px, instant
  state) z2 does follow the number of vacancies in the window (Spearman -0.9), but at 48 px
  two latents do not pay for encoding where a few missing dashes sit among aliased dashes.
  Tried on seed 0, not adopted: no rotation-consistency term (`consistency=0`: gain 0.04,
  window error 2) and bright dopant-like markers on the vacancy sites (peak 0.7 or 1.5 of a
  dash: gain 0.06 and -0.04); 100 epochs per window with no convergence stop lifts the gain
  to 0.27 (accuracy 0.56 at 48 px against the oracle's 0.70) at 5.5 times the training time,
  and the window error stays at 2 steps. Also measured: even a perfect vacancy counter (the oracle)
  reaches only 0.67-0.70 balanced accuracy at 40-48 px, because both regions have the same
  vacancy density and differ only in how the counts scatter. The generator is exact about W
  but leaves little for a two-latent VAE to find; a generator whose large-scale arrangement
  dominates the patch variance above W would test the rule better (left for a later round).
- **Broadening: not the anti-aliasing filter.** Point-sampled patches (the prefilter switched
  off, as a plain bilinear resize does) narrow the PTO latent distribution further, not less
  (final-state information 2.36 -> 1.36 nats from 8 to 64 px, against 3.32 -> 2.09 with the
  prefilter); numbers in `docs/pto_length_scale.md`.
- **Period sweep with the default settings** (`validation/period_sweep.py`,
  `validation/PERIOD_SWEEP.md`; periods 12-40 px, seeds 0-3, windows 8:64:4, patch size 8;
  measured after the training change): the recommended window is within one step of the
  period in 10/24 runs (20 and 24 px: 7/8; 12 px: 24-28 px on every seed; 16 px: 1/4; 32 px:
  2/4; 40 px: 0/4), and the period lies inside the new half-score range
  (`recommended_window_range`) in 17/24 (before the training change, seeds 0-3: 11/24 and
  15/24). The asserted `period` check (24 px, windows 8:48:4) is the favourable case; the
  sweep is the honest spread.

## Fourth round (2026-11-25): length-scale rule with a noise floor, a known-period check

Only the rows that read `length_scales` were re-measured: `twoscale_*` and the new
`period_window_error`. The model and training did not change since the third round, so every
other row (deterministic per seed) stands as measured at 6c4dc51.

- **Rule change** (`scalevae.analysis.length_scales`): only the keypoints' regrouping above the
  regrouping that the posterior width alone produces counts (`noise_floor`, `excess_change`);
  when none is above it the result says so (`significant` False). Cause: on images that look
  the same at every window (perfect stripes or a dot lattice, probed with the defaults,
  windows 8:64:4), the old score was encoder noise divided by the small log-steps of large
  windows and recommended 52-64 px for periods of 24 px. Probe on synthetic a/c domains
  (256 x 256, seed 1, defaults, windows 8:64:4), old -> new recommendation: period 20 px:
  40 -> 16; 24: 24 -> 24; 32: 32 -> 32; 12: 24 -> 24 (score flat from 12 to 28 px). Perfect
  stripes of period 12 and 24 px: now flagged not significant. PTO_Funakubo0004: 28 -> 28 px;
  `make demo`: 24 -> 24 px.
- **New check `period_window_error`** (domains of period 24 px, 256 x 256, default settings,
  windows 8:48:4): 20 px on seeds 0-2, one step from the period: 3/3 within the one-step
  threshold (the same rule as the two-scale window check).
- **Two-scale, unchanged in substance**: window error 4, 3, 3 steps (third round 4, 2, 4).
  The regions are still not separated above W (gain -0.08 to 0.04 of the oracle's), so there is
  no regrouping at W for any rule to find. Probe: not even the mean of a patch's disk (one
  vacancy = one dash of about 64 in a 48 px window, against the dashes the disk edge cuts)
  separates the regions (balanced accuracy 0.50-0.53 at 16-48 px, logistic regression).
  The two proposals of the second round, tried on seed 0: `latent_dim=4` gives gain 0.07
  (accuracy 0.51 at every window), a 10x tighter convergence rule with 60 epochs (`tol=2e-4`,
  `patience=4`) gives gain 0.17 (accuracy at most 0.54, at 28 and 40 px), window error 3-4 in
  both. Neither is adopted: the vacancy signal, not the model's capacity or training time,
  is what is missing.
- **Broadening (domains, PTO), unchanged**: measured on PTO why the latent spread narrows: the
  variance of the resampled patches across keypoints falls monotonically with the window (77.7
  -> 31.6 from 8 to 64 px at r = 8), and the final-state latent spread with it (13.9 -> 1.8).
  Rehearsing earlier windows while training later ones (tried, not adopted: DESIGN.md's
  progressive training has no rehearsal) and a frozen noise scale do not reverse it; numbers in
  `docs/pto_length_scale.md`.

- **Library seed 2, looked at again** (`library_rho` 0.07, unchanged): the grain size is in
  that run, but in the per-frame *dispersion* of the latents, not in their mean. Spearman with
  the true grain size, per window 8/16/32/48 px, final state: per-frame std of z1 and of z2
  1.0 at every window; per-frame mean of z1 0.14/0.36/0.05/0.40, of z2 -0.60/-0.67/-0.55/-0.48.
  Seed 0 (passes): std 1.0 (z1) and 0.81-1.0 (z2), mean of z2 -0.98 to -1.0. Physically the
  dispersion is the natural carrier (large grains: tops, flanks and grooves differ, so the
  keypoints spread; small grains: every patch holds the same texture). The asserted reading
  stays the one fixed before the runs (PCA-1 of per-frame means, the issue's "per-frame mean
  Z1"); the report's stack statistics show the dispersion beside the mean.

## Which code each row was measured with

Third round: **every row of the table was re-measured at commit 6c4dc51** ("Angle from per-copy
votes combined at the lowest coherent harmonic order"), seeds 0-2; the second-round numbers
(commit c09071f, 12-fold invariant encoder, angle from the plain vector sum) are quoted in the
findings below where they differ. Runs are deterministic: a rerun of library seed 2 at 6c4dc51
gives the same 0.0714, and library and movie seed 2 at 0694630 (the commit just before the
angle change, which already holds every other change since c09071f) give the second round's
0.952 and 0.915 exactly, so the changes between the rounds come from the angle commit. The
movie, library and two-scale runs started after b0f0eb2 (`length_scales` scores the keypoints'
regrouping only), which changes the recommended window and nothing else the table reads; on the
same two-scale runs the rule before b0f0eb2 recommends the same windows (48, 32, 48 px), so the
window error's change comes from the angle commit too.

## Settings that are not the defaults

Run times above are wall times of 2-3 validation processes sharing 2 cores (load average
1.5-4), one thread each: they are not benchmarks.

- **`patch_size=16`** (not the smallest window) for `twoscale` and `domains` (the full checks;
  `SETTINGS` in the script). Fixed *a priori* from the data, the same for every seed: at the
  largest window (48 px) every elementary feature of interest must keep >= 2 px after
  resampling. Two-scale: one fine-lattice cell of the earlier generator (site spacing 6 px),
  r >= 2 * 48 / 6 = 16, kept for the seventh round's voids (diameter 12 px: 4 px at r = 16).
  Domains: one a or c stripe (half of the 16 px period), r >= 12, rounded
  up to the same 16. All other checks, and all fast tests, use the default patch size.
- Library reading (fixed in advance, the same for every seed): PCA-1 of the per-frame mean
  latent vectors (frames x (latent * window), centred, not rescaled: invariant to a rotation or
  sign flip of the latent space, which all windows share in the final state), |Spearman| with
  the true grain size. The first round's reading (per-frame mean of the keypoints'
  trajectory-PCA-1 score) follows the largest variation *within* frames (grain tops against
  grooves), not between them.
- Fast default tests (`tests/test_validation.py`), each passing on seeds 0-4 (seed 0 in CI):
  sublattice z and angle (1 window of 24 px, 3 frames of 96 x 96; at 6c4dc51: separation
  0.0002-0.0008 std, accuracy 0.48-0.52, angle offset 0.02-0.40 deg, concentration
  0.996-0.9998 on seeds 0-4; the angle checks joined the fast set at 6c4dc51, before it they
  gave 0.04-0.13), defect AUC (windows 12, 40 px on 5 frames of 112 x 112: 0.987-1.0; 40 px so that
  the near radius w/4 exceeds the 8.9 px C-C distance and every seed 0-9 has >= 27 near-defect
  atoms: at 32 px on 96 x 96, seed 3 had none and the AUC was undefined), domain classification
  (windows 8, 16 px on 96 x 96: gain 0.33-0.44; at 6c4dc51 seeds 0-2 give AUC 0.99-1.0 and
  gain 0.36-0.47). The three fast tests take 14 s on seed 0 (32 s with a validation run beside them; 2 cores). Seventh and eighth rounds: a fourth fast test, two-scale separation (windows 16, 32, 48 px on a 6 px grid of the 256 x 384 texture): with the eighth round's training, accuracy at 16 px 0.51-0.53 and gain at 48 px 0.91-1.28 on seeds 0-3 (58-88 s each, one thread, two runs sharing the 2 cores). An 8 px grid gave 0.72-1.23 before the training change but only 0.56 and 0.53 on seeds 1-2 after it, too close to the threshold; windows 16 and 48 alone gave 0.53 on seed 1. Ninth round: the per-frame dispersion joined the fast set, on the full 192 px movie with
  windows 12 and 48 px only (rho 0.88-1.0 on seeds 0-5, 9-15 s each); before, on 5 frames of
  112 px it gave rho 0.1 on seed 1 (windows 12, 40 px), 0.8-1.0 otherwise. Tenth round (the
  model of the table), seeds 0-5 of every fast test: sublattice offset 0.01-0.39 deg,
  concentration 0.996-0.9999, separation <= 0.001 std, accuracy 0.48-0.52 (seeds 0-29 all
  pass); defect AUC 0.97-1.0; movie dispersion rho 0.96-1.0; domain gain 0.33-0.46; two-scale
  accuracy at 16 px 0.50-0.54, gain 0.72-1.15.

## Thresholds: why these values (unchanged from the first round)

- Sublattice: a working run gives separations 0.11-0.13 posterior std (first round; now ~1e-4),
  a failing one 4.9 std. Thresholds (1 std, 0.65, 20 deg) sit between the two populations. The
  Bayes accuracy of two equal-variance posteriors whose means are 1 std apart is
  Phi(0.5) = 0.69, hence 0.65 ~ "within one posterior width". Concentration 0.8: the first
  round's runs gave 0.999 in every seed. `movie_sublattice_z_separation` uses the same 1 std.
- Defect AUC 0.75: far below every seed, far above 0.5.
- Movie dispersion: 0.7 leaves room for frames whose defect count hardly changes (ties) while
  rejecting no trend (p ~ 0.02 at 10 frames).
- Library: 0.8 (|rho| at 8 frames, p ~ 0.01).
- Two-scale below W: chance is 0.5, 0.65 is far above the spread. Above W the yardstick is an
  *oracle*: the same classifier on the true number of voids (earlier: vacancies) the modelled
  disk touches (both regions have the same density, so even a perfect counter stays below 1:
  0.79-0.84 at 40-48 px with the seventh round's voids); the check asks for half of the
  oracle's gain over chance. The recommended window must be within one window step of W.
- Domains: classification gain 0.25 (accuracy 0.58 against chance 0.33). Broadening: Spearman
  of the latent information with the window, 0.8 (5 windows).
- Period (fourth round): the recommended window within one window step of the domain period,
  the same tolerance as the two-scale window check.

## Findings (third round: angle at the lowest coherent harmonic order, commit 6c4dc51)

A. **The sublattice angle is fixed: all four sublattice checks pass 3/3.** Concentration of
   3 * angle 0.9997, 0.998, 0.999 (second round 0.62, 0.51, 0.31); offset between the
   sublattices 0.13, 0.04, 0.10 deg (was 2.6-9.2); z still invariant (separation
   5e-5 to 3.4e-4 std, accuracy 0.49-0.50). The angle histograms are two sharp peaks 60 deg
   apart (`sublattice_scores_seed*.png`). The fast single-window run now passes the angle checks
   too (seeds 0-4), so they are in the fast test.
B. **Two regressions, both seed 2 only, both caused by the angle commit** (deterministic, see
   above): `library_rho` 0.952 -> 0.071 (library 2/3; seeds 0-1 unchanged at 1.0, 0.976) and
   `movie_dispersion_rho` 0.915 -> 0.539 (movie dispersion 2/3). Not explained yet. Not by
   the order the angle picks: in the last encoding pass (800 keypoints) library seed 2 (fails)
   picks order 1 for 86% and order 2 for 13% of the patches, seed 0 (passes) order 1 for 53% and
   order 2 for 46% (median coherence at orders 1/2: 0.45/0.26 and 0.27/0.29). A patch at order
   2 (or 6) gets an angle defined only modulo 180 (60) degrees although the grains are not that
   symmetric, so the decoder may render it turned by 180 degrees and z has to carry the
   difference; the seeds do not show that this is what moves seed 2's per-frame means. In the
   graphene sublattice run (seed 0) the last encoding pass (630 atoms, 24 px) picks order 3 for
   every atom (median coherence 0.65 at order 3, 0.20 at order 6); order 6 would give A and B
   atoms the same angle, so the `agree` rule matters there.
C. **z carries less information on the movie's bulk atoms at 24 px**: 0.11, 0.25, 0.19 nats
   (second round 0.68-0.86). `movie_sublattice_z_separation` still passes 3/3 (0.18, 0.10, 0.05
   std) but is now read where z is used less, so it is a weaker test of invariance than before.
   Likely benign (the angle now explains the atoms' orientation, which z had partly absorbed),
   not measured.
D. **Domains: classification 3/3, broadening 0/3** (rho 0.7, 0.1, -0.7; second round 0.9, -0.1,
   -1.0). In every seed the latent information now rises from 8 px to a peak at 16-32 px
   (3.5 -> 4.8, 4.3 -> 5.1, 5.2 -> 5.4 nats) and falls at 48 px (4.4, 4.4, 4.6): the rise-and-fall
   of finding 4 below, now in all three seeds.
E. **Two-scale: still no separation above W, and the recommended window moved further from W.**
   Below W 3/3 (0.50-0.51); gain above W 0.036, -0.004, -0.078 of the oracle's (0/3, as
   before); window error 4, 2, 4 steps (recommended 48, 32, 48 px against W = 24; 0/3; second
   round 2, 2, 1: 1/3), the same with the length-scale rule before or after b0f0eb2.

## Findings (second round: 12-fold invariant encoder, commit c09071f)

1. **z is now rotation invariant in every seed** (was 2/3). Pristine graphene: A/B separation
   ~1e-4 posterior std, accuracy 0.49-0.50. In pristine graphene z has almost nothing to encode,
   so that check alone cannot tell "invariant" from "collapsed"; the new check
   `movie_sublattice_z_separation` reads bulk atoms of the defect movie at 24 px, where z is in
   use (0.68-0.86 nats of latent information): 0.16-0.48 std, 3/3 pass.
2. **The angle lost its concentration (new failure, 3/3 seeds).** Mean resultant length of
   3 * angle per sublattice: 0.31-0.62 (first round 0.999 in every seed; fast single-window
   runs 0.04-0.13). The angle offset between the sublattices still passes (2.6-9.2 deg), but
   the angle histograms are broad (figures `sublattice_scores_seed*.png`). Cause, by
   construction: the angle is the direction of `sum_j R(phi_j) u_j` over the 12 de-rotated
   copies. For a patch with 3-fold symmetry (every atom of pristine graphene: its
   neighbourhood has C3 symmetry) the copies at phi, phi + 120 and phi + 240 degrees are the
   same image, so their u are equal and the three rotated vectors sum to zero: no continuous,
   exactly equivariant 2-vector of a 3-fold symmetric input exists except 0. The angle is then
   set by what breaks the symmetry (pixel grid, noise, interpolation), i.e. at random.
   Measured (fast sublattice run, seed 0, trained model): the coherence
   `|mean_j R(phi_j) u_j| / mean_j |u_j|` has median 0.24 on the graphene atoms against 0.61
   for the same model on white-noise patches at the same keypoints.
   Proposal (model.py, not done here): combine per-copy outputs at the harmonic order of the
   patch's symmetry, `angle_m = arg(sum_j exp(i m phi_j) w_j) / m` for m in {1, 2, 3, 4, 6}
   (exact for the 12-fold group since m divides 12), using the lowest order whose coherence
   `|sum_j ...| / sum_j |w_j|` is high (m = 3 for graphene: the angle is then defined modulo
   120 degrees, exactly its real ambiguity, and the decoder renders the same patch for all
   three); or canonicalise: take the copy with the highest learned score (argmax over the 12)
   plus a small in-bin refinement, where ties of symmetric patches pick one of equivalent
   orientations.
3. **Library passes 3/3 with the reading fixed in advance** (|rho| 1.0, 0.98, 0.95).
4. **Domain broadening is still not reliable at patch size 16** (rho 0.9, -0.1, -1.0: 1/3).
   Seed 1's latent information rises from 8 to 24 px (4.8 -> 5.2 nats) and falls again to
   4.6 nats at 48 px; seed 2 falls throughout. The classification at the smallest window passes
   3/3 (gain 0.38-0.45). So the "broadening" reading (latent information, a Gaussian-channel
   measure of spread in posterior widths) does not grow monotonically with the window even when
   the stripes stay resolved. Proposal: before any model change, decide whether the paper's
   broadening is this quantity at all (the paper shows KDEs in a shared latent frame; our KDE
   entropy is computed in `validate_domains`' details); a 2-D latent space cannot hold ever more configurations
   of a texture, and the KL term trades them for the posterior width at large windows.
5. **Two-scale regions are still not separated from z at patch size 16** (gain over chance
   -0.09 to 0.09 of the oracle's, 0/3; in seed 0 the accuracy stays at 0.46-0.52 at every
   window while the oracle rises to 0.67-0.70 at 40-48 px). Below W passes 3/3 (0.48-0.50). The recommended window is 32 px in seed
   0 (two steps above W = 24: window error 2, 2, 1: 1/3 pass). Whether a vacancy *count*
   difference of 0-2 in a 48 px disk can be represented by a 2-D rotation-invariant z at all is
   the open question: the model reconstructs the dashes (fine texture, orientation per site)
   first, and a missing site is a small part of the likelihood. Proposal: test with a larger
   latent_dim (3-4) and with a longer per-window training (the convergence rule stops later
   windows after 5-15 epochs), on one seed first, before changing the method.
"""


def passes(name, value):
    op, thr, _ = THRESHOLDS[name]
    return {"<": value < thr, ">": value > thr, "<=": value <= thr}[op]


# --------------------------------------------------------------------------- helpers


def _run(images, windows, keypoints, seed, **kw):
    import scalevae

    return scalevae.run(images, windows=windows, keypoints=keypoints, seed=seed, quiet=True,
                        report=False, **kw)


def _match(ds, keypoints):
    """Row of ``keypoints`` (the generator's) for every point the run kept."""
    from scipy.spatial import cKDTree

    pts = np.stack([ds["frame"].values, ds["y"].values, ds["x"].values], 1).astype(float)
    d, idx = cKDTree(keypoints).query(pts)
    assert d.max() < 1e-6, "run keypoints do not match the generator's"
    return idx


def _zw(ds, window, state="final"):
    """(z_mean, z_std) at one window as numpy arrays (point, latent)."""
    sel = dict(state=state, window=int(window))
    return ds["z_mean"].sel(**sel).values, ds["z_std"].sel(**sel).values


def posterior_samples(z, s, n_draws=4, seed=0):
    """``n_draws`` samples per point from the posterior N(z, s^2): (n_draws * n, k)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([z + s * rng.standard_normal(z.shape) for _ in range(n_draws)])


def sampled_accuracy(z, s, labels, n_draws=4, seed=0, cv=5):
    """Cross-validated balanced accuracy of predicting ``labels`` from posterior samples of z.

    Folds split the *keypoints* (all draws of one keypoint stay in one fold), so the classifier
    never sees the test keypoint's own posterior mean. The classifier is a multinomial logistic
    regression on the standardised latents and their squares and products (so a class in the
    middle of the latent space, such as walls between two domains, is reachable).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pred = np.empty((n_draws, len(labels)), labels.dtype)
    folds = StratifiedKFold(cv, shuffle=True, random_state=seed).split(z, labels)
    for train, test in folds:
        clf = make_pipeline(StandardScaler(), PolynomialFeatures(2), LogisticRegression(max_iter=2000))
        xs = np.concatenate([z[train] + s[train] * rng.standard_normal(z[train].shape)
                             for _ in range(n_draws)])
        clf.fit(xs, np.tile(labels[train], n_draws))
        for d in range(n_draws):
            pred[d, test] = clf.predict(z[test] + s[test] * rng.standard_normal(z[test].shape))
    return float(np.mean([balanced_accuracy_score(labels, p) for p in pred]))


def latent_information(z, s):
    """``sum_k 0.5 ln(1 + Var(z_k) / mean(s_k^2))`` nats: spread of the latents in units of the
    posterior width; invariant to rescaling any latent axis."""
    return float(np.sum(0.5 * np.log1p(z.var(0) / np.mean(s ** 2, axis=0))))


def _circ_mean(a):
    m = np.exp(1j * a).mean()
    return float(np.angle(m)), float(abs(m))


# --------------------------------------------------------------------------- 1. sublattices


def validate_sublattice(seed=0, windows=None, read_window=None, data=None, **run_kw):
    """Graphene, rotation-invariant VAE: A and B atoms share z; angles differ by 60 deg mod 120.

    A's three bonds point at 0, 120, 240 degrees where B's point at 60, 180, 300: B's
    neighbourhood is A's rotated by 60 degrees (mod 120, the three-fold symmetry). So
    ``3 * angle`` is the same for all atoms of a sublattice, and differs by 180 degrees between
    the two; ``z`` must not see the difference.
    """
    from scalevae.datasets import graphene_movie

    cfg = SETTINGS["sublattice"]
    windows = windows or cfg["windows"]
    w = read_window or cfg["read_window"]
    ex = graphene_movie(seed=seed, **(data or cfg["data"]))
    ds = _run(ex.images, windows, ex.keypoints, seed, **run_kw)
    sub = ex.truth["sublattice"][_match(ds, ex.keypoints)]
    z, s = _zw(ds, w)
    a = ds["angle"].sel(state="final", window=w).values
    sep = np.abs(z[sub == 0].mean(0) - z[sub == 1].mean(0)) / s.mean(0)
    (m0, r0), (m1, r1) = _circ_mean(3 * a[sub == 0]), _circ_mean(3 * a[sub == 1])
    diff = np.degrees(np.angle(np.exp(1j * (m0 - m1))))
    scores = {
        "sublattice_z_separation": float(sep.max()),
        "sublattice_z_accuracy": sampled_accuracy(z, s, sub, seed=seed),
        "sublattice_angle_offset": float(abs(abs(diff) - 180.0)),
        "sublattice_angle_concentration": float(min(r0, r1)),
    }
    return scores, dict(ds=ds, sub=sub, window=w, example=ex)


# --------------------------------------------------------------------------- 2+3. movie


def bulk_mode_distance(z, s):
    """Distance of every keypoint from the densest point (mode) of the latent distribution, in
    units of the posterior std per latent: the microscopist's "how unlike the bulk is it"."""
    from scipy.stats import gaussian_kde

    u = z / s.mean(0)
    kde = gaussian_kde(u.T)
    mode = u[np.argmax(kde(u.T))]
    return np.linalg.norm(u - mode, axis=1)


def validate_movie(seed=0, windows=None, data=None, **run_kw):
    """Graphene movie: near-defect atoms stand out at large windows (2) and the per-frame latent
    dispersion follows the number of defects (3)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from scalevae.analysis import stack_statistics
    from scalevae.datasets import graphene_movie

    cfg = SETTINGS["movie"]
    windows = windows or cfg["windows"]
    ex = graphene_movie(seed=seed, **(data or cfg["data"]))
    ds = _run(ex.images, windows, ex.keypoints, seed, **run_kw)
    dist = ex.truth["distance_to_defect"][_match(ds, ex.keypoints)]
    w = int(windows[-1])
    z, s = _zw(ds, w)
    score = bulk_mode_distance(z, s)
    # Near: a defect within a quarter window (well inside the modelled disk); far: no defect in
    # the disk at all. Atoms in between see a defect at the rim and are left out.
    near, far = dist < w / 4, dist > w / 2
    auc = roc_auc_score(near[near | far], score[near | far]) if near.any() and far.any() else np.nan

    st = stack_statistics(ds)
    # Dispersion per frame: root of the summed variances in posterior-std units.
    disp = st["dispersion"].sel(window=w).values / s.mean(0)
    disp = np.sqrt((disp ** 2).sum(-1))
    counts = ex.truth["defect_count"][st["frame"].values.astype(int)]
    rho = spearmanr(disp, counts)[0]
    # Rotation invariance where z is *used*: in pristine graphene z has nothing to encode (it
    # may collapse, and a collapsed z shares nothing trivially), here z separates defects. Bulk
    # atoms (no defect within the 24 px disk) of the two sublattices must still share z.
    wr = 24 if 24 in windows else int(windows[0])
    sub = ex.truth["sublattice"][_match(ds, ex.keypoints)]
    z24, s24 = _zw(ds, wr)
    bulk = dist > wr / 2
    sep = np.abs(z24[bulk & (sub == 0)].mean(0) - z24[bulk & (sub == 1)].mean(0)) / s24.mean(0)
    scores = {"defect_auc": float(auc), "movie_dispersion_rho": float(rho),
              "movie_sublattice_z_separation": float(sep.max()),
              # recorded, not a check: is z in use at 24 px? (nats, see latent_information)
              "movie_z_information_24": latent_information(z24[bulk], s24[bulk])}
    return scores, dict(ds=ds, dist=dist, score=score, near=near, far=far, window=w,
                        dispersion=disp, counts=counts, example=ex)


# --------------------------------------------------------------------------- 4. library


def frame_pca_score(ds, n_frames, state="final"):
    """First principal component of the per-frame mean latent vectors, one score per frame.

    Each frame is one sample: the mean over its keypoints of ``z_mean`` at every window, a row of
    ``latent * window`` numbers. The reading is fixed in advance and needs no choice of latent,
    window or sign: the rows are only centred (not rescaled), and in the final state all windows
    share one encoder and one N(0, I) prior, so an orthogonal rotation or a sign flip of the
    latent space rotates the rows without changing the PCA-1 score up to its sign (hence
    ``|rho|``). Unlike the trajectory PCA of the *keypoints*, whose first component follows the
    largest variation *within* frames (grain tops against grooves), this asks directly how the
    frames differ from one another.
    """
    z = ds["z_mean"].sel(state=state).transpose("point", "latent", "window").values
    frame = ds["frame"].values.astype(int)
    rows = np.stack([z[frame == f].reshape((frame == f).sum(), -1).mean(0)
                     for f in range(n_frames)])
    rows = rows - rows.mean(0)
    u, sv, _ = np.linalg.svd(rows, full_matrices=False)
    return u[:, 0] * sv[0], float(sv[0] ** 2 / np.sum(sv ** 2))


def validate_library(seed=0, windows=None, data=None, keypoints=None, **run_kw):
    """Combinatorial library: the first principal component of the per-frame mean latent
    vectors is monotonic in grain size (the sign of a PCA axis is arbitrary, hence |rho|)."""
    from scipy.stats import spearmanr

    from scalevae.analysis import trajectory_pca
    from scalevae.datasets import combinatorial_library

    cfg = SETTINGS["library"]
    windows = windows or cfg["windows"]
    ex = combinatorial_library(seed=seed, **(data or cfg["data"]))
    ds = _run(ex.images, windows, keypoints or cfg["keypoints"], seed,
              pixel_size=ex.pixel_size, unit=ex.unit, control=ex.control,
              control_name=ex.control_name, **run_kw)
    size = ex.truth["grain_size"]
    n = len(ex.images)
    per_frame, explained = frame_pca_score(ds, n)
    rho = spearmanr(per_frame, size)[0]
    # Recorded, not asserted: the first round's reading (per-frame mean of the keypoints'
    # trajectory-PCA 1 score), kept for comparison.
    frame = ds["frame"].values.astype(int)
    load = trajectory_pca(ds)["loadings"].sel(component=1).values
    traj = np.array([np.nanmean(load[frame == f]) for f in range(n)])
    traj_rho = float(abs(spearmanr(traj, size)[0]))
    return {"library_rho": float(abs(rho))}, dict(ds=ds, per_frame=per_frame, size=size,
                                                  explained=explained, traj_rho=traj_rho,
                                                  example=ex)


# --------------------------------------------------------------------------- 5. two scales


def validate_twoscale(seed=0, windows=None, data=None, keypoints=None, **run_kw):
    """Two-scale texture: the regions are indistinguishable from z below the critical window W,
    distinguishable above it, and the recommended length scale lands within one step of W."""
    from scalevae.analysis import length_scales
    from scalevae.datasets import two_scale_texture

    cfg = SETTINGS["twoscale"]
    windows = list(windows or cfg["windows"])
    ex = two_scale_texture(seed=seed, **(data or cfg["data"]))
    ds = _run(ex.images, windows, keypoints or cfg["keypoints"], seed,
              **{**cfg.get("run", {}), **run_kw})
    wc = ex.truth["critical_window"]
    nx = ex.images.shape[-1]
    x = ds["x"].values
    region = (x >= nx / 2).astype(int)
    # Keypoints whose largest window straddles the region border see both regions: left out.
    keep = np.abs(x - (nx - 1) / 2) > windows[-1] / 2
    acc, oracle = {}, {}
    voids, radius = ex.truth["voids"], ex.truth["void_radius"]
    pts = np.stack([ds["y"].values, ds["x"].values], 1)
    dist = np.hypot(*(pts[:, None, :] - voids[None]).transpose(2, 0, 1))
    for w in windows:
        z, s = _zw(ds, w)
        acc[w] = sampled_accuracy(z[keep], s[keep], region[keep], seed=seed)
        # Oracle: the same classifier on the true number of voids the modelled disk (radius
        # w/2) touches. Both regions have the same void density, so even a perfect counter
        # cannot reach 1; its accuracy is the yardstick for "separable".
        count = (dist < w / 2 + radius).sum(1)
        feat = np.eye(8)[np.minimum(count, 7)][keep]
        oracle[w] = sampled_accuracy(feat, np.zeros_like(feat), region[keep], n_draws=1,
                                     seed=seed)
    below = [acc[w] for w in windows if w < wc]
    above = [(acc[w] - 0.5) / max(oracle[w] - 0.5, 1e-9) for w in windows if w >= 1.5 * wc]
    ls = length_scales(ds)
    rec = int(ls["recommended_window"])
    i_c = int(np.argmin(np.abs(np.array(windows) - wc)))
    err = abs(windows.index(rec) - i_c) if rec in windows else np.inf
    scores = {"twoscale_acc_below": float(np.mean(below)),
              "twoscale_gain_above": float(np.mean(above)),
              "twoscale_window_error": float(err),
              "twoscale_w_in_range": float(int(ls["recommended_low"]) <= wc
                                           <= int(ls["recommended_high"]))}
    return scores, dict(ds=ds, acc=acc, oracle=oracle, scales=ls, recommended=rec, critical=wc, example=ex)


# --------------------------------------------------------------------------- 6. domains


def validate_domains(seed=0, windows=None, data=None, keypoints=None, **run_kw):
    """PFM domains: at the smallest window z tells a domains, c domains and walls apart; the
    latent distribution broadens as the window grows (paper Fig. 3)."""
    from scipy.stats import spearmanr

    from scalevae.datasets import ferroelectric_domains

    cfg = SETTINGS["domains"]
    windows = list(windows or cfg["windows"])
    ex = ferroelectric_domains(seed=seed, **(data or cfg["data"]))
    ds = _run(ex.images, windows, keypoints or cfg["keypoints"], seed,
              **{**cfg.get("run", {}), **run_kw})
    iy = np.rint(ds["y"].values).astype(int)
    ix = np.rint(ds["x"].values).astype(int)
    labels = ex.truth["labels"][iy, ix].astype(int)
    z, s = _zw(ds, windows[0])
    acc = sampled_accuracy(z, s, labels, seed=seed)
    info = np.array([latent_information(*_zw(ds, w)) for w in windows])
    rho = spearmanr(windows, info)[0]
    # Recorded, not asserted: differential entropy of the KDE on the grid shared by all windows
    # (depends on the latent scale, which the final state shares across windows).
    from scalevae.analysis import latent_density

    dens = latent_density(ds, grid_size=64)
    cell = float(np.diff(dens["z1_grid"].values[:2])[0] * np.diff(dens["z2_grid"].values[:2])[0])
    p = dens.values * cell
    entropy = -(p * np.log(np.maximum(p, 1e-300))).sum((1, 2)) + np.log(cell)
    return ({"domains_accuracy_gain": float(acc - 1 / 3), "domains_broadening_rho": float(rho)},
            dict(ds=ds, labels=labels, accuracy=acc, info=info, entropy=entropy, example=ex))


# --------------------------------------------------------------------------- 7. period


def validate_period(seed=0, windows=None, data=None, keypoints=None, **run_kw):
    """PFM domains with the default settings: the recommended descriptor size lands within one
    window step of the stripe period, the image's one built-in length scale (``period``)."""
    from scalevae.patches import parse_windows
    from scalevae.datasets import ferroelectric_domains

    cfg = SETTINGS["period"]
    windows = list(parse_windows(windows or cfg["windows"]))
    ex = ferroelectric_domains(seed=seed, **(data or cfg["data"]))
    ds = _run(ex.images, windows, keypoints or cfg["keypoints"], seed, **run_kw)
    rec, period = int(ds.attrs["recommended_window"]), int(ex.truth["period"])
    step = float(np.median(np.diff(windows)))
    return ({"period_window_error": abs(rec - period) / step},
            dict(ds=ds, recommended=rec, period=period,
                 significant=int(ds.attrs["recommended_window_significant"])))


VALIDATIONS = {
    "sublattice": validate_sublattice,
    "movie": validate_movie,
    "library": validate_library,
    "twoscale": validate_twoscale,
    "domains": validate_domains,
    "period": validate_period,
}


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


def _write_results(table, seeds, timings, path=HERE / "RESULTS.md"):
    lines = [
        "# Validation results",
        "",
        "Written by `validation/run_validation.py` (the full method, `scalevae.run`, on the "
        "synthetic examples of `scalevae.datasets`, each seed a new data set *and* a new model "
        "initialisation). Sizes and windows: `SETTINGS` in that script; readings of the latent "
        "space: its module docstring. `spread` is the sample standard deviation over seeds.",
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
              + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), ""]
    path.write_text("\n".join(lines) + "\n" + FINDINGS)
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
