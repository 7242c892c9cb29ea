"""Synthetic examples: determinism, shapes, and ground truth that matches the images."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from scalevae import ScaleVAEError
from scalevae.datasets import (
    EXAMPLES,
    Example,
    combinatorial_library,
    ferroelectric_domains,
    graphene_movie,
    load_example,
    two_scale_texture,
)

# Small sizes keep every generator well under a second.
SMALL = {
    "domains": dict(shape=(96, 96), period=16),
    "graphene": dict(n_frames=4, shape=(64, 64)),
    "library": dict(n_frames=4, shape=(48, 48)),
    "twoscale": dict(shape=(128, 128), critical_window=16),
}


@pytest.fixture(scope="module")
def small():
    return {name: load_example(name, seed=0, **kw) for name, kw in SMALL.items()}


def test_registry_names():
    assert set(EXAMPLES) == {"domains", "graphene", "library", "twoscale"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_contract(small, name):
    ex = small[name]
    assert isinstance(ex, Example) and ex.name == name
    img = ex.images
    assert img.dtype == np.float32 and img.ndim == 3 and np.isfinite(img).all()
    assert img.std() > 0
    assert ex["images"] is img  # dict-like access
    if ex.keypoints is not None:
        assert ex.keypoints.dtype == np.float64 and ex.keypoints.shape[1] == 3
        assert ex.default_keypoints is None
    else:
        assert ex.default_keypoints.startswith("grid:")
    assert ex.pixel_size > 0 and isinstance(ex.unit, str)
    if ex.control is not None:
        assert ex.control.shape == (img.shape[0],) and isinstance(ex.control_name, str)
    w = ex.default_windows
    assert all(isinstance(v, int) for v in w) and w == sorted(set(w))
    assert isinstance(ex.truth, dict) and ex.truth


@pytest.mark.parametrize("name", sorted(SMALL))
def test_deterministic_for_a_seed(small, name):
    again = load_example(name, seed=0, **SMALL[name])
    other = load_example(name, seed=1, **SMALL[name])
    np.testing.assert_array_equal(again.images, small[name].images)
    if again.keypoints is not None:
        np.testing.assert_array_equal(again.keypoints, small[name].keypoints)
    assert not np.array_equal(other.images, again.images)


def test_load_example_errors():
    with pytest.raises(ScaleVAEError, match="domains, graphene, library, twoscale"):
        load_example("nope")
    with pytest.raises(ScaleVAEError, match="no option"):
        load_example("domains", n_frames=3)
    with pytest.raises(ScaleVAEError):
        ferroelectric_domains(shape=(20, 20), period=24)
    with pytest.raises(ScaleVAEError):
        two_scale_texture(critical_window=13.5)
    with pytest.raises(ScaleVAEError):
        graphene_movie(n_frames=0)
    with pytest.raises(ScaleVAEError):
        combinatorial_library(n_frames=1)


# ---- domains


def test_domains_truth_matches_amplitude(small):
    ex = small["domains"]
    lab, amp = ex.truth["labels"], ex.truth["clean"]
    assert lab.shape == ex.images.shape[1:] and set(np.unique(lab)) == {0, 1, 2}
    np.testing.assert_array_equal(ex.truth["walls"], lab == 2)
    # PFM amplitude: a domains near zero, c domains high, walls in between.
    a, c, wall = (amp[lab == k].mean() for k in (0, 1, 2))
    assert a < 0.15 and c > 0.8 and a < wall < c
    # c/c walls are dark lines inside c: lower than the c domain around them.
    assert amp[ex.truth["cc_walls"]].mean() < 0.6 * c
    # Both stripe orientations are present, and the measured image follows the truth.
    assert set((np.round(ex.truth["orientation"] / 90) % 2).ravel().tolist()) == {0.0, 1.0}
    img = ex.images[0]
    assert img[lab == 1].mean() - img[lab == 0].mean() > 0.6
    assert ex.truth["period"] == 16


def test_domains_stripe_period():
    # The a-domain stripes repeat with the requested period: check the spectrum of one bundle.
    ex = ferroelectric_domains(shape=(192, 192), period=24, seed=2, noise=0)
    a = (ex.truth["labels"] == 0).astype(float)
    horiz = np.abs(np.round(ex.truth["orientation"])) < 10
    profile = (a * horiz).sum(1)  # across horizontal stripes: along y
    spec = np.abs(np.fft.rfft(profile - profile.mean()))
    freq = np.fft.rfftfreq(len(profile))
    peak = freq[1 + np.argmax(spec[1:])]
    assert abs(1 / peak - 24) < 3


# ---- graphene


def test_graphene_pristine_lattice():
    ex = graphene_movie(n_frames=1, shape=(128, 128), seed=0)
    kp, tr = ex.keypoints, ex.truth
    n_a, n_b = np.bincount(tr["sublattice"], minlength=2)
    assert n_a + n_b > 140 and abs(n_a - n_b) <= 0.08 * (n_a + n_b)  # equal up to the edge
    assert tr["defect_count"][0] == 0 and np.all(tr["element"] == 6)
    # Every atom's three nearest neighbours sit at the C-C distance, 8.9 px at 0.16 A/px.
    d, _ = cKDTree(kp[:, 1:]).query(kp[:, 1:], k=4)
    cc = 1.42 / ex.pixel_size
    assert np.isclose(tr["cc_distance"], cc) and 8 < cc < 10
    assert abs(np.median(d[:, 1:]) - cc) < 0.05 * cc


def test_graphene_keypoints_in_frame(small):
    ex = small["graphene"]
    kp, tr = ex.keypoints, ex.truth
    # Keypoints lie in the frame; all per-keypoint truth arrays have one row per keypoint.
    ny, nx = ex.images.shape[1:]
    assert kp[:, 1].min() >= -0.5 and kp[:, 1].max() < ny - 0.5 and kp[:, 2].max() < nx - 0.5
    for key in ("sublattice", "element", "atom_id", "distance_to_defect"):
        assert len(tr[key]) == len(kp)


def test_graphene_damage_accumulates():
    ex = graphene_movie(n_frames=8, shape=(96, 96), seed=3, si_rate=1.0, vacancy_rate=2.0)
    tr, kp = ex.truth, ex.keypoints
    count = tr["defect_count"]
    assert count[0] == 0 and count[-1] > 0 and np.all(np.diff(count) >= 0)
    assert [sum(d[0] == f for d in tr["defects"]) for f in range(8)] == count.tolist()
    # Fewer atoms once holes open; distance to the nearest defect is finite after frame 0.
    per_frame = np.bincount(kp[:, 0].astype(int))
    assert per_frame[-1] < per_frame[0]
    last = kp[:, 0] == 7
    assert np.isfinite(tr["distance_to_defect"][last]).all()
    assert np.isinf(tr["distance_to_defect"][kp[:, 0] == 0]).all()
    # Z-contrast: Si columns are brighter than C columns at atom centres.
    img = ex.truth["clean"]
    f, y, x = np.round(kp).astype(int).T
    ok = (y >= 0) & (y < 96) & (x >= 0) & (x < 96)
    val = img[f[ok], y[ok], x[ok]]
    el = tr["element"][ok]
    assert (el == 14).any()
    assert val[el == 14].mean() > 2.5 * val[el == 6].mean()
    noisy = ex.images[f[ok], y[ok], x[ok]]
    assert noisy[el == 14].mean() > 2 * noisy[el == 6].mean()


def test_graphene_atoms_at_bright_spots(small):
    ex = small["graphene"]
    f, y, x = np.round(ex.keypoints).astype(int).T
    ok = (y >= 0) & (y < 64) & (x >= 0) & (x < 64)
    at_atoms = ex.images[f[ok], y[ok], x[ok]].mean()
    assert at_atoms > 2 * ex.images.mean()


# ---- combinatorial library


def test_library_grain_size_grows_with_composition():
    ex = combinatorial_library(n_frames=5, shape=(48, 48), seed=1)
    tr = ex.truth
    np.testing.assert_allclose(ex.control, np.linspace(0.14, 0.88, 5))
    np.testing.assert_array_equal(tr["composition"], ex.control)
    assert np.all(np.diff(tr["grain_size"]) > 0)
    assert 4 < tr["grain_size"][0] < 9 and 24 < tr["grain_size"][-1] < 36
    np.testing.assert_allclose(tr["grain_size"], tr["target_grain_size"], rtol=0.2)
    assert tr["labels"].shape == ex.images.shape
    # More grains in a frame at low x than at high x.
    n_grains = [len(np.unique(lab)) for lab in tr["labels"]]
    assert n_grains[0] > 3 * n_grains[-1]


# ---- two-scale texture


def _patch_means(img, w, x0, x1, stride=2):
    c = np.pad(img, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ys = np.arange(0, img.shape[0] - w + 1, stride)
    xs = np.arange(x0, x1 - w + 1, stride)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    return ((c[y + w, x + w] - c[y, x + w] - c[y + w, x] + c[y, x]) / w**2).ravel()


def _accuracy(a, b):
    """Held-out accuracy of a histogram Bayes classifier on a 1-D feature (0.5 = chance)."""
    edges = np.quantile(np.concatenate([a, b]), np.linspace(0, 1, 21))
    edges[0], edges[-1] = -np.inf, np.inf
    ha = np.histogram(a[::2], edges)[0] / len(a[::2])
    hb = np.histogram(b[::2], edges)[0] / len(b[::2])
    ia, ib = np.searchsorted(edges, a[1::2]) - 1, np.searchsorted(edges, b[1::2]) - 1
    return 0.5 * ((ha[ia] > hb[ia]).mean() + (hb[ib] >= ha[ib]).mean())


def test_twoscale_regions_differ_only_above_critical_window():
    ex = two_scale_texture(shape=(384, 768), critical_window=24, seed=0)
    img = ex.images[0].astype(float)
    assert ex.truth["critical_window"] == 24
    assert np.bincount(ex.truth["region"].ravel()).tolist() == [384 * 384] * 2
    # Same film level and contrast in both halves (same void density, same texture).
    left, right = img[:, :384], img[:, 384:]
    assert abs(left.mean() - right.mean()) < 0.01 and abs(left.std() / right.std() - 1) < 0.05
    # Statistics of the window mean over all windows of size w inside each half, away from
    # the border between them.
    stats = {}
    for w in (8, 12, 16, 36, 48):
        a, b = _patch_means(img, w, 0, 360), _patch_means(img, w, 408, 768)
        stats[w] = _accuracy(a, b), abs(np.log(b.var() / a.var()))
    for w in (8, 12, 16):  # square windows whose diagonal is below W: the halves look the same
        assert stats[w][0] < 0.55 and stats[w][1] < 0.15, (w, stats[w])
    for w in (36, 48):  # above W: the void fraction scatters far more in the banded half
        assert stats[w][0] > 0.7 and stats[w][1] > 0.5, (w, stats[w])
    assert stats[48][0] > 0.8 and stats[48][1] > 2.0


def test_twoscale_void_geometry():
    ex = two_scale_texture(shape=(384, 384), critical_window=24, seed=5)
    v, r = ex.truth["voids"], ex.truth["void_radius"]
    assert r == 6.0 and ex.truth["void_spacing"] == {0: pytest.approx(36 * 2**0.5), 1: 36.0}
    left, right = v[v[:, 1] < 192], v[v[:, 1] >= 192]
    d_left = cKDTree(left).query(left, k=2)[0][:, 1]
    d_right = cKDTree(right).query(right, k=2)[0][:, 1]
    # Edge to edge, no two voids of one half are closer than W: a disk of diameter <= W
    # touches at most one.
    assert np.allclose(d_left, 36 * 2**0.5) and np.allclose(d_right.min(), 36)
    assert d_left.min() - 2 * r > 24 and d_right.min() - 2 * r == pytest.approx(24)
    # Region 1's voids lie in its bands only; the void-free bands are as wide as the bands.
    band = ex.truth["band"]
    rows = np.round(right[:, 0]).astype(int)
    on = (rows >= 0) & (rows < 384)
    assert band[rows[on]].all() and 0.3 < band.mean() < 0.7
    # The void density is the same in both halves in expectation (per seed it scatters with
    # the band phase): average over seeds.
    ratio = []
    for seed in range(6):
        vv = two_scale_texture(shape=(384, 384), critical_window=24, seed=seed).truth["voids"]
        inside = (vv[:, 0] >= 0) & (vv[:, 0] < 384)
        ratio.append((vv[inside, 1] >= 192).sum() / (vv[inside, 1] < 192).sum())
    assert abs(np.mean(ratio) - 1) < 0.15
