"""Length scales from the regrouping curve (find_scales), the baselines, and the default patch size."""

import numpy as np
import pytest
import xarray as xr

from scalevae.analysis.multiscale import (PRONOUNCED_PEAK, find_scales, patch_statistics,
                                          pronounced_period, spectral_peak, spectral_period)
from scalevae.errors import ScaleVAEError
from scalevae.patches.size import MAX_DEFAULT_PATCH, default_patch_size, fine_period, radial_power_spectrum
from scalevae.testing import make_fake_result

WINDOWS = np.arange(8, 65, 4)


def _scales(curve, windows=WINDOWS, significant=True):
    """A length_scales()-shaped Dataset holding only what find_scales reads."""
    return xr.Dataset({"change_from_first": ("window", np.asarray(curve, float)),
                       "significant": ((), significant)}, coords={"window": windows})


def _sigmoid(centre, width=0.08, windows=WINDOWS):
    return 1 / (1 + np.exp(-(np.log(windows) - np.log(centre)) / width))


def test_one_rise_is_found_with_its_middle():
    curve = _sigmoid(24)
    curve -= curve[0]
    s = find_scales(_scales(curve))
    assert s.sizes["rise"] == 1
    assert abs(int(s["recommended_window"]) - 24) <= 4
    assert int(s["onset"][0]) < 24 < int(s["end"][0])
    assert not bool(s["still_rising"]) and bool(s["conclusive"])
    assert s.attrs["note"] == ""


def test_two_rises_are_both_reported_strongest_first():
    curve = 0.3 * _sigmoid(16) + 0.7 * _sigmoid(44)
    curve -= curve[0]
    s = find_scales(_scales(curve))
    assert s.sizes["rise"] == 2
    assert float(s["strength"][0]) > float(s["strength"][1])
    assert abs(int(s["middle"][0]) - 44) <= 4 and abs(int(s["middle"][1]) - 16) <= 4
    assert abs(int(s["recommended_window"]) - 44) <= 4


def test_a_one_step_jump_from_the_smallest_window_gives_way_to_a_later_rise():
    # the smallest window cuts through the basic unit (a bond, a void) and the next fills it in:
    # the curve jumps at once; the image's own larger scale is the later, weaker rise
    curve = np.where(WINDOWS > 8, 0.6, 0.0) + 0.01 * (WINDOWS - 8) / 56 + 0.3 * _sigmoid(48)
    curve -= curve[0]
    s = find_scales(_scales(curve))
    assert s.sizes["rise"] == 2
    assert (int(s["onset"][0]), int(s["end"][0])) == (8, 12)
    assert abs(int(s["recommended_window"]) - 48) <= 4


def test_a_gradual_rise_from_the_smallest_window_is_kept():
    curve = 0.9 * np.minimum((WINDOWS - 8) / 24, 1) + 0.1 * _sigmoid(56)
    s = find_scales(_scales(curve))
    assert int(s["onset"][0]) == 8 and abs(int(s["recommended_window"]) - 20) <= 4


def test_a_rise_over_most_of_the_range_is_not_conclusive():
    # a steady change from the smallest window to nearly the largest singles out no size:
    # its half-way window is set by the range (domain images of period 12 and 40 px both
    # answered 24-32 px this way with windows 8-64 px)
    curve = np.log(WINDOWS / 8) / np.log(56 / 8)
    s = find_scales(_scales(np.minimum(curve, 1)))
    assert bool(s["gradual"]) and not bool(s["conclusive"])
    assert "no single size stands out" in s.attrs["note"]
    # the same rise within a factor of 4 of window size is an answer
    narrow = np.clip(np.log(WINDOWS / 12) / np.log(40 / 12), 0, 1)
    s = find_scales(_scales(narrow))
    assert not bool(s["gradual"]) and bool(s["conclusive"])
    assert abs(int(s["recommended_window"]) - 22) <= 4


