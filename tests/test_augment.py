"""Augmentations keep shape and dtype, do what docs/official.md §2 says, and are seeded (batch tensors)."""
import math

import numpy as np
import pytest
import torch

import augment


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x():
    return torch.randn(4, 3, 40, 15, 2, generator=g(0))


def test_center_zeroes_reference_joint(x):
    out = augment.center(x)
    assert not out[:, :, :, 1].any() and torch.equal(out[:, :, :, 0], x[:, :, :, 0] - x[:, :, :, 1])


def test_reverse_twice_is_identity(x):
    once = augment.reverse(x, g(), p=1.0)
    assert torch.equal(once[:, :, 0], x[:, :, -1]) and torch.equal(augment.reverse(once, g(), p=1.0), x)
    assert torch.equal(augment.reverse(x, g(), p=0.0), x)


def test_shear_is_a_unit_diagonal_matrix_per_sample(x):
    basis = torch.zeros(500, 3, 1, 3, 1)
    basis[:, [0, 1, 2], 0, [0, 1, 2], 0] = 1  # joints 0, 1, 2 hold e_x, e_y, e_z: the output columns are S
    s = augment.shear(basis, g())[:, :, 0, :, 0]
    off = ~torch.eye(3, dtype=torch.bool)
    assert torch.allclose(s[:, ~off], torch.ones(1)) and s[:, off].abs().max() <= 1 and s[:, off].std() > 0.4
    out = augment.shear(x, g(3))
    expected = torch.einsum('ij,j->i', augment.shear(basis[:1].expand(4, -1, -1, -1, -1), g(3))[1, :, 0, :, 0],
                            x[1, :, 5, 7, 1])
    assert torch.allclose(out[1, :, 5, 7, 1], expected, atol=1e-5) and out.dtype == x.dtype


def test_rotate_preserves_length(x):
    out = augment.rotate(x, g(1))
    assert torch.allclose(out.norm(dim=1), x.norm(dim=1), rtol=1e-5)


def test_channel_mask_zeroes_one_channel(x):
    out = augment.channel_mask(x, g())
    for sample, original in zip(out, x):
        zero = [c for c in range(3) if not sample[c].any()]
        assert len(zero) == 1 and all(torch.equal(sample[c], original[c]) for c in range(3) if c != zero[0])


def test_joint_mask_zeroes_joints_in_frames(x):
    out = augment.joint_mask(x, g())
    for sample, original in zip(out, x):
        zeroed = ~(sample != 0).any(0).any(-1)  # (T, V)
        frames, joints = zeroed.any(1).sum(), zeroed.any(0).sum()
        assert 5 <= joints <= 15 and 20 <= frames <= 40 and zeroed.sum() == frames * joints
        assert torch.equal(sample[:, ~zeroed], original[:, ~zeroed])


def test_gaussian_noise_std():
    noise = augment.gaussian_noise(torch.zeros(2, 3, 300, 25, 2), g())
    assert noise.std().item() == pytest.approx(0.05, rel=0.02)


def test_blur_has_the_official_unnormalised_gain():
    ones = torch.ones(5, 3, 40, 15, 2)
    raw = augment.gaussian_blur(ones, g(), sigma=(2.0, 2.0), p=1.0)
    assert raw[0, 0, 20, 0, 0].item() == pytest.approx(np.exp(-np.arange(-7, 8) ** 2 / 8).sum(), rel=1e-5)


def test_crop_resize_keeps_the_ends_of_a_full_window():
    ramp = torch.arange(10, dtype=torch.float32).view(1, 1, 10, 1, 1).repeat(3, 3, 1, 2, 1)
    out = augment.crop_resize(ramp, g(), min_ratio=1.0)
    assert torch.allclose(out, ramp, atol=1e-5)  # a window of the whole sequence, resized to itself
    part = augment.crop_resize(ramp, g(), min_ratio=0.5)
    steps = part[:, 0, 1:, 0, 0] - part[:, 0, :-1, 0, 0]
    assert (steps >= 0.5 - 1e-5).all() and (steps <= 1 + 1e-5).all()  # linear, 50-100 % of the frames


def test_resample_interpolates_linearly_and_stops_at_the_last_real_frame():
    x = torch.arange(6, dtype=torch.float32).view(1, 1, 6, 1, 1).repeat(2, 1, 1, 1, 1)
    last = torch.tensor([[5], [2]])
    pos = torch.linspace(0, 1, 4)[None] * last
    out = augment.resample(x, pos, last)[:, 0, :, 0, 0]
    assert torch.allclose(out, torch.tensor([[0, 5 / 3, 10 / 3, 5], [0, 2 / 3, 4 / 3, 2]]))


def test_chain_views_and_seeding(x):
    views = augment.TwoViews(augment.build_transform('subtract_randomFlip_shear', 30))
    q, k = views(x, g(5))
    q2, k2 = views(x, g(5))
    assert q.shape == k.shape == (4, 3, 30, 15, 2) and q.dtype == torch.float32
    assert torch.equal(q, q2) and torch.equal(k, k2) and not torch.allclose(q, k)
    assert not q[:, :, :, 1].any()


def test_per_sample_is_the_batch_transform_on_one_sample(x):
    one = augment.per_sample(augment.build_transform('subtract_shear', 40))(x[2], g(7))
    assert one.shape == x.shape[1:] and torch.equal(one, augment.build_transform('subtract_shear', 40)(x[2:3], g(7))[0])


@pytest.mark.parametrize('name', ['gausNoise', 'gausFilter', 'zeroOutJoints', 'zeroOutAxis', 'rotate', 'None',
                                  'subtract1', 'cropResize:0.5'])
def test_every_token_keeps_shape(x, name):
    out = augment.build_transform(name, 40)(x, g())
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize('name, message', [('subtract_flip', 'unknown augmentation .flip. .*randomFlip'),
                                           ('shear:abc', 'must be a number'), ('zeroOutAxis:3', 'takes no numeric'),
                                           ('shear:inf', 'must be a finite'), ('subtract:1.5', 'must be a finite int')])
def test_bad_chains_say_why(name, message):
    with pytest.raises(ValueError, match=message):
        augment.build_transform(name, 40)


def test_rotation_angle_is_bounded():
    points = torch.zeros(2000, 3, 1, 1, 1)
    points[:, 0] = 1  # e_x
    out = augment.rotate(points, g(), max_degrees=30.0)[:, :, 0, 0, 0]
    angle = torch.rad2deg(torch.acos(out[:, 0].clamp(-1, 1)))
    assert angle.max() <= 30 + 1e-3 and math.isclose((angle == 0).float().mean().item(), 1 / 3, abs_tol=0.05)
