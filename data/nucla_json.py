"""Northwestern-UCLA Multiview Action3D: `all_sqe/aXX_sYY_eZZ_vWW.json`.

Each file holds `skeletons`: T x 20 joints x (x, y, z) in metres and `label` 1..10.
"""
import json
import re
from pathlib import Path

import numpy as np

from data import PLAUSIBLE, DataError, check_values, read_text

JOINTS, CLASSES = 20, 10
VIEW_SIZES = {1: 516, 2: 504, 3: 464}  # sequences per view in the all_sqe release (1,484 in all)
NAME = re.compile(r'a(\d+)_s(\d+)_e(\d+)_v(\d+)$')


def name_fields(path):
    """'aXX_sYY_eZZ_vWW.json' -> (action, subject, repetition, view) as ints; DataError otherwise."""
    match = NAME.match(Path(path).stem)
    if match is None:
        raise DataError(f"{path}: file name is not aXX_sYY_eZZ_vWW.json")
    action, subject, repetition, view = map(int, match.groups())
    if view not in VIEW_SIZES:
        raise DataError(f"{path}: view {view} outside 1..3")
    return action, subject, repetition, view


def read_sequence(path):
    """Parse one json -> (float32 (C=3, T, V=20, M=1), label 0..9, view 1..3)."""
    path = Path(path)
    view = name_fields(path)[3]
    try:
        record = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid json ({err})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected a json object with 'skeletons' and 'label'")
    for key in ('skeletons', 'label'):
        if key not in record:
            raise DataError(f"{path}: missing key {key!r}")
    frames = record['skeletons']
    if not isinstance(frames, list) or not all(isinstance(f, list) for f in frames):
        raise DataError(f"{path}: 'skeletons' must be a list of frames")
    if len(frames) == 0:
        raise DataError(f"{path}: empty sequence (no frames)")
    if any(len(f) != JOINTS or any(not isinstance(j, list) or len(j) != 3 for j in f) for f in frames):
        raise DataError(f"{path}: ragged frames, every frame must be {JOINTS} joints x 3 values")
    try:
        seq = np.asarray(frames, dtype=np.float32)  # (T, V, C)
    except (TypeError, ValueError):
        raise DataError(f"{path}: non-numeric coordinates") from None
    check_values(seq, path, PLAUSIBLE['metres'])
    label = record['label']
    if isinstance(label, bool) or not (isinstance(label, int) or (isinstance(label, float) and label.is_integer())):
        raise DataError(f"{path}: label {label!r} is not an integer")
    if not 1 <= label <= CLASSES:
        raise DataError(f"{path}: label {label} outside 1..{CLASSES}")
    return seq.transpose(2, 0, 1)[..., None], int(label) - 1, view


def find_sequences(root):
    """Sorted json paths under `root/all_sqe`, each named aXX_sYY_eZZ_vWW.json with view 1..3."""
    paths = sorted((Path(root) / 'all_sqe').glob('*.json'))
    if not paths:
        raise DataError(f"{Path(root) / 'all_sqe'}: no N-UCLA *.json files found")
    for path in paths:
        name_fields(path)
    return paths
