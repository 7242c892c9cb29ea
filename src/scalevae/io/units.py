"""Length units: one spelling per unit, and physical lengths converted to pixels.

Length units are normalised to ``"pm"``, ``"A"`` (angstrom, ASCII spelling), ``"nm"``, ``"um"``,
``"mm"`` and ``"m"``; unit strings that are not lengths (``"1/nm"``, ``"px"``...) are kept as
they are. :mod:`scalevae.io` re-exports the public names.
"""

from __future__ import annotations

import numpy as np

from ..errors import ScaleVAEError

# power of ten of each normalised length unit in metres (exponents keep 1 um / 1 nm exact)
LENGTH_UNITS = {"pm": -12, "A": -10, "nm": -9, "um": -6, "mm": -3, "m": 0}
_ALIASES = {
    "µm": "um", "μm": "um", "micron": "um", "microns": "um", "micrometer": "um",
    "micrometre": "um", "micrometers": "um", "micrometres": "um", "u": "um",
    "Å": "A", "Å": "A", "angstrom": "A", "angstroms": "A", "ang": "A",
    "nanometer": "nm", "nanometre": "nm", "nanometers": "nm", "nanometres": "nm",
    "picometer": "pm", "picometre": "pm", "picometers": "pm", "picometres": "pm",
    "millimeter": "mm", "millimetre": "mm", "millimeters": "mm", "millimetres": "mm",
    "meter": "m", "metre": "m", "meters": "m", "metres": "m",
    "pixel": "px", "pixels": "px", "pix": "px",
}

# ----------------------------------------------------------------------------- units

def normalize_unit(unit):
    """Return the normalised spelling of a unit string (``"µm"`` -> ``"um"``), None for none.

    Examples
    --------
    >>> normalize_unit("µm"), normalize_unit("Å"), normalize_unit(" NM "), normalize_unit("")
    ('um', 'A', 'nm', None)
    """
    if unit is None:
        return None
    if isinstance(unit, bytes):
        unit = unit.decode("latin-1")
    unit = str(unit).strip()
    if unit in ("", "<undefined>", "None"):
        return None
    if unit in _ALIASES:
        return _ALIASES[unit]
    if unit in LENGTH_UNITS:
        return unit
    low = unit.lower()
    if low in LENGTH_UNITS and low != "a":  # lower-case "a" is not an ångström
        return low
    return _ALIASES.get(low, unit)


def physical_pixel(pixel_size, unit):
    """``(pixel_size, unit)`` when they give the pixel a physical size, else ``(None, None)``.

    A missing, non-finite or non-positive size, a missing unit, or a size in pixels (the
    synthetic examples without a scale say ``1 px``) gives nothing to convert to.

    Examples
    --------
    >>> physical_pixel(11.7, "nm"), physical_pixel(1.0, "px"), physical_pixel(float("nan"), "nm")
    ((11.7, 'nm'), (None, None), (None, None))
    """
    try:
        ps = float(pixel_size)
    except (TypeError, ValueError):
        return None, None
    if not np.isfinite(ps) or ps <= 0 or not unit or normalize_unit(unit) == "px":
        return None, None
    return ps, str(unit)


def friendly_length(size, unit):
    """Express a length in the largest unit (pm..m) in which it is >= 1; other units unchanged."""
    unit = normalize_unit(unit)
    if size is None or unit not in LENGTH_UNITS or unit == "A":
        return size, unit
    best = "pm"
    for name in ("pm", "nm", "um", "mm", "m"):
        if size * 10.0 ** (LENGTH_UNITS[unit] - LENGTH_UNITS[name]) >= 1 - 1e-9:
            best = name
    # 12 significant digits: 2e-6 m / 256 reads 7.8125 nm, not 7.812499999999999
    return float(f"{size * 10.0 ** (LENGTH_UNITS[unit] - LENGTH_UNITS[best]):.12g}"), best


def physical_to_pixels(value, unit, pixel_size, pixel_unit):
    """Convert a physical length (e.g. 20 nm) to pixels.

    Parameters
    ----------
    value : float
        The length.
    unit : str
        Its unit (``"nm"``, ``"um"``, ``"µm"``, ``"Å"``, ``"px"``...).
    pixel_size : float or None
        Size of one pixel in `pixel_unit`.
    pixel_unit : str or None
        Unit of `pixel_size`.

    Returns
    -------
    float
        The length in pixels (not rounded).

    Raises
    ------
    ScaleVAEError
        If the pixel size is unknown or the units cannot be converted into each other.

    Examples
    --------
    >>> physical_to_pixels(20, "nm", 2.0, "nm")
    10.0
    >>> physical_to_pixels(0.1, "um", 12.5, "nm")
    8.0
    """
    u = normalize_unit(unit)
    if u == "px":
        return float(value)
    if pixel_size is None or not np.isfinite(pixel_size) or pixel_size <= 0:
        raise ScaleVAEError(
            f"cannot convert {value:g} {unit} to pixels: the pixel size is unknown; give the "
            "length in pixels, or give the pixel size and unit (pixel_size=..., unit='nm')")
    pu = normalize_unit(pixel_unit)
    if u is not None and u == pu:
        return float(value) / float(pixel_size)
    if u in LENGTH_UNITS and pu in LENGTH_UNITS:
        return float(value) * 10.0 ** (LENGTH_UNITS[u] - LENGTH_UNITS[pu]) / float(pixel_size)
    raise ScaleVAEError(
        f"cannot convert {value:g} {unit!s} to pixels of {pixel_size:g} {pixel_unit!s}: "
        f"units must be the same or both lengths ({', '.join(LENGTH_UNITS)}, px)")


to_pixels = physical_to_pixels  # short alias
