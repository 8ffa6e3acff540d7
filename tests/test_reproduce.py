"""reproduce.py --quick: the runner runs every protocol step as a subprocess, records it with its
provenance and tabulates it (not the numbers); jobs are planned as documented."""
import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest

import ablation
import reproduce
from recipes import RECIPES, SBU_NESTED, STRONG2_SBU


def test_quick_reproduction_writes_runs_and_table(data_root, tmp_path, capsys):
    out = tmp_path / 'results'
    argv = ['--quick', '--data_root', str(data_root), '--out', str(out), '--runs', str(tmp_path / 'runs'),
            '--configs', 'faithful', 'corrected', 'strong2', 'nested', '--evaluations', 'linear', 'semi10',
            'supervise', 'raw', 'init', '--jobs', '2']
    reproduce.main(argv)
    for config in ('faithful', 'corrected', 'strong2', 'nested'):
        files = sorted(p.name for p in (out / 'sbu' / config).glob('*.json'))
        evaluations = ('linear', 'raw') if config == 'nested' else ('linear', 'semi10', 'supervise', 'raw', 'init')
        assert files == sorted(f'fold0-seed1-{e}.json' for e in evaluations)
    strong = json.loads((out / 'sbu' / 'strong2' / 'fold0-seed1-supervise.json').read_text())
    assert strong['recipe'] == STRONG2_SBU[0] and strong['options']['hidden_units'] == 128  # the fold's choice, its network
    init = json.loads((out / 'sbu' / 'strong2' / 'fold0-seed1-init.json').read_text())
    assert init['options']['epochs'] == 0 and init['recipe'] == STRONG2_SBU[0]
    semi = json.loads((out / 'sbu' / 'corrected' / 'fold0-seed1-semi10.json').read_text())
    assert semi['select'] == 'last' and semi['labelled'] == 8 * 2 and semi['options']['semi_stage2'] == 'subset'
    command = semi['provenance']['process_command']
    assert command.startswith('python linEval.py --mode semi') and semi['options']['semi_sampling'] == 'random'
    assert semi['options']['model_path'].endswith('ckpt_epoch_3.pth')  # corrected: the final checkpoint
    raw = json.loads((out / 'sbu' / 'faithful' / 'fold0-seed1-raw.json').read_text())
    assert raw['options']['selected_frames'] == 40 and 'epochs' not in raw  # the faithful encoder's input
    table = (out / 'README.md').read_text()
    assert '| sbu | faithful | linear |' in table and '| sbu | corrected | supervise |' in table
    assert '| sbu | corrected | raw |' in table and '| sbu | nested (‡' in table and 'runs at commit' in table
    assert 'Incomplete' not in table and '| 1 × 1 folds |' in table  # the quick plan is complete: one fold, one seed
    mtime = (out / 'sbu' / 'faithful' / 'fold0-seed1-linear.json').stat().st_mtime
    capsys.readouterr()
    reproduce.main(argv)
    assert '17 of 17 runs are already recorded in' in capsys.readouterr().out  # skipping is said, with how to force
    assert (out / 'sbu' / 'faithful' / 'fold0-seed1-linear.json').stat().st_mtime == mtime  # recorded runs are kept


def test_jobs_and_threads_must_be_positive(capsys):
    for main in (reproduce.main, ablation.main):
        for option in ('--jobs', '--threads'):
            with pytest.raises(SystemExit):
                main([option, '0', '--summary'])
            assert f'argument {option}' in capsys.readouterr().err


def test_plan_runs_the_raw_floor_for_the_first_seed_only_and_pretrains_before_semi():
    args = argparse.Namespace(protocols=['ucla_view3'], configs=['strong'], seeds=[3, 1], quick=False,
                              evaluations=list(reproduce.OFFICIAL), data_root='data')
    first, second = reproduce.plan(args)
    assert [r.name.rsplit('-', 1)[-1] for r in first][-1] == 'raw' and not any(r.name.endswith('raw') for r in second)
    assert first[0].script == 'pretrain_and_linEval.py' and first[0].name == 'ucla_view3/strong/view3-seed3-linear'
    assert all('{model_path}' in r.argv for r in first if 'semi' in r.name)


