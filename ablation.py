"""Choose a recipe on validation data that mirrors each test protocol; no test sequence is used
(the test files are parsed and checked with the rest of their dataset, nothing more).

    python ablation.py --jobs 2          # multi-seed N-UCLA screening, then SBU nested selection
    python ablation.py --stage rounds --seeds 1 --finalists 3   # the earlier one-seed rounds
    python ablation.py --stage semi      # the semi-supervised fine-tuning schedules
    python ablation.py --stage scale --jobs 2   # the scale study of the recurrent encoder (below)
    python ablation.py --summary         # rebuild results/ablation/README.md from the recorded runs

N-UCLA (train views 1, 2; test view 3): every run pretrains and probes on one training view and
validates on the other (`--eval_split validation --val_group 0 | 1`). SBU (5 folds): for test fold
f, a run trains on three of its four training folds and validates on the fourth (`--fold f
--val_group g`, g = 0, 1), so the choice for fold f comes from runs that never use it
(`nested_choice`). Criterion, fixed in advance: the mean of the L-BFGS and KNN probes' validation
top-1. Rows are options added to strong1 (recipes.SCREEN; the one-seed rounds: recipes.LEVERS); each
also gets the raw-input floor of its input and, in the multi-seed screening, the random-init floor
of its encoder. A row is kept when its paired difference to strong1 (same view, same seed) clears
its noise (`clears_noise`).

The scale study (`--stage scale`, recipes.SCALE, records in <out>/scale/): strong2 with only its
encoder's size changed (LSTM and bi-GRU, 256 / 512 / 1024 units, 1-3 layers; the peers' 3-layer
bi-GRU of 1024 also with their final-state read-out and reconstruction), on the N-UCLA cross-view
validation, each paired with strong2 itself (`lstm256x1`) and given its random-init floor. Its
compute budget, fixed before any of its runs: about 16 core-hours in all. Each run's update epochs
may take SCALE_CAP core-minutes (the peers' size PEER_CAP), at the seconds per update epoch that
`bench/speed.py --sizes` recorded (bench/results/sizes-cpu.json), in the faster of fp32 and bf16:
a row trains min(120, what fits) epochs with its decay at half of them (strong2: 120, decay at 60),
and a row that fits fewer than MIN_EPOCHS is not run (its table line says so). Worst case: first
pass 17 rows x 2 runs x 8 + 3 x 2 x 25 = 422 core-minutes, second pass 3 x 4 x 25 = 300,
confirmation 6 x 25 = 150, precision check about 40, floors and evaluation about 70: 16.4 core-hours.
Stages, each run once the one before is recorded (the same command continues after any stop):
  1. every row, seed 1, both validation views, with its random-init floor;
  2. the FINALISTS rows with the best mean paired difference to strong2 that are not clearly behind
     it (mean paired difference above BEHIND), and strong2: seeds 2 and 3;
  3. the finalist whose 6 paired differences clear their noise with the largest mean is the
     candidate; with 20 rows tried, a 2-standard-error bar would pass one by chance, so it is kept
     only if it clears its noise again on fresh seeds (FRESH_SEEDS, paired with strong2);
  4. precision: PRECISION_CHECK in fp32 beside its bf16 runs, seeds 1-3, so that the table shows
     whether bf16 moves the criterion by more than the seeds' spread.
"""
import argparse
import json
import math
import re
import statistics
from pathlib import Path

import experiments
from dataset import DATA_ROOT
from experiments import PRETRAIN, Command, load, markdown, mean_std
from options import floor_options, positive_int, to_argv
from recipes import LABELS, LEVERS, PEERS, RECIPES, SCALE, SCREEN
from runs import available_cpus, cli

BASE = 'strong1'  # every row is options added to this recipe
# Rows are (id, options): records are named by the id, tables show the row's label (recipes.LABELS).
SCREEN_ROWS, LEVER_ROWS = list(SCREEN.items()), list(LEVERS.items())
SBU_INNER = range(2)  # inner validation folds of each SBU test fold: the first two of its four training folds
# Recipes that also have test numbers (results/): does the validation rank them as the test does?
REFERENCES = [('faithful', dict(recipe='faithful')), ('corrected', dict(recipe='corrected'))]
ROWS = REFERENCES + LEVER_ROWS


