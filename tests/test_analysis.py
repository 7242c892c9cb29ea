"""Analyses with known answers, on synthetic result Datasets (no training)."""

import numpy as np
import pytest
from scalevae.testing import FakeModel, make_fake_result

from scalevae import ScaleVAEError
from scalevae import analysis as an

WINDOWS = np.arange(8, 65, 4)  # 15 windows, as in a typical run


def _clusters(rng, labels, centres, spread=0.25):
    return np.asarray(centres)[labels] + spread * rng.standard_normal((len(labels), 2))


def _changing_latents(w_star, n=1200, seed=0, regroup_only=False):
    """Latents (window, point, 2) whose structure switches around window ``w_star``.

    Below ``w_star`` the keypoints fall into 3 clusters; from ``w_star`` on they regroup into
    4 other clusters, independently of the first grouping (or, with ``regroup_only``, into the
    same 3 cluster positions with shuffled membership: the density stays, the structure not).
    """
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, n), rng.integers(0, 4 if not regroup_only else 3, n)
    base_a = _clusters(rng, a, [[-2, 0], [1, 1.5], [1.5, -1.5]])
    cb = [[-2, 0], [1, 1.5], [1.5, -1.5]] if regroup_only else [[0, 2], [0, -2], [2, 0], [-2, 0]]
    base_b = _clusters(rng, b, cb)
    z = []
    for i, w in enumerate(WINDOWS):
        # a smooth switch (half done between w_star - 4 and w_star), a steady broadening of
        # the distribution, and encoding noise
        a = 1 / (1 + np.exp(-(w - w_star + 2) / 2))
        base = (1 - a) * base_a + a * base_b
        z.append(base * (1 + 0.04 * i) + 0.1 * rng.standard_normal(base.shape))
    return np.array(z)


