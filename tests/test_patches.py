"""Patches: window parsing, normalisation, exact geometry and anti-aliased resampling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.transform import resize

from scalevae.errors import ScaleVAEError
from scalevae.keypoints import grid_keypoints, select_inside
from scalevae.patches import (_PatchIterator, check_windows_fit, extract_patches, fit_normalization,
                              iter_patches, parse_windows)

RNG = np.random.default_rng(0)
IMG = RNG.random((2, 64, 72)).astype(np.float32)


# ----------------------------------------------------------------------------- windows

@pytest.mark.parametrize("spec, expected", [
    ("8:64:8", [8, 16, 24, 32, 40, 48, 56, 64]),
    ("8:62:8", [8, 16, 24, 32, 40, 48, 56]),    # STOP only when a step reaches it
    ("8:64:4", list(range(8, 65, 4))),
    ("8,12,16", [8, 12, 16]),
    (" 8 , 12 ", [8, 12]),
    ("16", [16]),
    ("8px:16px:4px", [8, 12, 16]),
    ([8, 16], [8, 16]),
    ((7, 9.4), [7, 9]),
    (np.array([10, 20]), [10, 20]),
    (12, [12]),
])
def test_parse_windows_pixels(spec, expected):
    w = parse_windows(spec)
    assert w.tolist() == expected and w.dtype == np.int64


def test_parse_windows_units():
    assert parse_windows("20nm:200nm:20nm", pixel_size=2.5, unit="nm").tolist() == list(range(8, 81, 8))
    assert parse_windows("0.02um:0.04um:0.01um", pixel_size=2.5, unit="nm").tolist() == [8, 12, 16]
    assert parse_windows(["20nm", "40nm"], pixel_size=0.5, unit="nm").tolist() == [40, 80]
    assert parse_windows("10A,20A", pixel_size=0.1, unit="nm").tolist() == [10, 20]


@pytest.mark.parametrize("spec, match", [
    ("20nm:200nm:20nm", "pixel size is unknown"),
    ("8:64:0", "STEP must be positive"),
    ("8:64:-4", "STEP must be positive"),
    ("64:8:4", "STOP is smaller"),
    ("8:64", "START:STOP:STEP"),
    ("0,8", "positive"),
    ("-8,8", "positive"),
    ("16,8", "must increase"),
    ("8,8.2", "both round to 8"),
    ("8,abc", "cannot read the window 'abc'"),
    ("", "no windows"),
    ([], "no windows"),
    ({"a": 1}, "cannot read windows"),
])
def test_parse_windows_errors(spec, match):
    with pytest.raises(ScaleVAEError, match=match):
        parse_windows(spec)


def test_parse_windows_rounding_duplicates_after_units():
    with pytest.raises(ScaleVAEError, match="both round to"):
        parse_windows("10nm:12nm:1nm", pixel_size=4, unit="nm")  # 2.5, 2.75, 3 px -> 3 px each
    with pytest.raises(ScaleVAEError, match="0.1 px; windows must be at least 1 px"):
        parse_windows("1nm:3nm:1nm", pixel_size=10, unit="nm")
    with pytest.raises(ScaleVAEError, match="cannot convert|units"):
        parse_windows("20s,40s", pixel_size=1, unit="nm")


def test_check_windows_fit():
    check_windows_fit([8, 64], (64, 80))
    with pytest.raises(ScaleVAEError, match=r"largest window \(65 px\) is larger than the image \(64 x 80 px\)"):
        check_windows_fit(np.array([8, 65]), (64, 80))


# ----------------------------------------------------------------------------- normalisation

def test_fit_normalization_known_answer():
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    n = fit_normalization(a)
    assert n["offset"] == 3.5 and n["scale"] == pytest.approx(1.4826 * 1.5)
    assert "median" in n["rule"] and "MAD" in n["rule"]
    m = fit_normalization(np.array([0.0] * 9 + [1.0]))  # MAD is 0: fall back to the std
    assert m["scale"] == pytest.approx(0.3) and "std" in m["rule"]
    with pytest.raises(ScaleVAEError, match="constant"):
        fit_normalization(np.ones((4, 4)))


def test_normalization_applied_to_patches():
    norm = {"offset": 2.0, "scale": 4.0}
    raw = extract_patches(IMG, [[0, 30, 30]], 9, 9)
    assert np.allclose(extract_patches(IMG, [[0, 30, 30]], 9, 9, normalization=norm), (raw - 2) / 4)


# ----------------------------------------------------------------------------- exact geometry

@pytest.mark.parametrize("w", [1, 3, 5, 8, 9, 16])
def test_identity_when_size_equals_window(w):
    """r == w samples pixel centres: integer keypoint (odd w) or half-integer (even w) -> a slice."""
    h = (w - 1) / 2
    cy, cx = 30 + (w % 2 == 0) * 0.5, 33 + (w % 2 == 0) * 0.5  # the centre of the slice
    p = extract_patches(IMG, [[1, cy, cx]], w, w)[0]
    y0, x0 = int(cy - h), int(cx - h)
    assert np.array_equal(p, IMG[1, y0:y0 + w, x0:x0 + w])


def test_even_window_on_integer_keypoint_is_centred_not_shifted():
    """An even window around an integer keypoint samples half-pixel positions (no silent shift)."""
    p = extract_patches(IMG, [[0, 30, 30]], 2, 2)[0]
    win = IMG[0, 29:32, 29:32]
    expect = (win[:-1, :-1] + win[1:, :-1] + win[:-1, 1:] + win[1:, 1:]) / 4
    assert np.allclose(p, expect, atol=1e-6)


def test_fractional_keypoint_equals_bilinear_value():
    y, x = 20.3, 40.75
    p = extract_patches(IMG, [[0, y, x]], 1, 1)[0, 0, 0]
    ref = ndi.map_coordinates(IMG[0].astype(np.float64), [[y], [x]], order=1)[0]
    assert p == pytest.approx(ref, abs=1e-6)
    p3 = extract_patches(IMG, [[0, y, x]], 3, 3)[0]
    ref3 = ndi.map_coordinates(IMG[0].astype(np.float64), np.meshgrid(y + np.arange(-1, 2), x + np.arange(-1, 2),
                               indexing="ij"), order=1)
    assert np.allclose(p3, ref3, atol=1e-6)


def test_matches_skimage_resize_of_whole_image():
    """The convention is scikit-image's: resize with anti-aliasing, edges mirrored."""
    img = IMG[0, :64, :64]
    for r in (8, 20, 32, 48, 96):
        ref = resize(img, (r, r), order=1, anti_aliasing=True, mode="symmetric")
        ours = extract_patches(img, [[0, 31.5, 31.5]], 64, r, padding="reflect")[0]
        assert np.abs(ours - ref).max() < 1e-5


