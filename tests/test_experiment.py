"""The simulated experiment: hidden property, the active-learning loop, the instrument hook."""

import time

import numpy as np
import pytest

import scalevae
from scalevae.datasets import ferroelectric_domains, two_scale_texture
from scalevae.descriptors import feature_matrix
from scalevae.errors import ScaleVAEError
from scalevae.experiment import hidden_property, learning_curve, next_point

from conftest import wave_image


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    with pytest.warns(UserWarning):
        scalevae.run(wave_image((48, 48)), windows=[8, 12, 16], keypoints="grid:4", epochs=1,
                     quiet=True, report=False, out=folder, overwrite=True)
    return scalevae.load_run(folder)


def test_hidden_property_is_the_structure_fraction_in_the_disk():
    ex = ferroelectric_domains(shape=(64, 64), period=12, seed=2)
    p = hidden_property(ex, 5)
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 30) ** 2 + (xx - 33) ** 2 <= 25
    assert p[30, 33] == pytest.approx((ex.truth["labels"][disk] == 0).mean(), abs=1e-9)
    voids = hidden_property(two_scale_texture(shape=(128, 128), critical_window=16), 16)
    assert 0 <= voids.min() and voids.max() <= 1 and voids.std() > 0.02


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_loop_learns_a_smooth_function_of_the_descriptors(run, seed):
    """32 candidates, 10 measurements: the error falls well below that of the first steps."""
    rng = np.random.default_rng(seed)
    d = run.descriptors(window=12)
    pick = rng.choice(d.sizes["point"], 32, replace=False)
    x = feature_matrix(d)[pick]
    z = (x - x.mean(0)) / x.std(0)
    values = np.sin(z[:, 0]) + 0.5 * z[:, 1]
    curve = learning_curve(x, values, n_steps=10, seed=seed)
    assert curve.n_measured.tolist() == list(range(2, 11))
    assert len(set(curve.order.tolist())) == 10  # never measures a point twice
    assert curve.rmse[-1] < 0.5 * curve.rmse[:2].min()


def test_the_loop_is_deterministic_and_random_choice_is_a_baseline():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (60, 2))
    y = np.sin(x[:, 0]) + x[:, 1]
    a, b = (learning_curve(x, y, 12, "random", seed=4) for _ in range(2))
    np.testing.assert_array_equal(a.rmse, b.rmse)
    assert a.at(12) == a.rmse[-1]
    with pytest.raises(ScaleVAEError, match="between"):
        learning_curve(x, y, 100)
    with pytest.raises(ScaleVAEError, match="std, random"):
        learning_curve(x, y, 10, "ei")


def test_next_point_suggests_an_unmeasured_candidate_of_a_new_frame(run):
    frame = wave_image((48, 48), seed=7)
    first = next_point(run, frame, window=12)
    assert first.point.shape == (3,) and first.window == 12
    measured = [first.point[1:], [20.0, 24.0], [28.0, 16.0]]
    t = time.perf_counter()
    s = next_point(run, frame, measured=measured, values=[0.1, 0.5, 0.3], window=12)
    assert time.perf_counter() - t < 30  # generous: a shared machine; see docs/experiment.md
    assert "predicted_std" in s.descriptors
    again = next_point(run, frame, measured=measured, values=[0.1, 0.5, 0.3], window=12,
                       candidates=first.descriptors)  # the frame's encoding reused
    np.testing.assert_array_equal(again.point, s.point)
    taken = np.array([[0, *m] for m in measured])
    assert np.linalg.norm(taken - s.point, axis=1).min() > 0.5
    with pytest.raises(ScaleVAEError, match="one value per measured point"):
        next_point(run, frame, measured=measured, values=[0.1], window=12)
