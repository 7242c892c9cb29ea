"""Every figure function returns a Figure, draws headless, and labels its axes with units."""

import io
from pathlib import Path

import numpy as np
import pytest
from scalevae.testing import FakeModel, make_fake_result, make_image
from matplotlib.figure import Figure

from scalevae import analysis as an
from scalevae import plot

PS, UNIT = 3.9, "nm"


def _labels(fig):
    """All axis labels of a figure, secondary axes and colorbars included."""
    out = []
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_ylabel()]
        for child in ax.get_children():  # secondary axes live as children of their parent
            if hasattr(child, "get_xlabel") and child is not ax:
                out += [child.get_xlabel(), child.get_ylabel()]
    return [s for s in out if s]


def _check(fig, *units):
    assert isinstance(fig, Figure)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)  # draws without pyplot or a display
    assert buf.getvalue()[:4] == b"\x89PNG"
    labels = " | ".join(_labels(fig))
    for u in units:
        assert u in labels, f"no axis label with {u!r} in: {labels}"


@pytest.fixture(scope="module")
def ds():
    return make_fake_result(n_windows=8)


def test_window_label_gives_px_and_physical_units():
    assert plot.window_label(16, PS, UNIT) == "16 px (62.4 nm)"
    assert plot.window_label(16, float("nan"), "") == "16 px"  # how results store "unknown"
    assert plot.window_label(16, 1.0, "px") == "16 px"  # a scale in pixels says nothing more


def test_data_figures(ds):
    img = make_image()
    pts = np.column_stack([ds.frame, ds.y, ds.x])
    _check(plot.plot_keypoints(img, pts, pixel_size=PS, unit=UNIT), "x (px)", "y (px)")
    fig = plot.plot_example_patches(img, pts, ds.window.values, n=3, pixel_size=PS, unit=UNIT)
    _check(fig)
    # one mosaic image: a column per window (6), a row per keypoint (3), labelled in place
    titles = [t.get_text() for t in fig.axes[0].texts]
    assert "8 px (31.2 nm)" in titles and len(fig.axes) == 1 and len(titles) == 6
    assert len(fig.axes[0].get_yticklabels()) == 3


def test_example_patches_at_their_own_size():
    img = np.random.default_rng(0).random((1, 60, 60)).astype(np.float32)
    fig = plot.plot_example_patches(img, np.array([[0, 30.0, 30.0]]), [8, 20], n=1)
    # each tile of the mosaic holds the patch at its own pixel count: 8 and 20 distinct rows
    ax = fig.axes[0]
    assert ax.patch_windows == [8, 20]
    mosaic = np.asarray(ax.images[0].get_array())
    tile = mosaic.shape[0]
    left, right = mosaic[:, :tile, 0], mosaic[:, -tile:, 0]
    assert len(np.unique(left, axis=0)) == 8 and len(np.unique(right, axis=0)) == 20
    # keypoints too close to the border for the largest window are not picked
    pts = np.array([[0, 3.0, 3.0], [0, 30.0, 31.0]])
    fig = plot.plot_example_patches(img, pts, [8, 20], n=1)
    assert "(30, 31) px" in fig.axes[0].get_yticklabels()[0].get_text()


def test_latent_space_figures(ds):
    dens = an.latent_density(ds, grid_size=24)
    fig = plot.plot_latent_distributions(dens, max_panels=4, pixel_size=PS, unit=UNIT)
    _check(fig, "z1", "z2")
    assert len(fig.axes) == 4 and "8 px (31.2 nm)" in fig.axes[0].get_title()
    reps = {w: an.latent_representation(FakeModel(), an.populated_extent(ds, window=w), 4)
            for w in (8, 16, 36)}
    _check(plot.plot_latent_manifolds(reps, state="final", pixel_size=PS, unit=UNIT), "z1")
    img = make_image()
    _check(plot.plot_latent_images(an.latent_images(ds), img, 3), "x (px)", "y (px)")
    scattered = make_fake_result(scattered=True, n_frames=2)
    _check(plot.plot_latent_images(an.latent_images(scattered)), "x (px)", "y (px)")
    _check(plot.plot_kde_pca(an.kde_pca(dens), PS, UNIT), "window (px)", "window (nm)")
    _check(plot.plot_trajectory_pca(an.trajectory_pca(ds), img, PS, UNIT), "window (px)",
           "window (nm)", "x (px)")
    one_latent = make_fake_result(z_mean=np.random.default_rng(0).normal(size=(5, 120, 1)))
    d1 = an.latent_density(one_latent, grid_size=16)
    _check(plot.plot_latent_distributions(d1), "z1")
    _check(plot.plot_kde_pca(an.kde_pca(d1, 2)), "window (px)")


