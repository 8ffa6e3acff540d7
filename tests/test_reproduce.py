"""reproduce.py --quick: the machinery runs every protocol step and tabulates it (not the numbers)."""
import argparse
import json

import pytest

import reproduce


def test_quick_reproduction_writes_runs_and_table(data_root, tmp_path, capsys):
    out = tmp_path / 'results'
    reproduce.main(['--quick', '--data_root', str(data_root), '--out', str(out), '--runs', str(tmp_path / 'runs')])
    for config in reproduce.CONFIGS:
        files = sorted(p.name for p in (out / 'sbu' / config).glob('*.json'))
        assert files == sorted(f'fold0-seed1-{e}.json' for e in reproduce.EVALUATIONS)
    corrected = json.loads((out / 'sbu' / 'corrected' / 'fold0-seed1-semi10-random.json').read_text())
    assert corrected['select'] == 'last' and corrected['labelled'] == 8 * 2
    assert '--semi_sampling random' in corrected['command'] and '--semi_stage2 subset' in corrected['command']
    table = (out / 'README.md').read_text()
    assert '| sbu | faithful | linear |' in table and '| sbu | corrected | supervise |' in table
    assert '| sbu | strong | raw |' in table and '| sbu | strong | semi40-random |' in table
    mtime = (out / 'sbu' / 'faithful' / 'fold0-seed1-linear.json').stat().st_mtime
    reproduce.main(['--quick', '--data_root', str(data_root), '--out', str(out), '--runs', str(tmp_path / 'runs')])
    assert 'runs are already recorded in' in capsys.readouterr().out  # skipping is said, with how to force
    assert (out / 'sbu' / 'faithful' / 'fold0-seed1-linear.json').stat().st_mtime == mtime  # recorded runs are kept


def test_jobs_and_threads_must_be_positive(capsys):
    import ablation
    for main in (reproduce.main, ablation.main):
        for option in ('--jobs', '--threads'):
            with pytest.raises(SystemExit):
                main([option, '0', '--summary'])
            assert f'argument {option}' in capsys.readouterr().err


def test_raw_floor_runs_for_the_first_seed_only():
    args = argparse.Namespace(evaluations=reproduce.EVALUATIONS, seeds=[3, 1, 2])
    assert reproduce.job_evaluations(3, args) == reproduce.EVALUATIONS
    assert reproduce.job_evaluations(1, args) == [e for e in reproduce.EVALUATIONS if e != 'raw']