def test_ablation_runs_validate_only_on_training_folds_and_views():
    for protocol in ('sbu', 'ucla_view3'):
        for job in ablation.plan(ablation.ROWS, protocol, [1, 2], 'data'):
            argv = list(job[0].argv)
            option = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith('--')}
            assert option['--eval_split'] == 'validation'  # the test split (SBU fold f, N-UCLA view 3) is not read
            assert int(option['--val_group']) in range(2)  # SBU: two of the four training folds; N-UCLA: views 1, 2


def test_nested_sbu_selection_uses_only_the_test_folds_own_inner_runs(tmp_path):
    first, second = list(ablation.LEVERS)[:2]
    for fold in range(5):
        for g in range(4):
            for name, score in ((first, 70 + fold), (second, 75 - fold)):  # first wins folds 3-4, second 0-2
                path = tmp_path / 'sbu' / f'{name}-fold{fold}-val{g}-seed1.json'
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(dict(probe_top1=score, knn_selected_top1=score)))
    assert [ablation.nested_choice(tmp_path, fold) for fold in range(5)] == [second] * 3 + [first] * 2
    (tmp_path / 'sbu' / f'{first}-fold0-val0-seed1.json').write_text(
        json.dumps(dict(probe_top1=100, knn_selected_top1=100)))
    assert ablation.nested_choice(tmp_path, 0) == first and ablation.nested_choice(tmp_path, 1) == second


def test_nested_row_applies_the_lever_each_fold_chose_from_the_committed_ablation():
    committed = reproduce.experiments.ROOT / 'results' / 'ablation'
    for fold, lever in SBU_NESTED.items():
        assert lever == ablation.nested_choice(committed, fold)
    args = argparse.Namespace(protocols=['sbu', 'ucla_view3'], configs=['nested'], seeds=[1], quick=False,
                              evaluations=reproduce.EVALUATIONS, data_root='d')
    runs = [run for job in reproduce.plan(args) for run in job]
    assert {run.name.split('-')[-1] for run in runs} == {'linear', 'raw'} and len(runs) == 10  # SBU only
    fold2 = next(run.argv for run in runs if run.name == 'sbu/nested/fold2-seed1-linear')
    assert fold2[fold2.index('--recipe') + 1] == 'strong1' and '--bidirectional' in fold2 and 'gru' in fold2
    fold3_raw = next(run.argv for run in runs if run.name == 'sbu/nested/fold3-seed1-raw')
    assert fold3_raw[fold3_raw.index('--recipe'):] == ('--recipe', 'strong1')  # neither views nor cell change the input


def write_record(path, score):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(probe_top1=score, knn_selected_top1=score, knn_top1=score, seed=1, seconds=60)))


def test_screening_keeps_a_row_only_when_its_paired_difference_clears_the_noise(tmp_path):
    base, steady, noisy, partial = list(ablation.SCREEN)[:4]
    for g in range(2):
        for seed in (1, 2, 3):
            pair = f'val{g}-seed{seed}'
            score = 60 + 3 * g + seed  # views and seeds differ a lot; pairs remove that
            write_record(tmp_path / 'ucla_view3' / f'{base}-{pair}.json', score)
            write_record(tmp_path / 'ucla_view3' / f'{steady}-{pair}.json', score + 1.0 + 0.1 * seed)
            write_record(tmp_path / 'ucla_view3' / f'{noisy}-{pair}.json', score + (4 if seed == 1 else -1))
            if (g, seed) != (1, 3):
                write_record(tmp_path / 'ucla_view3' / f'{partial}-{pair}.json', score + 5)
    chosen, kept = ablation.screen_choice(tmp_path, [1, 2, 3])
    assert kept == [steady] and chosen == ablation.SCREEN[steady]
    table, _ = ablation.screen_table(tmp_path, [1, 2, 3])
    verdicts = {row.split(' | ')[0][2:]: row.split(' | ')[6] for row in table.splitlines()[2:]}
    label = ablation.label
    assert verdicts[label(base)] == 'base' and verdicts[label(steady)] == 'kept' and verdicts[label(noisy)] == 'dropped'
    assert verdicts[label(partial)] == 'missing 1 of 6 runs'  # never averaged as if complete


