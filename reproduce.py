"""Run the paper's protocols end to end over several seeds and tabulate what came out.

    python reproduce.py --out /tmp/repro         # SBU 5-fold, N-UCLA test views 3 and 1; faithful, corrected
                                                 # and strong; linear, semi 10/40 %, supervised, raw-input
                                                 # floor; seeds 1 2 3
    python reproduce.py --configs strong --jobs 2  # the strong rows, two runs side by side
    python reproduce.py --protocols sbu --seeds 1
    python reproduce.py --quick --out /tmp/repro # smoke test of the machinery: 1 seed, few epochs, SBU fold 0
    python reproduce.py --summary                # rebuild results/README.md from the recorded JSON files

Each run is the same command a user would type (recorded in its JSON as `command`); its
results.json is copied to <out>/<protocol>/<config>/<split>-seed<s>-<evaluation>.json and the
table goes to <out>/README.md. Runs already recorded in <out> are skipped (and counted before
anything starts), so an interrupted reproduction continues where it stopped; `--force` reruns them.
Nothing here is tuned on the test split: faithful is the official configuration, corrected only
turns on the corrected switches, and strong was chosen on validation data (ablation.py).
"""
import argparse
import json
import os
import shlex
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

import linEval
import pretrain_and_linEval as pretrain
from runs import available_cpus, cli, positive_int, write_json

PROTOCOLS = {  # name -> [(dataset, split arguments, split name)]
    'sbu': [('sbu', ('--fold', str(f)), f'fold{f}') for f in range(5)],
    'ucla_view3': [('ucla', ('--test_view', '3'), 'view3')],
    'ucla_view1': [('ucla', ('--test_view', '1'), 'view1')],
}
CONFIGS = {  # name -> (pretraining arguments, evaluation arguments, supervised / raw-input arguments)
    'faithful': ([], [], []),
    'corrected': (['--corrected'], ['--select', 'last', '--semi_stage2', 'subset'],
                  ['--select', 'last', '--masked_mean', '--sbu_true_depth']),
    'strong': (['--recipe', 'strong'], ['--select', 'last', '--semi_stage2', 'subset'], ['--recipe', 'strong']),
}
SEMI = [f'semi{int(100 * r)}-{s}' for r in (0.1, 0.4) for s in ('first', 'random')]
EVALUATIONS = ['linear', *SEMI, 'supervise', 'raw']
QUICK = dict(pretrain=['--epochs', '2', '--lin_epochs', '3'], semi=['--epochs', '2', '--lin_epochs', '2'],
             supervise=['--epochs', '2'], raw=[])


def run(script, argv, run_dir, threads):
    """Run one command in-process as its script would; returns its results dict and the command line."""
    argv = argv + ['--out_dir', str(run_dir), '--quiet', '--no_plots', '--threads', str(threads)]
    if script == 'pretrain_and_linEval.py':
        result = pretrain.main(pretrain.parse_option(argv))
    else:
        result = linEval.main(linEval.parse_option_lin_eval(argv))
    return result, f"python {script} {shlex.join(argv[:-6])}"


def record(path, result, command):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(dict(result, command=command), path)


def result_paths(out, protocol, config, split, seed):
    return {e: Path(out) / protocol / config / f'{split}-seed{seed}-{e}.json' for e in EVALUATIONS}


def job_evaluations(seed, args):
    """The runs of one seed's job: the raw-input floor draws no random numbers (its probes' validation
    split is fixed by --val_seed), so it runs for the first seed only."""
    return [e for e in args.evaluations if e != 'raw' or seed == args.seeds[0]]


def reproduce_split(protocol, config, dataset, split_args, split, seed, todo, args):
    """The runs `todo` of one split and seed (of pretraining + linear/KNN/probes, four semi-supervised
    settings, the supervised baseline and the raw-input floor), each result recorded."""
    pre_args, eval_args, sup_args = CONFIGS[config]
    base = ['--dataset', dataset, *split_args, '--seed', str(seed), '--data_root', args.data_root]
    run_dir = Path(args.runs) / protocol / config / f'{split}-seed{seed}'
    path = result_paths(args.out, protocol, config, split, seed)
    ckpt = json.loads(path['linear'].read_text())['model_path'] if path['linear'].exists() else None
    if 'linear' in todo or (todo & set(SEMI) and not (ckpt and Path(ckpt).exists())):
        result, command = run('pretrain_and_linEval.py', base + pre_args + (QUICK['pretrain'] if args.quick else []),
                              run_dir / 'pretrain', args.threads)
        record(path['linear'], result, command)
        ckpt = result['model_path']
    for evaluation in SEMI:
        if evaluation in todo:
            rate, sampling = evaluation[4:].split('-')
            argv = ['--mode', 'semi', '--model_path', ckpt, '--semi_rate', str(int(rate) / 100),
                    '--semi_sampling', sampling, *base, *eval_args] + (QUICK['semi'] if args.quick else [])
            record(path[evaluation], *run('linEval.py', argv, run_dir / evaluation, args.threads))
    for mode in ('supervise', 'raw'):
        if mode in todo:
            argv = ['--mode', mode, *base, *sup_args] + (QUICK[mode] if args.quick else [])
            record(path[mode], *run('linEval.py', argv, run_dir / mode, args.threads))
    return protocol, config, split, seed


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


