"""Several seeds of one run side by side: N models trained on the same patches, one per core.

The model is many small operations, so one training run keeps about one core busy (for
patches of 16 px and less it runs on one thread: :func:`~scalevae.training.cpu_threads`); a
seed ensemble (the spread of the answer over training seeds) therefore runs its models in
parallel processes, one thread each, instead of one after another. The patches are cut once,
in the calling process, and shared with the workers (fork: copy-on-write, nothing pickled).

Each seed's numbers are those of :func:`~scalevae.training.train_progressive` run alone with
that seed on one thread: the model's initial weights come from ``torch.manual_seed(seed)`` (as
``scalevae.run``'s model) and each window's generator from ``(seed, window index)``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch

from ..model import SIVAE
from .progressive import train_progressive
from .schedule import TrainConfig

__all__ = ["train_seeds"]

# The patches of every window, set in the parent before the workers fork (read, never pickled).
_SHARED: dict = {}


def _train_one(seed):
    torch.set_num_threads(1)
    patches, windows, cfg, model_kwargs = (_SHARED[k] for k in
                                           ("patches", "windows", "cfg", "model_kwargs"))
    torch.manual_seed(int(seed))
    model = SIVAE(**model_kwargs)
    model, results = train_progressive(windows, patches.__getitem__, model, cfg, seed=int(seed))
    return {"seed": int(seed), "results": results,
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "model_config": model.config()}


def train_seeds(get_patches: Callable[[int], np.ndarray], windows: Sequence[int],
                cfg: TrainConfig, seeds: Sequence[int], model_kwargs: dict,
                workers: int | None = None) -> list[dict]:
    """Train one model per seed on the same patches, up to ``workers`` at once.

    Parameters
    ----------
    get_patches : callable
        ``get_patches(window) -> (n, r, r)`` float32 normalised patches, the same keypoints in
        the same order for every window (as for :func:`train_progressive`); called once per
        window, here.
    windows : sequence of int
        Window sizes in px, increasing.
    cfg : TrainConfig
        Training settings, the same for every seed.
    seeds : sequence of int
        One model per seed.
    model_kwargs : dict
        :class:`~scalevae.model.SIVAE` arguments (``patch_size``, ``latent_dim``,
        ``invariance``, ...).
    workers : int, optional
        Processes at once; default one per core (at most one per seed). 1 trains in this
        process, one seed after another.

    Returns
    -------
    list of dict
        Per seed, in the order of ``seeds``: ``seed``, ``results`` (one
        :class:`~scalevae.training.checkpoints.WindowResult` per window: instant latents,
        losses, KL, seconds), ``state_dict`` and ``model_config`` of the final model
        (:meth:`SIVAE.load_state_dict` on ``SIVAE(**model_config)`` rebuilds it).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patches = {w: rng.normal(size=(64, 8, 8)).astype(np.float32) for w in (8, 12)}
    >>> cfg = TrainConfig(epochs=1, warmup_steps=1)
    >>> out = train_seeds(patches.__getitem__, [8, 12], cfg, seeds=[0, 1],
    ...                   model_kwargs=dict(patch_size=8), workers=1)
    >>> [o["seed"] for o in out], [r.window for r in out[0]["results"]]
    ([0, 1], [8, 12])
    """
    windows = [int(w) for w in windows]
    seeds = [int(s) for s in seeds]
    _SHARED.update(patches={w: np.ascontiguousarray(get_patches(w), np.float32)
                            for w in windows},
                   windows=windows, cfg=cfg, model_kwargs=dict(model_kwargs))
    try:
        workers = min(len(seeds), workers or os.cpu_count() or 1)
        if workers <= 1:
            before = torch.get_num_threads()
            try:
                return [_train_one(s) for s in seeds]
            finally:
                torch.set_num_threads(before)
        # fork: the workers inherit the patches; each sets one thread before any work
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_train_one, seeds))
    finally:
        _SHARED.clear()
