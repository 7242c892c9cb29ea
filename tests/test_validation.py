"""The method finds the known answers of the synthetic examples (issue 3).

Every test runs the full method (``scalevae.run``) on a generator of ``scalevae.datasets`` and
scores the latents against its ground truth with the functions of ``validation/scoring.py``
(``validation/run_validation.py`` measures the same checks over several seeds and writes
``validation/RESULTS.md``, where each threshold is justified by the spread over seeds).

The default run holds a fast subset (small images, one or two windows, the default patch size),
each passing on every seed tried (RESULTS.md); the full checks are ``@pytest.mark.slow``
(``make test-slow``), one to four minutes each on two cores. The two-scale and domain checks use
``patch_size=16`` (``SETTINGS`` in ``validation/scoring.py`` says why).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "validation" / "scoring.py"
_spec = importlib.util.spec_from_file_location("scoring", _PATH)
rv = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("scoring", rv)
_spec.loader.exec_module(rv)

SEED = 0


def check(scores, *names):
    """Assert each named score meets its threshold; the message shows the value and the rule."""
    failed = []
    for name in names:
        op, thr, meaning = rv.THRESHOLDS[name]
        if not rv.passes(name, scores[name]):
            failed.append(f"{name} = {scores[name]:.3g}, needs {op} {thr} ({meaning})")
    assert not failed, "; ".join(failed)


# --------------------------------------------------------------------------- fast subset


def test_graphene_sublattices_share_z_fast():
    """Small pristine graphene, one window 2.7 C-C wide: A and B atoms (whose neighbourhoods are
    the same up to a 60 degree rotation) land on the same z, within a posterior width, and a
    classifier on posterior samples of z cannot tell them apart; their angles (defined modulo
    120 degrees, the atoms' 3-fold symmetry) are sharp within a sublattice and 60 degrees apart
    between the two. Seeds 0-29 pass (offset <= 0.4 deg, concentration >= 0.996 on 0-5); with
    the angle's old order rule (agree 0.8) 6 of them took graphene's six-fold second shell."""
    scores, _ = rv.validate_sublattice(
        SEED, windows=[24], read_window=24,
        data=dict(n_frames=3, shape=(96, 96), vacancy_rate=0, stone_wales_rate=0, si_rate=0))
    check(scores, "sublattice_z_separation", "sublattice_z_accuracy", "sublattice_angle_offset",
          "sublattice_angle_concentration")


def test_graphene_atoms_near_defects_stand_out_fast():
    """Small graphene movie, windows 12 and 40 px: atoms with a defect within 10 px (a quarter
    window, more than the 8.9 px C-C distance, so a vacancy's neighbours count) stand out from
    the bulk mode of z. 40 px, not less: seeds 0-9 of this movie all have >= 27 such atoms; the
    per-frame dispersion needs the full movie (next test)."""
    scores, _ = rv.validate_movie(SEED, windows=[12, 40],
                                  data=dict(n_frames=5, shape=(112, 112), vacancy_rate=4.0))
    check(scores, "defect_auc")


def test_graphene_movie_latent_dispersion_tracks_defect_count_fast():
    """The full movie (10 frames of 192 x 192 px, as in the slow check) with only its smallest
    and largest windows, 12 and 48 px: the per-frame spread of z at 48 px rises with the number
    of defects. Seeds 0-5: rho 0.96-1.0 (threshold 0.7); about 10 s each on two cores."""
    scores, _ = rv.validate_movie(SEED, windows=[12, 48])
    check(scores, "movie_dispersion_rho")


def test_domains_small_window_latents_tell_a_c_and_walls_apart_fast():
    """Small PFM image, windows 8 and 16 px at the default patch size: a domains, c domains and
    walls are told apart from posterior samples of z far better than chance (1/3)."""
    scores, _ = rv.validate_domains(SEED, windows=[8, 16], data=dict(shape=(96, 96), period=16),
                                    patch_size=None)
    check(scores, "domains_accuracy_gain")


def test_two_scale_regions_separate_only_above_the_critical_window_fast():
    """Two-scale texture (W = 24 px), windows 16, 32 and 48 px on a 6 px grid: the halves are
    not told apart from z at 16 px (below W) and are at 48 px, by at least half of what a
    perfect void counter achieves. Seeds 0-5: accuracy at 16 px 0.50-0.54, gain 0.72-1.15
    (an 8 px grid gave only 0.53-0.56 on seeds 1-2)."""
    scores, _ = rv.validate_twoscale(SEED, windows=[16, 32, 48], keypoints="grid:6")
    check(scores, "twoscale_acc_below", "twoscale_gain_above")


# --------------------------------------------------------------------------- full checks


@pytest.mark.slow
def test_graphene_sublattices_share_z_and_angles_differ_by_60_degrees():
    scores, _ = rv.validate_sublattice(SEED)
    check(scores, "sublattice_z_separation", "sublattice_z_accuracy", "sublattice_angle_offset",
          "sublattice_angle_concentration")


@pytest.fixture(scope="module")
def movie():
    return rv.validate_movie(SEED)[0]


@pytest.mark.slow
def test_graphene_atoms_near_defects_separate_from_bulk_at_large_windows(movie):
    check(movie, "defect_auc")


@pytest.mark.slow
def test_graphene_movie_latent_dispersion_tracks_defect_count(movie):
    check(movie, "movie_dispersion_rho")


@pytest.mark.slow
def test_graphene_bulk_atoms_of_both_sublattices_share_z_where_z_is_used(movie):
    check(movie, "movie_sublattice_z_separation")


@pytest.mark.slow
def test_library_latents_are_monotonic_in_grain_size():
    scores, _ = rv.validate_library(SEED)
    check(scores, "library_rho")


@pytest.fixture(scope="module")
def twoscale():
    return rv.validate_twoscale(SEED)[0]


@pytest.mark.slow
def test_two_scale_regions_separate_only_above_the_critical_window(twoscale):
    check(twoscale, "twoscale_acc_below", "twoscale_gain_above")


@pytest.mark.slow
def test_two_scale_recommended_window_lands_within_one_step_of_the_critical_window(twoscale):
    check(twoscale, "twoscale_window_error", "twoscale_w_in_range")


@pytest.mark.slow
@pytest.mark.xfail(reason="known failure on 6/6 seeds (RESULTS.md, fourteenth round): read from "
                          "the instant state the recommended window lies 2-3 steps below the "
                          "window where the true void count separates the regions half-way",
                   strict=False)
def test_two_scale_recommended_window_lands_on_the_void_count_separation_window(twoscale):
    check(twoscale, "twoscale_separation_error")


@pytest.mark.slow
def test_domains_separate_at_small_windows_and_broaden_with_window():
    scores, _ = rv.validate_domains(SEED)
    check(scores, "domains_accuracy_gain", "domains_broadening_rho")


@pytest.mark.slow
def test_recommended_window_lands_on_the_domain_period_with_default_settings():
    scores, details = rv.validate_period(SEED)
    assert details["significant"] == 1
    check(scores, "period_window_error")
