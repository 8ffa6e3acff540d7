"""The augmentations of augment.py on whole batches (N, C, T, V, M) as tensor ops on any device.

Same parameters and distributions as the per-sample numpy reference (tested by comparing
moments of many draws); each sample gets its own draw from a `torch.Generator` on the batch's
device. Used by `--aug_backend torch` (the default) to augment on the training device.
"""
import math

import torch
import torch.nn.functional as F

import augment


def _uniform(x, g, size, low, high):
    return torch.rand(size, generator=g, device=x.device, dtype=x.dtype) * (high - low) + low


def _per_sample(mask):
    return mask.view(-1, 1, 1, 1, 1)


def center(x, g=None, joint=1):
    return x - x[:, :, :, joint:joint + 1]


def reverse(x, g, p=0.5):
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < p
    return torch.where(_per_sample(flip), x.flip(2), x)


def shear(x, g, amplitude=1.0):
    """S = [[1, a1, b1], [a2, 1, b2], [a3, b3, 1]] per sample; (a1, a2, a3, b1, b2, b3) ~ U(-amplitude, amplitude)."""
    s = torch.eye(3, device=x.device, dtype=x.dtype).repeat(x.shape[0], 1, 1)
    s[:, [0, 1, 2, 0, 1, 2], [1, 0, 0, 2, 2, 1]] = _uniform(x, g, (x.shape[0], 6), -amplitude, amplitude)
    return torch.einsum('nij,njtvm->nitvm', s, x)


def rotate(x, g, max_degrees=30.0):
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
    return x + torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * std


def gaussian_blur(x, g, sigma=(0.1, 2.0), p=0.5, taps=15, normalize=False):
    n = x.shape[0]
    s = _uniform(x, g, (n, 1), *sigma)
    apply = torch.rand(n, generator=g, device=x.device) < p
    k = torch.arange(taps, device=x.device, dtype=x.dtype) - taps // 2
    w = torch.exp(-k ** 2 / (2 * s ** 2))  # (N, taps)
    if normalize:
        w = w / w.sum(1, keepdim=True)
    padded = F.pad(x.transpose(2, 4), (taps // 2, taps // 2)).transpose(2, 4)  # zero-pad time
    blurred = torch.einsum('nctvmk,nk->nctvm', padded.unfold(2, taps, 1), w)
    return torch.where(_per_sample(apply), blurred, x)


def _random_subset(x, g, n, size, count):
    """(n, size) bool masks with `count[i]` True entries at uniformly random positions."""
    rank = torch.rand(n, size, generator=g, device=x.device).argsort(1).argsort(1)
    return rank < count[:, None]


def joint_mask(x, g, joints=(5, 15), frames_short=(20, 50), frames_long=(50, 100)):
    n, _, t, v, _ = x.shape
    lo, hi = frames_short if t < 100 else frames_long
    n_joints = torch.randint(joints[0], joints[1] + 1, (n,), generator=g, device=x.device).clamp(max=v)
    n_frames = torch.randint(lo, hi + 1, (n,), generator=g, device=x.device).clamp(max=t)
    masked = _random_subset(x, g, n, t, n_frames)[:, :, None] & _random_subset(x, g, n, v, n_joints)[:, None, :]
    return x.masked_fill(masked[:, None, :, :, None], 0)


def channel_mask(x, g):
    axis = torch.randint(3, (x.shape[0],), generator=g, device=x.device)
    keep = torch.arange(3, device=x.device)[None] != axis[:, None]
    return x * keep[:, :, None, None, None].to(x.dtype)


def crop_resize(x, g, min_ratio=0.5):
    n, _, t = x.shape[:3]
    width = _uniform(x, g, (n, 1), min_ratio, 1) * (t - 1)
    pos = _uniform(x, g, (n, 1), 0, 1) * (t - 1 - width) + torch.linspace(0, 1, t, device=x.device, dtype=x.dtype) * width
    i0 = pos.floor().long().clamp(max=t - 1)
    i1 = (i0 + 1).clamp(max=t - 1)
    w = (pos - i0)[:, None, :, None, None]

    def take(idx):
        return x.gather(2, idx[:, None, :, None, None].expand(-1, x.shape[1], -1, *x.shape[3:]))
    return take(i0) * (1 - w) + take(i1) * w


BATCH_AUGMENTATIONS = {
    'subtract': center, 'randomFlip': reverse, 'shear': shear, 'rotate': rotate,
    'gausNoise': gaussian_noise, 'gausFilter': gaussian_blur,
    'zeroOutJoints': joint_mask, 'zeroOutAxis': channel_mask, 'cropResize': crop_resize,
}


def build_batch_transform(name, frames):
    """Batch chain: (N, C, T, V, M) tensor, torch.Generator -> (N, C, frames, V, M)."""
    return augment.Compose(augment.parse_chain(name, BATCH_AUGMENTATIONS), frames)