def label(row):
    """A row id's words in the tables; a combination of kept rows ('chosen-<id>_<id>...') names each."""
    if row.startswith('chosen-'):
        return 'chosen: ' + ' & '.join(LABELS[part] for part in row[len('chosen-'):].split('_'))
    return LABELS.get(row, row)


def slug(name):
    """Options as text -> a record name (the raw and random-init floors are named by their options)."""
    return ''.join(c if c.isalnum() else '-' for c in name.lower()).strip('-').replace('--', '-')


def raw_argv(options):
    """The raw-input floor of a row's input (what raw_features reads) and its record name."""
    recipe = options.get('recipe', BASE)
    inputs = floor_options({**RECIPES[recipe], **options}, 'raw')
    return ['--mode', 'raw', '--recipe', recipe, *to_argv(inputs)], 'raw-' + slug(
        '-'.join(f'{k}{v}' for k, v in sorted(inputs.items())) or recipe)


# Semi-supervised fine-tuning schedules (10 % labels) tried on the rotation lever's N-UCLA validation
# checkpoints, after the one-seed rounds: (record key, what, linEval.py options).
SEMI_STUDY = [('base', 'official schedule: SGD lr 0.01, 15 epochs', ()),
              ('adam', 'Adam lr 1e-3', ('--optimizer', 'adam', '--learning_rate', '1e-3')),
              ('adam50', 'Adam lr 1e-3, 50 epochs', ('--optimizer', 'adam', '--learning_rate', '1e-3', '--epochs', '50',
                                                    '--lr_decay_epochs', '40')),
              ('lr001', 'SGD lr 0.001', ('--learning_rate', '0.001')),
              ('lr1e4', 'SGD lr 0.0001', ('--learning_rate', '0.0001')),
              ('ep1', 'SGD lr 0.01, one epoch', ('--epochs', '1'))]


def semi_plan(data_root):
    """Per validation view: the rotation lever's pretraining run, then each fine-tuning schedule on its checkpoint."""
    pretraining = [job[0] for job in plan([('rotation', LEVERS['rotation'])], 'ucla_view3', [1], data_root) if job[0].script == PRETRAIN]
    return [[run] + [Command(f'semi/{key}-val{g}-seed1', 'linEval.py', ('--mode', 'semi', '--semi_rate', '0.1', '--model_path',
                                                                    '{model_path}', *extra), 'semi')
                     for key, _, extra in SEMI_STUDY] for g, run in enumerate(pretraining)]


def semi_table(out):
    """Markdown rows of the fine-tuning study: SGD-last-epoch validation top-1 per held-out view."""
    lines, everything = [['schedule', 'validation view 1', 'validation view 2']], []
    for key, what, _ in SEMI_STUDY:
        runs = [Path(out, 'semi', f'{key}-val{g}-seed1.json') for g in (0, 1)]
        everything += [load(p) for p in runs if p.is_file()]
        lines.append([what, *(f"{load(p)['top1_last']:.1f}" if p.is_file() else 'missing' for p in runs)])
    return markdown(lines), everything


def init_argv(options):
    """The random-init floor of a row's encoder (the same pretraining command with no update epoch)
    and its record name: it depends on the encoder and its input only."""
    encoder = floor_options({**RECIPES[BASE], **options}, 'init')
    return ['--recipe', BASE, *to_argv(encoder), '--epochs', '0'], 'init-' + slug(
        '-'.join(f'{k}{v}' for k, v in sorted(encoder.items()) if RECIPES[BASE].get(k) != v) or BASE)


def validation_splits(protocol, data_root):
    """[(the data arguments of one validation run, the split's name)] of a protocol."""
    splits = [(['--dataset', 'ucla', '--test_view', '3', '--val_group', str(g)], f'val{g}') for g in (0, 1)] \
        if protocol == 'ucla_view3' else \
        [(['--dataset', 'sbu', '--fold', str(f), '--val_group', str(g)], f'fold{f}-val{g}') for f in range(5)
         for g in SBU_INNER]
    return [([*split_args, '--eval_split', 'validation', '--data_root', data_root], split) for split_args, split in splits]


def raw_command(protocol, options, common, split):
    """The raw-input floor run of a row's input on one validation split (common: its data arguments)."""
    argv, name = raw_argv(options)
    return Command(f'{protocol}/{name}-{split}', 'linEval.py', tuple(common + argv), f'{protocol}/raw')


