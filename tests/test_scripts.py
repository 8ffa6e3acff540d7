"""End to end on real SBU: pretrain, then linEval.py eval / semi / supervise; option handling; errors."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import evaluation
import linEval
import pretrain_and_linEval as pretrain
from conftest import ROOT
from pretraining import load_encoder
from runs import CheckpointError, load_checkpoint

RESULT_KEYS = {'dataset', 'mode', 'recipe', 'eval_split', 'seed', 'samples', 'top1', 'seconds', 'options',
               'provenance'}


def test_command_line_beats_presets():
    args = pretrain.parse_option([])
    assert (args.dataset, args.hidden_units, args.lstm_layer, args.selected_frames, args.nce_k, args.fold) == \
        ('sbu', 128, 2, 40, 200, 0)
    args = pretrain.parse_option(['--dataset', 'ucla', '--hidden_units', '64', '--nce_k', '100', '--test_view', '3'])
    assert (args.hidden_units, args.lstm_layer, args.selected_frames, args.nce_k, args.test_view) == (64, 1, 60, 100, 3)
    args = pretrain.parse_option(['--dataset', 'ntu60_xsub', '--recipe', 'corrected'])
    assert args.nce_k == 16384 and args.lr_decay_epochs == '30,70' and args.l2norm and args.select == 'last'


@pytest.fixture(scope='module')
def pretrained(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('pretrain')
    args = pretrain.parse_option(['--data_root', str(data_root), '--epochs', '2', '--lin_epochs', '3',
                                  '--out_dir', str(out), '--quiet', '--threads', '1'])
    return out, pretrain.main(args)


def test_pretrain_writes_checkpoints_and_results(pretrained):
    out, result = pretrained
    assert {p.name for p in out.iterdir()} >= {'args.json', 'log.txt', 'results.json', 'last.pth',
                                               'ckpt_epoch_2.pth', 'ckpt_epoch_3.pth'}
    saved = json.loads((out / 'results.json').read_text())
    assert RESULT_KEYS <= set(saved) and saved['top1'] == result['top1'] == saved['top1_best']  # official: best epoch
    assert saved['samples'] == {'train': 227, 'test': 55} and saved['options']['epochs'] == 2
    assert saved['model_path'].endswith('ckpt_epoch_2.pth')  # official: the epoch-`epochs` checkpoint
    assert 'epochs' not in saved and 'lin_epochs' not in saved  # options live under 'options' only
    ckpt = torch.load(out / 'ckpt_epoch_3.pth', weights_only=True)
    assert ckpt['epoch'] == 3 and ckpt['args']['dataset'] == 'sbu' and ckpt['model']['queue'].shape == (200, 128)
    assert json.loads((out / 'args.json').read_text())['nce_k'] == 200


@pytest.mark.parametrize('mode, extra', [('eval', []), ('knn', ['--knn_k', '3']), ('semi', ['--semi_rate', '0.1', '--lin_epochs', '2']),
                                         ('semi', ['--semi_rate', '0.4', '--semi_sampling', 'random',
                                                   '--semi_stage2', 'subset', '--lin_epochs', '2'])])
def test_lineval_accepts_checkpoint(pretrained, data_root, tmp_path, mode, extra):
    out, _ = pretrained
    args = linEval.parse_option_lin_eval(['--mode', mode, '--model_path', str(out / 'ckpt_epoch_2.pth'),
                                          '--data_root', str(data_root), '--epochs' if mode == 'semi' else '--lin_epochs',
                                          '2', '--out_dir', str(tmp_path), '--quiet'] + extra)
    result = linEval.main(args)
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert RESULT_KEYS <= set(saved) and saved['mode'] == mode and saved['top1'] == result['top1']
    assert json.loads((tmp_path / 'args.json').read_text())['hidden_units'] == 128
    assert len(saved.get('history', [])) == (0 if mode == 'knn' else 2)
    if mode == 'semi':
        assert saved['labelled'] == 8 * int(float(extra[1]) * 227 / 8)
        assert 'nan' not in (tmp_path / 'log.txt').read_text()  # no NaN loss or accuracy in either stage
    if mode in ('eval', 'knn'):
        assert saved['knn_k'] == (3 if mode == 'knn' else 1) and saved['knn_top1'] > 100 / 8  # above chance


def test_supervise_from_scratch(data_root, tmp_path):
    args = linEval.parse_option_lin_eval(['--mode', 'supervise', '--dataset', 'sbu', '--data_root', str(data_root),
                                          '--epochs', '2', '--fold', '1', '--out_dir', str(tmp_path), '--quiet'])
    result = linEval.main(args)
    assert result['options']['epochs'] == 2 and len(result['history']) == 2
    saved = json.loads((tmp_path / 'args.json').read_text())
    assert saved['hidden_units'] == 256 and saved['selected_frames'] == 150 and saved['fold'] == 1  # docs/official.md §5
    assert 'supervise on sbu: 230 train / 52 test samples' in (tmp_path / 'log.txt').read_text()
    assert torch.load(tmp_path / 'supervised.pth', weights_only=True)['model']['classifier.weight'].shape == (8, 256)


def test_peer_ingredients_run_in_every_mode(data_root, tmp_path):
    """The input pipeline, read-out, reconstruction and two streams, together: pretraining, then a
    reload of its two-stream encoder for linear evaluation and KNN, the raw floor and supervised."""
    ingredients = ['--preprocess', 'view', '--readout', 'last', '--motion', '--two_stream', '--bidirectional',
                   '--hidden_units', '16', '--lstm_layer', '1']
    common = ['--data_root', str(data_root), '--quiet', '--no_plots', '--threads', '1']
    result = pretrain.main(pretrain.parse_option([*common, *ingredients, '--recon_weight', '1', '--recon_consistency', '1',
                                                  '--epochs', '1', '--lin_epochs', '1', '--l2norm', '--no_probes', '--out_dir',
                                                  str(tmp_path / 'pre')]))
    model = torch.load(result['model_path'], weights_only=True)['model']
    assert model['encoder_q.velocity_rnn.weight_hh_l0_reverse'].shape == (64, 16) and 'decoder.gru.weight_hh_l0' in model
    encoder = load_encoder(load_checkpoint(result['model_path']), result['model_path'])
    assert encoder.two_stream and encoder.out_dim == 64 and encoder.pooling == 'final'
    for mode in ('knn', 'raw', 'supervise'):
        argv = ['--mode', mode, *common, '--out_dir', str(tmp_path / mode), *(['--epochs', '1'] if mode == 'supervise' else [])]
        argv += ['--model_path', result['model_path']] if mode == 'knn' else ingredients
        assert linEval.main(linEval.parse_option_lin_eval(argv))['top1'] > 100 / 8  # above chance on SBU


def test_semi_subset_sizes():
    labels = np.repeat(np.arange(60), 40091 // 60 + 1)[:40091]
    for rate, per_class in ((0.01, 6), (0.1, 66), (0.5, 334)):
        chosen = evaluation.semi_subset(labels, rate, 60, 'first', 0)
        assert len(chosen) == 60 * per_class and np.array_equal(chosen[:per_class], np.arange(per_class))
    random = evaluation.semi_subset(labels, 0.1, 60, 'random', 0)
    assert len(random) == 60 * 66 and not np.array_equal(random, evaluation.semi_subset(labels, 0.1, 60, 'first', 0))
    assert np.array_equal(random, evaluation.semi_subset(labels, 0.1, 60, 'random', 0))


def test_checkpoint_of_another_dataset_or_size(pretrained, data_root):
    out, _ = pretrained
    path = str(out / 'ckpt_epoch_2.pth')
    with pytest.raises(CheckpointError, match='dataset=sbu, but --dataset ucla'):
        linEval.main(linEval.parse_option_lin_eval(['--model_path', path, '--dataset', 'ucla']))
    with pytest.raises(CheckpointError, match='hidden_units=128, but --hidden_units 256'):
        linEval.main(linEval.parse_option_lin_eval(['--model_path', path, '--hidden_units', '256']))


def run(script, *argv, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / script), *argv], capture_output=True, text=True, cwd=cwd)


def test_truncated_checkpoint_exits_with_message(pretrained, tmp_path):
    out, _ = pretrained
    broken = tmp_path / 'broken.pth'
    broken.write_bytes((out / 'ckpt_epoch_2.pth').read_bytes()[:5000])
    proc = run('linEval.py', '--model_path', str(broken), '--out_dir', str(tmp_path / 'run'))
    assert proc.returncode != 0 and f'error: {broken}: not a readable checkpoint' in proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'run' / 'results.json').exists()


def test_missing_data_exits_with_one_message(tmp_path):
    proc = run('pretrain_and_linEval.py', '--data_root', str(tmp_path / 'nowhere'), '--out_dir', str(tmp_path / 'run'))
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().count('\n') == 0 and 'sbu data not found' in proc.stderr
    assert not (tmp_path / 'run').exists()


def test_bad_options_exit_cleanly(data_root, tmp_path):
    for rate in ('1.5', '0'):
        proc = run('linEval.py', '--mode', 'semi', '--model_path', 'x.pth', '--semi_rate', rate)
        assert proc.returncode == 2 and f"argument --semi_rate: '{rate}' is not a number in (0, 1]" in proc.stderr
    proc = run('pretrain_and_linEval.py', '--data_root', str(data_root), '--batch_size', '500',
               '--out_dir', str(tmp_path / 'run'))
    assert proc.returncode != 0 and '--batch_size 500 is larger than the 227 training samples' in proc.stderr


def test_broken_data_file_through_the_command_line(data_root, tmp_path):
    import shutil
    shutil.copytree(data_root / 'sbu', tmp_path / 'sbu')
    broken = tmp_path / 'sbu' / 'raw' / 's01s03' / '02' / '001' / 'skeleton_pos.txt'
    broken.write_text(broken.read_text().replace(',', ';', 3))
    proc = run('pretrain_and_linEval.py', '--data_root', str(tmp_path), '--out_dir', str(tmp_path / 'run'),
               '--cache_dir', str(tmp_path / 'cache'))
    assert proc.returncode != 0 and f'error: {broken}:1: expected 91' in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'run').exists()


def test_knn_separates_two_clusters():
    rng = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0, 0], [0, 5.0, 0]])
    labels = torch.arange(2).repeat_interleave(50)
    features = [(centres[labels] + torch.randn(100, 3, generator=rng), labels) for _ in range(2)]
    assert evaluation.knn_top1(features, 5) == 100.0
    shuffled = [(f, labels[torch.randperm(100, generator=rng)]) for f, _ in features]
    assert evaluation.knn_top1(shuffled, 5) < 80


def test_plots_metrics_and_config_round_trip(pretrained, data_root, tmp_path):
    out, _ = pretrained  # the fixture ran with plots on
    for name in ('loss.png', 'accuracy.png', 'tsne.png', 'confusion.png'):
        assert (out / name).stat().st_size > 5000 and (out / name).read_bytes()[:4] == b'\x89PNG'
    rows = (out / 'metrics.csv').read_text().splitlines()
    assert rows[0] == 'epoch,step,loss,lr,pos_logit,contrast_top1,queue_fill,seconds' and len(rows) == 1 + 3
    saved = json.loads((out / 'args.json').read_text())
    again = vars(pretrain.parse_option(['--config', str(out / 'args.json')]))
    assert {k: v for k, v in again.items() if k not in ('config', 'out_dir')} == \
        {k: v for k, v in saved.items() if k not in ('config', 'out_dir', 'provenance')}
    assert pretrain.parse_option(['--config', str(out / 'args.json'), '--epochs', '7']).epochs == 7
    ucla = dict(saved, dataset='ucla', hidden_units=64)
    (tmp_path / 'ucla.json').write_text(json.dumps(ucla))
    assert pretrain.parse_option(['--config', str(tmp_path / 'ucla.json')]).hidden_units == 64


def test_viewer_draws_real_sample(data_root, tmp_path):
    import viewer
    out = tmp_path / 'views.png'
    viewer.main(viewer.parse_option(['--data_root', str(data_root), '--index', '5', '--views', '3', '--out', str(out)]))
    assert out.stat().st_size > 10000


def test_viewer_draws_two_centred_persons_side_by_side(data_root, cache_dir):
    import viewer
    import augment
    from dataset import load_split
    data, _ = load_split('sbu', str(data_root), 'train', 0, None, cache_dir=cache_dir)
    x = augment.center(torch.tensor(np.asarray(data[50:51], dtype=np.float32)))[0].numpy()
    assert np.abs(x[:, :, :, 0] - x[:, :, :, 1]).mean() < np.abs(x).mean()  # centring stacks the two persons
    apart = viewer.side_by_side(x)
    real = x.any(axis=(0, 2))
    assert real[:, 1].any() and (apart[:, ~real[:, 0], :, 0] == 0).all()  # padding stays padding
    left, right = apart[0, real[:, 0], :, 0], apart[0, real[:, 1], :, 1]
    assert left.max() < right.min()  # person 2 entirely to the right of person 1
    np.testing.assert_array_equal(apart[1:], x[1:])


def test_every_option_has_help():
    import argparse
    for module, build in ((pretrain, 'parse_option'), (linEval, 'parse_option_lin_eval')):
        parsers = []
        real = argparse.ArgumentParser.parse_args
        argparse.ArgumentParser.parse_args = lambda self, *a, **k: parsers.append(self) or real(self, *a, **k)
        try:
            getattr(module, build)(['--mode', 'supervise'] if module is linEval else [])
        finally:
            argparse.ArgumentParser.parse_args = real
        missing = [a.dest for a in parsers[-1]._actions if a.help is None]
        assert not missing, f'{build}: options without help: {missing}'


def test_evaluation_keeps_the_checkpoints_data_choices(data_root, tmp_path):
    pretrain.main(pretrain.parse_option(['--data_root', str(data_root), '--epochs', '1', '--lin_epochs', '1',
                                         '--sbu_true_depth', '--masked_mean', '--out_dir', str(tmp_path),
                                         '--quiet', '--no_plots']))
    opts = linEval.parse_option_lin_eval(['--mode', 'semi', '--model_path', str(tmp_path / 'ckpt_epoch_1.pth')])
    assert opts.sbu_true_depth is True and opts.masked_mean is True and opts.semi_stage2 == 'full'
    assert load_encoder(load_checkpoint(opts.model_path), opts.model_path).pooling == 'masked_mean'
    corrected = pretrain.parse_option(['--recipe', 'corrected', '--data_root', str(data_root), '--epochs', '1', '--lin_epochs', '1',
                                       '--out_dir', str(tmp_path / 'corrected'), '--quiet', '--no_plots', '--no_probes'])
    pretrain.main(corrected)
    opts = linEval.parse_option_lin_eval(['--mode', 'semi', '--model_path', str(tmp_path / 'corrected' / 'last.pth')])
    assert opts.recipe == 'corrected' and opts.select == 'last' and opts.semi_stage2 == 'subset'  # the recipe's


def test_semi_keeps_one_labelled_sample_per_class_at_the_default_rate():
    labels = np.repeat(np.arange(8), 28)  # SBU-sized: 0.01 * 224 / 8 < 1
    assert np.bincount(labels[evaluation.semi_subset(labels, 0.01, 8, 'first', 0)]).tolist() == [1] * 8


def test_lineval_remembers_the_checkpoint_from_another_directory(pretrained, tmp_path, monkeypatch, capsys):
    out, _ = pretrained
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('ASCAL_DATA_ROOT', raising=False)
    saved = json.loads((out / 'args.json').read_text())
    args = linEval.parse_option_lin_eval(['--mode', 'eval', '--model_path', str(out / 'ckpt_epoch_2.pth'),
                                          '--seed', '5', '--lin_epochs', '2', '--out_dir', 'eval', '--quiet',
                                          '--no_plots'])
    result = linEval.main(args)
    assert result['seed'] == 5 and result['options']['lin_epochs'] == 2 and len(result['history']) == 2
    log = (tmp_path / 'eval' / 'log.txt').read_text()
    assert f"data_root={saved['data_root']}" in log and 'fold=0' in log
    with pytest.raises(SystemExit):  # the pretraining schedule's name trains nothing here: refused, naming the right one
        linEval.parse_option_lin_eval(['--mode', 'eval', '--model_path', str(out / 'ckpt_epoch_2.pth'), '--epochs', '3'])
    assert '--epochs trains nothing in --mode eval; the linear stage takes --lin_epochs' in capsys.readouterr().err


def test_threads_and_provenance_are_recorded(pretrained):
    out, result = pretrained
    run = json.loads((out / 'args.json').read_text())['provenance']
    for key in ('process_command', 'device', 'device_name', 'threads', 'out_dir', 'python', 'torch', 'numpy',
                'git_commit', 'git_dirty'):
        assert key in run and key in result['provenance']
    assert run['threads'] == 1 and run['device'] == 'cpu' and run['out_dir'] == str(out)
    assert run['process_command'].startswith('python ') and run['torch'] == torch.__version__


def test_saved_linear_head_reproduces_the_last_epoch(pretrained, tmp_path):
    out, result = pretrained
    assert torch.load(out / 'linear_head.pth', weights_only=True)['model']['classifier.weight'].shape == (8, 128)
    args = linEval.parse_option_lin_eval(['--model_path', result['model_path'], '--head_path', str(out / 'linear_head.pth'),
                                          '--out_dir', str(tmp_path / 'head'), '--quiet', '--no_plots'])
    assert linEval.main(args)['top1'] == pytest.approx(result['top1_last'])


def test_set_threads_flushes_denormals():
    import runs
    if not torch.set_flush_denormal(False):
        pytest.skip('this CPU cannot flush denormals')
    tiny = torch.tensor([1e-39])
    assert (tiny * 1.0).item() != 0
    try:
        assert runs.set_threads(1) == 1
        assert (tiny * 1.0).item() == 0
    finally:
        torch.set_flush_denormal(False)


def load_edited(tmp_path, script, old, new):
    """The script with one default edited, as a researcher would, imported from a copy."""
    import importlib.util
    text = (ROOT / script).read_text()
    assert text.count(old) == 1
    path = tmp_path / script
    path.write_text(text.replace(old, new))
    spec = importlib.util.spec_from_file_location(path.stem + '_edited', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_editing_a_default_in_parse_option_takes_effect(tmp_path, capsys):
    edited = load_edited(tmp_path, 'pretrain_and_linEval.py', "'--nce_t', type=positive_float, default=0.06",
                         "'--nce_t', type=positive_float, default=0.07")
    assert edited.parse_option([]).nce_t == 0.07 and pretrain.parse_option([]).nce_t == 0.06
    assert edited.parse_option(['--recipe', 'strong']).nce_t == 0.1  # a recipe still layers above the default
    edited = load_edited(tmp_path, 'linEval.py', "'--semi_rate', type=fraction, default=0.01",
                         "'--semi_rate', type=fraction, default=0.1")
    assert edited.parse_option_lin_eval(['--mode', 'supervise']).semi_rate == 0.1
    edited = load_edited(tmp_path, 'linEval.py', "'--epochs', type=positive_int,", "'--epochs', type=positive_int, default=7,")
    opts = edited.parse_option_lin_eval(['--mode', 'supervise'])  # the mode layer owns --epochs: the edit is named
    assert opts.epochs == 200 and any('default epochs=7' in n and 'mode supervise' in n for n in opts.notes)
    edited = load_edited(tmp_path, 'pretrain_and_linEval.py', "'--nce_k', type=positive_int,",
                         "'--nce_k', type=positive_int, default=64,")
    assert any('default nce_k=64' in n and 'preset sbu (200)' in n for n in edited.parse_option([]).notes)
    assert not pretrain.parse_option([]).notes and edited.parse_option(['--nce_k', '64']).nce_k == 64
    with pytest.raises(SystemExit) as stop:
        pretrain.parse_option(['--recipe', 'strong', '--dataset', 'ucla', '--nce_k', '99', '--show_options'])
    assert stop.value.code == 0
    shown = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()}
    assert shown['nce_t'] == 'strong' and shown['hidden_units'] == 'ucla' and shown['nce_k'] == 'line'
    assert shown['alpha'] == 'default' and shown['input_chain'] == 'derived'


def test_help_shows_every_default(capsys):
    for parse in (pretrain.parse_option, linEval.parse_option_lin_eval):
        with pytest.raises(SystemExit) as stop:
            parse(['--help'])
        assert stop.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    assert '(default: 60)' in text and '(default: 0.06)' in text and '(default: 90)' in text  # epochs, nce_t, lin_epochs


def test_evaluation_modes_record_no_training_schedule_they_do_not_use():
    opts = linEval.parse_option_lin_eval(['--mode', 'raw', '--recipe', 'strong'])
    assert opts.epochs is None and opts.learning_rate is None and opts.optimizer is None  # strong's: 120, 1e-3, adam
    assert linEval.parse_option_lin_eval(['--mode', 'supervise', '--recipe', 'strong']).optimizer == 'adam'


def test_default_threads_follow_the_idle_cpus_and_say_why(monkeypatch):
    import runs
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr(runs, 'available_cpus', lambda: 2)
    for busy, expected in ((0.1, 2), (0.9, 1), (1.6, 1), (3.0, 1)):
        monkeypatch.setattr(runs, 'idle_cpus', lambda busy=busy: (max(1, min(2, 2 - round(busy))), f'{busy} busy'))
        assert runs.choose_threads() == (expected, f'idle CPUs: {busy} busy')
    assert runs.choose_threads(3) == (3, '--threads')
    monkeypatch.setenv('OMP_NUM_THREADS', '5')
    assert runs.choose_threads() == (2, 'OMP_NUM_THREADS')
    monkeypatch.delenv('OMP_NUM_THREADS')
    monkeypatch.undo()
    idle, how = runs.idle_cpus(window=0.05)  # the real reading: a count this process may use, and how it was read
    assert 1 <= idle <= runs.available_cpus() and 'CPUs busy' in how
