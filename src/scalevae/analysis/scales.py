"""Characteristic length scales: how the keypoints' latent relations regroup as the window grows,
and the recommended descriptor size.

The regrouping statistic is a function of the latents and their positions, never of the order
the keypoints are stored in: the keypoints are first put in a canonical order (frame, y, x),
the pairwise-distance comparison averages over interleaved subsets of that order (every K-th
keypoint in raster order: each subset spread over the whole image), and the posterior-noise
draws are taken in that order from a fixed seed. Every pair's contribution is summed per pair
of spatial tiles once (:class:`Regrouping`), so that the bootstrap over tiles of
:mod:`scalevae.analysis.recommend` re-weights these sums instead of recomputing distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import signal
from scipy.spatial.distance import pdist

from ._common import require_windows, scales_state, state_variable, state_z
from .density import latent_density

#: Keypoints per subset of the pairwise-distance statistic (m (m - 1) / 2 pairs each).
SUBSET_POINTS = 500
#: Most interleaved subsets averaged; a result with fewer than ``SUBSET_POINTS * MAX_SUBSETS``
#: valid keypoints uses every one of them (validation/CALIBRATION.md: how many are enough).
MAX_SUBSETS = 8
#: Posterior draws averaged for the noise floor.
NOISE_DRAWS = 3
#: Seed of the noise-floor draws: a constant, so the same result gives the same floor.
NOISE_SEED = 2
#: Spatial tiles (the bootstrap's blocks) per result at most; larger images get larger tiles.
MAX_TILES = 64
#: The regrouping curve is rounded to this before the rule reads it: far below its sampling
#: noise (~1e-2), far above float32 rounding of the latents (~1e-9 after the rank correlation),
#: so a rounding-level change of the latents cannot move a threshold decision.
CURVE_QUANTUM = 1e-6


def canonical_order(frame, y, x, tiebreak):
    """Indices that sort keypoints by (frame, y, x), then ``tiebreak`` (duplicated positions).

    Examples
    --------
    >>> canonical_order([0, 0, 0], [5.0, 1.0, 1.0], [0.0, 3.0, 2.0], [0, 0, 0]).tolist()
    [2, 1, 0]
    """
    return np.lexsort((np.asarray(tiebreak), np.asarray(x), np.asarray(y), np.asarray(frame)))


def position_subsets(n, m=SUBSET_POINTS, max_subsets=MAX_SUBSETS):
    """Interleaved subsets of ``range(n)`` (canonical order): subset j holds j, j + K, j + 2K...
    with K = ceil(n / m), so each subset spreads over the whole image; at most ``max_subsets``
    of the K, evenly spaced.

    Examples
    --------
    >>> [s.tolist() for s in position_subsets(7, m=3)]
    [[0, 3, 6], [1, 4], [2, 5]]
    """
    k = max(1, int(np.ceil(n / m)))
    chosen = np.unique(np.linspace(0, k - 1, min(k, max_subsets)).round().astype(int))
    return [np.arange(j, n, k) for j in chosen]


def tile_ids(frame, y, x, side, max_tiles=MAX_TILES):
    """Spatial tile (bootstrap block) of each keypoint: squares of ``side`` px per frame, the
    side doubled until at most ``max_tiles`` tiles hold keypoints; once a tile covers a whole
    frame, runs of consecutive frames are joined instead (a stack of more frames than
    ``max_tiles``). Returns (ids 0..T-1, T).

    Examples
    --------
    >>> f = np.repeat(np.arange(100), 4)
    >>> ids, n = tile_ids(f, np.tile([0, 0, 50, 50], 100), np.tile([0, 50, 0, 50], 100), 10)
    >>> n <= MAX_TILES, len(ids)
    (True, 400)
    """
    side = max(float(side), 1.0)
    frame, y, x = np.asarray(frame, int), np.asarray(y, float), np.asarray(x, float)
    extent = max(np.ptp(y), np.ptp(x)) + 1 if len(y) else 1.0
    frames_per_tile = 1
    while True:
        key = np.stack([frame // frames_per_tile, np.floor(y / side).astype(int),
                        np.floor(x / side).astype(int)], 1)
        _, ids = np.unique(key, axis=0, return_inverse=True)
        n_tiles = int(ids.max()) + 1 if len(ids) else 0
        if n_tiles <= max_tiles:
            return ids.ravel(), n_tiles
        if side <= extent:
            side *= 2
        else:  # one tile per frame already: join consecutive frames
            frames_per_tile *= 2


def _centred_ranks(z):
    """Ranks of the pairwise distances of points ``z`` (m, k), ties averaged, centred and
    scaled to [-0.5, 0.5]. Hand-written: scipy's rankdata sorts stably (mergesort), which the
    average over ties does not need; this is the hot path (benchmark in CALIBRATION.md)."""
    d = pdist(z)
    order = np.argsort(d)
    ds = d[order]
    new = np.concatenate([[True], ds[1:] != ds[:-1]])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(d))
    avg = 0.5 * (starts + ends + 1)  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(d))
    ranks[order] = np.repeat(avg, ends - starts)
    return (ranks - 0.5 * (len(d) + 1)) / max(len(d), 1)


@dataclass(frozen=True)
class Regrouping:
    """Pairwise-distance rank products of every subset, summed per pair of tiles.

    ``sums[s, t * T + u, f]``: feature ``f`` summed over subset ``s``'s keypoint pairs with
    one keypoint in tile ``t`` and one in tile ``u``. Features: 1, then per window i ``R_i``,
    ``R_i^2``, ``R_0 R_i``, ``R_(i-1) R_i``, then per window and posterior draw d ``N_id``,
    ``N_id^2``, ``R_i N_id`` (``R``: ranks of the latent distances, ``N``: of a posterior
    sample's). A bootstrap that draws tile t ``c_t`` times weights each pair ``c_t c_u``.
    """

    windows: np.ndarray
    sums: np.ndarray
    n_tiles: int
    n_draws: int
    n_points: int


def _tile_sums(R, N, pair_tile, n_cells):
    """The features of Regrouping summed per pair of tiles, (n_cells, K), one column at a time
    (the pairs x features matrix would not fit for long window lists)."""
    def total(v):
        return np.bincount(pair_tile, weights=v, minlength=n_cells)

    prev = np.concatenate([R[:1], R[:-1]])
    cols = [total(None).astype(float)]
    cols += [total(r) for r in R] + [total(r * r) for r in R]
    cols += [total(R[0] * r) for r in R] + [total(p * r) for p, r in zip(prev, R)]
    for fn in (lambda r, n: n, lambda r, n: n * n, lambda r, n: r * n):
        cols += [total(fn(R[i], n)) for i in range(len(R)) for n in N[i]]
    return np.stack(cols, 1)


def regrouping_evidence(ds, state=None, n_points=SUBSET_POINTS, max_subsets=MAX_SUBSETS,
                        n_draws=NOISE_DRAWS):
    """The :class:`Regrouping` of one result: ranks computed once, in canonical order.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> ev = regrouping_evidence(make_fake_result(n_windows=4))
    >>> ev.sums.shape[-1] == 1 + 4 * 4 + 3 * 4 * NOISE_DRAWS, ev.n_points
    (True, 120)
    """
    state = scales_state(ds, state)
    z = state_z(ds, state)
    windows = z["window"].values.astype(int)
    zz = z.values
    n = zz.shape[1]
    frame = ds["frame"].values if "frame" in ds.coords else np.zeros(n, int)
    y = ds["y"].values if "y" in ds.coords else np.zeros(n)
    x = ds["x"].values if "x" in ds.coords else np.zeros(n)
    order = canonical_order(frame, y, x, np.nan_to_num(zz[0, :, 0]))
    ok = order[np.isfinite(zz[:, order]).all(axis=(0, 2))]
    zz = zz[:, ok]
    sd = None
    if n_draws and "z_std" in ds:
        sd = np.nan_to_num(state_variable(ds, "z_std", state)
                           .transpose("window", "point", "latent").values[:, ok])
    tiles, n_tiles = tile_ids(frame[ok], y[ok], x[ok], windows[-1] / 2)
    rng = np.random.default_rng(NOISE_SEED)  # consumed in canonical order: order-free draws
    sums = []
    for sub in position_subsets(len(ok), n_points, max_subsets):
        R = np.stack([_centred_ranks(zz[i, sub]) for i in range(len(windows))])
        draws = n_draws if sd is not None else 0
        N = np.stack([np.stack([_centred_ranks(zz[i, sub] + sd[i, sub] * rng.standard_normal(
            zz[i, sub].shape)) for _ in range(draws)]) for i in range(len(windows))]) \
            if draws else np.zeros((len(windows), 0, R.shape[1]))
        I, J = np.triu_indices(len(sub), 1)  # the order of pdist
        pair_tile = tiles[sub][I] * n_tiles + tiles[sub][J]
        sums.append(_tile_sums(R, N, pair_tile, n_tiles * n_tiles))
    return Regrouping(windows, np.stack(sums), n_tiles, int(draws if sums else 0), len(ok))


def _weighted_rho(S0, Sa, Sb, Saa, Sbb, Sab):
    """Weighted Pearson correlation from weighted sums (1 where both are constant, 0 where one
    is)."""
    va, vb = S0 * Saa - Sa * Sa, S0 * Sbb - Sb * Sb
    cov = S0 * Sab - Sa * Sb
    ok = (va > 0) & (vb > 0)
    rho = np.where(ok, cov / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0)
    return np.where((va <= 0) & (vb <= 0), 1.0, rho)


def regrouping_curves(ev, counts):
    """Regrouping per tile weighting: ``counts`` (B, T) draws of each tile (ones: the data as
    they are). Returns a dict of (B, W) arrays: ``from_first`` (the rule's curve, rounded to
    :data:`CURVE_QUANTUM`), ``structure_change``, ``noise_floor``, ``excess_change``
    (NaN at the first window) and (B,) ``significant``."""
    counts = np.asarray(counts, float)
    W, D, T = len(ev.windows), ev.n_draws, ev.n_tiles
    rho0, rhop, floor = 0.0, 0.0, 0.0
    for F in ev.sums:  # one subset at a time: (T*T, K)
        M = (counts @ F.reshape(T, -1)).reshape(len(counts), T, -1)
        Q = np.einsum("bt,btk->bk", counts, M)
        S0 = Q[:, :1]
        Sa, Saa, S0a, Spa = (Q[:, 1 + k * W:1 + (k + 1) * W] for k in range(4))
        prev = np.concatenate([Sa[:, :1], Sa[:, :-1]], 1)
        prev2 = np.concatenate([Saa[:, :1], Saa[:, :-1]], 1)
        rho0 = rho0 + _weighted_rho(S0, Sa[:, :1], Sa, Saa[:, :1], Saa, S0a)
        rhop = rhop + _weighted_rho(S0, prev, Sa, prev2, Saa, Spa)
        if D:
            base = 1 + 4 * W
            Sn, Snn, Srn = (Q[:, base + k * W * D:base + (k + 1) * W * D].reshape(-1, W, D)
                            for k in range(3))
            r = _weighted_rho(S0[..., None], Sa[..., None], Sn, Saa[..., None], Snn, Srn)
            floor = floor + np.clip(1.0 - r, 0.0, 1.0).mean(-1)
    n_sub = len(ev.sums)
    rho0, rhop = rho0 / n_sub, rhop / n_sub
    floor = np.broadcast_to(np.asarray(floor, float) / n_sub, rho0.shape)
    struct = np.clip(1.0 - rhop, 0.0, 1.0)
    excess = np.clip(struct[:, 1:] - np.maximum(floor[:, 1:], floor[:, :-1]), 0.0, None)
    significant = (excess > 0).any(1)
    from_first = np.clip(1.0 - rho0, 0.0, 1.0)
    floored = np.clip(from_first - np.maximum(floor, floor[:, :1]), 0.0, None)
    from_first = np.where(significant[:, None], floored, from_first)
    from_first[:, 0] = 0.0
    nan = np.full((len(counts), 1), np.nan)
    return {"from_first": np.round(from_first / CURVE_QUANTUM) * CURVE_QUANTUM,
            "structure_change": np.concatenate([nan, struct[:, 1:]], 1),
            "noise_floor": np.array(floor), "significant": significant,
            "excess_change": np.concatenate([nan, excess], 1)}


def _standardized(ds, state):
    """``ds`` with each window's latents centred on their median and divided by their
    interquartile range (per latent), so densities compare shapes, not the overall scale."""
    z = state_z(ds, state)
    med = z.median("point")
    iqr = z.quantile(0.75, "point") - z.quantile(0.25, "point")
    iqr = iqr.where(iqr > 0, 1.0).drop_vars("quantile", errors="ignore")
    zs = ((z - med) / iqr).expand_dims(state=[state])
    return xr.Dataset({"z_mean": zs.transpose("state", "window", "point", "latent")})


def length_scales(ds, state=None, density=None, n_resamples=None, evidence=None,
                  check_state=True, check_evidence=None):
    """Characteristic length scales: how the keypoints' latent relations regroup with the window,
    and the recommended window with its uncertainty.

    **Regrouping.** ``structure_change`` (window i against i - 1) and ``change_from_first``
    (window i against the smallest window): 1 - Spearman correlation of the keypoints' pairwise
    latent distances, in [0, 1]. Invariant to any rotation, shift or uniform scaling of the
    latent space, it measures a change of which keypoints resemble which, not a drift of the
    encoder. It is averaged over interleaved subsets of :data:`SUBSET_POINTS` keypoints in
    canonical (frame, y, x) order (every keypoint when there are at most
    ``SUBSET_POINTS * MAX_SUBSETS``): the same latents in any point order give the same numbers.

    **Noise floor.** ``noise_floor`` is the regrouping the posterior width ``z_std`` alone
    produces at one window (means against a posterior sample, :data:`NOISE_DRAWS` draws from a
    fixed seed in canonical order); only regrouping above the larger floor of the two windows
    counts (``excess_change``, and ``change_from_first`` less the floor). If no window regroups
    the keypoints above it, ``significant`` is False and the raw regrouping is read.

    **Rule and answer.** :func:`scalevae.analysis.multiscale.find_scales` reads every rise of
    ``change_from_first`` (``rise_*`` on dim ``rise``; ``still_rising`` for these data as they
    are). The answer comes from the bootstrap of
    :func:`scalevae.analysis.recommend.recommend` (spatial tiles resampled): ``probability`` of
    each window, ``recommended_window`` (the most probable), ``recommended_low`` ..
    ``recommended_high`` (the interval holding 90 % of it) and ``conclusive`` (its one notion of
    a trustworthy answer; see there); ``gradual``: the answer is a gradual regrouping, no
    single size. ``density_change`` (Hellinger distance of standardised
    latent densities), ``change``, ``score`` and its ``peak`` flags stay as evidence.

    Parameters
    ----------
    ds : xarray.Dataset
        Result Dataset with at least two windows.
    state : {"instant", "final"}, optional
        Default: the state the result's recommendation reads (``recommended_window_state``;
        :data:`scalevae.config.SCALES_STATE` for a new result).
    density : xarray.DataArray, optional
        Densities to compare instead of the standardised ones.
    n_resamples : int, optional
        Bootstrap resamples (default :data:`scalevae.analysis.recommend.N_RESAMPLES`).
    evidence : Regrouping, optional
        :func:`regrouping_evidence` of ``ds`` and ``state``, when the caller holds it already.
    check_state, check_evidence
        Whether the answer is checked against the result's other state, and that state's
        precomputed evidence (:func:`scalevae.analysis.recommend.recommend`).

    Returns
    -------
    scales : xarray.Dataset
        On ``window``: ``density_change``, ``structure_change``, ``noise_floor``,
        ``excess_change``, ``change``, ``score``, ``peak``, ``prominence``,
        ``change_from_first``, ``probability``; 0-d ``recommended_window``,
        ``recommended_low``, ``recommended_high``, ``conclusive``, ``significant``,
        ``still_rising``, ``gradual``, ``n_resamples``; rises on dim ``rise``.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> s = length_scales(make_fake_result(n_windows=6))
    >>> int(s["recommended_window"]) in s["window"].values
    True
    """
    from .multiscale import find_scales
    from .recommend import CHECK_VARS, N_RESAMPLES, recommend

    state = scales_state(ds, state)
    z = state_z(ds, state)
    windows = z["window"].values.astype(int)
    require_windows(len(windows), "length scales need")
    if density is None:
        density = latent_density(_standardized(ds, state), state, grid_size=48)
    p = density.transpose("window", ...).values.reshape(len(windows), -1)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-300)
    hell = np.sqrt(np.clip(1.0 - np.sqrt(p[1:] * p[:-1]).sum(1), 0.0, 1.0))

    ev = regrouping_evidence(ds, state) if evidence is None else evidence
    c = {k: v[0] for k, v in regrouping_curves(ev, np.ones((1, ev.n_tiles))).items()}
    significant = bool(c["significant"])
    struct, excess = c["structure_change"][1:], c["excess_change"][1:]
    log_step = np.log(windows[1:] / windows[:-1])
    # the score uses the regrouping only: the KDE distance's noise floor, divided by the small
    # log-steps of large windows, would favour the largest window
    score = (excess if significant else struct) / log_step
    pad = np.concatenate([[score.min() - 1], score, [score.min() - 1]])  # ends count as peaks
    peaks, props = signal.find_peaks(pad, prominence=0)
    prom = np.full(len(windows), np.nan)
    is_peak = np.zeros(len(windows), bool)
    if len(peaks) and props["prominences"].max() > 0:
        prom[peaks] = props["prominences"]
        is_peak[peaks] = True
    nan = np.array([np.nan])
    out = xr.Dataset(
        {"density_change": ("window", np.concatenate([nan, hell])),
         "structure_change": ("window", c["structure_change"]),
         "noise_floor": ("window", c["noise_floor"]),
         "excess_change": ("window", c["excess_change"]),
         "change": ("window", np.concatenate([nan, 0.5 * (hell + struct)])),
         "score": ("window", np.concatenate([nan, score])),
         "peak": ("window", is_peak), "prominence": ("window", prom),
         "change_from_first": ("window", c["from_first"]),
         "significant": ((), significant)},
        coords={"window": windows}, attrs={"state": state})
    fs = find_scales(out)
    rec = recommend(ds, state=state, n_resamples=n_resamples or N_RESAMPLES, evidence=[ev],
                    check_state=check_state, check_evidence=check_evidence)
    out = out.assign(
        still_rising=fs["still_rising"], gradual=rec["answer_kind"] == "gradual",
        rise_onset=fs["onset"],
        rise_middle=fs["middle"], rise_end=fs["end"], rise_strength=fs["strength"],
        rise_rate=fs["rate"], probability=rec["probability"],
        recommended_window=rec["recommended_window"], recommended_low=rec["interval_low"],
        recommended_high=rec["interval_high"], conclusive=rec["conclusive"],
        conclusive_share=rec["conclusive_share"], answer_kind=rec["answer_kind"],
        n_resamples=rec["n_resamples"],
        **{k: rec[k] for k in CHECK_VARS if k in rec})
    out.attrs.update({k: v for k, v in rec.attrs.items() if k != "state"})
    out.attrs["rule"] = f"{fs.attrs['rule']}; answer: {rec.attrs['rule']}"
    out.attrs["note"] = "; ".join(n for n in (fs.attrs["note"], rec.attrs["note"]) if n)
    return out
