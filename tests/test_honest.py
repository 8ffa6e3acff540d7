"""Honest evaluation and the strong recipe: leakage-free validation splits, selection that never sees
the test split, a deterministic probe, body normalisation, and a faithful default that did not move."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dataset
import evaluation
import linEval
import preprocess
import pretrain_and_linEval as pretrain
import pretraining
import probes
import training
from dataset import PRESETS, load_split, validation_split
from model import LSTMEncoder, MomentumContrast
from recipes import RECIPES, STRONG

REFERENCE = json.loads((Path(__file__).parent / 'faithful_reference.json').read_text())


def test_nucla_validation_is_cross_view_then_cross_subject(data_root, cache_dir):
    _, labels, groups = load_split('ucla', data_root, 'train', test_view=3, cache_dir=cache_dir, with_groups=True)
    names = sorted(p.name for p in (data_root / 'nucla' / 'all_sqe').glob('*.json') if '_v03' not in p.name)
    assert groups.tolist() == [[int(n[-7:-5]), int(n[5:7])] for n in names]  # (view, subject) of every file
    for index, held_view in ((0, 1), (1, 2)):
        train, val = validation_split(labels, groups, seed=1, index=index)
        assert set(groups[val, 0]) == {held_view} and held_view not in set(groups[train, 0])  # like the test view
        inner_train, inner_val = validation_split(labels[train], groups[train], seed=1)  # one view left: subjects
        assert not set(groups[train][inner_train, 1]) & set(groups[train][inner_val, 1]) and len(inner_val) > 50
    train, val = validation_split(labels, groups, seed=2)
    assert len(set(groups[val, 0])) == 1 and len(train) + len(val) == len(labels)


def test_probes_choose_cross_view_on_nucla_both_ways_and_keep_the_held_out_fold_elsewhere(data_root, cache_dir):
    _, labels, groups = load_split('ucla', data_root, 'train', test_view=3, cache_dir=cache_dir, with_groups=True)
    folds = dataset.probe_folds(labels, groups, 1, cross_view=True)
    assert [(set(groups[fit, 0]), set(groups[held, 0])) for fit, held in folds] == [({2}, {1}), ({1}, {2})]
    one_view = np.flatnonzero(groups[:, 0] == 1)  # a validation run's training part: subjects, as before
    [(fit, held)] = dataset.probe_folds(labels[one_view], groups[one_view], 1, cross_view=True)
    assert not set(groups[one_view][fit, 1]) & set(groups[one_view][held, 1])
    _, sbu_labels, sbu_folds = load_split('sbu', data_root, 'train', fold=0, cache_dir=cache_dir, with_groups=True)
    [(fit, held)] = dataset.probe_folds(sbu_labels, sbu_folds, 1, cross_view=PRESETS['sbu'].get('cross_view', False))
    assert len(set(sbu_folds[held])) == 1 and not set(sbu_folds[fit]) & set(sbu_folds[held])


def test_sbu_validation_is_one_whole_training_fold(data_root, cache_dir):
    for fold in range(5):
        _, labels, folds = load_split('sbu', data_root, 'train', fold=fold, cache_dir=cache_dir, with_groups=True)
        _, val = validation_split(labels, folds, seed=1)
        (held,) = set(folds[val])
        assert held != fold and np.array_equal(val, np.flatnonzero(folds == held))
        inner = [set(folds[validation_split(labels, folds, 1, index=g)[1]]) for g in range(4)]
        assert inner == [{f} for f in range(5) if f != fold]  # nested: the four other folds in turn


def test_validation_mode_never_reads_the_test_split(data_root, cache_dir, monkeypatch):
    real = dataset.load_split

    def guarded(*args, **kwargs):
        assert args[2] == 'train', 'the test split was read'
        return real(*args, **kwargs)
    monkeypatch.setattr(dataset, 'load_split', guarded)
    opts = pretrain.parse_option(['--dataset', 'ucla', '--data_root', str(data_root), '--test_view', '3',
                                  '--eval_split', 'validation', '--preprocess', 'body', '--selected_frames', '20'])
    ((train_x, train_y), (val_x, val_y)), [(fit, held)] = dataset.load_splits(opts)
    assert train_x.shape[1:] == val_x.shape[1:] == (3, 20, 20, 1)
    assert len(train_y) + len(val_y) == 1020 and sorted([*fit, *held]) == list(range(len(train_y)))


@pytest.mark.parametrize('name', ['sbu', 'ucla'])
def test_no_test_sequence_reaches_pretraining_probes_raw_floor_or_semi_in_validation_runs(name, data_root, tmp_path,
                                                                                            monkeypatch):
    real = dataset.load_split

    def guarded(*args, **kwargs):
        assert args[2] == 'train', 'the test split was loaded'
        return real(*args, **kwargs)
    monkeypatch.setattr(dataset, 'load_split', guarded)
    common = ['--dataset', name, '--data_root', str(data_root), '--eval_split', 'validation', '--val_group', '1',
              '--quiet', '--no_plots', '--threads', '1', *(['--test_view', '3'] if name == 'ucla' else [])]
    short = ['--epochs', '1', '--lin_epochs', '1']
    learned = pretrain.main(pretrain.parse_option(common + short + ['--recipe', 'strong', '--out_dir', str(tmp_path / 'p')]))
    raw = linEval.main(linEval.parse_option_lin_eval(['--mode', 'raw', '--recipe', 'strong', *common,
                                                      '--out_dir', str(tmp_path / 'r')]))
    semi = linEval.main(linEval.parse_option_lin_eval(['--mode', 'semi', '--semi_rate', '0.1', '--model_path',
                                                       learned['model_path'], *short, '--quiet', '--no_plots',
                                                       '--threads', '1', '--out_dir', str(tmp_path / 's')]))
    for result in (learned, raw, semi):
        assert result['eval_split'] == 'validation' and np.isfinite(result['top1'])
    assert learned['samples'] == raw['samples'] == semi['samples']  # the same held-out part of the training split


def _features(seed, n=240, classes=4, dim=12):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return (rng.normal(size=(n, dim)) + 1.5 * np.eye(classes, dim)[y]).astype(np.float32), y


def test_selection_does_not_depend_on_test_labels():
    train, test = _features(0), _features(1)
    folds = [dataset.validation_split(train[1], np.arange(len(train[1])) // 40, 1)]  # one of six groups held out
    shuffled = (test[0], np.random.default_rng(0).permutation(test[1]))
    a, b = probes.honest_probes(train, test, folds), probes.honest_probes(train, shuffled, folds)
    for key in ('probe_C', 'knn_selected_k', 'probe_validation'):
        assert a[key] == b[key]
    assert a['probe_top1'] != b['probe_top1']  # the test labels do reach the (single) final evaluation
    assert a['probe_top1'] > 60


def test_lbfgs_probe_is_deterministic():
    train, test = _features(0), _features(1)
    first = probes.lbfgs_probe(*train, 0.1)(test[0])
    again = probes.lbfgs_probe(*_features(0), 0.1)(test[0])
    assert np.array_equal(first, again)


def test_faithful_default_is_unchanged(data_root, tmp_path, monkeypatch):
    options = vars(pretrain.parse_option([]))
    for key, value in REFERENCE['options'].items():
        assert options[key] == value, key
    new = dict(recipe='faithful', rnn='lstm', bidirectional=False, motion=False, preprocess='none', head_dim=0,
               optimizer='sgd', eval_split='test', input_chain='subtract')
    assert {k: options[k] for k in new} == new
    losses, real = [], training.F.cross_entropy
    monkeypatch.setattr(training.F, 'cross_entropy', lambda *a, **k: losses.append(real(*a, **k)) or losses[-1])
    pretrain.main(pretrain.parse_option(['--data_root', str(data_root), '--epochs', '1', '--lin_epochs', '1',
                                         '--out_dir', str(tmp_path), '--quiet', '--no_plots', '--no_probes']))
    # 8 warm-up steps (forward passes) and the first 4 update steps; later steps are not compared: CPU
    # types round differently and the official unnormalised logits amplify that (note in the JSON)
    np.testing.assert_allclose([loss.item() for loss in losses[:12]], REFERENCE['step_losses'], rtol=1e-4)


def test_strong_recipe_resolves_and_command_line_wins():
    args = pretrain.parse_option(['--recipe', 'strong', '--dataset', 'ucla', '--nce_t', '0.2'])
    for key, value in STRONG.items():
        assert getattr(args, key) == (0.2 if key == 'nce_t' else value), key
    assert pretrain.parse_option(['--recipe', 'corrected']).l2norm


def test_body_normalisation_axes_scale_and_padding(data_root, cache_dir):
    x, _ = load_split('ucla', data_root, 'val', test_view=3, cache_dir=cache_dir)
    x = np.asarray(x[:40])
    lengths = preprocess.valid_lengths(x)
    centre, lower, upper, left, right = PRESETS['ucla']['body_joints']
    out = preprocess.normalise_body(x, lengths, PRESETS['ucla']['body_joints'])
    first = out[:, :, 0, :, 0]
    np.testing.assert_allclose(first[:, :, centre], 0, atol=1e-5)
    spine, shoulders = first[:, :, upper] - first[:, :, lower], first[:, :, left] - first[:, :, right]
    np.testing.assert_allclose(spine[:, [0, 2]], 0, atol=1e-4)
    assert (spine[:, 1] > 0).all() and (shoulders[:, 0] > 0).all()
    np.testing.assert_allclose(shoulders[:, 2], 0, atol=1e-4)
    length_of = np.linalg.norm(out[:, :, :, upper, 0] - out[:, :, :, lower, 0], axis=1)
    real = np.arange(x.shape[2]) < lengths[:, None]
    np.testing.assert_allclose((length_of * real).sum(1) / real.sum(1), 1, rtol=1e-4)
    assert not out[~real[:, None, :, None, None].repeat(3, 1).repeat(20, 3)[:, :, :, :, 0]].any()
    fixed = preprocess.resample_real_frames(out, lengths, 16)
    np.testing.assert_allclose(fixed[:, :, 0], out[:, :, 0], atol=1e-6)
    np.testing.assert_allclose(fixed[:, :, -1], out[np.arange(len(out)), :, lengths - 1], atol=1e-5)


def test_view_input_hips_spine_axes_minmax_and_stride(data_root, cache_dir):
    x, _ = load_split('ucla', data_root, 'val', test_view=3, cache_dir=cache_dir)
    x = np.asarray(x[:40])
    lengths = preprocess.valid_lengths(x)
    preset = PRESETS['ucla']
    _, lower, upper, _, _ = preset['body_joints']
    left, right = preset['hip_joints']
    out = preprocess.view_minmax(x, lengths, preset['body_joints'], preset['hip_joints'])
    # the first frame's spine points along +y and its hips along +x (z = 0), before min-max per axis
    rotation = preprocess.body_axes(x[:, :, 0, :, 0], (None, lower, upper, left, right))
    first = np.einsum('nij,njv->niv', rotation, x[:, :, 0, :, 0])
    spine, hips = first[:, :, upper] - first[:, :, lower], first[:, :, left] - first[:, :, right]
    assert (spine[:, 1] > 0).all() and (hips[:, 0] > 0).all()
    np.testing.assert_allclose(hips[:, [1, 2]][:, 1], 0, atol=1e-4)
    real = np.arange(x.shape[2]) < lengths[:, None]
    for n in range(len(x)):  # every axis spans exactly [-1, 1] over the real frames; padding stays zero
        seq = out[n][:, real[n]]
        np.testing.assert_allclose(seq.min(axis=(1, 2, 3)), -1, atol=1e-5)
        np.testing.assert_allclose(seq.max(axis=(1, 2, 3)), 1, atol=1e-5)
        assert not out[n][:, ~real[n]].any()
    fixed = preprocess.subsample_real_frames(out, lengths, 50)
    for n, length in enumerate(lengths):
        stride = -(-length // 50)
        kept = -(-length // stride)
        assert kept <= 50 and not fixed[n, :, kept:].any()
        np.testing.assert_array_equal(fixed[n, :, :kept], out[n, :, :length:stride])


def test_two_person_normalisation_uses_the_first_person():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 10, 15, 2)).astype(np.float32)
    x[1, :, 6:] = 0  # padding
    x[1, :, :, :, 1] = 0  # absent second person
    out = preprocess.normalise_split(x, PRESETS['sbu']['body_joints'], 10)
    np.testing.assert_allclose(out[:, :, 0, 2, 0], 0, atol=1e-5)
    assert not out[1, :, :, :, 1].any() and np.isfinite(out).all()


def test_raw_floor_sees_the_frames_and_motion_the_encoder_sees():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 12, 5, 1)).astype(np.float32)
    y = np.arange(4)
    opts = pretrain.parse_option(['--selected_frames', '10', '--preprocess', 'body', '--motion'])
    [(features, labels)] = evaluation.raw_features([(x, y)], opts)
    frames = x[:, :, :10]
    motion = np.diff(frames, axis=2, prepend=frames[:, :, :1])
    np.testing.assert_allclose(features.numpy(), np.concatenate([frames, motion], 1).reshape(4, -1), rtol=1e-6)
    assert labels.tolist() == y.tolist()


def test_encoder_options_and_projection_head():
    enc = LSTMEncoder(6, 8, cell='gru', bidirectional=True, motion=True)
    assert enc(torch.randn(3, 3, 7, 2, 1)).shape == (3, 16) and enc.bi_lstm.input_size == 12
    model = MomentumContrast(enc, queue_size=10, l2norm=True, head_dim=4)
    assert model.queue.shape == (10, 4)
    with torch.no_grad():
        for p in model.query_parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.key_parameters()]
    model.momentum_update()
    assert len(before) == len(model.query_parameters()) and all(
        torch.allclose(p, 0.999 * b + 0.001 * q) for p, b, q in zip(model.key_parameters(), before, model.query_parameters()))


def test_strong_recipe_end_to_end(data_root, tmp_path):
    result = pretrain.main(pretrain.parse_option(
        ['--recipe', 'strong', '--data_root', str(data_root), '--epochs', '2', '--lin_epochs', '2',
         '--out_dir', str(tmp_path), '--quiet', '--no_plots']))
    assert result['select'] == 'last' and result['probe_C'] in probes.PROBE_CS
    assert result['knn_selected_k'] in probes.KNN_KS and result['probe_top1'] > 100 / 8 + 10  # well above chance
    args = json.loads((tmp_path / 'args.json').read_text())
    assert all(args[k] == v for k, v in STRONG.items() if k not in ('epochs',)) and args['epochs'] == 2


INPUT = ('selected_frames', 'preprocess', 'input_chain', 'motion', 'sbu_true_depth', 'masked_mean')


@pytest.mark.parametrize('recipe', sorted(RECIPES))
@pytest.mark.parametrize('name', sorted(PRESETS))
def test_raw_floor_encoder_and_supervised_network_see_the_same_input(recipe, name):
    import linEval
    encoder = pretrain.parse_option(['--recipe', recipe, '--dataset', name])
    raw = linEval.parse_option_lin_eval(['--mode', 'raw', '--recipe', recipe, '--dataset', name])
    supervised = linEval.parse_option_lin_eval(['--mode', 'supervise', '--recipe', recipe, '--dataset', name])
    assert {k: getattr(raw, k) for k in INPUT} == {k: getattr(encoder, k) for k in INPUT}
    if recipe == 'faithful':  # docs/official.md §5: the official supervised network for every dataset
        assert (supervised.hidden_units, supervised.lstm_layer, supervised.selected_frames) == (256, 1, 150)
    else:
        assert {k: getattr(supervised, k) for k in INPUT + ('hidden_units', 'lstm_layer')} == \
            {k: getattr(encoder, k) for k in INPUT + ('hidden_units', 'lstm_layer')}
    preset = PRESETS[name]
    x = np.random.default_rng(0).normal(size=(3, 3, 200, preset['joints'], preset['persons'])).astype(np.float32)
    if encoder.preprocess == 'body':
        x = preprocess.normalise_split(x, preset['body_joints'], encoder.selected_frames)
    seen = evaluation.eval_datasets([(x, np.arange(3))], encoder)[0][0][0]  # one sample as the encoder reads it
    [(flat, _)] = evaluation.raw_features([(x, np.arange(3))], raw)
    assert seen.shape == (3, encoder.selected_frames, preset['joints'], preset['persons'])
    assert flat.shape[1] == seen.numel() * (2 if encoder.motion else 1)
    np.testing.assert_array_equal(flat[0, :seen.numel()].reshape(seen.shape).numpy(), seen.numpy())
    built = pretraining.build_encoder(encoder)  # its RNNs together read what the raw floor reads
    rnns = [built.bi_lstm] + ([built.velocity_rnn] if built.two_stream else [])
    assert sum(rnn.input_size for rnn in rnns) == 3 * preset['joints'] * preset['persons'] * (2 if encoder.motion else 1)


def test_pretraining_views_are_centred_as_the_evaluation_input_whatever_the_recipe():
    x = torch.randn(4, 3, 60, 15, 2) + 5
    for argv in (['--recipe', 'strong', '--preprocess', 'none'], ['--recipe', 'strong1', '--preprocess', 'none'], []):
        opts = pretrain.parse_option(argv)
        views = pretraining.Views(opts, torch.device('cpu'))
        views.set_epoch(0)
        for view in views(x):  # the evaluation input centres joint 1 in every frame: so does every view
            assert view[:, :, :, 1].abs().max() == 0, argv
