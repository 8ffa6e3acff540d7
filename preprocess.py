"""Body-centred, view-normalised sequences: the inputs of the strong recipes (`--preprocess body|view`).

The official pipeline centres every frame on joint 1 (deleting global motion) and keeps the first
T frames (cutting long actions, padding short ones with zeros). Both pipelines here fix one
transform per sequence from its first frame and apply it to every frame and both persons alike:

- `body` (`normalise_split`): origin at the first frame's centre joint, rotated so that its spine
  points along +y and its shoulders along x, divided by the mean spine length, and the real frames
  resampled linearly to T frames (no padding left).
- `view` (`view_split`, the input pipeline of Predict & Cluster, CVPR 2020): origin at the first
  frame's hip midpoint, rotated so that its spine points along +y and its hip-to-hip vector
  (made orthogonal to the spine) along x, then each axis min-max scaled to [-1, 1] over the whole
  sequence, and every s-th frame kept, s = ceil(length / T): at most T frames, the rest zero
  padding at the end (the encoder masks it).

Deterministic; arrays (N, C, T, V, M) float32 in and out.
"""
import numpy as np
import torch

import augment
from data import PLAUSIBLE, check_values


def valid_lengths(data):
    """(N, C, T, V, M) -> (N,) frames up to the last frame with any non-zero value (at least 1)."""
    real = np.abs(data).reshape(*data.shape[:3], -1).max(axis=(1, 3)) > 0  # (N, T)
    return augment.real_end(torch.from_numpy(real)).numpy()


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
    present = present_mask(data, lengths)  # (N, 1, T, 1, M)
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


def present_mask(data, lengths):
    """(N, C, T, V, M), (N,) -> (N, 1, T, 1, M) bool: real frames (t < length) of persons that are there."""
    present = np.abs(data).max(axis=(1, 3), keepdims=True) > 0
    return present & (np.arange(data.shape[2]) < lengths[:, None])[:, None, :, None, None]


def view_minmax(data, lengths, body_joints, hip_joints):
    """Origin at the first frame's hip midpoint (person 0), rotated to its spine (y) and hips (x),
    then each axis min-max scaled to [-1, 1] over the real frames of the persons present (a flat
    axis maps to 0). Padded frames and absent persons stay zero. (N, C, T, V, M) -> same shape."""
    present = present_mask(data, lengths)
    left, right = hip_joints
    first = data[:, :, 0, :, 0]
    origin = (first[:, :, left] + first[:, :, right]) / 2
    rotation = body_axes(first, (None, *body_joints[1:3], left, right))
    out = np.einsum('nij,njtvm->nitvm', rotation, data - origin[:, :, None, None, None])
    big = np.finfo(np.float32).max
    low = np.where(present, out, big).min(axis=(2, 3, 4), keepdims=True)
    high = np.where(present, out, -big).max(axis=(2, 3, 4), keepdims=True)
    span = high - low
    scaled = np.where(span > 1e-8, 2 * (out - low) / np.where(span > 1e-8, span, 1) - 1, 0)
    return np.where(present, scaled, 0).astype(np.float32)


def subsample_real_frames(data, lengths, frames):
    """Every s-th real frame, s = ceil(length / frames), from frame 0: ceil(length / s) <= frames
    frames, zero padded at the end. (N, C, T, V, M), (N,) -> (N, C, frames, V, M) float32."""
    out = np.zeros(data.shape[:2] + (frames,) + data.shape[3:], dtype=np.float32)
    for i, length in enumerate(lengths):
        kept = data[i, :, :length:-(-length // frames)]
        out[i, :, :kept.shape[1]] = kept
    return out


def _each_chunk(data, frames, transform, source, chunk=2048):
    """A whole split (N, C, T, V, M), memory-mapped or not, through transform(part, lengths) chunk by
    chunk -> in-memory (N, C, frames, V, M) float32."""
    out = np.empty((len(data), data.shape[1], frames) + data.shape[3:], dtype=np.float32)
    for start in range(0, len(data), chunk):
        part = np.asarray(data[start:start + chunk], dtype=np.float32)
        memmap = isinstance(data, np.memmap)  # in-memory arrays had their range checked when parsed
        check_values(part, data.filename if memmap else source,
                     PLAUSIBLE['metres'] if memmap else np.finfo(np.float32).max, ('sequence', None, 'frame'), start)
        out[start:start + chunk] = transform(part, valid_lengths(part))
    return out


def normalise_split(data, body_joints, frames, source='the split'):
    """`body`: a whole split -> (N, C, frames, V, M) body-normalised, real frames resampled to `frames`."""
    return _each_chunk(data, frames, lambda part, lengths: resample_real_frames(
        normalise_body(part, lengths, body_joints), lengths, frames), source)


def view_split(data, body_joints, hip_joints, frames, source='the split'):
    """`view`: a whole split -> (N, C, frames, V, M) view-normalised, min-max scaled, subsampled."""
    return _each_chunk(data, frames, lambda part, lengths: subsample_real_frames(
        view_minmax(part, lengths, body_joints, hip_joints), lengths, frames), source)


def preprocess_split(data, preprocess, preset, frames, source='the split'):
    """The --preprocess pipeline of a split: 'none' leaves it as stored. Every sequence must be
    finite (DataError naming `source`, the sequence and the frame)."""
    if preprocess == 'body':
        return normalise_split(data, preset['body_joints'], frames, source)
    if preprocess == 'view':
        return view_split(data, preset['body_joints'], preset['hip_joints'], frames, source)
    return data