def test_a_curve_still_rising_at_the_largest_window_says_extend_the_range():
    curve = _sigmoid(80)  # the scale lies beyond the range
    curve -= curve[0]
    s = find_scales(_scales(curve))
    assert bool(s["still_rising"]) and not bool(s["conclusive"])
    assert "extend the range" in s.attrs["note"]


def test_a_finished_rise_stays_conclusive_when_a_new_one_starts_at_the_end():
    curve = 0.8 * _sigmoid(20) + 0.2 * _sigmoid(90)
    curve -= curve[0]
    s = find_scales(_scales(curve))
    assert bool(s["conclusive"]) and abs(int(s["recommended_window"]) - 20) <= 4


def test_a_flat_curve_has_no_rise_and_says_so():
    s = find_scales(_scales(np.zeros(len(WINDOWS))))
    assert s.sizes["rise"] == 0
    assert "no length scale" in s.attrs["note"]
    assert int(s["recommended_window"]) in WINDOWS


def test_dips_that_are_regained_do_not_split_a_rise():
    curve = _sigmoid(28)
    curve -= curve[0]
    curve[5] -= 0.15  # a noisy dip inside the rise
    s = find_scales(_scales(curve))
    assert s.sizes["rise"] == 1


def test_insignificant_curve_is_flagged():
    curve = _sigmoid(24)
    s = find_scales(_scales(curve - curve[0], significant=False))
    assert not bool(s["significant"]) and "weak evidence" in s.attrs["note"]


def test_find_scales_runs_length_scales_on_a_result():
    s = find_scales(make_fake_result(n_windows=6))
    assert set(s["window"].values) == set(make_fake_result(n_windows=6)["window"].values)
    assert int(s["recommended_low"]) <= int(s["recommended_window"]) <= int(s["recommended_high"])


@pytest.mark.parametrize("kw", [dict(slope_fraction=0), dict(min_strength=1.0)])
def test_find_scales_rejects_bad_parameters(kw):
    with pytest.raises(ScaleVAEError):
        find_scales(_scales(_sigmoid(24)), **kw)


def test_find_scales_rejects_other_datasets():
    with pytest.raises(ScaleVAEError, match="length_scales"):
        find_scales(xr.Dataset({"a": ("x", [1.0])}))


# --------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("period", [12, 20, 32])
def test_spectral_period_finds_stripes_under_noise_and_a_gradient(period):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    img = np.sign(np.sin(2 * np.pi * xx / period)) + 0.5 * rng.normal(size=xx.shape) + yy / 100
    assert abs(spectral_period(img) - period) <= 0.1 * period


