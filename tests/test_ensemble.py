"""Several seeds side by side: the same numbers as each seed alone, one per core."""

import numpy as np
import torch

from scalevae.training import TrainConfig
from scalevae.training.ensemble import train_seeds


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
