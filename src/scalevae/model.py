"""The SI-VAE model: an MLP encoder pooled over rotated copies and an MLP decoder on a rotated grid.

Latent vector = ``[theta] + [dy, dx] + [z_1..z_k]``, the angle and shift only in the modes that
have them (:data:`INVARIANCES`).

- Encoder (:class:`Encoder`): dense layers on the flattened patch. In the rotation modes the
  patch is masked to its inscribed disk and the encoder sees ``n_orientations`` (12) copies of
  it, de-rotated by evenly spaced angles, in one batch; the ``z`` posterior comes from the
  features averaged over the copies, so ``z`` is exactly invariant to rotations by multiples of
  30 degrees; the angle (and shift) comes from per-copy 2-vectors rotated back and combined, so
  it is exactly equivariant (:func:`_symmetric_angle` handles m-fold symmetric patches).
- Decoder (:class:`Decoder`): an MLP renders a *canonical* patch from ``z`` on a
  ``canvas x canvas`` grid covering ``[-L, L]^2``, which is then sampled (``grid_sample``) on the
  output pixel grid rotated by ``theta`` and shifted by ``(dy, dx)``. Orientation and offset
  therefore live only in ``theta`` and the shift, never in ``z``.
- Likelihood (:meth:`SIVAE.loss`): Gaussian over the modelled pixels with a calibrated noise
  variance (the batch's mean squared residual); KL to a standard normal prior for ``z``, to the
  uniform prior on the circle for the angle (or a normal one, ``theta_prior``), to a normal
  prior of scale ``shift_prior`` for the shift.

Conventions
-----------
- Patch coordinates are normalised so that the pixel centres of an ``r x r`` patch run from
  ``-1 + 1/r`` to ``1 - 1/r``; the patch half-width is 1.
- ``angle`` is in radians; a positive angle rotates the content counter-clockwise *as displayed*
  (row 0 at the top), the same sense as :func:`skimage.transform.rotate`. It is periodic by
  construction (the encoder predicts a direction, ``atan2`` of two outputs).
- ``shift`` is ``(dy, dx)`` in units of the patch half-width: ``0.1`` moves the content by 5 % of
  the patch width.
- In the rotation-invariant modes only the inscribed disk of a patch is modelled (inputs are
  masked to it and the likelihood counts only its pixels): a square's corners are not rotation
  invariant, and a disk is.

Examples
--------
>>> import torch
>>> m = SIVAE(patch_size=8, latent_dim=2, invariance="rotation")
>>> m(torch.zeros(4, 8, 8))["recon"].shape
torch.Size([4, 8, 8])
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import INVARIANCES  # noqa: E402  (one list of the modes)


def pixel_grid(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised pixel-centre coordinates of a ``size x size`` patch, shape (size, size, 2) as (x, y)."""
    c = (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def disk_mask(size: int, device=None) -> torch.Tensor:
    """Boolean mask of the pixels whose centres lie in the inscribed disk (radius = half-width)."""
    g = pixel_grid(size, device=device)
    return (g**2).sum(-1) <= 1.0 + 1e-6


def rotate_patches(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate patches (n, r, r) counter-clockwise as displayed by ``angle`` (n,) radians (bilinear)."""
    n, r, _ = x.shape
    grid = _transform_grid(pixel_grid(r, x.device, x.dtype), angle, None, 1.0)
    return F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0]


def _transform_grid(grid, angle, shift, support):
    """Canonical-image sampling coordinates for output pixels ``p``: ``R(-angle) (p - shift) / L``.

    With y pointing down the rows, ``R(-a)(x, y) = (x cos a - y sin a, x sin a + y cos a)``; the
    rendered content then appears rotated counter-clockwise on screen by ``a`` and moved by shift.
    """
    n = angle.shape[0] if angle is not None else shift.shape[0]
    p = grid.unsqueeze(0).expand(n, -1, -1, -1)
    if shift is not None:  # shift is (dy, dx); grid is (x, y)
        p = p - torch.stack([shift[:, 1], shift[:, 0]], dim=-1)[:, None, None, :]
    if angle is not None:
        c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        px, py = p[..., 0], p[..., 1]
        p = torch.stack([px * c - py * s, px * s + py * c], dim=-1)
    return p / support


class Encoder(nn.Module):
    """MLP encoder: per-copy features, pooled over rotated copies, then the posterior heads.

    Dense layers, not convolutions: at the patch sizes SI-VAE uses (the smallest window, often
    8-16 px) an MLP costs ~0.02 MFLOP per patch and copy against ~2 MFLOP for a small conv
    stack, and dense matmuls run near peak on a CPU, where tiny convolutions do not.
    ``features`` sees each copy; ``head`` sees the features averaged over the copies (invariant
    outputs: z and the log-variances); ``vectors`` gives per-copy 2-vectors (angle direction,
    shift) that the model combines equivariantly.
    """

    def __init__(self, patch_size: int, n_invariant: int, n_vectors: int, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(patch_size**2, hidden), nn.SiLU(),
                                      nn.Linear(hidden, hidden // 2), nn.SiLU())
        self.head = nn.Sequential(nn.Linear(hidden // 2, hidden // 2), nn.SiLU(),
                                  nn.Linear(hidden // 2, n_invariant))
        self.vectors = nn.Linear(hidden // 2, 2 * n_vectors) if n_vectors else None

    def forward(self, x, copies: int = 1):
        f = self.features(x).view(-1, copies, self.head[0].in_features)
        inv = self.head(f.mean(1))
        vec = self.vectors(f) if self.vectors is not None else None  # (n, copies, 2 * n_vectors)
        return inv, vec


class Decoder(nn.Module):
    """MLP from ``z`` to the canonical image on a ``canvas x canvas`` grid covering ``[-L, L]^2``."""

    def __init__(self, canvas: int, latent_dim: int, hidden: int = 256):
        super().__init__()
        self.canvas = canvas
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden // 2), nn.SiLU(),
                                 nn.Linear(hidden // 2, hidden), nn.SiLU(),
                                 nn.Linear(hidden, canvas * canvas))

    def forward(self, z):
        return self.net(z).view(-1, 1, self.canvas, self.canvas)


class SIVAE(nn.Module):
    """Variational autoencoder with optional rotation and translation invariance.

    Parameters
    ----------
    patch_size : int
        Side ``r`` of the (resampled) square patches, in pixels.
    latent_dim : int
        Number ``k`` of invariant latent variables ``z`` (2 in the paper).
    invariance : {"none", "rotation", "rotation+translation"}
        Which transformations are factored out of ``z`` into ``angle`` / ``shift``.
    shift_prior : float
        Scale of the normal prior on the shift, in patch half-widths (translation only; the paper
        notes translation-invariant VAEs work for shifts up to ~0.3 of the patch).
    theta_prior : float or None
        Scale of a normal prior on the angle (radians); None (default) means a uniform prior on
        the circle, so every orientation costs the same.
    n_orientations : int
        Size ``K`` of the rotation group the encoder is made exactly invariant to (12: steps of
        30 degrees, which holds the 60 and 90 degree rotations of hexagonal and square lattices
        and of a/c domain patterns). 1 leaves invariance to training alone.

    Examples
    --------
    >>> import torch
    >>> m = SIVAE(patch_size=8, latent_dim=2, invariance="rotation")
    >>> out = m.encode(torch.zeros(5, 8, 8))
    >>> sorted(out)
    ['angle', 'angle_logvar', 'shift', 'shift_logvar', 'z_logvar', 'z_mean']
    >>> m.decode(torch.zeros(3, 2), angle=torch.zeros(3)).shape
    torch.Size([3, 8, 8])
    >>> import numpy as np
    >>> m.decode(np.zeros((3, 2)), angle=np.zeros(3)).shape  # NumPy or xarray work too
    torch.Size([3, 8, 8])
    """

    def __init__(self, patch_size: int, latent_dim: int = 2, invariance: str = "rotation",
                 shift_prior: float = 0.1, theta_prior: float | None = None,
                 hidden: int = 256, n_orientations: int = 12):
        super().__init__()
        if invariance not in INVARIANCES:
            raise ValueError(f"invariance must be one of {INVARIANCES}, not {invariance!r}")
        if latent_dim < 1:
            raise ValueError("latent_dim must be at least 1")
        self.patch_size = int(patch_size)
        self.latent_dim = int(latent_dim)
        self.invariance = invariance
        self.rotation = invariance in ("rotation", "rotation+translation")
        self.translation = invariance == "rotation+translation"
        self.shift_prior = float(shift_prior)
        self.theta_prior = None if theta_prior is None else float(theta_prior)
        # Canonical support: the disk of radius 1 stays inside [-1, 1] under rotation; shifts need
        # a margin so that moved content is still rendered.
        self.support = 1.5 if self.translation else 1.0
        canvas = math.ceil(self.patch_size * self.support)
        self.hidden = int(hidden)
        self.n_orientations = max(1, int(n_orientations)) if self.rotation else 1
        n_invariant = 2 * latent_dim + (1 if self.rotation else 0) + (2 if self.translation else 0)
        n_vectors = (1 if self.rotation else 0) + (1 if self.translation else 0)
        self.encoder = Encoder(self.patch_size, n_invariant, n_vectors, self.hidden // 2)
        self.decoder = Decoder(canvas, latent_dim, self.hidden)
        # Log of the Gaussian likelihood's noise scale, as last fitted in training (a record; see
        # loss). Matching the scale to the data is what keeps the KL term from collapsing the
        # latents (a unit-variance likelihood does).
        self.register_buffer("log_noise", torch.tensor(math.log(0.5)))
        self.register_buffer("grid", pixel_grid(self.patch_size), persistent=False)
        self.register_buffer("orient_angles", torch.arange(self.n_orientations) *
                             (2 * math.pi / self.n_orientations), persistent=False)
        self.register_buffer("mask", disk_mask(self.patch_size) if self.rotation
                             else torch.ones(self.patch_size, self.patch_size, dtype=torch.bool),
                             persistent=False)

    def config(self) -> dict:
        """Constructor arguments, to rebuild the model from a checkpoint."""
        return dict(patch_size=self.patch_size, latent_dim=self.latent_dim,
                    invariance=self.invariance, shift_prior=self.shift_prior,
                    theta_prior=self.theta_prior, hidden=self.hidden,
                    n_orientations=self.n_orientations)

    def encode(self, x) -> dict:
        """Posterior parameters for patches ``x`` (n, r, r); masked to the disk when rotating.

        ``x`` may be a tensor, a NumPy array or an xarray DataArray (converted to a float
        tensor on the model's device).

        In the rotation modes the encoder sees the patch de-rotated by each of ``n_orientations``
        evenly spaced angles ``phi_j`` (one batched pass). The ``z`` parameters are averaged over
        these copies, so ``z`` is exactly invariant to rotations by multiples of ``2 pi / K``
        (graphene's two sublattices, 60 degrees apart, land on the same ``z`` by construction);
        the angle is the direction of ``sum_j R(phi_j) u_j`` (and the shift likewise), which
        is exactly equivariant: rotating the input by ``phi_j`` adds ``phi_j`` to the angle.
        Rotations between the group's angles are learned (training augmentation).
        """
        x = self._as_tensor(x, "x") * self.mask
        k, n, K = self.latent_dim, x.shape[0], self.n_orientations
        out = {"angle": None, "angle_logvar": None, "shift": None, "shift_logvar": None}
        if self.rotation:
            phi = self.orient_angles
            # All K de-rotated copies in one grid_sample, each patch read once: the K rotated
            # pixel grids are stacked along the output rows (n, K * r, r) and cached; the
            # numbers are those of rotating K repeated copies (the same grid, the same sampler).
            r = x.shape[-1]
            x = F.grid_sample(x[:, None], self._orientation_grid(x).expand(n, -1, -1, -1),
                              mode="bilinear", padding_mode="zeros",
                              align_corners=False).view(n * K, r, r)
            c, s = torch.cos(phi), torch.sin(phi)
        inv, vec = self.encoder(x, K)
        out["z_mean"], out["z_logvar"] = inv[:, :k], inv[:, k:2 * k].clamp(-12, 6)
        if self.rotation:
            out["angle"] = _symmetric_angle(vec[..., 0], vec[..., 1], phi, self.n_orientations)
            out["angle_logvar"] = inv[:, 2 * k].clamp(-12, 4)
        if self.translation:
            # A shift (dy, dx) seen in a copy de-rotated by phi maps back by rotating the content
            # by phi counter-clockwise as displayed: dx' = dx c + dy s, dy' = -dx s + dy c.
            dy, dx = vec[..., 2], vec[..., 3]
            out["shift"] = torch.stack([(-dx * s + dy * c).mean(1), (dx * c + dy * s).mean(1)], 1)
            out["shift_logvar"] = inv[:, 2 * k + 1:2 * k + 3].clamp(-12, 4)
        return out

    def _orientation_grid(self, x) -> torch.Tensor:
        """The sampling grid of the encoder's K de-rotations, (1, K * r, r, 2), built once per
        device and dtype (it depends on nothing else)."""
        key = (x.device, x.dtype)
        cache = self.__dict__.setdefault("_grid_cache", {})
        if key not in cache:
            r, K = self.patch_size, self.n_orientations
            angles = -self.orient_angles.to(x.device)
            grid = _transform_grid(pixel_grid(r, x.device, x.dtype), angles, None, 1.0)
            cache[key] = grid.reshape(1, K * r, r, 2)
        return cache[key]

    def decode(self, z, angle=None, shift=None) -> torch.Tensor:
        """Patches (n, r, r) for latent points ``z`` (n, k), rotated by ``angle`` and moved by ``shift``.

        One batched call for any latent points; ``angle`` / ``shift`` default to zero. In the
        rotation modes the pixels outside the inscribed disk are 0 (not modelled). Each input
        may be a tensor, a NumPy array or an xarray DataArray (e.g. ``ds.z_mean.sel(...)``).
        """
        z = self._as_tensor(z, "z")
        angle = None if angle is None else self._as_tensor(angle, "angle")
        shift = None if shift is None else self._as_tensor(shift, "shift")
        canon = self.decoder(z)
        n = z.shape[0]
        if self.rotation and angle is None:
            angle = z.new_zeros(n)
        if self.translation and shift is None:
            shift = z.new_zeros(n, 2)
        if not self.rotation:
            angle = None
        if not self.translation:
            shift = None
        if angle is None and shift is None:
            grid = (self.grid / self.support).unsqueeze(0).expand(n, -1, -1, -1)
        else:
            grid = _transform_grid(self.grid, angle, shift, self.support)
        # A non-finite angle or shift (a diverging run) must not reach grid_sample: its CPU
        # backward indexes memory with the NaN coordinate and crashes the process.
        grid = torch.nan_to_num(grid, nan=0.0, posinf=2.0, neginf=-2.0).clamp(-4.0, 4.0)
        out = F.grid_sample(canon, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)[:, 0]
        return out * self.mask

    def _as_tensor(self, value, name) -> torch.Tensor:
        """``value`` as a float tensor on the model's device; a tensor passes through unchanged
        (so gradients still flow in training)."""
        if isinstance(value, torch.Tensor):
            return value
        param = self.log_noise
        try:
            # np.asarray reads a DataArray's values (xarray's own __array__)
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a tensor, NumPy array or DataArray of numbers, "
                            f"not {type(value).__name__}") from exc
        return torch.as_tensor(array, device=param.device).to(param.dtype)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Encode, sample with the reparameterisation trick, decode."""
        post = self.encode(x)
        z = _sample(post["z_mean"], post["z_logvar"], generator)
        angle = _sample(post["angle"], post["angle_logvar"], generator) if self.rotation else None
        shift = _sample(post["shift"], post["shift_logvar"], generator) if self.translation else None
        post["recon"] = self.decode(z, angle, shift)
        return post

    def loss(self, x: torch.Tensor, out: dict, beta: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Negative ELBO per sample (mean over the batch) and its parts.

        Gaussian likelihood summed over the modelled pixels, its noise variance the batch's
        optimal one, the mean squared residual (a calibrated decoder, as in Rybkin et al. 2021,
        "Simple and Effective VAE Training with Calibrated Decoders"); KL of each latent to its
        prior, summed. The variance follows the residual at every step (a learned scalar would
        move by at most the learning rate per step). At the optimum the gradient through the
        variance vanishes, so it enters as a constant.
        """
        m = self.mask
        n_pix = m.sum()
        sq = ((x - out["recon"]) ** 2 * m).flatten(1).sum(1)
        # floor: 1e-3 of the normalised data's spread, so a noiseless image stays finite
        var = (sq.mean() / n_pix).detach().clamp_min(1e-6)
        if self.training:
            self.log_noise.copy_(0.5 * torch.log(var))
        nll = 0.5 * sq / var + n_pix * 0.5 * (torch.log(var) + math.log(2 * math.pi))
        kl_z = kl_normal(out["z_mean"], out["z_logvar"])  # (n, k)
        kl = kl_z.sum(1)
        if self.rotation:
            kl = kl + self._kl_angle(out["angle"], out["angle_logvar"])
        if self.translation:
            kl = kl + kl_normal(out["shift"], out["shift_logvar"], self.shift_prior).sum(1)
        total = (nll + beta * kl).mean()
        return total, {"nll": nll.mean().detach(), "kl_z": kl_z.mean(0).detach(),
                       "mse": (sq / n_pix).mean().detach()}

    def _kl_angle(self, mu, logvar):
        if self.theta_prior is not None:
            wrapped = torch.remainder(mu + math.pi, 2 * math.pi) - math.pi
            return kl_normal(wrapped[:, None], logvar[:, None], self.theta_prior)[:, 0]
        # Against the uniform prior on the circle: log(2 pi) minus the entropy of the (narrow)
        # wrapped normal posterior; clamped at 0 where the posterior is as wide as the circle.
        entropy = 0.5 * (math.log(2 * math.pi * math.e) + logvar)
        return (math.log(2 * math.pi) - entropy).clamp(min=0)


def _symmetric_angle(a, b, phi, n_orientations, agree=0.5):
    """Angle from per-copy directions ``(a, b)`` (n, K) seen in copies de-rotated by ``phi`` (K,).

    Copy ``j`` votes for the angle ``theta_j = atan2(b, a) + phi_j``. A patch with m-fold
    symmetry (graphene's atoms: 3; stripes: 2) looks the same in copies 360/m degrees apart,
    so its votes spread evenly over m directions and their plain vector sum cancels. The votes
    are therefore combined at harmonic orders m in {1, 2, 3, 4, 6} (those dividing K), and the
    lowest order whose coherence ``|sum rho e^{i m theta}| / sum rho`` is within ``agree`` of
    the best wins: the angle is ``arg(...) / m``, defined modulo 360/m degrees, which is the
    patch's real ambiguity. Rotating the input by a multiple of 360/K adds exactly that angle.

    ``agree = 0.5``: a higher order wins only when it is twice as coherent as every lower one.
    A truly m-fold patch is at least as coherent at m as at its multiples (jitter lowers the
    higher orders more), so a higher order that is only somewhat more coherent is the encoder
    seeing a finer shell, e.g. graphene's six-fold second shell, which makes the two
    sublattices' angles equal (modulo 60 degrees) where they differ by 60 degrees modulo 120.
    """
    rho = torch.sqrt(a * a + b * b + 1e-12)
    theta = torch.atan2(b, a) + phi
    orders = [m for m in (1, 2, 3, 4, 6) if n_orientations % m == 0] or [1]
    coherence, angles = [], []
    for m in orders:
        cm = (rho * torch.cos(m * theta)).sum(1)
        sm = (rho * torch.sin(m * theta)).sum(1)
        coherence.append(torch.sqrt(cm * cm + sm * sm + 1e-12) / rho.sum(1))
        angles.append(torch.atan2(sm, cm) / m)
    coherence, angles = torch.stack(coherence, 1), torch.stack(angles, 1)
    ok = coherence >= agree * coherence.max(1, keepdim=True).values
    pick = ok.float().argmax(1, keepdim=True)  # the first (lowest) order that agrees
    return angles.gather(1, pick)[:, 0]


def kl_normal(mu, logvar, prior_scale: float = 1.0):
    """KL( N(mu, exp(logvar)) || N(0, prior_scale^2) ), elementwise."""
    var_p = prior_scale**2
    return 0.5 * ((mu**2 + logvar.exp()) / var_p - 1 - logvar + math.log(var_p))


def _sample(mu, logvar, generator):
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)
