"""Private helpers shared by the analyses: state selection, window checks, subsets, decoding."""

from __future__ import annotations

import numpy as np

from ..errors import ScaleVAEError

# Above this many keypoints the kernel density is fitted on a fixed random subset: the density
# of 20,000 points is indistinguishable from that of more, and the cost stays bounded.
MAX_KDE_POINTS = 20000


def state_z(ds, state):
    """``z_mean`` of one state as (window, point, latent), with a helpful error."""
    if "z_mean" not in ds:
        raise ScaleVAEError("the result has no 'z_mean' variable; pass a result Dataset "
                            "from scalevae.run or scalevae.results.load_result")
    states = [str(s) for s in ds["state"].values] if "state" in ds.coords else []
    if "state" in ds["z_mean"].dims and state not in states:
        raise ScaleVAEError(f"state {state!r} is not in the result; choose one of {states}")
    return state_variable(ds, "z_mean", state).transpose("window", "point", "latent")


def scales_state(ds, state=None):
    """The state a length-scale reading uses: ``state`` when given, else the state the result's
    recommendation was read from (``recommended_window_state``; ``"final"`` for a result saved
    before that attribute existed), else :data:`scalevae.config.SCALES_STATE` when the result
    holds it, else ``"final"``."""
    if state is not None:
        return state
    if "recommended_window_state" in ds.attrs:
        return str(ds.attrs["recommended_window_state"])
    if "recommended_window" in ds.attrs:
        return "final"
    from ..config import SCALES_STATE

    states = [str(s) for s in ds["state"].values] if "state" in ds.coords else []
    return SCALES_STATE if SCALES_STATE in states else "final"


def state_variable(ds, name, state):
    """Variable ``name`` of one state (the variable itself when it has no state dimension)."""
    var = ds[name]
    return var.sel(state=state) if "state" in var.dims else var


def check_window(z, window):
    """Raise unless ``window`` (px) is one of the windows of ``z``."""
    if int(window) not in z["window"].values:
        raise ScaleVAEError(f"window {window} is not in the result; choose one of "
                            f"{[int(w) for w in z['window'].values]}")


def require_windows(n, what):
    """Raise unless there are at least two windows (``what`` names the analysis)."""
    if n < 2:
        raise ScaleVAEError(f"{what} at least two windows; "
                            "run with more window sizes (e.g. --windows 8:64:8)")


def point_coords(ds):
    """The keypoints' ``frame``, ``y``, ``x`` coordinates of ``ds``, ready for a new array."""
    return {c: ("point", ds[c].values) for c in ("frame", "y", "x") if c in ds.coords}


def subset(n, m, seed=0):
    """Fixed random subset of ``range(n)`` of at most ``m`` indices (sorted)."""
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def _model_device(model):
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return "cpu"


def decode(model, z):
    """Decode latent points ``z`` (n, k) in one batched call; returns float32 (n, r, r)."""
    import torch  # imported here: the analyses that do not decode should not need torch

    device = _model_device(model)
    with torch.inference_mode():
        out = model.decode(torch.as_tensor(np.asarray(z, np.float32), device=device))
    return out.detach().float().cpu().numpy().reshape(len(z), *out.shape[-2:])
