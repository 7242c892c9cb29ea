"""Keypoints: grid geometry, atom finding on a known lattice, SIFT, keypoint files, selection."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from scalevae.errors import ScaleVAEError
from scalevae.keypoints import (atom_keypoints, grid_keypoints, inside_mask, make_keypoints,
                                read_keypoints, select_inside, sift_keypoints)


# ----------------------------------------------------------------------------- grid

@pytest.mark.parametrize("n, step, count", [(10, 4, 3), (12, 4, 3), (13, 4, 4), (100, 7, 15), (5, 10, 1)])
def test_grid_counts_and_symmetric_margins(n, step, count):
    pts = grid_keypoints((2, n, n + 1), step)
    ys = np.unique(pts[:, 1])
    assert len(ys) == count
    assert np.allclose(np.diff(ys), step)
    assert ys[0] == pytest.approx((n - 1) - ys[-1])  # same margin at both ends
    assert len(pts) == 2 * count * len(np.unique(pts[:, 2]))
    assert set(pts[:, 0]) == {0, 1}
    assert pts.dtype == np.float64 and pts.shape[1] == 3


def test_grid_is_sorted_by_frame_y_x():
    pts = grid_keypoints((2, 20, 20), 5)
    assert (np.lexsort(pts[:, ::-1].T) == np.arange(len(pts))).all()


@pytest.mark.parametrize("step", [0, -4, 2.5, "a", True])
def test_grid_step_must_be_positive_int(step):
    with pytest.raises(ScaleVAEError, match="step"):
        grid_keypoints((1, 32, 32), step)


# ----------------------------------------------------------------------------- atoms

def _lattice(seed=0, n=128, a=10.0, s=1.6, noise=0.05, jitter=0.3):
    rng = np.random.default_rng(seed)
    c = np.arange(a / 2, n - a / 4, a)
    yy0, xx0 = np.meshgrid(c, c, indexing="ij")
    true = np.column_stack([yy0.ravel(), xx0.ravel()]) + rng.uniform(-jitter, jitter, (yy0.size, 2))
    yy, xx = np.mgrid[:n, :n].astype(float)
    img = np.zeros((n, n))
    for y, x in true:
        sl = (slice(max(0, int(y) - 8), int(y) + 9), slice(max(0, int(x) - 8), int(x) + 9))
        img[sl] += np.exp(-((yy[sl] - y) ** 2 + (xx[sl] - x) ** 2) / (2 * s * s))
    img += rng.normal(0, noise, img.shape) + 0.3 * np.sin(yy / 40)  # noise and a slow background
    return img, true


@pytest.mark.parametrize("size", [None, 10.0])  # the nearest-neighbour spacing, a = 10
def test_atoms_found_on_noisy_lattice(size):
    img, true = _lattice()
    pts = atom_keypoints(np.stack([img, img[::-1]]), size=size)
    assert set(pts[:, 0]) == {0, 1}
    found = pts[pts[:, 0] == 0, 1:]
    away = (true.min(1) >= 6) & (true.max(1) <= 121)  # atoms cut by the border need not be found
    d, _ = cKDTree(found).query(true[away])
    assert np.mean(d < 0.3) >= 0.98      # recall with sub-pixel accuracy
    assert np.sqrt(np.mean(d ** 2)) < 0.15
    d_false, _ = cKDTree(true).query(found)
    assert (d_false > 1).sum() == 0      # no spurious atoms
    assert not np.allclose(found, np.round(found))  # positions are fractional


def test_atom_size_error_and_no_atoms():
    img, _ = _lattice()
    with pytest.raises(ScaleVAEError, match="atom spacing"):
        atom_keypoints(img, size=-1)
    with pytest.raises(ScaleVAEError, match="no atoms"):
        atom_keypoints(np.ones((40, 40)), size=4)


# ----------------------------------------------------------------------------- sift

def test_sift_finds_points_on_texture():
    rng = np.random.default_rng(0)
    img = ndi.gaussian_filter(rng.random((96, 96)), 2)
    pts = sift_keypoints(np.stack([img, img]))
    assert pts.shape[1] == 3 and len(pts) > 5
    assert set(pts[:, 0]) == {0, 1}
    assert (pts[:, 1:] >= 0).all() and (pts[:, 1:] <= 95).all()
    assert len(np.unique(pts, axis=0)) == len(pts)


# ----------------------------------------------------------------------------- files

def test_read_csv_any_column_order_extra_columns(tmp_path):
    fn = tmp_path / "kp.csv"
    fn.write_text("id,x,y,frame\n7,3.5,4,1\n8,10,12.25,0\n")
    pts = read_keypoints(fn, 2)
    assert pts.tolist() == [[1, 4, 3.5], [0, 12.25, 10]]


def test_read_npy_two_and_three_columns(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[4.0, 5.0], [6.0, 7.5]]))
    np.save(tmp_path / "b.npy", np.array([[1.0, 4.0, 5.0]]))
    assert read_keypoints(tmp_path / "a.npy", 1).tolist() == [[0, 4, 5], [0, 6, 7.5]]
    assert read_keypoints(tmp_path / "b.npy", 2).tolist() == [[1, 4, 5]]


def test_read_whitespace_txt(tmp_path):
    fn = tmp_path / "kp.txt"
    fn.write_text("frame y x\n0 1 2\n0 3 4\n")
    assert read_keypoints(fn, 1).tolist() == [[0, 1, 2], [0, 3, 4]]


@pytest.mark.parametrize("text, match", [
    ("frame,y\n0,1\n", "lacks the column.*x"),
    ("a,b,c\n0,1,2\n", "frame, y, x"),
    ("frame,y,x\n0,1,2\n0,abc,3\n", "row 3.*'abc' is not a number"),
    ("frame,y,x\n0,nan,3\n", "row 2.*NaN"),
    ("frame,y,x\n5,1,3\n", "past the last frame"),
    ("frame,y,x\n-1,1,3\n", "negative"),
    ("frame,y,x\n0.5,1,3\n", "whole number"),
    ("frame,y,x\n", "no keypoints"),
    ("", "empty"),
    ("frame,y,x\n0,1\n", "too few values"),
])
def test_keypoint_file_errors(tmp_path, text, match):
    fn = tmp_path / "kp.csv"
    fn.write_text(text)
    with pytest.raises(ScaleVAEError, match=match):
        read_keypoints(fn, 2)


def test_missing_file():
    with pytest.raises(ScaleVAEError, match="does not exist"):
        read_keypoints("/nonexistent/kp.csv", 1)


# ----------------------------------------------------------------------------- make_keypoints

def test_make_keypoints_specs(tmp_path):
    stack = np.zeros((2, 40, 40))
    assert np.array_equal(make_keypoints("grid:4", stack), grid_keypoints(stack.shape, 4))
    img, _ = _lattice(n=64)
    assert len(make_keypoints("atoms:10", img)) > 20  # SIZE: the nearest-neighbour spacing
    assert len(make_keypoints("atoms", img, threshold=0.2)) > 20
    fn = tmp_path / "kp.csv"
    fn.write_text("frame,y,x\n1,3,4\n")
    assert make_keypoints(str(fn), stack).tolist() == [[1, 3, 4]]
    assert make_keypoints(fn, stack).tolist() == [[1, 3, 4]]
    assert make_keypoints(np.array([[5.0, 6.0]]), stack).tolist() == [[0, 5, 6]]


@pytest.mark.parametrize("spec, match", [
    ("grdi:4", "unknown keypoints.*grid:STEP.*atoms.*sift"),
    ("grid", "needs a step"),
    ("grid:0", "step"),
    ("atoms:big", "atom size"),
    ("missing.csv", "does not exist"),
])
def test_make_keypoints_errors(spec, match):
    with pytest.raises(ScaleVAEError, match=match):
        make_keypoints(spec, np.zeros((1, 32, 32)))


def test_points_outside_image_from_file_are_an_error(tmp_path):
    fn = tmp_path / "kp.csv"
    fn.write_text("frame,y,x\n0,3,4\n0,40,2\n0,50,50\n")
    with pytest.raises(ScaleVAEError, match=r"2 of 3 keypoints.*outside the 32 x 32 image.*keypoint 1"):
        make_keypoints(fn, np.zeros((1, 32, 32)))


# ----------------------------------------------------------------------------- inside / select

def test_inside_mask_follows_the_convention():
    # window 8: centre must be in [3.5, ny - 1 - 3.5]
    pts = np.array([[0, 3.5, 3.5], [0, 3.4, 10], [0, 16.5, 16.5], [0, 16.6, 10], [0, 10, 10]])
    assert inside_mask(pts, (21, 21), 8).tolist() == [True, False, True, False, True]
    # window 7: centre in [3, ny - 4]
    assert inside_mask(np.array([[0, 3, 3], [0, 2.9, 3]]), (10, 10), 7).tolist() == [True, False]


def test_select_inside_keeps_points_unchanged_and_counts():
    pts = grid_keypoints((1, 32, 32), 4)
    kept, dropped = select_inside(pts, (32, 32), [8, 16])
    assert dropped == len(pts) - len(kept)
    assert np.array_equal(kept, pts[inside_mask(pts, (32, 32), 16)])
    kept, dropped = select_inside(pts, (32, 32), 64, padding="reflect")
    assert dropped == 0 and np.array_equal(kept, pts)


def test_select_inside_nothing_left():
    with pytest.raises(ScaleVAEError, match="no keypoint lies.*padding='reflect'"):
        select_inside(np.array([[0, 2.0, 2.0]]), (32, 32), 16)
    with pytest.raises(ScaleVAEError, match="outside"):
        select_inside(np.array([[0, 40.0, 2.0]]), (32, 32), 4, padding="reflect")
