"""Progressive training across window sizes (paper Table I), with instant and final states.

The model is trained on the patches of the smallest window until the loss stops improving, then
the same weights continue on the next window, and so on. After each window its *instant* latents
(that window's patches, encoded by the model as it is then) and a checkpoint are saved at once, so
a killed run loses at most the window in progress and ``resume`` continues from there. Each window
draws its randomness from its own generator seeded by ``(seed, window index)``, which is why a
resumed run gives the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .._atomic import atomic_write
from ..errors import ScaleVAEError
from ..model import SIVAE, rotate_patches

CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    """Training settings (all stored in the result's ``config``).

    epochs : cap on epochs per window; training stops earlier on convergence.
    min_epochs : epochs always run per window at the full KL weight (the first window runs
        ``2 * min_epochs`` of them after its warm-up).
    patience, tol : converged when the best loss improved by less than ``tol`` nats per modelled
        pixel over the last ``patience`` epochs (a scale-free unit: patches are normalised).
    warmup_steps : KL weight ramps from 0 to 1 over the first steps of the first window (at most
        half of that window's step budget), so the decoder learns to use the latents before
        the KL term can switch them off (collapse); convergence is judged after it.
    augment : in the rotation modes, half of each batch is rotated by a random angle and the
        latents of a rotated patch are pulled to those of the original (``consistency`` weight,
        in units of the posterior variance): this is what makes ``z`` invariant in practice.
    max_train_points : train on at most this many keypoints, one fixed random subset (drawn
        from the seed) used at every window so that each window continues on the same points;
        every keypoint is still encoded in both states. Neighbouring grid patches overlap
        heavily, so beyond ~16k the extra patches cost time and teach little (a 1024 x 1024
        image at grid:4 has ~58k). None: all keypoints.
    """

    epochs: int = 30
    min_epochs: int = 3
    patience: int = 2
    tol: float = 2e-3
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 300
    augment: bool = True
    consistency: float = 1.0
    max_train_points: int | None = 16384

    def __post_init__(self):
        if int(self.epochs) < 1:
            raise ScaleVAEError(f"epochs must be at least 1 (got {self.epochs}); "
                                "it is the cap on training epochs per window")
        if int(self.batch_size) < 1:
            raise ScaleVAEError(f"batch size must be at least 1 (got {self.batch_size})")
        if self.lr <= 0:
            raise ScaleVAEError(f"learning rate must be positive (got {self.lr})")
        if self.max_train_points is not None:
            if isinstance(self.max_train_points, bool) or int(self.max_train_points) < 1:
                raise ScaleVAEError(f"max_train_points must be a positive number of keypoints or "
                                    f"None for all (got {self.max_train_points!r})")
            self.max_train_points = int(self.max_train_points)
        self.min_epochs = min(self.min_epochs, self.epochs)


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


def _steps_per_epoch(cfg: TrainConfig, n: int) -> int:
    # a batch larger than the data still trains (one full batch)
    return math.ceil(n / min(cfg.batch_size, n))


def warmup_steps(cfg: TrainConfig, n: int, first: bool) -> int:
    """KL warm-up steps of a window trained on ``n`` patches: only the first window has one,
    at most half of its ``cfg.epochs`` budget."""
    if not (first and cfg.warmup_steps):
        return 0
    return min(int(cfg.warmup_steps), cfg.epochs * _steps_per_epoch(cfg, n) // 2)


def epoch_cap(cfg: TrainConfig, n: int, first: bool) -> int:
    """Most epochs a window trains: ``cfg.epochs`` at full KL weight, plus the first window's
    warm-up epochs on top, so that every window has the same budget for converging."""
    return cfg.epochs + math.ceil(warmup_steps(cfg, n, first) / _steps_per_epoch(cfg, n))


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
    steps_per_epoch = _steps_per_epoch(cfg, n)
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
            loss, parts = _step_loss(model, x, cfg, generator, beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
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
        if step - steps_per_epoch >= warm:  # the whole epoch ran at beta = 1
            best.append(min(best[-1], epoch_loss) if best else epoch_loss)
        if progress is not None:
            progress(epoch + 1, epoch_loss)
        if len(best) >= min_epochs and len(best) > cfg.patience:
            gain = (best[-1 - cfg.patience] - best[-1]) / n_pix
            if gain < cfg.tol:
                break
    return losses, (kl_sum / n).cpu().numpy()


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


@dataclass
class WindowResult:
    """What one window's training produced; saved at once as that window's checkpoint."""

    window: int
    instant: dict
    losses: list
    kl: np.ndarray
    seconds: float
    at_cap: bool = False  # ran all epoch_cap epochs: the convergence rule never stopped it


def checkpoint_path(folder, window: int) -> Path:
    return Path(folder) / f"window_{int(window):04d}.pt"


def save_checkpoint(folder, model: SIVAE, res: WindowResult, fingerprint: str) -> Path:
    """Model weights plus the window's instant latents; loadable with ``weights_only=True``."""
    payload = {
        "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "window": int(res.window),
        "model_config": model.config(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "instant": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in res.instant.items()},
        "losses": [float(v) for v in res.losses], "kl": torch.from_numpy(np.asarray(res.kl)),
        "seconds": float(res.seconds), "at_cap": bool(res.at_cap),
    }
    return atomic_write(checkpoint_path(folder, res.window), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path, fingerprint: str | None = None) -> dict:
    """Read a checkpoint safely (no pickled objects); refuse one made for another configuration."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
        raise ScaleVAEError(f"checkpoint {path} cannot be read ({exc.__class__.__name__}); it is "
                            "damaged or not a scalevae checkpoint: delete it to retrain "
                            "that window") from exc
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ScaleVAEError(f"{path} is not a scalevae checkpoint of format {CHECKPOINT_FORMAT}")
    if fingerprint is not None and ck.get("fingerprint") != fingerprint:
        raise ScaleVAEError(f"checkpoint {path} was made with a different configuration or "
                            "input than this run; use a new --out folder, or rerun with the "
                            "original settings to resume")
    return ck


def model_from_checkpoint(ck: dict, device="cpu") -> SIVAE:
    try:
        model = SIVAE(**ck["model_config"])
        model.load_state_dict(ck["state_dict"])
    except (TypeError, RuntimeError) as exc:
        raise ScaleVAEError("this checkpoint was written by another version of scalevae's "
                            "model and cannot be loaded by this one; rerun the run (with "
                            "--overwrite) to decode it again") from exc
    return model.to(device).eval()


def training_subset(n, max_points, seed):
    """Sorted indices of the keypoints to train on, or None for all ``n`` of them.

    Examples
    --------
    >>> training_subset(10, None, 0) is None, training_subset(10, 20, 0) is None
    (True, True)
    >>> len(training_subset(100, 20, 0))
    20
    """
    if max_points is None or n <= max_points:
        return None
    return np.sort(np.random.default_rng([int(seed), 7]).choice(n, int(max_points), replace=False))


def train_progressive(windows: Sequence[int], get_patches: Callable[[int], np.ndarray],
                      model: SIVAE, cfg: TrainConfig, seed: int = 0, device="cpu",
                      checkpoint_dir=None, fingerprint: str = "", resume: bool = False,
                      progress=None) -> tuple[SIVAE, list[WindowResult]]:
    """Train one model through all ``windows`` in order (paper Table I).

    Parameters
    ----------
    windows : sequence of int
        Window sizes in px, increasing.
    get_patches : callable
        ``get_patches(window) -> (n, r, r)`` float32 normalised patches, the same keypoints in the
        same order for every window.
    model : SIVAE
        Freshly initialised model (its weights are replaced when resuming).
    checkpoint_dir : path or None
        Where ``window_NNNN.pt`` files go; with ``resume``, finished windows found there are
        loaded instead of retrained.
    progress : object or None
        Optional callbacks ``start_window(i, w)``, ``epoch(i, w, epoch, loss)``, ``end_window(i, w)``.

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
    for i, w in enumerate(windows):
        path = checkpoint_path(checkpoint_dir, w) if checkpoint_dir is not None else None
        if resume and path is not None and path.exists():
            ck = load_checkpoint(path, fingerprint)
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
        x = torch.from_numpy(np.ascontiguousarray(get_patches(w), dtype=np.float32)).to(device)
        # the same keypoints at every window (the subset depends on n and the seed only)
        subset = training_subset(len(x), cfg.max_train_points, seed)
        gen = torch.Generator(device=device).manual_seed(int(seed) * 100_003 + i)
        cb = (lambda e, loss, i=i, w=w: progress.epoch(i, w, e, loss)) if progress else None
        x_train = x if subset is None else x[torch.from_numpy(subset).to(device)]
        losses, kl = train_window(model, x_train, cfg, gen, first=(i == 0), progress=cb)
        at_cap = len(losses) >= epoch_cap(cfg, len(x_train), first=(i == 0))
        del x_train
        instant = encode(model, x)
        res = WindowResult(int(w), instant, losses, kl, time.perf_counter() - t0, at_cap)
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, model, res, fingerprint)
        results.append(res)
        if progress is not None:
            progress.end_window(i, w)
        del x
    return model, results
