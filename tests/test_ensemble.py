"""Several seeds side by side: the same numbers as each seed alone, one per core."""

import numpy as np
import torch

from scalevae.training import TrainConfig
from scalevae.training.ensemble import seed_checkpoints, start_seeds, train_seeds


def _patches():
    rng = np.random.default_rng(0)
    return {w: rng.normal(size=(96, 8, 8)).astype(np.float32) for w in (8, 12)}


def test_seeds_side_by_side_give_each_seed_its_own_numbers():
    patches = _patches()
    cfg = TrainConfig(epochs=2, warmup_steps=2, batch_size=32)
    kw = dict(patch_size=8, latent_dim=2, invariance="rotation")
    before = torch.get_num_threads()
    alone = train_seeds(patches.__getitem__, [8, 12], cfg, [3, 4], kw, workers=1)
    assert torch.get_num_threads() == before  # restored after training in this process
    parallel = train_seeds(patches.__getitem__, [8, 12], cfg, [3, 4], kw, workers=2)
    assert [o["seed"] for o in parallel] == [3, 4]
    for a, b in zip(alone, parallel):
        for ra, rb in zip(a["results"], b["results"]):
            assert ra.window == rb.window and ra.losses == rb.losses
            np.testing.assert_array_equal(ra.instant["z_mean"], rb.instant["z_mean"])
    # different seeds, different models
    assert alone[0]["results"][-1].losses != alone[1]["results"][-1].losses


def test_workers_of_several_threads_start_fresh_and_give_the_same_numbers(tmp_path):
    """Two threads per model: the workers are spawned (an OpenMP pool does not survive a fork)
    and train exactly as this process does on two threads; each seed checkpoints its windows
    in its own folder."""
    patches = _patches()
    cfg = TrainConfig(epochs=1, warmup_steps=2, batch_size=32)
    kw = dict(patch_size=8, latent_dim=2, invariance="rotation")
    here = train_seeds(patches.__getitem__, [8, 12], cfg, [0, 1], kw, workers=1, threads=2)
    jobs = start_seeds(patches.__getitem__, [8, 12], cfg, [0, 1], kw, workers=2, threads=2,
                       checkpoints=tmp_path)
    spawned = jobs.results()
    for a, b in zip(here, spawned):
        np.testing.assert_array_equal(a["results"][-1].instant["z_mean"],
                                      b["results"][-1].instant["z_mean"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/window_*.pt")) \
        == [f"{seed_checkpoints('', s).as_posix()}/window_{w:04d}.pt"
            for s in (0, 1) for w in (8, 12)]


def test_cancel_stops_workers_in_the_middle_of_training():
    """A run that fails (or is interrupted) while the other seeds train stops them at once
    instead of waiting for their training to end; cancel after the results is harmless."""
    import time

    rng = np.random.default_rng(0)
    patches = {w: rng.normal(size=(2000, 16, 16)).astype(np.float32) for w in (8, 12, 16)}
    kw = dict(patch_size=16, latent_dim=2, invariance="rotation")
    jobs = start_seeds(patches.__getitem__, [8, 12, 16], TrainConfig(epochs=30), [1, 2], kw,
                       workers=2)
    time.sleep(1.0)
    t = time.perf_counter()
    jobs.cancel()
    assert time.perf_counter() - t < 10  # training both seeds takes minutes
    small = _patches()
    done = start_seeds(small.__getitem__, [8], TrainConfig(epochs=1, warmup_steps=1), [1, 2],
                       kw | {"patch_size": 8}, workers=2)
    assert len(done.results()) == 2
    done.cancel()