def test_constant_image_gives_constant_patches():
    img = np.full((1, 40, 40), 3.25, np.float32)
    pts = grid_keypoints(img.shape, 5)
    for pad in (None, "reflect", "nearest", "wrap"):
        for w, r in ((16, 8), (13, 5), (6, 12)):
            kept = select_inside(pts, (40, 40), w, padding=pad)[0]
            assert np.allclose(extract_patches(img, kept, w, r, padding=pad), 3.25, atol=1e-5)


def test_linear_ramp_is_preserved():
    """Gaussian prefilter and linear interpolation keep a linear function: the patch is the ramp."""
    yy, xx = np.mgrid[:96, :96].astype(np.float64)
    img = (0.5 * yy - 0.25 * xx + 3).astype(np.float32)
    w, r, y, x = 32, 8, 47.3, 50.6
    p = extract_patches(img, [[0, y, x]], w, r)[0]
    s = -w / 2 + (np.arange(r) + 0.5) * w / r
    expect = 0.5 * (y + s)[:, None] - 0.25 * (x + s)[None, :] + 3
    assert np.allclose(p, expect, atol=1e-4)


def test_anti_aliasing_checkerboard():
    img = ((np.indices((128, 128)).sum(0) % 2) * 2 - 1).astype(np.float32)  # +-1 at Nyquist
    p = extract_patches(img, [[0, 63.5, 63.5]], 64, 8)[0]
    assert np.abs(p).max() < 0.02  # without the prefilter the samples would be +-1


