"""The one copy of the input checks that several modules share.

Errors name the problem and the fix (:class:`~scalevae.errors.ScaleVAEError`).
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import ScaleVAEError

NPY_MAGIC = b"\x93NUMPY"


def stack_array(stack):
    """The image data of `stack` as an array: an :class:`~scalevae.io.ImageStack`'s ``data``,
    or ``np.asarray(stack)`` (no copy).

    Examples
    --------
    >>> stack_array([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    if not isinstance(stack, np.ndarray) and hasattr(stack, "data"):
        stack = stack.data  # an io.ImageStack
    if getattr(stack, "lazy", False):
        return stack  # io.LazyFrames: frames are read when indexed
    return np.asarray(stack)


def as_frames(stack):
    """The image data as a ``(frame, y, x)`` array; accepts 2-D images and ImageStack.

    Raises
    ------
    ScaleVAEError
        If the data are not 2-D or 3-D, or have an empty image axis.

    Examples
    --------
    >>> as_frames(np.zeros((4, 5))).shape
    (1, 4, 5)
    """
    a = stack_array(stack)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] < 1 or a.shape[2] < 1:
        raise ScaleVAEError(
            f"expected an image (y, x) or a stack (frame, y, x), got an array of shape {a.shape}")
    return a


def positive_whole(value, what):
    """`value` as an int if it is a positive whole number (a number or its text), else an error.

    Examples
    --------
    >>> positive_whole(4.0, "the grid step"), positive_whole("8", "the window")
    (4, 8)
    """
    message = f"{what} must be a positive whole number of pixels, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ScaleVAEError(message)
    try:
        f = float(value)
    except ValueError:
        raise ScaleVAEError(message) from None
    if not np.isfinite(f) or f != int(f) or f <= 0:
        raise ScaleVAEError(message)
    return int(f)


def has_npy_header(path):
    """Whether the file starts with NumPy's ``.npy`` magic bytes.

    ``np.load`` takes a file without them for a pickle, so readers look first.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(p, np.zeros(3))
    >>> has_npy_header(p)
    True
    """
    with open(path, "rb") as fh:
        return fh.read(len(NPY_MAGIC)) == NPY_MAGIC