def plan(rows, protocol, seeds, data_root, floors=False):
    """One job per validation run of each row: pretraining + probes, and the raw floor of its input
    (with `floors`, also the random-init floor of its encoder for every seed)."""
    jobs, seen = [], set()
    for name, options in rows:
        for common, split in validation_splits(protocol, data_root):
            for seed in seeds:
                jobs.append([Command(f'{protocol}/{name}-{split}-seed{seed}', PRETRAIN,
                                 tuple(common + ['--recipe', BASE, *to_argv(options), '--seed', str(seed)]), f'{protocol}/learned')])
                argv, init = init_argv(options)
                if floors and (init, split, seed) not in seen:
                    seen.add((init, split, seed))
                    jobs.append([Command(f'{protocol}/{init}-{split}-seed{seed}', PRETRAIN,
                                     tuple(common + argv + ['--seed', str(seed)]), f'{protocol}/init')])
            raw = raw_command(protocol, options, common, split)
            if raw.name not in seen:
                seen.add(raw.name)
                jobs.append([raw])
    return jobs


def criterion(record):
    return (record['probe_top1'] + record['knn_selected_top1']) / 2


def records(out, protocol, name, options, split='', seed=1):
    """(learned runs of `seed` ('*': every seed), raw runs) of one row recorded in out, optionally of
    one split prefix. The one-seed rounds read seed 1 alone."""
    learned = [r for key, r in runs_of(out, protocol, name, split).items() if seed == '*' or key.endswith(f'seed{seed}')]
    return learned, raw_records(out, protocol, options, split)


def raw_records(out, protocol, options, split=''):
    """The raw-input floor's records of a row's input, optionally of one split prefix."""
    return [load(p) for p in sorted(Path(out, protocol).glob(f'{raw_argv(options)[1]}-{split}*.json'))]


def ucla_ranking(out):
    """Levers with N-UCLA cross-view records, best criterion first."""
    scored = [(statistics.mean(map(criterion, runs)), name) for name, options in LEVER_ROWS
              if (runs := records(out, 'ucla_view3', name, options)[0])]
    return [name for _, name in sorted(scored, reverse=True)]


def nested_choice(out, fold, rows=LEVER_ROWS, seed=1):
    """The row chosen for SBU test fold `fold`: best mean criterion over its inner validation runs
    (records of `--fold fold` only: they train and validate on other folds and never use it)."""
    scored = [(statistics.mean(map(criterion, runs)), name) for name, options in rows
              if (runs := records(out, 'sbu', name, options, f'fold{fold}-', seed)[0])]
    return max(scored)[1] if scored else None


def nested_rows(out, seeds):
    """The SBU nested selection's candidates: strong1 and the N-UCLA screening's choice."""
    return [SCREEN_ROWS[0]] + [row for row in [recipe_choice(out, seeds)] if row]


def runs_of(out, protocol, stem, split=''):
    """{'<split>-seed<s>': record} of the runs recorded as <stem>-<split>-seed<s> (a row's learned runs:
    stem: the row's id; its random-init floors: init_argv's name), optionally of one split prefix."""
    pattern = re.compile(re.escape(f'{stem}-{split}') + r'(fold\d-)?(val\d-)?seed\d+')
    return {p.stem[len(stem) + 1:]: load(p) for p in sorted(Path(out, protocol).glob(f'{stem}-*.json'))
            if pattern.fullmatch(p.stem)}


def paired(row, base):
    """Criterion differences row - base over the (split, seed) runs both have."""
    return [criterion(row[k]) - criterion(base[k]) for k in sorted(row.keys() & base.keys())]


def clears_noise(diffs, expected):
    """Kept: every paired run is there and the mean difference exceeds two of its standard errors."""
    return len(diffs) == expected > 1 and statistics.mean(diffs) > 2 * statistics.stdev(diffs) / math.sqrt(len(diffs))


def screen_choice(out, seeds):
    """strong1's options plus those of every screened row that clears its noise (SCREEN order): the
    recipe the multi-seed N-UCLA screening chooses, and the names of the rows it takes."""
    base = runs_of(out, 'ucla_view3', BASE)
    kept = [(name, options) for name, options in SCREEN_ROWS[1:]
            if clears_noise(paired(runs_of(out, 'ucla_view3', name), base), 2 * len(seeds))]
    return {k: v for _, options in kept for k, v in options.items()}, [name for name, _ in kept]


