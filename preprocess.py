"""Body-centred, view-normalised, fixed-length sequences: the input of the strong recipe (BEYOND §3).

The official pipeline centres every frame on joint 1 (deleting global motion) and keeps the first
T frames (cutting long actions, padding short ones with zeros). `normalise_split` instead, per
sequence: subtracts the centre joint of the first frame (both persons alike), rotates so that the
first frame's spine points along +y and its shoulders along x (view normalisation), divides by the
mean spine length (scale), and resamples the real frames linearly to T frames (no padding left).
Deterministic; arrays (N, C, T, V, M) float32 in and out.
"""
import numpy as np
import torch

import augment
from data import PLAUSIBLE, check_values


def valid_lengths(data):
    """(N, C, T, V, M) -> (N,) frames up to the last frame with any non-zero value (at least 1)."""
    real = np.abs(data).reshape(*data.shape[:3], -1).max(axis=(1, 3)) > 0  # (N, T)
    last = data.shape[2] - np.argmax(real[:, ::-1], axis=1)
    return np.where(real.any(1), last, 1)


def body_axes(first, body_joints):
    """First frames of person 0, (N, 3, V) -> rotations (N, 3, 3) with rows x, y, z.

    y: lower -> upper spine; x: right -> left shoulder made orthogonal to y; z = x cross y.
    A degenerate frame (missing joints) keeps the identity.
    """
    _, lower, upper, left, right = body_joints
    y = first[:, :, upper] - first[:, :, lower]
    x = first[:, :, left] - first[:, :, right]
    y_norm = np.linalg.norm(y, axis=1, keepdims=True)
    y = y / np.maximum(y_norm, 1e-8)
    x = x - (x * y).sum(1, keepdims=True) * y
    x_norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(x_norm, 1e-8)
    rotation = np.stack([x, y, np.cross(x, y)], axis=1)
    ok = (y_norm[:, 0] > 1e-6) & (x_norm[:, 0] > 1e-6)
    rotation[~ok] = np.eye(3)
    return rotation


def normalise_body(data, lengths, body_joints):
    """Centre on the first frame's centre joint of person 0, rotate to body axes, scale to unit spine.

    Padded frames (t >= length) and absent persons stay zero. (N, C, T, V, M) -> same shape.
    """
    centre, lower, upper = body_joints[:3]
    present = np.abs(data).max(axis=(1, 3), keepdims=True) > 0  # (N, 1, T, 1, M)
    present &= (np.arange(data.shape[2]) < lengths[:, None])[:, None, :, None, None]
    origin = data[:, :, 0, centre, 0][:, :, None, None, None]
    rotation = body_axes(data[:, :, 0, :, 0], body_joints)
    out = np.einsum('nij,njtvm->nitvm', rotation, data - origin)
    spine = np.linalg.norm(data[:, :, :, upper, 0] - data[:, :, :, lower, 0], axis=1)  # (N, T)
    real = present[:, 0, :, 0, 0]
    mean_spine = (spine * real).sum(1) / np.maximum(real.sum(1), 1)
    out /= np.where(mean_spine > 1e-6, mean_spine, 1.0)[:, None, None, None, None]
    return np.where(present, out, 0).astype(np.float32)


def resample_real_frames(data, lengths, frames):
    """Each sequence's real frames [0, length) linearly resampled to `frames` frames (augment.resample):
    (N, C, T, V, M), (N,) -> (N, C, frames, V, M) float32."""
    last = lengths[:, None] - 1
    pos = np.linspace(0, 1, frames)[None] * last  # (N, frames), float64
    return augment.resample(torch.from_numpy(data), torch.from_numpy(pos), torch.from_numpy(last)).numpy()


def normalise_split(data, body_joints, frames, chunk=2048):
    """A whole split (N, C, T, V, M), memory-mapped or not, -> in-memory (N, C, frames, V, M) float32."""
    out = np.empty((len(data), data.shape[1], frames) + data.shape[3:], dtype=np.float32)
    for start in range(0, len(data), chunk):
        part = np.asarray(data[start:start + chunk], dtype=np.float32)
        if isinstance(data, np.memmap):  # in-memory arrays were checked when their files were parsed
            check_values(part, data.filename, PLAUSIBLE['metres'], ('sample', None, 'frame'), start)
        lengths = valid_lengths(part)
        out[start:start + chunk] = resample_real_frames(normalise_body(part, lengths, body_joints), lengths, frames)
    return out
