"""One window's training loop, the encoding, and where and how it runs (device, threads).

:func:`train_window` trains the model in place on one window's patches until the loss stops
improving (or the epoch cap); it is the package's one epoch loop. What differs between one
process and a data-parallel run (the keypoint order, the batch per process, the reductions of
the loss, the agreed stop) is its :class:`EpochHook`; :mod:`.distributed` supplies the other
one. :func:`encode` gives the posterior of any patches.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import numpy as np
import torch

from ..errors import ScaleVAEError
from ..model import SIVAE, rotate_patches
from .schedule import TrainConfig, epoch_cap, steps_per_epoch, warmup_steps

#: Patches encoded per forward pass.
ENCODE_BATCH = 4096


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ScaleVAEError("--device cuda was asked for, but no CUDA GPU is available to torch "
                            "here; use --device cpu (or auto)")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ScaleVAEError(f"unknown device {device!r}; use auto, cpu or cuda") from exc


class EpochHook:
    """What the epoch loop asks of where it runs; this one is a single process.

    ``net`` is what the loop calls (the model, or a data-parallel wrapper of it); ``batch``
    patches per step; ``n_local`` patches this process visits per epoch (``order``);
    ``n_seen`` patches all processes visit together (the loss is averaged over them);
    ``steps`` optimiser steps per epoch; ``dtype`` the loss sums' type; ``reduce`` sums them
    over the processes; ``agree`` turns this process's wish to stop into the decision all take.
    """

    dtype = None  # the loss's own (float32): sums stay on the device, no host synchronisation

    def __init__(self, model: SIVAE, n: int, cfg: TrainConfig):
        self.net = model
        self.batch = min(cfg.batch_size, n)  # a batch larger than the data still trains
        self.n_local = self.n_seen = n
        self.steps = steps_per_epoch(cfg, n)

    def order(self, epoch: int, generator: torch.Generator, device) -> torch.Tensor:
        return torch.randperm(self.n_local, generator=generator, device=device)

    def reduce(self, sums: torch.Tensor) -> torch.Tensor:
        return sums

    def agree(self, stop: bool) -> bool:
        return stop

    def finish(self, model: SIVAE) -> None:
        pass


def train_window(model: SIVAE, patches: torch.Tensor, cfg: TrainConfig, generator: torch.Generator,
                 first: bool = False, progress: Callable[[int, float], None] | None = None,
                 hook: EpochHook | None = None):
    """Train ``model`` in place on one window's patches until converged or :func:`epoch_cap`.

    ``hook`` says how the epochs run: :class:`EpochHook` (one process, the default) or
    :class:`~scalevae.training.distributed.DistributedHook`.

    Returns
    -------
    losses : list of float
        Mean negative ELBO per sample, one per epoch run.
    kl : numpy.ndarray
        KL per latent dimension over the last epoch (nats per sample).
    """
    n = patches.shape[0]
    hook = hook or EpochHook(model, n, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    n_pix = float(model.mask.sum())
    min_epochs = cfg.min_epochs * (2 if first else 1)
    # The KL weight must reach 1 inside the first window (at most half its step budget), and
    # only epochs trained on the full objective count for convergence: while the weight ramps
    # up the loss rises, so judging those epochs would stop the first window mid-warm-up with
    # its latents from a weaker KL than every other window's. The warm-up epochs come on top
    # of the cap, so that the first window has as many full-weight epochs as the others.
    warm = warmup_steps(cfg, n, first)
    losses, best = [], []
    step = 0
    model.train()
    for epoch in range(epoch_cap(cfg, n, first)):
        order = hook.order(epoch, generator, patches.device)
        # [loss, kl per latent], accumulated on the device: no host synchronisation per step
        sums = torch.zeros(1 + model.latent_dim, dtype=hook.dtype, device=patches.device)
        for start in range(0, hook.n_local, hook.batch):
            x = patches[order[start:start + hook.batch]]
            beta = min(1.0, step / warm) if warm else 1.0
            parts = train_step(hook.net, opt, x, cfg, generator, beta)
            sums[0] += parts["elbo"].to(sums.dtype) * x.shape[0]
            sums[1:] += parts["kl_z"].to(sums.dtype) * x.shape[0]
            step += 1
        sums = hook.reduce(sums)
        epoch_loss = float(sums[0]) / hook.n_seen
        if not math.isfinite(epoch_loss):
            # almost always extreme outliers in the input (e.g. one 1e30 pixel): say so
            # plainly (CLI: one line, exit 2); the windows finished so far are saved
            raise ScaleVAEError("training diverged (the loss is not finite); check the input "
                                "for extreme values and clip them (e.g. np.clip(a, "
                                "*np.percentile(a, [0.1, 99.9]))), or lower the learning rate")
        losses.append(epoch_loss)
        if step - hook.steps >= warm:  # the whole epoch ran at beta = 1
            best.append(min(best[-1], epoch_loss) if best else epoch_loss)
        if progress is not None:
            progress(epoch + 1, epoch_loss)
        converged = (len(best) >= min_epochs and len(best) > cfg.patience
                     and (best[-1 - cfg.patience] - best[-1]) / n_pix < cfg.tol)
        if hook.agree(converged):
            break
    hook.finish(model)
    return losses, (sums[1:] / hook.n_seen).float().cpu().numpy()


def train_step(net, opt, x, cfg, generator, beta) -> dict:
    """One optimiser step on the batch ``x``; the loss parts for the epoch's record."""
    loss, parts = _step_loss(net, x, cfg, generator, beta)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return parts


