"""Patch extraction: cut around keypoints, resample with anti-aliasing to one size, normalise.

Geometry (see ``docs/internals.md``): pixel centres lie at integer coordinates. A patch of
window ``w`` resampled to ``r x r`` around the keypoint ``(y, x)`` takes output pixel ``j`` at

    y - w / 2 + (j + 0.5) * w / r          (the same along x)

from the frame after an anti-aliasing Gaussian prefilter with sigma ``max(0, (w / r - 1) / 2)``
(scikit-image's rule), by bilinear interpolation. For ``r == w`` this is the identity on the
pixel grid: the samples are ``y + j - (w - 1) / 2``, so an integer keypoint with an odd window,
or a half-integer keypoint with an even window, gives exactly an image slice. Keypoints are never
moved to the nearest pixel.

Two exact, vectorised routes compute the same numbers (no Python loop per patch):

* separable: when the keypoints share rows and columns (a grid), the prefilter and the
  interpolation are one sparse matrix per axis applied only to the rows/columns that are sampled,
  ``H = Ay @ frame @ Ax.T``, and the patches are gathered from ``H``;
* gather: otherwise (atoms, SIFT) the frame is prefiltered once and the four bilinear neighbours
  of every sample of a batch of keypoints are gathered with fancy indexing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

from .._checks import as_frames, positive_whole
from ..errors import ScaleVAEError
from ..keypoints import check_in_image, check_inside, check_points

PADDING_MODES = ("reflect", "constant", "nearest", "wrap")
# np.pad spelling of each scipy.ndimage boundary mode (scipy's "reflect" repeats the edge pixel)
_NP_PAD = {"reflect": "symmetric", "constant": "constant", "nearest": "edge", "wrap": "wrap"}
_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, so results match it


def extract_patches(stack, points, window, size, padding=None, normalization=None, batch=4096):
    """All patches of one window, resampled with anti-aliasing to ``size x size``.

    Parameters
    ----------
    stack : (frame, y, x) or (y, x) array
    points : (n, 3) array
        Keypoints ``frame, y, x`` in pixels (fractional allowed).
    window : int
        Window size ``w`` in pixels.
    size : int
        Output size ``r`` in pixels.
    padding : {None, "reflect", "constant", "nearest", "wrap"}
        None: every patch must lie inside its frame (see ``keypoints.select_inside``).
        Otherwise the frame is extended with that scipy.ndimage boundary mode ("constant" pads
        with 0 after normalisation, i.e. with the offset).
    normalization : dict, optional
        ``{"offset", "scale"}`` from :func:`fit_normalization`; patches become ``(x - offset) / scale``.
    batch : int
        Keypoints resampled together (memory: about ``batch * size**2 * 16`` bytes).

    Returns
    -------
    patches : (n, size, size) float32 array

    Examples
    --------
    >>> img = np.arange(100.0).reshape(10, 10)
    >>> extract_patches(img, [[0, 4, 5]], window=3, size=3)[0]
    array([[34., 35., 36.],
           [44., 45., 46.],
           [54., 55., 56.]], dtype=float32)
    """
    it = iter_patches(stack, points, window, size, padding, normalization, batch)
    out = np.empty((it.n, it.size, it.size), np.float32)
    for start, p in it:
        out[start:start + len(p)] = p
    return out


def iter_patches(stack, points, window, size, padding=None, normalization=None, batch=4096):
    """Patches of one window in batches, so that no more than `batch` patches are in memory.

    Same parameters as :func:`extract_patches`; the input is checked when this is called.

    Yields
    ------
    start : int
        Index of the batch's first keypoint in `points`.
    patches : (m, size, size) float32 array
        Patches of ``points[start:start + m]``.

    Examples
    --------
    >>> img = np.random.default_rng(0).random((64, 64))
    >>> pts = [[0, 20, 20], [0, 30.5, 31.25], [0, 40, 40]]
    >>> [(s, p.shape) for s, p in iter_patches(img, pts, window=16, size=8, batch=2)]
    [(0, (2, 8, 8)), (2, (1, 8, 8))]
    """
    return _PatchIterator(stack, points, window, size, padding, normalization, batch)



class _PatchIterator:
    """Validated inputs plus a generator; holds one prepared frame at a time."""

    def __init__(self, stack, points, window, size, padding, normalization, batch):
        self.data = as_frames(stack)
        self.window = positive_whole(window, "the window")
        self.size = positive_whole(size, "the patch size")
        self.batch = positive_whole(batch, "the batch size")
        if padding is not None and padding not in PADDING_MODES:
            raise ScaleVAEError(f"unknown padding {padding!r}; use None (keypoints must be inside) "
                                f"or one of {', '.join(PADDING_MODES)}")
        self.padding = padding
        self.offset, self.scale = 0.0, 1.0
        if normalization is not None:
            try:
                self.offset, self.scale = float(normalization["offset"]), float(normalization["scale"])
            except (KeyError, TypeError, ValueError):
                raise ScaleVAEError("normalization must be a dict with numbers 'offset' and 'scale' "
                                    "(from fit_normalization)") from None
            if not (np.isfinite(self.offset) and np.isfinite(self.scale) and self.scale > 0):
                raise ScaleVAEError(f"normalization scale must be positive and finite, got {self.scale!r}")
        self.points = self._check_points(points)
        self.n = len(self.points)
        w, r = self.window, self.size
        self.sigma = max(0.0, (w / r - 1) / 2)
        self.radius = int(_TRUNCATE * self.sigma + 0.5) if self.sigma > 0 else 0
        self.offsets = (np.arange(r) + 0.5) * w / r - w / 2
        self._frame_index = None

    def _check_points(self, points):
        p = check_points(points, len(self.data), "the array", allow_empty=True)
        if self.padding is None:
            check_inside(p, self.data.shape[1:], self.window)
        else:
            check_in_image(p, self.data.shape[1:], "the array")
        return p

    def __iter__(self):
        frames = self.points[:, 0].astype(np.int64)
        sorted_frames = len(frames) < 2 or bool((np.diff(frames) >= 0).all())
        for start in range(0, self.n, self.batch):
            stop = min(start + self.batch, self.n)
            out = np.empty((stop - start, self.size, self.size), np.float32)
            fb = frames[start:stop]
            groups = (np.unique(fb) if not sorted_frames
                      else fb[np.r_[0, np.flatnonzero(np.diff(fb)) + 1]])
            for f in groups:
                sel = slice(None) if len(groups) == 1 else np.flatnonzero(fb == f)
                pts = self.points[start:stop][sel]
                out[sel] = self._sample(int(f), pts[:, 1], pts[:, 2])
            yield start, out

    # -- one frame ---------------------------------------------------------------------------

    def _load(self, f):
        """The frame as float32, normalised; the prefiltered padded copy is made on demand."""
        if self._frame_index != f:
            frame = self.data[f]
            if self.offset != 0.0 or self.scale != 1.0:
                frame = (frame.astype(np.float64) - self.offset) / self.scale
            self._frame = np.ascontiguousarray(frame, dtype=np.float32)
            self._filtered = None
            self._frame_index = f
        return self._frame

    def _sample(self, f, y, x, route=None):
        frame = self._load(f)
        ny, nx = frame.shape
        n, r, taps = len(y), self.size, 2 * self.radius + 2
        # keypoints sharing rows and columns (a grid) share samples: count them cheaply first
        yu, yinv = np.unique(y, return_inverse=True)
        xu, xinv = np.unique(x, return_inverse=True)
        if route is None and len(yu) * len(xu) > 2 * n:
            route = "gather"
        if route != "gather":
            # rounding to 1e-9 px merges samples shared by neighbouring keypoints, moving none
            uy, iy = np.unique(np.round(yu[:, None] + self.offsets, 9), return_inverse=True)
            ux, ix = np.unique(np.round(xu[:, None] + self.offsets, 9), return_inverse=True)
            separable_cost = len(uy) * taps * nx + len(ux) * taps * len(uy) + 2 * n * r * r
            gather_cost = 8 * n * r * r + (0 if self._filtered is not None else 2 * (taps - 1) * ny * nx)
            if route == "separable" or separable_cost <= gather_cost:
                return self._separable(frame, uy, ux, iy.reshape(-1, r), ix.reshape(-1, r), yinv, xinv)
        return self._gather(y[:, None] + self.offsets, x[:, None] + self.offsets)

    def _separable(self, frame, uy, ux, iy, ix, yinv, xinv):
        """Patches of keypoints on rows ``yu[yinv]`` and columns ``xu[xinv]``; ``iy`` (len(yu), r)
        and ``ix`` (len(xu), r) index each keypoint row's/column's samples in ``uy`` / ``ux``."""
        mode = self.padding or "reflect"
        # y: a sparse matrix picks and filters only the sampled rows: (len(uy), nx)
        idx, wts = _axis_taps(uy, frame.shape[0], self.sigma, self.radius, mode)
        rows = np.repeat(np.arange(len(uy)), idx.shape[1])
        ay = sparse.csr_matrix((wts.ravel(), (rows, idx.ravel())), shape=(len(uy), frame.shape[0]))
        g = ay @ frame
        # x: a weighted sum of column gathers (no transposed copies): (len(uy), len(ux)); with
        # many taps and many columns, filtering the rows whole (in C) and then interpolating is faster
        nx, k = frame.shape[1], 2 * self.radius + 2
        reach = (self.window + 1) // 2 + 2 if self.padding else 2  # how far samples may leave the frame
        margin = self.radius + reach
        if self.radius and 3 * k * len(ux) > (nx + 2 * margin) * (k - 1) + 6 * len(ux):
            g = np.pad(g, ((0, 0), (margin, margin)), mode=_NP_PAD[mode])
            g = ndi.gaussian_filter1d(g, self.sigma, axis=1, mode=mode, truncate=_TRUNCATE)
            idx, wts = _axis_taps(ux + margin, g.shape[1], 0.0, 0, mode)
        else:
            idx, wts = _axis_taps(ux, nx, self.sigma, self.radius, mode)
        h = None
        for k in range(idx.shape[1]):
            if wts[:, k].any():  # e.g. no second neighbour when every sample is on a pixel centre
                term = g.take(idx[:, k], axis=1)
                term *= wts[:, k]
                h = term if h is None else h.__iadd__(term)
        return _gather_product(h, iy, ix, yinv, xinv)

    def _prefiltered(self):
        """The current frame extended past its edges and Gaussian-filtered, with its margin."""
        if self._filtered is None:
            mode = self.padding or "reflect"
            reach = (self.window + 1) // 2 + 2 if self.padding else 2  # how far samples may leave the frame
            margin = reach + self.radius + 1
            padded = np.pad(self._frame, margin, mode=_NP_PAD[mode])
            if self.sigma > 0:
                padded = ndi.gaussian_filter(padded, self.sigma, mode=mode, truncate=_TRUNCATE)
            self._filtered = (padded, margin)
        return self._filtered

    def _gather(self, sy, sx):
        img, margin = self._prefiltered()
        nyp, nxp = img.shape
        yy, xx = sy + margin, sx + margin
        y0 = np.clip(np.floor(yy), 0, nyp - 2)
        x0 = np.clip(np.floor(xx), 0, nxp - 2)
        fy = (yy - y0).astype(np.float32)[:, :, None]
        fx = (xx - x0).astype(np.float32)[:, None, :]
        itype = np.int32 if img.size < 2**31 - nxp else np.int64
        base = (y0.astype(itype) * nxp)[:, :, None] + x0.astype(itype)[:, None, :]
        flat = img.ravel()
        # a zero fraction needs no neighbour: skipping it is faster and keeps pixel values exact
        use_x, use_y = bool(fx.any()), bool(fy.any())
        out = flat.take(base)
        if use_x:
            out += (flat.take(base + 1) - out) * fx
        if use_y:
            below = flat.take(base + nxp)
            if use_x:
                below += (flat.take(base + nxp + 1) - below) * fx
            out += (below - out) * fy
        return out


def _gather_product(h, iy, ix, yinv, xinv):
    """``out[k, i, j] = h[iy[yinv[k], i], ix[xinv[k], j]]`` for every keypoint ``k``.

    Two small gathers (columns, then rows) build the patches of every keypoint row x column
    pair as one ``(ny, r, nx, r)`` block; for a grid that is (nearly) all the keypoints, so this
    costs two passes over the output instead of an ``n x r x r`` index array (8 bytes per output
    value) and a scattered gather.
    """
    n, r = len(yinv), iy.shape[1]
    nyu, nxu = len(iy), len(ix)
    if nyu * nxu > 2 * n:  # few keypoints per row/column: gather each patch's samples directly
        index = iy[yinv][:, :, None] * h.shape[1] + ix[xinv][:, None, :]  # intp: take would convert int32
        return h.ravel().take(index)
    cols = h.take(ix.ravel(), axis=1).reshape(h.shape[0], nxu, r)      # (len(uy), nx_kp, r)
    out = np.empty((n, r, r), h.dtype)
    if nyu * nxu == n and (yinv == np.repeat(np.arange(nyu), nxu)).all() \
            and (xinv == np.tile(np.arange(nxu), nyu)).all():
        # the keypoints are the whole product, row by row (a grid, or a band of it): write in place
        np.take(cols, iy, axis=0, out=out.reshape(nyu, nxu, r, r).transpose(0, 2, 1, 3))
        return out
    block = cols.take(iy, axis=0)                                          # (ny_kp, r, nx_kp, r)
    return block[yinv, :, xinv, :]


def _axis_taps(coords, n, sigma, radius, mode):
    """Gaussian prefilter then linear interpolation along one axis, as taps.

    Returns ``idx`` and float32 ``wts``, both ``(len(coords), 2 * radius + 2)``: the value at
    ``coords[i]`` is ``sum(frame[idx[i]] * wts[i])``. Indices past the ends are folded back with
    the boundary `mode` (scipy.ndimage's meaning); "constant" gives them weight 0 (the frame is
    0 there).
    """
    t = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (t / sigma) ** 2) if sigma > 0 else np.ones(1)
    g = np.concatenate([g / g.sum(), [0.0]])  # g[-1] == 0 pads both ends
    i0 = np.floor(coords).astype(np.int64)
    frac = coords - i0
    # the Gaussian's taps at i0 + t and i0 + 1 + t merged: offset u = t gets (1-f) g[u] + f g[u-1]
    u = np.arange(-radius, radius + 2)
    idx = i0[:, None] + u
    wts = (1 - frac)[:, None] * g[u + radius] + frac[:, None] * g[u + radius - 1]
    if mode == "constant":
        wts[(idx < 0) | (idx >= n)] = 0
        idx = np.clip(idx, 0, n - 1)
    elif mode == "reflect":  # ... c b a | a b c ... (period 2n)
        idx = np.mod(idx, 2 * n)
        idx = np.where(idx >= n, 2 * n - 1 - idx, idx)
    elif mode == "nearest":
        idx = np.clip(idx, 0, n - 1)
    else:  # wrap
        idx = np.mod(idx, n)
    return idx, wts.astype(np.float32)
