"""Every length scale the latent regrouping shows, and two baselines to compare it with.

:func:`find_scales` reads the regrouping curve of :func:`scalevae.analysis.length_scales`
(``change_from_first``: 1 - rank correlation of the keypoints' pairwise latent distances at each
window against the smallest window, less the posterior-noise floor) and reports each *rise* of
it (onset, middle, end window, strength), says when the window range stops before the curve
levels off, and names the recommended window from the rises.

Baselines that need no model: :func:`~scalevae.spectrum.spectral_period` (the dominant period
of the image's power spectrum, from :mod:`scalevae.spectrum`) and :func:`patch_statistics` (the same regrouping curve computed from each
patch's mean and standard deviation instead of the latents, and how far the latents' groups
agree with those of these two numbers).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr

from ..config import PRONOUNCED_PEAK  # noqa: F401  (read here before the spectrum had a module)
from ..errors import ScaleVAEError
# the spectral baselines live in scalevae.spectrum; imported here under their old home
from ..spectrum import (noise_limited, pronounced_period, spectral_baseline,  # noqa: F401
                        spectral_peak, spectral_period)
# the model-free baselines have their own module; imported here under their old home
from .baselines import bracketing_windows, patch_statistics  # noqa: F401

__all__ = ["find_scales", "read_curve", "spectral_peak", "spectral_period", "spectral_baseline",
           "pronounced_period", "bracketing_windows", "noise_limited", "patch_statistics"]

#: A rise is a run of windows whose regrouping grows at least this share of the fastest growth.
SLOPE_FRACTION = 0.25
#: ... and adds at least this share of the curve's maximum (smaller rises are noise).
MIN_STRENGTH = 0.1
#: The curve "still rises" at the largest window when its last two steps added more than this
#: share of its maximum.
STILL_RISING = 0.1
#: The widest rise that still singles out one size: its end window over its first rising
#: window (the window after its onset, so that the test does not depend on the window step).
#: One structural size regroups the keypoints while the window grows from about half of it to
#: about 1.5 times it (the domain generator's period P = 24 px: first rising window 12-16 px,
#: end 32-40 px, a factor of 2.2-2.7); a wider rise is a gradual change over most of the range,
#: whose half-way window is set by where the range starts and stops. Measured on the domain
#: periods 12-40 px by validation/calibration.py (validation/CALIBRATION.md).
WIDEST_RISE = 3.0


# --------------------------------------------------------------------------- rises


def _curve(scales_or_result, state):
    """(windows, change_from_first, significant, scales) from a result or length_scales()."""
    ds = scales_or_result
    if "change_from_first" not in ds:
        if "z_mean" not in ds:
            raise ScaleVAEError("find_scales needs a result Dataset (with z_mean) or the output "
                                "of scalevae.analysis.length_scales (with change_from_first)")
        from . import length_scales  # lazy: this module is imported by the package itself

        ds = length_scales(ds, state=state)
    w = ds["window"].values.astype(int)
    c = np.nan_to_num(ds["change_from_first"].values.astype(float))
    sig = bool(ds["significant"]) if "significant" in ds else True
    return w, c, sig, ds


def _runs(windows, env, start, slope_fraction, min_strength):
    """Rises of the monotone curve ``env`` among the steps from ``start`` on."""
    top = env[-1]
    slope = np.diff(env) / np.log(windows[1:] / windows[:-1])
    s = slope[start:]
    if len(s) == 0 or s.max() <= 0:
        return []
    fast = s >= slope_fraction * s.max()
    # bridge single-window gaps: a rise that pauses for one step is still one rise
    for i in range(1, len(fast) - 1):
        if not fast[i] and fast[i - 1] and fast[i + 1]:
            fast[i] = True
    rises, i = [], 0
    while i < len(fast):
        if fast[i]:
            j = i
            while j + 1 < len(fast) and fast[j + 1]:
                j += 1
            onset, end = start + i, start + j + 1  # step k goes from window k to window k + 1
            strength = (env[end] - env[onset]) / top
            if strength >= min_strength:
                rises.append((onset, end, float(strength), float(s[i:j + 1].max())))
            i = j + 1
        else:
            i += 1
    return rises


def _rises(windows, curve, slope_fraction=SLOPE_FRACTION, min_strength=MIN_STRENGTH):
    """Rises of ``curve`` over ``windows``: (list of (onset, end, strength, rate), envelope,
    whether the first rise is a one-step jump from the smallest window).

    The curve is first made monotone (its running maximum: a dip that is later regained is
    noise, not a scale). Its growth per unit of log-window, ``slope``, marks the windows where
    the regrouping is under way; contiguous runs with ``slope >= slope_fraction * max(slope)``
    (gaps of one window bridged) are the rises. A rise runs from the window before its first
    growing step (onset) to its last growing window (end); its strength is what the curve adds
    over it, as a share of the curve's maximum. A one-step jump from the smallest window (the
    smallest window cutting through the image's basic unit) is kept as a rise of its own, and
    the others are found among the remaining steps, relative to their own fastest growth.
    """
    env = np.maximum.accumulate(curve)
    if len(windows) < 2 or env[-1] <= 0:
        return [], env, False
    rises = _runs(windows, env, 0, slope_fraction, min_strength)
    jump = bool(rises and rises[0][:2] == (0, 1) and len(windows) > 2)
    if jump:
        rises = rises[:1] + _runs(windows, env, 1, slope_fraction, min_strength)
    return rises, env, jump


class CurveReading(NamedTuple):
    """What the rule reads from one regrouping curve (indices into the windows)."""

    rises: list
    envelope: np.ndarray
    middles: list
    recommended: int
    low: int
    high: int
    first: int
    beyond_jump: bool
    still_rising: bool
    gradual: bool
    conclusive: bool


def read_curve(w, c, slope_fraction=SLOPE_FRACTION, min_strength=MIN_STRENGTH):
    """The rule of :func:`find_scales` on plain arrays (``w`` windows, ``c`` curve): NumPy
    only, so that the bootstrap of :mod:`scalevae.analysis.recommend` can run it per resample.

    Examples
    --------
    >>> w = np.arange(8, 68, 4)
    >>> r = read_curve(w, 1 / (1 + np.exp(-(w - 22) / 2.0)))
    >>> int(w[r.recommended]), r.conclusive
    (24, True)
    """
    rises, env, jump = _rises(w, c, slope_fraction, min_strength)
    start_jump = rises[0] if jump else None
    rises.sort(key=lambda r: -r[2])
    top = env[-1] if len(env) else 0.0
    middles = []
    for onset, end, _, _ in rises:
        half = env[onset] + 0.5 * (env[end] - env[onset])
        middles.append(onset + int(np.argmax(env[onset:end + 1] >= half)))
    later = [i for i, r in enumerate(rises) if r is not start_jump]
    if rises:
        pick = later[0] if later else 0
        rec_i, lo_i, hi_i = middles[pick], rises[pick][0], rises[pick][1]
        if not later:
            # only the smallest window differs (it cuts through the basic unit): nothing in
            # the range singles out a size, so the range is all of it
            lo_i, hi_i = 0, len(w) - 1
    else:
        rec_i = lo_i = hi_i = len(w) - 1
    still = bool(len(w) >= 3 and top > 0 and (env[-1] - env[-3]) > STILL_RISING * top)
    first = min(lo_i + 1, hi_i)  # the rise's first rising window
    gradual = bool(rises) and bool(later) and w[hi_i] > WIDEST_RISE * w[first]
    conclusive = bool(rises) and bool(later) and not (still and hi_i == len(w) - 1) \
        and not gradual
    return CurveReading(rises, env, middles, int(rec_i), int(lo_i), int(hi_i), int(first),
                        bool(later), still, bool(gradual), bool(conclusive))


def find_scales(scales, state=None, slope_fraction=SLOPE_FRACTION, min_strength=MIN_STRENGTH):
    """Every rise of the latent regrouping with the window, and the window it recommends.

    The regrouping curve is ``change_from_first`` of :func:`scalevae.analysis.length_scales`:
    how far the keypoints' latent relations have moved from the smallest window's, above the
    posterior-noise floor. It rises while structure of a new size enters the windows and levels
    off once larger windows only add more of the same; an image with several characteristic
    sizes gives several rises. The curve is made monotone (running maximum), its growth per
    unit of ``ln(window)`` is taken per step, and each contiguous run of steps growing at least
    ``slope_fraction`` as fast as the fastest (one-step pauses bridged) that adds at least
    ``min_strength`` of the curve's maximum is one rise:

    - ``onset``: the last window before the rise, ``end``: the window where it levels off;
    - ``middle``: the first window at which the curve has covered half of the rise;
    - ``strength``: the share of the curve's maximum the rise adds (rises sum to <= 1);
    - ``rate``: its fastest growth per unit of ``ln(window)``.

    **Start jump.** When the first step (smallest to second window) alone is a rise, the
    smallest window cuts through the image's basic unit (a bond, a void, a grain) and the next
    window fills it in: the curve jumps at once, then follows the image's larger structure. That
    jump is kept as a rise of its own, and the other rises are found among the remaining steps,
    relative to their own fastest growth (otherwise the jump's slope would hide them).

    **Recommended window.** The middle of the strongest rise other than a start jump (the
    start jump only when there is no other rise). ``recommended_low`` .. ``recommended_high``
    are that rise's onset and end.

    **Range too short.** ``still_rising`` is True when the curve's last two steps still add
    more than ``STILL_RISING`` (10 %) of its maximum: the window range stops before the
    regrouping levels off, the strongest scale may lie beyond it, and ``attrs["note"]`` says to
    extend the range. ``conclusive`` is False when the recommended window's own rise is still
    under way at the largest window (or there is no rise): the number is then no answer, only
    the place to extend the range from.

    **Gradual change.** ``conclusive`` is also False, and ``gradual`` True, when the
    recommended rise spans more than a factor :data:`WIDEST_RISE` (3) in window size (from its
    first rising window to its end): the
    regrouping then changes steadily over most of the range, no single size stands out, and
    the half-way window moves with the range chosen (on domain images of period 12-40 px with
    windows 8-64 px such rises answered 24-32 px whatever the period).

    Parameters
    ----------
    scales : xarray.Dataset
        A result Dataset (``z_mean``), or the output of
        :func:`scalevae.analysis.length_scales` (``change_from_first``).
    state : {"instant", "final"}, optional
        State analysed when ``scales`` is a result (default: the state its recommendation
        reads, as in :func:`scalevae.analysis.length_scales`).
    slope_fraction : float
        Share of the fastest growth that still counts as rising, in (0, 1].
    min_strength : float
        Smallest rise reported, as a share of the curve's maximum, in [0, 1).

    Returns
    -------
    xarray.Dataset
        On dim ``rise`` (strongest first): ``onset``, ``middle``, ``end`` (px), ``strength``,
        ``rate``. On ``window``: ``curve`` (the regrouping) and ``envelope`` (its running
        maximum). 0-d: ``recommended_window``, ``recommended_low``, ``recommended_high`` (px),
        ``still_rising``, ``gradual``, ``conclusive`` and ``significant`` (bool, the last from
        length_scales). ``attrs["rule"]`` states the rule, ``attrs["note"]`` any caveat.

    Examples
    --------
    >>> from scalevae.testing import make_fake_result
    >>> s = find_scales(make_fake_result(n_windows=8))
    >>> s.sizes["rise"] >= 1, int(s["recommended_window"]) in s["window"].values
    (True, True)
    """
    if not 0 < slope_fraction <= 1:
        raise ScaleVAEError(f"slope_fraction must lie in (0, 1] (got {slope_fraction})")
    if not 0 <= min_strength < 1:
        raise ScaleVAEError(f"min_strength must lie in [0, 1) (got {min_strength})")
    w, c, significant, _ = _curve(scales, state)
    r = read_curve(w, c, slope_fraction, min_strength)
    rises, env, middles = r.rises, r.envelope, r.middles
    rec_i, lo_i, hi_i, first = r.recommended, r.low, r.high, r.first
    still, gradual, conclusive = r.still_rising, r.gradual, r.conclusive
    note = []
    if rises and not r.beyond_jump:
        note.append("the regrouping only jumps from the smallest to the next window and "
                    "stays flat after it: no length scale above the smallest window's unit "
                    "in this window range")
    elif not rises:
        note.append("the regrouping does not rise with the window: no length scale in this "
                    "window range")
    if gradual:
        note.append(f"the recommended rise spans {w[first]}-{w[hi_i]} px, a factor of "
                    f"{w[hi_i] / w[first]:.1f} in window size: the regrouping changes gradually "
                    "over most of the range and no single size stands out; its half-way window "
                    "depends on where the range starts and stops (compare the image's spectral "
                    "period, or a range from a third of the expected size to twice it)")
    if still:
        note.append(f"the regrouping still rises at the largest window ({w[-1]} px): the "
                    "window range stops before it levels off; extend the range (larger "
                    "windows) before reading a length scale from it"
                    + ("" if conclusive else ", the recommended window's own rise is "
                       "unfinished"))
    if not significant:
        note.append("no window regroups the keypoints above their posterior noise (see "
                    "length_scales): the rises are weak evidence")
    i = np.array([r[0] for r in rises], int)
    j = np.array([r[1] for r in rises], int)
    return xr.Dataset(
        {"onset": ("rise", w[i]), "middle": ("rise", w[np.array(middles, int)]),
         "end": ("rise", w[j]), "strength": ("rise", np.array([r[2] for r in rises], float)),
         "rate": ("rise", np.array([r[3] for r in rises], float)),
         "curve": ("window", c), "envelope": ("window", env),
         "recommended_window": ((), int(w[rec_i])), "recommended_low": ((), int(w[lo_i])),
         "recommended_high": ((), int(w[hi_i])), "still_rising": ((), still),
         "gradual": ((), gradual), "conclusive": ((), conclusive),
         "significant": ((), significant)},
        coords={"window": w, "rise": np.arange(len(rises))},
        attrs={"rule": "rises: runs of windows where the running maximum of the latent "
                       f"regrouping grows >= {slope_fraction:g} x its fastest rate per "
                       f"ln(window) and adds >= {min_strength:g} of its maximum; recommended: "
                       "the middle (half-way window) of the strongest rise other than a "
                       "one-step jump from the smallest window (a basic unit the smallest "
                       "window cuts through)",
               "note": "; ".join(note)})