def _step_loss(model, x, cfg, generator, beta):
    if model.rotation and cfg.augment:
        # Rotate the second half of the batch by random angles; the first half stays as measured.
        half = x.shape[0] // 2
        phi = torch.rand(x.shape[0] - half, generator=generator, device=x.device) * (2 * math.pi)
        xin = torch.cat([x[:half], rotate_patches(x[half:], phi)]) * model.mask
    else:
        xin, half = x, None
    out = model(xin, generator)
    loss, parts = model.loss(xin, out, beta)
    parts["elbo"] = loss.detach()
    if half is not None and cfg.consistency > 0 and x.shape[0] - half > 0:
        ref = model.encode(x[half:])
        rot_mu, rot_lv = out["z_mean"][half:], out["z_logvar"][half:]
        d2 = (ref["z_mean"] - rot_mu) ** 2 / (ref["z_logvar"].exp() + rot_lv.exp())
        loss = loss + cfg.consistency * d2.sum(1).mean() * (x.shape[0] - half) / x.shape[0]
    return loss, parts


@torch.no_grad()
def encode(model: SIVAE, patches: torch.Tensor, batch: int = ENCODE_BATCH) -> dict:
    """Posterior means and stds for patches (n, r, r): numpy arrays ``z_mean``, ``z_std``,
    ``angle`` (radians, in (-pi, pi]) and ``shift`` ((dy, dx) in patch half-widths), the last two
    only for the invariances that have them."""
    model.eval()
    parts = {"z_mean": [], "z_std": [], "angle": [], "shift": []}
    for start in range(0, patches.shape[0], batch):
        out = model.encode(patches[start:start + batch])
        parts["z_mean"].append(out["z_mean"])
        parts["z_std"].append(torch.exp(0.5 * out["z_logvar"]))
        if out["angle"] is not None:
            parts["angle"].append(out["angle"])
        if out["shift"] is not None:
            parts["shift"].append(out["shift"])
    return {k: torch.cat(v).cpu().numpy() for k, v in parts.items() if v}


def as_patch_tensor(patches, device) -> torch.Tensor:
    """Patches (numpy or torch) as a contiguous float32 tensor on ``device``."""
    if isinstance(patches, torch.Tensor):
        return patches.to(device)
    return torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32)).to(device)


@contextlib.contextmanager
def cpu_threads(device: torch.device, threads: int | None):
    """Train on ``threads`` CPU threads (None: torch's own count); restore the count after.

    The count is fixed for a whole run, never chosen from the machine's load: the float sums,
    and so the last digits of the numbers, follow it (``config.TRAIN_THREADS`` says why one
    is the default).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with cpu_threads(torch.device("cpu"), 1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    before = torch.get_num_threads()
    if device.type == "cpu" and threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
