"""Kill-and-resume is exact, same seed gives the same run, a diverging loss stops cleanly."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import pretrain_and_linEval as pretrain
import pretraining
import training
from conftest import ROOT
from runs import CheckpointError, read_metrics


def assert_same_checkpoints(a, b):
    ca, cb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert ca['epoch'] == cb['epoch'] and ca['step'] == cb['step']
    assert ca['model'].keys() == cb['model'].keys()
    assert all(torch.equal(ca['model'][k], cb['model'][k]) for k in ca['model'])  # weights, queue, pointer
    sa, sb = ca['optimizer']['state'], cb['optimizer']['state']
    assert all(torch.equal(sa[i]['momentum_buffer'], sb[i]['momentum_buffer']) for i in sa)


def accuracies(out):
    result = json.loads((out / 'results.json').read_text())
    return [result[k] for k in ('top1', 'top5', 'top1_last', 'top5_last')]


def pretrain_cmd(data_root, out, *extra):
    return [sys.executable, str(ROOT / 'pretrain_and_linEval.py'), '--data_root', str(data_root), '--epochs', '6',
            '--lin_epochs', '2', '--save_freq', '100', '--out_dir', str(out), '--quiet', *extra]


def test_sigkill_then_resume_matches_straight_run(data_root, tmp_path):
    """A resume restarts the interrupted epoch from the last epoch boundary; because data order and
    augmentation are seeded per (seed, epoch, sample), the result is bit-identical to a straight run."""
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    subprocess.run(pretrain_cmd(data_root, straight), check=True, capture_output=True)
    proc = subprocess.Popen(pretrain_cmd(data_root, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (killed / 'last.pth').is_file() and torch.load(killed / 'last.pth', weights_only=True)['epoch'] >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (killed / 'results.json').exists()
    epoch_at_kill = torch.load(killed / 'last.pth', weights_only=True)['epoch']
    assert epoch_at_kill < 7
    subprocess.run(pretrain_cmd(data_root, killed, '--resume', 'auto'), check=True, capture_output=True)
    assert f'resumed from {killed / "last.pth"} after epoch {epoch_at_kill}' in (killed / 'log.txt').read_text()
    assert_same_checkpoints(straight / 'ckpt_epoch_7.pth', killed / 'ckpt_epoch_7.pth')
    assert accuracies(straight) == accuracies(killed)
    # the record's time counts the epochs before the kill too: per-epoch seconds keep rising across the resume
    seconds = [float(row['seconds']) for row in read_metrics(killed)]
    assert len(seconds) == 7 and seconds == sorted(seconds)
    assert json.loads((killed / 'results.json').read_text())['seconds'] >= seconds[-1]


def run(data_root, out, *extra):
    args = pretrain.parse_option(['--data_root', str(data_root), '--epochs', '2', '--lin_epochs', '3',
                                  '--out_dir', str(out), '--quiet', *extra])
    pretrain.main(args)


def test_same_seed_same_run_any_worker_count(data_root, tmp_path):
    run(data_root, tmp_path / 'a', '--deterministic')
    run(data_root, tmp_path / 'b', '--deterministic', '--num_workers', '2')
    run(data_root, tmp_path / 'c', '--seed', '2')
    assert_same_checkpoints(tmp_path / 'a' / 'last.pth', tmp_path / 'b' / 'last.pth')
    assert accuracies(tmp_path / 'a') == accuracies(tmp_path / 'b')
    with pytest.raises(AssertionError):
        assert_same_checkpoints(tmp_path / 'a' / 'last.pth', tmp_path / 'c' / 'last.pth')


def test_resume_auto_skips_partial_and_truncated_files(data_root, tmp_path):
    run(data_root, tmp_path)
    (tmp_path / 'last.pth.partial').write_bytes(b'half')
    (tmp_path / 'ckpt_epoch_99.pth').write_bytes((tmp_path / 'last.pth').read_bytes()[:1000])
    ckpt, path = pretraining.resume_checkpoint(pretrain.parse_option(['--resume', 'auto']), tmp_path)
    assert path == tmp_path / 'last.pth' and ckpt['epoch'] == 3


def test_resume_refuses_checkpoint_of_another_configuration(data_root, tmp_path):
    run(data_root, tmp_path / 'a')
    with pytest.raises(CheckpointError, match='cannot resume'):
        run(data_root, tmp_path / 'b', '--resume', str(tmp_path / 'a' / 'last.pth'), '--hidden_units', '64')


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    real_ce, calls = training.F.cross_entropy, []

    def cross_entropy(logits, labels):
        calls.append(1)
        loss = real_ce(logits, labels)
        return loss * float('nan') if len(calls) > 10 else loss
    monkeypatch.setattr(training.F, 'cross_entropy', cross_entropy)
    with pytest.raises(training.TrainingDiverged, match='loss became nan at step 10; last good checkpoint: .*last.pth'):
        run(data_root, tmp_path)
    assert torch.load(tmp_path / 'last.pth', weights_only=True)['epoch'] == 1  # SBU fold 0: 8 steps an epoch
    assert not (tmp_path / 'results.json').exists() and 'step 10' in (tmp_path / 'log.txt').read_text()
