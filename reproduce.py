"""Run the paper's protocols end to end over several seeds and tabulate what came out.

    python reproduce.py --jobs 2                 # SBU 5-fold, N-UCLA test views 3 and 1; every recipe and
                                                 # SBU's nested row; linear, semi-supervised, supervised,
                                                 # raw-input floor; seeds 1 2 3
    python reproduce.py --configs strong2 --protocols sbu ucla_view3
    python reproduce.py --quick --out /tmp/repro # smoke test of the machinery: 1 seed, few epochs, SBU fold 0
    python reproduce.py --summary                # rebuild results/README.md from the recorded JSON files

Every run is the command a user would type (experiments.py runs it and records its results.json,
provenance included, as <out>/<protocol>/<recipe>/<split>-seed<s>-<evaluation>.json); the table
goes to <out>/README.md. Faithful is the official configuration, corrected turns on the corrected
switches, strong2 was chosen by the multi-seed screening on validation data alone (ablation.py);
strong1 / strong / nested were chosen on validation data too, but on SBU their choice has test
folds in its ancestry (strong1's first ablation averaged validation folds that were also test
folds), which the tables mark.
"""
import argparse
import statistics
from pathlib import Path

import experiments
from dataset import DATA_ROOT
from experiments import PRETRAIN, Command, load, markdown, mean_std
from options import floor_options, positive_int, to_argv
from recipes import LEVERS, RECIPES, SBU_NESTED, STRONG2_SBU
from runs import available_cpus, cli

PROTOCOLS = {  # name -> [(dataset, split arguments, split name)]
    'sbu': [('sbu', ('--fold', str(f)), f'fold{f}') for f in range(5)],
    'ucla_view3': [('ucla', ('--test_view', '3'), 'view3')],
    'ucla_view1': [('ucla', ('--test_view', '1'), 'view1')],
}
SEMI = ['semi1', 'semi10']  # 1 % and 10 % labels; first k per class (faithful) or stratified random (the others)
# init: the random-init floor, the pretraining command with no update epoch (--epochs 0)
EVALUATIONS = ['linear', *SEMI, 'supervise', 'raw', 'init']
QUICK = dict(linear=['--epochs', '2', '--lin_epochs', '3'], semi=['--epochs', '2', '--lin_epochs', '2'],
             supervise=['--epochs', '2'], raw=[], init=['--lin_epochs', '3'])
CONFIGS = [*RECIPES, 'nested']  # nested: SBU only, strong1 plus the lever SBU's nested selection chose per fold
# What the table holds, and so what a plain `python reproduce.py` runs: every evaluation of a recipe
# on every protocol, except these.
OFFICIAL = ('linear', *SEMI, 'supervise', 'raw')
COVERED = dict(faithful=OFFICIAL, corrected=OFFICIAL, strong=OFFICIAL, strong1=('linear', 'raw'), nested=('linear', 'raw'))
UNRUN = {('ucla_view1', config) for config in ('strong1', 'strong', 'strong2')}
# SBU rows chosen with SBU test folds in their ancestry: strong1 came from an ablation whose SBU
# criterion averaged validation folds that were also test folds, and strong / nested build on it.
ANCESTRY_MARK = ' (‡ test folds in its ancestry)'
TEST_FOLD_ANCESTRY = ('strong1', 'strong', 'nested')


def recipe_argv(config, split_args, evaluation):
    """--recipe, or on SBU the recipe chosen for that test fold: strong2's nested choice, or for the
    nested row strong1 plus its lever (the raw floor takes only the options its input depends on,
    options.floor_options)."""
    if config == 'strong2' and split_args[0] == '--fold':
        return ['--recipe', STRONG2_SBU[int(split_args[1])]]
    if config != 'nested':
        return ['--recipe', config]
    lever = LEVERS[SBU_NESTED[int(split_args[1])]]
    return ['--recipe', 'strong1', *to_argv(lever if evaluation != 'raw' else floor_options(lever, 'raw'))]


def covered(protocol, config, args):
    """Whether the plan runs this recipe on this protocol: nested on SBU only; without --protocols,
    only where the table has it (the strong recipes were not run on N-UCLA 2,3 → 1: CPU time)."""
    return (config != 'nested' or protocol == 'sbu') and (bool(args.protocols) or (protocol, config) not in UNRUN)