def test_the_kept_rows_together_are_the_recipe_only_when_they_clear_their_noise_too(tmp_path):
    first, second = list(ablation.SCREEN)[1:3]
    def record_row(name, gain, noise=0.0):
        for g in range(2):
            for seed in (1, 2, 3):
                write_record(tmp_path / 'ucla_view3' / f'{name}-val{g}-seed{seed}.json',
                             60 + 3 * g + seed + gain + noise * (-1) ** seed)
    for name in ablation.SCREEN:
        record_row(name, {first: 1.0, second: 2.0}.get(name, 0.0), 0.1 if name in (first, second) else 0.0)
    assert ablation.recipe_choice(tmp_path, [1, 2, 3]) is None  # the kept rows together have not run
    assert ablation.screen_verdict(tmp_path, [1, 2, 3]) == 'none yet: the kept rows together lack runs'
    together = ablation.screen_rows(tmp_path, [1, 2, 3])[-1]
    assert together[0] == f'chosen-{first}_{second}' and ablation.nested_rows(tmp_path, [1, 2, 3]) == [ablation.SCREEN_ROWS[0]]
    record_row(together[0], 1.0, 5.0)  # together: noisy, does not clear
    assert ablation.recipe_choice(tmp_path, [1, 2, 3])[0] == second  # the kept row with the larger gain
    assert 'alone' in ablation.screen_verdict(tmp_path, [1, 2, 3])
    record_row(together[0], 3.0, 0.1)
    assert ablation.recipe_choice(tmp_path, [1, 2, 3]) == together == ablation.nested_rows(tmp_path, [1, 2, 3])[1]


def test_scale_study_budget_stages_and_confirmation_on_fresh_seeds(tmp_path, monkeypatch):
    timings = {f'{row} {amp} 1': dict(seconds_per_update_epoch=seconds * (2 if amp == 'off' else 1))
               for row, seconds in zip(ablation.SCALE, range(1, 40, 2)) for amp in ('off', 'bf16')}
    timings['lstm256x2 bf16 1']['seconds_per_update_epoch'] = 1000.0  # bf16 slower here: fp32 is taken
    (tmp_path / 'sizes.json').write_text(json.dumps(dict(timings=timings)))
    monkeypatch.setattr(ablation, 'SIZES_BENCH', tmp_path / 'sizes.json')
    rows, left = ablation.scale_rows()
    assert rows['lstm256x1'] == ({}, 'bf16', 120) and rows['lstm256x2'][1:] == ('off', 80)  # 8 core-min / 6 s
    assert rows['bigru256x1-fp32'][1:] == ('off', rows['bigru256x1'][2])  # the precision check, same epochs
    assert all('over budget' in why for why in left.values()) and 'bigru1024x2' in left  # 8 core-min / 33 s
    assert rows['bigru1024x3'][2] == 42  # the peers' size: 25 core-min / 35 s
    jobs = ablation.scale_plan(['lstm256x2'], [1], rows, 'd')
    argv = jobs[2][0].argv
    assert '--amp' in argv and argv[argv.index('--epochs') + 1] == '80' and argv[argv.index('--lr_decay_epochs') + 1] == '40'
    raw = 'ucla_view3/raw-motiontrue-preprocessview-sbu-true-depthtrue-selected-frames50'  # strong2's input, every row's
    assert [job[0].name for job in jobs][:4] == [f'{raw}-val0', f'{raw}-val1', 'scale/lstm256x2-val0-seed1',
                                                 'scale/init-lstm256x2-val0-seed1']
    gains = {'lstm256x2': 1.0, 'lstm256x3': 0.5, 'lstm512x1': -1.0, 'lstm512x2': -5.0}

    def record(row, seeds, noise=0.1):
        for g in range(2):
            for seed in seeds:
                write_record(tmp_path / 'scale' / f'{row}-val{g}-seed{seed}.json',
                             60 + 3 * g + seed + gains.get(row, -3.0) * (row != 'lstm256x1') + noise * (-1) ** seed)
    for row in rows:
        if row != 'lstm512x3':
            record(row, [1])
    assert ablation.scale_finalists(tmp_path, rows, left) is None  # the first pass lacks a row
    record('lstm512x3', [1])
    finalists = ablation.scale_finalists(tmp_path, rows, left)
    assert finalists == ['lstm256x2', 'lstm256x3', 'lstm512x1']  # best first, those clearly behind left out
    for row in ['lstm256x1', *finalists]:
        record(row, [2, 3])
    assert ablation.scale_candidate(tmp_path, finalists) == 'lstm256x2'
    assert 'awaits its fresh seeds' in ablation.scale_verdict(tmp_path, finalists, 'lstm256x2')
    record('lstm256x1', [4, 5, 6])
    record('lstm256x2', [4, 5, 6], noise=3.0)  # on fresh seeds the gain is noise
    assert 'not confirmed' in ablation.scale_verdict(tmp_path, finalists, 'lstm256x2')
    record('lstm256x2', [4, 5, 6])
    assert ablation.scale_verdict(tmp_path, finalists, 'lstm256x2') == 'lstm256x2'
    table, _, chosen, _ = ablation.scale_table(tmp_path)
    assert chosen == 'lstm256x2' and all(line.count(' | ') == 15 for line in table.splitlines())


