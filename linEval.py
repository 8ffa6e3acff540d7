"""Evaluate AS-CAL encoders (SPEC §5): linear, semi-supervised, supervised from scratch, or KNN.

    python linEval.py --mode eval --model_path runs/sbu-.../ckpt_epoch_60.pth
    python linEval.py --mode semi --semi_rate 0.1 --model_path runs/sbu-.../ckpt_epoch_60.pth
    python linEval.py --mode supervise --dataset sbu
    python linEval.py --mode knn --model_path runs/sbu-.../ckpt_epoch_60.pth --knn_k 1

Everything the checkpoint knows (dataset, sizes, frames, augmentation) is read from it.
The protocols themselves live in evaluation.py, shared with pretrain_and_linEval.py.
"""
import argparse
import os
import time
from pathlib import Path

from data import DataError
from dataset import PRESETS
from evaluation import (SCHEDULES, SEMI_SCHEDULES, evaluate_frozen, frozen_features, honest_probes, knn_top1,
                        load_encoder, load_splits, protocol_options, raw_features, run_semi, run_supervise,
                        summary_line, score_head, write_plots)
from recipes import RECIPES, SUPERVISE_KEYS
from runs import (CheckpointError, RunLog, cli, common_options, config_defaults, epoch_list, fraction, load_checkpoint,
                  make_out_dir, positive_float, positive_int, release_run_folder,
                  provenance, provenance_line, read_config, resolve_device, set_seed, set_threads, write_json)

# Where an option is not given and the checkpoint does not hold it (supervise, raw: no checkpoint).
FALLBACK = dict(data_root=os.environ.get('ASCAL_DATA_ROOT', 'data'),
                cache_dir=os.environ.get('ASCAL_CACHE_DIR', str(Path('~/.cache/ascal').expanduser())),
                seed=1, batch_size=32, select='best', knn_k=1, lin_features='cache', eval_split='test', val_seed=1)
# What an evaluation takes from its checkpoint unless given again: the data and how it was split.
REMEMBERED = ('data_root', 'cache_dir', 'fold', 'test_view', 'seed', 'sbu_true_depth', 'masked_mean', 'preprocess',
              'selected_frames', 'select', 'eval_split', 'val_seed')
# The linear stage's options (`--lin_*`, as in pretrain_and_linEval.py) and the older names that
# --mode eval/knn took for them; official values SPEC §5.1.
LINEAR = dict(lin_learning_rate=('learning_rate', 1.0), lin_epochs=('epochs', 90),
              lin_lr_decay_epochs=('lr_decay_epochs', '15,35,60,75'), lin_batch_size=('batch_size', 32))


