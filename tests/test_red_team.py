"""A red-team corpus: malformed options, data files, label pickles, checkpoints, configs and faults.

Every case runs a script's command line in-process (runs.cli, exactly what `python <script>` does)
and must either exit non-zero with one line naming the option or file (argparse: its usage, then one
`error:` line), with no traceback, no results.json and no marker file written by crafted input --
or, where the input is valid, succeed.
"""
import json
import os
import pickle
import shutil

import numpy as np
import pytest

import linEval
import pretrain_and_linEval as pretrain
from data import DataError, prepare_ntu
from dataset import PRESETS
from preprocess import preprocess_split
from runs import cli, lock_run_folder, release_run_folder
from test_data import write_skeleton

FAST = ['--epochs', '1', '--lin_epochs', '1', '--quiet', '--no_plots', '--threads', '1']
SCRIPTS = {'pretrain': (pretrain.main, pretrain.parse_option), 'lineval': (linEval.main, linEval.parse_option_lin_eval),
           'prepare_ntu': (prepare_ntu.main, lambda argv: argv)}


def refused(script, argv, capsys, out=None):
    """Run one command line that must fail; returns its one-line message."""
    main, parse = SCRIPTS[script]
    with pytest.raises(SystemExit) as stop:
        cli(main, lambda: parse(argv))
    err = capsys.readouterr().err
    code = stop.value.code
    assert code not in (0, None), 'exited 0'
    message = code if isinstance(code, str) else err.strip().splitlines()[-1]
    assert 'Traceback' not in err and 'Traceback' not in message
    assert message.startswith('error:') or ': error:' in message, message
    assert '\n' not in message.strip().split('\n(')[0] or 'skipped' in message, message
    if out is not None:
        assert not (out / 'results.json').exists()
    return message


def succeeds(script, argv):
    main, parse = SCRIPTS[script]
    return cli(main, lambda: parse(argv))


# ---------------------------------------------------------------- options checked when parsing
BAD_OPTIONS = [(name, value) for name, values in {
    '--epochs': ['-1', 'x', '1.5'], '--readout': ['max'], '--recon_weight': ['-1', 'nan'],
    '--recon_consistency': ['inf'], '--lin_epochs': ['0', 'two'], '--batch_size': ['0', '-4'],
    '--lin_batch_size': ['0'], '--nce_k': ['0', '-1'], '--selected_frames': ['0'], '--hidden_units': ['0'],
    '--lstm_layer': ['0'], '--save_freq': ['0'], '--num_workers': ['-1'], '--knn_k': ['0'], '--threads': ['0'],
    '--lr_decay_epochs': ['a,b', '0', '-3'], '--lin_lr_decay_epochs': ['x'], '--nce_t': ['0', '-1', 'inf', 'nan'],
    '--learning_rate': ['0', '-0.1'], '--lin_learning_rate': ['-1'], '--alpha': ['0', '1.5'], '--momentum': ['-1'],
    '--weight_decay': ['-1'], '--head_dim': ['-1'], '--warmup_epochs': ['-1'], '--fold': ['-1'],
    '--aug1': ['bogus', 'shear:abc', 'subtract:1.5', 'zeroOutAxis:3', 'shear:inf'], '--aug2': ['rotate_nothing'],
    '--dataset': ['imagenet'], '--recipe': ['best'], '--device': ['tpu'], '--amp': ['fp8'], '--optimizer': ['lbfgs'],
    '--rnn': ['transformer'], '--preprocess': ['magic'], '--eval_split': ['train'], '--select': ['median'],
}.items() for value in values]


@pytest.mark.parametrize('name, value', BAD_OPTIONS)
def test_bad_pretraining_option(name, value, capsys, tmp_path):
    message = refused('pretrain', [name, value, '--out_dir', str(tmp_path / 'run')], capsys)
    assert name in message and not (tmp_path / 'run').exists()


