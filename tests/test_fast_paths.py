"""The fast paths give what the reference paths give: the batch augmentations have the
distributions of the official per-sample ones (tests/augment_reference.py), cached-feature linear
evaluation equals recomputing features every epoch."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import augment
import augment_reference as reference
import dataset
import evaluation
import pretrain_and_linEval as pretrain
from model import LSTMEncoder

DRAWS = 4000


def test_registries_match():
    assert reference.AUGMENTATIONS.keys() == augment.AUGMENTATIONS.keys()


def shear_matrices(backend):
    """Shear a basis: joints 0, 1, 2 hold e_x, e_y, e_z, so the output columns are S's columns."""
    x = np.zeros((3, 1, 3, 1), np.float32)
    x[[0, 1, 2], 0, [0, 1, 2], 0] = 1
    if backend == 'numpy':
        rng = np.random.default_rng(0)
        return np.stack([reference.shear(x, rng)[:, 0, :, 0] for _ in range(DRAWS)])
    batch = torch.from_numpy(x).expand(DRAWS, -1, -1, -1, -1)
    return augment.shear(batch, torch.Generator().manual_seed(0))[:, :, 0, :, 0].numpy()


def test_shear_matrices_have_the_same_distribution():
    ref, fast = shear_matrices('numpy'), shear_matrices('torch')
    off = ~np.eye(3, dtype=bool)
    for s in (ref, fast):
        assert np.allclose(s[:, ~off], 1) and np.abs(s[:, off]).max() <= 1
        assert np.abs(s[:, off].mean(0)).max() < 0.04  # U(-1, 1): mean 0, variance 1/3
        assert np.abs(s[:, off].var(0) - 1 / 3).max() < 0.03


@pytest.mark.parametrize('name', ['subtract', 'randomFlip', 'shear', 'rotate', 'gausNoise', 'gausFilter',
                                  'zeroOutJoints', 'zeroOutAxis', 'subtract_randomFlip_shear', 'cropResize',
                                  'cropResize:0.5_shear:0.5'])
def test_batch_augmentation_matches_per_sample_moments(name):
    x = np.random.default_rng(1).normal(size=(3, 24, 15, 2)).astype(np.float32)
    oracle, rng = reference.build_transform(name, 20), np.random.default_rng(2)
    ref = np.stack([oracle(x, rng) for _ in range(DRAWS)])
    fast = augment.build_transform(name, 20)(
        torch.from_numpy(x).expand(DRAWS, -1, -1, -1, -1).contiguous(), torch.Generator().manual_seed(3)).numpy()
    assert fast.shape == ref.shape and fast.dtype == ref.dtype
    scale = ref.std()
    assert abs(fast.mean() - ref.mean()) < 0.02 * scale
    assert abs(fast.std() - ref.std()) < 0.02 * scale
    np.testing.assert_allclose(fast.std(0), ref.std(0), atol=0.1 * scale)  # per element
    assert abs((fast == 0).mean() - (ref == 0).mean()) < 0.01


def test_batch_augmentation_is_seeded_and_views_differ():
    x = torch.randn(16, 3, 40, 15, 2)
    views = augment.TwoViews(augment.build_transform('subtract_randomFlip_shear', 40))
    q, k = views(x, torch.Generator().manual_seed(0))
    q2, k2 = views(x, torch.Generator().manual_seed(0))
    assert torch.equal(q, q2) and torch.equal(k, k2) and not torch.allclose(q, k)
    assert not q[:, :, :, 1].any()


def test_cached_features_equal_recomputed_features(data_root):
    opts = pretrain.parse_option(['--data_root', str(data_root), '--lin_epochs', '6', '--quiet'])
    splits, _ = dataset.load_splits(opts)
    results = []
    for features in ('cache', 'recompute'):
        torch.manual_seed(0)
        encoder = LSTMEncoder(90, 128, 2)
        opts.lin_features = features
        results.append(evaluation.linear_evaluation(encoder, splits, opts, torch.device('cpu'), lambda m: None))
    cached, recomputed = results
    for a, b in zip(cached['history'], recomputed['history']):
        assert a['loss'] == pytest.approx(b['loss'], rel=1e-4)
        assert a['top1'] == pytest.approx(b['top1']) and a['top5'] == pytest.approx(b['top5'])


@pytest.mark.parametrize('extra', [['--aug_backend', 'sample'], ['--amp', 'bf16']])
def test_reference_backend_and_amp_run(data_root, tmp_path, extra):
    args = pretrain.parse_option(['--data_root', str(data_root), '--epochs', '1', '--lin_epochs', '1',
                                  '--out_dir', str(tmp_path), '--quiet', *extra])
    pretrain.main(args)
    assert 'queue warm-up' in (tmp_path / 'log.txt').read_text()
    warmup_loss = float((tmp_path / 'metrics.csv').read_text().splitlines()[1].split(',')[2])
    # the batch path's warm-up loss is 7.503 (forward passes of the same initial weights): per-sample
    # draws (other views) and bf16 arithmetic move it by about a percent, a broken path far more
    assert warmup_loss == pytest.approx(7.503, rel=0.03)


def test_synthetic_ntu_benchmark_smoke():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
    import speed
    report = speed.synthetic_ntu(torch.device('cpu'), samples=64, repeats=1)
    assert report['samples'] == 64 and report['array_mb'] == pytest.approx(64 * 3 * 300 * 25 * 2 * 4 / 2 ** 20, 0.01)
    for key in ('pretrain_seq_per_s_reference', 'pretrain_seq_per_s_fast', 'projected_pretrain_hours_fast',
                'feature_extraction_seq_per_s', 'projected_linear_eval_minutes'):
        assert report[key] > 0


def test_memory_map_benchmark_smoke(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
    import speed
    report = speed.ntu_memmap_memory(512, tmp_path, torch.device('cpu'))
    assert report['samples'] == 512 and report['array_mb'] == pytest.approx(512 * 3 * 300 * 25 * 2 * 4 / 2 ** 20, 0.01)
    # read through the page cache: a copy of the 88 MB array in the process's own memory would show here
    assert 0 <= report['anon_memory_growth_mb'] < report['array_mb'] / 2
