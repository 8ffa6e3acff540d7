"""Turn a folder of raw NTU RGB+D `.skeleton` files into the arrays the loader reads.

    python -m data.prepare_ntu --skeleton_dir nturgb+d_skeletons --benchmark ntu60_xsub \
        --out_dir data/ntu

writes `<out_dir>/<benchmark>/{train,val}_data.npy` (float32, (N, 3, 300, 25, 2)) and
`{train,val}_label.pkl` holding (file names, labels 0..n-1), as ST-GCN's `ntu_gendata.py` does:
the first two bodies of each frame in file order, no denoising, frames past 300 dropped
(ST-GCN assumes none), and the official samples-with-missing-skeletons list skipped.
"""
import argparse
import os
import pickle
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data import PLAUSIBLE, DataError, check_values, read_text

MAX_FRAMES, JOINTS, MAX_BODIES = 300, 25, 2
PLAUSIBLE_FRAMES, PLAUSIBLE_BODIES = 20_000, 64  # far above any NTU file; a header beyond is corrupt
XSUB60_TRAIN = [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
XSUB120_TRAIN = XSUB60_TRAIN + [45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80,
                                81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103]
BENCHMARKS = {  # name -> (number of classes, is_train(setup, camera, performer))
    'ntu60_xsub': (60, lambda s, c, p: p in XSUB60_TRAIN),
    'ntu60_xview': (60, lambda s, c, p: c in (2, 3)),
    'ntu120_xsub': (120, lambda s, c, p: p in XSUB120_TRAIN),
    'ntu120_xsetup': (120, lambda s, c, p: s % 2 == 0),
}
MISSING_LISTS = {60: 'NTU_RGBD_samples_with_missing_skeletons.txt',
                 120: 'NTU_RGBD120_samples_with_missing_skeletons.txt'}
NAME = re.compile(r'S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})')


def read_skeleton(path):
    """Parse one .skeleton file -> float32 (C=3, T, V=25, M=2); absent bodies stay zero."""
    lines = read_text(path).split('\n')
    pos = 0

    def next_line():
        nonlocal pos
        while pos < len(lines) and not lines[pos].strip():
            pos += 1
        if pos >= len(lines):
            raise DataError(f"{path}: truncated file (ended at line {pos})")
        pos += 1
        return lines[pos - 1].split()

    try:
        num_frames = int(next_line()[0])
        if num_frames <= 0:
            raise DataError(f"{path}: empty sequence (frame count {num_frames})")
        if num_frames > min(PLAUSIBLE_FRAMES, len(lines)):
            raise DataError(f"{path}: header claims {num_frames} frames, more than the file's {len(lines)} lines")
        data = np.zeros((3, num_frames, JOINTS, MAX_BODIES), dtype=np.float32)
        for t in range(num_frames):
            bodies = int(next_line()[0])
            if not 0 <= bodies <= PLAUSIBLE_BODIES:
                raise DataError(f"{path}:{pos}: frame {t} has {bodies} bodies")
            for body in range(bodies):
                next_line()  # body info: id, clipped edges, hand states, lean, tracking state
                num_joints = int(next_line()[0])
                if num_joints != JOINTS:
                    raise DataError(f"{path}: frame {t} has {num_joints} joints, expected {JOINTS}")
                for v in range(num_joints):
                    values = next_line()
                    if len(values) < 3:
                        raise DataError(f"{path}:{pos}: joint line has {len(values)} values")
                    if body < MAX_BODIES:
                        data[:, t, v, body] = [float(x) for x in values[:3]]
    except (ValueError, IndexError) as err:
        raise DataError(f"{path}:{pos}: malformed line ({err})") from None
    check_values(data, path, PLAUSIBLE['metres'], (None, 'frame'))
    return data[:, :MAX_FRAMES]


def split_files(skeleton_dir, benchmark, missing):
    """-> {'train': [...], 'val': [...]} lists of .skeleton paths for one benchmark."""
    _, is_train = BENCHMARKS[benchmark]
    splits = {'train': [], 'val': []}
    for path in sorted(Path(skeleton_dir).glob('*.skeleton')):
        match = NAME.match(path.name)
        if match is None or path.stem in missing:
            continue
        setup, camera, performer, _, action = map(int, match.groups())
        if action > BENCHMARKS[benchmark][0]:
            continue  # NTU-120 files beside NTU-60 ones
        splits['train' if is_train(setup, camera, performer) else 'val'].append(path)
    return splits


def write_split(paths, data_path, label_path):
    """Parse `paths` into one (N, 3, 300, 25, 2) .npy and a (names, labels) pickle, atomically."""
    tmp_data = data_path.with_suffix('.partial')
    out = np.lib.format.open_memmap(tmp_data, mode='w+', dtype=np.float32,
                                    shape=(len(paths), 3, MAX_FRAMES, JOINTS, MAX_BODIES))
    labels = []
    for i, path in enumerate(tqdm(paths, desc=data_path.name, unit='file')):
        seq = read_skeleton(path)
        out[i, :, :seq.shape[1]] = seq
        labels.append(int(NAME.match(path.name).group(5)) - 1)
    out.flush()
    del out
    os.replace(tmp_data, data_path)
    tmp_label = label_path.with_suffix('.partial')
    with open(tmp_label, 'wb') as f:
        pickle.dump(([p.name for p in paths], labels), f)
    os.replace(tmp_label, label_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--skeleton_dir', required=True, help='folder of raw *.skeleton files')
    parser.add_argument('--benchmark', required=True, choices=sorted(BENCHMARKS))
    parser.add_argument('--out_dir', default='data/ntu', help='arrays go to <out_dir>/<benchmark>/')
    parser.add_argument('--missing_list', default=None,
                        help='samples-with-missing-skeletons list (default: the official file '
                             'for the benchmark, looked for next to --skeleton_dir and in --out_dir)')
    args = parser.parse_args(argv)
    skeleton_dir = Path(args.skeleton_dir)
    if not skeleton_dir.is_dir():
        raise DataError(f"{skeleton_dir}: not a folder of .skeleton files")
    classes = BENCHMARKS[args.benchmark][0]
    candidates = ([Path(args.missing_list)] if args.missing_list else
                  [d / MISSING_LISTS[classes] for d in (skeleton_dir.parent, skeleton_dir, Path(args.out_dir))])
    missing_list = next((p for p in candidates if p.is_file()), None)
    if missing_list is None:
        raise DataError(f"missing-skeletons list not found (looked at {', '.join(map(str, candidates))}); "
                        "pass --missing_list")
    missing = set(read_text(missing_list).split())
    splits = split_files(skeleton_dir, args.benchmark, missing)
    empty = [split for split, paths in splits.items() if not paths]
    if empty:
        raise DataError(f"{skeleton_dir}: no NTU .skeleton files of the {' and '.join(empty)} split of "
                        f"{args.benchmark} (found {sum(map(len, splits.values()))} in all)")
    out = Path(args.out_dir) / args.benchmark
    out.mkdir(parents=True, exist_ok=True)
    for split, paths in splits.items():
        write_split(paths, out / f'{split}_data.npy', out / f'{split}_label.pkl')
        print(f"{args.benchmark} {split}: {len(paths)} samples -> {out / f'{split}_data.npy'}")


if __name__ == '__main__':
    from runs import cli
    cli(main, lambda: None)
