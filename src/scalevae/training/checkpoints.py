"""Per-window checkpoints: the model after a window plus that window's results, read back safely.

A checkpoint holds tensors and plain values only, so it loads with ``weights_only=True``. It is
serialised in memory and written atomically (:mod:`scalevae._atomic`), and
``checkpoints/manifest.json`` records the size and SHA-256 of every checkpoint written, so a
file damaged later (a truncated copy, a flipped bit) is recognised before it is used.

Each checkpoint also records ``parent_state``, a hash of the weights its window started from.
On ``--resume`` (:class:`ResumePoint`) a damaged or missing checkpoint is retrained from the
window before it, with one warning; the checkpoints after it are used again only when the
retrained weights are the very ones they started from (same seed, same machine: they are),
and retrained otherwise. Nothing that can be recomputed is lost, and nothing is reused that
does not follow from the weights in hand.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_write, atomic_write_bytes
from ..errors import ScaleVAEError
from ..model import SIVAE

CHECKPOINT_FORMAT = 1
MANIFEST_NAME = "manifest.json"


class DamagedCheckpoint(ScaleVAEError):
    """A checkpoint file that is not the one this run wrote (truncated, altered or unreadable)."""


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


def state_hash(model: SIVAE) -> str:
    """SHA-256 of the model's parameters (names, dtypes, shapes, values), device-independent.

    Buffers are left out: ``log_noise`` is a per-rank record in a distributed run, while the
    parameters are the same on every rank.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> a = state_hash(SIVAE(8, 2))
    >>> _ = torch.manual_seed(0)
    >>> a == state_hash(SIVAE(8, 2)), len(a)
    (True, 64)
    """
    h = hashlib.sha256()
    for name, value in model.named_parameters():
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(folder, model: SIVAE, res: WindowResult, fingerprint: str,
                    parent_state: str = "") -> Path:
    """Model weights plus the window's instant latents; loadable with ``weights_only=True``.

    ``parent_state`` is :func:`state_hash` of the weights the window started from. The file is
    written atomically and its size and SHA-256 are recorded in ``manifest.json``; a full disk
    or a file-size limit is a :class:`ScaleVAEError`, the older files stay as they were.
    """
    payload = {
        "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "window": int(res.window),
        "model_config": model.config(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "instant": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in res.instant.items()},
        "losses": [float(v) for v in res.losses], "kl": torch.from_numpy(np.asarray(res.kl)),
        "seconds": float(res.seconds), "at_cap": bool(res.at_cap),
        "parent_state": str(parent_state),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # in memory: the disk is written by Python's I/O only
    data = buffer.getvalue()
    path = atomic_write_bytes(checkpoint_path(folder, res.window), data)
    _record(folder, path.name, data)
    return path


def read_manifest(folder) -> dict:
    """``{file name: {"bytes": n, "sha256": hex}}`` of the checkpoints written in ``folder``
    (empty when there is no manifest, e.g. a run of an older version)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_NAME).read_text())
        entries = manifest["checkpoints"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError):
        warnings.warn(f"{Path(folder) / MANIFEST_NAME} is unreadable; the checkpoints are "
                      "checked by loading them instead", UserWarning, stacklevel=2)
        return {}
    return entries if isinstance(entries, dict) else {}


def _record(folder, name: str, data: bytes) -> None:
    entries = read_manifest(folder)
    entries[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    text = json.dumps({"format": 1, "checkpoints": entries}, indent=1, sort_keys=True)
    atomic_write(Path(folder) / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))


def verify_checkpoint(path, entries: dict | None = None) -> None:
    """Raise :class:`DamagedCheckpoint` when ``path`` differs from what the manifest recorded
    (``entries``: :func:`read_manifest` of its folder, read when None). A file the manifest
    does not list passes: it is checked by loading it."""
    path = Path(path)
    entry = (read_manifest(path.parent) if entries is None else entries).get(path.name)
    if not isinstance(entry, dict):
        return
    size = path.stat().st_size
    if size != entry.get("bytes"):
        raise DamagedCheckpoint(f"checkpoint {path} is damaged: {size} bytes where "
                                f"{entry.get('bytes')} were written (manifest.json)")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != entry.get("sha256"):
        raise DamagedCheckpoint(f"checkpoint {path} is damaged: its contents differ from what "
                                "was written (SHA-256 in manifest.json)")


def load_checkpoint(path, fingerprint: str | None = None, entries: dict | None = None) -> dict:
    """Read a checkpoint safely (no pickled objects), checked against the manifest; refuse one
    made for another configuration.

    Raises
    ------
    DamagedCheckpoint
        The file is not the one written (size or hash) or cannot be read.
    ScaleVAEError
        It is a sound checkpoint of another format or another run's configuration.
    """
    try:
        verify_checkpoint(path, entries)
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except DamagedCheckpoint:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
        raise DamagedCheckpoint(f"checkpoint {path} cannot be read ({exc.__class__.__name__}); "
                                "it is damaged or not a scalevae checkpoint") from exc
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


class ResumePoint:
    """Which finished windows a resumed run takes from its checkpoints, and which it retrains.

    ``load(window, model)`` is asked before each window with the model as it stands (the
    weights the window would start from): it returns the checkpoint to continue from, or None
    to train the window, with one warning when a checkpoint is damaged. ``save(model, res)``
    writes the checkpoint of a trained window. Every rank of a distributed run asks the same
    questions of the same files and weights, so every rank gets the same answers.

    Parameters
    ----------
    folder : path or None
        The checkpoints folder; None: nothing is loaded or saved.
    fingerprint : str
        The run's fingerprint; a sound checkpoint of another run is refused.
    resume : bool
        Load finished windows (False: train every window).
    """

    def __init__(self, folder, fingerprint: str, resume: bool):
        self.folder = None if folder is None else Path(folder)
        self.fingerprint = fingerprint
        self.resume = bool(resume) and self.folder is not None
        # read once, before this run writes: every rank sees the same manifest
        self.entries = read_manifest(self.folder) if self.resume else {}
        self.retrained = False  # a window before this one was trained in this run
        self.parent = ""  # state_hash of the weights the current window starts from
        self.previous = None  # the window before the current one

    def load(self, window: int, model: SIVAE) -> dict | None:
        """The checkpoint of ``window`` to continue from, or None to train it."""
        if self.folder is None:
            return None
        self.parent = state_hash(model)
        path = checkpoint_path(self.folder, window)
        if not (self.resume and path.exists()):
            self.retrained = True
            self.previous = int(window)
            return None
        try:
            ck = load_checkpoint(path, self.fingerprint, self.entries)
        except DamagedCheckpoint as exc:
            start = (f"the weights after window {self.previous} px" if self.previous is not None
                     else "the start")
            warnings.warn(f"{exc}; retraining window {int(window)} px from {start}",
                          UserWarning, stacklevel=2)
            self.retrained = True
            return None
        finally:
            self.previous = int(window)
        # after loaded windows the weights in hand are those this checkpoint started from;
        # after a retrained one, only if its recorded starting weights are exactly these
        if self.retrained and ck.get("parent_state", "") != self.parent:
            return None
        return ck

    def save(self, model: SIVAE, res: WindowResult) -> Path | None:
        """Write the checkpoint of a trained window (with the hash of its starting weights)."""
        if self.folder is None:
            return None
        return save_checkpoint(self.folder, model, res, self.fingerprint, self.parent)
