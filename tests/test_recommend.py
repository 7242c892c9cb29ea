"""The recommended window with its uncertainty: order-free, rounding-proof, a bootstrap
distribution whose mode is the answer, and one notion of conclusive."""

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.spatial.distance import pdist

from scalevae.analysis import length_scales
from scalevae.analysis.recommend import (CONCLUSIVE_SHARE, INTERVAL_MASS,
                                         describe_recommendation, recommend,
                                         recommendation_attrs, tile_counts)
from scalevae.analysis.scales import (canonical_order, position_subsets, regrouping_curves,
                                      regrouping_evidence)
from scalevae.errors import ScaleVAEError
from scalevae.testing import make_fake_result

WINDOWS = np.arange(8, 65, 4)
B = 300  # resamples in the tests: enough for the decisions asserted, a fraction of the cost


def _switch(w_star, n=600, seed=0, noise=0.1):
    """Latents (window, point, 2) that regroup once, around window ``w_star``: three clusters
    below it, four unrelated ones above, a smooth switch over about two window steps."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, n), rng.integers(0, 4, n)
    za = np.array([[-2, 0], [1, 1.5], [1.5, -1.5]])[a] + 0.25 * rng.standard_normal((n, 2))
    zb = np.array([[0, 2], [0, -2], [2, 0], [-2, 0]])[b] + 0.25 * rng.standard_normal((n, 2))
    s = 1 / (1 + np.exp(-(WINDOWS[:, None, None] - w_star + 2) / 2))
    return (1 - s) * za + s * zb + noise * rng.standard_normal((len(WINDOWS), n, 2))


def _result(z, **kw):
    return make_fake_result(grid=(30, z.shape[1] // 30), windows=WINDOWS, z_mean=z,
                            z_std=np.full(z.shape, 0.02), **kw)


def _answer(rec):
    return (int(rec["recommended_window"]), int(rec["interval_low"]), int(rec["interval_high"]),
            bool(rec["conclusive"]))


@pytest.fixture(scope="module")
def switch28():
    ds = _result(_switch(28))  # 600 keypoints: two interleaved subsets
    return ds, recommend(ds, n_resamples=B)


def test_ten_point_orders_give_the_identical_answer(switch28):
    ds, rec = switch28
    rng = np.random.default_rng(11)
    for _ in range(10):
        other = recommend(ds.isel(point=rng.permutation(ds.sizes["point"])), n_resamples=B)
        assert _answer(other) == _answer(rec)
        np.testing.assert_array_equal(other["probability"].values, rec["probability"].values)


def test_length_scales_do_not_depend_on_point_order():
    ds = _result(_switch(36))
    a = length_scales(ds, n_resamples=B)
    b = length_scales(ds.isel(point=np.random.default_rng(3).permutation(600)), n_resamples=B)
    for k in ("recommended_window", "recommended_low", "recommended_high", "conclusive"):
        assert a[k].item() == b[k].item()
    np.testing.assert_array_equal(a["change_from_first"].values, b["change_from_first"].values)


def test_float32_rounding_of_the_latents_leaves_the_answer_unchanged(switch28):
    ds, rec = switch28
    z32 = ds["z_mean"].values.astype(np.float32)
    for seed in range(3):
        eps = np.random.default_rng(seed).standard_normal(z32.shape).astype(np.float32)
        z = (z32 * (np.float32(1) + np.float32(1e-7) * eps)).astype(np.float32)
        assert not np.array_equal(z, z32)  # the perturbation does change some latents
        other = recommend(ds.assign(z_mean=(ds["z_mean"].dims, z)), n_resamples=B)
        assert _answer(other) == _answer(rec)


def test_probabilities_sum_to_one_and_the_answer_is_their_mode(switch28):
    _, rec = switch28
    p = rec["probability"].values
    assert p.min() >= 0 and p.sum() == pytest.approx(1.0)
    assert int(rec["recommended_window"]) == int(rec["window"][np.argmax(p)])
    assert int(rec["n_resamples"]) == B
    lo, hi = int(rec["interval_low"]), int(rec["interval_high"])
    assert lo <= int(rec["recommended_window"]) <= hi
    assert float(rec["probability"].sel(window=slice(lo, hi)).sum()) >= INTERVAL_MASS - 1e-9


def test_one_known_regrouping_is_conclusive_at_the_right_window(switch28):
    _, rec = switch28
    assert bool(rec["conclusive"]) and float(rec["conclusive_share"]) >= CONCLUSIVE_SHARE
    assert abs(int(rec["recommended_window"]) - 28) <= 4  # one window step
    assert str(rec["answer_kind"].item()) == "single"


@pytest.mark.parametrize("seed", [0, 1])
def test_pure_noise_latents_are_not_conclusive(seed):
    z = np.random.default_rng(seed).standard_normal((len(WINDOWS), 900, 2))
    rec = recommend(_result(z), n_resamples=B)
    assert not bool(rec["conclusive"])
    assert "no conclusive" in describe_recommendation(rec) or "no length scale" in \
        describe_recommendation(rec) or "no single" in describe_recommendation(rec)


def test_the_same_structure_at_every_window_is_not_conclusive():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((900, 2))
    z = np.stack([base + 0.1 * rng.standard_normal(base.shape) for _ in WINDOWS])
    assert not bool(recommend(_result(z), n_resamples=B)["conclusive"])


def test_models_that_disagree_pool_into_an_inconclusive_answer(switch28):
    ds, rec = switch28
    other = _result(_switch(56, seed=1))
    pooled = recommend([ds, other], n_resamples=B)
    assert int(pooled["n_resamples"]) == 2 * B and not bool(pooled["conclusive"])
    same = recommend([ds, _result(_switch(28, seed=2))], n_resamples=B)
    assert bool(same["conclusive"]) and abs(int(same["recommended_window"]) - 28) <= 4


def test_an_answer_below_the_nearest_neighbour_distance_is_never_conclusive(switch28):
    ds, rec = switch28
    atoms = ds.assign_attrs(lattice_bond_px=40.0)
    out = recommend(atoms, n_resamples=B)
    assert int(out["recommended_window"]) == int(rec["recommended_window"])
    assert not bool(out["conclusive"]) and "nearest-neighbour" in out.attrs["note"]


def test_stored_attributes_read_back_into_the_same_sentence(switch28):
    ds, rec = switch28
    attrs = recommendation_attrs(rec)
    assert attrs["recommended_window_interval"] == [int(rec["interval_low"]),
                                                    int(rec["interval_high"])]
    stored = xr.Dataset(attrs=attrs)
    assert describe_recommendation(stored) == describe_recommendation(rec)
    assert describe_recommendation(stored).startswith(
        f"recommended descriptor size: {int(rec['recommended_window'])} px")


def test_a_gradual_regrouping_is_reported_as_no_single_length_scale():
    gradual = xr.Dataset(attrs={
        "recommended_window": 28, "recommended_window_interval": [12, 52],
        "recommended_window_conclusive": 0, "recommended_window_answer": "gradual",
        "recommended_window_probability": '{"12": 0.1, "28": 0.12}'})
    assert describe_recommendation(gradual).startswith(
        "no single length scale between 12 and 52 px")


def test_the_weighted_statistic_is_spearman_and_its_bootstrap_reweights_pairs():
    z = _switch(32, n=300, seed=4)
    ds = _result(z)
    ev = regrouping_evidence(ds, state="final", n_draws=0)
    c = regrouping_curves(ev, np.ones((1, ev.n_tiles)))
    order = canonical_order(ds["frame"].values, ds["y"].values, ds["x"].values, z[0, :, 0])
    zc = z[:, order]
    rho = stats.spearmanr(pdist(zc[0]), pdist(zc[5]))[0]
    assert c["from_first"][0, 5] == pytest.approx(1 - rho, abs=2e-6)
    # one resample: each pair weighted by the product of its tiles' draws
    from scalevae.analysis.scales import tile_ids

    tiles, n_tiles = tile_ids(ds["frame"].values[order], ds["y"].values[order],
                              ds["x"].values[order], WINDOWS[-1] / 2)
    counts = tile_counts(n_tiles, 1, seed=3)
    i, j = np.triu_indices(300, 1)
    w = counts[0][tiles[i]] * counts[0][tiles[j]]
    ra, rb = stats.rankdata(pdist(zc[0])), stats.rankdata(pdist(zc[5]))
    cov = np.cov(ra, rb, aweights=w)
    expected = 1 - cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    got = regrouping_curves(ev, counts)["from_first"][0, 5]
    assert got == pytest.approx(expected, abs=2e-6)


def test_position_subsets_cover_every_keypoint_once():
    subs = position_subsets(2304, m=500, max_subsets=8)
    assert len(subs) == 5 and np.array_equal(np.sort(np.concatenate(subs)), np.arange(2304))
    assert len(position_subsets(100_000, m=500, max_subsets=8)) == 8


def test_recommend_rejects_results_of_other_windows(switch28):
    ds, _ = switch28
    with pytest.raises(ScaleVAEError, match="same windows"):
        recommend([ds, make_fake_result(n_windows=4)], n_resamples=10)


def test_a_movie_of_more_frames_than_bootstrap_tiles_gets_an_answer():
    # one tile per frame is already too many: consecutive frames are joined into tiles
    # (a stack of hundreds of frames used to loop for ever here)
    ds = make_fake_result(n_windows=4, grid=(3, 3), n_frames=150)
    rec = recommend(ds, n_resamples=50)
    assert int(rec["recommended_window"]) in ds["window"].values
    assert float(rec["probability"].sum()) == pytest.approx(1.0)


def test_an_answer_the_other_state_does_not_give_is_not_conclusive():
    """The final model reading another size: the instant state's sharp rise is one encoder's
    luck, not the image's, and is not offered as conclusive (the calibration's reason)."""
    ds = _result(_switch(28))
    z = ds["z_mean"].transpose("state", "window", "point", "latent").values.copy()
    z[list(ds["state"].values).index("final")] = _switch(48, seed=1)
    ds["z_mean"] = (("state", "window", "point", "latent"), z)
    rec = recommend(ds, state="instant", n_resamples=B)
    assert abs(int(rec["recommended_window"]) - 28) <= 4
    assert bool(rec["conclusive_alone"]) and not bool(rec["conclusive"])
    assert abs(int(rec["check_window"]) - 48) <= 4 and not bool(rec["check_agrees"])
    text = describe_recommendation(rec)
    assert text.startswith("no conclusive descriptor size") and "final state reads" in text
    stored = xr.Dataset(attrs=recommendation_attrs(rec))
    assert describe_recommendation(stored) == text
    alone = recommend(ds, state="instant", n_resamples=B, check_state=False)
    assert bool(alone["conclusive"]) and "check_window" not in alone


def test_both_states_reading_the_same_size_keep_the_answer_conclusive(switch28):
    _, rec = switch28
    assert str(rec.attrs["check_state"]) == "final"
    assert bool(rec["check_agrees"]) and bool(rec["conclusive"])
