"""The strong recipe's ablation, on validation data only (the test split is never read).

    python ablation.py                       # N-UCLA (views 1,2 -> 3 protocol) and SBU, seeds 1 2 3
    python ablation.py --protocols ucla_view3 --seeds 1 --jobs 2
    python ablation.py --summary             # rebuild results/ablation/README.md from the JSON files

Every run is `pretrain_and_linEval.py --eval_split validation`: whole subjects (N-UCLA) or one
training fold (SBU) are held out of the training split and play the test split's role. Rows
(recipes.py): the corrected recipe; round 1's steps added one at a time (the last row is the
round-1 strong recipe); the round-1 recipe with each step removed; round-1 candidates, each added
to it; round 2's recipes (one of them is `--recipe strong`). Runs already recorded are skipped.
"""
import argparse
import json
import os
import statistics
from pathlib import Path

import experiments
from experiments import PRETRAIN, Run
from options import positive_int
from recipes import CORRECTED, ROUND1_CANDIDATES, ROUND1_STEPS, ROUND2, STRONG
from runs import available_cpus

PROTOCOLS = {  # name -> (dataset arguments, splits whose validation parts are averaged)
    'ucla_view3': (['--dataset', 'ucla', '--test_view', '3'], [[]]),
    'sbu': (['--dataset', 'sbu'], [['--fold', str(f)] for f in range(5)]),
}
METRICS = [('probe_top1', 'L-BFGS probe'), ('knn_selected_top1', 'KNN (k on validation)'),
           ('top1_last', 'SGD linear, last epoch')]


def arguments(options):
    """Options dict -> command-line arguments on top of `--recipe corrected`."""
    argv = ['--recipe', 'corrected']
    for key, value in options.items():
        if CORRECTED.get(key) == value:
            continue
        if value is True:
            argv.append(f'--{key}')
        elif value is not False:
            argv += [f'--{key}', str(value)]
    return argv


def configurations():
    """(row name, options beyond the corrected recipe) in table order."""
    rows, added = [('corrected recipe', {})], {}
    for name, step in ROUND1_STEPS:
        added = {**added, **step}
        rows.append((f'+ {name}', added))
    for name, _ in ROUND1_STEPS:
        rows.append((f'strong without {name}', {k: v for n, s in ROUND1_STEPS if n != name for k, v in s.items()}))
    rows += [(name, {**added, **extra}) for name, extra in ROUND1_CANDIDATES]
    return rows + ROUND2


def slug(name):
    return ''.join(c if c.isalnum() else '-' for c in name.lower()).strip('-').replace('--', '-')


def plan(args):
    """One validation run per (protocol, row, seed, split): pretrain_and_linEval.py --eval_split validation."""
    jobs = []
    for protocol in args.protocols:
        dataset_args, splits = PROTOCOLS[protocol]
        for name, options in configurations():
            if args.rows and not any(r in name for r in args.rows):
                continue
            for seed in args.seeds:
                for split in splits:
                    argv = [*dataset_args, *split, *arguments(options), '--seed', str(seed), '--eval_split',
                            'validation', '--data_root', args.data_root]
                    tag = f"{slug(name)}-{''.join(split[1:]) or 'split'}-seed{seed}"
                    jobs.append([Run(f'{protocol}/{tag}', PRETRAIN, tuple(argv), f'{protocol}/{slug(name)}')])
    return jobs


def _cell(values):
    return f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}' if len(values) > 1 else f'{values[0]:.1f}'


def summarise(out):
    """results/ablation/README.md: one row per configuration, the selection criterion (mean L-BFGS
    validation top-1 of N-UCLA and SBU) beside each protocol's numbers."""
    out = Path(out)
    labels = [f'{protocol} {label}' for key, label in METRICS for protocol in PROTOCOLS]
    lines = ['| configuration | criterion: mean L-BFGS | ' + ' | '.join(labels) + ' |', '|---' * (len(labels) + 2) + '|']
    strong = {k: v for k, v in STRONG.items() if CORRECTED.get(k) != v}
    for name, options in configurations():
        runs = {protocol: [json.loads(p.read_text()) for p in sorted((out / protocol).glob(f'{slug(name)}-*.json'))]
                for protocol in PROTOCOLS}
        if not all(runs.values()):
            continue

        def per_run(protocol, key):  # N-UCLA: one value per seed; SBU: one per fold (each seed's folds)
            return [r[key] for r in runs[protocol]]
        criterion = statistics.mean(statistics.mean(per_run(p, 'probe_top1')) for p in PROTOCOLS)
        label = name.replace('strong without', 'round 1 without') + (' **(= `--recipe strong`)**' if options == strong else '')
        lines.append(f'| {label} | {criterion:.1f} | '
                     + ' | '.join(_cell(per_run(p, key)) for key, _ in METRICS for p in PROTOCOLS) + ' |')
    text = f"""# Strong-recipe ablation (validation only)

Produced by `python ablation.py` (this table: `python ablation.py --summary`) on an Intel Xeon
(AVX-512) machine with 2 cores, torch {__import__('torch').__version__}, two runs side by side with one
thread each. Every run is `pretrain_and_linEval.py --eval_split validation`: the held-out part of
the *training* split plays the test split's role and the test split is never read. N-UCLA (views
1, 2): 2 of the 10 subjects held out, seeds 1-3 (mean ± std over seeds). SBU: for each of the 5
test folds one of its 4 training folds is held out, seed 1 (mean ± std over the 5 folds).

Selection criterion, fixed before round 1: the mean of the two datasets' L-BFGS probe accuracy (C
chosen on an inner validation part of the remaining training data). Round 1 adds its steps to the
corrected recipe one at a time, then removes each from the result ("round 1 without ..."), then
adds candidates to it one at a time; round 2 combines round 1's verdicts. The strong recipe is the
row with the highest criterion. Commands are in the JSON files beside this README.

{chr(10).join(lines)}
"""
    (out / 'README.md').write_text(text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--protocols', nargs='+', choices=list(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3])
    parser.add_argument('--rows', nargs='+', default=None, help='only the rows whose names contain one of these')
    parser.add_argument('--data_root', default=os.environ.get('ASCAL_DATA_ROOT', 'data'))
    parser.add_argument('--out', default='results/ablation')
    parser.add_argument('--runs', default='runs/ablation')
    parser.add_argument('--jobs', type=positive_int, default=available_cpus(), help='runs side by side')
    parser.add_argument('--threads', type=positive_int, default=1, help='CPU threads per run')
    parser.add_argument('--force', action='store_true', help='rerun runs already recorded in --out')
    parser.add_argument('--summary', action='store_true', help='only rebuild the table')
    args = parser.parse_args(argv)
    if not args.summary:
        experiments.run_all(plan(args), args.out, args.runs, args.jobs, args.threads, args.force, keep_history=False)
    print(summarise(args.out))


if __name__ == '__main__':
    main()
