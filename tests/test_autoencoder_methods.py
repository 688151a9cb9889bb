"""Suppression methods of paper 002 on hand examples: Eq. 1-2 (noise), Eq. 3 (loss masks), the
learned radius head and its penalty, folded-Gaussian crops."""

import math

import numpy as np
import pytest
import torch

from zoo.autoencoder import SUPPRESSIONS, create_suppression, distance_map, mask_weights, noise_std_map
from zoo.autoencoder.suppression import LearnedMask, RandomCrop
from zoo.losses.reconstruction import ReconstructionLoss
from zoo.registry import UnknownNameError

torch.set_num_threads(1)


def test_registry_lists_the_paper_methods_and_rejects_unknown_ones():
    assert set(SUPPRESSIONS.names()) == {"none", "noise", "mask_fixed", "mask_sampled", "mask_learned", "crop"}
    with pytest.raises(UnknownNameError, match="Valid suppression methods: .*mask_sampled"):
        create_suppression("mask_sample", 64)
    with pytest.raises(ValueError, match="does not take \\['sigma'\\]; it accepts: radius"):
        create_suppression("mask_fixed", 64, sigma=50)


def test_distance_map_of_a_5x5_patch():
    d = distance_map(5, 5)
    assert d[2, 2] == 0 and d[2, 3] == 1 and d[2, 4] == 2 and d[0, 0] == pytest.approx(math.sqrt(8))


def test_noise_std_follows_eq2_on_a_hand_example():
    # sigma * min(1, d / r_max), r_max = 2: centre 0, d=1 half, d=2 and beyond the full sigma
    std = noise_std_map(5, 5, sigma=100.0, r_max=2.0)
    assert std[2, 2] == 0 and std[2, 3] == pytest.approx(50) and std[2, 4] == pytest.approx(100)
    assert std[0, 0] == pytest.approx(100) and std[1, 1] == pytest.approx(100 * math.sqrt(2) / 2)


def test_noise_method_variance_grows_with_distance_as_eq2():
    torch.manual_seed(0)
    sup = create_suppression("noise", 64, sigma=100, clip=False)
    assert sup.r_max == 32  # half the patch, as r_max = 128 at 256 px
    x = torch.full((4000, 1, 64, 64), 0.5)
    inp, target = sup.prepare(x)
    assert inp is target  # Eq. 1 changes the image itself: noisy input, noisy target
    var = (inp - 0.5).var(dim=0)[0]
    expected = (100 / 255 * torch.clamp(distance_map(64, 64) / 32, max=1)) ** 2
    for y, x_ in [(31, 31), (31, 47), (31, 63), (0, 0), (10, 40)]:
        assert var[y, x_] == pytest.approx(float(expected[y, x_]), rel=0.1, abs=1e-4)
    assert float(var[31:33, 31:33].max()) < 1e-3 < float(var[0, 0])
    clipped = create_suppression("noise", 64, sigma=200).prepare(x[:8])[0]
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert torch.equal(sup.eval_view(x[:2]), x[:2])  # no noise on the cells we describe


def test_loss_mask_follows_eq3_on_a_hand_example():
    w = mask_weights(5, 5, 4.0)
    assert w[2, 2] == 1 and w[2, 3] == pytest.approx(0.5) and w[2, 4] == pytest.approx(1 - math.sqrt(0.5))
    assert w[0, 0] == pytest.approx(1 - (math.sqrt(8) / 4) ** 0.5)
    w1 = mask_weights(5, 5, 1.0)
    assert w1[2, 3] == 0 and w1[2, 4] == 0 and w1[0, 0] == 0  # max(0, .): nothing beyond r_max
    per_image = mask_weights(5, 5, torch.tensor([4.0, 1.0]))
    assert per_image.shape == (2, 1, 5, 5)
    assert torch.allclose(per_image[0, 0], w) and torch.allclose(per_image[1, 0], w1)


def test_masked_l1_is_the_mean_of_eq3_weighted_pixel_losses():
    target = torch.zeros(2, 3, 5, 5)
    recon = torch.full_like(target, 0.5)
    w = mask_weights(5, 5, torch.tensor([4.0, 4.0]))
    loss = ReconstructionLoss(beta=1.0)
    assert float(loss(recon, target, weights=w)) == pytest.approx(0.5 * float(mask_weights(5, 5, 4.0).mean()))
    normalized = ReconstructionLoss(normalize="weights")
    assert float(normalized(recon, target, weights=w)) == pytest.approx(0.5)
    # pixels beyond r_max get no gradient
    recon = recon.clone().requires_grad_(True)
    ReconstructionLoss()(recon, target, weights=mask_weights(5, 5, torch.tensor([1.0, 1.0]))).backward()
    assert recon.grad[:, :, 0, 0].abs().sum() == 0 and recon.grad[:, :, 2, 2].abs().sum() > 0


def test_kl_term_per_pixel_and_beta():
    target = torch.zeros(1, 3, 4, 4)
    mu, logvar = torch.zeros(1, 8), torch.zeros(1, 8)
    assert float(ReconstructionLoss()(target, target, mu, logvar)) == 0.0
    mu[0, 0] = 1.0  # KL = 0.5 * mu^2 = 0.5, per pixel value: / 48
    assert float(ReconstructionLoss(beta=2.0)(target, target, mu, logvar)) == pytest.approx(2 * 0.5 / 48)
    with pytest.raises(ValueError, match="beta"):
        ReconstructionLoss(beta=-1)


