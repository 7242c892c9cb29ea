"""One window's training loop, the final encoding, and where and how it runs (device, threads).

:func:`train_window` trains the model in place on one window's patches until the loss stops
improving (or the epoch cap); :func:`encode` gives the posterior of any patches.
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


def train_window(model: SIVAE, patches: torch.Tensor, cfg: TrainConfig, generator: torch.Generator,
                 first: bool = False, progress: Callable[[int, float], None] | None = None):
    """Train ``model`` in place on one window's patches until converged or :func:`epoch_cap`.

    Returns
    -------
    losses : list of float
        Mean negative ELBO per sample, one per epoch run.
    kl : numpy.ndarray
        KL per latent dimension over the last epoch (nats per sample).
    """
    n = patches.shape[0]
    batch = min(cfg.batch_size, n)  # a batch larger than the data still trains (one full batch)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    n_pix = float(model.mask.sum())
    min_epochs = cfg.min_epochs * (2 if first else 1)
    # The KL weight must reach 1 inside the first window (at most half its step budget), and
    # only epochs trained on the full objective count for convergence: while the weight ramps
    # up the loss rises, so judging those epochs stopped the first window mid-warm-up (beta
    # ~0.5 on a typical image) and its latents came from a weaker KL than every other window's.
    # The warm-up epochs come on top of the cap: taken out of it, they left the first window
    # short of full-weight epochs (the sublattice check's seed 0 ran to the cap and came out
    # with the two sublattices' angles mixed).
    n_steps = steps_per_epoch(cfg, n)
    warm = warmup_steps(cfg, n, first)
    losses, best = [], []
    step = 0
    model.train()
    for epoch in range(epoch_cap(cfg, n, first)):
        order = torch.randperm(n, generator=generator, device=patches.device)
        total = torch.zeros((), device=patches.device)
        kl_sum = torch.zeros(model.latent_dim, device=patches.device)
        for start in range(0, n, batch):
            x = patches[order[start:start + batch]]
            beta = min(1.0, step / warm) if warm else 1.0
            parts = train_step(model, opt, x, cfg, generator, beta)
            # Accumulate on the device: no host synchronisation inside the step.
            total += parts["elbo"] * x.shape[0]
            kl_sum += parts["kl_z"] * x.shape[0]
            step += 1
        epoch_loss = float(total) / n
        if not math.isfinite(epoch_loss):
            # almost always extreme outliers in the input (e.g. one 1e30 pixel): say so
            # plainly (CLI: one line, exit 2); the windows finished so far are saved
            raise ScaleVAEError("training diverged (the loss is not finite); check the input "
                                "for extreme values and clip them (e.g. np.clip(a, "
                                "*np.percentile(a, [0.1, 99.9]))), or lower the learning rate")
        losses.append(epoch_loss)
        if step - n_steps >= warm:  # the whole epoch ran at beta = 1
            best.append(min(best[-1], epoch_loss) if best else epoch_loss)
        if progress is not None:
            progress(epoch + 1, epoch_loss)
        if len(best) >= min_epochs and len(best) > cfg.patience:
            gain = (best[-1 - cfg.patience] - best[-1]) / n_pix
            if gain < cfg.tol:
                break
    return losses, (kl_sum / n).cpu().numpy()


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
def encode(model: SIVAE, patches: torch.Tensor, batch: int = 4096) -> dict:
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


def encode_in_blocks(model: SIVAE, get_patches, window, n: int, device, dist=None,
                     gather: bool = True, block: int = 16384) -> dict:
    """:func:`encode` of all ``n`` keypoints at ``window``, their patches fetched ``block``
    keypoints at a time (``get_patches(window, slice)``). In a distributed run each rank encodes
    its shard (:func:`~scalevae.training.shard_bounds`), gathered on every rank unless
    ``gather`` is False. ``block`` is a multiple of :func:`encode`'s batch, so the batches and
    the numbers are those of encoding everything at once."""
    from .distributed import gather_encoding, shard_bounds

    start, stop = (0, n) if dist is None else shard_bounds(n, dist.world_size, dist.rank)
    parts = [encode(model, as_patch_tensor(get_patches(window, slice(a, min(a + block, stop))),
                                           device))
             for a in range(start, stop, block)]
    if not parts:  # fewer keypoints than ranks: an empty part with the right keys and shapes
        first = encode(model, as_patch_tensor(get_patches(window, slice(0, 1)), device))
        parts = [{k: v[:0] for k, v in first.items()}]
    part = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return part if dist is None or not gather else gather_encoding(part, dist)


@contextlib.contextmanager
def cpu_threads(device: torch.device, patch_size: int):
    """Train small patches (at most 16 px) on one CPU thread; restore the thread count after.

    The model is many tiny ops, and with two threads each op waits for the other thread.
    Large patches keep torch's thread count.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with cpu_threads(torch.device("cpu"), 8):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    before = torch.get_num_threads()
    if device.type == "cpu" and patch_size <= 16:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
