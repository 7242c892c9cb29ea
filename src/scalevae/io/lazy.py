"""Frames read from disk on demand, for stacks larger than memory.

A *frame source* stands in for the ``(frame, y, x)`` array of an :class:`~scalevae.io.ImageStack`:
it has ``shape``, ``ndim``, ``dtype`` and ``len``, and indexing with a frame number, a slice of
frames or an array of frame numbers reads just those frames, as ``float32``. The pipeline
touches frames a block at a time: checks, normalisation, fingerprint and the run folder's
``input.npy`` copy read blocks of whole frames (:meth:`FrameSource.chunks`), and patches are
cut from one frame at a time.

Sources:

* :class:`NpyFrames` - a C-ordered 3-D ``.npy`` file, read with ordinary file reads (no memory
  map, whose touched pages would count against the process);
* :class:`ArrayFrames` - any 3-D array-like that reads frames when sliced: an ``h5py`` dataset
  (chunked or not), a ``zarr`` array, a TIFF opened through ``tifffile``'s Zarr store
  (:func:`tiff_frames`), a ``numpy.memmap``.

Readers switch to a frame source when the image data are larger than :data:`LAZY_BYTES`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ScaleVAEError

# image data above this size are read frame by frame instead of into memory
LAZY_BYTES = 128 * 2**20


class FrameSource:
    """Frames ``(frame, y, x)`` read on demand as ``float32``; subclasses define :meth:`read`."""

    lazy = True
    ndim = 3
    dtype = np.dtype(np.float32)
    shape: tuple = (0, 0, 0)
    file_dtype = np.dtype(np.float32)
    name = "the stack"

    def _set_shape(self, shape, file_dtype):
        if len(shape) != 3 or not (np.issubdtype(file_dtype, np.number) or file_dtype == bool) \
                or np.issubdtype(file_dtype, np.complexfloating):
            raise ScaleVAEError(f"{self.name}: only real numeric (frame, y, x) arrays are read "
                                f"lazily, got shape {tuple(shape)}, dtype {file_dtype}")
        self.shape = tuple(int(s) for s in shape)
        self.file_dtype = np.dtype(file_dtype)
        self.frame_items = self.shape[1] * self.shape[2]

    def read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        """Frames ``start:stop`` as a float32 array."""
        raise NotImplementedError

    def __len__(self):
        return self.shape[0]

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def nbytes(self):
        return self.size * self.file_dtype.itemsize

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
            return self[first][rest] if np.ndim(first) == 0 else self[first][(slice(None),) + rest]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            return self.read(start, stop)[::step] if stop > start else self.read(0, 0)
        if np.ndim(key) == 1:  # frame numbers, e.g. a sample of frames
            return np.stack([self[int(i)] for i in np.asarray(key)]) if len(key) else self.read(0, 0)
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
        raise ScaleVAEError(f"{self.name} is read lazily (it is larger than memory allows); "
                            "this step needs it in memory: load it whole and pass the array")


class NpyFrames(FrameSource):
    """The frames of a C-ordered 3-D ``.npy`` file, read on demand as ``float32``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.npy")
    >>> np.save(path, np.arange(2 * 8 * 8, dtype="int16").reshape(2, 8, 8))
    >>> frames = NpyFrames(path)
    >>> frames.shape, frames.dtype, float(frames[1][0, 0])
    ((2, 8, 8), dtype('float32'), 64.0)
    """

    def __init__(self, path):
        self.path = self.name = str(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran or dtype.hasobject:
            raise ScaleVAEError(f"{path}: only C-ordered numeric (frame, y, x) arrays are read "
                                f"lazily, got a Fortran-ordered or object array")
        self._set_shape(shape, dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self.frame_items * self.file_dtype.itemsize)
            a = np.fromfile(fh, self.file_dtype, (stop - start) * self.frame_items)
        return a.reshape(stop - start, *self.shape[1:]).astype(np.float32, copy=False)


LazyFrames = NpyFrames  # the name the first version used


class ArrayFrames(FrameSource):
    """Frames of a 3-D array-like that reads when sliced (h5py dataset, zarr array, memmap).

    ``keep`` holds whatever must stay open while the frames are read (an ``h5py.File``).

    Examples
    --------
    >>> frames = ArrayFrames(np.arange(2 * 8 * 8, dtype="uint8").reshape(2, 8, 8), "demo")
    >>> frames.shape, float(frames[1][0, 0]), frames[0:2].dtype
    ((2, 8, 8), 64.0, dtype('float32'))
    """

    def __init__(self, array, name="the stack", keep=None):
        self.array, self.name, self._keep = array, str(name), keep
        self._set_shape(array.shape, np.dtype(array.dtype))

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop]).astype(np.float32, copy=False)


def h5_frames(path, dataset_name) -> ArrayFrames:
    """The frames of a 3-D HDF5 dataset, read on demand (the file stays open for reading)."""
    import h5py

    h5 = h5py.File(path, "r")
    return ArrayFrames(h5[dataset_name], f"{path}:{dataset_name}", keep=h5)


def tiff_frames(path, series=0) -> ArrayFrames:
    """The pages of a TIFF series as frames, read on demand through tifffile's Zarr store."""
    import tifffile
    import zarr

    store = tifffile.imread(str(path), aszarr=True, series=series)
    a = zarr.open(store, mode="r")
    if not hasattr(a, "shape"):  # pyramid: level 0
        a = a["0"]
    return ArrayFrames(a, str(path), keep=store)


def read_lazily(nbytes) -> bool:
    """Whether image data of ``nbytes`` bytes are read frame by frame (above :data:`LAZY_BYTES`).

    Examples
    --------
    >>> read_lazily(2**30), read_lazily(2**20)
    (True, False)
    """
    return int(nbytes) > LAZY_BYTES


def is_lazy(a) -> bool:
    """Whether ``a`` is read from disk on demand (a :class:`FrameSource`).

    Examples
    --------
    >>> is_lazy(np.zeros(3))
    False
    """
    return bool(getattr(a, "lazy", False))


def lazy_array(a):
    """A frame source for a large 3-D h5py dataset or zarr array passed in memory, else ``a``.

    Arrays already in memory (numpy) are returned as they are.

    Examples
    --------
    >>> lazy_array(np.zeros((2, 8, 8))).shape
    (2, 8, 8)
    """
    if isinstance(a, np.ndarray) or is_lazy(a):
        return a
    module = type(a).__module__ or ""
    if (module.startswith("h5py") or module.startswith("zarr")) and len(getattr(a, "shape", ())) == 3 \
            and read_lazily(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize):
        return ArrayFrames(a, getattr(a, "name", None) or "the array")
    return a
