"""Skeleton datasets in one layout: float32 samples (C, T, V, M), labels 0..classes-1.

`PRESETS` is the one table of per-dataset facts and official hyper-parameters (docs/official.md §1); the
scripts use it as argparse defaults, so a value given on the command line always wins.
Raw SBU text and N-UCLA json are parsed once and cached as .npz (in `cache_dir`); NTU and UWA3D
arrays are memory-mapped, never read whole into RAM.
"""
import hashlib
import os
import zipfile
import re
from pathlib import Path

import numpy as np
import torch.utils.data

import preprocess
from data import PLAUSIBLE, DataError, check_values, load_label_pickle, nucla_json, sbu_text

# body_joints: (centre, lower spine, upper spine, left shoulder, right shoulder) joint indices, used by
# the body-centred, view-normalised preprocessing of preprocess.py (SBU/UWA3D: OpenNI 15-joint order
# head, neck, torso, l-shoulder, ...; N-UCLA: Kinect v1 20-joint order; NTU: Kinect v2 25-joint order);
# hip_joints: (left hip, right hip), used by the first-frame view normalisation of --preprocess view.
_NTU = dict(joints=25, persons=2, frames=150, body_joints=(1, 0, 20, 4, 8), hip_joints=(12, 16), hidden_units=256, lstm_layer=1, nce_k=16384,
            batch_size=32, lr_decay_epochs='30,70', num_workers=4,
            source='https://rose1.ntu.edu.sg/dataset/actionRecognition/ (raw skeletons, then '
                   '`python -m data.prepare_ntu`)')
PRESETS = {  # NTU `groups`: the name fields a validation part holds out, coarsest first (validation_split)
    'ntu60_xsub': dict(_NTU, classes=60, groups='P'),
    'ntu60_xview': dict(_NTU, classes=60, groups='CP', cross_view=True),
    'ntu120_xsub': dict(_NTU, classes=120, groups='P'),
    'ntu120_xsetup': dict(_NTU, classes=120, groups='SP'),
    'sbu': dict(joints=15, persons=2, classes=8, frames=40, body_joints=(2, 2, 1, 3, 6), hip_joints=(9, 12),
                actions=['approaching', 'departing', 'kicking', 'punching', 'pushing', 'hugging', 'shaking hands',
                         'exchanging objects'], hidden_units=128, lstm_layer=2, nce_k=200,
                batch_size=32, lr_decay_epochs='30,70,150', num_workers=0, fold=0,
                source='https://www3.cs.stonybrook.edu/~kyun/research/kinect_interaction/ '
                       '(the "clean" version: s01s02/ ... s07s03/ folders)'),
    'ucla': dict(joints=20, persons=1, classes=10, frames=60, body_joints=(1, 0, 2, 4, 8), hip_joints=(12, 16),
                 actions=['pick up with one hand', 'pick up with two hands', 'drop trash', 'walk around', 'sit down',
                          'stand up', 'donning', 'doffing', 'throw', 'carry'], hidden_units=256, lstm_layer=1, nce_k=500,
                 batch_size=32, lr_decay_epochs='30,70,150', num_workers=0, test_view=1, cross_view=True,
                 source='the N-UCLA `all_sqe` json release used by Shift-GCN / CTR-GCN '
                        '(NW-UCLA link in their READMEs)'),
    'uwa3d': dict(joints=15, persons=1, classes=30, frames=60, body_joints=(2, 2, 1, 3, 6), hip_joints=(9, 12),
                  hidden_units=256, lstm_layer=1, nce_k=500,
                  batch_size=32, lr_decay_epochs='30,70,150', num_workers=0, fold=5, test_view=2,
                  source='http://staffhome.ecm.uwa.edu.au/~00053650/databases.html, arranged as the '
                         'AS-CAL arrays (README, "Data")'),
}
DATA_ROOT = os.environ.get('ASCAL_DATA_ROOT', 'data')  # --data_root's default everywhere
UWA3D_TRAIN_VIEWS = ['12', '13', '14', '23', '24', '34']  # fold index -> training views (docs/official.md §1)