def parse_option_lin_eval(argv=None):
    """Options: command line > --config file > checkpoint (eval, semi, knn) > official per-mode values."""
    config = read_config(argv)
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--mode', choices=['eval', 'semi', 'supervise', 'knn', 'raw'], default='eval',
                        help='eval: linear (+ KNN); semi: fine-tune on a labelled fraction, then linear; '
                             'supervise: train from scratch; knn: cosine k-nearest neighbours only; raw: the '
                             'validation-selected probes on the input coordinates themselves (the no-learning floor)')
    parser.add_argument('--recipe', choices=sorted(RECIPES), default='faithful',
                        help='supervise and raw: take data, encoder and optimiser choices from this recipe '
                             '(strong: also its training augmentation); eval/semi read them from the checkpoint')
    parser.add_argument('--model_path', default=None, help='pretraining checkpoint (eval, semi, knn)')
    parser.add_argument('--head_path', default=None, help='eval: test this saved linear_head.pth on the '
                        'checkpoint\'s frozen features instead of training a classifier')
    common_options(parser)
    group = parser.add_argument_group('optimisation (None = the official value for the mode, SPEC §5.2)')
    group.add_argument('--epochs', type=positive_int, default=None, help='supervise 200 (NTU 60); semi stage 1 35/15/10 for '
                       'rate <=0.01/<=0.1/above (eval/knn: deprecated name of --lin_epochs)')
    group.add_argument('--learning_rate', type=positive_float, default=None, help='supervise and semi stage 1: 0.01 '
                       '(eval/knn: deprecated name of --lin_learning_rate)')
    group.add_argument('--lr_decay_epochs', type=epoch_list, default=None, help='comma-separated; decay rate is 0.5 '
                       '(eval/knn: deprecated name of --lin_lr_decay_epochs)')
    group.add_argument('--batch_size', type=positive_int, default=None, help='supervise / semi stage 1 batch size, 32 '
                       '(eval/knn: deprecated name of --lin_batch_size)')
    group.add_argument('--lin_epochs', type=positive_int, default=None, help='linear stage epochs (eval; semi stage 2), 90')
    group.add_argument('--lin_learning_rate', type=positive_float, default=None, help='linear stage lr (eval), 1.0')
    group.add_argument('--lin_lr_decay_epochs', type=epoch_list, default=None, help='linear stage decay epochs (eval), 15,35,60,75')
    group.add_argument('--lin_batch_size', type=positive_int, default=None, help='linear stage batch size (eval), 32')
    group = parser.add_argument_group('supervise architecture (official: 256 / 1 / 150 for every dataset)')
    group.add_argument('--hidden_units', type=positive_int, default=None, help='LSTM width (eval/semi: must match the checkpoint)')
    group.add_argument('--lstm_layer', type=positive_int, default=None, help='LSTM depth (eval/semi: must match the checkpoint)')
    group.add_argument('--selected_frames', type=positive_int, default=None, help='first frames kept')
    group.add_argument('--masked_mean', action='store_true', help='corrected: pool only over real frames')
    group = parser.add_argument_group('protocol')
    protocol_options(group)
    group.add_argument('--semi_rate', type=fraction, default=0.01, help='labelled fraction in (0, 1]')
    group.add_argument('--semi_sampling', choices=['first', 'random'], default='first',
                       help='first k per class in file order (official) or random stratified by --seed')
    group.add_argument('--semi_stage2', choices=['full', 'subset'], default='full',
                       help='semi linear stage on all training labels (official) or the labelled subset')
    # unset: the checkpoint's choice stands, else FALLBACK
    parser.set_defaults(sbu_true_depth=None, masked_mean=None, **{k: None for k in FALLBACK})
    config_defaults(parser, config)
    args = parser.parse_args(argv)
    if args.mode in ('eval', 'semi', 'knn') and not args.model_path:
        parser.error(f"--mode {args.mode} needs --model_path")
    if args.mode in ('supervise', 'raw') and not args.dataset:
        parser.error(f"--mode {args.mode} needs --dataset")
    return args


def resolve_options(args):
    """One dict of everything the run uses and notes on where it came from: this run's options, then
    the checkpoint's (eval/semi/knn) or the recipe's and official architecture (supervise/raw), then
    the official per-mode schedule and FALLBACK where still unset."""
    cli = {k: v for k, v in vars(args).items() if v is not None}
    notes = []
    if args.mode in ('supervise', 'raw'):
        preset = PRESETS[args.dataset]
        recipe = {k: v for k, v in RECIPES[args.recipe].items() if k in SUPERVISE_KEYS}
        recipe['train_aug'] = recipe.pop('aug1', 'None')
        schedule = SCHEDULES['supervise_ntu' if args.dataset.startswith('ntu') else 'supervise']
        if 'learning_rate' in recipe:
            schedule = (recipe.pop('learning_rate'),) + schedule[1:]
        opts = {**FALLBACK, **dict(hidden_units=256, lstm_layer=1, selected_frames=150, fold=preset.get('fold'),
                                   test_view=preset.get('test_view'), num_workers=preset['num_workers']),
                **recipe, **cli}
    else:
        ckpt = load_checkpoint(args.model_path)
        saved = ckpt['args']
        for key in ('dataset', 'hidden_units', 'lstm_layer', 'selected_frames'):
            if key in cli and cli[key] != saved[key]:
                raise CheckpointError(f"{args.model_path}: checkpoint has {key}={saved[key]}, "
                                      f"but --{key} {cli[key]} was asked for")
        remembered = [f'{k}={saved[k]}' for k in REMEMBERED if k in saved and k not in cli]
        notes.append(f"from the checkpoint {args.model_path}: {', '.join(remembered)}")
        opts = {**FALLBACK, **saved, **cli}
        opts['encoder'] = load_encoder(ckpt, args.model_path)
        schedule = (next(s for limit, s in SEMI_SCHEDULES if args.semi_rate <= limit) if args.mode == 'semi'
                    else SCHEDULES['eval'])
    for key, value in zip(('learning_rate', 'epochs', 'lr_decay_epochs'), schedule):
        opts[key] = cli.get(key, value)
    opts['batch_size'] = cli.get('batch_size', FALLBACK['batch_size'])
    if args.mode in ('eval', 'knn'):
        for new, (old, official) in LINEAR.items():
            if old in cli and new not in cli:
                notes.append(f"--{old} is deprecated in --mode {args.mode}: use --{new} (taken as --{new} {cli[old]})")
            opts[new] = cli.get(new, cli.get(old, official))
        opts.update(epochs=opts['lin_epochs'], learning_rate=opts['lin_learning_rate'],
                    lr_decay_epochs=opts['lin_lr_decay_epochs'], batch_size=opts['lin_batch_size'])
    else:
        opts['lin_epochs'] = cli.get('lin_epochs', LINEAR['lin_epochs'][1])
    return opts, notes