def test_rewording_a_rows_label_keeps_its_records(monkeypatch):
    committed = reproduce.experiments.ROOT / 'results' / 'ablation'
    monkeypatch.setitem(ablation.LABELS, 'two-streams', 'two streams, reworded')
    table, _ = ablation.screen_table(committed, [1, 2, 3])
    row = next(line for line in table.splitlines() if line.startswith('| two streams, reworded | '))
    assert row.split(' | ')[1] == '6 of 6' and row.split(' | ')[6] == 'kept'  # found by its id, not its words
    assert ablation.recipe_choice(committed, [1, 2, 3])[0] == 'chosen-view-input_two-streams_rotation_no-head'


def test_strong2_is_what_the_committed_screening_chose():
    committed = reproduce.experiments.ROOT / 'results' / 'ablation'
    name, options = ablation.recipe_choice(committed, [1, 2, 3])
    assert name.startswith('chosen-') and RECIPES['strong2'] == dict(RECIPES['strong1'], **options)


def test_strong2_on_sbu_is_each_folds_nested_choice_from_the_committed_records():
    committed = reproduce.experiments.ROOT / 'results' / 'ablation'
    rows = ablation.nested_rows(committed, [1, 2, 3])
    names = {rows[0][0]: 'strong1', rows[1][0]: 'strong2'}
    assert {fold: names[ablation.nested_choice(committed, fold, rows, '*')] for fold in range(5)} == STRONG2_SBU
    args = argparse.Namespace(protocols=['sbu'], configs=['strong2'], seeds=[1], quick=False, evaluations=None,
                              data_root='d')
    for run in (run for job in reproduce.plan(args) for run in job):
        fold = int(run.argv[run.argv.index('--fold') + 1])
        assert run.argv[run.argv.index('--recipe') + 1] == STRONG2_SBU[fold]


