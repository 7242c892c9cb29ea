"""Multi-window patches: cut around keypoints, resample with anti-aliasing to one size, normalise.

What lives where:

* :mod:`.windows`: :func:`parse_windows` (pixels or physical lengths, converted with
  :func:`scalevae.io.physical_to_pixels`) and :func:`check_windows_fit`;
* :mod:`.normalization`: :func:`fit_normalization`, one normalisation for the whole data set;
* :mod:`.extract`: :func:`extract_patches`, :func:`iter_patches` and the exact, vectorised
  resampling behind them (geometry in its module docstring and ``docs/internals.md``).
"""

from __future__ import annotations

from .extract import PADDING_MODES, _PatchIterator, extract_patches, iter_patches  # noqa: F401
from .normalization import fit_normalization
from .windows import check_windows_fit, parse_windows

__all__ = ["parse_windows", "check_windows_fit", "fit_normalization", "extract_patches", "iter_patches"]
