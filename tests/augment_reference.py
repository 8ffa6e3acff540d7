"""Test oracle: the augmentations of docs/official.md §2 written per sample in numpy, one (C, T, V, M) float32
array at a time, as the official code applies them. The project's own (augment.py) work on whole
batches in torch; tests compare the two by their distributions."""
import numpy as np

import augment


def crop_frames(x, frames):
    """Keep frames [0, frames) of (..., T, V, M) (SelectFrames); no padding if T < frames."""
    return x[..., :frames, :, :]


def center(x, rng=None, joint=1):
    """Subtract joint `joint` from every joint, per frame and person ('subtract')."""
    return x - x[:, :, joint:joint + 1, :]


def reverse(x, rng, p=0.5):
    """Temporal reverse with probability p ('randomFlip'); padded zero frames move to the front."""
    return x[:, ::-1].copy() if rng.random() < p else x


def shear(x, rng, amplitude=1.0):
    """p' = S p with S = [[1, a1, b1], [a2, 1, b2], [a3, b3, 1]], a, b ~ U(-amplitude, amplitude)."""
    a1, a2, a3, b1, b2, b3 = rng.uniform(-amplitude, amplitude, size=6)
    s = np.array([[1, a1, b1], [a2, 1, b2], [a3, b3, 1]], dtype=np.float32)
    return np.einsum('ij,jtvm->itvm', s, x)


def rotate(x, rng, max_degrees=30.0):
    """Rotate about a random axis by theta ~ U(0, max_degrees) degrees ('rotate')."""
    axis = rng.integers(3)
    theta = np.deg2rad(rng.uniform(0, max_degrees))
    c, s = np.cos(theta), np.sin(theta)
    r = {0: [[1, 0, 0], [0, c, s], [0, -s, c]],
         1: [[c, 0, -s], [0, 1, 0], [s, 0, c]],
         2: [[c, s, 0], [-s, c, 0], [0, 0, 1]]}[axis]
    return np.einsum('ij,jtvm->itvm', np.asarray(r, dtype=np.float32), x)


def gaussian_noise(x, rng, std=0.05):
    """Add i.i.d. N(0, std^2) to every element, padded frames included ('gausNoise')."""
    return x + rng.normal(0, std, size=x.shape).astype(np.float32)


def gaussian_blur(x, rng, sigma=(0.1, 2.0), p=0.5, taps=15):
    """With probability p, convolve each joint trajectory along time ('gausFilter').

    Kernel w_k = exp(-k^2 / 2 sigma^2), k = -7..7, sigma ~ U(sigma); the official kernel is not
    normalised (gain up to ~5).
    """
    s = rng.uniform(*sigma)
    if rng.random() >= p:
        return x
    k = np.arange(taps) - taps // 2
    w = np.exp(-k ** 2 / (2 * s ** 2))
    padded = np.pad(x, ((0, 0), (taps // 2, taps // 2), (0, 0), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps, axis=1)  # (C, T, V, M, taps); w is symmetric
    return (windows @ w).astype(np.float32)


def joint_mask(x, rng, joints=(5, 15), frames_short=(20, 50), frames_long=(50, 100)):
    """Zero n_j ~ U{joints} joints in n_t frames (n_t ~ frames_short if T < 100 else frames_long).

    The official code fails when n_t > T (SBU, T=40); here n_t is capped at T.
    """
    _, t, v, _ = x.shape
    lo, hi = frames_short if t < 100 else frames_long
    n_joints = min(rng.integers(joints[0], joints[1] + 1), v)
    n_frames = min(rng.integers(lo, hi + 1), t)
    out = x.copy()
    frame_idx = rng.choice(t, n_frames, replace=False)
    joint_idx = rng.choice(v, n_joints, replace=False)
    out[:, frame_idx[:, None], joint_idx[None, :], :] = 0
    return out


def crop_resize(x, rng, min_ratio=0.5):
    """Random temporal window of U(min_ratio, 1) of the sequence, linearly resized back to its T frames
    ('cropResize'; not in the official code: AimCLR's valid_crop_resize on fixed-length input)."""
    t = x.shape[1]
    width = rng.uniform(min_ratio, 1) * (t - 1)
    pos = rng.uniform(0, t - 1 - width) + np.linspace(0, 1, t) * width
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (pos - i0).astype(np.float32)[None, :, None, None]
    return x[:, i0] * (1 - w) + x[:, i1] * w


def channel_mask(x, rng):
    """Zero one coordinate channel, chosen uniformly, over all frames/joints/persons ('zeroOutAxis')."""
    out = x.copy()
    out[rng.integers(3)] = 0
    return out


AUGMENTATIONS = {  # official token -> function
    'subtract': center, 'randomFlip': reverse, 'shear': shear, 'rotate': rotate,
    'gausNoise': gaussian_noise, 'gausFilter': gaussian_blur,
    'zeroOutJoints': joint_mask, 'zeroOutAxis': channel_mask, 'cropResize': crop_resize,
}


def build_transform(name, frames):
    """Per-sample numpy chain: (C, T, V, M) array, numpy Generator -> (C, frames, V, M)."""
    fns = augment.parse_chain(name, AUGMENTATIONS)

    def transform(x, rng):
        x = crop_frames(x, frames)
        for fn in fns:
            x = fn(x, rng)
        return np.ascontiguousarray(x, dtype=np.float32)
    return transform
