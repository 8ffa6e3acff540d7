"""Augmentations keep shape and dtype, do what SPEC §2.2 says, and are seeded."""
import numpy as np
import pytest

import augment


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(3, 40, 15, 2)).astype(np.float32)


def test_center_zeroes_reference_joint(x):
    out = augment.center(x)
    assert not out[:, :, 1].any() and out[:, :, 0] == pytest.approx(x[:, :, 0] - x[:, :, 1])


def test_reverse_twice_is_identity(x):
    rng = np.random.default_rng(0)
    once = augment.reverse(x, rng, p=1.0)
    assert np.array_equal(once[:, 0], x[:, -1])
    assert np.array_equal(augment.reverse(once, rng, p=1.0), x)
    assert augment.reverse(x, rng, p=0.0) is x


def test_shear_is_unit_diagonal_matrix(x):
    a1, a2, a3, b1, b2, b3 = np.random.default_rng(3).uniform(-1, 1, size=6)
    s = np.array([[1, a1, b1], [a2, 1, b2], [a3, b3, 1]])
    out = augment.shear(x, np.random.default_rng(3))
    assert np.abs(s - np.eye(3)).max() <= 1
    np.testing.assert_allclose(out[:, 5, 7, 1], s @ x[:, 5, 7, 1], rtol=1e-5)
    assert out.dtype == np.float32


def test_rotate_preserves_length(x):
    out = augment.rotate(x, np.random.default_rng(1))
    np.testing.assert_allclose(np.linalg.norm(out, axis=0), np.linalg.norm(x, axis=0), rtol=1e-5)


def test_channel_mask_zeroes_one_channel(x):
    out = augment.channel_mask(x, np.random.default_rng(0))
    zero = [c for c in range(3) if not out[c].any()]
    assert len(zero) == 1 and all(np.array_equal(out[c], x[c]) for c in range(3) if c != zero[0])


def test_joint_mask_zeroes_joints_in_frames(x):
    out = augment.joint_mask(x, np.random.default_rng(0))
    zeroed = ~(out != 0).any(axis=(0, 3))  # (T, V)
    frames, joints = zeroed.any(1).sum(), zeroed.any(0).sum()
    assert 5 <= joints <= 15 and 20 <= frames <= 40 and zeroed.sum() == frames * joints
    assert np.array_equal(out[:, ~zeroed], x[:, ~zeroed])


def test_gaussian_noise_std(x):
    noise = augment.gaussian_noise(np.zeros((3, 300, 25, 2), np.float32), np.random.default_rng(0))
    assert noise.std() == pytest.approx(0.05, rel=0.02)


def test_normalised_blur_keeps_constants_and_official_gain():
    ones = np.ones((3, 40, 15, 2), np.float32)
    rng = np.random.default_rng(0)
    blurred = [augment.gaussian_blur(ones, rng, p=1.0, normalize=True) for _ in range(5)]
    assert all(b[:, 7:-7] == pytest.approx(1.0, rel=1e-5) for b in blurred)
    raw = augment.gaussian_blur(ones, np.random.default_rng(0), sigma=(2.0, 2.0), p=1.0)
    assert raw[0, 20, 0, 0] == pytest.approx(np.exp(-np.arange(-7, 8) ** 2 / 8).sum(), rel=1e-5)


def test_chain_views_and_seeding(x):
    views = augment.TwoViews(augment.build_transform('subtract_randomFlip_shear', 30))
    q, k = views(x, np.random.default_rng(5))
    q2, k2 = views(x, np.random.default_rng(5))
    assert q.shape == k.shape == (3, 30, 15, 2) and q.dtype == np.float32
    assert np.array_equal(q, q2) and np.array_equal(k, k2) and not np.allclose(q, k)
    assert not q[:, :, 1].any()


@pytest.mark.parametrize('name', ['gausNoise', 'gausFilter', 'zeroOutJoints', 'zeroOutAxis', 'rotate', 'None', 'subtract1'])
def test_every_token_keeps_shape(x, name):
    out = augment.build_transform(name, 40)(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32


def test_unknown_token_lists_known_names():
    with pytest.raises(ValueError, match='unknown augmentation .flip. .*randomFlip'):
        augment.build_transform('subtract_flip', 40)
