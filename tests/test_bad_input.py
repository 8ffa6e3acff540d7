"""Malformed data stops with a DataError naming the file and the problem."""
import json
import pickle

import numpy as np
import pytest

from data import DataError, nucla_json, prepare_ntu, sbu_text
from dataset import load_array, load_split
from test_data import write_skeleton


def test_missing_data_folder_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r'sbu data not found at .*stonybrook.*--data_root'):
        load_split('sbu', tmp_path, 'train', fold=0)


def test_truncated_skeleton(tmp_path):
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, 5)
    path.write_text('\n'.join(path.read_text().splitlines()[:40]))
    with pytest.raises(DataError, match=f'{path.name}: truncated'):
        prepare_ntu.read_skeleton(path)


def test_skeleton_with_wrong_joint_count(tmp_path):
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, 3, joints=20)
    with pytest.raises(DataError, match='20 joints, expected 25'):
        prepare_ntu.read_skeleton(path)


def test_empty_skeleton(tmp_path):
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    path.write_text('0\n')
    with pytest.raises(DataError, match='empty sequence'):
        prepare_ntu.read_skeleton(path)


@pytest.mark.parametrize('line, message', [
    ('1,' + ','.join(['0.5'] * 80), 'expected 91'),
    ('1,' + ','.join(['0.5'] * 89 + ['abc']), 'non-numeric'),
    ('1,' + ','.join(['0.5'] * 89 + ['nan']), 'NaN or inf'),
    ('', 'empty sequence'),
])
def test_bad_skeleton_pos(tmp_path, line, message):
    path = tmp_path / 'skeleton_pos.txt'
    path.write_text(line + '\n')
    with pytest.raises(DataError, match=message) as err:
        sbu_text.read_sequence(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize('record, message', [
    ({'file_name': 'x', 'label': 1}, "missing key 'skeletons'"),
    ({'skeletons': [[[0, 0, 0]] * 20, [[0, 0, 0]] * 19], 'label': 1}, 'ragged'),
    ({'skeletons': [], 'label': 1}, 'empty sequence'),
    ({'skeletons': [[[0, 0, float('inf')]] * 20], 'label': 1}, 'NaN or inf'),
    ({'skeletons': [[[0, 0, 0]] * 20], 'label': 11}, 'label 11'),
])
def test_bad_nucla_json(tmp_path, record, message):
    path = tmp_path / 'a01_s01_e00_v01.json'
    path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=message):
        nucla_json.read_sequence(path)


def write_arrays(tmp_path, data, labels):
    np.save(tmp_path / 'd.npy', data)
    pickle.dump(([str(i) for i in range(len(labels))], labels), open(tmp_path / 'l.pkl', 'wb'))
    return tmp_path / 'd.npy', tmp_path / 'l.pkl'


@pytest.mark.parametrize('shape, labels, message', [
    ((4, 3, 10), [0] * 4, r'shape \(4, 3, 10\), expected'),
    ((4, 3, 10, 20, 2), [0] * 4, 'expected'),
    ((4, 3, 10, 25, 2), [0, 1, 60, 2], r'label 60 outside \[0, 60\)'),
    ((4, 3, 10, 25, 2), [0, 1, -1, 2], 'label -1 outside'),
    ((4, 3, 10, 25, 2), [0, 1, 2], '3 labels for 4 samples'),
])
def test_bad_arrays(tmp_path, shape, labels, message):
    data_path, label_path = write_arrays(tmp_path, np.zeros(shape, np.float32), labels)
    with pytest.raises(DataError, match=message):
        load_array(data_path, label_path, joints=25, persons=2, classes=60)


def test_nan_in_memory_mapped_sample_is_named(tmp_path):
    from dataset import SkeletonDataset
    data = np.zeros((3, 3, 10, 25, 2), np.float32)
    data[1, 0, 4, 3, 0] = np.nan
    data_path, label_path = write_arrays(tmp_path, data, [0, 1, 2])
    arrays, labels, _ = load_array(data_path, label_path, 25, 2, 60)
    dataset = SkeletonDataset(arrays, labels, 10, source=str(data_path))
    dataset[0]
    with pytest.raises(DataError, match=f'{data_path} sample 1: frame 4 contains NaN'):
        dataset[1]