COLUMNS = [('top1_best', 'top-1 best epoch (test-selected, official)'), ('top1_last', 'top-1 last epoch'),
           ('probe_top1', 'L-BFGS probe (C on validation)'), ('knn_selected_top1', 'KNN (k on validation)'),
           ('knn_top1', 'KNN@1')]


def summarise(out):
    """Write <out>/README.md: mean ± std over seeds (SBU: of each seed's 5-fold mean), per-fold SBU."""
    out = Path(out)
    rows = ['| protocol | config | evaluation | ' + ' | '.join(label for _, label in COLUMNS) + ' | seeds | s / run |',
            '|---' * (len(COLUMNS) + 5) + '|']
    folds = ['| fold | config | ' + ' | '.join(label for _, label in COLUMNS) + ' |', '|---' * (len(COLUMNS) + 2) + '|']
    commands = {}
    for protocol in PROTOCOLS:
        for config in CONFIGS:
            for evaluation in EVALUATIONS:
                runs = [json.loads(p.read_text()) | {'split': p.name.split('-seed')[0]}
                        for p in sorted((out / protocol / config).glob(f'*-{evaluation}.json'))]
                if not runs:
                    continue
                commands.setdefault((config, evaluation), runs[0]['command'])
                by_seed = {}
                for r in runs:
                    by_seed.setdefault(r['seed'], []).append(r)

                def per_seed(key):
                    return [statistics.mean(r[key] for r in rs) if all(r.get(key) is not None for r in rs) else None
                            for rs in by_seed.values()]
                rows.append(f"| {protocol} | {config} | {evaluation} | "
                            + ' | '.join(mean_std(per_seed(key)) for key, _ in COLUMNS) + f" | {len(by_seed)}"
                            f"{'' if protocol != 'sbu' else ' × ' + str(len(runs) // len(by_seed)) + ' folds'} | "
                            f"{statistics.mean(r['seconds'] for r in runs):.0f} |")
                if protocol == 'sbu' and evaluation == 'linear':
                    for split in sorted({r['split'] for r in runs}):
                        rs = [r for r in runs if r['split'] == split]
                        folds.append(f"| {split} | {config} | "
                                     + ' | '.join(mean_std([r.get(key) for r in rs]) for key, _ in COLUMNS) + ' |')
    text = f"""# Reproduction results

Produced by `python reproduce.py` (this table: `python reproduce.py --summary`) on
{torch.__version__}, CPU, from the JSON files beside this README (one per run; each holds its exact
command and per-epoch history); README.md at the top of the repository names the machines. Mean ±
standard deviation over seeds; for SBU each seed's value is first averaged over the 5 folds.

- "top-1 best epoch" is the official number: the best test accuracy over the evaluation epochs, i.e.
  **selected on the test set**; it is kept for comparison with the paper only.
- "top-1 last epoch" (SGD linear classifier, or the supervised network, after its last epoch), the
  "L-BFGS probe" (standardised features, logistic regression, C in {{0.001 ... 10}} chosen on a
  validation part of the training split made of whole subjects / one training fold, refit on the
  whole training split, test evaluated once) and "KNN (k on validation)" (cosine, k in {{1 ... 20}}
  chosen the same way) select nothing on the test split.
- **raw** rows: the same probes on the input coordinates as the configuration's encoder sees them,
  flattened (the floor a learned representation must beat). They draw no random numbers, so they
  are run for the first seed only.

Configurations: **faithful** = official defaults; **corrected** = `--corrected` (L2-normalised q/k,
masked temporal mean, true SBU depth, final checkpoint, last-epoch selection) and, in
semi-supervised runs, stage 2 on the labelled subset only; **strong** = `--recipe strong` (README,
"Strong recipe"; every choice made on validation data, results/ablation/README.md).
semiNN-first / semiNN-random: NN % of the labels, first k per class in file order (official) or a
random stratified draw fixed by the seed.

{chr(10).join(rows)}

## SBU linear evaluation per fold (mean ± std over seeds)

{chr(10).join(folds)}

## Commands (first run of each kind; the others differ in dataset, split and seed)

{chr(10).join(f'- {c} {e}: `{cmd}`' for (c, e), cmd in commands.items())}
"""
    (out / 'README.md').write_text(text)
    return text


