"""Frames read from disk on demand, for stacks larger than memory.

:class:`LazyFrames` stands in for the ``(frame, y, x)`` array of an :class:`~scalevae.io.ImageStack`:
it has ``shape``, ``ndim``, ``dtype`` and ``len``, and indexing with a frame number (or a slice of
frames) reads just those frames with ordinary file reads (no memory map, whose touched pages would
count against the process), as ``float32``. The pipeline touches frames one at a time: checks,
normalisation, fingerprint and patch extraction read frame by frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import ScaleVAEError

# .npy files above this size are read frame by frame instead of into memory
LAZY_BYTES = 128 * 2**20


class LazyFrames:
    """The frames of a C-ordered 3-D ``.npy`` file, read on demand as ``float32``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.npy")
    >>> np.save(path, np.arange(2 * 8 * 8, dtype="int16").reshape(2, 8, 8))
    >>> frames = LazyFrames(path)
    >>> frames.shape, frames.dtype, float(frames[1][0, 0])
    ((2, 8, 8), dtype('float32'), 64.0)
    """

    lazy = True
    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if len(shape) != 3 or fortran or dtype.hasobject or not np.issubdtype(dtype, np.number):
            raise ScaleVAEError(f"{path}: only C-ordered numeric (frame, y, x) arrays are read "
                                f"lazily, got shape {shape}, dtype {dtype}")
        self.shape, self.file_dtype = tuple(int(s) for s in shape), dtype
        self.frame_items = self.shape[1] * self.shape[2]

    def __len__(self):
        return self.shape[0]

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def nbytes(self):
        return self.size * self.file_dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` as a float32 array."""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self.frame_items * self.file_dtype.itemsize)
            a = np.fromfile(fh, self.file_dtype, (stop - start) * self.frame_items)
        return a.reshape(stop - start, *self.shape[1:]).astype(np.float32, copy=False)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
            return self[first][rest] if np.ndim(first) == 0 else self[first][(slice(None),) + rest]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            return self.read(start, stop)[::step] if stop > start else self.read(0, 0)
        i = int(key)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {key} out of range for {len(self)} frames")
        return self.read(i, i + 1)[0]

    def chunks(self, max_bytes: int = 16 * 2**20):
        """``(start, frames)`` blocks of whole frames, each at most about ``max_bytes``."""
        step = max(1, max_bytes // max(1, self.frame_items * 4))
        for start in range(0, len(self), step):
            yield start, self.read(start, min(start + step, len(self)))

    def __array__(self, dtype=None, copy=None):
        raise ScaleVAEError(f"{self.path} is read lazily (it is larger than memory allows); "
                            "this step needs it in memory: load it with np.load and pass the array")


def is_lazy(a) -> bool:
    """Whether ``a`` is read from disk on demand (:class:`LazyFrames`).

    Examples
    --------
    >>> is_lazy(np.zeros(3))
    False
    """
    return bool(getattr(a, "lazy", False))
