"""PNG and JPEG images (Pillow); colour is converted to grayscale luminance."""

from __future__ import annotations

import numpy as np

from .formats import refuse_channel, rgb_to_gray


def read_pil(path, channel, names_only=False):
    """Read a PNG or JPEG; palette and colour modes become grayscale luminance."""
    from PIL import Image

    refuse_channel(path, channel)
    if names_only:
        return {"channels": []}
    with Image.open(path) as im:
        im.load()  # decode now, inside the caller's error handling
        meta = {"mode": im.mode, "format": im.format}
        if im.mode == "P":
            im = im.convert("RGBA")
        elif im.mode in ("LA", "La", "PA"):
            im = im.convert("L")
            meta["converted"] = "alpha channel dropped"
        elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        a = np.asarray(im)
    return {"array": rgb_to_gray(a, meta), "metadata": meta}