def test_a_period_stands_out_only_where_the_image_has_one():
    """Stripes stand out far above the power-law background; white noise and a smooth random
    texture under a little noise (no period of their own) do not, and pronounced_period says
    None for them."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    stripes = np.sign(np.sin(2 * np.pi * xx / 16)) + 0.5 * rng.normal(size=xx.shape)
    period, height = spectral_peak(stripes)
    assert abs(period - 16) < 1.6 and height > PRONOUNCED_PEAK
    assert abs(pronounced_period(stripes) - 16) < 1.6
    from scipy import ndimage
    smooth = (ndimage.gaussian_filter(rng.normal(size=(256, 256)), 1.5)
              + 0.05 * rng.normal(size=(256, 256)))
    for img in (rng.normal(size=(256, 256)), smooth):
        assert spectral_peak(img)[1] < PRONOUNCED_PEAK
        assert pronounced_period(img) is None
    assert pronounced_period(np.zeros((4, 4))) is None


def test_spectral_period_rejects_an_empty_range():
    with pytest.raises(ScaleVAEError):
        spectral_period(np.random.default_rng(0).normal(size=(64, 64)), min_period=10,
                        max_period=5)


def test_patch_statistics_curve_and_agreement():
    ds = make_fake_result(n_windows=4)
    img = np.random.default_rng(0).normal(size=(80, 80))
    b = patch_statistics(img, ds)
    assert b["change_from_first"].values[0] == 0.0
    assert np.all((b["agreement"].values >= -1) & (b["agreement"].values <= 1))
    assert find_scales(b).sizes["window"] == 4


def test_patch_statistics_rejects_an_image_with_too_few_frames():
    ds = make_fake_result(n_windows=3, n_frames=2)
    with pytest.raises(ScaleVAEError, match="frame"):
        patch_statistics(np.zeros((80, 80)), ds)


# --------------------------------------------------------------------------- patch size


def test_radial_spectrum_of_a_stack_averages_frames():
    yy, xx = np.mgrid[:64, :64]
    stack = np.stack([np.sin(2 * np.pi * xx / 8), np.sin(2 * np.pi * yy / 8)])
    k, p = radial_power_spectrum(stack)
    assert round(1 / k[np.argmax(p)]) == 8


def test_fine_texture_asks_for_a_larger_patch_up_to_the_bound():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    img = np.sin(2 * np.pi * xx / 6) + 0.1 * rng.normal(size=xx.shape)
    r, why = default_patch_size(img, [8, 16, 32, 64])
    assert r == MAX_DEFAULT_PATCH and "cost bound" in why
    assert 32 < default_patch_size(img, [8, 16, 32, 64], max_size=64)[0] <= 64


def test_coarse_structure_keeps_the_smallest_window():
    yy, xx = np.mgrid[:256, :256]
    img = np.sin(2 * np.pi * xx / 64)
    r, why = default_patch_size(img, [16, 24, 32])
    assert r == 16 and "smallest window" in why


def test_patch_size_keeps_four_pixels_per_fine_period():
    yy, xx = np.mgrid[:256, :256]
    img = np.sin(2 * np.pi * xx / 16)
    r, _ = default_patch_size(img, [8, 32, 64], max_size=32)
    assert r % 4 == 0 and fine_period(img, 64) * r / 64 >= 4
    # the default bound (16 px) wins over the rule, and the reason says so
    r, why = default_patch_size(img, [8, 32, 64])
    assert r == MAX_DEFAULT_PATCH == 16 and "16" in why


@pytest.mark.parametrize("bad", [np.zeros(5), np.full((10, 10), np.nan)])
def test_default_patch_size_rejects_bad_images(bad):
    with pytest.raises(ScaleVAEError):
        default_patch_size(bad, [8, 16])


def test_default_patch_size_rejects_bad_windows():
    with pytest.raises(ScaleVAEError):
        default_patch_size(np.zeros((32, 32)), [0, 8])


def test_suggested_windows_never_repeat_the_range_just_run():
    from scalevae.analysis.multiscale import bracketing_windows

    first = bracketing_windows(11.8)
    lo, hi, step = (int(v) for v in first.split(":"))
    again = bracketing_windows(11.8, ran=range(lo, hi + 1, step))
    assert again != first
    a_lo, a_hi, _ = (int(v) for v in again.split(":"))
    assert a_lo <= lo and a_hi > hi
    # both ends capped by the frame: the same range with finer steps, never the same advice
    capped = bracketing_windows(64, frame_shape=(64, 64))
    lo, hi, _ = (int(v) for v in capped.split(":"))
    assert bracketing_windows(64, frame_shape=(64, 64), ran=[lo, hi]) != capped


def test_a_spectral_peak_at_the_pixel_limit_is_no_baseline():
    from scalevae.analysis.multiscale import noise_limited, spectral_baseline

    assert noise_limited(2.0) and noise_limited(2.5) and not noise_limited(3.0)
    xx = np.mgrid[:128, :128][1]
    # the strongest peak is at the pixel limit (alternating columns, as scan noise makes)
    img = (-1.0) ** xx + 0.3 * np.random.default_rng(0).normal(size=(128, 128))
    assert np.isnan(spectral_baseline(img))
    assert abs(spectral_baseline(img + 3 * np.sin(2 * np.pi * xx / 16)) - 16) < 1.5
