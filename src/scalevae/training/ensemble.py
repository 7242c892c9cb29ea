"""Several seeds of one run side by side: N models trained on the same patches, in parallel.

The model is many small operations, so a seed ensemble (the spread of the answer over training
seeds) runs its models in parallel processes, each with its share of the cores, rather than
one after another with every core. The patches are cut once, in the calling process, and
shared with the workers (fork: copy-on-write, nothing pickled).

:func:`start_seeds` starts the workers and returns at once, so the calling process can train a
model of its own meanwhile (``--repeats``: the first model trains in the main process, with
its progress bar and checkpoints, while the others train beside it); :func:`train_seeds`
waits for them. Each seed's numbers are those of
:func:`~scalevae.training.train_progressive` run alone with that seed and the same number of
threads: the model's initial weights come from ``torch.manual_seed(seed)`` (as
``scalevae.run``'s model) and each window's generator from ``(seed, window index)``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..model import SIVAE
from .progressive import train_progressive
from .schedule import TrainConfig

__all__ = ["SeedJobs", "seed_checkpoints", "start_seeds", "train_seeds"]

# What every worker needs, set before the workers start (inherited by fork, never pickled).
_SHARED: dict = {}


def seed_checkpoints(folder, seed: int) -> Path:
    """The checkpoint folder of an extra seed's model inside a run's ``checkpoints/``.

    Examples
    --------
    >>> seed_checkpoints("run/checkpoints", 3).as_posix()
    'run/checkpoints/seed_3'
    """
    return Path(folder) / f"seed_{int(seed)}"


def _init(shared):
    _SHARED.update(shared)


def _train_one(seed):
    s = _SHARED
    torch.set_num_threads(s["threads"])
    torch.manual_seed(int(seed))
    model = SIVAE(**s["model_kwargs"])
    folder = None if s["checkpoints"] is None else seed_checkpoints(s["checkpoints"], seed)
    model, results = train_progressive(s["windows"], s["patches"].__getitem__, model, s["cfg"],
                                       seed=int(seed), checkpoint_dir=folder,
                                       fingerprint=s["fingerprint"], resume=s["resume"])
    return {"seed": int(seed), "results": results,
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "model_config": model.config()}


class SeedJobs:
    """Seeds training in worker processes (or, with one worker, on demand in this one);
    :meth:`results` waits for them."""

    def __init__(self, seeds, pool, shared):
        self.seeds, self._pool, self._shared = seeds, pool, shared
        self._futures = None if pool is None else [pool.submit(_train_one, s) for s in seeds]

    def results(self) -> list[dict]:
        """Per seed, in the order given: ``seed``, ``results`` (one
        :class:`~scalevae.training.checkpoints.WindowResult` per window), ``state_dict`` and
        ``model_config`` of the final model."""
        if self._pool is None:
            before = torch.get_num_threads()
            _SHARED.update(self._shared)
            try:
                return [_train_one(s) for s in self.seeds]
            finally:
                _SHARED.clear()
                torch.set_num_threads(before)
        try:
            out = [f.result() for f in self._futures]
        except BaseException:
            self.cancel()  # so as not to wait for the others to train in vain
            raise
        self._pool.shutdown()
        return out

    def cancel(self) -> None:
        """Stop the workers (the caller failed); finished windows stay checkpointed. Nothing to
        do once :meth:`results` has returned."""
        if self._pool is not None:
            for f in self._futures:
                f.cancel()
            # a running task cannot be cancelled: its process is stopped (the executor's own
            # table of them; None once it has shut down)
            for p in list((getattr(self._pool, "_processes", None) or {}).values()):
                p.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)


def start_seeds(get_patches: Callable[[int], np.ndarray], windows: Sequence[int],
                cfg: TrainConfig, seeds: Sequence[int], model_kwargs: dict,
                workers: int | None = None, threads: int = 1, checkpoints=None,
                fingerprint: str = "", resume: bool = False) -> SeedJobs:
    """Start training one model per seed on the same patches, up to ``workers`` at once, and
    return without waiting (:meth:`SeedJobs.results` waits).

    ``threads`` per model. Workers fork when each has one thread (nothing is pickled); with
    more they start fresh ("spawn"), since an OpenMP thread pool does not survive a fork.
    ``checkpoints``: a run's checkpoint folder; each seed's windows are checkpointed in
    :func:`seed_checkpoints` of it and, with ``resume``, read back from there.
    Other parameters: :func:`train_seeds`.
    """
    windows = [int(w) for w in windows]
    seeds = [int(s) for s in seeds]
    shared = dict(patches={w: np.ascontiguousarray(get_patches(w), np.float32) for w in windows},
                  windows=windows, cfg=cfg, model_kwargs=dict(model_kwargs),
                  threads=max(1, int(threads)), checkpoints=checkpoints,
                  fingerprint=fingerprint, resume=bool(resume))
    workers = min(len(seeds), workers or os.cpu_count() or 1)
    if workers <= 1 or not seeds:
        return SeedJobs(seeds, None, shared)
    context = mp.get_context("fork" if shared["threads"] == 1 else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init,
                               initargs=(shared,))
    return SeedJobs(seeds, pool, shared)


def train_seeds(get_patches: Callable[[int], np.ndarray], windows: Sequence[int],
                cfg: TrainConfig, seeds: Sequence[int], model_kwargs: dict,
                workers: int | None = None, threads: int = 1) -> list[dict]:
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
    threads : int
        CPU threads per model.

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
    return start_seeds(get_patches, windows, cfg, seeds, model_kwargs, workers,
                       threads).results()
