"""Model-free baselines beside the recommended window: how far the latents group keypoints
like each patch's mean and standard deviation do (:func:`patch_statistics`), and the window
range to rerun with around the image's spectral period (:func:`bracketing_windows`)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage as ndi
from scipy import stats

from ..errors import ScaleVAEError
from ._common import scales_state

__all__ = ["bracketing_windows", "patch_statistics"]


# --------------------------------------------------------------------------- baselines


def _keypoint_stats(frames, frame, y, x, w):
    """Mean and std of the w x w box around each keypoint (nearest pixel centre)."""
    out = np.empty((len(frame), 2))
    iy = np.clip(np.rint(y).astype(int), 0, frames.shape[1] - 1)
    ix = np.clip(np.rint(x).astype(int), 0, frames.shape[2] - 1)
    for f in np.unique(frame):
        img = frames[int(f)].astype(float)
        m = ndi.uniform_filter(img, w, mode="reflect")
        m2 = ndi.uniform_filter(img * img, w, mode="reflect")
        sel = frame == f
        out[sel, 0] = m[iy[sel], ix[sel]]
        out[sel, 1] = np.sqrt(np.clip(m2 - m * m, 0, None))[iy[sel], ix[sel]]
    return out


def _ranks(v):
    from scipy.spatial.distance import pdist

    return stats.rankdata(pdist(v)).astype(float)


def _one_minus_rho(ra, rb):
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return 0.0 if np.ptp(ra) == np.ptp(rb) else 1.0
    return float(np.clip(1.0 - np.corrcoef(ra, rb)[0, 1], 0.0, 1.0))




def bracketing_windows(period, frame_shape=None, n=11, ran=None):
    """A window range around a period, from a third of it to twice it: ``"A:B:S"`` (px).

    What to rerun with when the regrouping is gradual over the default range: a range that
    brackets the one rise a structure of that size gives (it starts near half the size and
    levels off by about 1.5 times it). Windows are kept within half the smaller frame side.
    The advice never repeats the range just run (``ran``: its windows): a suggestion with the
    same first and last window is widened by half each way (shifted down when the frame
    caps it), and made finer when neither end can move.

    Examples
    --------
    >>> bracketing_windows(11.8)
    '4:24:2'
    >>> bracketing_windows(40, frame_shape=(256, 256))
    '13:80:7'
    >>> bracketing_windows(11.8, ran=range(4, 25, 2))
    '4:36:3'
    """
    period = float(period)
    if not period > 0:
        raise ScaleVAEError(f"period must be positive (got {period})")
    cap = int(min(frame_shape[-2:])) // 2 if frame_shape is not None else None
    low = max(4, int(round(period / 3)))
    high = int(round(2 * period))
    if cap is not None:
        high = min(high, cap)
    high = max(high, low + 2)
    step = max(1, int(round((high - low) / (n - 1))))
    if ran is not None and len(ran) and (low, high) == (int(min(ran)), int(max(ran))):
        wide = max(4, int(round(low / 1.5))), int(round(high * 1.5))
        if cap is not None:
            wide = wide[0], max(min(wide[1], cap), wide[0] + 2)
        if wide == (low, high):
            step = max(1, step // 2)  # neither end can move: finer steps
        else:
            low, high = wide
            step = max(1, int(round((high - low) / (n - 1))))
    return f"{low}:{high}:{step}"


def patch_statistics(image, result, state=None, n_points=500, seed=1):
    """Patch mean and std as a descriptor: the baseline the latents should beat.

    For each window, every keypoint is described by the mean and the standard deviation of the
    ``w x w`` box around it (standardised over the keypoints). From these two numbers the same
    regrouping curve as :func:`scalevae.analysis.length_scales` is computed (1 - Spearman
    correlation of pairwise distances against the smallest window, no noise floor: the
    statistics are exact), and per window ``agreement``: the Spearman correlation between the
    keypoints' pairwise distances in (mean, std) and in the latents. High agreement means the
    latents mostly group keypoints by brightness and contrast; :func:`find_scales` on the
    returned curve gives the baseline's length scales.

    Parameters
    ----------
    image : array_like
        The 2-D image or ``(frame, y, x)`` stack the result was computed from.
    result : xarray.Dataset
        Result Dataset of that image (keypoints ``frame``, ``y``, ``x`` and ``z_mean``).
    state : {"instant", "final"}, optional
        Default: the state the result's recommendation reads (as
        :func:`scalevae.analysis.length_scales`).
    n_points : int
        Keypoints compared (a fixed random subset).
    seed : int
        Seed of that subset.

    Returns
    -------
    xarray.Dataset
        On ``window``: ``change_from_first`` (the baseline's regrouping curve), ``agreement``;
        0-d ``significant`` (True: the statistics are exact).

    Examples
    --------
    >>> import numpy as np
    >>> from scalevae.testing import make_fake_result
    >>> ds = make_fake_result(n_windows=4)
    >>> img = np.random.default_rng(0).normal(size=(80, 80))
    >>> b = patch_statistics(img, ds)
    >>> b["agreement"].dims, float(b["change_from_first"][0])
    (('window',), 0.0)
    """
    # not cast whole: _keypoint_stats casts frame by frame, so a stack read on demand (a
    # frame source) stays on disk but for the frames of the sampled keypoints
    frames = getattr(image, "data", image)
    frames = frames if getattr(frames, "lazy", False) else np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise ScaleVAEError(f"image must be 2-D or (frame, y, x) (got shape {frames.shape})")
    if "z_mean" not in result:
        raise ScaleVAEError("result must be a scalevae result Dataset (with z_mean)")
    z = result["z_mean"]
    if "state" in z.dims:
        z = z.sel(state=scales_state(result, state))
    z = z.transpose("window", "point", "latent")
    windows = z["window"].values.astype(int)
    frame = result["frame"].values.astype(int) if "frame" in result else np.zeros(z.sizes["point"], int)
    if frame.max() >= len(frames):
        raise ScaleVAEError(f"the result has keypoints on frame {frame.max()} but the image has "
                            f"{len(frames)} frame(s); pass the image the result was computed from")
    zz = z.values
    ok = np.flatnonzero(np.isfinite(zz).all(axis=(0, 2)))
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(ok, min(len(ok), int(n_points)), replace=False))
    y, x = result["y"].values[sub], result["x"].values[sub]
    ranks, agree = [], []
    for i, w in enumerate(windows):
        s = _keypoint_stats(frames, frame[sub], y, x, int(w))
        s = (s - s.mean(0)) / np.where(s.std(0) > 0, s.std(0), 1.0)
        r = _ranks(s)
        ranks.append(r)
        agree.append(1.0 - _one_minus_rho(r, _ranks(zz[i, sub])))
    curve = np.array([_one_minus_rho(ranks[0], r) for r in ranks])
    curve[0] = 0.0
    return xr.Dataset({"change_from_first": ("window", curve),
                       "agreement": ("window", np.array(agree)),
                       "significant": ((), True)},
                      coords={"window": windows},
                      attrs={"rule": "patch mean and std per keypoint; regrouping = 1 - Spearman "
                                     "of pairwise distances vs the smallest window"})
