"""Run the paper's protocols end to end over several seeds and tabulate what came out.

    python reproduce.py                          # SBU 5-fold, N-UCLA test views 3 and 1; faithful and
                                                 # corrected; linear, semi 10/40 %, supervised; seeds 1 2 3
    python reproduce.py --protocols sbu --seeds 1
    python reproduce.py --quick --out /tmp/repro # smoke test of the machinery: 1 seed, few epochs, SBU fold 0
    python reproduce.py --summary                # rebuild results/README.md from the recorded JSON files

Each run is the same command a user would type (recorded in its JSON as `command`); its
results.json is copied to <out>/<protocol>/<config>/<split>-seed<s>-<evaluation>.json and the
table goes to <out>/README.md. Runs already recorded are skipped, so an interrupted reproduction
continues where it stopped. Nothing here is tuned: the faithful configuration is the official one
and the corrected one only turns on the corrected switches.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import linEval
import pretrain_and_linEval as pretrain
from data import DataError
from runs import CheckpointError, write_json

PROTOCOLS = {  # name -> [(dataset, split arguments, split name)]
    'sbu': [('sbu', ['--fold', str(f)], f'fold{f}') for f in range(5)],
    'ucla_view3': [('ucla', ['--test_view', '3'], 'view3')],
    'ucla_view1': [('ucla', ['--test_view', '1'], 'view1')],
}
CONFIGS = {  # name -> (pretraining arguments, evaluation arguments, supervised arguments)
    'faithful': ([], [], []),
    'corrected': (['--corrected'], ['--select', 'last', '--semi_stage2', 'subset'],
                  ['--select', 'last', '--masked_mean', '--sbu_true_depth']),
}
EVALUATIONS = ['linear'] + [f'semi{int(100 * r)}-{s}' for r in (0.1, 0.4) for s in ('first', 'random')] + ['supervise']
QUICK = dict(pretrain=['--epochs', '2', '--lin_epochs', '3'], semi=['--epochs', '2', '--lin_epochs', '2'],
             supervise=['--epochs', '2'])


def run(script, argv, run_dir):
    """Run one command in-process as its script would; returns its results dict and the command line."""
    argv = argv + ['--out_dir', str(run_dir), '--quiet', '--no_plots']
    if script == 'pretrain_and_linEval.py':
        result = pretrain.main(pretrain.parse_option(argv))
    else:
        result = linEval.main(linEval.parse_option_lin_eval(argv))
    return result, f"python {script} {shlex.join(argv[:-4])}"


def record(path, result, command):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(dict(result, command=command), path)


def reproduce_split(protocol, config, dataset, split_args, split, seed, args):
    """Pretraining + linear/KNN, four semi-supervised settings and the supervised baseline for one
    split and seed; each result recorded unless it already is."""
    pre_args, eval_args, sup_args = CONFIGS[config]
    base = ['--dataset', dataset, *split_args, '--seed', str(seed), '--data_root', args.data_root]
    results_dir = Path(args.out) / protocol / config
    run_dir = Path(args.runs) / protocol / config / f'{split}-seed{seed}'
    path = {e: results_dir / f'{split}-seed{seed}-{e}.json' for e in EVALUATIONS}
    ckpt = json.loads(path['linear'].read_text())['model_path'] if path['linear'].exists() else None
    if ckpt is None or (not Path(ckpt).exists() and not all(path[e].exists() for e in EVALUATIONS[1:-1])):
        result, command = run('pretrain_and_linEval.py', base + pre_args + (QUICK['pretrain'] if args.quick else []),
                              run_dir / 'pretrain')
        record(path['linear'], result, command)
        ckpt = result['model_path']
    for evaluation in EVALUATIONS[1:-1]:
        if not path[evaluation].exists():
            rate, sampling = evaluation[4:].split('-')
            argv = ['--mode', 'semi', '--model_path', ckpt, '--semi_rate', str(int(rate) / 100),
                    '--semi_sampling', sampling, *base, *eval_args] + (QUICK['semi'] if args.quick else [])
            record(path[evaluation], *run('linEval.py', argv, run_dir / evaluation))
    if not path['supervise'].exists():
        argv = ['--mode', 'supervise', *base, *sup_args] + (QUICK['supervise'] if args.quick else [])
        record(path['supervise'], *run('linEval.py', argv, run_dir / 'supervise'))


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def summarise(out):
    """Write <out>/README.md: mean ± std over seeds (SBU: of each seed's 5-fold mean), per-fold SBU."""
    out = Path(out)
    rows = ['| protocol | config | evaluation | top-1 (best epoch) | top-1 (last epoch) | top-5 (reported) '
            '| KNN top-1 (k=1) | seeds | s / run |', '|---|---|---|---|---|---|---|---|---|']
    folds = ['| fold | config | top-1 (best) | top-1 (last) | KNN top-1 |', '|---|---|---|---|---|']
    commands = {}
    for protocol in PROTOCOLS:
        for config in CONFIGS:
            for evaluation in EVALUATIONS:
                runs = [json.loads(p.read_text()) | {'split': p.name.split('-seed')[0]}
                        for p in sorted((out / protocol / config).glob(f'*-{evaluation}.json'))]
                if not runs:
                    continue
                commands.setdefault(evaluation, runs[0]['command'])
                by_seed = {}
                for r in runs:
                    by_seed.setdefault(r['seed'], []).append(r)

                def per_seed(key):
                    return [statistics.mean(r[key] for r in rs) if all(r.get(key) is not None for r in rs) else None
                            for rs in by_seed.values()]
                rows.append(f"| {protocol} | {config} | {evaluation} | {mean_std(per_seed('top1_best'))} | "
                            f"{mean_std(per_seed('top1_last'))} | {mean_std(per_seed('top5'))} | "
                            f"{mean_std(per_seed('knn_top1')) if evaluation == 'linear' else '–'} | {len(by_seed)}"
                            f"{'' if protocol != 'sbu' else ' × ' + str(len(runs) // len(by_seed)) + ' folds'} | "
                            f"{statistics.mean(r['seconds'] for r in runs):.0f} |")
                if protocol == 'sbu' and evaluation == 'linear':
                    for split in sorted({r['split'] for r in runs}):
                        rs = [r for r in runs if r['split'] == split]
                        folds.append(f"| {split} | {config} | {mean_std([r['top1_best'] for r in rs])} | "
                                     f"{mean_std([r['top1_last'] for r in rs])} | {mean_std([r['knn_top1'] for r in rs])} |")
    text = f"""# Reproduction results

Produced by `python reproduce.py` (this table: `python reproduce.py --summary`) on
{torch.__version__}, CPU, from the JSON files beside this README (one per run; each holds its exact
command and per-epoch history). Mean ± standard deviation over seeds; for SBU each seed's value is
first averaged over the 5 folds. "top-1 (best epoch)" is the official number (best test accuracy
over the evaluation epochs, i.e. selected on the test set); "top-1 (last epoch)" is not selected.
"top-5 (reported)" goes with the configuration's selection (best epoch for faithful, last for
corrected). Configurations: **faithful** = official defaults; **corrected** = `--corrected`
(L2-normalised q/k, masked temporal mean, true SBU depth, final checkpoint, last-epoch selection)
and, in semi-supervised runs, stage 2 on the labelled subset only. No hyper-parameter was changed
or tuned. semiNN-first / semiNN-random: NN % of the labels, first k per class in file order
(official) or a random stratified draw fixed by the seed.

{chr(10).join(rows)}

## SBU linear evaluation per fold (mean ± std over seeds)

{chr(10).join(folds)}

## Commands (first run of each kind; the others differ in dataset, split and seed)

{chr(10).join(f'- {e}: `{c}`' for e, c in commands.items())}
"""
    (out / 'README.md').write_text(text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--protocols', nargs='+', choices=list(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument('--configs', nargs='+', choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3])
    parser.add_argument('--data_root', default=os.environ.get('ASCAL_DATA_ROOT', 'data'))
    parser.add_argument('--out', default=None, help='result JSONs and README.md (default results/, quick: runs/reproduce-quick)')
    parser.add_argument('--runs', default=None, help='run folders with checkpoints (default runs/reproduce[-quick])')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--quick', action='store_true', help='1 seed, SBU fold 0, 2-3 epochs: a smoke test')
    parser.add_argument('--summary', action='store_true', help='only rebuild the table from recorded runs')
    args = parser.parse_args(argv)
    args.out = args.out or ('runs/reproduce-quick' if args.quick else 'results')
    args.runs = args.runs or ('runs/reproduce-quick' if args.quick else 'runs/reproduce')
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.summary:
        protocols, seeds = (['sbu'], args.seeds[:1]) if args.quick else (args.protocols, args.seeds)
        jobs = [(p, c, *split, s) for p in protocols for split in PROTOCOLS[p][:1 if args.quick else None]
                for c in args.configs for s in seeds]
        for i, (protocol, config, dataset, split_args, split, seed) in enumerate(jobs, 1):
            start = time.time()
            reproduce_split(protocol, config, dataset, split_args, split, seed, args)
            print(f"[{i}/{len(jobs)}] {protocol} {config} {split} seed {seed}: {time.time() - start:.0f} s", flush=True)
    print(summarise(args.out))


if __name__ == '__main__':
    try:
        main()
    except (DataError, CheckpointError) as err:
        sys.exit(f"error: {err}")