def plan(args):
    """One job per (protocol, recipe, split, seed): pretraining + linear evaluation first (semi
    fine-tunes its checkpoint), then the semi-supervised, supervised and raw-floor runs asked for.
    The raw floor draws no random numbers, so it runs for the first seed only."""
    jobs = []
    for protocol in args.protocols or PROTOCOLS:
        for dataset, split_args, split in PROTOCOLS[protocol][:1 if args.quick else None]:
            for config in (c for c in args.configs if covered(protocol, c, args)):
                for seed in args.seeds:
                    base = ['--dataset', dataset, *split_args, '--seed', str(seed), '--data_root', args.data_root]
                    name, kind = f'{protocol}/{config}/{split}-seed{seed}-', f'{protocol}/{config}/'
                    wanted = [e for e in args.evaluations or COVERED.get(config, EVALUATIONS)
                              if (e != 'raw' or seed == args.seeds[0]) and (config != 'nested' or e in ('linear', 'raw'))]
                    job = [Command(name + 'linear', PRETRAIN, tuple(base + recipe_argv(config, split_args, 'linear') + (
                        QUICK['linear'] if args.quick else [])), kind + 'linear')] if set(wanted) & {'linear', *SEMI} else []
                    for evaluation in (e for e in wanted if e != 'linear'):
                        if evaluation == 'init':
                            job.append(Command(name + 'init', PRETRAIN, tuple(base + recipe_argv(config, split_args, 'init')
                                                                          + ['--epochs', '0'] + (QUICK['init'] if args.quick else [])), kind + 'init'))
                            continue
                        mode = 'semi' if evaluation in SEMI else evaluation
                        argv = ['--mode', mode, *base, *recipe_argv(config, split_args, evaluation)] + (
                            ['--model_path', '{model_path}', '--semi_rate', str(int(evaluation[4:]) / 100)]
                            if mode == 'semi' else []) + (QUICK[mode] if args.quick else [])
                        job.append(Command(name + evaluation, 'linEval.py', tuple(argv), kind + evaluation))
                    jobs.append(job)
    return jobs


COLUMNS = [('top1_best', 'best epoch (test-selected, official)'), ('top1_last', 'SGD last epoch'),
           ('probe_top1', 'L-BFGS probe (C on val.)'), ('knn_selected_top1', 'KNN (k on val.)'),
           ('knn_top1', '1-NN (k = 1, fixed)')]
MARGINS = [('probe_top1', 'learned − raw, L-BFGS'), ('knn_selected_top1', 'learned − raw, KNN'),
           ('knn_top1', 'learned − raw, 1-NN')]
PAIRED = ('probe_top1', 'knn_top1')  # the headline's two probes: L-BFGS and the field's 1-NN


def per_seed(records, key):
    """One value per seed: the record's, or for SBU the mean over its 5 folds; a seed whose folds
    are not all recorded gives none (`missing` names those runs)."""
    by_seed = {}
    for record in records:
        by_seed.setdefault(record['seed'], []).append(record.get(key))
    folds = max(map(len, by_seed.values()), default=0)
    return [statistics.mean(v) if None not in v else None for v in by_seed.values() if len(v) == folds]


def missing(out, protocol, config, evaluation, seeds, quick=False):
    """The record names of one table row that are not in `out` (every split of every seed asked for,
    quick: the first split; the raw floor: the first seed only)."""
    seeds = seeds[:1] if evaluation == 'raw' else seeds
    return [name for seed in seeds for _, _, split in PROTOCOLS[protocol][:1 if quick else None]
            if not (Path(out) / (name := f'{protocol}/{config}/{split}-seed{seed}-{evaluation}.json')).exists()]


def margin(linear, floor, key, paired_by_seed):
    """learned − floor of one probe, mean ± std over seeds (by seed, or against the floor's mean)."""
    learned, below = per_seed(linear, key), per_seed(floor, key)
    if not learned or not below or None in learned or None in below:
        return '–'
    return mean_std([a - b for a, b in zip(learned, below)] if paired_by_seed else
                    [a - statistics.mean(below) for a in learned], 1)


