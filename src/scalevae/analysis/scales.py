"""Characteristic length scales: the windows where the keypoints' latent relations change most,
and the recommended descriptor size."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import signal, stats

from ._common import require_windows, scales_state, state_variable, state_z, subset
from .density import latent_density


# --------------------------------------------------------------------------- measures of change


def _distance_ranks(z):
    """Ranks of the pairwise latent distances of keypoints ``z`` (m, k), as float."""
    from scipy.spatial.distance import pdist

    return stats.rankdata(pdist(z)).astype(float)


def _structure_change(ra, rb):
    """1 - Spearman correlation of the pairwise latent distances of the same keypoints
    (``ra``, ``rb``: their ranks at two windows).

    Invariant to any rotation, shift or uniform scaling of the latent space, so it measures a
    change of which keypoints resemble which, not a drift of the encoder between windows.
    """
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return 0.0 if np.ptp(ra) == np.ptp(rb) else 1.0
    return float(np.clip(1.0 - np.corrcoef(ra, rb)[0, 1], 0.0, 1.0))


def _regrouping_floor(ds, state, zz, sub, ranks, n_draws):
    """Per window: the regrouping that posterior noise alone causes (see length_scales)."""
    if not n_draws or "z_std" not in ds:
        return np.zeros(len(zz))
    sd = state_variable(ds, "z_std", state).transpose("window", "point", "latent").values
    rng = np.random.default_rng(2)  # fixed: the same result gives the same floor
    floor = np.zeros(len(zz))
    for i in range(len(zz)):
        z, s = zz[i, sub], np.nan_to_num(sd[i, sub])
        floor[i] = np.mean([_structure_change(ranks[i], _distance_ranks(
            z + s * rng.standard_normal(z.shape))) for _ in range(int(n_draws))])
    return floor


def _standardized(ds, state):
    """``ds`` with each window's latents centred on their median and divided by their
    interquartile range (per latent), so densities compare shapes, not the overall scale."""
    z = state_z(ds, state)
    med = z.median("point")
    iqr = z.quantile(0.75, "point") - z.quantile(0.25, "point")
    iqr = iqr.where(iqr > 0, 1.0).drop_vars("quantile", errors="ignore")
    zs = ((z - med) / iqr).expand_dims(state=[state])
    return xr.Dataset({"z_mean": zs.transpose("state", "window", "point", "latent")})


def _half_maximum_run(score, best):
    """First and last index of the contiguous run around ``best`` with ``score >= score[best] / 2``."""
    keep = score >= 0.5 * score[best]
    lo = hi = best
    while lo > 0 and keep[lo - 1]:
        lo -= 1
    while hi < len(score) - 1 and keep[hi + 1]:
        hi += 1
    return lo, hi


def _first_reaching(curve, fraction):
    """Index of the first window whose ``curve`` reaches ``fraction`` of its maximum."""
    return int(np.argmax(curve >= fraction * curve.max()))


def length_scales(ds, state=None, density=None, n_pairs_points=500, n_draws=3):
    """Characteristic length scales: windows where the latent structure changes most.

    For each window ``w_i`` (i > 1) the change from ``w_(i-1)`` is measured two ways:

    - ``density_change``: Hellinger distance between the two windows' latent densities, in
      [0, 1]; each window's latents are first centred on their median and divided by their
      interquartile range, so that a mere shrinking or growing of the latent cloud (common
      when the encoder maps larger windows closer to the prior) does not count, only a change
      of its shape;
    - ``structure_change``: 1 - Spearman correlation between the pairwise latent distances of
      the same keypoints at the two windows (a fixed random subset of ``n_pairs_points``), in
      [0, 1]: it sees keypoints regrouping even when the overall density stays the same, and
      ignores a mere drift of the encoder between windows.

    **Noise floor.** The latents are posterior means; the model itself cannot tell keypoints
    apart closer than their posterior width ``z_std``. ``noise_floor`` is the regrouping that
    this width alone produces at one window: ``structure_change`` between the means and a
    posterior sample ``z_mean + z_std * eps`` (mean of ``n_draws`` draws). Only the regrouping
    above the larger floor of the two windows counts: ``excess_change``. Without it, a
    pattern that looks the same at every window (a perfect lattice, whose patches differ only by
    their phase) gets a score made of encoder noise, and the division by the small log-steps
    of large windows hands the recommendation to the largest window.

    ``change`` is the mean of the two measures (reported as evidence), and
    ``score = excess_change / ln(w_i / w_(i-1))`` is the significant regrouping per unit of
    log-scale (the density distance is left out of the score: its noise floor, divided by the
    small log-steps of large windows, would favour the largest window), so that windows
    spaced linearly are not biased towards small windows (8 -> 12 px is a far bigger step in
    scale than 60 -> 64 px) and a scale-free (self-similar) image gives a flat score.

    **Rule.** ``change_from_first`` is the regrouping between the smallest window and each
    window (the same rank measure), less the larger of the two windows' noise floors: how far
    the keypoints' latent relations have moved from their finest-scale description. It rises
    while structure of the image's own scale enters the patches and levels off once larger
    windows only add more of the same; an image with several characteristic sizes gives several
    rises. Every rise is reported (``rise_onset``, ``rise_middle``, ``rise_end``,
    ``rise_strength``, ``rise_rate`` on dim ``rise``, strongest first; see
    :func:`scalevae.analysis.multiscale.find_scales`), and ``recommended_window`` is the middle
    (half-way window) of the strongest rise other than a one-step jump from the smallest window
    (a basic unit - bond, void - that the smallest window cuts through and the next one fills
    in). ``still_rising`` says the curve still climbs at the largest window (extend the range);
    ``conclusive`` is False when the recommended rise itself is unfinished there, and the number
    is then only where to extend the range from. If no window
    regroups the keypoints above the noise floor, ``significant`` is False and the rule runs on
    the raw regrouping: read it as "no length scale in this window range" (``attrs["note"]``
    says so). ``score`` and its ``peak`` flags stay as evidence of where the regrouping is
    fastest (other scales).

    **Range.** ``recommended_low`` .. ``recommended_high`` are the recommended rise's onset
    and end: a narrow range is a sharp change of scale; a range that spans most of the windows
    means the evidence for one size is weak.

    Parameters
    ----------
    ds : xarray.Dataset
        Result Dataset with at least two windows.
    state : {"instant", "final"}, optional
        Default: the state the result's recommendation reads (``recommended_window_state``;
        :data:`scalevae.config.SCALES_STATE`, "instant", for a new result), so that
        ``length_scales(ds)`` gives the recommended window stored with ``ds``.
    density : xarray.DataArray, optional
        Densities to compare instead of the standardised ones (e.g. :func:`latent_density`
        of the same state, to count changes of scale too).
    n_pairs_points : int
        Keypoints used for the pairwise-distance comparison.
    n_draws : int
        Posterior draws averaged for the noise floor (0: no floor, every change counts).

    Returns
    -------
    scales : xarray.Dataset
        ``density_change``, ``structure_change``, ``noise_floor``, ``excess_change``,
        ``change``, ``score``, ``peak`` (bool) and ``prominence`` on ``window`` (NaN / False
        for the first window; ``noise_floor`` and ``change_from_first`` are per window), the
        0-d ints ``recommended_window``, ``recommended_low`` and ``recommended_high`` (px) and
        the 0-d bools ``significant``, ``still_rising`` and ``conclusive``, and the rises on dim
        ``rise``. ``attrs["rule"]`` states the rule, ``attrs["note"]`` any caveat.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> s = length_scales(make_fake_result(n_windows=6))
    >>> int(s["recommended_window"]) in s["window"].values
    True
    """
    state = scales_state(ds, state)
    z = state_z(ds, state)
    windows = z["window"].values.astype(int)
    require_windows(len(windows), "length scales need")
    if density is None:
        density = latent_density(_standardized(ds, state), state, grid_size=48)
    p = density.transpose("window", ...).values.reshape(len(windows), -1)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-300)
    hell = np.sqrt(np.clip(1.0 - np.sqrt(p[1:] * p[:-1]).sum(1), 0.0, 1.0))

    zz = z.values
    ok = np.isfinite(zz).all(axis=(0, 2))
    sub = np.flatnonzero(ok)[subset(int(ok.sum()), n_pairs_points, seed=1)]
    ranks = [_distance_ranks(zz[i, sub]) for i in range(len(windows))]
    struct = np.array([_structure_change(ranks[i - 1], ranks[i])
                       for i in range(1, len(windows))])

    floor = _regrouping_floor(ds, state, zz, sub, ranks, n_draws)
    excess = np.clip(struct - np.maximum(floor[1:], floor[:-1]), 0.0, None)
    significant = bool((excess > 0).any())

    change = 0.5 * (hell + struct)
    # The score uses the keypoints' regrouping only: the KDE distance has a noise floor that
    # the division by small log-steps at large windows inflates, which favours the largest window.
    log_step = np.log(windows[1:] / windows[:-1])
    score = (excess if significant else struct) / log_step
    # Pad with values below the minimum so that a maximum at either end counts as a peak.
    pad = np.concatenate([[score.min() - 1], score, [score.min() - 1]])
    peaks, props = signal.find_peaks(pad, prominence=0)
    peaks = peaks - 1
    prom = np.full(len(windows), np.nan)
    is_peak = np.zeros(len(windows), bool)
    if len(peaks) and props["prominences"].max() > 0:
        prom[peaks + 1] = props["prominences"]
        is_peak[peaks + 1] = True

    # Regrouping relative to the smallest window, above the posterior-noise floor.
    from_first = np.array([_structure_change(ranks[0], r) for r in ranks])
    if significant:
        from_first = np.clip(from_first - np.maximum(floor, floor[0]), 0.0, None)
    from_first[0] = 0.0
    if from_first.max() > 0:
        # from_first[0] = 0 < any fraction of a positive maximum: every index is >= 1
        rec_i, lo_i, hi_i = (_first_reaching(from_first, f) for f in (0.5, 0.25, 0.75))
    else:  # nothing changes at all: no scale to find, the largest raw step is weak evidence
        rec_i = lo_i = hi_i = int(np.argmax(score)) + 1
    # A change that keeps going at the same pace (no level-off) must widen the range too: add
    # the run of windows around the fastest regrouping that regroup at least half as fast.
    s_lo, s_hi = _half_maximum_run(score, int(np.argmax(score)))
    lo_i, hi_i = min(lo_i, s_lo + 1), max(hi_i, s_hi + 1)
    rec = int(windows[rec_i])

    nan = np.array([np.nan])
    out = xr.Dataset(
        {"density_change": ("window", np.concatenate([nan, hell])),
         "structure_change": ("window", np.concatenate([nan, struct])),
         "noise_floor": ("window", floor),
         "excess_change": ("window", np.concatenate([nan, excess])),
         "change": ("window", np.concatenate([nan, change])),
         "score": ("window", np.concatenate([nan, score])),
         "peak": ("window", is_peak),
         "prominence": ("window", prom),
         "recommended_window": ((), rec),
         "change_from_first": ("window", from_first),
         "recommended_low": ((), int(windows[lo_i])),
         "recommended_high": ((), int(windows[hi_i])),
         "significant": ((), significant)},
        coords={"window": windows},
        attrs={"state": state,
               "rule": "recommended window = first window at which the keypoints' latent "
                       "regrouping relative to the smallest window (1 - rank correlation of "
                       "their pairwise latent distances, less the regrouping the posterior "
                       "width alone produces) reaches half its maximum over the window range; "
                       "range: where it reaches a quarter and three quarters, widened to the "
                       "windows regrouping at least half as fast as the fastest",
               "note": "" if significant else (
                   "no window regroups the keypoints by more than their posterior width "
                   "alone does: within the model's resolution, which keypoints resemble which "
                   "does not change with the window (e.g. a perfect lattice, structure finer "
                   "than the patches resolve, or latents that carry little information); the "
                   "recommended window comes from the raw regrouping and is weak evidence")})
    return _with_rises(out)


def _with_rises(out):
    """Every rise of ``change_from_first`` (multiscale.find_scales) joins the evidence, and the
    recommendation becomes the middle of the strongest rise: the half-maximum of the whole
    curve lands right after a one-step jump from the smallest window (a bond or void the
    smallest window cuts through) when an image holds a finer unit than its structure."""
    from .multiscale import find_scales

    fs = find_scales(out)
    out = out.assign(
        recommended_window=fs["recommended_window"], recommended_low=fs["recommended_low"],
        recommended_high=fs["recommended_high"], still_rising=fs["still_rising"],
        gradual=fs["gradual"], conclusive=fs["conclusive"], rise_onset=fs["onset"],
        rise_middle=fs["middle"], rise_end=fs["end"], rise_strength=fs["strength"], rise_rate=fs["rate"])
    out.attrs["rule"] = fs.attrs["rule"]
    out.attrs["note"] = "; ".join(n for n in (out.attrs.get("note", ""), fs.attrs["note"]) if n)
    return out
