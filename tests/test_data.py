"""Loaders on the real SBU, N-UCLA and NTU sample, plus UWA3D arrays written here."""
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from data import DataError, nucla_json, prepare_ntu, sbu_text
from dataset import PRESETS, SkeletonDataset, load_nucla, load_sbu, load_split

SAMPLE = 'S001C001P001R001A001'


def test_sbu_real_sequences_and_folds(data_root, cache_dir):
    arrays = load_sbu(data_root / 'sbu', False, cache_dir)
    assert arrays['data'].shape == (282, 3, 46, 15, 2)
    assert sorted(set(arrays['label'].tolist())) == list(range(8))
    sizes = [len(load_split('sbu', data_root, 'val', fold=f, cache_dir=cache_dir)[1]) for f in range(5)]
    assert sizes == [55, 52, 56, 54, 65]
    folds = json.loads((data_root / 'sbu' / 'folds.json').read_text())
    assert folds['sets'] == sbu_text.SETS and folds['folds_1based'] == sbu_text.FOLDS
    train, _ = load_split('sbu', data_root, 'train', fold=0, cache_dir=cache_dir)
    assert len(train) == 282 - 55


def test_sbu_denormalisation_and_depth_bug(data_root):
    path = data_root / 'sbu' / 'raw' / 's01s02' / '01' / '001' / 'skeleton_pos.txt'
    first = [float(v) for v in path.read_text().splitlines()[0].split(',')[1:4]]
    official = sbu_text.read_sequence(path)
    assert official[:, 0, 0, 0] == pytest.approx([1280 - 2560 * first[0], 960 - 1920 * first[1],
                                                   first[1] * 10000 / 7.8125], rel=1e-5)
    rel = official - official[:, :, 1:2]
    np.testing.assert_allclose(rel[2], -(2 / 3) * rel[1], atol=1e-2)  # depth is redundant
    true = sbu_text.read_sequence(path, true_depth=True)
    assert true[2, 0, 0, 0] == pytest.approx(first[2] * 10000 / 7.8125, rel=1e-5)


def test_nucla_real_views_and_single_frame(data_root, cache_dir):
    sizes = [len(load_split('ucla', data_root, 'val', test_view=v, cache_dir=cache_dir)[1]) for v in (1, 2, 3)]
    assert sizes == [516, 504, 464] and sum(sizes) == 1484
    seq, label, view = nucla_json.read_sequence(data_root / 'nucla' / 'all_sqe' / 'a02_s09_e04_v02.json')
    assert seq.shape == (3, 1, 20, 1) and label == 1 and view == 2
    arrays = load_nucla(data_root / 'nucla', cache_dir)
    splits = json.loads((data_root / 'nucla' / 'splits_ctrgcn.json').read_text())
    assert (arrays['group'] != 3).sum() == len(splits['train']) == 1020
    train, labels = load_split('ucla', data_root, 'train', test_view=3, cache_dir=cache_dir)
    assert train.shape[1:] == (3, 201, 20, 1) and labels.max() == 9


def write_skeleton(path, frames, bodies=1, joints=25, seed=0):
    """A .skeleton file in the official text format with random coordinates."""
    rng = np.random.default_rng(seed)
    lines = [str(frames)]
    for _ in range(frames):
        lines.append(str(bodies))
        for b in range(bodies):
            lines += [f'7205759403793{b} 0 1 1 1 1 0 0.02 0.05 2', str(joints)]
            lines += [' '.join(f'{v:.5f}' for v in rng.normal(size=3)) + ' 277.4 191.8 1036.2 519.1 -0.2 0.05 0.96 -0.1 2'
                      for _ in range(joints)]
    path.write_text('\n'.join(lines) + '\n')


@pytest.fixture
def ntu_raw(tmp_path, data_root):
    raw = tmp_path / 'raw'
    raw.mkdir()
    shutil.copy(data_root / 'ntu' / 'raw_skeleton_samples' / f'{SAMPLE}.skeleton', raw)
    write_skeleton(raw / 'S001C002P003R001A060.skeleton', 40, bodies=3)  # P003: xsub test, 3 bodies
    write_skeleton(raw / 'S002C001P002R002A010.skeleton', 350)  # longer than 300 frames
    write_skeleton(raw / 'S001C002P005R002A008.skeleton', 10)  # on the official missing list
    shutil.copy(data_root / 'ntu' / 'NTU_RGBD_samples_with_missing_skeletons.txt', tmp_path)
    return raw


def test_ntu_prepare_real_sample(ntu_raw, tmp_path, data_root):
    out = tmp_path / 'data' / 'ntu'
    prepare_ntu.main(['--skeleton_dir', str(ntu_raw), '--benchmark', 'ntu60_xsub', '--out_dir', str(out)])
    train = np.load(out / 'ntu60_xsub' / 'train_data.npy')
    assert train.shape == (2, 3, 300, 25, 2) and train.dtype == np.float32
    names, labels = pickle.load(open(out / 'ntu60_xsub' / 'train_label.pkl', 'rb'))
    assert names == [f'{SAMPLE}.skeleton', 'S002C001P002R002A010.skeleton'] and labels == [0, 9]
    real = prepare_ntu.read_skeleton(data_root / 'ntu' / 'raw_skeleton_samples' / f'{SAMPLE}.skeleton')
    assert real.shape == (3, 103, 25, 2)
    assert np.abs(train[0, :, :103, :, 0]).min() > 0 and not train[0, :, 103:].any() and not train[0, ..., 1].any()
    assert train[0, :, 0, 0, 0] == pytest.approx([0.2181153, 0.1725972, 3.785547])
    assert (np.abs(train[1, ..., 0]).sum(axis=(0, 2)) > 0).all()  # 350 frames cut to 300
    data, val_labels = load_split('ntu60_xsub', tmp_path / 'data', 'val')
    assert data.shape == (1, 3, 300, 25, 2) and val_labels.tolist() == [59] and data[0, ..., 1].any()
    assert isinstance(data, np.memmap)


def test_uwa3d_arrays(tmp_path):
    fold = tmp_path / 'uwa3d' / 'train34_test12'
    rng = np.random.default_rng(0)
    for sub, split, n in (('training_34', 'train', 12), ('test_2', 'val', 5)):
        (fold / sub).mkdir(parents=True)
        np.save(fold / sub / f'{split}_data.npy', rng.normal(size=(n, 3, 70, 15)).astype(np.float32))
        pickle.dump(([f's{i}' for i in range(n)], list(rng.integers(0, 30, n))), open(fold / sub / f'{split}_label.pkl', 'wb'))
    data, labels = load_split('uwa3d', tmp_path, 'train', fold=5, test_view=2)
    assert data.shape == (12, 3, 70, 15, 1) and len(labels) == 12
    sample, _, _ = SkeletonDataset(data, labels, PRESETS['uwa3d']['frames'])[0]
    assert sample.shape == (3, 60, 15, 1) and sample.dtype == torch.float32
    with pytest.raises(DataError, match='tests on views 1 or 2'):
        load_split('uwa3d', tmp_path, 'val', fold=5, test_view=3)
