"""Data-parallel training over several processes with torch's DistributedDataParallel.

A run started by ``torchrun`` (environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)
joins one process group (gloo on the CPU, NCCL on CUDA, one GPU per process chosen by
``LOCAL_RANK``). Each window's keypoints are sharded with a
:class:`~torch.utils.data.DistributedSampler` (``set_epoch`` every epoch; padded so that every
rank runs the same number of steps), each rank takes ``batch_size / world_size`` patches per
step, so that one optimiser step sees the same global batch as a single process, and DDP
averages the gradients. The epoch loss is summed over all ranks, and the convergence decision is
taken on rank 0 and broadcast. Encodings are computed on contiguous shards of the keypoints and
gathered; the final encoding of a run whose result is a Zarr store is not gathered: each rank
writes its shard into its own chunks of the store (``saving.save_by_regions``). Without
``torchrun`` (``WORLD_SIZE`` unset or 1) nothing here is used.
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
from .schedule import TrainConfig, epoch_cap, warmup_steps


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
                                 timeout=timedelta(minutes=30))
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


def encode_sharded(model: SIVAE, patches: torch.Tensor, dist: DistInfo) -> dict:
    """:func:`~scalevae.training.encode` of all ``patches``, each rank encoding its contiguous
    shard; the gathered result on every rank."""
    from .loop import encode_in_blocks

    return encode_in_blocks(model, lambda _window, index: patches[index], None,
                            patches.shape[0], patches.device, dist)


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


def train_window_distributed(model: SIVAE, patches: torch.Tensor, cfg: TrainConfig, seed: int,
                             dist: DistInfo, first: bool = False, progress=None):
    """:func:`~scalevae.training.train_window` on ``dist.world_size`` processes.

    ``patches`` holds every keypoint of the window on every rank; the sampler picks this rank's
    share. ``seed`` seeds the sampler (the same on every rank) and this rank's noise (rotation
    angles, reparameterisation). Returns the same ``(losses, kl)`` on every rank.
    """
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    from .loop import train_step

    device = patches.device
    n = patches.shape[0]
    world = dist.world_size
    # the global batch is the single process's: each rank takes its share of it
    local = max(1, math.ceil(min(cfg.batch_size, n) / world))
    sampler = DistributedSampler(range(n), num_replicas=world, rank=dist.rank, shuffle=True,
                                 seed=int(seed), drop_last=False)
    n_local = len(sampler)  # the same on every rank: the sampler pads with repeated keypoints
    n_steps = math.ceil(n_local / local)
    with warnings.catch_warnings():
        # log_noise is a per-rank record of the batch's noise scale, never synchronised
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*")
        ddp = DistributedDataParallel(model, broadcast_buffers=False,
                                      device_ids=[device.index] if device.type == "cuda" else None)
    net = _DDPModel(ddp)
    gen = torch.Generator(device=device).manual_seed(int(seed) * 1009 + dist.rank)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    n_pix = float(model.mask.sum())
    min_epochs = cfg.min_epochs * (2 if first else 1)
    warm = warmup_steps(cfg, n, first)
    losses, best = [], []
    step = 0
    model.train()
    for epoch in range(epoch_cap(cfg, n, first)):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long, device=device)
        sums = torch.zeros(1 + model.latent_dim, dtype=torch.float64, device=device)
        for start in range(0, n_local, local):
            x = patches[order[start:start + local]]
            beta = min(1.0, step / warm) if warm else 1.0
            parts = train_step(net, opt, x, cfg, gen, beta)
            sums[0] += parts["elbo"].double() * x.shape[0]
            sums[1:] += parts["kl_z"].double() * x.shape[0]
            step += 1
        tdist.all_reduce(sums)
        n_seen = n_local * world
        epoch_loss = float(sums[0]) / n_seen
        if not math.isfinite(epoch_loss):
            raise ScaleVAEError("training diverged (the loss is not finite); check the input "
                                "for extreme values and clip them (e.g. np.clip(a, "
                                "*np.percentile(a, [0.1, 99.9]))), or lower the learning rate")
        losses.append(epoch_loss)
        if step - n_steps >= warm:
            best.append(min(best[-1], epoch_loss) if best else epoch_loss)
        if progress is not None:
            progress(epoch + 1, epoch_loss)
        # rank 0 decides, every rank follows: one decision, never two that could disagree
        stop = torch.zeros(1, dtype=torch.int32, device=device)
        if dist.is_main and len(best) >= min_epochs and len(best) > cfg.patience:
            stop[0] = int((best[-1 - cfg.patience] - best[-1]) / n_pix < cfg.tol)
        tdist.broadcast(stop, src=0)
        if int(stop[0]):
            break
    model.eval()
    return losses, (sums[1:] / (n_local * world)).float().cpu().numpy()