def frame_size(dataset):
    """Numbers in one stored frame of a dataset: 3 coordinates x joints x persons (C*V*M)."""
    return 3 * PRESETS[dataset]['joints'] * PRESETS[dataset]['persons']


def data_dir(dataset, data_root):
    """The folder a dataset lives in under data_root; a clear error if it is not there."""
    sub = {'sbu': 'sbu', 'ucla': 'nucla', 'uwa3d': 'uwa3d'}.get(dataset, f'ntu/{dataset}')
    folder = Path(data_root) / sub
    if not folder.is_dir():
        raise DataError(f"{dataset} data not found at {folder}. Get it from {PRESETS[dataset]['source']}, "
                        f"put it under {folder} (layout in README, 'Data'), or point --data_root / "
                        "ASCAL_DATA_ROOT at a folder that has it")
    return folder


def _cached(name, sources, build, cache_dir):
    """Return build()'s dict of arrays, cached in cache_dir under a key of the source files' names
    and contents; an unreadable (e.g. truncated) cache file is rebuilt from the sources."""
    digest = hashlib.sha1(name.encode())
    for path in sources:
        digest.update(str(path).encode())
        try:
            digest.update(hashlib.sha1(Path(path).read_bytes()).digest())
        except OSError as err:
            raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    cache = Path(cache_dir) / f'{name}-{digest.hexdigest()[:16]}.npz'
    if cache.is_file():
        try:
            with np.load(cache) as f:
                arrays = dict(f)
            if np.abs(arrays['data']).max() <= 1e6:  # finite and not absurd: the sources were checked
                return arrays
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            pass  # rebuilt below
    arrays = build()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f'.{os.getpid()}.partial')
    with open(tmp, 'wb') as f:
        np.savez(f, **arrays)
    os.replace(tmp, cache)
    return arrays


def _pad_stack(sequences):
    """List of (C, T_i, V, M) -> (N, C, max T_i, V, M), zero-padded at the end in time."""
    out = np.zeros((len(sequences),) + sequences[0].shape[:1] + (max(s.shape[1] for s in sequences),)
                   + sequences[0].shape[2:], dtype=np.float32)
    for i, s in enumerate(sequences):
        out[i, :, :s.shape[1]] = s
    return out


def _check_count(dataset, found, expected, skipped, allow_missing):
    """Refuse a dataset with sequences missing (or extra) unless allow_missing, which names them."""
    if found == expected and not skipped:
        return
    named = ''.join(f'\n  skipped: {s}' for s in skipped)
    if not allow_missing:
        raise DataError(f"{dataset}: found {found} sequences, expected {expected}{named}"
                        f"\n(complete the data, or pass --allow_missing to go on without them)")
    print(f"warning: {dataset}: {found} sequences instead of {expected} (--allow_missing){named}")


def load_sbu(folder, true_depth, cache_dir, allow_missing=False):
    """All 282 SBU sequences -> dict(data (N, 3, 46, 15, 2), label, group = set id 1..21)."""
    root = folder / 'raw' if (folder / 'raw').is_dir() else folder
    found, skipped = sbu_text.find_sequences(root)
    _check_count(f'SBU ({root})', len(found), sbu_text.SEQUENCES, skipped, allow_missing)

    def build():
        seqs = [sbu_text.read_sequence(p, true_depth) for p, _, _ in found]
        return dict(data=_pad_stack(seqs), label=np.array([lab for _, _, lab in found]),
                    group=np.array([s for _, s, _ in found]))
    return _cached(f'sbu-depth{int(true_depth)}', [p for p, _, _ in found], build, cache_dir)


def load_nucla(folder, cache_dir, allow_missing=False):
    """All N-UCLA sequences -> dict(data (N, 3, T_max, 20, 1), label, group = view 1..3, subject 1..10)."""
    paths = nucla_json.find_sequences(folder)
    _check_count(f'N-UCLA ({folder / "all_sqe"})', len(paths), sum(nucla_json.VIEW_SIZES.values()), [], allow_missing)

    def build():
        seqs, labels, views = zip(*(nucla_json.read_sequence(p) for p in paths))
        subjects = [nucla_json.name_fields(p)[1] for p in paths]
        return dict(data=_pad_stack(seqs), label=np.array(labels), group=np.array(views), subject=np.array(subjects))
    return _cached('nucla-v2', paths, build, cache_dir)