@pytest.mark.parametrize('argv, names', [
    (['--mode', 'semi', '--model_path', 'x.pth', '--semi_rate', '0'], '--semi_rate'),
    (['--mode', 'semi', '--model_path', 'x.pth', '--semi_rate', '1.5'], '--semi_rate'),
    (['--mode', 'semi', '--model_path', 'x.pth', '--semi_rate', 'half'], '--semi_rate'),
    (['--mode', 'bogus'], '--mode'),
    (['--mode', 'eval'], '--model_path'),
    (['--mode', 'semi'], '--model_path'),
    (['--mode', 'supervise', '--train_aug', 'bogus'], '--train_aug'),
    (['--mode', 'raw', '--preprocess', 'magic'], '--preprocess'),
    (['--mode', 'supervise', '--dataset', 'sbu', '--lin_batch_size', '0'], '--lin_batch_size'),
    (['--mode', 'supervise', '--dataset', 'sbu', '--epochs', '0'], '--epochs'),
    (['--mode', 'supervise', '--dataset', 'sbu', '--recipe', 'fast'], '--recipe'),
])
def test_bad_evaluation_option(argv, names, capsys):
    assert names in refused('lineval', argv, capsys)


# ---------------------------------------------------------------- options and files checked at run time
@pytest.fixture
def sbu_root(data_root, tmp_path):
    """A private copy of the real SBU data to break."""
    shutil.copytree(data_root / 'sbu', tmp_path / 'data' / 'sbu')
    for path in (tmp_path / 'data').rglob('*'):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return tmp_path / 'data'


@pytest.fixture
def nucla_root(data_root, tmp_path):
    """N-UCLA as symlinks to the real files, so one can be replaced by a broken one."""
    folder = tmp_path / 'data' / 'nucla' / 'all_sqe'
    folder.mkdir(parents=True)
    for path in (data_root / 'nucla' / 'all_sqe').glob('*.json'):
        (folder / path.name).symlink_to(path)
    return tmp_path / 'data'


def run_argv(data_root, tmp_path, *extra):
    return ['--data_root', str(data_root), '--out_dir', str(tmp_path / 'run'), *FAST, *extra]


@pytest.mark.parametrize('extra, expected', [
    (['--fold', '7'], '--fold 7'),
    (['--batch_size', '500'], '--batch_size 500'),
    (['--dataset', 'ucla', '--test_view', '4'], '--test_view 4'),
    (['--dataset', 'uwa3d'], 'uwa3d data not found'),
    (['--dataset', 'ntu60_xsub'], 'ntu60_xsub data not found'),
    (['--resume', 'nowhere.pth'], 'nowhere.pth: checkpoint file not found'),
    (['--eval_split', 'validation', '--val_group', '4'], '--val_group 4: the training split has 4 validation groups'),
    (['--epochs', '0', '--warmup_epochs', '0'], '--warmup_epochs 0 --epochs 0: nothing to run'),
    (['--recon_weight', '1', '--aug_backend', 'sample'], '--recon_weight / --recon_consistency need --aug_backend batch'),
    (['--two_stream'], '--two_stream needs --motion'),
])
def test_bad_run_options(data_root, tmp_path, capsys, extra, expected):
    assert expected in refused('pretrain', run_argv(data_root, tmp_path, *extra), capsys, tmp_path / 'run')


@pytest.mark.parametrize('preprocess', ['body', 'view'])
def test_non_finite_sequences_are_refused_at_preprocessing_naming_the_sequence(preprocess):
    x = np.ones((5, 3, 20, 20, 1), dtype=np.float32)
    x[3] = np.nan  # a split poisoned after loading: refused, not turned into zeros
    with pytest.raises(DataError, match='ucla test split: sequence 3, frame 0 contains NaN or inf'):
        preprocess_split(x, preprocess, PRESETS['ucla'], 10, 'ucla test split')


def test_out_dir_is_a_file(data_root, tmp_path, capsys):
    (tmp_path / 'taken').write_text('x')
    argv = ['--data_root', str(data_root), '--out_dir', str(tmp_path / 'taken'), *FAST]
    assert 'exists and is not a folder' in refused('pretrain', argv, capsys)


def test_out_dir_below_a_file(data_root, tmp_path, capsys):
    (tmp_path / 'taken').write_text('x')
    argv = ['--data_root', str(data_root), '--out_dir', str(tmp_path / 'taken' / 'run'), *FAST]
    assert str(tmp_path / 'taken') in refused('pretrain', argv, capsys)


def test_second_writer_is_refused(data_root, tmp_path, capsys):
    out = tmp_path / 'run'
    out.mkdir()
    pid = os.fork()
    if pid == 0:  # another process holds the folder
        lock_run_folder(out)
        (tmp_path / 'locked').write_text('1')
        import time
        time.sleep(30)
        os._exit(0)
    try:
        while not (tmp_path / 'locked').exists():
            pass
        assert 'another run is writing into this folder' in refused('pretrain', run_argv(data_root, tmp_path), capsys, out)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