def main(args):
    start = time.time()
    device = resolve_device(args.device)
    set_threads(args.threads)
    opts, notes = resolve_options(args)
    set_seed(opts['seed'])
    encoder = opts.pop('encoder', None)
    splits, groups = load_splits(opts)
    if opts['batch_size'] > len(splits[0][1]):
        raise DataError(f"--batch_size {opts['batch_size']} is larger than the {len(splits[0][1])} training samples")
    out = make_out_dir(args.out_dir, f"{opts['dataset']}-{args.mode}")
    log = RunLog(out, args.quiet)
    run_info = provenance(device, out)
    write_json(dict(opts, provenance=run_info), out / 'args.json')
    log(provenance_line(run_info))
    for note in notes:
        log(note)
    log(f"{args.mode} on {opts['dataset']}: {len(splits[0][1])} train / {len(splits[1][1])} test samples, "
        f"device {device}, output {out}")
    features = None
    if args.mode == 'supervise':
        result = run_supervise(splits, opts, device, log, out)
    elif args.head_path:
        top1, top5 = score_head(encoder.to(device), load_checkpoint(args.head_path)['model'], splits, opts, device)
        result = dict(top1=top1, top5=top5, top1_last=top1, head_path=args.head_path)
    elif args.mode == 'raw':
        result = honest_probes(*raw_features(splits, opts), groups, opts['val_seed'])
        result = dict(result, top1=result['probe_top1'], top5=None)
    elif args.mode == 'semi':
        result = run_semi(encoder.to(device), splits, opts, device, log, out)
    elif args.mode == 'knn':
        features = frozen_features(encoder.to(device), splits, opts, device)
        top1 = knn_top1(features, opts['knn_k'])
        result = dict(top1=top1, top5=None, top1_best=top1, top1_last=top1, top5_last=None, knn_top1=top1,
                      knn_k=opts['knn_k'])
    else:
        result, features = evaluate_frozen(encoder.to(device), splits, groups, opts, device, log, out)
    result = dict(dataset=opts['dataset'], mode=args.mode, **result, epochs=opts['epochs'], seed=opts['seed'],
                  seconds=round(time.time() - start, 2), model_path=args.model_path, recipe=opts.get('recipe'),
                  eval_split=opts.get('eval_split', 'test'), provenance=run_info)
    if not args.no_plots:
        write_plots(out, result, features, opts['dataset'])
    write_json(result, out / 'results.json')
    log(summary_line(f"{opts['dataset']} {args.mode}", result) + f" -> {out / 'results.json'}", always=True)
    release_run_folder(out)
    return result


if __name__ == '__main__':
    cli(main, parse_option_lin_eval)