def load_array(data_path, label_path, joints, persons, classes, groups='P'):
    """A (N, C, T, V[, M]) .npy (memory-mapped) and its (names, labels) pickle, validated:
    (data, labels, the NTU name fields `groups` of each sample (N, len(groups)) or None)."""
    for path in (data_path, label_path):
        if not Path(path).is_file():
            raise DataError(f"{path}: file not found")
    try:
        data = np.load(data_path, mmap_mode='r')
    except ValueError as err:
        raise DataError(f"{data_path}: not a readable .npy array ({err})") from None
    if data.ndim == 4:
        data = data[..., None]
    if data.ndim != 5 or data.shape[1] != 3 or data.shape[3] != joints or data.shape[4] < persons:
        raise DataError(f"{data_path}: shape {data.shape}, expected (N, 3, T, {joints}, >={persons})")
    if len(data) == 0 or data.shape[2] == 0:
        raise DataError(f"{data_path}: no samples or no frames (shape {data.shape})")
    record = load_label_pickle(label_path)
    names = record[0] if isinstance(record, (tuple, list)) and len(record) == 2 else None
    labels = np.asarray(record[1] if names is not None else record)
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{label_path}: {labels.size} labels for {len(data)} samples in {data_path}")
    return data[..., :persons], _check_labels(labels, classes, label_path), _name_fields(names, len(labels), groups)


def _name_fields(names, n, fields):
    """The NTU name fields (S setup, C camera, P performer of SxxxCxxxPxxxRxxxAxxx) of each sample,
    (n, len(fields)), or None if the names lack them."""
    found = [re.search(r'S(\d{3})C(\d{3})P(\d{3})', str(name))
             for name in (names if names is not None and len(names) == n else [])]
    if not found or not all(found):
        return None
    return np.array([[int(m.group(' SCP'.index(f))) for f in fields] for m in found])


def _check_labels(labels, classes, source):
    raw = np.asarray(labels)
    if raw.dtype.kind not in 'iuf':  # bool, str, object
        raise DataError(f"{source}: labels must be integers, found {raw.dtype} values")
    fractional = raw != np.round(raw)
    if fractional.any():
        raise DataError(f"{source}: labels must be integers, found {raw[fractional][0]!r}")
    labels = raw.astype(np.int64)
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise DataError(f"{source}: label {labels[bad][0]} outside [0, {classes})")
    return labels


def load_split(dataset, data_root, split, fold=None, test_view=None, sbu_true_depth=False,
               cache_dir=Path('~/.cache/ascal').expanduser(), with_groups=False, allow_missing=False):
    """(data (N, C, T, V, M), labels (N,)) for split 'train' or 'val' (the test split) of one
    dataset/protocol; with_groups adds the groups a validation part must keep whole, (N, levels)
    coarsest first (see `validation_split`): SBU fold; N-UCLA view, subject; NTU x-view camera,
    x-setup setup, performer; None for UWA3D (its arrays carry no ids)."""
    if split not in ('train', 'val'):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    preset = PRESETS[dataset]
    folder = data_dir(dataset, data_root)
    if dataset in ('sbu', 'ucla'):
        if dataset == 'sbu':
            if fold not in range(len(sbu_text.FOLDS)):
                raise DataError(f"--fold {fold}: SBU has folds 0..{len(sbu_text.FOLDS) - 1}")
            arrays, held_out = load_sbu(folder, sbu_true_depth, cache_dir, allow_missing), sbu_text.FOLDS[fold]
        else:
            if test_view not in (1, 2, 3):
                raise DataError(f"--test_view {test_view}: N-UCLA views are 1, 2, 3")
            arrays, held_out = load_nucla(folder, cache_dir, allow_missing), [test_view]
        chosen = np.isin(arrays['group'], held_out) == (split == 'val')
        data = arrays['data'][chosen]
        labels = _check_labels(arrays['label'][chosen], preset['classes'], folder)
        if dataset == 'sbu':
            fold_of_set = {s: f for f, sets in enumerate(sbu_text.FOLDS) for s in sets}
            groups = np.array([fold_of_set[s] for s in arrays['group'][chosen]])
        else:
            groups = np.stack([arrays['group'][chosen], arrays['subject'][chosen]], 1)
        return (data, labels, groups) if with_groups else (data, labels)
    if dataset == 'uwa3d':
        if fold not in range(len(UWA3D_TRAIN_VIEWS)):
            raise DataError(f"--fold {fold}: UWA3D has folds 0..{len(UWA3D_TRAIN_VIEWS) - 1}")
        train = UWA3D_TRAIN_VIEWS[fold]
        test = ''.join(v for v in '1234' if v not in train)
        if str(test_view) not in test:
            raise DataError(f"--test_view {test_view}: UWA3D fold {fold} tests on views {test[0]} or {test[1]}")
        folder = folder / f'train{train}_test{test}'
        folder = folder / (f'training_{train}' if split == 'train' else f'test_{test_view}')
    data, labels, groups = load_array(folder / f'{split}_data.npy', folder / f'{split}_label.pkl',
                                      preset['joints'], preset['persons'], preset['classes'], preset.get('groups', 'P'))
    return (data, labels, groups) if with_groups else (data, labels)


