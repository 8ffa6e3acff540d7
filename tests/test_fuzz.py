"""A fuzzer over the readers: real files of every format (SBU text, N-UCLA json, NTU .skeleton,
label pickles, checkpoints) truncated, with bytes flipped or inserted, numbers swapped for text,
NaN, inf or huge values, lines duplicated or dropped. Every outcome must be a clean parse with
finite, plausible arrays of the expected shape (one frame per line or json frame: nothing dropped
silently) or one named error (DataError / CheckpointError naming the file) -- never another
exception, a traceback or a hang (a deadline per example).

Quick profile in CI: ASCAL_FUZZ_EXAMPLES (default 40) examples per format, derandomised. Long
profile (README): ASCAL_FUZZ_EXAMPLES=1000 ASCAL_FUZZ_REPORT=bench/results/fuzz-long.json
python -m pytest -q tests/test_fuzz.py -- random draws, counts of each outcome written to the report.
"""
import json
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import linEval
from data import PLAUSIBLE, DataError, nucla_json, prepare_ntu, sbu_text
from dataset import load_array
from pretraining import load_encoder
from runs import CheckpointError, load_checkpoint, provenance

EXAMPLES = int(os.environ.get('ASCAL_FUZZ_EXAMPLES', 40))
REPORT = os.environ.get('ASCAL_FUZZ_REPORT')
FUZZ = settings(max_examples=EXAMPLES, deadline=20_000, derandomize=REPORT is None, database=None,
                suppress_health_check=list(HealthCheck))
NUMBER = re.compile(rb'-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')
REPLACEMENTS = [b'nan', b'inf', b'-inf', b'1e30', b'1e400', b'abc', b'', b'-1', b'0', b'3.5', b'99999999999', b'1,2']
COUNTS = {}


