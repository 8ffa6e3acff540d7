"""SBU Kinect Interaction: `<set>/<class>/<seq>/skeleton_pos.txt` files.

Each line: frame number, then 90 normalised values = 2 persons x 15 joints x (x, y, z).
De-normalised as in the official feeder: X = 1280 - 2560 x, Y = 960 - 1920 y and
Z = y * 10000 / 7.8125 -- the official code uses the normalised *y* for depth (docs/official.md §1, §6.6);
`true_depth=True` uses z instead.
"""
from pathlib import Path

import numpy as np

from data import PLAUSIBLE, DataError, check_values, read_text

SETS = ['s01s02', 's01s03', 's01s07', 's02s01', 's02s03', 's02s06', 's02s07', 's03s02', 's03s04',
        's03s05', 's03s06', 's04s02', 's04s03', 's04s06', 's05s02', 's05s03', 's06s02', 's06s03',
        's06s04', 's07s01', 's07s03']
FOLDS = [[1, 9, 15, 19], [5, 7, 10, 16], [2, 3, 20, 21], [4, 6, 8, 11], [12, 13, 14, 17, 18]]  # 1-based set ids
PERSONS, JOINTS = 2, 15
SEQUENCES = 282  # the clean release; fold sizes 55, 52, 56, 54, 65


def read_sequence(path, true_depth=False):
    """Parse one skeleton_pos.txt -> float32 (C=3, T, V=15, M=2)."""
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(',')
        if len(fields) != 1 + PERSONS * JOINTS * 3:
            raise DataError(f"{path}:{lineno}: expected 91 comma-separated values "
                            f"(frame id + 2x15x3), got {len(fields)}")
        try:
            rows.append([float(v) for v in fields[1:]])
        except ValueError:
            raise DataError(f"{path}:{lineno}: non-numeric value in {line[:60]!r}") from None
    if not rows:
        raise DataError(f"{path}: empty sequence (no frames)")
    norm = np.asarray(rows, dtype=np.float64).reshape(len(rows), PERSONS, JOINTS, 3)
    check_values(norm, path, PLAUSIBLE['sbu'])
    x = 1280 - 2560 * norm[..., 0]
    y = 960 - 1920 * norm[..., 1]
    z = (norm[..., 2] if true_depth else norm[..., 1]) * 10000 / 7.8125
    return np.stack([x, y, z]).transpose(0, 1, 3, 2).astype(np.float32)  # (C, T, V, M)


def find_sequences(root):
    """All `<set>/<class>/<seq>/skeleton_pos.txt` under root -> (list of (path, set_id 1-based, label),
    what is missing: set folders, empty class folders, sequence folders without skeleton_pos.txt)."""
    root = Path(root)
    found, skipped = [], []
    for set_id, name in enumerate(SETS, 1):
        if not (root / name).is_dir():
            skipped.append(f"{root / name}/ (set folder missing)")
            continue
        for class_dir in sorted(p for p in (root / name).iterdir() if p.is_dir()):
            if not (class_dir.name.isdigit() and 1 <= int(class_dir.name) <= 8):
                raise DataError(f"{class_dir}: class folder {class_dir.name!r} is not 01..08")
            sequences = sorted(p for p in class_dir.iterdir() if p.is_dir())
            if not sequences:
                skipped.append(f"{class_dir}/ (empty class folder)")
            for seq in sequences:
                path = seq / 'skeleton_pos.txt'
                if path.is_file():
                    found.append((path, set_id, int(class_dir.name) - 1))
                else:
                    skipped.append(f"{path} (missing)")
    if not found:
        raise DataError(f"{root}: no <set>/<class>/<seq>/skeleton_pos.txt files found")
    return found, skipped