def test_fixed_and_sampled_radii_scale_with_the_image_size():
    fixed = create_suppression("mask_fixed", 64, radius=50)
    w = fixed.weights(torch.zeros(3, 3, 64, 64), torch.zeros(3, 8))
    assert torch.allclose(w[0, 0], mask_weights(64, 64, 50 * 64 / 256))
    torch.manual_seed(0)
    sampled = create_suppression("mask_sampled", 256, radius=50, radius_std=20)
    radii = []
    for _ in range(400):
        r = sampled.radii(2, torch.zeros(2, 4)) / sampled.scale
        assert r[0] == r[1]  # one draw per batch
        radii.append(float(r[0]))
    assert np.mean(radii) == pytest.approx(50, abs=3) and np.std(radii) == pytest.approx(20, abs=3)


def _train_head(penalty: float, steps: int = 150) -> tuple[float, float]:
    torch.manual_seed(0)
    sup = LearnedMask(img_size=32, latent_dim=8, radius_penalty=penalty, radius_min=50)
    rep = torch.randn(16, 8)
    target = torch.zeros(16, 3, 32, 32)
    recon = torch.full_like(target, 0.5)  # a constant error everywhere: smaller masks cost less
    start = float(sup.distribution(rep)[0].mean().detach())
    opt = torch.optim.Adam(sup.parameters(), lr=0.05)
    loss_fn = ReconstructionLoss()
    for _ in range(steps):
        w = sup.weights(target, rep)
        loss = loss_fn(recon, target, weights=w)
        pen = sup.penalty()
        if pen is not None:
            loss = loss + pen
        opt.zero_grad()
        loss.backward()
        opt.step()
    return start, float(sup.distribution(rep)[0].mean().detach())


def test_learned_radius_head_trains_towards_the_trivial_optimum_without_penalty():
    start, end = _train_head(penalty=0.0)
    assert start == pytest.approx(0.7 * 128, rel=0.05)
    assert end < 0.3 * start  # the paper's observation: very small radii without a penalty


def test_learned_radius_penalty_keeps_radii_above_the_minimum():
    _, free = _train_head(penalty=0.0)
    _, penalized = _train_head(penalty=1.0)
    assert penalized > 45 and penalized > 3 * free
    sup = LearnedMask(img_size=32, latent_dim=4, radius_penalty=1.0, radius_min=50)
    sup.weights(torch.zeros(2, 3, 32, 32), torch.zeros(2, 4))
    assert sup.penalty() is not None
    sup._last_r = torch.tensor([25.0, 100.0])
    assert float(sup.penalty()) == pytest.approx(0.25)  # hinge: (50-25)/50 and 0, mean


def test_learned_head_does_not_train_the_encoder():
    sup = LearnedMask(img_size=16, latent_dim=4)
    rep = torch.randn(2, 4, requires_grad=True)
    ReconstructionLoss()(torch.ones(2, 3, 16, 16), torch.zeros(2, 3, 16, 16), weights=sup.weights(
        torch.zeros(2, 3, 16, 16), rep)).backward()
    assert rep.grad is None and sup.head[0].weight.grad is not None


def test_crop_offsets_follow_a_folded_gaussian_in_a_uniform_direction():
    crop = RandomCrop(img_size=256, crop_size=88, offset_std=15)
    off = crop.sample_offsets(40000, generator=torch.Generator().manual_seed(0))
    r = off.norm(dim=1).numpy()
    assert r.mean() == pytest.approx(15 * math.sqrt(2 / math.pi), rel=0.02)   # E|N(0, s^2)|
    assert (r**2).mean() == pytest.approx(225, rel=0.03)
    assert np.median(r) == pytest.approx(15 * 0.6745, rel=0.03)               # not uniform, not Rayleigh
    angle = np.arctan2(off[:, 0].numpy(), off[:, 1].numpy())
    hist, _ = np.histogram(angle, bins=8, range=(-np.pi, np.pi))
    assert hist.min() > 0.9 * hist.mean() and hist.max() < 1.1 * hist.mean()


def test_crop_cuts_the_patch_at_the_offset_centre():
    crop = RandomCrop(img_size=64, crop_size=88, offset_std=15)  # 22 px at 64 px
    assert crop.input_size == 22
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    img = torch.stack([yy, xx, yy * 0])[None].repeat(3, 1, 1, 1)
    out = crop.crop(img, torch.tensor([[0.0, 0.0], [3.0, -5.0], [100.0, 100.0]]))
    assert out.shape == (3, 3, 22, 22)
    assert (out[0, 0, 0, 0], out[0, 1, 0, 0]) == (21, 21)        # centre crop: (64 - 22) / 2
    assert (out[1, 0, 0, 0], out[1, 1, 0, 0]) == (24, 16)
    assert (out[2, 0, -1, -1], out[2, 1, -1, -1]) == (63, 63)    # clamped inside the patch
    assert torch.equal(crop.eval_view(img)[0], out[0])
    inp, target = crop.prepare(img)
    assert inp.shape == (3, 3, 22, 22) and crop.last_offsets.shape == (3, 2)
    with pytest.raises(ValueError, match="crop_size 300"):
        RandomCrop(img_size=64, crop_size=300)
