"""Choose a recipe on validation data that mirrors each test protocol; the test split is never read.

    python ablation.py                   # N-UCLA cross-view screening of every lever, then nested SBU
                                         # selection among the best of them
    python ablation.py --stage screen --seeds 1 --jobs 2
    python ablation.py --summary         # rebuild results/ablation/README.md from the recorded runs

N-UCLA (train views 1, 2; test view 3, cross-view): every row is pretrained and probed on one
training view and validated on the other (`--eval_split validation --val_group 0` and `1`); view 3
is never read. SBU (5 folds): for test fold f, each run trains on three of its four training folds
and validates on the fourth (`--fold f --val_group g`, g = 0, 1: the first two of its training
folds in turn); fold f is never read, and the lever chosen for fold f is chosen from those runs
alone (`nested_choice`). Criterion, fixed in
advance: the mean of the L-BFGS and KNN probes' validation top-1. Every row also gets the raw-input
floor of its input on the same validation splits. Levers (recipes.LEVERS) are options added to the
strong1 recipe; SBU runs the best `--finalists` levers of the N-UCLA screening and strong1. The
faithful and corrected recipes run through the same validation, to check that it ranks recipes as
the test does (`agreement`).
"""
import argparse
import os
import statistics
from pathlib import Path

import experiments
from experiments import PRETRAIN, Run, load, mean_std
from options import INPUT, positive_int, to_argv
from recipes import LEVERS, RECIPES
from runs import available_cpus, cli

SBU_INNER = range(2)  # inner validation folds of each SBU test fold: the first two of its four training folds
# Recipes that also have test numbers (results/): does the validation rank them as the test does?
REFERENCES = [('faithful recipe', dict(recipe='faithful')), ('corrected recipe', dict(recipe='corrected'))]
ROWS = REFERENCES + LEVERS


def slug(name):
    return ''.join(c if c.isalnum() else '-' for c in name.lower()).strip('-').replace('--', '-')


def raw_argv(options):
    """The raw-input floor of a row's input (what raw_features reads) and its record name."""
    recipe = options.get('recipe', 'strong1')
    inputs = {k: v for k, v in {**RECIPES[recipe], **options}.items() if k in INPUT}
    return ['--mode', 'raw', '--recipe', recipe, *to_argv(inputs)], 'raw-' + slug(
        '-'.join(f'{k}{v}' for k, v in sorted(inputs.items())) or recipe)


def plan(rows, protocol, seeds, data_root):
    """One job per validation run of each row: pretraining + probes, and the raw floor of its input."""
    splits = [(['--dataset', 'ucla', '--test_view', '3', '--val_group', str(g)], f'val{g}') for g in (0, 1)] \
        if protocol == 'ucla_view3' else \
        [(['--dataset', 'sbu', '--fold', str(f), '--val_group', str(g)], f'fold{f}-val{g}') for f in range(5)
         for g in SBU_INNER]
    jobs, seen = [], set()
    for name, options in rows:
        for split_args, split in splits:
            common = [*split_args, '--eval_split', 'validation', '--data_root', data_root]
            for seed in seeds:
                jobs.append([Run(f'{protocol}/{slug(name)}-{split}-seed{seed}', PRETRAIN,
                                 tuple(common + ['--recipe', 'strong1', *to_argv(options), '--seed', str(seed)]), f'{protocol}/{slug(name)}')])
            argv, raw = raw_argv(options)
            if (raw, split) not in seen:
                seen.add((raw, split))
                jobs.append([Run(f'{protocol}/{raw}-{split}', 'linEval.py', tuple(common + argv), f'{protocol}/raw')])
    return jobs


def criterion(record):
    return (record['probe_top1'] + record['knn_selected_top1']) / 2


def records(out, protocol, name, options, split=''):
    """(learned runs, raw runs) of one row recorded in out, optionally of one split prefix."""
    learned = [load(p) for p in sorted(Path(out, protocol).glob(f'{slug(name)}-{split}*.json'))]
    raw = [load(p) for p in sorted(Path(out, protocol).glob(f'{raw_argv(options)[1]}-{split}*.json'))]
    return learned, raw


def ucla_ranking(out):
    """Levers with N-UCLA cross-view records, best criterion first."""
    scored = [(statistics.mean(map(criterion, runs)), name) for name, options in LEVERS
              if (runs := records(out, 'ucla_view3', name, options)[0])]
    return [name for _, name in sorted(scored, reverse=True)]


def nested_choice(out, fold):
    """The lever chosen for SBU test fold `fold`: best mean criterion over its inner validation runs
    (records of `--fold fold` only: they train and validate on other folds and never read it)."""
    scored = [(statistics.mean(map(criterion, runs)), name) for name, options in LEVERS
              if (runs := records(out, 'sbu', name, options, f'fold{fold}-')[0])]
    return max(scored)[1] if scored else None


def agreement(out, results):
    """Validation criterion against the test criterion (same probes, results/) of the recipes that
    have both, per protocol: rows of (recipe, validation, test) and whether the two orders agree."""
    lines, verdicts = [], []
    for protocol in ('ucla_view3', 'sbu'):
        pairs = []
        for name, options in REFERENCES + LEVERS[:2]:  # strong1 and the lever that made strong
            valid = records(out, protocol, name, options)[0]
            recipe = options.get('recipe', 'strong' if options else 'strong1')
            test = [load(p) for p in Path(results, protocol, recipe).glob('*-linear.json')]
            if valid and test:
                pairs.append((recipe, statistics.mean(map(criterion, valid)), statistics.mean(map(criterion, test))))
        lines += [[protocol, name, f'{v:.1f}', f'{t:.1f}'] for name, v, t in pairs]
        if len(pairs) > 1:
            both = [(a, b) for i, a in enumerate(pairs) for b in pairs[i + 1:]]
            same = [f'{a[0]} / {b[0]}' for a, b in both if (a[1] - b[1]) * (a[2] - b[2]) > 0]
            verdicts.append(f"{protocol}: validation orders {len(same)} of the {len(both)} pairs of recipes as the "
                            f"test does ({', '.join(sorted(set(f'{a[0]} / {b[0]}' for a, b in both) - set(same))) or 'none'} "
                            f"the other way)")
    return lines, verdicts


