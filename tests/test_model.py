import math

import numpy as np
import pytest
import torch
from skimage.transform import rotate

from scalevae.model import SIVAE, disk_mask, kl_normal, rotate_patches


def test_rotate_patches_matches_skimage_counter_clockwise():
    img = np.zeros((15, 15), np.float32)
    img[7, 9:14] = 1  # a bar pointing right
    ours = rotate_patches(torch.tensor(img)[None], torch.tensor([math.pi / 2]))[0].numpy()
    ref = rotate(img, 90, order=1)
    assert np.abs(ours - ref).max() < 1e-4
    assert ours[2, 7] > 0.9  # the bar now points up (counter-clockwise as displayed)


@pytest.mark.parametrize("invariance", ["none", "rotation", "rotation+translation"])
def test_decode_is_one_batched_call_for_any_latent_point(invariance):
    m = SIVAE(12, latent_dim=3, invariance=invariance)
    z = torch.randn(7, 3)
    assert m.decode(z).shape == (7, 12, 12)
    if m.rotation:
        assert m.decode(z, angle=torch.rand(7)).shape == (7, 12, 12)
    if m.translation:
        assert m.decode(z, angle=torch.rand(7), shift=0.1 * torch.randn(7, 2)).shape == (7, 12, 12)


def test_latent_angle_rotates_the_decoded_patch():
    torch.manual_seed(0)
    m = SIVAE(16, 2, "rotation")
    z = torch.randn(4, 2)
    phi = torch.full((4,), 0.7)
    a = m.decode(z, angle=phi)
    b = rotate_patches(m.decode(z), phi)
    inner = disk_mask(16) & (torch.tensor(np.hypot(*np.mgrid[-7.5:8, -7.5:8])) < 6.5)
    assert torch.allclose(a[:, inner], b[:, inner], atol=0.05 * float(a.detach().abs().max()))


def test_angle_is_periodic():
    torch.manual_seed(0)
    m = SIVAE(8, 2, "rotation")
    z = torch.randn(3, 2)
    assert torch.allclose(m.decode(z, angle=torch.full((3,), 0.3)),
                          m.decode(z, angle=torch.full((3,), 0.3 + 2 * math.pi)), atol=1e-5)
    ang = m.encode(torch.randn(50, 8, 8))["angle"]
    assert ang.min() >= -math.pi and ang.max() <= math.pi


def test_plain_vae_models_every_pixel_and_rotation_models_the_disk():
    assert bool(SIVAE(8, 2, "none").mask.all())
    mask = SIVAE(8, 2, "rotation").mask
    assert not bool(mask[0, 0]) and bool(mask[4, 4]) and int(mask.sum()) < 64


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    assert float(kl_normal(torch.zeros(3), torch.zeros(3)).abs().max()) < 1e-7
    assert float(kl_normal(torch.ones(3), torch.zeros(3)).min()) > 0
    assert float(kl_normal(torch.zeros(1), torch.zeros(1) + 2 * math.log(0.1), 0.1)) < 1e-6


def test_likelihood_noise_is_the_batch_optimum_and_is_recorded():
    """The Gaussian noise variance is the batch's mean squared residual, the value that maximises
    the likelihood: any other noise scale gives a larger negative log-likelihood. It is not a
    learned parameter (one that crawls at the learning rate), and training records it."""
    torch.manual_seed(0)
    m = SIVAE(patch_size=8, latent_dim=2, invariance="rotation").train()
    assert "log_noise" not in dict(m.named_parameters())
    x = torch.randn(16, 8, 8) * m.mask
    out = m(x)
    _, parts = m.loss(x, out, beta=1.0)
    n_pix = float(m.mask.sum())
    mse = float(parts["mse"])
    assert math.isclose(float(parts["nll"]), 0.5 * n_pix * (1 + math.log(2 * math.pi * mse)),
                        rel_tol=1e-5)
    assert math.isclose(float(torch.exp(2 * m.log_noise)), mse, rel_tol=1e-5)
    sq = ((x - out["recon"]) ** 2 * m.mask).flatten(1).sum(1).detach()
    for factor in (0.8, 1.25):
        var = mse * factor
        other = float((0.5 * sq / var + 0.5 * n_pix * math.log(2 * math.pi * var)).mean())
        assert other > float(parts["nll"])


def test_bad_model_arguments():
    with pytest.raises(ValueError):
        SIVAE(8, 0)
    with pytest.raises(ValueError):
        SIVAE(8, 2, "scale")