def test_rotated_image_gives_rotated_patch():
    img = ndi.gaussian_filter(RNG.random((64, 64)), 1.5).astype(np.float32)
    p = extract_patches(img, [[0, 31.5, 31.5]], 24, 12)[0]
    q = extract_patches(np.rot90(img).copy(), [[0, 31.5, 31.5]], 24, 12)[0]
    assert np.allclose(np.rot90(p), q, atol=1e-5)
    # by 30 degrees about the centre (interpolated): close, not exact
    rot = ndi.rotate(img, 30, reshape=False, order=3)
    q = extract_patches(rot, [[0, 31.5, 31.5]], 16, 16)[0]
    p_rot = ndi.rotate(extract_patches(img, [[0, 31.5, 31.5]], 32, 32)[0], 30, reshape=False, order=3)[8:24, 8:24]
    assert np.corrcoef(q.ravel(), p_rot.ravel())[0, 1] > 0.98


def test_separable_and_gather_routes_agree():
    pts = np.array([[0, 30, 30], [1, 20.3, 40.7], [0, 35.5, 36.5], [1, 10, 12], [0, 0, 71]])
    for pad in (None, "reflect", "constant", "nearest", "wrap"):
        for w, r in ((8, 8), (9, 9), (16, 8), (12, 8), (8, 16), (30, 7)):
            p = pts if pad else select_inside(pts, IMG.shape[1:], w)[0]
            res = []
            for route in ("separable", "gather"):
                it = _PatchIterator(IMG, p, w, r, pad, None, 4096)
                res.append(np.concatenate([it._sample(int(f), np.array([y]), np.array([x]), route)
                                           for f, y, x in p]))
            assert np.abs(res[0] - res[1]).max() < 1e-5
            auto = extract_patches(IMG, p, w, r, padding=pad)
            assert np.abs(auto - res[1]).max() < 1e-5


def test_padding_modes_known_values():
    img = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    # keypoint at pixel (0, 0), window 3: row above / column left come from the padding
    get = lambda pad: extract_patches(img, [[0, 0, 0]], 3, 3, padding=pad)[0]  # noqa: E731
    assert get("nearest")[0].tolist() == [0, 0, 1]
    assert get("reflect")[0].tolist() == [0, 0, 1]
    assert get("wrap")[0].tolist() == [15, 12, 13]
    assert get("constant")[0].tolist() == [0, 0, 0] and get("constant")[1].tolist() == [0, 0, 1]
    norm = {"offset": 5.0, "scale": 1.0}
    assert extract_patches(img, [[0, 0, 0]], 3, 3, padding="constant", normalization=norm)[0, 0, 0] == 0


def test_batches_multi_frame_unsorted_and_iter():
    pts = grid_keypoints(IMG.shape, 6)
    pts = select_inside(pts, IMG.shape[1:], 12)[0]
    shuffled = pts[RNG.permutation(len(pts))]
    full = extract_patches(IMG, shuffled, 12, 6)
    small = extract_patches(IMG, shuffled, 12, 6, batch=7)
    # batches take different (equally exact) routes: equal up to float32 rounding
    assert np.allclose(full, small, atol=1e-6) and full.dtype == np.float32 and full.shape == (len(pts), 6, 6)
    starts = [(s, len(p)) for s, p in iter_patches(IMG, pts, 12, 6, batch=50)]
    assert starts[0] == (0, 50) and sum(n for _, n in starts) == len(pts)
    assert [s for s, _ in starts] == list(range(0, len(pts), 50))
    ref = {tuple(q): patch for q, patch in zip(shuffled, full)}
    assert all(np.array_equal(ref[tuple(q)], patch) for q, patch in zip(pts, extract_patches(IMG, pts, 12, 6)))


