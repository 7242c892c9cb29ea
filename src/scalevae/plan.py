"""What a run will do, decided before it starts: a frozen :class:`Plan`, built by :func:`make_plan`.

Every choice a run makes from the input and the user's options is taken here, once, with the
reason it was taken: the windows (given, or the default range, started lower when the image has
a pronounced finer period), the common patch size (given, or chosen from the image's spectrum),
the keypoints, the normalisation, the training settings, the device and the distributed
setting, and the fingerprint that says whether a folder holds the same run. The image's
:class:`~scalevae.spectrum.Spectrum` is made once here and its numbers are passed on.
:mod:`scalevae.pipeline` executes a plan.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from . import __version__, config
from .errors import ScaleVAEError
from .io import ImageStack
from .keypoints import atom_windows, keypoint_details, select_inside
from .patches import check_windows_fit, fit_normalization, parse_windows
from .patches.size import default_patch_size
from .rundir import fingerprint
from .spectrum import Spectrum
from .training import DistInfo, TrainConfig, resolve_device, setup_distributed

__all__ = ["Plan", "make_plan", "choose_windows", "choose_patch_size", "check_invariance",
           "check_latent_dim"]


@dataclass(frozen=True)
class Plan:
    """A run's every choice, with its reason; executed by :func:`scalevae.pipeline.execute`.

    Attributes
    ----------
    windows : ndarray of int
        Window sizes in px, increasing; ``windows_reason`` says where they came from.
    patch_size : int
        The common size every window is resampled to; ``patch_size_reason`` says why.
    keypoints : str
        The keypoint rule (``"grid:4"``, ``"atoms"``, ...; ``"array"`` for given points);
        ``points`` ``(n, 3)`` the kept keypoints, ``n_dropped`` those dropped at the border.
    padding, keypoint_options :
        As given to :func:`scalevae.run`.
    normalization : dict
        ``{"offset", "scale"}``, one for the whole data set.
    invariance, latent_dim, seed, train :
        The model and its training (:class:`~scalevae.training.TrainConfig`).
    device, train_device, dist :
        The device asked for, the one this process trains on, and its place in a torchrun
        run (None: one process).
    spectral_period : float
        The image's dominant spectral period (px, NaN if none): the baseline stored beside the
        recommended window.
    keypoint_details : dict
        What the keypoint detector measured, stored with the result
        (:func:`scalevae.keypoints.keypoint_details`; atoms: the lattice and the masked share).
    settings : dict
        The configuration as stored (``config.json`` and the result's ``config``), with the
        ``fingerprint``.
    seconds : dict
        Time spent deciding (``keypoints``).
    """

    windows: np.ndarray
    windows_reason: str
    patch_size: int
    patch_size_reason: str
    keypoints: str
    points: np.ndarray
    n_dropped: int
    padding: str | None
    keypoint_options: dict
    normalization: dict
    invariance: str
    latent_dim: int
    seed: int
    train: TrainConfig
    device: torch.device
    train_device: torch.device
    dist: DistInfo | None
    spectral_period: float
    settings: dict
    keypoint_details: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.settings["fingerprint"]


def make_plan(stack: ImageStack, *, windows=None, keypoints=config.KEYPOINTS,
              keypoint_options: dict | None = None, padding: str | None = None,
              patch_size: int | None = None, invariance: str = config.INVARIANCE,
              latent_dim: int = config.LATENT_DIM, train: dict | None = None,
              seed: int = config.SEED, device: str = config.DEVICE) -> Plan:
    """Decide everything a run on ``stack`` does (the options as in :func:`scalevae.run`;
    ``train``: :class:`~scalevae.training.TrainConfig` fields). Errors in the options are
    raised here, before anything is trained or written.

    Examples
    --------
    >>> import numpy as np
    >>> from scalevae.io import as_stack
    >>> img = np.random.default_rng(0).normal(size=(48, 48)).astype("float32")
    >>> plan = make_plan(as_stack(img), windows=[8, 12], keypoints="grid:8", device="cpu")
    >>> plan.windows.tolist(), plan.patch_size, len(plan.points), plan.windows_reason
    ([8, 12], 16, 16, 'given')
    """
    check_invariance(invariance)
    latent_dim = check_latent_dim(latent_dim)
    spectrum = Spectrum.of(stack.data)
    # keypoints first: atom keypoints measure the lattice, whose bond starts their windows
    t = time.perf_counter()
    points, details = keypoint_details(keypoints, stack.data, **(keypoint_options or {}))
    seconds = {"keypoints": time.perf_counter() - t}
    windows, windows_reason = choose_windows(windows, stack, padding, keypoints, spectrum,
                                             bond=details.get("lattice_bond_px"))
    r, patch_reason = choose_patch_size(patch_size, windows, spectrum)
    cfg = TrainConfig(**(train or {}))
    dev = resolve_device(device)
    # under torchrun: join the process group; `train_dev` is this rank's device (cuda:LOCAL_RANK)
    dist, train_dev = setup_distributed(dev)
    points, n_dropped = select_inside(points, stack.data.shape[1:], windows[-1], padding=padding)

    spec = keypoints if isinstance(keypoints, str) else "array"
    settings = {
        "input": stack.source, "channel": stack.channel, "windows": windows.tolist(),
        "keypoints": spec, "keypoint_options": keypoint_options or {},
        "padding": padding, "n_keypoints": int(len(points)), "n_dropped": int(n_dropped),
        "patch_size": r, "patch_size_reason": patch_reason, "invariance": invariance,
        "latent_dim": int(latent_dim), "seed": int(seed), "device": str(dev),
        "train": cfg.__dict__, "version": __version__,
    }
    settings["fingerprint"] = fingerprint(stack.data, points, settings)
    settings["windows_reason"] = windows_reason  # not in the fingerprint: it follows the rest
    return Plan(windows=windows, windows_reason=windows_reason, patch_size=r,
                patch_size_reason=patch_reason, keypoints=spec, points=points,
                n_dropped=int(n_dropped), padding=padding,
                keypoint_options=keypoint_options or {},
                normalization=fit_normalization(stack.data), invariance=invariance,
                latent_dim=latent_dim, seed=int(seed), train=cfg, device=dev,
                train_device=train_dev, dist=dist, spectral_period=spectrum.baseline(),
                settings=settings, seconds=seconds, keypoint_details=details)


def choose_windows(windows, stack, padding=None, keypoints=None, spectrum=None, bond=None):
    """The window sizes in px (the default rule when None) and why; without padding they must
    fit. A grid's default range starts below 8 px when the image has a pronounced finer period
    (:func:`scalevae.config.default_windows`). Atom keypoints with a measured ``bond`` (px,
    the nearest-neighbour distance) get windows from about one bond to about ten
    (:func:`scalevae.keypoints.atom_windows`): a window under one bond holds no neighbour, so
    it cannot see any arrangement of atoms. Feature keypoints sit on the structure's basic
    unit and keep the general default.

    Examples
    --------
    >>> import numpy as np
    >>> from scalevae.io import as_stack
    >>> stack = as_stack(np.random.default_rng(0).normal(size=(64, 64)).astype("float32"))
    >>> choose_windows("8:16:4", stack)
    (array([ 8, 12, 16]), 'given')
    >>> choose_windows(None, stack, keypoints="grid:4")[0].tolist()
    [8, 10, 12, 14, 16]
    """
    frame_shape = stack.data.shape[1:]
    reason = "given"
    if windows is None:
        period = None
        if isinstance(keypoints, str) and keypoints.split(":")[0] == "grid":
            period = (spectrum or Spectrum.of(stack.data)).pronounced_period()
        windows = config.default_windows(frame_shape, period)
        reason = "default: 8 px to a quarter of the smaller frame side (at most 64 px)"
        if bond is not None and np.isfinite(bond):
            windows = atom_windows(bond, frame_shape)
            reason = (f"default for atoms: from the measured bond ({bond:.1f} px) to about ten "
                      "bonds (at most half the smaller frame side)")
        elif windows[0] < config.FIRST_WINDOW:
            reason = (f"default: from {windows[0]} px, about a third of the image's spectral "
                      f"period ({period:.1f} px), so that the range brackets the regrouping "
                      "it causes")
    windows = np.asarray(parse_windows(windows, stack.pixel_size, stack.unit), dtype=np.int64)
    if padding is None:
        check_windows_fit(windows, frame_shape)
    return windows, reason


def choose_patch_size(patch_size, windows, spectrum=None) -> tuple[int, str]:
    """The common patch size and why: ``patch_size`` if given, else chosen from the image.

    Without ``patch_size`` the size comes from the image's own spectrum
    (:func:`scalevae.patches.size.default_patch_size`): large enough that the finest
    structure the largest window holds keeps a few px after shrinking, bounded by
    :data:`config.MAX_DEFAULT_PATCH` px for the training cost; without a spectrum it is the
    smallest window. Refuses a size under :data:`config.SMALLEST_PATCH` px, and warns when a
    size the user gave shrinks the largest window more than :data:`config.MAX_SHRINK`-fold.

    Returns
    -------
    size : int
    reason : str
        One sentence for the output.

    Examples
    --------
    >>> choose_patch_size(None, [8, 16, 24])
    (8, 'the smallest window')
    >>> choose_patch_size(12, [8, 16, 24])
    (12, 'given')
    """
    if patch_size is None:
        r = int(windows[0])  # the smallest window bounds what any patch size can hold
        reason = "the smallest window"
    else:
        r, reason = int(patch_size), "given"
    if r < config.SMALLEST_PATCH:
        raise ScaleVAEError(f"patch size must be at least {config.SMALLEST_PATCH} px (got {r}"
                            f"{'' if patch_size else ', the smallest window'}); use windows of "
                            f"at least {config.SMALLEST_PATCH} px, or give a larger --patch-size")
    if patch_size is None and spectrum is not None:
        r, reason = default_patch_size(None, windows, max_size=config.MAX_DEFAULT_PATCH,
                                       spectrum=spectrum)
    if patch_size is not None and windows[-1] / r > config.MAX_SHRINK:
        warnings.warn(f"the largest window ({windows[-1]} px) is shrunk {windows[-1] / r:.0f}-fold "
                      f"to the common patch size ({r} px): structure finer than about "
                      f"{windows[-1] / r:.0f} px is averaged away there; a larger patch_size "
                      "(--patch-size) keeps it", UserWarning, stacklevel=4)
    return r, reason


def check_invariance(invariance: str) -> str:
    """``invariance`` if it is one of :data:`config.INVARIANCES`, else a ScaleVAEError naming them.

    Examples
    --------
    >>> check_invariance("rotation")
    'rotation'
    """
    if invariance not in config.INVARIANCES:
        raise ScaleVAEError(f"unknown invariance {invariance!r}; use one of "
                            f"{', '.join(config.INVARIANCES)}")
    return invariance


def check_latent_dim(latent_dim) -> int:
    """``latent_dim`` as an int, at least 1.

    Examples
    --------
    >>> check_latent_dim(2)
    2
    """
    if int(latent_dim) < 1:
        raise ScaleVAEError(f"latent dimension must be at least 1 (got {latent_dim})")
    return int(latent_dim)