def _ds_from(z, **kw):
    n = z.shape[1]
    return make_fake_result(grid=(30, n // 30), windows=WINDOWS, z_mean=z, **kw)


def test_kde_of_two_component_mixture_peaks_at_the_centres():
    rng = np.random.default_rng(1)
    centres = np.array([[-2.0, 0.0], [2.0, 1.0]])
    lab = rng.integers(0, 2, 1500)
    z = np.stack([_clusters(rng, lab, centres, 0.4) for _ in WINDOWS[:3]])
    ds = make_fake_result(grid=(30, 50), windows=WINDOWS[:3], z_mean=z)
    dens = an.latent_density(ds, grid_size=64)
    assert dens.dims == ("window", "z1_grid", "z2_grid")
    cell = float((dens.z1_grid[1] - dens.z1_grid[0]) * (dens.z2_grid[1] - dens.z2_grid[0]))
    np.testing.assert_allclose(dens.sum(("z1_grid", "z2_grid")) * cell, 1.0, rtol=1e-6)
    peaks = an.kde_peaks(dens, num_peaks=5)
    for w in WINDOWS[:3]:
        found = peaks["z"].values[peaks["window"].values == w]
        assert len(found) == 2
        # each true centre has a peak within 0.2 latent units (grid step is ~0.1)
        d = np.linalg.norm(found[:, None] - centres[None], axis=-1)
        assert d.min(0).max() < 0.2


def test_latent_density_grid_is_shared_and_one_latent_degrades_to_1d():
    ds = make_fake_result()
    dens = an.latent_density(ds, "instant", grid_size=20)
    assert dens.shape == (5, 20, 20) and dens.attrs["state"] == "instant"
    ds1 = make_fake_result(z_mean=np.random.default_rng(0).normal(size=(5, 120, 1)))
    d1 = an.latent_density(ds1, grid_size=30)
    assert d1.dims == ("window", "z1_grid")
    ds3 = make_fake_result(latent_dim=3)
    assert an.latent_density(ds3, grid_size=16).dims == ("window", "z1_grid", "z2_grid")


def test_latent_density_survives_a_collapsed_latent_and_rejects_unknown_state():
    z = np.zeros((3, 120, 2))
    z[..., 0] = np.random.default_rng(0).normal(size=(3, 120))  # z2 collapsed to 0
    dens = an.latent_density(make_fake_result(windows=[8, 12, 16], z_mean=z), grid_size=16)
    assert np.isfinite(dens.values).all()
    with pytest.raises(ScaleVAEError, match="state"):
        an.latent_density(make_fake_result(), state="middle")


def test_latent_representation_decodes_grid_in_one_call():
    model = FakeModel(patch_size=8)
    ext = an.populated_extent(make_fake_result())
    rep = an.latent_representation(model, ext, n=5)
    assert rep.dims == ("z1_grid", "z2_grid", "py", "px") and rep.shape == (5, 5, 8, 8)
    assert model.calls == 1
    import torch

    z = torch.tensor([[float(rep.z1_grid[3]), float(rep.z2_grid[1])]])
    np.testing.assert_allclose(rep.values[3, 1], model.decode(z)[0].numpy(), atol=1e-6)
    # populated extent of one window lies within that window's latents
    ds = make_fake_result()
    e8 = an.populated_extent(ds, window=8)
    z8 = ds.z_mean.sel(state="final", window=8).values
    assert (e8[:, 0] >= z8.min(0)).all() and (e8[:, 1] <= z8.max(0)).all()


def test_latent_images_of_grid_put_each_value_at_its_keypoint():
    ds = make_fake_result(grid=(6, 7))
    img = an.latent_images(ds)
    assert img.attrs["layout"] == "grid" and img["z"].shape == (5, 2, 6, 7)
    p = 17
    y, x = float(ds.y[p]), float(ds.x[p])
    assert img["z"].sel(window=12, latent="z2", gy=y, gx=x) == pytest.approx(
        float(ds.z_mean.sel(state="final", window=12, latent="z2")[p]), abs=1e-6)
    assert img["angle"].dims == ("window", "gy", "gx")
    # a grid with a hole is still a grid, with NaN there
    holed = ds.isel(point=np.r_[0:10, 11:42])
    hi = an.latent_images(holed)
    assert hi.attrs["layout"] == "grid" and int(np.isnan(hi["z"].isel(window=0, latent=0)).sum()) == 1
    # stacks keep a frame axis; scattered keypoints stay points
    assert "frame" in an.latent_images(make_fake_result(n_frames=2))["z"].dims
    sc = an.latent_images(make_fake_result(scattered=True), windows=[8, 16])
    assert sc.attrs["layout"] == "points" and sc["z"].dims == ("window", "latent", "point")
    assert list(sc.window.values) == [8, 16]


def test_kde_pca_scores_jump_where_the_density_shape_changes():
    rng = np.random.default_rng(2)
    n, w_star = 900, 36
    one = rng.normal(0, 0.5, (n, 2))
    lab = rng.integers(0, 2, n)
    two = _clusters(rng, lab, [[-1.5, 0], [1.5, 0]], 0.5)
    z = np.array([(one if w < w_star else two) + 0.02 * rng.standard_normal((n, 2))
                  for w in WINDOWS])
    pca = an.kde_pca(an.latent_density(_ds_from(z), grid_size=32), n_components=4)
    assert pca["components"].dims == ("component", "z1_grid", "z2_grid")
    assert pca["explained_variance_ratio"][0] > 0.9
    s1 = pca["scores"].sel(component=1).values
    jump = np.argmax(np.abs(np.diff(s1)))
    assert WINDOWS[jump + 1] == w_star
    with pytest.raises(ScaleVAEError, match="two windows"):
        an.kde_pca(an.latent_density(make_fake_result(n_windows=1)))


def test_trajectory_pca_recovers_the_pattern_and_separates_the_groups():
    rng = np.random.default_rng(3)
    n, nw = 600, len(WINDOWS)
    t = np.linspace(0, 1, nw)
    pattern1 = np.stack([np.tanh(6 * (t - 0.5)), 0.5 * t])  # (latent, window)
    pattern2 = np.stack([np.sin(3 * t), -np.cos(3 * t)])
    group = rng.integers(0, 2, n) * 2 - 1  # +-1
    c = 0.3 * rng.standard_normal(n)
    z = (group[:, None, None] * pattern1 + c[:, None, None] * pattern2
         + 0.05 * rng.standard_normal((n, 2, nw)))  # (point, latent, window)
    ds = _ds_from(z.transpose(2, 0, 1))
    tp = an.trajectory_pca(ds, n_components=3)
    assert tp["components"].dims == ("component", "latent", "window")
    assert tp["loadings"].dims == ("point", "component") and "x" in tp["loadings"].coords
    # first component is pattern 1 (as standardised) up to sign
    expected = (pattern1 / tp["scale"].values[:, None]).ravel()
    comp = tp["components"].sel(component=1).values.ravel()
    assert abs(np.corrcoef(comp, expected)[0, 1]) > 0.99
    # its loading separates the two groups perfectly
    l1 = tp["loadings"].sel(component=1).values
    assert (np.sign(l1) == np.sign(l1[0]) * group * group[0]).all()
    assert tp["explained_variance_ratio"][0] > 0.8


def test_stack_statistics_rows_have_zero_mean_and_keep_raw_values_and_control():
    ds = make_fake_result(n_frames=4, control=True)
    st = an.stack_statistics(ds, smooth_sigma=None)
    assert st["mean"].dims == ("frame", "window", "latent")
    np.testing.assert_allclose(st["mean_norm"].mean("window"), 0, atol=1e-12)
    np.testing.assert_allclose(st["dispersion_norm"].mean("window"), 0, atol=1e-12)
    z = ds.z_mean.sel(state="final", window=16, latent="z1").values[ds.frame.values == 2]
    assert float(st["mean"].sel(frame=2, window=16, latent="z1")) == pytest.approx(z.mean())
    assert float(st["dispersion"].sel(frame=2, window=16, latent="z1")) == pytest.approx(z.std())
    np.testing.assert_allclose(st["control"], ds["control"])
    sm = an.stack_statistics(ds, smooth_sigma=1.0)
    assert np.abs(np.diff(sm["mean_norm"], axis=1)).mean() < np.abs(
        np.diff(st["mean_norm"], axis=1)).mean()


@pytest.mark.parametrize("w_star", [20, 32, 48])
def test_length_scales_find_the_window_where_structure_changes(w_star):
    ls = an.length_scales(_ds_from(_changing_latents(w_star)))
    rec = int(ls["recommended_window"])
    assert abs(rec - w_star) <= 4  # one window step
    # the rule: the first window where the change from the smallest window reaches half its max
    c = ls["change_from_first"]
    assert float(c.sel(window=rec)) >= 0.5 * float(c.max())
    assert (c.sel(window=slice(None, rec - 1)) < 0.5 * float(c.max())).all()
    # the fastest regrouping is flagged as a peak of the score near the switch too
    peaks = ls["window"].values[ls["peak"].values]
    assert np.min(np.abs(peaks - w_star)) <= 4
    assert np.isnan(ls["score"][0]) and np.isfinite(ls["score"][1:]).all()


def test_length_scales_see_regrouping_even_when_the_density_stays():
    ls = an.length_scales(_ds_from(_changing_latents(40, regroup_only=True)))
    assert int(ls["recommended_window"]) == 40
    assert float(ls["structure_change"].sel(window=40)) > 0.5
    assert float(ls["density_change"].sel(window=40)) < 0.2


def test_length_scales_ignore_a_rotation_of_the_latent_space_between_windows():
    # an encoder that drifts (instant state) rotates the latents; the regrouping still wins
    z = _changing_latents(28)
    for i in range(len(WINDOWS)):
        a = 0.15 * i
        z[i] = z[i] @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    ls = an.length_scales(_ds_from(z))
    assert abs(int(ls["recommended_window"]) - 28) <= 4


def test_length_scales_need_two_windows():
    with pytest.raises(ScaleVAEError, match="two windows"):
        an.length_scales(make_fake_result(n_windows=1))


def test_outlier_scores_rank_the_odd_keypoint_first():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 0.3, (2, 300, 2))
    z[:, 123] = [4.0, -4.0]
    sc = an.outlier_scores(make_fake_result(grid=(10, 30), windows=[8, 16], z_mean=z))
    assert sc.dims == ("point",) and int(np.argmax(sc.values)) == 123 and sc.attrs["window"] == 16


def test_length_scales_ignore_a_shrinking_latent_cloud():
    # the encoder maps larger windows closer to the prior: same structure, smaller spread
    z = _changing_latents(36)
    z *= (0.7 ** np.arange(len(WINDOWS)))[:, None, None]
    # the final state holds z exactly (the fake's instant state adds 0.02 noise, which at 0.7^14
    # of the spread is no longer "the same structure")
    ls = an.length_scales(_ds_from(z), state="final")
    assert int(ls["recommended_window"]) in (32, 36, 40)
    d = ls["density_change"].values[1:]
    assert np.sort(d)[-4] < 0.1  # only the switch (over 3 windows) changes the standardised KDE


def _same_structure_every_window(seed=0, n=900):
    """Latents of a pattern that looks the same at every window: one fixed configuration plus
    a small independent jitter per window (the encoder's noise)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (n, 2))
    return np.stack([base + 0.1 * rng.standard_normal(base.shape) for _ in WINDOWS])


def test_length_scales_do_not_count_regrouping_within_the_posterior_width():
    z = _same_structure_every_window()
    # posterior wider than the jitter: the jitter is below the model's resolution
    wide = an.length_scales(_ds_from(z, z_std=np.full(z.shape, 0.3)))
    assert not bool(wide["significant"])
    assert (wide["excess_change"].values[1:] == 0).all()
    assert "no window regroups" in wide.attrs["note"]
    assert (wide["noise_floor"] > wide["structure_change"].fillna(0)).all()
    # a sharp posterior resolves the same jitter: now it counts
    sharp = an.length_scales(_ds_from(z, z_std=np.full(z.shape, 0.001)))
    assert bool(sharp["significant"]) and "no window regroups" not in sharp.attrs["note"]


def test_length_scales_find_a_switch_above_the_noise_floor():
    z = _changing_latents(32)
    ls = an.length_scales(_ds_from(z, z_std=np.full(z.shape, 0.3)))
    assert bool(ls["significant"]) and abs(int(ls["recommended_window"]) - 32) <= 4
    # far from the switch the structure only jitters: nothing above the floor there
    assert float(ls["excess_change"].sel(window=64)) == 0


def test_length_scales_range_is_narrow_for_a_sharp_switch_and_wide_for_none():
    sharp = an.length_scales(_ds_from(_changing_latents(32)), state="final")  # z exactly
    lo, rec, hi = (int(sharp[k]) for k in ("recommended_low", "recommended_window",
                                             "recommended_high"))
    # the range is the bootstrap interval: it holds 90 % of the probability, around the answer
    assert lo <= rec <= hi and 24 <= lo and hi <= 40
    p = sharp["probability"].sel(window=slice(lo, hi)).sum()
    assert float(p) >= 0.9 - 1e-9
    assert int(sharp.sizes["rise"]) >= 1 and bool(sharp["conclusive"])
    # the same jitter at every window: no window stands out, the range spans most of them
    flat = an.length_scales(_ds_from(_same_structure_every_window(),
                                      z_std=np.full((len(WINDOWS), 900, 2), 0.001)),
                            state="final")
    n_in = int(((flat["window"] >= int(flat["recommended_low"]))
                & (flat["window"] <= int(flat["recommended_high"]))).sum())
    assert n_in >= len(WINDOWS) // 3 and not bool(flat["conclusive"])
