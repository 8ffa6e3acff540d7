"""Northwestern-UCLA Multiview Action3D: `all_sqe/aXX_sYY_eZZ_vWW.json`.

Each file holds `skeletons`: T x 20 joints x (x, y, z) in metres and `label` 1..10.
"""
import json
from pathlib import Path

import numpy as np

from data import DataError, check_finite

JOINTS, CLASSES = 20, 10


def read_sequence(path):
    """Parse one json -> (float32 (C=3, T, V=20, M=1), label 0..9, view 1..3)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid json ({err})") from None
    for key in ('skeletons', 'label'):
        if key not in record:
            raise DataError(f"{path}: missing key {key!r}")
    frames = record['skeletons']
    if len(frames) == 0:
        raise DataError(f"{path}: empty sequence (no frames)")
    if any(len(f) != JOINTS or any(len(j) != 3 for j in f) for f in frames):
        raise DataError(f"{path}: ragged frames, every frame must be {JOINTS} joints x 3 values")
    try:
        seq = np.asarray(frames, dtype=np.float32)  # (T, V, C)
    except (TypeError, ValueError):
        raise DataError(f"{path}: non-numeric coordinates") from None
    check_finite(seq, path)
    label = int(record['label']) - 1
    if not 0 <= label < CLASSES:
        raise DataError(f"{path}: label {record['label']} outside 1..{CLASSES}")
    view = int(path.stem.split('_v')[-1])
    return seq.transpose(2, 0, 1)[..., None], label, view


def find_sequences(root):
    """Sorted json paths under `root/all_sqe`."""
    paths = sorted((Path(root) / 'all_sqe').glob('*.json'))
    if not paths:
        raise DataError(f"{Path(root) / 'all_sqe'}: no N-UCLA *.json files found")
    return paths