def waiting_rows(out, seeds):
    """The screened rows whose runs are not all recorded."""
    return [name for name, _ in SCREEN_ROWS if len(runs_of(out, 'ucla_view3', name)) < 2 * len(seeds)]


def recipe_choice(out, seeds):
    """The screening's recipe as a row (name, options), by a rule fixed before the kept rows ran
    together: those rows together where that row clears its noise too, else the kept row with the
    largest mean paired difference; None when nothing is kept or runs are missing."""
    chosen, kept = screen_choice(out, seeds)
    if not kept or waiting_rows(out, seeds):
        return None
    base = runs_of(out, 'ucla_view3', BASE)
    rows = screen_rows(out, seeds)
    diffs = {name: paired(runs_of(out, 'ucla_view3', name), base) for name, _ in rows}
    together = next(row for row in rows if row[1] == chosen)
    if clears_noise(diffs[together[0]], 2 * len(seeds)):
        return together
    if len(diffs[together[0]]) < 2 * len(seeds):
        return None
    return max((row for row in SCREEN_ROWS if row[0] in kept), key=lambda row: statistics.mean(diffs[row[0]]))


def screen_verdict(out, seeds):
    """The screening's choice in words, or what it still waits for."""
    if (waiting := waiting_rows(out, seeds)):
        return f"none yet: {len(waiting)} of the {len(SCREEN)} rows lack runs ({'; '.join(map(label, waiting))})"
    kept, choice = screen_choice(out, seeds)[1], recipe_choice(out, seeds)
    if not kept:
        return f'{BASE} (no change cleared its noise)'
    if choice is None:
        return 'none yet: the kept rows together lack runs'
    together = choice[0] not in kept or len(kept) == 1
    return f'"{label(choice[0])}"' + ('' if together else ' alone (the kept rows together did not clear their noise)')


def screen_rows(out, seeds):
    """The screened rows, plus (once they are all recorded) the combination of the kept ones where it
    is no screened row itself."""
    chosen, kept = screen_choice(out, seeds)
    rows = list(SCREEN_ROWS)
    if len(kept) > 1 and not waiting_rows(out, seeds) and all(chosen != options for _, options in SCREEN_ROWS):
        rows.append(('chosen-' + '_'.join(kept), chosen))
    return rows


def screen_table(out, seeds):
    """Markdown rows of the multi-seed screening: each row's validation mean ± sd, its paired
    difference to strong1 and whether that clears the noise, and its raw and random-init floors."""
    expected = 2 * len(seeds)
    base = runs_of(out, 'ucla_view3', BASE)
    header = ['row', 'runs', 'L-BFGS', 'KNN', 'criterion', 'paired difference to strong1', 'verdict',
              'raw criterion', 'random-init criterion', 'learned − random-init']
    lines, everything = [header], []
    for name, options in screen_rows(out, seeds):
        runs = runs_of(out, 'ucla_view3', name)
        raw = records(out, 'ucla_view3', name, options)[1]
        init = list(runs_of(out, 'ucla_view3', init_argv(options)[1]).values())
        everything += list(runs.values()) + raw + init
        diffs = [] if name == BASE else paired(runs, base)
        verdict = ('base' if name == BASE else f'missing {expected - len(diffs)} of {expected} runs'
                   if len(diffs) < expected else 'kept' if clears_noise(diffs, expected) else 'dropped')
        learned = list(map(criterion, runs.values()))
        floor = list(map(criterion, init))
        margin = (statistics.mean(learned) - statistics.mean(floor)) if learned and floor else None
        lines.append([label(name), f'{len(runs)} of {expected}', mean_std([r['probe_top1'] for r in runs.values()], 1),
                      mean_std([r['knn_selected_top1'] for r in runs.values()], 1), mean_std(learned, 1),
                      mean_std(diffs, 1) + (f' (n={len(diffs)})' if diffs else ''), verdict,
                      mean_std(list(map(criterion, raw)), 1), mean_std(floor, 1),
                      '–' if margin is None else f'{margin:+.1f}'])
    return markdown(lines), everything


