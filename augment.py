"""Skeleton augmentations (docs/official.md §2) on batches (N, C, T, V, M) as tensor ops on any device.

Every augmentation is `fn(x, g, **params) -> x` with its parameters as keyword defaults (the
official values) and `g` a `torch.Generator` on x's device; each sample gets its own draw. A chain
is named by underscore-joined official tokens, e.g. `subtract_randomFlip_shear`, and built with
`build_transform`; `token:value` sets an augmentation's first parameter (`shear:0.5`,
`cropResize:0.5`). `TwoViews` draws the query and key views one after the other. A single
sample (C, T, V, M) goes through `per_sample`. `resample` is the one linear resampler in time,
shared by `crop_resize` and the body-normalised preprocessing (preprocess.py).
The per-sample numpy versions of the official code are kept as test oracles (tests/augment_reference.py).
"""
import functools
import inspect
import math

import torch
import torch.nn.functional as F


def _uniform(x, g, size, low, high):
    return torch.rand(size, generator=g, device=x.device, dtype=x.dtype) * (high - low) + low


def _per_sample(mask):
    return mask.view(-1, 1, 1, 1, 1)


def center(x, g=None, joint=1):
    """Subtract joint `joint` from every joint, per frame and person ('subtract')."""
    return x - x[:, :, :, joint:joint + 1]


def reverse(x, g, p=0.5):
    """Temporal reverse with probability p ('randomFlip'); padded zero frames move to the front."""
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < p
    return torch.where(_per_sample(flip), x.flip(2), x)


def shear(x, g, amplitude=1.0):
    """p' = S p with S = [[1, a1, b1], [a2, 1, b2], [a3, b3, 1]], (a1, a2, a3, b1, b2, b3) ~ U(-amplitude, amplitude)."""
    s = torch.eye(3, device=x.device, dtype=x.dtype).repeat(x.shape[0], 1, 1)
    s[:, [0, 1, 2, 0, 1, 2], [1, 0, 0, 2, 2, 1]] = _uniform(x, g, (x.shape[0], 6), -amplitude, amplitude)
    return torch.einsum('nij,njtvm->nitvm', s, x)


def rotate(x, g, max_degrees=30.0):
    """Rotate about a random axis by theta ~ U(0, max_degrees) degrees ('rotate')."""
    n = x.shape[0]
    axis = torch.randint(3, (n,), generator=g, device=x.device)
    theta = _uniform(x, g, (n,), 0, max_degrees) * math.pi / 180
    c, s, one, zero = theta.cos(), theta.sin(), torch.ones_like(theta), torch.zeros_like(theta)
    r = torch.stack([torch.stack(m, -1).view(n, 3, 3) for m in (
        [one, zero, zero, zero, c, s, zero, -s, c],
        [c, zero, -s, zero, one, zero, s, zero, c],
        [c, s, zero, -s, c, zero, zero, zero, one])], 1)[torch.arange(n, device=x.device), axis]
    return torch.einsum('nij,njtvm->nitvm', r, x)


def gaussian_noise(x, g, std=0.05):
    """Add i.i.d. N(0, std^2) to every element, padded frames included ('gausNoise')."""
    return x + torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * std