def load_splits(opts):
    """[(train data, labels), (evaluation data, labels)] as the encoder reads them (through the
    --preprocess pipeline, preprocess.py: 'body', 'view'; else as stored), and the probes' validation
    folds of the training split (`probe_folds`). The evaluation split is the test split, or with eval_split
    'validation' a held-out part of the training split (`validation_split`; no test sequence is used).
    """
    where = (opts.dataset, opts.data_root)
    split_args = dict(fold=opts.fold, test_view=opts.test_view, sbu_true_depth=opts.sbu_true_depth,
                      cache_dir=opts.cache_dir, allow_missing=opts.allow_missing)
    train_x, train_y, groups = load_split(*where, 'train', with_groups=True, **split_args)
    if len(train_y) == 0:
        raise DataError(f"{opts.dataset} at {opts.data_root}: the training split has no sequences")
    if opts.eval_split == 'validation':
        keep, held = validation_split(train_y, groups, opts.val_seed, opts.val_group)
        splits = [(train_x[keep], train_y[keep]), (train_x[held], train_y[held])]
        groups = None if groups is None else groups[keep]
    else:
        splits = [(train_x, train_y), load_split(*where, 'val', **split_args)]
    if len(splits[1][1]) == 0:
        raise DataError(f"{opts.dataset} at {opts.data_root}: the {opts.eval_split} split has no sequences")
    names = ('training', opts.eval_split)
    splits = [(preprocess.preprocess_split(x, opts.preprocess, PRESETS[opts.dataset], opts.selected_frames,
                                           f'{opts.dataset} {name} split at {opts.data_root}'), y)
              for (x, y), name in zip(splits, names)]
    return splits, probe_folds(splits[0][1], groups, opts.val_seed, PRESETS[opts.dataset].get('cross_view', False))