def headline(records, protocol, config):
    """The README row of one protocol and recipe: SGD and the probes (L-BFGS, 1-NN, selected KNN),
    their margins over the raw-input and random-init floors ('L-BFGS / 1-NN'), semi, supervised."""
    linear, raw, init = records['linear'], records['raw'], records['init']
    cells = [mean_std(per_seed(linear, key), 1) for key in ('top1_last', 'probe_top1', 'knn_top1', 'knn_selected_top1')]
    cells += [' / '.join(margin(linear, floor, key, by_seed) for key in PAIRED) for floor, by_seed in ((raw, False), (init, True))]
    cells += [mean_std(per_seed(records[e], 'top1_last'), 1) for e in (*SEMI, 'supervise')]
    return [PROTOCOL_NAMES[protocol], marked(protocol, config) + selection_note(linear, protocol), *cells]


def selection_note(records, protocol):
    """' (probes: one held-out view)' for N-UCLA rows recorded before the probes chose their settings on
    each training view in turn (their records lack probe_validation's folds)."""
    old = protocol.startswith('ucla') and any('folds' not in r.get('probe_validation', {}) for r in records)
    return ' (probes: one held-out view)' if old else ''


def marked(protocol, config):
    """The recipe's name, marked on SBU where test folds were in the ancestry of its choice; strong2
    there with the recipe its nested selection chose, marked too: that selection saw no test fold,
    but strong1's steps that the N-UCLA screening did not re-screen came from an ablation that did."""
    if protocol == 'sbu' and config == 'strong2':
        chosen = sorted(set(STRONG2_SBU.values()))
        choice = f'nested choice: {chosen[0]} on every fold' if len(chosen) == 1 else 'nested choice per fold'
        return f'{config} ({choice}; ‡ strong1\'s steps have test folds in their ancestry)'
    return config + (ANCESTRY_MARK if protocol == 'sbu' and config in TEST_FOLD_ANCESTRY else '')


PROTOCOL_NAMES = {'sbu': 'SBU 5-fold', 'ucla_view3': 'N-UCLA 1,2 → 3', 'ucla_view1': 'N-UCLA 2,3 → 1'}
HEADLINE = ['protocol', 'recipe', 'SGD last epoch', 'L-BFGS probe', '1-NN', 'KNN (k on val.)',
            'learned − raw (L-BFGS / 1-NN)', 'learned − random-init (L-BFGS / 1-NN)', 'semi 1 %', 'semi 10 %',
            'supervised (last epoch)']


def write_results_readme(out, readme=None, seeds=(1, 2, 3), quick=False, evaluations=None):
    """Write <out>/README.md: mean ± std over seeds (SBU: of each seed's 5-fold mean), the margin of
    the learned features over the raw-input floor of the same input, and the SBU folds; and the
    headline table between the markers of `readme`. A row whose runs are not all recorded (every
    fold of `seeds`; quick: the first fold; the `evaluations` of a recipe that has any) averages its
    complete seeds and names the missing runs."""
    out = Path(out)
    header = ['protocol', 'recipe', 'evaluation', *(label for _, label in COLUMNS + MARGINS), 'seeds', 's / run']
    rows, folds, commands, everything, heads, minutes = [header], [], {}, [], [HEADLINE], dict.fromkeys(CONFIGS, 0)
    incomplete = {}
    for protocol in PROTOCOLS:
        for config in CONFIGS:
            records = {e: [load(p) for p in sorted((out / protocol / config).glob(f'*-seed*-{e}.json'))]
                       for e in EVALUATIONS}
            raw = records['raw']
            for evaluation, runs in records.items():
                if not runs:
                    if any(records.values()) and evaluation in COVERED.get(config, evaluations or EVALUATIONS) \
                            and evaluation in (evaluations or EVALUATIONS):
                        incomplete.update({name: f'{protocol} {config}' for name in missing(
                            out, protocol, config, evaluation, list(seeds), quick)})
                    continue
                everything += runs
                minutes[config] += sum(r['seconds'] for r in runs) / 60
                commands.setdefault((config, evaluation), runs[0]['provenance']['process_command'])
                margins = [mean_std([v - statistics.mean(per_seed(raw, key)) for v in per_seed(runs, key)])
                           if evaluation == 'linear' and per_seed(raw, key) and None not in per_seed(raw, key) else ''
                           for key, _ in MARGINS]
                absent = missing(out, protocol, config, evaluation, list(seeds), quick)
                incomplete.update({name: f'{protocol} {config}' for name in absent})
                rows.append([protocol, marked(protocol, config), evaluation, *(mean_std(per_seed(runs, key)) for key, _ in COLUMNS),
                             *margins, str(len(per_seed(runs, 'seed'))) + (
                                 f" × {len({r['options']['fold'] for r in runs})} folds" if protocol == 'sbu' else '')
                             + (f' (missing: {len(absent)} runs)' if absent else ''),
                             f"{statistics.mean(r['seconds'] for r in runs):.0f}"])
            if records['linear']:
                heads.append(headline(records, protocol, config))
                if any(row == f'{protocol} {config}' for row in incomplete.values()):
                    heads[-1][1] += ' (incomplete, see results/README.md)'

            for run in (r for r in records['linear'] if protocol == 'sbu'):
                folds.append([f"fold{run['options']['fold']}", config, f"seed {run['seed']}",
                              *(mean_std([run.get(key)]) for key, _ in COLUMNS)])
    table, fold_table = markdown(rows), markdown([['fold', 'recipe', 'seed', *(label for _, label in COLUMNS)], *sorted(folds)])
    text = (Path(__file__).parent / 'docs' / 'templates' / 'reproduce.md').read_text().format(
        runs=experiments.provenance_note(everything), minutes=f'{sum(minutes.values()):.0f}',
        per_recipe=', '.join(f'{c} {m:.0f}' for c, m in minutes.items() if m), table=table,
        incomplete=incomplete_text(incomplete), fold_table=fold_table,
        commands='\n'.join(f'- {c} {e}: `{cmd}`' for (c, e), cmd in commands.items()))
    (out / 'README.md').write_text(text)
    if readme and MARKERS[0] in Path(readme).read_text():
        before, rest = Path(readme).read_text().split(MARKERS[0], 1)
        Path(readme).write_text(before + MARKERS[0] + '\n' + markdown(heads) + '\n' + MARKERS[1] + rest.split(MARKERS[1], 1)[1])
    return text


