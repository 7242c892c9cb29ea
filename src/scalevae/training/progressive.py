"""Progressive training across window sizes (paper Table I), with instant and final states.

The model is trained on the patches of the smallest window until the loss stops improving, then
the same weights continue on the next window, and so on. After each window its *instant* latents
(that window's patches, encoded by the model as it is then) and a checkpoint are saved at once, so
a killed run loses at most the window in progress and ``resume`` continues from there. Each window
draws its randomness from its own generator seeded by ``(seed, window index)``, which is why a
resumed run gives the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..model import SIVAE
from .checkpoints import ResumePoint, WindowResult, model_from_checkpoint
from .distributed import train_window_distributed
from .encoding import encode_in_blocks, encode_sharded
from .loop import as_patch_tensor, encode, train_window
from .schedule import TrainConfig, epoch_cap, training_subset, window_seed


def train_progressive(windows: Sequence[int], get_patches: Callable[[int], np.ndarray],
                      model: SIVAE, cfg: TrainConfig, seed: int = 0, device="cpu",
                      checkpoint_dir=None, fingerprint: str = "", resume: bool = False,
                      progress=None, dist=None) -> tuple[SIVAE, list[WindowResult]]:
    """Train one model through all ``windows`` in order (paper Table I).

    Parameters
    ----------
    windows : sequence of int
        Window sizes in px, increasing.
    get_patches : callable
        ``get_patches(window) -> (n, r, r)`` float32 normalised patches, the same keypoints in the
        same order for every window. A source whose ``streaming`` attribute is True (with
        ``n_points``) is called as ``get_patches(window, index)`` (a slice or an index array)
        instead: only the training subset is cut at once, the rest block by block as it is
        encoded.
    model : SIVAE
        Freshly initialised model (its weights are replaced when resuming).
    checkpoint_dir : path or None
        Where ``window_NNNN.pt`` files go; with ``resume``, finished windows found there are
        loaded instead of retrained.
    progress : object or None
        Optional callbacks ``start_window(i, w)``, ``epoch(i, w, epoch, loss)``, ``end_window(i, w)``.
    dist : DistInfo or None
        This process's rank in a torchrun run (:func:`~scalevae.training.setup_distributed`):
        training is data-parallel, encodings are sharded and gathered, and rank 0 alone writes
        the checkpoints. None: one process.

    Returns
    -------
    model, results
        The final model and one :class:`WindowResult` per window (instant latents, losses, KL).
    """
    device = torch.device(device)
    model.to(device)
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    results: list[WindowResult] = []
    # verified checkpoints: a damaged one is retrained (checkpoints.ResumePoint)
    saved = ResumePoint(checkpoint_dir, fingerprint, resume)
    for i, w in enumerate(windows):
        ck = saved.load(w, model)
        if ck is not None:
            model.load_state_dict(model_from_checkpoint(ck).state_dict())
            results.append(WindowResult(int(w), {k: v.numpy() for k, v in ck["instant"].items()},
                                        list(ck["losses"]), ck["kl"].numpy(), ck["seconds"],
                                        bool(ck.get("at_cap", False))))
            if progress is not None:
                progress.skip_window(i, w)
            continue
        t0 = time.perf_counter()
        if progress is not None:
            progress.start_window(i, w)
        # streaming sources cut only the training subset now and the rest block by block
        # when encoding: memory follows the subset, not the number of keypoints
        streaming = getattr(get_patches, "streaming", False)
        x = None if streaming else as_patch_tensor(get_patches(w), device)
        n = get_patches.n_points if streaming else len(x)
        # the same keypoints at every window (the subset depends on n and the seed only)
        subset = training_subset(n, cfg.max_train_points, seed)
        gen = torch.Generator(device=device).manual_seed(window_seed(seed, i))
        cb = (lambda e, loss, i=i, w=w: progress.epoch(i, w, e, loss)) if progress else None
        if streaming:
            x_train = as_patch_tensor(get_patches(w, slice(None) if subset is None else subset),
                                      device)
        else:
            x_train = x if subset is None else x[torch.from_numpy(subset).to(device)]
        if dist is None:
            losses, kl = train_window(model, x_train, cfg, gen, first=(i == 0), progress=cb)
        else:
            losses, kl = train_window_distributed(model, x_train, cfg, window_seed(seed, i),
                                                  dist, first=(i == 0), progress=cb)
        at_cap = len(losses) >= epoch_cap(cfg, len(x_train), first=(i == 0))
        del x_train
        if streaming:
            instant = encode_in_blocks(model, get_patches, w, n, device, dist)
        else:
            instant = encode(model, x) if dist is None else encode_sharded(model, x, dist)
        res = WindowResult(int(w), instant, losses, kl, time.perf_counter() - t0, at_cap)
        if checkpoint_dir is not None and (dist is None or dist.is_main):
            saved.save(model, res)
        results.append(res)
        if progress is not None:
            progress.end_window(i, w)
        del x
    return model, results