@st.composite
def mutated(draw, original):
    """1-3 random edits of the bytes `original`."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(['truncate', 'flip', 'insert', 'number', 'duplicate', 'drop']))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 'truncate':
            del data[at:]
        elif op == 'flip' and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == 'insert':
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 'number' and (numbers := list(NUMBER.finditer(data))):
            match = numbers[draw(st.integers(0, len(numbers) - 1))]
            data[match.start():match.end()] = draw(st.sampled_from(REPLACEMENTS))
        elif op in ('duplicate', 'drop'):
            lines = bytes(data).split(b'\n')
            i = draw(st.integers(0, len(lines) - 1))
            lines[i:i + 1] = [lines[i]] * 2 if op == 'duplicate' else []
            data = bytearray(b'\n'.join(lines))
    return bytes(data)


def outcome(fmt, read, path):
    """read() -> the parsed value, or None after a DataError / CheckpointError that names `path`."""
    try:
        value = read()
    except (DataError, CheckpointError) as err:
        assert str(path) in str(err), err
        COUNTS.setdefault(fmt, {}).setdefault('refused, file named', 0)
        COUNTS[fmt]['refused, file named'] += 1
        return None
    COUNTS.setdefault(fmt, {}).setdefault('parsed, checked', 0)
    COUNTS[fmt]['parsed, checked'] += 1
    return value


def plausible(array, limit):
    assert array.dtype == np.float32 and np.isfinite(array).all() and np.abs(array).max(initial=0) <= limit


@pytest.fixture(scope='module')
def originals(data_root, tmp_path_factory):
    from model import MomentumContrast
    from pretrain_and_linEval import parse_option
    from pretraining import build_encoder
    folder = tmp_path_factory.mktemp('originals')
    opts = parse_option(['--data_root', str(data_root)])
    torch.manual_seed(0)
    model = MomentumContrast(build_encoder(opts), opts.nce_k)
    torch.save(dict(args=vars(opts), model=model.state_dict()), folder / 'ckpt.pth')
    names = [f'S001C00{1 + i % 3}P00{1 + i % 2}R001A00{1 + i}' for i in range(8)]
    np.save(folder / 'data.npy', np.zeros((8, 3, 20, 25, 2), np.float32))
    return dict(sbu=(data_root / 'sbu' / 'raw' / 's01s02' / '01' / '001' / 'skeleton_pos.txt').read_bytes(),
                nucla=(data_root / 'nucla' / 'all_sqe' / 'a01_s01_e00_v01.json').read_bytes(),
                ntu=(data_root / 'ntu' / 'raw_skeleton_samples' / 'S001C001P001R001A001.skeleton').read_bytes(),
                label=pickle.dumps((names, list(range(8)))), checkpoint=(folder / 'ckpt.pth').read_bytes(),
                folder=folder)


def check_sbu(path, x):
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert x.shape == (3, len(lines), 15, 2)  # one frame per line, none dropped
    plausible(x, 2560 * PLAUSIBLE['sbu'] + 1280)


def check_nucla(path, parsed):
    x, label, view = parsed
    assert x.shape == (3, len(json.loads(path.read_text())['skeletons']), 20, 1) and 0 <= label < 10 and view == 1
    plausible(x, PLAUSIBLE['metres'])


def check_ntu(path, x):
    assert x.shape[0] == 3 and 1 <= x.shape[1] <= 300 and x.shape[2:] == (25, 2)
    plausible(x, PLAUSIBLE['metres'])


def check_labels(path, loaded):
    _, labels, groups = loaded
    assert labels.shape == (8,) and labels.dtype == np.int64 and ((labels >= 0) & (labels < 60)).all()
    assert groups is None or groups.shape == (8, 1)


def read_checkpoint(path):
    """What linEval.py does with --model_path: resolve the stored options, then load the encoder."""
    try:
        linEval.parse_option_lin_eval(['--model_path', str(path)])
    except SystemExit as stop:  # an option stored in the checkpoint that argparse would refuse
        assert str(stop.code).startswith(f'error: {path}'), stop.code
        raise CheckpointError(str(stop.code)) from None
    return load_encoder(load_checkpoint(path), path)


def check_encoder(path, encoder):
    assert all(p.isfinite().all() for p in encoder.parameters())


FORMATS = {  # name -> (original, file name, reader, checks of a clean parse)
    'SBU text': ('sbu', 'skeleton_pos.txt', sbu_text.read_sequence, check_sbu),
    'N-UCLA json': ('nucla', 'a01_s01_e00_v01.json', nucla_json.read_sequence, check_nucla),
    'NTU .skeleton': ('ntu', 'S001C001P001R001A001.skeleton', prepare_ntu.read_skeleton, check_ntu),
    'label pickle': ('label', 'label.pkl', None, check_labels),
    'checkpoint': ('checkpoint', 'ckpt.pth', read_checkpoint, check_encoder),
}


@pytest.mark.parametrize('fmt', FORMATS)
@given(data=st.data())
@FUZZ
def test_reader(originals, tmp_path_factory, data, fmt):
    key, name, read, check = FORMATS[fmt]
    path = tmp_path_factory.mktemp(key) / name
    path.write_bytes(data.draw(mutated(originals[key])))
    if read is None:  # a label pickle beside a valid 8-sample array
        read = lambda label_path: load_array(originals['folder'] / 'data.npy', label_path, 25, 2, 60)  # noqa: E731
    value = outcome(fmt, lambda: read(path), path)
    if value is not None:
        check(path, value)


def teardown_module():
    if REPORT:
        info = provenance(torch.device('cpu'), Path(REPORT).parent)
        info['process_command'] = (f"ASCAL_FUZZ_EXAMPLES={EXAMPLES} ASCAL_FUZZ_REPORT={REPORT} python -m pytest "
                                   + ' '.join(sys.argv[1:]))
        Path(REPORT).write_text(json.dumps(dict(examples_per_format=EXAMPLES, outcomes=COUNTS, provenance=info),
                                           indent=2) + '\n')
