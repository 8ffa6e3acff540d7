"""Evaluate AS-CAL encoders (SPEC §5): linear, semi-supervised, supervised from scratch, or KNN.

    python linEval.py --mode eval --model_path runs/sbu-.../ckpt_epoch_60.pth
    python linEval.py --mode semi --semi_rate 0.1 --model_path runs/sbu-.../ckpt_epoch_60.pth
    python linEval.py --mode supervise --dataset sbu
    python linEval.py --mode knn --model_path runs/sbu-.../ckpt_epoch_60.pth --knn_k 1

Everything the checkpoint knows (dataset, sizes, frames, augmentation) is read from it.
The protocols themselves live in evaluation.py, shared with pretrain_and_linEval.py.
"""
import argparse
import sys
import time

from data import DataError
from dataset import PRESETS
from evaluation import (SCHEDULES, SEMI_SCHEDULES, evaluate_frozen, frozen_features, knn_top1, load_encoder,
                        load_splits, protocol_options, run_semi, run_supervise, summary_line, write_plots)
from runs import (CheckpointError, RunLog, common_options, config_defaults, load_checkpoint, make_out_dir,
                  read_config, resolve_device, set_seed, write_json)

def parse_option_lin_eval(argv=None):
    """Options: command line > --config file > official per-mode values."""
    config = read_config(argv)
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--mode', choices=['eval', 'semi', 'supervise', 'knn'], default='eval',
                        help='eval: linear (+ KNN); semi: fine-tune on a labelled fraction, then linear; '
                             'supervise: train from scratch; knn: cosine k-nearest neighbours only')
    parser.add_argument('--model_path', default=None, help='pretraining checkpoint (eval and semi)')
    common_options(parser)
    group = parser.add_argument_group('optimisation (None = the official value for the mode, SPEC §5.2)')
    group.add_argument('--epochs', type=int, default=None, help='eval 90; supervise 200 (NTU 60); semi stage 1 '
                       '35/15/10 for rate <=0.01/<=0.1/above')
    group.add_argument('--learning_rate', type=float, default=None, help='eval 1.0; supervise and semi 0.01')
    group.add_argument('--lr_decay_epochs', default=None, help='comma-separated; decay rate is 0.5')
    group.add_argument('--batch_size', type=int, default=32, help='training batch size')
    group.add_argument('--lin_epochs', type=int, default=90, help='semi stage 2 linear epochs')
    group = parser.add_argument_group('supervise architecture (official: 256 / 1 / 150 for every dataset)')
    group.add_argument('--hidden_units', type=int, default=None, help='LSTM width (eval/semi: must match the checkpoint)')
    group.add_argument('--lstm_layer', type=int, default=None, help='LSTM depth (eval/semi: must match the checkpoint)')
    group.add_argument('--selected_frames', type=int, default=None, help='first frames kept')
    group.add_argument('--masked_mean', action='store_true', help='corrected: pool only over real frames')
    group = parser.add_argument_group('protocol')
    protocol_options(group)
    group.add_argument('--semi_rate', type=float, default=0.01, help='labelled fraction in (0, 1]')
    group.add_argument('--semi_sampling', choices=['first', 'random'], default='first',
                       help='first k per class in file order (official) or random stratified by --seed')
    group.add_argument('--semi_stage2', choices=['full', 'subset'], default='full',
                       help='semi linear stage on all training labels (official) or the labelled subset')
    parser.set_defaults(sbu_true_depth=None, masked_mean=None)  # unset: the checkpoint's choice stands
    config_defaults(parser, config)
    args = parser.parse_args(argv)
    if args.mode != 'supervise' and not args.model_path:
        parser.error(f"--mode {args.mode} needs --model_path")
    if args.mode == 'supervise' and not args.dataset:
        parser.error("--mode supervise needs --dataset")
    if not 0 < args.semi_rate <= 1:
        parser.error(f"--semi_rate {args.semi_rate}: must be in (0, 1]")
    return args


def resolve_options(args):
    """One dict of everything the run uses: checkpoint options (eval/semi) or dataset presets
    (supervise), then this run's options, then the official per-mode schedule where unset."""
    cli = {k: v for k, v in vars(args).items() if v is not None}
    if args.mode == 'supervise':
        preset = PRESETS[args.dataset]
        opts = {**dict(hidden_units=256, lstm_layer=1, selected_frames=150, fold=preset.get('fold'),
                       test_view=preset.get('test_view'), num_workers=preset['num_workers']), **cli}
        schedule = SCHEDULES['supervise_ntu' if args.dataset.startswith('ntu') else 'supervise']
    else:
        ckpt = load_checkpoint(args.model_path)
        opts = ckpt['args']
        for key in ('dataset', 'hidden_units', 'lstm_layer', 'selected_frames'):
            if key in cli and cli[key] != opts[key]:
                raise CheckpointError(f"{args.model_path}: checkpoint has {key}={opts[key]}, "
                                      f"but --{key} {cli[key]} was asked for")
        opts = {**opts, **cli}
        opts['encoder'] = load_encoder(ckpt, args.model_path)
        schedule = (next(s for limit, s in SEMI_SCHEDULES if args.semi_rate <= limit) if args.mode == 'semi'
                    else SCHEDULES['eval'])
    for key, value in zip(('learning_rate', 'epochs', 'lr_decay_epochs'), schedule):
        opts[key] = cli.get(key, value)
    if args.mode in ('eval', 'knn'):
        opts.update(lin_learning_rate=opts['learning_rate'], lin_epochs=opts['epochs'],
                    lin_lr_decay_epochs=opts['lr_decay_epochs'], lin_batch_size=opts['batch_size'])
    return opts


def main(args):
    start = time.time()
    device = resolve_device(args.device)
    set_seed(args.seed)
    opts = resolve_options(args)
    encoder = opts.pop('encoder', None)
    splits, groups = load_splits(opts)
    if opts['batch_size'] > len(splits[0][1]):
        raise DataError(f"--batch_size {opts['batch_size']} is larger than the {len(splits[0][1])} training samples")
    out = make_out_dir(args.out_dir, f"{opts['dataset']}-{args.mode}")
    log = RunLog(out, args.quiet)
    write_json(opts, out / 'args.json')
    log(f"{args.mode} on {opts['dataset']}: {len(splits[0][1])} train / {len(splits[1][1])} test samples, "
        f"device {device}, output {out}")
    features = None
    if args.mode == 'supervise':
        result = run_supervise(splits, opts, device, log)
    elif args.mode == 'semi':
        result = run_semi(encoder.to(device), splits, opts, device, log, out)
    elif args.mode == 'knn':
        features = frozen_features(encoder.to(device), splits, opts, device)
        top1 = knn_top1(features, opts['knn_k'])
        result = dict(top1=top1, top5=None, top1_best=top1, top1_last=top1, top5_last=None, knn_top1=top1,
                      knn_k=opts['knn_k'])
    else:
        result, features = evaluate_frozen(encoder.to(device), splits, groups, opts, device, log)
    result = dict(dataset=opts['dataset'], mode=args.mode, **result, epochs=opts['epochs'], seed=args.seed,
                  seconds=round(time.time() - start, 2), model_path=args.model_path)
    if not args.no_plots:
        write_plots(out, result, features, opts['dataset'])
    write_json(result, out / 'results.json')
    log(summary_line(f"{opts['dataset']} {args.mode}", result) + f" -> {out / 'results.json'}", always=True)
    return result


if __name__ == '__main__':
    try:
        main(parse_option_lin_eval())
    except (DataError, CheckpointError) as err:
        sys.exit(f"error: {err}")
