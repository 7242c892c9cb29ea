"""Does the SI-VAE's recommended window match the PTO domain period? Numbers for pto_length_scale.md.

Run after ``scalevae run ../shared/data/real/PTO_Funakubo0004.h5 --channel AmplitudeRetrace
--keypoints grid:4 --windows 8:64:4 --out runs/pto``::

    python docs/pto_length_scale.py runs/pto

It measures, from the run folder alone (``result.nc`` and ``input.npy``):

1. the domain period of the input image, independently of the VAE: the peak of the radially
   averaged power spectral density (PSD) of the amplitude image (plane removed, Hann window),
   refined by a parabola through the log-PSD around the peak; as a cross-check the first
   minimum of the radially averaged autocorrelation (half a period for a periodic pattern);
2. the recommended window of ``scalevae.analysis.length_scales`` (final and instant states);
3. whether the latent distribution broadens with the window: per window, the latent
   information ``sum_k 1/2 ln(1 + Var(z_k) / mean(z_std_k^2))`` (nats; the spread of the
   keypoints' latent means relative to the encoder's own uncertainty, i.e. how many
   distinguishable states the keypoints occupy) and the plain spread ``std(z_k)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from scalevae import analysis as an
from scalevae.results import load_result


def _radial_mean(values, radius, n):
    """Mean of ``values`` over rings of integer ``radius`` 0..n-1."""
    r = np.rint(radius).astype(int).ravel()
    keep = r < n
    total = np.bincount(r[keep], values.ravel()[keep], n)
    count = np.bincount(r[keep], minlength=n)
    return total / np.maximum(count, 1)


def _detrended(img):
    """The image minus its best-fit plane (PFM images carry a slope the PSD should not see)."""
    ny, nx = img.shape
    yy, xx = np.mgrid[:ny, :nx]
    a = np.column_stack([np.ones(img.size), yy.ravel(), xx.ravel()])
    coef = np.linalg.lstsq(a, img.ravel(), rcond=None)[0]
    return img - (a @ coef).reshape(img.shape)


def psd_period(img):
    """Domain period (px) from the peak of the radially averaged PSD.

    Returns a dict: ``k`` (cycles per image at the peak, parabola-refined), ``period_px``,
    the half-maximum range of the peak as periods, and the spectrum itself.
    """
    img = _detrended(np.asarray(img, float))
    n = min(img.shape)
    win = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    power = np.abs(np.fft.fft2(img * win)) ** 2
    fy = np.fft.fftfreq(img.shape[0])[:, None] * n  # cycles per image (square images: exact)
    fx = np.fft.fftfreq(img.shape[1])[None, :] * n
    psd = _radial_mean(power, np.hypot(fy, fx), n // 2)
    # k = 0 is the mean and k = 1 the Hann window's own leakage: a period of the whole image
    # is no domain period.
    k0 = 2
    i = k0 + int(np.argmax(psd[k0:]))
    lp = np.log(psd[i - 1:i + 2])
    denom = lp[0] - 2 * lp[1] + lp[2]
    k = i + (0.5 * (lp[0] - lp[2]) / denom if i > k0 and denom < 0 else 0.0)
    half = psd[i] / 2
    lo = i
    while lo > k0 and psd[lo - 1] >= half:
        lo -= 1
    hi = i
    while hi < len(psd) - 1 and psd[hi + 1] >= half:
        hi += 1
    return {"k_cycles_per_image": float(k), "period_px": float(n / k),
            "half_max_periods_px": [float(n / (hi + 0.5)), float(n / max(lo - 0.5, 1.0))],
            "psd": psd}


def acf_half_period(img):
    """First minimum of the radially averaged autocorrelation (px): half a period."""
    img = _detrended(np.asarray(img, float))
    img = img - img.mean()
    ny, nx = img.shape
    pad = np.fft.fft2(img, (2 * ny, 2 * nx))  # zero-padded: a linear, not circular, ACF
    acf = np.fft.ifft2(np.abs(pad) ** 2).real
    ones = np.fft.fft2(np.ones_like(img), (2 * ny, 2 * nx))
    overlap = np.fft.ifft2(np.abs(ones) ** 2).real  # pixel pairs per lag: unbiased estimate
    acf = acf / np.maximum(overlap, 1)
    dy = np.fft.fftfreq(2 * ny) * 2 * ny
    dx = np.fft.fftfreq(2 * nx) * 2 * nx
    prof = _radial_mean(acf, np.hypot(dy[:, None], dx[None, :]), min(ny, nx) // 2)
    prof = prof / prof[0]
    i = 1
    while i < len(prof) - 1 and not (prof[i] < prof[i - 1] and prof[i] <= prof[i + 1]):
        i += 1
    return {"first_minimum_px": float(i), "value": float(prof[i]),
            "e_folding_px": float(np.argmax(prof < np.exp(-1)))}


def latent_information(ds, state="final"):
    """Per window: sum_k 1/2 ln(1 + Var(z_k) / mean(z_std_k^2)) (nats) and std of each z_k."""
    zm = ds["z_mean"].sel(state=state).transpose("window", "point", "latent").values
    zs = ds["z_std"].sel(state=state).transpose("window", "point", "latent").values
    var = np.nanvar(zm, axis=1)
    noise = np.nanmean(zs ** 2, axis=1)
    info = 0.5 * np.log1p(var / noise).sum(-1)
    return info, np.sqrt(var)


def main(run_dir="runs/pto"):
    run = Path(run_dir)
    ds = load_result(run)
    img = np.load(run / "input.npy")[0]
    ps, unit = float(ds.attrs.get("pixel_size", np.nan)), ds.attrs.get("unit", "")
    windows = ds["window"].values.astype(int)

    psd = psd_period(img)
    acf = acf_half_period(img)
    out = {"image_shape": list(img.shape), "pixel_size": ps, "unit": unit,
           "psd_peak_cycles_per_image": round(psd["k_cycles_per_image"], 2),
           "psd_period_px": round(psd["period_px"], 1),
           "psd_period_nm": round(psd["period_px"] * ps, 0),
           "psd_half_max_range_px": [round(v, 1) for v in psd["half_max_periods_px"]],
           "acf_first_minimum_px": acf["first_minimum_px"],
           "acf_period_estimate_px": 2 * acf["first_minimum_px"],
           "acf_e_folding_px": acf["e_folding_px"]}
    for state in ("final", "instant"):
        sc = an.length_scales(ds, state)
        rec = int(sc["recommended_window"])
        info, spread = latent_information(ds, state)
        rho = stats.spearmanr(windows, info)[0]
        out[state] = {
            "recommended_window_px": rec,
            "recommended_window_nm": round(rec * ps, 0),
            "recommended_over_psd_period": round(rec / psd["period_px"], 2),
            "score_peaks_px": [int(w) for w in windows[sc["peak"].values]],
            "latent_information_nats": dict(zip(windows.tolist(), np.round(info, 3).tolist())),
            "z_std_per_window": dict(zip(windows.tolist(), np.round(spread, 3).tolist())),
            "spearman_info_vs_window": round(float(rho), 3),
            "info_last_over_first": round(float(info[-1] / info[0]), 2),
            "kl_last_window": dict(zip([str(k) for k in ds["latent"].values],
                                       np.round(ds["kl"].isel(window=-1).values, 3).tolist())),
        }
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(*sys.argv[1:])