def summarise(out):
    """results/ablation/README.md: per row, the cross-view N-UCLA and nested SBU validation numbers,
    the raw floor of the same input, and which protocol split chose it."""
    out = Path(out)
    chosen = {name: [] for name, _ in ROWS}
    ranking = ucla_ranking(out)
    if ranking:
        chosen[ranking[0]].append('N-UCLA 1,2→3')
    for fold in range(5):
        if (name := nested_choice(out, fold)):
            chosen[name].append(f'SBU fold {fold}')
    header = ['row', 'N-UCLA: L-BFGS', 'KNN', 'raw L-BFGS', 'raw KNN', 'criterion', 'SBU: L-BFGS', 'KNN',
              'raw L-BFGS', 'raw KNN', 'criterion', 'chosen for']
    lines, everything = [header, ['---'] * len(header)], []
    for name, options in ROWS:
        cells = [name]
        for protocol in ('ucla_view3', 'sbu'):
            learned, raw = records(out, protocol, name, options)
            raw = raw if learned else []  # a row not run on this protocol shows no floor either
            everything += learned + raw
            cells += [mean_std([r[k] for r in runs], 1) for runs in (learned, raw)
                      for k in ('probe_top1', 'knn_selected_top1')] + [mean_std(list(map(criterion, learned)), 1)]
        lines.append(cells + [', '.join(chosen[name]) or '–'])
    table = '\n'.join('| ' + ' | '.join(row) + ' |' for row in lines)
    pairs, verdicts = agreement(out, experiments.ROOT / 'results')
    agree = '\n'.join('| ' + ' | '.join(row) + ' |' for row in [
        ['protocol', 'recipe', 'validation criterion', 'test criterion'], ['---'] * 4, *pairs])
    text = f"""# Recipe ablation (validation only)

Produced by `python ablation.py` (this table: `python ablation.py --summary`); the JSON files
beside this README hold every run's results, resolved options and provenance:
{experiments.provenance_note(everything)}.

Validation mirrors each test protocol and never reads the test split (ablation.py's docstring).
**N-UCLA** (test: train views 1, 2 -> view 3): pretrain and probe on one training view, validate on
the other, both ways. **SBU** (5-fold): for test fold f, train on three of its training folds and
validate on the fourth, the first two of them in turn; the row chosen for fold f uses only those
runs (nested selection). Cells: mean ± std over runs (N-UCLA: 2 validation views x seeds; SBU: 5
test folds x 2 inner folds). Criterion: mean of the L-BFGS and KNN validation top-1, fixed in advance.
"raw": the same probes on the row's input itself (no learning). "chosen for": the protocol split
whose validation chose the row. Rows are options added to strong1 (recipes.LEVERS); SBU runs only
the best rows of the N-UCLA screening and strong1.

{table}

## Does validation rank recipes as the test does?

The same criterion on validation (this ablation) and on the test split (results/, 3 seeds, after
the choice) for the recipes that have both. {'; '.join(verdicts) or 'Not run yet.'}

{agree}
"""
    (out / 'README.md').write_text(text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--stage', choices=['all', 'screen', 'nested'], default='all',
                        help='screen: N-UCLA cross-view for every row; nested: SBU for the finalists')
    parser.add_argument('--seeds', nargs='+', type=int, default=[1])
    parser.add_argument('--finalists', type=positive_int, default=2, help='best N-UCLA rows taken to SBU (+ strong1)')
    parser.add_argument('--rows', nargs='+', default=None, help='only the rows whose names contain one of these')
    parser.add_argument('--data_root', default=os.environ.get('ASCAL_DATA_ROOT', 'data'))
    parser.add_argument('--out', default='results/ablation')
    parser.add_argument('--runs', default='runs/ablation')
    parser.add_argument('--jobs', type=positive_int, default=available_cpus(), help='runs side by side')
    parser.add_argument('--threads', type=positive_int, default=1, help='CPU threads per run')
    parser.add_argument('--force', action='store_true', help='rerun runs already recorded in --out')
    parser.add_argument('--summary', action='store_true', help='only rebuild the table')
    args = parser.parse_args(argv)
    rows = [(n, o) for n, o in ROWS if not args.rows or any(r in n for r in args.rows)]
    if not args.summary and args.stage in ('all', 'screen'):
        experiments.run_all(plan(rows, 'ucla_view3', args.seeds, args.data_root), args.out, args.runs, args.jobs,
                            args.threads, args.force, keep_history=False)
    if not args.summary and args.stage in ('all', 'nested'):
        finalists = set(ucla_ranking(args.out)[:args.finalists]) | {'strong1'} | {n for n, _ in REFERENCES}
        experiments.run_all(plan([(n, o) for n, o in rows if n in finalists], 'sbu', args.seeds, args.data_root),
                            args.out, args.runs, args.jobs, args.threads, args.force, keep_history=False)
    print(summarise(args.out))


if __name__ == '__main__':
    cli(main, lambda: None)
