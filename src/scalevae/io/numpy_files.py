"""NumPy files: ``.npy`` (one array) and ``.npz`` (named arrays as channels, plus calibration)."""

from __future__ import annotations

import numpy as np

from .._checks import has_npy_header
from ..errors import ScaleVAEError
from .formats import pick_channel, refuse_channel


def read_npy(path, channel, names_only=False):
    """Read the one array of a ``.npy`` file (no pickles)."""
    refuse_channel(path, channel)
    if names_only:
        return {"channels": []}
    if not has_npy_header(path):  # np.load takes anything without it for a pickle
        raise ScaleVAEError(
            f"{path} is not a NumPy .npy file (no NumPy header at its start); it may be "
            "corrupt, or a file of another format named .npy")
    import os

    from .lazy import NpyFrames, read_lazily

    if read_lazily(os.path.getsize(path)):
        try:
            return {"array": NpyFrames(path)}
        except ScaleVAEError:
            pass  # not a plain (frame, y, x) stack: read it whole, as below
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ScaleVAEError(
                f"{path} holds Python objects, not a numeric array; save it with "
                "np.save(path, np.asarray(image, dtype=float))") from exc
        raise
    return {"array": data}


_NPZ_RESERVED = ("pixel_size", "unit", "control", "control_name")


def read_npz(path, channel, names_only=False):
    """Read one named array of a ``.npz``; arrays named like calibration fields are calibration."""
    with open(path, "rb") as fh:  # np.load takes anything that is not a zip for a pickle
        if fh.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise ScaleVAEError(
                f"{path} is not a NumPy .npz archive (no zip signature at its start); it may "
                "be truncated or corrupt, or a file of another format named .npz")
    with np.load(path, allow_pickle=False) as z:
        # arrays with these names are calibration, not channels
        names = [n for n in z.files if n not in _NPZ_RESERVED]
        if names_only:
            return {"channels": names}
        if not names:
            held = f"it has only {', '.join(z.files)}" if z.files else "it holds no arrays at all"
            raise ScaleVAEError(f"{path} holds no image arrays ({held}); save the image with "
                                "np.savez(path, image=array)")
        name = names[pick_channel(names, channel, path, "array")]
        out = {"array": z[name], "channel": name, "channels": names}
        for key in _NPZ_RESERVED:
            if key in z.files:
                value = z[key]
                out[key] = value.item() if value.ndim == 0 else value
    if isinstance(out.get("unit"), bytes):
        out["unit"] = out["unit"].decode()
    return out