def validation_split(labels, groups, seed, index=None, fraction=0.2):
    """Cut a training split into (train indices, validation indices) without leakage.

    groups (N, levels): the ids a protocol splits by, coarsest first. Whole groups of the first level
    with two or more ids are held out, so that validation mirrors the test: N-UCLA cross-view and NTU
    x-view hold out a training camera view, NTU x-setup a setup; with one view left (inside a
    validation run) subjects / performers; SBU one training fold. `index` picks the index-th id
    (sorted); else round(fraction * ids), at least one and not all, chosen by `seed`. With groups
    None (UWA3D) a seeded stratified `fraction` of each class is held out instead.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        held = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:max(1, round(fraction * (labels == c).sum()))]
                               for c in np.unique(labels)])
        return np.flatnonzero(~np.isin(np.arange(len(labels)), held)), np.sort(held)
    levels = np.asarray(groups).reshape(len(labels), -1).T
    level = next((ids for ids in levels if len(np.unique(ids)) > 1), levels[-1])
    ids = np.unique(level)
    if len(ids) < 2:
        raise DataError(f"a validation split needs at least two groups (views/subjects/folds), found {len(ids)}")
    if index is not None and index >= len(ids):
        raise DataError(f"--val_group {index}: the training split has {len(ids)} validation groups "
                        f"(0-{len(ids) - 1}: {', '.join(map(str, ids))})")
    chosen = ([ids[index]] if index is not None else
              rng.choice(ids, min(len(ids) - 1, max(1, round(fraction * len(ids)))), replace=False))
    val = np.isin(level, chosen)
    return np.flatnonzero(~val), np.flatnonzero(val)


def probe_folds(labels, groups, seed, cross_view):
    """[(fit indices, validation indices)] on which the probes choose their settings, mirroring the
    test: for a cross-view protocol (`cross_view`, PRESETS) whose training split holds two or more
    views, each view is held out in turn and fitted on the others (N-UCLA 1,2 -> 3: fit view 1,
    validate view 2, and the reverse); otherwise the one `validation_split` (SBU a training fold,
    cross-subject protocols and a validation run's single view: subjects)."""
    views = None if groups is None else np.asarray(groups).reshape(len(labels), -1)[:, 0]
    if not cross_view or views is None or len(np.unique(views)) < 2:
        return [validation_split(labels, groups, seed)]
    return [(np.flatnonzero(views != v), np.flatnonzero(views == v)) for v in np.unique(views)]


class SkeletonDataset(torch.utils.data.Dataset):
    """Samples (C, frames, V, M) float32 tensors: the first `frames` frames, then `transform`ed
    (a per-sample transform, augment.per_sample) with a torch.Generator seeded by (seed, epoch,
    index), so augmentation does not depend on worker count or order, and an epoch replays exactly
    after a resume. Returns (x, label, index).
    """

    def __init__(self, data, labels, frames, transform=None, seed=0, source='dataset'):
        self.data, self.labels, self.frames = data, labels, frames
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.check_each = isinstance(data, np.memmap)  # in-memory arrays were checked on load
        self.source = getattr(data, 'filename', None) or source

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        x = torch.from_numpy(np.array(self.data[index, :, :self.frames], dtype=np.float32))
        if self.check_each:
            check_values(x.numpy(), f'{self.source} sample {index}', PLAUSIBLE['metres'], (None, 'frame'))
        if self.transform is not None:
            state = np.random.SeedSequence((self.seed, self.epoch, index)).generate_state(2, np.uint32)
            x = self.transform(x, torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))
        return x, self.labels[index], index


class IndexBatches:
    """Index lists for one pass over n samples, reshuffled on every pass by a seeded generator.

    Usable as a DataLoader `batch_sampler`; the cached-feature and recompute paths of linear
    evaluation share it, so both see the same batches in the same order. With world > 1 every
    batch of `batch_size` is split into `world` contiguous chunks and this rank gets chunk `rank`
    (a final batch smaller than `world` is dropped, on every rank alike).
    """

    def __init__(self, n, batch_size, shuffle=True, seed=0, rank=0, world=1):
        self.n, self.batch_size, self.shuffle, self.rank, self.world = n, batch_size, shuffle, rank, world
        self.generator = torch.Generator().manual_seed(seed)

    def tensors(self):
        """One pass as index tensors. A generator function: the order is drawn on the first next(),
        so an iterator that a DataLoader creates and drops unused (it does with workers) draws nothing."""
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        for batch in order.split(self.batch_size):
            if len(batch) >= self.world:
                yield batch.tensor_split(self.world)[self.rank]

    def __iter__(self):
        return (idx.tolist() for idx in self.tensors())

    def __len__(self):
        full, rest = divmod(self.n, self.batch_size)
        return full + (rest >= self.world)


def loader(dataset, batch_size, shuffle, seed=0, num_workers=0, device=torch.device('cpu'), rank=0, world=1):
    """DataLoader over IndexBatches (seeded order; this rank's chunk of each batch); pinned memory for a GPU."""
    from runs import available_cpus
    batches = IndexBatches(len(dataset), batch_size, shuffle, seed, rank, world)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=min(num_workers, available_cpus()),
                                       pin_memory=device.type == 'cuda')
