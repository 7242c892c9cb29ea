"""Encoding many keypoints: block by block (patches cut as they are encoded), and sharded over
the processes of a data-parallel run."""

from __future__ import annotations

import numpy as np
import torch

from ..model import SIVAE
from .distributed import DistInfo, gather_encoding, shard_bounds
from .loop import ENCODE_BATCH, as_patch_tensor, encode

#: Keypoints whose patches are cut and encoded at once; a multiple of the encoding batch, so
#: that the batches, and the numbers, are those of encoding everything at once.
ENCODE_BLOCK = 4 * ENCODE_BATCH


def encode_in_blocks(model: SIVAE, get_patches, window, n: int, device, dist=None,
                     gather: bool = True, block: int = ENCODE_BLOCK) -> dict:
    """:func:`encode` of all ``n`` keypoints at ``window``, their patches fetched ``block``
    keypoints at a time (``get_patches(window, slice)``). In a distributed run each rank encodes
    its shard (:func:`~scalevae.training.shard_bounds`), gathered on every rank unless
    ``gather`` is False. ``block`` is a multiple of :func:`encode`'s batch, so the batches and
    the numbers are those of encoding everything at once."""
    start, stop = (0, n) if dist is None else shard_bounds(n, dist.world_size, dist.rank)
    parts = [encode(model, as_patch_tensor(get_patches(window, slice(a, min(a + block, stop))),
                                           device))
             for a in range(start, stop, block)]
    if not parts:  # fewer keypoints than ranks: an empty part with the right keys and shapes
        first = encode(model, as_patch_tensor(get_patches(window, slice(0, 1)), device))
        parts = [{k: v[:0] for k, v in first.items()}]
    part = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return part if dist is None or not gather else gather_encoding(part, dist)


def encode_sharded(model: SIVAE, patches: torch.Tensor, dist: DistInfo) -> dict:
    """:func:`~scalevae.training.encode` of all ``patches``, each rank encoding its contiguous
    shard; the gathered result on every rank."""
    return encode_in_blocks(model, lambda _window, index: patches[index], None,
                            patches.shape[0], patches.device, dist)
