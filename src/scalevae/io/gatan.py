"""Gatan DigitalMicrograph ``.dm3``/``.dm4`` images (rosettasciio), with counts bounded by the file size."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import ScaleVAEError
from .formats import calibrate, pick_channel, refuse_channel
from .units import normalize_unit


def _dm_images(path):
    """Images of a DM3/DM4 file as rosettasciio dicts (data, axes, title).

    rosettasciio trusts the counts stored in the file: one flipped bit in a struct's field
    count or an array length makes it loop for minutes or allocate gigabytes. Where its
    parser classes are importable we subclass them to bound every count by the bytes left in
    the file; otherwise we fall back to the public reader.
    """
    try:
        from rsciio.digitalmicrograph import _api
        base, image_cls = _api.DigitalMicrographReader, _api.ImageObject
    except (ImportError, AttributeError):  # pragma: no cover - other rosettasciio layouts
        from rsciio.digitalmicrograph import file_reader
        return [{"data": d["data"], "axes": d["axes"],
                 "title": d.get("metadata", {}).get("General", {}).get("title", "")}
                for d in file_reader(str(path))]

    size = Path(path).stat().st_size

    class Bounded(base):
        def _check(self, n, what):
            if not 0 <= n <= size - self.f.tell() + 1:
                raise OSError(f"{what} of {n} does not fit in the file")

        def parse_struct_definition(self):
            pos = self.f.tell()
            self.read_l_or_q(self.f, "big")
            n = self.read_l_or_q(self.f, "big")
            if not 0 <= n <= 1024:  # DM structs have a handful of fields (rect, RGB...)
                raise OSError(f"struct with {n} fields")
            self.f.seek(pos)
            return super().parse_struct_definition()

        def read_array(self, size, enc_eltype, extra=None, skip=False):
            self._check(size, "array length")
            if size > 1 and extra and "definition" in extra and not extra["definition"]:
                raise OSError("array of empty structs")
            return super().read_array(size, enc_eltype, extra=extra, skip=skip)

        def read_string(self, length, skip=False):
            self._check(length, "string length")
            return super().read_string(length, skip=skip)

    out = []
    with open(path, "rb") as f:
        dm = Bounded(f)
        dm.parse_file()
        for imdict in dm.get_image_dictionaries() or []:
            image = image_cls(imdict, f)
            image.filename = str(path)
            data = image.imdict.ImageData.Data
            if not isinstance(data, np.ndarray) and \
                    int(image.size) * np.dtype(image.dtype).itemsize > size - int(data.offset):
                raise OSError("image data run past the end of the file")
            out.append({"data": image.get_data(False, None), "axes": image.get_axes_dict(),
                        "title": image.title})
    return out


def read_dm(path, channel, names_only=False):
    """Read one image of a DigitalMicrograph file, calibrated from its x axis."""
    images = _dm_images(path)
    names = []
    for k, img in enumerate(images):
        title = str(img["title"] or k)
        names.append(title if title not in names else f"{title}_{k}")
    if names_only:
        return {"channels": names if len(names) > 1 else []}
    if not images:
        raise ScaleVAEError(f"{path} holds no image")
    if len(images) == 1:
        refuse_channel(path, channel)
        k = 0
    else:
        k = pick_channel(names, channel, path, "image")
    img = images[k]
    data = np.asarray(img["data"])
    axes = sorted(img["axes"], key=lambda ax: ax.get("index_in_array", 0))
    signal = [ax for ax in axes if not ax.get("navigate", False)]
    if len(signal) != 2:
        raise ScaleVAEError(
            f"{path} holds {len(signal)}-D signals (e.g. spectra), not images; scalevae needs "
            "2-D images or image stacks")
    x = signal[-1]
    size, unit = float(x.get("scale", 1.0)), normalize_unit(x.get("units"))
    meta = {"title": names[k], "axes": [{key: ax.get(key) for key in
                                         ("name", "size", "scale", "offset", "units")}
                                        for ax in axes]}
    if unit is None or not math.isfinite(size) or size <= 0:
        meta["uncalibrated"] = "the file gives no spatial unit; pixel size left unset"
        if math.isfinite(size) and size > 0 and size != 1.0:
            # a scale without a unit is a calibration the user should see, not lose
            meta["scale_without_unit"] = size
            warnings.warn(
                f"{Path(path).name} gives a pixel scale of {size:g} per px but no unit; the pixel "
                f"size is left unset: give it with --pixel-size {size:g} --unit UNIT (e.g. nm) "
                "if that is its calibration", stacklevel=2)
        size, unit = None, None
    else:
        size, unit, _ = calibrate(size, unit, None, meta)
    return {"array": data, "pixel_size": size, "unit": unit, "channel": names[k],
            "channels": names if len(names) > 1 else [], "metadata": meta}