def recorded_seconds(protocol, config, evaluation):
    """Mean run time of this kind of run recorded in results/ (one process on 2 cores), or None."""
    known = [json.loads(p.read_text())['seconds'] for p in Path('results', protocol, config).glob(f'*-{evaluation}.json')]
    return statistics.mean(known) if known else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--protocols', nargs='+', choices=list(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument('--configs', nargs='+', choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3])
    parser.add_argument('--evaluations', nargs='+', choices=EVALUATIONS, default=EVALUATIONS,
                        help='which runs of each job (semi needs the linear run\'s checkpoint, which is rerun if gone)')
    parser.add_argument('--data_root', default=os.environ.get('ASCAL_DATA_ROOT', 'data'))
    parser.add_argument('--out', default=None, help='result JSONs and README.md (default results/, quick: runs/reproduce-quick)')
    parser.add_argument('--runs', default=None, help='run folders with checkpoints (default runs/reproduce[-quick])')
    parser.add_argument('--jobs', type=positive_int, default=1, help='(protocol, config, split, seed) jobs run side by side')
    parser.add_argument('--threads', type=positive_int, default=None,
                        help='torch CPU threads per job (default: the CPUs this process may use / --jobs)')
    parser.add_argument('--force', action='store_true', help='rerun runs already recorded in --out')
    parser.add_argument('--quick', action='store_true', help='1 seed, SBU fold 0, 2-3 epochs: a smoke test')
    parser.add_argument('--summary', action='store_true', help='only rebuild the table from recorded runs')
    args = parser.parse_args(argv)
    args.out = args.out or ('runs/reproduce-quick' if args.quick else 'results')
    args.runs = args.runs or ('runs/reproduce-quick' if args.quick else 'runs/reproduce')
    args.threads = args.threads or max(1, available_cpus() // args.jobs)
    if not args.summary:
        protocols, seeds = (['sbu'], args.seeds[:1]) if args.quick else (args.protocols, args.seeds)
        jobs = [(p, c, *split, s) for p in protocols for split in PROTOCOLS[p][:1 if args.quick else None]
                for c in args.configs for s in seeds]
        planned = {job: job_evaluations(job[-1], args) for job in jobs}
        todo = {job: {e for e, path in result_paths(args.out, *job[:2], *job[4:]).items()
                      if e in planned[job] and (args.force or not path.exists())} for job in jobs}
        runs, total = sum(len(e) for e in todo.values()), sum(len(e) for e in planned.values())
        if runs < total:
            print(f"{total - runs} of {total} runs are already recorded in {args.out}/ and are skipped "
                  f"(--force reruns them, --out DIR writes elsewhere)", flush=True)
        kinds = {(*job[:2], e) for job in jobs for e in todo[job]}  # (protocol, config, evaluation)
        recorded = {kind: None if args.quick else recorded_seconds(*kind) for kind in kinds}
        seconds = {job: sum(recorded[(*job[:2], e)] or 0 for e in todo[job]) for job in jobs}
        jobs.sort(key=lambda job: -seconds[job])  # longest first, so that side-by-side workers finish together
        minutes = sum(seconds.values()) / 60 / args.jobs
        print(f"{runs} runs in {len(jobs)} jobs, {args.jobs} side by side x {args.threads} threads; estimated time "
              + ('unknown' if args.quick else f"{'over ' if None in recorded.values() else ''}{minutes:.0f} min")
              + " (from the run times recorded in results/)", flush=True)
        pool = ProcessPoolExecutor(args.jobs, mp_context=get_context('spawn')) if args.jobs > 1 else None
        finished = ((reproduce_split(*job, todo[job], args) for job in jobs) if pool is None else
                    (f.result() for f in as_completed([pool.submit(reproduce_split, *job, todo[job], args)
                                                       for job in jobs])))
        with tqdm(total=len(jobs), unit='job') as bar:
            for protocol, config, split, seed in finished:
                bar.update()
                bar.write(f"done: {protocol} {config} {split} seed {seed}")
        if pool is not None:
            pool.shutdown()
    print(summarise(args.out))


if __name__ == '__main__':
    cli(main, lambda: sys.argv[1:])
