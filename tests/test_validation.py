"""The method finds the known answers of the synthetic examples (issue 3).

Every test runs the full method (``scalevae.run``) on a generator of ``scalevae.datasets`` and
scores the latents against its ground truth with the functions of ``validation/scoring.py``
(``validation/run_validation.py`` measures the same checks over several seeds and writes
``validation/RESULTS.md``, where each threshold is justified by the spread over seeds).

The default run holds a fast subset (small images, one or two windows, the default patch size),
each passing on every seed tried (two more of that kind, a minute between them on two cores,
are marked slow); the full checks are ``@pytest.mark.slow`` (``make
test-slow``), one to four minutes each on two cores (the six-seed ones longer), and assert
only what held on every seed RESULTS.md measured: a check that passed on all six at seed 0, one
that passed on five of six as "on at least five of the six"; a score with no threshold that
holds is recorded there, not asserted here. The domain
check uses ``patch_size=16`` (``SETTINGS`` in ``validation/scoring.py`` says why).
``validation`` is imported as a package: ``tests/conftest.py`` puts the repository root on
``sys.path``.
"""

import json

import pytest

from validation import run_validation
from validation import scoring as rv

SEED = 0
#: The seeds validation/RESULTS.md measured. A check that held on all of them is asserted at SEED;
#: one that held on five of six is asserted as "at least five of these six" (its slow test runs
#: all six).
SEEDS = range(6)


def check(scores, *names):
    """Assert each named score meets its threshold; the message shows the value and the rule."""
    failed = []
    for name in names:
        op, thr, meaning = rv.THRESHOLDS[name]
        if not rv.passes(name, scores[name]):
            failed.append(f"{name} = {scores[name]:.3g}, needs {op} {thr} ({meaning})")
    assert not failed, "; ".join(failed)


def check_most(per_seed, *names, failures_allowed=1):
    """Assert each named score meets its threshold on all but ``failures_allowed`` seeds."""
    for name in names:
        failed = {seed: round(scores[name], 3) for seed, scores in per_seed.items()
                  if not rv.passes(name, scores[name])}
        op, thr, meaning = rv.THRESHOLDS[name]
        assert len(failed) <= failures_allowed, (
            f"{name} fails {op} {thr} ({meaning}) on seeds {failed}")


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


@pytest.mark.slow  # ~11 CPU s; the full movie's check below asserts the same on 4 windows
def test_graphene_movie_latent_dispersion_tracks_defect_count_two_windows():
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


@pytest.mark.slow  # ~24 CPU s; the full two-scale check below asserts the same on 6 seeds
def test_two_scale_regions_separate_only_above_the_critical_window_three_windows():
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
def test_library_latents_are_monotonic_in_grain_size_on_most_seeds():
    check_most({seed: rv.validate_library(seed)[0] for seed in SEEDS}, "library_rho")


@pytest.fixture(scope="module")
def twoscale():
    return {seed: rv.validate_twoscale(seed)[0] for seed in SEEDS}


@pytest.mark.slow
def test_two_scale_regions_separate_only_above_the_critical_window(twoscale):
    check(twoscale[SEED], "twoscale_acc_below")
    check_most(twoscale, "twoscale_gain_above")


@pytest.mark.slow
def test_two_scale_recommended_window_lands_within_one_step_of_the_critical_window(twoscale):
    check_most(twoscale, "twoscale_window_error", "twoscale_w_in_range")


@pytest.mark.slow
def test_domains_separate_at_small_windows():
    # domains_broadening_rho is recorded, not asserted: its sign changes from seed to seed.
    scores, _ = rv.validate_domains(SEED)
    check(scores, "domains_accuracy_gain")


@pytest.mark.slow
def test_recommended_window_lands_on_the_domain_period_with_default_settings_on_most_seeds():
    check_most({seed: rv.validate_period(seed)[0] for seed in SEEDS}, "period_window_error")


# --------------------------------------------------------------------------- the results page


def test_every_score_is_either_judged_or_recorded():
    """Each score a check returns has a threshold or a reason why not (so the page shows it)."""
    assert not set(rv.THRESHOLDS) & set(rv.RECORDED)
    assert set(rv.QUICK) == set(rv.SETTINGS) == set(rv.VALIDATIONS)


def test_stored_scores_write_the_committed_page():
    """RESULTS.md is exactly what the script writes from scores.json: no hand-written part."""
    stored = json.loads((run_validation.HERE / "scores.json").read_text())
    assert set(stored) == set(rv.VALIDATIONS)
    assert (run_validation.HERE / "RESULTS.md").read_text() == run_validation.page(stored)


def test_quick_run_writes_a_page_of_the_full_shape(tmp_path):
    """``run_validation.py --quick`` runs every check on tiny data and writes RESULTS.md with the
    same sections as the full page: one table per check with its settings, date and commit."""
    run_validation.main(["--quick", "--no-figures", "--out", str(tmp_path)])
    text = (tmp_path / "RESULTS.md").read_text()
    stored = json.loads((tmp_path / "scores.json").read_text())
    full = (run_validation.HERE / "RESULTS.md").read_text()
    for name in rv.VALIDATIONS:
        assert stored[name]["quick"] and list(stored[name]["scores"]) == ["0"]
        assert set(stored[name]["scores"]["0"]) <= set(rv.THRESHOLDS) | set(rv.RECORDED)
        assert f"\n## {name}\n" in text and f"\n## {name}\n" in full
    heading = [line.split("|")[1:3] for line in text.splitlines() if line.startswith("| score")]
    assert len(heading) == len(rv.VALIDATIONS)
    assert text.count("- measured at commit `") == len(rv.VALIDATIONS)
    assert "Quick configuration" in text and "Quick configuration" not in full
