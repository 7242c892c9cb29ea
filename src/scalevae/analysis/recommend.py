"""The recommended descriptor size with its uncertainty: a bootstrap of the keypoints.

**Resampling.** Neighbouring keypoints share most of their pixels (a grid step is far below the
windows), so their latents are not independent draws and a bootstrap of single keypoints
would claim far more certainty than the image holds. The keypoints are therefore resampled in
spatial blocks: square tiles of half the largest window per frame (at most
:data:`scalevae.analysis.scales.MAX_TILES` of them), drawn with replacement as many times as
there are tiles; a keypoint pair counts as often as the product of its two tiles' draws.
Keypoints two tiles apart share no pixel at any window; adjacent tiles still do, so the
intervals are, if anything, narrow, which the calibration on known answers measures
(validation/CALIBRATION.md).

**Answer.** Each resample's regrouping curve is read by the rule of
:func:`scalevae.analysis.multiscale.read_curve`, and casts one vote spread over the windows
its evidence allows: a single finished rise votes for its half-way window; a gradual rise
(wider than :data:`~scalevae.analysis.multiscale.WIDEST_RISE`) for the windows of its span,
and a rise unfinished at the largest window for those from its first rising window on, each
in proportion to the regrouping added at that window; no rise votes for every window evenly.
``probability`` is the mean vote per window (it sums to 1), the answer is the most probable
window, the interval the smallest run of windows around it holding :data:`INTERVAL_MASS` of
the probability.

**Conclusive** (the one notion a pipeline reads): at least :data:`CONCLUSIVE_SHARE` of the
resamples find a single finished rise within one window step of the answer, the answer is
not below the nearest-neighbour distance ``lattice_bond_px`` when the result states one, and
the result's other state, read by the same rule, is conclusive too within one window step.

**Both states.** The keypoint bootstrap cannot see what training luck does: one model can
find a single sharp rise that a model of another seed does not, with every resample agreeing
(validation/CALIBRATION.md: the confidently wrong answers). A result holds a second reading
of the same training, the final model's encoding of every window (``state="final"``), whose
encoder differs from each window's own. An answer both readings give is a property of the
image rather than of one encoder; one that only the instant state gives is reported as
uncertain. The calibration shows this check, not a stricter share, is what keeps conclusive
answers right.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ..errors import ScaleVAEError
from ._common import scales_state

#: Resamples per model: the window probabilities move by < 2 % between bootstrap seeds at
#: this many (validation/CALIBRATION.md).
N_RESAMPLES = 1000
#: Seed of the tile draws: a constant, so the same result gives the same distribution.
RESAMPLE_SEED = 7
#: Share of resamples that must find a single rise within one window step of the answer.
CONCLUSIVE_SHARE = 0.8
#: Probability the reported interval holds.
INTERVAL_MASS = 0.9
#: What each resample's curve says (see the module docstring).
KINDS = ("single", "gradual", "unfinished", "none")
#: The variables recommend() adds when it reads the other state (length_scales passes them on).
CHECK_VARS = ("check_window", "check_conclusive", "check_agrees", "conclusive_alone")


def tile_counts(n_tiles, n_resamples, seed=RESAMPLE_SEED):
    """(n_resamples, n_tiles) draws of each tile, ``n_tiles`` draws with replacement each.

    Examples
    --------
    >>> tile_counts(5, 3).sum(1).tolist()
    [5, 5, 5]
    """
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_tiles, np.full(n_tiles, 1.0 / n_tiles), size=n_resamples)


def _votes(windows, curves):
    """Per resample: its vote (W,) over the windows and its kind index into KINDS."""
    from .multiscale import read_curve

    W = len(windows)
    votes, kinds = np.zeros((len(curves), W)), np.zeros(len(curves), int)
    for b, c in enumerate(curves):
        r = read_curve(windows, c)
        if r.conclusive:
            kind, lo, hi = 0, r.recommended, r.recommended
        elif r.gradual:
            kind, lo, hi = 1, r.first, r.high
        elif r.rises and r.beyond_jump:  # the recommended rise runs on at the largest window
            kind, lo, hi = 2, r.first, W - 1
        else:
            kind, lo, hi = 3, 0, W - 1
        # a spread vote follows where the regrouping grows (uniform where it does not)
        grow = np.diff(r.envelope, prepend=0.0)[lo:hi + 1] if kind in (1, 2) else np.zeros(1)
        vote = grow if grow.sum() > 0 else np.ones(hi - lo + 1)
        votes[b, lo:hi + 1] = vote / vote.sum()
        kinds[b] = kind
    return votes, kinds


def _interval(prob, mode, mass=INTERVAL_MASS):
    """Smallest run of windows around ``mode`` holding ``mass``: grow towards the likelier side."""
    lo = hi = mode
    while prob[lo:hi + 1].sum() < mass - 1e-12 and (lo > 0 or hi < len(prob) - 1):
        left = prob[lo - 1] if lo > 0 else -1.0
        right = prob[hi + 1] if hi < len(prob) - 1 else -1.0
        if left >= right:
            lo -= 1
        else:
            hi += 1
    return lo, hi


def other_state(ds, state):
    """The state of ``ds`` that is not ``state`` when ``ds`` holds two (else None).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> other_state(make_fake_result(n_windows=4), "instant")
    'final'
    """
    states = [str(s) for s in ds["state"].values] if "state" in ds.coords else []
    others = [s for s in states if s != state]
    return others[0] if state in states and others else None


def recommend(results, state=None, n_resamples=N_RESAMPLES, seed=RESAMPLE_SEED,
              evidence=None, check_state=True, check_evidence=None):
    """The distribution of the recommended window over bootstrap resamples of the keypoints.

    Parameters
    ----------
    results : xarray.Dataset or list of xarray.Dataset
        One result, or results of the same windows from several training seeds: their
        resamples are pooled (``n_resamples`` per model), so the answer carries the seed's
        spread too.
    state : {"instant", "final"}, optional
        Default: the state the result's recommendation reads.
    n_resamples : int
        Resamples per model.
    seed : int
        Seed of the tile draws.
    evidence : list of scales.Regrouping, optional
        Precomputed :func:`scalevae.analysis.scales.regrouping_evidence` per result.
    check_state : bool
        Read the first result's other state too (when it holds one) and call the answer
        conclusive only when that reading is conclusive within one window step of it (see the
        module docstring). False: this state alone.
    check_evidence : scales.Regrouping, optional
        Precomputed evidence of the first result's other state.

    Returns
    -------
    xarray.Dataset
        ``probability`` on ``window`` (sums to 1); 0-d ``recommended_window`` (px, the most
        probable), ``interval_low``, ``interval_high`` (px), ``conclusive`` (bool),
        ``conclusive_share`` (resamples with a single rise within one step of the answer),
        ``n_resamples`` (pooled), ``share_<kind>`` per kind of :data:`KINDS`, ``answer_kind``
        (str: "single" when conclusive, else the commonest other kind); with the other state
        read, :data:`CHECK_VARS`: ``check_window`` (its most probable window, px),
        ``check_conclusive``, ``check_agrees`` and ``conclusive_alone`` (what this state alone
        would say). ``attrs``: ``rule``, ``note``, ``lattice_bond_px`` (NaN when unknown),
        ``check_state`` ("" when no other state was read).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> rec = recommend(make_fake_result(n_windows=6), n_resamples=200)
    >>> round(float(rec["probability"].sum()), 6), int(rec["n_resamples"])
    (1.0, 200)
    """
    from .scales import regrouping_curves, regrouping_evidence

    results = list(results) if isinstance(results, (list, tuple)) else [results]
    if not results:
        raise ScaleVAEError("recommend needs at least one result Dataset")
    if n_resamples < 1:
        raise ScaleVAEError(f"n_resamples must be at least 1 (got {n_resamples})")
    state = scales_state(results[0], state)
    evidence = evidence or [regrouping_evidence(ds, state) for ds in results]
    windows = evidence[0].windows
    if any(not np.array_equal(ev.windows, windows) for ev in evidence):
        raise ScaleVAEError("recommend pools results of the same windows only; pass results "
                            "run with the same --windows")
    votes, kinds = [], []
    for ev in evidence:
        curves = regrouping_curves(ev, tile_counts(ev.n_tiles, int(n_resamples), seed))
        v, k = _votes(windows, curves["from_first"])
        votes.append(v)
        kinds.append(k)
    votes, kinds = np.concatenate(votes), np.concatenate(kinds)
    prob = votes.mean(0)
    single = np.bincount(np.nonzero(votes[kinds == 0])[1], minlength=len(windows))
    top = np.flatnonzero(prob >= prob.max() - 1e-12)
    mode = int(top[np.argmax(single[top])])  # a tie: most single-rise votes, then smallest
    lo, hi = _interval(prob, mode)
    picks = np.argmax(votes, 1)
    share = float(np.mean((kinds == 0) & (np.abs(picks - mode) <= 1)))
    bonds = [float(ds.attrs.get("lattice_bond_px", np.nan)) for ds in results]
    bond = float(np.nanmin(bonds)) if np.isfinite(bonds).any() else float("nan")
    below_bond = bool(np.isfinite(bond) and windows[mode] < bond)
    conclusive = share >= CONCLUSIVE_SHARE and not below_bond
    check = _check_other_state(results[0], state, windows, mode, n_resamples, seed,
                               check_evidence) if check_state else None
    disagree = check is not None and not bool(check["check_agrees"])
    shares = {k: float(np.mean(kinds == i)) for i, k in enumerate(KINDS)}
    kind = ("single" if conclusive and not disagree else
            max(KINDS[1:] + ("single",), key=lambda k: shares[k]))
    note = "" if conclusive else (
        f"{100 * share:.0f} % of the resamples find a single rise within one window step of "
        f"the most probable window ({100 * CONCLUSIVE_SHARE:.0f} % needed for a conclusive "
        "answer)")
    alone = bool(conclusive)  # what this state alone says, kept beside the check
    if conclusive and disagree:
        conclusive = False
        other = check.attrs["check_state"]
        note = (f"the {other} state reads {int(check['check_window'])} px"
                f"{'' if bool(check['check_conclusive']) else ', not conclusively'}: the answer "
                "depends on which encoder reads it (the training seed's luck), so it is not "
                "offered as conclusive; --repeats 3 shows the spread over seeds")
    if below_bond:
        note = (f"the most probable window ({windows[mode]} px) is below the nearest-neighbour "
                f"distance ({bond:.3g} px): no window of it holds a neighbour, so it is not "
                "offered as conclusive; run windows from about one bond to ten bonds")
    return xr.Dataset(
        {"probability": ("window", prob), "recommended_window": ((), int(windows[mode])),
         "interval_low": ((), int(windows[lo])), "interval_high": ((), int(windows[hi])),
         "conclusive": ((), bool(conclusive)), "conclusive_share": ((), share),
         "n_resamples": ((), len(votes)), "answer_kind": ((), kind),
         **{f"share_{k}": ((), v) for k, v in shares.items()},
         **({} if check is None else {**{k: check[k] for k in check.data_vars},
                                      "conclusive_alone": ((), alone)})},
        coords={"window": windows},
        attrs={"state": state, "lattice_bond_px": bond, "note": note,
               "check_state": "" if check is None else check.attrs["check_state"],
               "rule": f"bootstrap of spatial tiles ({len(votes)} resamples): each resample's "
                       "regrouping curve votes for its half-way window (a single finished "
                       "rise) or spreads its vote over the windows a gradual or unfinished "
                       "rise spans; answer: the most probable window; conclusive: >= "
                       f"{100 * CONCLUSIVE_SHARE:.0f} % of resamples find a single rise within "
                       "one window step of it, and the other state's reading is conclusive "
                       "within one step too; interval: the windows holding "
                       f"{100 * INTERVAL_MASS:.0f} %"})


def _check_other_state(ds, state, windows, mode, n_resamples, seed, evidence):
    """The other state's reading of ``ds`` against the answer ``windows[mode]``: a Dataset of
    ``check_window``, ``check_conclusive``, ``check_agrees`` (None when ``ds`` holds one state)."""
    other = other_state(ds, state)
    if other is None:
        return None
    o = recommend(ds, state=other, n_resamples=n_resamples, seed=seed,
                  evidence=None if evidence is None else [evidence], check_state=False)
    w = int(o["recommended_window"])
    steps = abs(int(np.searchsorted(windows, w)) - mode)
    agrees = bool(o["conclusive"]) and w in windows and steps <= 1
    return xr.Dataset({"check_window": ((), w), "check_conclusive": ((), bool(o["conclusive"])),
                       "check_agrees": ((), agrees)}, attrs={"check_state": other})


def recommendation_attrs(rec):
    """The attributes a result stores from :func:`recommend` (or from ``length_scales``).

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> a = recommendation_attrs(recommend(make_fake_result(n_windows=6), n_resamples=100))
    >>> sorted(a)[:3]
    ['recommended_window', 'recommended_window_answer', 'recommended_window_check']
    """
    lo = rec["interval_low"] if "interval_low" in rec else rec["recommended_low"]
    hi = rec["interval_high"] if "interval_high" in rec else rec["recommended_high"]
    prob = rec["probability"]
    kind = str(rec["answer_kind"].item()) if "answer_kind" in rec else str(
        rec.attrs.get("answer_kind", "single"))
    check = {} if "check_window" not in rec else {
        # the other state's reading (JSON: netCDF-safe); absent when only one state was read
        "recommended_window_check": json.dumps(
            {"state": str(rec.attrs.get("check_state", "")),
             "window": int(rec["check_window"]), "conclusive": bool(rec["check_conclusive"]),
             "agrees": bool(rec["check_agrees"]),
             "alone": bool(rec["conclusive_alone"]) if "conclusive_alone" in rec else False})}
    return {**check, "recommended_window": int(rec["recommended_window"]),
            "recommended_window_interval": [int(lo), int(hi)],
            "recommended_window_conclusive": int(bool(rec["conclusive"])),
            "recommended_window_n_resamples": int(rec["n_resamples"]),
            "recommended_window_answer": kind,
            # JSON {window: probability}: netCDF-safe, readable without the window dim
            "recommended_window_probability": json.dumps(
                {int(w): round(float(p), 4) for w, p in zip(prob["window"].values, prob.values)
                 if p > 0})}


def _read(ds):
    """(window, lo, hi, conclusive, kind, probability dict or None) from a result (attributes;
    a result saved before the bootstrap existed reads its range and flags) or from the output
    of recommend() / length_scales()."""
    a = ds.attrs
    if "recommended_window" in a:
        if "recommended_window_interval" in a:
            lo, hi = (int(v) for v in a["recommended_window_interval"])
            prob = {int(k): float(v) for k, v in
                    json.loads(a.get("recommended_window_probability", "{}")).items()}
            kind = str(a.get("recommended_window_answer", "single"))
        else:  # superseded attributes: the rise's range, the rule's own flags
            lo, hi = (int(v) for v in a.get("recommended_window_range",
                                            [a["recommended_window"]] * 2))
            prob = None
            kind = ("gradual" if int(a.get("length_scales_gradual", 0)) else
                    "single" if int(a.get("recommended_window_conclusive", 1)) else "unfinished")
        return (int(a["recommended_window"]), lo, hi,
                bool(int(a.get("recommended_window_conclusive", 1))), kind, prob)
    if "probability" not in ds:
        raise ScaleVAEError("no recommendation in this Dataset; pass a result Dataset, or the "
                            "output of scalevae.analysis.recommend.recommend")
    return _read(xr.Dataset(attrs={**ds.attrs, **recommendation_attrs(ds)}))


def _read_check(ds):
    """The other state's reading stored with a result, or held by a recommend() output (a dict
    of state, window, conclusive, agrees), None when there is none."""
    if "recommended_window_check" in ds.attrs:
        return json.loads(ds.attrs["recommended_window_check"])
    if "check_window" in ds:
        return json.loads(recommendation_attrs(ds)["recommended_window_check"])
    return None


def describe_recommendation(ds, pixel_size=None, unit=None) -> str:
    """The recommendation in one sentence: a number only when conclusive, otherwise the
    interval and what the regrouping does (the one wording of CLI, report and validation).

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset(attrs={"recommended_window": 24, "recommended_window_interval": [20, 28],
    ...     "recommended_window_conclusive": 1, "recommended_window_answer": "single",
    ...     "recommended_window_probability": '{"20": 0.1, "24": 0.85, "28": 0.05}'})
    >>> describe_recommendation(ds)
    'recommended descriptor size: 24 px; 85 % of resamples; 90 % interval 20-28 px'
    """
    from ..io.units import physical_pixel

    w, lo, hi, conclusive, kind, prob = _read(ds)
    size, unit = physical_pixel(pixel_size or ds.attrs.get("pixel_size"),
                                unit or ds.attrs.get("unit"))

    def px(v, v2=None):
        """``"16 px (62.4 nm)"``, or a range ``"12-40 px (46.8-156 nm)"``."""
        if v2 is None or v2 == v:
            return f"{v} px ({v * size:.4g} {unit})" if size else f"{v} px"
        return (f"{v}-{v2} px ({v * size:.4g}-{v2 * size:.4g} {unit})" if size
                else f"{v}-{v2} px")

    span = px(lo, hi)
    # a result saved before the bootstrap has a range, not a probability
    p = f"{100 * prob.get(w, 0.0):.0f} % of resamples; " if prob is not None else ""
    interval = f"{100 * INTERVAL_MASS:.0f} % interval" if prob is not None else "range"
    if conclusive:
        return f"recommended descriptor size: {px(w)}; {p}{interval} {span}"
    if kind == "gradual":
        phys = f" ({lo * size:.4g}-{hi * size:.4g} {unit})" if size else ""
        return (f"no single length scale between {lo} and {hi} px{phys}: the regrouping changes "
                f"gradually over that range (most probable {w} px{', ' + p[:-2] if p else ''})")
    if kind == "unfinished":
        return (f"no conclusive descriptor size: the regrouping still rises at the largest "
                f"window; extend the range (--windows) beyond {hi} px (most probable so far "
                f"{px(w)}; {p}{interval} {span})")
    if kind == "none":
        return (f"no length scale in this window range: the regrouping does not rise with "
                f"the window (interval {span})")
    check = _read_check(ds)
    if check is not None and check.get("alone") and not check["agrees"]:
        how = "" if check["conclusive"] else ", not conclusively"
        return (f"no conclusive descriptor size: most probable {px(w)} ({p}{interval} {span}), "
                f"but the {check['state']} state reads {check['window']} px{how}: the answer "
                "depends on the encoder that reads it; --repeats 3 shows the spread over seeds")
    bond = ds.attrs.get("lattice_bond_px")
    if bond is not None and np.isfinite(float(bond)) and w < float(bond):
        return (f"no conclusive descriptor size: the most probable window {px(w)} is below "
                f"the nearest-neighbour distance ({float(bond):.3g} px); interval {span}")
    return (f"no conclusive descriptor size: most probable {px(w)} ({p}fewer than "
            f"{100 * CONCLUSIVE_SHARE:.0f} % of resamples within one window step; {interval} "
            f"{span})")