def incomplete_text(incomplete):
    """The paragraph naming the runs that rows of the table lack ('' when none does)."""
    if not incomplete:
        return ''
    return ('**Incomplete rows** average only their complete seeds; these runs are not recorded: '
            + ', '.join(f'`{name}`' for name in sorted(incomplete)) + '.\n\n')


MARKERS = ('<!-- reproduce.py --summary writes this table -->', '<!-- end of the table -->')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--protocols', nargs='+', choices=list(PROTOCOLS), default=None,
                        help='default: every protocol, each with the recipes the table has there')
    parser.add_argument('--configs', nargs='+', choices=CONFIGS, default=CONFIGS,
                        help='recipes; nested: SBU only, the lever chosen per test fold by nested selection')
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3])
    parser.add_argument('--evaluations', nargs='+', choices=EVALUATIONS, default=None,
                        help="which runs of each job (default: those the table has for the recipe; semi needs the "
                             "linear run's checkpoint, which is rerun if gone, its record kept)")
    parser.add_argument('--data_root', default=DATA_ROOT)
    parser.add_argument('--out', default=None, help='result JSONs and README.md (default results/, quick: runs/reproduce-quick)')
    parser.add_argument('--runs', default=None, help='run folders with checkpoints (default runs/reproduce[-quick])')
    parser.add_argument('--jobs', type=positive_int, default=1, help='jobs run side by side')
    parser.add_argument('--threads', type=positive_int, default=None,
                        help='CPU threads per job (default: the CPUs this process may use / --jobs)')
    parser.add_argument('--force', action='store_true', help='rerun runs already recorded in --out')
    parser.add_argument('--quick', action='store_true', help='1 seed, SBU fold 0, 2-3 epochs: a smoke test')
    parser.add_argument('--summary', action='store_true', help='only rebuild the table from recorded runs')
    args = parser.parse_args(argv)
    args.out = args.out or ('runs/reproduce-quick' if args.quick else 'results')
    args.runs = args.runs or ('runs/reproduce-quick' if args.quick else 'runs/reproduce')
    if args.quick:
        args.protocols, args.seeds = ['sbu'], args.seeds[:1]
    if not args.summary:
        experiments.run_all(plan(args), args.out, args.runs, args.jobs,
                            args.threads or max(1, available_cpus() // args.jobs), args.force)
    committed = Path(args.out).resolve() == experiments.ROOT / 'results'
    print(write_results_readme(args.out, experiments.ROOT / 'README.md' if committed else None, args.seeds, args.quick,
                    args.evaluations))


if __name__ == '__main__':
    cli(main, lambda: None)