@pytest.mark.parametrize('content, expected', [
    ('[1, 2]', 'expected a json object'),
    ('{"dataset": "imagenet"}', "option dataset: 'imagenet' is not one of"),
    ('{"epochs": -1}', "option epochs: -1 is not an integer >= 0"),
    ('{"l2norm": "yes"}', "option l2norm: 'yes' is not true or false"),
    ('{"test_view": "x"}', "option test_view:"),
    ('{not json', 'not a readable args.json'),
    (None, 'not a readable args.json'),
])
def test_bad_config(tmp_path, capsys, content, expected):
    path = tmp_path / 'args.json'
    if content is not None:
        path.write_text(content)
    assert expected in refused('pretrain', ['--config', str(path)], capsys)


@pytest.fixture(scope='module')
def checkpoint(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('ckpt')
    succeeds('pretrain', ['--data_root', str(data_root), '--out_dir', str(out), *FAST])
    return out


@pytest.mark.parametrize('write, expected', [
    (lambda p, good: p.write_bytes(b''), 'not a readable checkpoint'),
    (lambda p, good: p.write_bytes(good.read_bytes()[:3000]), 'not a readable checkpoint'),
    (lambda p, good: p.write_text('hello'), 'not a readable checkpoint'),
    (lambda p, good: p.mkdir(), 'checkpoint file not found'),
    (lambda p, good: __import__('torch').save({'args': {}}, p), "needs 'args' and 'model'"),
    (lambda p, good: __import__('torch').save([1, 2], p), "needs 'args' and 'model'"),
])
def test_bad_checkpoint_for_evaluation(checkpoint, tmp_path, capsys, write, expected):
    path = tmp_path / 'bad.pth'
    write(path, checkpoint / 'last.pth')
    argv = ['--model_path', str(path), '--out_dir', str(tmp_path / 'run'), '--quiet']
    assert expected in refused('lineval', argv, capsys, tmp_path / 'run')


def test_checkpoint_lacking_resume_fields(checkpoint, data_root, tmp_path, capsys):
    import torch
    ckpt = torch.load(checkpoint / 'last.pth', weights_only=True)
    del ckpt['optimizer']
    torch.save(ckpt, tmp_path / 'partial.pth')
    message = refused('pretrain', run_argv(data_root, tmp_path, '--resume', str(tmp_path / 'partial.pth')), capsys)
    assert 'lacks optimizer' in message


@pytest.mark.parametrize('extra, expected', [
    (['--fold', '1'], 'fold 0 (checkpoint) vs 1'), (['--seed', '2'], 'seed 1 (checkpoint) vs 2'),
    (['--selected_frames', '30'], 'selected_frames'), (['--recipe', 'corrected'], 'l2norm'),
    (['--dataset', 'ucla'], 'dataset'),
])
def test_resume_refuses_other_options(checkpoint, data_root, tmp_path, capsys, extra, expected):
    argv = run_argv(data_root, tmp_path, '--resume', str(checkpoint / 'last.pth'), *extra)
    assert expected in refused('pretrain', argv, capsys, tmp_path / 'run')


def test_resume_auto_skips_empty_and_foreign_files(checkpoint, data_root, tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'last.pth').write_bytes(b'')
    (out / 'ckpt_epoch_9.pth').write_text('not a checkpoint')
    succeeds('pretrain', run_argv(data_root, tmp_path, '--resume', 'auto'))
    assert (out / 'results.json').exists() and 'resumed' not in (out / 'log.txt').read_text()  # started afresh
    assert [row.split(',')[0] for row in (out / 'metrics.csv').read_text().splitlines()[1:]] == ['1', '2']


def test_checkpoint_of_another_dataset(checkpoint, tmp_path, capsys):
    argv = ['--model_path', str(checkpoint / 'last.pth'), '--dataset', 'ucla', '--out_dir', str(tmp_path / 'run')]
    assert 'checkpoint has dataset=sbu' in refused('lineval', argv, capsys)


# ---------------------------------------------------------------- SBU files
def sbu_file(root, seq='001'):
    return root / 'sbu' / 'raw' / 's01s02' / '01' / seq / 'skeleton_pos.txt'


@pytest.mark.parametrize('damage, expected', [
    (lambda f: f.unlink(), 'skeleton_pos.txt (missing)'),
    (lambda f: (f.unlink(), f.mkdir()), 'skeleton_pos.txt (missing)'),
    (lambda f: (f.unlink(), f.symlink_to(f)), 'skeleton_pos.txt (missing)'),
    (lambda f: shutil.rmtree(f.parents[2]), 's01s02/ (set folder missing)'),
    (lambda f: [shutil.rmtree(p) for p in f.parents[1].iterdir()], '01/ (empty class folder)'),
    (lambda f: f.write_bytes(b'1,\xff\xfe' + b',0.5' * 89 + b'\n'), 'not UTF-8'),
    (lambda f: f.write_text('1,' + ','.join(['0.5'] * 80)), 'expected 91'),
    (lambda f: f.write_text('1,' + ','.join(['0.5'] * 89 + ['abc'])), 'non-numeric'),
    (lambda f: f.write_text('1,' + ','.join(['0.5'] * 89 + ['nan'])), 'NaN or inf'),
    (lambda f: f.write_text('1,' + ','.join(['0.5'] * 89 + ['inf'])), 'NaN or inf'),
    (lambda f: f.write_text(''), 'empty sequence'),
    (lambda f: f.write_text('\n\n  \n'), 'empty sequence'),
    (lambda f: f.parents[1].rename(f.parents[2] / 'xx'), "class folder 'xx'"),
    (lambda f: f.parents[1].rename(f.parents[2] / '09'), "class folder '09'"),
])
def test_broken_sbu(sbu_root, tmp_path, capsys, damage, expected):
    damage(sbu_file(sbu_root))
    message = refused('pretrain', run_argv(sbu_root, tmp_path), capsys, tmp_path / 'run')
    assert expected in message and 'sbu' in message.lower()


def test_missing_sbu_file_allowed_and_named(sbu_root, tmp_path, capsys):
    sbu_file(sbu_root).unlink()
    result = succeeds('pretrain', run_argv(sbu_root, tmp_path, '--allow_missing'))
    out = capsys.readouterr().out
    assert 'skipped: ' + str(sbu_file(sbu_root)) in out and '281 sequences instead of 282' in out
    assert result['samples'] == {'train': 227, 'test': 54}  # s01s02 is in fold 0, the default test fold


def test_truncated_cache_is_rebuilt(sbu_root, tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    argv = run_argv(sbu_root, tmp_path, '--cache_dir', str(cache))
    first = succeeds('pretrain', argv)
    for path in cache.glob('*.npz'):
        path.write_bytes(path.read_bytes()[:1000])
    shutil.rmtree(tmp_path / 'run')
    assert succeeds('pretrain', argv)['top1'] == first['top1']


def test_cache_key_follows_file_contents(sbu_root, tmp_path, capsys):
    cache = tmp_path / 'cache'
    succeeds('pretrain', run_argv(sbu_root, tmp_path, '--cache_dir', str(cache)))
    path = sbu_file(sbu_root)
    stat = path.stat()
    text = path.read_text()
    path.write_text(text.replace(',', ',x', 1).replace(',x', ',', 1)[:-5] + 'abc\n')  # same size region, other bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    shutil.rmtree(tmp_path / 'run')
    assert 'non-numeric' in refused('pretrain', run_argv(sbu_root, tmp_path, '--cache_dir', str(cache)), capsys)


# ---------------------------------------------------------------- N-UCLA files
def replace_nucla(root, name, content):
    path = root / 'nucla' / 'all_sqe' / name
    path.unlink()
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


GOOD = {'skeletons': [[[0.1, 0.2, 0.3]] * 20] * 5}


@pytest.mark.parametrize('content, expected', [
    (dict(GOOD, label=2.7), 'label 2.7 is not an integer'),
    (dict(GOOD, label='3'), "label '3' is not an integer"),
    (dict(GOOD, label=True), 'is not an integer'),
    (dict(GOOD, label=0), 'label 0 outside 1..10'),
    (dict(GOOD, label=11), 'label 11 outside'),
    ({'label': 1, 'skeletons': 'abc'}, "'skeletons' must be a list"),
    ({'label': 1, 'skeletons': [[[0, 0, 0]] * 19]}, 'ragged'),
    ({'label': 1, 'skeletons': [[[0, 0]] * 20]}, 'ragged'),
    ({'label': 1, 'skeletons': []}, 'empty sequence'),
    ({'label': 1, 'skeletons': [[['a', 0, 0]] * 20]}, 'non-numeric'),
    ({'label': 1}, "missing key 'skeletons'"),
    ([1, 2, 3], 'expected a json object'),
    (b'{"label": 1, "skel', 'not valid json'),
    (b'\xff\xfe{}', 'not UTF-8'),
])
def test_broken_nucla(nucla_root, tmp_path, capsys, content, expected):
    path = replace_nucla(nucla_root, 'a01_s01_e00_v01.json', content)
    message = refused('pretrain', run_argv(nucla_root, tmp_path, '--dataset', 'ucla'), capsys, tmp_path / 'run')
    assert expected in message and str(path) in message


@pytest.mark.parametrize('change, expected', [
    (lambda d: (d / 'a01_s01_e00_v01.json').unlink(), 'found 1483 sequences, expected 1484'),
    (lambda d: (d / 'a01_s01_e00_v04.json').write_text(json.dumps(dict(GOOD, label=1))), 'view 4 outside 1..3'),
    (lambda d: (d / 'walk.json').write_text(json.dumps(dict(GOOD, label=1))), 'not aXX_sYY_eZZ_vWW.json'),
    (lambda d: (d / 'a01_s01_e09_v01.json').write_text(json.dumps(dict(GOOD, label=1))), 'found 1485 sequences'),
])
def test_nucla_files_missing_or_extra(nucla_root, tmp_path, capsys, change, expected):
    change(nucla_root / 'nucla' / 'all_sqe')
    assert expected in refused('pretrain', run_argv(nucla_root, tmp_path, '--dataset', 'ucla'), capsys)


# ---------------------------------------------------------------- NTU arrays, label pickles, raw files
class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def ntu_root(tmp_path, data=None, labels=None, label_bytes=None):
    folder = tmp_path / 'data' / 'ntu' / 'ntu60_xsub'
    folder.mkdir(parents=True)
    for split in ('train', 'val'):
        np.save(folder / f'{split}_data.npy', np.zeros((8, 3, 20, 25, 2), np.float32) if data is None else data)
        payload = label_bytes if label_bytes is not None else pickle.dumps(
            ([f'S001C001P00{i % 3 + 1}R001A001' for i in range(8)], list(range(8)) if labels is None else labels))
        (folder / f'{split}_label.pkl').write_bytes(payload)
    return tmp_path / 'data'


@pytest.mark.parametrize('make, expected', [
    (lambda t: ntu_root(t, label_bytes=pickle.dumps(Exploit(t / 'marker'))), 'refusing to load posix.system'),
    (lambda t: ntu_root(t, label_bytes=pickle.dumps((['a'] * 8, Exploit(t / 'marker')))), 'refusing to load'),
    (lambda t: ntu_root(t, label_bytes=b'\x80\x04garbage'), 'not a (names, labels) pickle'),
    (lambda t: ntu_root(t, label_bytes=b''), 'not a (names, labels) pickle'),
    (lambda t: ntu_root(t, labels=[0.5] * 8), 'labels must be integers'),
    (lambda t: ntu_root(t, labels=[0, 1, 2, 3, 4, 5, 6, 60]), 'label 60 outside'),
    (lambda t: ntu_root(t, labels=[-1] * 8), 'label -1 outside'),
    (lambda t: ntu_root(t, labels=[0] * 7), '7 labels for 8 samples'),
    (lambda t: ntu_root(t, labels=['a'] * 8), 'labels must be integers'),
    (lambda t: ntu_root(t, data=np.zeros((8, 3, 20, 20, 2), np.float32)), 'expected (N, 3, T, 25'),
    (lambda t: ntu_root(t, data=np.zeros((8, 2, 20, 25, 2), np.float32)), 'expected (N, 3, T, 25'),
    (lambda t: ntu_root(t, data=np.array([None] * 8, dtype=object)), 'not a readable .npy array'),
])
def test_broken_ntu_arrays(tmp_path, capsys, make, expected):
    root = make(tmp_path)
    message = refused('pretrain', run_argv(root, tmp_path, '--dataset', 'ntu60_xsub', '--batch_size', '4'), capsys,
                      tmp_path / 'run')
    assert expected in message and 'ntu60_xsub' in message
    assert not (tmp_path / 'marker').exists()


def test_nan_in_ntu_sample(tmp_path, capsys):
    data = np.zeros((8, 3, 20, 25, 2), np.float32)
    data[3, 1, 2, 3, 0] = np.nan
    root = ntu_root(tmp_path, data=data)
    message = refused('pretrain', run_argv(root, tmp_path, '--dataset', 'ntu60_xsub', '--batch_size', '4'), capsys)
    assert 'train_data.npy sample 3: frame 2 contains NaN' in message


@pytest.mark.parametrize('edit, expected', [
    (lambda lines: ['10000000000'] + lines[1:], 'header claims 10000000000 frames'),
    (lambda lines: lines[:1] + ['-2'] + lines[2:], 'has -2 bodies'),
    (lambda lines: lines[:1] + ['x'] + lines[2:], 'malformed line'),
    (lambda lines: lines[:30], 'truncated'),
    (lambda lines: ['0'], 'empty sequence'),
])
def test_broken_ntu_skeleton(tmp_path, capsys, edit, expected):
    raw = tmp_path / 'raw'
    raw.mkdir()
    for name in ('S001C001P001R001A001', 'S001C001P003R001A001'):
        write_skeleton(raw / f'{name}.skeleton', 3)
    path = raw / 'S001C001P001R001A001.skeleton'
    path.write_text('\n'.join(edit(path.read_text().splitlines())))
    (tmp_path / 'missing.txt').write_text('')
    argv = ['--skeleton_dir', str(raw), '--benchmark', 'ntu60_xsub', '--out_dir', str(tmp_path / 'out'),
            '--missing_list', str(tmp_path / 'missing.txt')]
    message = refused('prepare_ntu', argv, capsys)
    assert expected in message and path.name in message


def test_ntu_preparation_refuses_an_empty_split(tmp_path, capsys):
    raw = tmp_path / 'raw'
    raw.mkdir()
    write_skeleton(raw / 'S001C001P001R001A001.skeleton', 3)  # performer 1: training only
    (tmp_path / 'missing.txt').write_text('')
    argv = ['--skeleton_dir', str(raw), '--benchmark', 'ntu60_xsub', '--out_dir', str(tmp_path / 'out'),
            '--missing_list', str(tmp_path / 'missing.txt')]
    assert 'no NTU .skeleton files of the val split' in refused('prepare_ntu', argv, capsys)


def test_non_utf8_skeleton(tmp_path, capsys):
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    path.write_bytes(b'3\n\xff\xfe\n')
    with pytest.raises(Exception) as err:
        prepare_ntu.read_skeleton(path)
    assert 'not UTF-8' in str(err.value) and str(path) in str(err.value)


# ---------------------------------------------------------------- faults during a run
def test_diverging_run_keeps_no_results(data_root, tmp_path, capsys):
    argv = run_argv(data_root, tmp_path, '--learning_rate', '1e30', '--epochs', '3')
    message = refused('pretrain', argv, capsys, tmp_path / 'run')
    assert 'loss became' in message or 'non-finite weights' in message


def test_lock_is_released_after_a_run(data_root, tmp_path):
    succeeds('pretrain', run_argv(data_root, tmp_path))
    lock_run_folder(tmp_path / 'run')  # free again
    release_run_folder(tmp_path / 'run')


# ---------------------------------------------------------------- round 3: what a red team still broke
def edited_checkpoint(checkpoint, tmp_path, edit):
    import torch
    ckpt = torch.load(checkpoint / 'last.pth', weights_only=True)
    edit(ckpt)
    path = tmp_path / 'edited.pth'
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize('edit, expected', [
    (lambda c: c.update(args={}), 'stored options lack dataset, hidden_units'),
    (lambda c: c.update(args=[1, 2]), "'args' and 'model' must be mappings"),
    (lambda c: c['args'].update(dataset='imagenet'), "(stored options): option dataset: 'imagenet' is not one of"),
    (lambda c: c['args'].pop('hidden_units'), 'stored options lack hidden_units'),
    (lambda c: c['args'].update(hidden_units='wide'), 'option hidden_units:'),
    (lambda c: c['model']['encoder_q.bi_lstm.weight_ih_l0'].fill_(float('nan')), 'encoder weights are not finite'),
])
@pytest.mark.parametrize('mode', ['eval', 'knn', 'semi'])
def test_checkpoint_with_odd_stored_options_or_weights(checkpoint, tmp_path, capsys, edit, expected, mode):
    path = edited_checkpoint(checkpoint, tmp_path, edit)
    message = refused('lineval', ['--mode', mode, '--model_path', str(path), '--out_dir', str(tmp_path / 'run')],
                      capsys, tmp_path / 'run')
    assert expected in message and str(path) in message


def test_resuming_non_finite_weights_names_the_checkpoint(checkpoint, data_root, tmp_path, capsys):
    path = edited_checkpoint(checkpoint, tmp_path, lambda c: c['model']['encoder_q.bi_lstm.weight_hh_l0'].fill_(
        float('inf')))
    message = refused('pretrain', run_argv(data_root, tmp_path, '--resume', str(path), '--epochs', '2'), capsys,
                      tmp_path / 'run')
    assert f'{path}: cannot resume, its weights are not finite' in message


def test_missing_skeletons_list_that_is_not_text(tmp_path, capsys):
    raw = tmp_path / 'raw'
    raw.mkdir()
    write_skeleton(raw / 'S001C001P001R001A001.skeleton', 3)
    (tmp_path / 'missing.txt').write_bytes(b'\x89PNG\r\n\x1a\n\xff\xfe')
    argv = ['--skeleton_dir', str(raw), '--benchmark', 'ntu60_xsub', '--out_dir', str(tmp_path / 'out'),
            '--missing_list', str(tmp_path / 'missing.txt')]
    assert f"{tmp_path / 'missing.txt'}: not UTF-8" in refused('prepare_ntu', argv, capsys)


def test_prepared_arrays_with_an_empty_split(tmp_path, capsys):
    root = ntu_root(tmp_path)
    folder = root / 'ntu' / 'ntu60_xsub'
    np.save(folder / 'val_data.npy', np.zeros((0, 3, 20, 25, 2), np.float32))
    (folder / 'val_label.pkl').write_bytes(pickle.dumps(([], [])))
    message = refused('pretrain', run_argv(root, tmp_path, '--dataset', 'ntu60_xsub', '--batch_size', '4'), capsys,
                      tmp_path / 'run')
    assert f"{folder / 'val_data.npy'}: no samples" in message


def test_disk_full_while_saving_keeps_the_previous_checkpoint(data_root, tmp_path, capsys, monkeypatch):
    import builtins
    import torch
    import runs
    succeeds('pretrain', run_argv(data_root, tmp_path))
    (tmp_path / 'run' / 'results.json').unlink()
    before = (tmp_path / 'run' / 'last.pth').read_bytes()
    full = lambda path, mode='r', *a, **k: builtins.open('/dev/full' if str(path).endswith('.pth.partial') else path, mode, *a, **k)  # noqa: E731
    monkeypatch.setattr(runs, 'open', full, raising=False)
    message = refused('pretrain', run_argv(data_root, tmp_path, '--resume', 'auto', '--epochs', '3'), capsys,
                      tmp_path / 'run')
    assert 'No space left on device' in message and 'the previous file is kept' in message and '.pth' in message
    assert (tmp_path / 'run' / 'last.pth').read_bytes() == before
    assert torch.load(tmp_path / 'run' / 'last.pth', weights_only=True)['epoch'] == 2


@pytest.mark.parametrize('value', ['1e20', '1e38', '-250'])
def test_implausible_sbu_coordinates_name_the_file_and_frame(sbu_root, tmp_path, capsys, value):
    path = sbu_file(sbu_root)
    lines = path.read_text().splitlines()
    fields = lines[2].split(',')
    fields[5] = value
    lines[2] = ','.join(fields)
    path.write_text('\n'.join(lines) + '\n')
    message = refused('pretrain', run_argv(sbu_root, tmp_path), capsys, tmp_path / 'run')
    assert f'{path}: frame 2 contains coordinate {float(value):g} beyond +-100' in message


def test_implausible_nucla_coordinates_name_the_file(nucla_root, tmp_path, capsys):
    content = {'label': 1, 'skeletons': [[[0.1, 0.2, 3.0]] * 20] * 4 + [[[0.1, 1e20, 3.0]] * 20]}
    path = replace_nucla(nucla_root, 'a01_s01_e00_v01.json', content)
    message = refused('pretrain', run_argv(nucla_root, tmp_path, '--dataset', 'ucla'), capsys, tmp_path / 'run')
    assert f'{path}: frame 4 contains coordinate 1e+20 beyond +-100' in message