SCALE_BASE, STRONG2 = 'lstm256x1', dict(recipe='strong2')  # strong2 itself: its row id, its options
SCALE_CAP, PEER_CAP, MIN_EPOCHS = 8, 25, 15  # core-minutes of update epochs per run; fewest epochs worth a run
BEHIND, FINALISTS, FRESH_SEEDS = -2.0, 3, (4, 5, 6)
PRECISION_CHECK = 'bigru256x1'
SIZES_BENCH = experiments.ROOT / 'bench' / 'results' / 'sizes-cpu.json'


def bench_timings():
    """{'<id> <amp> <threads>': timing} of bench/results/sizes-cpu.json ({} before it is recorded)."""
    return json.loads(SIZES_BENCH.read_text())['timings'] if SIZES_BENCH.is_file() else {}


def scale_rows():
    """({id: (options, amp, epochs)} of the scale rows that fit the budget, {id: why not} of the others)."""
    timings = bench_timings()
    fit, left = {}, {}
    for row, (_, options) in SCALE.items():
        timed = {amp: t['seconds_per_update_epoch'] for amp in ('off', 'bf16') if (t := timings.get(f'{row} {amp} 1'))}
        if not timed:
            left[row] = f'not timed (bench/speed.py --sizes {row})'
            continue
        amp = min(timed, key=timed.get)
        cap = PEER_CAP if all(options.get(k) == v for k, v in PEERS.items()) else SCALE_CAP
        epochs = min(120, int(cap * 60 // timed[amp]))
        if epochs < MIN_EPOCHS:
            left[row] = f'over budget: {cap} core-min fit {epochs} epochs at {timed[amp]:.0f} s each'
        else:
            fit[row] = (options, amp, epochs)
    if PRECISION_CHECK in fit and fit[PRECISION_CHECK][1] == 'bf16':
        options, _, epochs = fit[PRECISION_CHECK]
        fit[f'{PRECISION_CHECK}-fp32'] = (options, 'off', epochs)
    return fit, left


def scale_plan(ids, seeds, rows, data_root, floors=True):
    """One job per validation run of each scale row (and, with `floors`, its random-init floor and
    the raw-input floor of strong2's input, which every row reads: recorded once, in ucla_view3/)."""
    splits = validation_splits('ucla_view3', data_root)
    jobs = [[raw_command('ucla_view3', STRONG2, common, split)] for common, split in splits] if floors else []
    for row in ids:
        options, amp, epochs = rows[row]
        argv = ['--recipe', 'strong2', *to_argv(options), '--amp', amp]
        schedule = ['--epochs', str(epochs), '--lr_decay_epochs', str(epochs // 2)]
        for common, split in splits:
            for seed in seeds:
                jobs.append([Command(f'scale/{row}-{split}-seed{seed}', PRETRAIN,
                                     tuple(common + argv + schedule + ['--seed', str(seed)]), f'scale/{row}')])
                if floors:
                    jobs.append([Command(f'scale/init-{row}-{split}-seed{seed}', PRETRAIN,
                                         tuple(common + argv + ['--epochs', '0', '--seed', str(seed)]), f'scale/init-{row}')])
    return jobs


def scale_differences(out, row, seeds):
    """Paired criterion differences row − strong2 over the (view, seed) runs of `seeds` both have."""
    wanted = {f'val{g}-seed{s}' for g in (0, 1) for s in seeds}
    base = {k: v for k, v in runs_of(out, 'scale', SCALE_BASE).items() if k in wanted}
    return paired({k: v for k, v in runs_of(out, 'scale', row).items() if k in wanted}, base)


def scale_finalists(out, rows, left):
    """The rows that go on to seeds 2 and 3 (None until every row is timed and the first pass
    recorded); rows, left: `scale_rows()`."""
    if any(why.startswith('not timed') for why in left.values()):
        return None
    first = {row: scale_differences(out, row, [1]) for row in rows if row != SCALE_BASE and not row.endswith('-fp32')}
    if any(len(d) < 2 for d in first.values()) or len(runs_of(out, 'scale', SCALE_BASE)) < 2:
        return None
    ahead = sorted((statistics.mean(d), row) for row, d in first.items() if statistics.mean(d) > BEHIND)
    return [row for _, row in ahead[::-1][:FINALISTS]]


def scale_candidate(out, finalists):
    """The finalist whose 6 paired differences clear their noise with the largest mean, or None."""
    cleared = [(statistics.mean(d), row) for row in finalists or []
               if clears_noise(d := scale_differences(out, row, [1, 2, 3]), 6)]
    return max(cleared)[1] if cleared else None


def scale_stage(out, data_root, run):
    """Run what the scale study's next stages need (`run(jobs)`), in order."""
    rows, left = scale_rows()
    run(scale_plan(list(rows), [1], rows, data_root))
    finalists = scale_finalists(out, rows, left)
    if finalists is None:
        return
    run(scale_plan([SCALE_BASE, *finalists], [2, 3], rows, data_root))
    run(scale_plan([r for r in (PRECISION_CHECK, f'{PRECISION_CHECK}-fp32') if r in rows], [1, 2, 3], rows, data_root,
                   floors=False))
    if (candidate := scale_candidate(out, finalists)):
        run(scale_plan([SCALE_BASE, candidate], FRESH_SEEDS, rows, data_root, floors=False))


def scale_table(out):
    """Markdown rows of the scale study, its verdict, and its records."""
    rows, left = scale_rows()
    finalists = scale_finalists(out, rows, left)
    candidate = scale_candidate(out, finalists)
    timings = bench_timings()
    raw = raw_records(out, 'ucla_view3', STRONG2)
    header = ['id', 'encoder', 'precision', 'epochs', 's / update epoch', 'runs', 'L-BFGS', '1-NN', 'KNN (k on val.)',
              'criterion', 'paired difference to strong2', 'verdict', 'random-init criterion', 'learned − random-init',
              'learned − raw', 'core-min']
    lines, everything = [header], []
    for row in [*SCALE, *(r for r in rows if r not in SCALE)]:
        words = SCALE[row][0] if row in SCALE else SCALE[PRECISION_CHECK][0] + ' in fp32'
        if row in left:
            lines.append([row, words, '–', '–', '–', '0', *['–'] * 5, left[row], '–', '–', '–', '0'])
            continue
        _, amp, epochs = rows[row]
        runs = runs_of(out, 'scale', row)
        init = [r for r in runs_of(out, 'scale', f'init-{row}').values()]
        everything += list(runs.values()) + init
        first = scale_differences(out, row, [1])
        more = scale_differences(out, row, [1, 2, 3])
        fresh = scale_differences(out, row, FRESH_SEEDS)
        if row == SCALE_BASE:
            verdict, diffs = 'base', []
        elif row.endswith('-fp32'):
            base = runs_of(out, 'scale', PRECISION_CHECK)
            diffs = paired(runs, base)
            verdict = f'fp32 − bf16: {mean_std(diffs, 1)}' if diffs else 'runs missing'
        elif len(first) < 2:
            verdict, diffs = 'first pass: runs missing', first
        elif finalists is not None and row not in finalists:
            verdict, diffs = ('left behind' if statistics.mean(first) <= BEHIND else
                              f'not among the {FINALISTS} best'), first
        elif finalists is None:
            verdict, diffs = 'first pass recorded', first
        elif len(more) < 6:
            verdict, diffs = f'seeds 2, 3: {6 - len(more)} runs missing', more
        elif row != candidate:
            verdict, diffs = ('kept, below the best' if clears_noise(more, 6) else 'dropped (within noise)'), more
        elif len(fresh) < 6:
            verdict, diffs = f'candidate; fresh seeds: {6 - len(fresh)} runs missing', more
        else:
            verdict, diffs = (f"confirmed on seeds {', '.join(map(str, FRESH_SEEDS))}: {mean_std(fresh, 1)}"
                              if clears_noise(fresh, 6) else f'not confirmed on fresh seeds ({mean_std(fresh, 1)})'), more
        learned = list(map(criterion, runs.values()))
        margins = [f'{statistics.mean(learned) - statistics.mean(map(criterion, floor)):+.1f}' if learned and floor
                   else '–' for floor in (init, raw)]
        seconds = sum(r['seconds'] for r in [*runs.values(), *init])
        timing = timings.get(f"{row.removesuffix('-fp32')} {amp} 1")
        lines.append([row, words, 'bf16' if amp == 'bf16' else 'fp32', f'{epochs}',
                      f"{timing['seconds_per_update_epoch']:.1f}" if timing else '–',
                      str(len(runs)), mean_std([r['probe_top1'] for r in runs.values()], 1),
                      mean_std([r['knn_top1'] for r in runs.values()], 1),
                      mean_std([r['knn_selected_top1'] for r in runs.values()], 1), mean_std(learned, 1),
                      mean_std(diffs, 1) + (f' (n={len(diffs)})' if diffs else ''), verdict,
                      mean_std(list(map(criterion, init)), 1), *margins, f'{seconds / 60:.0f}'])
    hours = sum(r['seconds'] for r in everything) / 3600  # the study's own runs (the raw floor is the screening's)
    return markdown(lines), everything + raw, scale_verdict(out, finalists, candidate), hours


def scale_verdict(out, finalists, candidate):
    """The scale study's choice in words, or what it still waits for."""
    if finalists is None:
        return 'none yet: the first pass lacks runs'
    if not finalists:
        return 'strong2: every size was left behind in the first pass'
    if any(len(scale_differences(out, row, [1, 2, 3])) < 6 for row in finalists):
        return 'none yet: the finalists lack runs of seeds 2 and 3'
    if candidate is None:
        return 'strong2: no size cleared its noise on 3 seeds'
    fresh = scale_differences(out, candidate, FRESH_SEEDS)
    if len(fresh) < 6:
        return f'none yet: {candidate} cleared its noise and awaits its fresh seeds'
    return candidate if clears_noise(fresh, 6) else f'strong2: {candidate} was not confirmed on fresh seeds'


def agreement(out, results):
    """Validation criterion against the test criterion (same probes, results/) of the recipes that
    have both, per protocol: rows of (recipe, validation, test) and whether the two orders agree."""
    lines, verdicts = [], []
    for protocol in ('ucla_view3', 'sbu'):
        pairs = []
        for name, options in REFERENCES + LEVER_ROWS[:2]:  # strong1 and the lever that made strong
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


def nested_table(out, seeds):
    """Markdown rows of the new SBU nested selection: per test fold, each candidate's inner criterion
    and the choice."""
    rows = nested_rows(out, seeds)
    header = ['test fold', *[label(name) for name, _ in rows], 'chosen']
    lines, everything = [header], []
    for fold in range(5):
        cells, complete = [str(fold)], True
        for name, options in rows:
            runs = records(out, 'sbu', name, options, f'fold{fold}-', '*')[0]
            everything += runs
            complete &= len(runs) == 2 * len(seeds)
            cells.append(mean_std(list(map(criterion, runs)), 1) + f' ({len(runs)} of {2 * len(seeds)})')
        lines.append(cells + [label(nested_choice(out, fold, rows, '*') or '–') if complete else 'runs missing'])
    return markdown(lines), everything


def write_ablation_readme(out, seeds):
    """results/ablation/README.md: the multi-seed screening, the SBU nested selection between strong1
    and its choice, the earlier one-seed rounds, and (post hoc) validation against the test."""
    out = Path(out)
    screen, screened = screen_table(out, seeds)
    nested, nested_runs = nested_table(out, seeds)
    semi, semi_runs = semi_table(out)
    scale, scale_runs, scale_chosen, scale_hours = scale_table(out)
    chosen = {name: [] for name, _ in ROWS}
    ranking = ucla_ranking(out)
    if ranking:
        chosen[ranking[0]].append('N-UCLA 1,2→3')
    for fold in range(5):
        if (name := nested_choice(out, fold)):
            chosen[name].append(f'SBU fold {fold}')
    header = ['row', 'N-UCLA: L-BFGS', 'KNN', 'raw L-BFGS', 'raw KNN', 'criterion', 'SBU: L-BFGS', 'KNN',
              'raw L-BFGS', 'raw KNN', 'criterion', 'chosen for']
    lines, everything = [header], []
    for name, options in ROWS:
        cells = [label(name)]
        for protocol in ('ucla_view3', 'sbu'):
            learned, raw = records(out, protocol, name, options)
            raw = raw if learned else []  # a row not run on this protocol shows no floor either
            everything += learned + raw
            cells += [mean_std([r[k] for r in runs], 1) for runs in (learned, raw)
                      for k in ('probe_top1', 'knn_selected_top1')] + [mean_std(list(map(criterion, learned)), 1)]
            splits = 2 if protocol == 'ucla_view3' else 5 * len(SBU_INNER)  # one seed: a run per split
            if learned and (len(learned) < splits or len(raw) < splits):
                cells[-1] += f' (runs missing: {len(learned)} + {len(raw)} raw of {splits} + {splits})'
        lines.append(cells + [', '.join(chosen[name]) or '–'])
    table = markdown(lines)
    pairs, verdicts = agreement(out, experiments.ROOT / 'results')
    agree = markdown([['protocol', 'recipe', 'validation criterion', 'test criterion'], *pairs])
    text = (Path(__file__).parent / 'docs' / 'templates' / 'ablation.md').read_text().format(
        seeds_text=' '.join(map(str, seeds)), n_seeds=len(seeds), screen_runs=experiments.provenance_note(screened),
        screen=screen, chosen=screen_verdict(out, seeds),
        nested_runs=experiments.provenance_note(nested_runs) or 'none yet', nested=nested,
        rounds_runs=experiments.provenance_note(everything), table=table,
        semi_runs=experiments.provenance_note(semi_runs) or 'none yet', semi=semi,
        scale=scale, scale_runs=experiments.provenance_note(scale_runs) or 'none yet', scale_chosen=scale_chosen,
        scale_hours=f'{scale_hours:.1f}',
        verdicts='; '.join(verdicts) or 'Not run yet.', agree=agree)
    (out / 'README.md').write_text(text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--stage', choices=['all', 'screen', 'nested', 'rounds', 'semi', 'scale'], default='all',
                        help='screen: the multi-seed N-UCLA cross-view screening (recipes.SCREEN); nested: SBU nested '
                             'selection between strong1 and its choice; all: both; rounds: the earlier one-seed '
                             'rounds (recipes.LEVERS, recorded with --seeds 1 --finalists 3); semi: the '
                             'semi-supervised fine-tuning schedules; scale: the scale study of the encoder (recipes.SCALE)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3])
    parser.add_argument('--finalists', type=positive_int, default=3,
                        help='rounds: best N-UCLA rows taken to SBU (+ strong1)')
    parser.add_argument('--rows', nargs='+', default=None, help='only the rows of these ids')
    parser.add_argument('--data_root', default=DATA_ROOT)
    parser.add_argument('--out', default='results/ablation')
    parser.add_argument('--runs', default='runs/ablation')
    parser.add_argument('--jobs', type=positive_int, default=available_cpus(), help='runs side by side')
    parser.add_argument('--threads', type=positive_int, default=1, help='CPU threads per run')
    parser.add_argument('--force', action='store_true', help='rerun runs already recorded in --out')
    parser.add_argument('--summary', action='store_true', help='only rebuild the tables')
    args = parser.parse_args(argv)

    def run(rows, protocol, floors=False):
        rows = [(n, o) for n, o in rows if not args.rows or n in args.rows]
        experiments.run_all(plan(rows, protocol, args.seeds, args.data_root, floors), args.out, args.runs, args.jobs,
                            args.threads, args.force, keep_history=False)
    if not args.summary and args.stage in ('all', 'screen'):
        run(SCREEN_ROWS, 'ucla_view3', floors=True)
        run(screen_rows(args.out, args.seeds), 'ucla_view3', floors=True)  # the kept rows together, if new
    if not args.summary and args.stage in ('all', 'nested'):
        run(nested_rows(args.out, args.seeds), 'sbu')  # the selection needs no floors
    if not args.summary and args.stage == 'semi':
        experiments.run_all(semi_plan(args.data_root), args.out, args.runs, args.jobs, args.threads, args.force,
                            keep_history=False)
    if not args.summary and args.stage == 'scale':
        scale_stage(args.out, args.data_root, lambda jobs: experiments.run_all(
            jobs, args.out, args.runs, args.jobs, args.threads, args.force, keep_history=False))
    if not args.summary and args.stage == 'rounds':
        run(ROWS, 'ucla_view3')
        finalists = set(ucla_ranking(args.out)[:args.finalists]) | {BASE} | {n for n, _ in REFERENCES}
        run([(n, o) for n, o in ROWS if n in finalists], 'sbu')
    print(write_ablation_readme(args.out, args.seeds))


if __name__ == '__main__':
    cli(main, lambda: None)