def test_deleting_any_result_json_makes_the_table_say_so(tmp_path):
    committed = reproduce.experiments.ROOT / 'results'
    out = tmp_path / 'results'
    shutil.copytree(committed, out, ignore=shutil.ignore_patterns('ablation'))
    records = sorted(p for p in out.rglob('*.json'))
    for path in records[::max(1, len(records) // 12)]:  # a dozen files across protocols, recipes and evaluations
        path.rename(path.with_suffix('.gone'))
        name = str(path.relative_to(out))
        assert f'`{name}`' in reproduce.write_results_readme(out), name
        path.with_suffix('.gone').rename(path)
    assert 'Incomplete rows' not in reproduce.write_results_readme(out)


def test_readme_reproduce_command_in_a_fresh_clone_rewrites_nothing(tmp_path):
    root = reproduce.experiments.ROOT
    clone = tmp_path / 'clone'
    subprocess.run(['git', 'clone', '-q', str(root), str(clone)], check=True)
    for path in ('README.md', 'results/README.md'):  # this checkout's tables, committed or not
        shutil.copy(root / path, clone / path)
    subprocess.run(['git', '-C', str(clone), 'commit', '-qam', 'tables', '--allow-empty'], check=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@t', GIT_COMMITTER_NAME='t',
                            GIT_COMMITTER_EMAIL='t@t'))
    done = subprocess.run([sys.executable, 'reproduce.py', '--jobs', '2', '--configs', 'faithful', 'strong1',
                           '--seeds', '1', '2', '3'], cwd=clone, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert 'already recorded' in done.stdout and '0 runs in 0 jobs' in done.stdout  # every run is recorded
    status = subprocess.run(['git', '-C', str(clone), 'status', '--porcelain'], capture_output=True, text=True).stdout
    assert status == '', status  # no record rewritten, the tables regenerate byte for byte


def test_committed_summaries_regenerate_byte_for_byte_and_name_a_deleted_ablation_record(tmp_path):
    root = reproduce.experiments.ROOT
    out = tmp_path / 'results'
    shutil.copytree(root / 'results', out)
    reproduce.write_results_readme(out)
    ablation.write_ablation_readme(out / 'ablation', [1, 2, 3])
    for path in ('README.md', 'ablation/README.md'):
        assert (out / path).read_text() == (root / 'results' / path).read_text(), path
    assert ablation.ucla_ranking(out / 'ablation')[0] == 'rotation'  # the round that chose strong
    def strong1_runs(text):
        return int(next(line for line in text.splitlines() if line.startswith('| strong1 | ')).split(' | ')[1].split()[0])
    before = strong1_runs(ablation.write_ablation_readme(out / 'ablation', [1, 2, 3]))
    for name in ('ucla_view3/queue128-val1-seed1.json', 'sbu/bigru-fold3-val0-seed1.json',
                 'semi/adam-val0-seed1.json', 'ucla_view3/strong1-val0-seed1.json'):
        (out / 'ablation' / name).unlink()
    text = ablation.write_ablation_readme(out / 'ablation', [1, 2, 3])
    assert text.count('(runs missing: ') == 3 and '| Adam lr 1e-3 | missing |' in text  # queue, GRU, strong1
    assert strong1_runs(text) == before - 1


def test_provenance_note_says_what_a_dirty_record_changed():
    base = dict(git_commit='a55ed912c5', device_name='AMD EPYC', torch='2.13.0+cpu', cpu_isa='AVX2')
    records = [dict(provenance=dict(base, out_dir='a')), dict(provenance=dict(base, out_dir='b', git_dirty=True)),
               dict(provenance=dict(base, out_dir='c', git_dirty=True, dirty_changes='deleted result files only'))]
    note = reproduce.experiments.provenance_note(records)
    assert note == ('1 runs at commit a55ed91 on AMD EPYC, torch 2.13.0+cpu; 1 runs at commit a55ed91 with uncommitted '
                    'changes: deleted result files only on AMD EPYC, torch 2.13.0+cpu; 1 runs at commit a55ed91 with '
                    'uncommitted changes: not recorded which on AMD EPYC, torch 2.13.0+cpu')


def test_the_committed_scale_study_keeps_strong2():
    """README and docs/recipes.md say no size beat strong2: the committed records' verdict says the same."""
    committed = reproduce.experiments.ROOT / 'results' / 'ablation'
    assert ablation.scale_table(committed)[2] == 'strong2: lstm256x2 was not confirmed on fresh seeds'
