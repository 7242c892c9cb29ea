"""Data-parallel training over several processes with torch's DistributedDataParallel.

A run started by ``torchrun`` (environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)
joins one process group (gloo on the CPU, NCCL on CUDA, one GPU per process chosen by
``LOCAL_RANK``). Each window's keypoints are sharded with a
:class:`~torch.utils.data.DistributedSampler` (``set_epoch`` every epoch; padded so that every
rank runs the same number of steps), each rank takes ``batch_size / world_size`` patches per
step, so that one optimiser step sees the same global batch as a single process, and DDP
averages the gradients. The epoch loss is summed over all ranks, and the convergence decision is
taken on rank 0 and broadcast: :class:`DistributedHook`, the hook of the one epoch loop
(:func:`scalevae.training.loop.train_window`). Encodings are computed on contiguous shards of
the keypoints and gathered (:mod:`.encoding`); the final encoding of a run whose result is a
Zarr store is not gathered: each rank writes its shard into its own chunks of the store
(:func:`scalevae.store.write_sharded`). Without ``torchrun`` (``WORLD_SIZE`` unset or 1)
nothing here is used.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as tdist

from ..errors import ScaleVAEError
from ..model import SIVAE
from .loop import EpochHook, train_window
from .schedule import TrainConfig

#: How long a rank waits for the others before the run fails.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)
#: Each rank's noise generator is seeded with ``seed * RANK_SEED_STRIDE + rank``.
RANK_SEED_STRIDE = 1009


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a distributed run."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when unset).

    Examples
    --------
    >>> import os
    >>> env_world_size() if "WORLD_SIZE" not in os.environ else 1
    1
    """
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ScaleVAEError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start "
                            "distributed runs with torchrun") from None


def setup_distributed(device: torch.device) -> tuple[DistInfo | None, torch.device]:
    """Join the torchrun process group, if this process was started by torchrun.

    Returns ``(None, device)`` for a single process; otherwise the rank information and the
    device this rank trains on (``cuda:LOCAL_RANK`` on CUDA).
    """
    world = env_world_size()
    if world <= 1:
        return None, device
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise ScaleVAEError("WORLD_SIZE is set but RANK is not; start distributed runs with "
                            "torchrun (e.g. torchrun --nproc-per-node 2 -m scalevae run ...)") from None
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ScaleVAEError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} "
                                "GPU(s) here; use --nproc-per-node at most the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                 timeout=PROCESS_GROUP_TIMEOUT)
    return DistInfo(rank, world, local_rank), device


def shard_size(n: int, world_size: int) -> int:
    """Items per shard: ``ceil(n / world_size)`` (the last shard takes the rest)."""
    return max(1, -(-int(n) // int(world_size)))


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of ``n`` items for ``rank``.

    Every shard but the last holds :func:`shard_size` items, so that shard ``rank`` is chunk
    ``rank`` of a store chunked by that size (each rank writes chunks of its own).

    Examples
    --------
    >>> [shard_bounds(10, 3, r) for r in range(3)]
    [(0, 4), (4, 8), (8, 10)]
    """
    size = shard_size(n, world_size)
    return min(n, rank * size), min(n, (rank + 1) * size)


def gather_encoding(part: dict, dist: DistInfo) -> dict:
    """Concatenate every rank's encoding of its shard (in rank order) on every rank."""
    parts = [None] * dist.world_size
    tdist.all_gather_object(parts, part)
    return {k: np.concatenate([p[k] for p in parts]) for k in part}


def broadcast_error(message: str | None, dist: DistInfo) -> None:
    """Raise rank 0's ScaleVAEError (``message``) on every rank, so that none waits for it."""
    box = [message]
    tdist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise ScaleVAEError(box[0])


class _DDPModel:
    """The SIVAE seen through DDP: calls go through the wrapper (gradients averaged), attributes
    (``loss``, ``encode``, ``rotation``...) come from the model itself."""

    def __init__(self, ddp):
        self._ddp = ddp

    def __call__(self, *args):
        return self._ddp(*args)

    def __getattr__(self, name):
        return getattr(self._ddp.module, name)


class DistributedHook(EpochHook):
    """The epoch loop on ``dist.world_size`` processes: a DistributedSampler's share of the
    keypoints per rank (padded so that every rank runs the same number of steps), each rank
    taking ``batch_size / world_size`` patches per step, DDP averaging the gradients, the loss
    sums reduced in float64 over the ranks, and rank 0's stop decision broadcast."""

    dtype = torch.float64

    def __init__(self, model: SIVAE, patches: torch.Tensor, cfg: TrainConfig, seed: int,
                 dist: DistInfo):
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data import DistributedSampler

        world, device, n = dist.world_size, patches.device, patches.shape[0]
        self.dist, self.device = dist, device
        # the global batch is the single process's: each rank takes its share of it
        self.batch = max(1, math.ceil(min(cfg.batch_size, n) / world))
        self.sampler = DistributedSampler(range(n), num_replicas=world, rank=dist.rank,
                                          shuffle=True, seed=int(seed), drop_last=False)
        self.n_local = len(self.sampler)  # the same on every rank: the sampler pads
        self.n_seen = self.n_local * world
        self.steps = math.ceil(self.n_local / self.batch)
        with warnings.catch_warnings():
            # log_noise is a per-rank record of the batch's noise scale, never synchronised
            warnings.filterwarnings("ignore", message=".*broadcast_buffers.*")
            ddp = DistributedDataParallel(
                model, broadcast_buffers=False,
                device_ids=[device.index] if device.type == "cuda" else None)
        self.net = _DDPModel(ddp)

    def order(self, epoch, generator, device):
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(iter(self.sampler)), dtype=torch.long, device=device)

    def reduce(self, sums):
        tdist.all_reduce(sums)
        return sums

    def agree(self, stop):
        # rank 0 decides, every rank follows: one decision, never two that could disagree
        decision = torch.zeros(1, dtype=torch.int32, device=self.device)
        if self.dist.is_main:
            decision[0] = int(stop)
        tdist.broadcast(decision, src=0)
        return bool(decision[0])

    def finish(self, model):
        model.eval()


def train_window_distributed(model: SIVAE, patches: torch.Tensor, cfg: TrainConfig, seed: int,
                             dist: DistInfo, first: bool = False, progress=None):
    """:func:`~scalevae.training.train_window` on ``dist.world_size`` processes.

    ``patches`` holds every keypoint of the window on every rank; the sampler picks this rank's
    share. ``seed`` seeds the sampler (the same on every rank) and this rank's noise (rotation
    angles, reparameterisation). Returns the same ``(losses, kl)`` on every rank.
    """
    hook = DistributedHook(model, patches, cfg, seed, dist)
    gen = torch.Generator(device=patches.device).manual_seed(
        int(seed) * RANK_SEED_STRIDE + dist.rank)
    return train_window(model, patches, cfg, gen, first=first, progress=progress, hook=hook)
