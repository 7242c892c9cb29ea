"""Per-window checkpoints: the model after a window plus that window's results, read back safely.

A checkpoint holds tensors and plain values only, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_write
from ..errors import ScaleVAEError
from ..model import SIVAE

CHECKPOINT_FORMAT = 1


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
    """Where the checkpoint of ``window`` lives in ``folder``.

    Examples
    --------
    >>> checkpoint_path("run/checkpoints", 8).name
    'window_0008.pt'
    """
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
    """The model stored in a checkpoint read by :func:`load_checkpoint`, in eval mode."""
    try:
        model = SIVAE(**ck["model_config"])
        model.load_state_dict(ck["state_dict"])
    except (TypeError, RuntimeError) as exc:
        raise ScaleVAEError("this checkpoint was written by another version of scalevae's "
                            "model and cannot be loaded by this one; rerun the run (with "
                            "--overwrite) to decode it again") from exc
    return model.to(device).eval()
