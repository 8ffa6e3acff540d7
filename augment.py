"""Skeleton augmentations (SPEC §2.2): small functions over one sample (C, T, V, M) float32.

Every augmentation has the signature `fn(x, rng, **params) -> x` with its parameters explicit
as keyword defaults (the official values) and `rng` a `numpy.random.Generator`. A chain is
named by underscore-joined official tokens, e.g. `subtract_randomFlip_shear`, and built with
`build_transform`; `token:value` sets an augmentation's first parameter (`shear:0.5`,
`cropResize:0.5`). `TwoViews` draws the query and key views independently.
"""
import functools
import inspect

import numpy as np


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


def gaussian_blur(x, rng, sigma=(0.1, 2.0), p=0.5, taps=15, normalize=False):
    """With probability p, convolve each joint trajectory along time ('gausFilter').

    Kernel w_k = exp(-k^2 / 2 sigma^2), k = -7..7, sigma ~ U(sigma); the official kernel is not
    normalised (gain up to ~5); `normalize=True` divides by its sum.
    """
    s = rng.uniform(*sigma)
    if rng.random() >= p:
        return x
    k = np.arange(taps) - taps // 2
    w = np.exp(-k ** 2 / (2 * s ** 2))
    if normalize:
        w = w / w.sum()
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


class Compose:
    """Apply crop_frames, then each function in order: (C, T, V, M) -> (C, frames, V, M) float32
    arrays here, or (N, C, T, V, M) tensors with augment_batch's functions."""

    def __init__(self, fns, frames):
        self.fns, self.frames = list(fns), frames

    def __call__(self, x, rng):
        x = crop_frames(x, self.frames)
        for fn in self.fns:
            x = fn(x, rng)
        return x.contiguous() if hasattr(x, 'contiguous') else np.ascontiguousarray(x, dtype=np.float32)

    def __repr__(self):
        return f"Compose(frames={self.frames}, {[getattr(f, '__name__', repr(f)) for f in self.fns]})"


def parse_chain(name, registry=AUGMENTATIONS):
    """'subtract_randomFlip_shear:0.5' -> [center, reverse, shear(amplitude=0.5)]; 'None' -> [].
    'subtract1' = 'subtract' (the official eval chain's spelling)."""
    if name in ('None', ''):
        return []
    fns = []
    for token in name.replace(',', '_').split('_'):
        token, _, value = token.partition(':')
        token = token.rstrip('0123456789')
        if token not in registry:
            raise ValueError(f"unknown augmentation {token!r} in {name!r}; known: {', '.join(registry)}")
        fn = registry[token]
        if value:
            params = list(inspect.signature(fn).parameters.values())[2:]
            if not params or not isinstance(params[0].default, (int, float)):
                raise ValueError(f"augmentation {token!r} in {name!r} takes no numeric parameter")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{token}:{value} in {name!r}: the parameter must be a number") from None
            if not np.isfinite(number) or (isinstance(params[0].default, int) and not number.is_integer()):
                raise ValueError(f"{token}:{value} in {name!r}: {params[0].name} must be a finite "
                                 f"{type(params[0].default).__name__}")
            fn = functools.partial(fn, **{params[0].name: type(params[0].default)(number)})
        fns.append(fn)
    return fns


def build_transform(name, frames):
    """Per-sample numpy chain: (C, T, V, M) array, numpy Generator -> (C, frames, V, M)."""
    return Compose(parse_chain(name), frames)


class TwoViews:
    """Query and key views of one sample, drawn one after the other (independent draws)."""

    def __init__(self, query_transform, key_transform=None):
        self.query_transform, self.key_transform = query_transform, key_transform or query_transform

    def __call__(self, x, rng):
        return self.query_transform(x, rng), self.key_transform(x, rng)