def gaussian_blur(x, g, sigma=(0.1, 2.0), p=0.5, taps=15):
    """With probability p, convolve each joint trajectory along time ('gausFilter'): kernel
    w_k = exp(-k^2 / 2 sigma^2), k = -7..7, sigma ~ U(sigma); the official kernel is not normalised
    (gain up to ~5)."""
    n = x.shape[0]
    s = _uniform(x, g, (n, 1), *sigma)
    apply = torch.rand(n, generator=g, device=x.device) < p
    k = torch.arange(taps, device=x.device, dtype=x.dtype) - taps // 2
    w = torch.exp(-k ** 2 / (2 * s ** 2))  # (N, taps)
    padded = F.pad(x.transpose(2, 4), (taps // 2, taps // 2)).transpose(2, 4)  # zero-pad time
    blurred = torch.einsum('nctvmk,nk->nctvm', padded.unfold(2, taps, 1), w)
    return torch.where(_per_sample(apply), blurred, x)


def _random_subset(x, g, n, size, count):
    """(n, size) bool masks with `count[i]` True entries at uniformly random positions."""
    rank = torch.rand(n, size, generator=g, device=x.device).argsort(1).argsort(1)
    return rank < count[:, None]


def joint_mask(x, g, joints=(5, 15), frames_short=(20, 50), frames_long=(50, 100)):
    """Zero n_j ~ U{joints} joints in n_t frames (n_t ~ frames_short if T < 100 else frames_long)
    ('zeroOutJoints'). The official code fails when n_t > T (SBU, T=40); here n_t is capped at T."""
    n, _, t, v, _ = x.shape
    lo, hi = frames_short if t < 100 else frames_long
    n_joints = torch.randint(joints[0], joints[1] + 1, (n,), generator=g, device=x.device).clamp(max=v)
    n_frames = torch.randint(lo, hi + 1, (n,), generator=g, device=x.device).clamp(max=t)
    masked = _random_subset(x, g, n, t, n_frames)[:, :, None] & _random_subset(x, g, n, v, n_joints)[:, None, :]
    return x.masked_fill(masked[:, None, :, :, None], 0)


def channel_mask(x, g):
    """Zero one coordinate channel, chosen uniformly, over all frames/joints/persons ('zeroOutAxis')."""
    axis = torch.randint(3, (x.shape[0],), generator=g, device=x.device)
    keep = torch.arange(3, device=x.device)[None] != axis[:, None]
    return x * keep[:, :, None, None, None].to(x.dtype)


def resample(x, pos, last):
    """Linear interpolation in time: x (N, C, T, V, M) read at fractional frame positions pos (N, F)
    (float32 or float64), frame indices capped at last (N, 1) -> (N, C, F, V, M) in x's dtype."""
    i0 = pos.floor().long().minimum(last)
    i1 = (i0 + 1).minimum(last)
    w = (pos - i0).to(x.dtype)[:, None, :, None, None]

    def take(idx):
        return x.gather(2, idx[:, None, :, None, None].expand(-1, x.shape[1], -1, *x.shape[3:]))
    return take(i0) * (1 - w) + take(i1) * w


def real_end(real):
    """(N, T) bool of the frames that are not all-zero padding -> (N,) the frame after each sequence's
    last real frame (1 for a sequence with none): what the encoder, the crop and the resampler read."""
    return torch.where(real.any(1), real.shape[1] - real.flip(1).int().argmax(1), 1)


def crop_resize(x, g, min_ratio=0.5):
    """Random temporal window of U(min_ratio, 1) of each sequence's real frames (up to its last frame
    that is not all zero), resized back to that many frames; trailing padding stays padding
    ('cropResize'; not in the official code: AimCLR's valid_crop_resize)."""
    n, _, t = x.shape[:3]
    real = x.ne(0).flatten(3).any(3).any(1)  # (N, T)
    last = real_end(real)[:, None] - 1  # (N, 1)
    span = last.to(x.dtype)
    width = _uniform(x, g, (n, 1), min_ratio, 1) * span
    steps = torch.linspace(0, 1, t, device=x.device, dtype=x.dtype) * ((t - 1) / span.clamp(min=1))
    pos = _uniform(x, g, (n, 1), 0, 1) * (span - width) + steps * width
    keep = torch.arange(t, device=x.device)[None] <= last  # (N, T)
    return torch.where(_per_sample(keep).view(n, 1, t, 1, 1), resample(x, pos, last), 0)


AUGMENTATIONS = {  # official token -> function
    'subtract': center, 'randomFlip': reverse, 'shear': shear, 'rotate': rotate,
    'gausNoise': gaussian_noise, 'gausFilter': gaussian_blur,
    'zeroOutJoints': joint_mask, 'zeroOutAxis': channel_mask, 'cropResize': crop_resize,
}


class Compose:
    """Keep the first `frames` frames, then apply each function in order: (N, C, T, V, M) -> (N, C, frames, V, M)."""

    def __init__(self, fns, frames):
        self.fns, self.frames = list(fns), frames

    def __call__(self, x, g):
        x = x[:, :, :self.frames]
        for fn in self.fns:
            x = fn(x, g)
        return x.contiguous()

    def __repr__(self):
        return f"Compose(frames={self.frames}, {[getattr(f, '__name__', repr(f)) for f in self.fns]})"


def parse_chain(name, registry=AUGMENTATIONS):
    """'subtract_randomFlip_shear:0.5' -> [center, reverse, shear(amplitude=0.5)]; 'None' -> [].
    'subtract1' = 'subtract' (the official eval chain's spelling). ValueError names what is wrong."""
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
            if not math.isfinite(number) or (isinstance(params[0].default, int) and not number.is_integer()):
                raise ValueError(f"{token}:{value} in {name!r}: {params[0].name} must be a finite "
                                 f"{type(params[0].default).__name__}")
            fn = functools.partial(fn, **{params[0].name: type(params[0].default)(number)})
        fns.append(fn)
    return fns


def build_transform(name, frames):
    """The chain `name` on batches: (N, C, T, V, M) tensor, torch.Generator -> (N, C, frames, V, M)."""
    return Compose(parse_chain(name), frames)


def per_sample(transform):
    """A batch transform applied to one sample: (C, T, V, M), generator -> (C, frames, V, M)."""
    return lambda x, g: transform(x[None], g)[0]


class TwoViews:
    """Query and key views of the same input, drawn one after the other (independent draws)."""

    def __init__(self, query_transform, key_transform=None):
        self.query_transform, self.key_transform = query_transform, key_transform or query_transform

    def __call__(self, x, g):
        return self.query_transform(x, g), self.key_transform(x, g)


def input_chain(preprocess):
    """The deterministic transform between a stored sequence and the encoder (after keeping
    `selected_frames` frames): the official per-frame centring on joint 1, or nothing where the
    sequence is normalised already (--preprocess body / view, preprocess.py)."""
    return 'subtract' if preprocess == 'none' else 'None'


def view_chain(input_chain, augmentation):
    """A pretraining view: the encoder's input chain, then the augmentation chain, so that the views
    and the evaluation input are centred alike whatever --preprocess is (centring twice is centring
    once: the official chains, which start with 'subtract', are unchanged)."""
    return '_'.join(c for c in (input_chain, augmentation) if c not in ('None', '')) or 'None'