def test_extract_errors():
    with pytest.raises(ScaleVAEError, match=r"1 of 2 keypoints are too close to the edge.*select_inside"):
        extract_patches(IMG, [[0, 30, 30], [0, 2, 30]], 8, 8)
    with pytest.raises(ScaleVAEError, match="outside the 64 x 72 image"):
        extract_patches(IMG, [[0, 70, 30]], 8, 8, padding="reflect")
    with pytest.raises(ScaleVAEError, match="unknown padding"):
        extract_patches(IMG, [[0, 30, 30]], 8, 8, padding="mirror")
    with pytest.raises(ScaleVAEError, match="frame"):
        extract_patches(IMG, [[2, 30, 30]], 8, 8)
    with pytest.raises(ScaleVAEError, match="window"):
        extract_patches(IMG, [[0, 30, 30]], 0, 8)
    with pytest.raises(ScaleVAEError, match="NaN"):
        iter_patches(IMG, [[0, np.nan, 30]], 8, 8)  # checked at the call, not at the first batch
    with pytest.raises(ScaleVAEError, match="normalization"):
        extract_patches(IMG, [[0, 30, 30]], 8, 8, normalization={"offset": 0})
    assert extract_patches(IMG, np.zeros((0, 3)), 8, 4).shape == (0, 4, 4)


# ----------------------------------------------------------------------------- properties

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), half=st.integers(0, 6), ny=st.integers(13, 40),
       nx=st.integers(13, 40), n=st.integers(1, 20))
def test_property_centre_pixel_is_the_keypoint(seed, half, ny, nx, n):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(2, ny, nx)).astype(np.float32)
    w = 2 * half + 1
    pts = np.column_stack([rng.integers(0, 2, n), rng.integers(half, ny - half, n),
                           rng.integers(half, nx - half, n)]).astype(float)
    p = extract_patches(img, pts, w, w)
    f, y, x = pts.astype(int).T
    assert np.array_equal(p[:, half, half], img[f, y, x])
    assert np.array_equal(p[:, 0, 0], img[f, y - half, x - half])


@settings(max_examples=30, deadline=None)
@given(value=st.floats(-1e3, 1e3), w=st.integers(1, 20), r=st.integers(1, 20), seed=st.integers(0, 10**6),
       pad=st.sampled_from([None, "reflect", "nearest", "wrap"]))
def test_property_constant_image_constant_patches(value, w, r, seed, pad):
    rng = np.random.default_rng(seed)
    img = np.full((24, 24), value, np.float32)
    pts = np.column_stack([np.zeros(5), rng.uniform(10, 13, 5), rng.uniform(10, 13, 5)])
    p = extract_patches(img, pts, w, r, padding=pad)
    assert np.allclose(p, value, rtol=1e-5, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), step=st.integers(1, 9), w=st.integers(1, 30))
def test_property_points_never_shifted(seed, step, w):
    rng = np.random.default_rng(seed)
    pts = np.concatenate([grid_keypoints((1, 30, 30), step),
                          np.column_stack([np.zeros(10), rng.uniform(-0.5, 29.5, (10, 2))])])
    try:
        kept, dropped = select_inside(pts, (30, 30), w)
    except ScaleVAEError:
        return  # nothing fits: the error is the contract
    inside = ((pts[:, 1:] >= (w - 1) / 2) & (pts[:, 1:] <= 29 - (w - 1) / 2)).all(1)
    assert np.array_equal(kept, pts[inside]) and dropped == (~inside).sum()


@pytest.mark.parametrize("pad", [None, "reflect", "constant", "nearest", "wrap"])
def test_dense_grid_routes_agree(pad):
    """Many keypoint columns: the separable route filters whole rows; it must equal the gather route."""
    pts = select_inside(grid_keypoints(IMG.shape, 2), IMG.shape[1:], 30, padding=pad)[0]
    auto = extract_patches(IMG, pts, 30, 6, padding=pad)
    it = _PatchIterator(IMG, pts, 30, 6, pad, None, 10**6)
    gathered = np.concatenate([it._sample(f, pts[pts[:, 0] == f, 1], pts[pts[:, 0] == f, 2], "gather")
                               for f in (0, 1)])
    assert np.abs(auto - gathered).max() < 1e-5