def test_stack_and_length_scale_figures():
    st = an.stack_statistics(make_fake_result(n_frames=5, control=True), smooth_sigma=1)
    fig = plot.plot_stack_statistics(st, pixel_size=PS, unit=UNIT)
    _check(fig, "window (px)", "window (nm)", "time (s)")
    st = an.stack_statistics(make_fake_result(n_frames=3))
    _check(plot.plot_stack_statistics(st, normalized=False), "window (px)", "frame")
    ls = an.length_scales(make_fake_result(n_windows=6))
    fig = plot.plot_length_scales(ls, PS, UNIT)
    _check(fig, "window (px)", "window (nm)")
    # worded as the report's card: a number only when the answer is conclusive
    title = fig.texts[0].get_text()
    assert title.startswith("recommended window" if bool(ls["conclusive"])
                            else "no conclusive window")
    gradual = ls.assign(conclusive=False, gradual=True, recommended_low=8, recommended_high=20)
    title = plot.plot_length_scales(gradual).texts[0].get_text()
    assert title.startswith("no conclusive window (gradual): 8-20 px, most probable")


def test_density_peak_figure_numbers_each_peak_and_shows_its_patch(ds):
    dens = an.latent_density(ds, grid_size=24)
    pk = an.kde_peaks(dens, FakeModel(patch_size=8), num_peaks=3)
    fig = plot.plot_kde_peaks(pk, dens, max_panels=3, pixel_size=PS, unit=UNIT)
    _check(fig, "z1", "z2")
    top, bottom = fig.axes[:3], fig.axes[3:6]  # row of densities over row of patches
    wins = [int(w) for w in plot.pick_panels(dens.window.values, 3)]
    for ax, w in zip(top, wins):
        n = int((pk["window"].values == w).sum())
        assert ax.get_title() == f"{plot.window_label(w, PS, UNIT)}: {n} peak(s)"
        assert len(ax.texts) == n
    for ax in bottom:
        img = ax.images[0].get_array()  # NaN gaps are masked
        # each patch of 8 px in the mosaic, 1 px gaps between them
        assert img.shape[0] % 9 == 8 and np.ma.getmaskarray(img).any() == (len(ax.texts) > 1)
    # without decoded patches: one row of densities only
    fig = plot.plot_kde_peaks(an.kde_peaks(dens), dens, max_panels=2)
    assert len(fig.axes) == 2
    one = make_fake_result(n_windows=3, z_mean=np.random.default_rng(0).normal(size=(3, 120, 1)))
    d1 = an.latent_density(one, grid_size=32)
    _check(plot.plot_kde_peaks(an.kde_peaks(d1), d1), "z1")


def test_outlier_map_circles_the_rarest_keypoint():
    z = np.zeros((2, 60, 2))
    z[:, :, 0] = np.random.default_rng(1).normal(0, 0.1, 60)
    z[:, 37] = [5.0, 5.0]  # one keypoint far from the others
    ds = make_fake_result(grid=(6, 10), windows=[8, 16], z_mean=z)
    sc = [an.outlier_scores(ds, window=w) for w in (8, 16)]
    fig = plot.plot_outlier_scores(sc, make_image(), n_mark=3, pixel_size=PS, unit=UNIT)
    _check(fig, "x (px)", "y (px)", "outlier score (-ln latent density)")
    ax = fig.axes[0]  # the maps: one mosaic, a tile per window
    ones = [t for t in ax.texts if t.get_text() == "1"]
    assert len(ones) == 2  # the rarest keypoint of each window
    for one, (bx0, by0, _, _) in zip(ones, ax.tile_boxes):
        np.testing.assert_allclose(one.xy, (bx0 + ds.x.values[37] / ax.tile_step,
                                            by0 + ds.y.values[37] / ax.tile_step))
    assert sum(t.get_text().isdigit() for t in ax.texts) == 6  # 3 circled per window
    assert "16 px (62.4 nm)" in [t.get_text() for t in ax.texts]
    _check(plot.plot_outlier_scores(an.outlier_scores(make_fake_result(scattered=True,
                                                                       n_frames=2))))


def test_training_figures(ds):
    _check(plot.plot_loss(ds), "(nats)", "window (px)")
    _check(plot.plot_kl(ds, PS, UNIT), "KL per latent (nats)", "window (px)", "window (nm)")
    _check(plot.plot_kl(ds), "window (px)")


def test_plot_module_never_uses_pyplot():
    # pyplot keeps every figure alive and may pick a GUI backend; Figure() needs neither
    for path in Path(plot.__file__).parent.glob("*.py"):
        src = path.read_text()
        assert "matplotlib.pyplot" not in src and "import pyplot" not in src, path.name
