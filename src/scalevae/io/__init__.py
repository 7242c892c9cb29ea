"""Read microscopy images and stacks into one validated in-memory form.

Every reader ends in :func:`as_stack`'s checks, so whatever the file format, the rest of the
package sees an :class:`ImageStack`: a finite ``float32`` array ``(frame, y, x)`` with the pixel
size and unit where the file has them.

Supported files: TIFF (single page, multi-page stacks, ImageJ and OME calibration), NumPy
``.npy``/``.npz``, PNG/JPEG (colour converted to grayscale luminance), HDF5 (pycroscopy NSID
layout, or any file with a single 2-D/3-D dataset), Asylum Research Igor ``.ibw`` and Gatan
DigitalMicrograph ``.dm3``/``.dm4``.

Units. Length units are normalised to ``"pm"``, ``"A"`` (ångström, ASCII spelling), ``"nm"``,
``"um"``, ``"mm"`` and ``"m"`` (so ``"µm"``, ``"micron"`` become ``"um"`` and ``"Å"`` becomes
``"A"``). Pixel sizes that files give in metres are converted to the largest of pm, nm, um, mm
and m in which the pixel size is at least 1 (e.g. 1.17e-8 m -> 11.7 nm); sizes in other units
keep their unit, and unit strings that are not lengths (``"1/nm"``, ``"px"``...) are kept as
they are.

What lives where:

* :mod:`.stack`: :class:`ImageStack`, :func:`as_stack`, :func:`read_image`,
  :func:`list_channels` and the checks every stack passes;
* :mod:`.units`: unit spellings, :func:`physical_pixel`, :func:`physical_to_pixels`;
* :mod:`.registry`: format detection by suffix and the reader registry;
* :mod:`.formats`: what the readers share (channels, colour, calibration);
* :mod:`.lazy`: stacks too large for memory, read frame by frame;
* :mod:`.channels`: the channels of a file, described for ``scalevae channels``;
* one reader module per format: :mod:`.tiff`, :mod:`.numpy_files` (``.npy``/``.npz``),
  :mod:`.hdf5` (NSID), :mod:`.igor` (``.ibw``), :mod:`.gatan` (``.dm3``/``.dm4``),
  :mod:`.pillow` (PNG/JPEG).
"""

from __future__ import annotations

from .registry import READERS as _READERS  # noqa: F401  (tests patch scalevae.io._READERS)
from .stack import MIN_SIZE, ImageStack, as_stack, list_channels, read_image  # noqa: F401
from .units import normalize_unit, physical_pixel, physical_to_pixels, to_pixels  # noqa: F401

__all__ = ["ImageStack", "read_image", "as_stack", "list_channels", "physical_to_pixels",
           "to_pixels", "normalize_unit"]
