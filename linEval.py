"""Evaluate AS-CAL encoders (docs/official.md §5): linear, semi-supervised, supervised from scratch, KNN, raw floor.

    python linEval.py --mode eval --model_path runs/sbu-.../ckpt_epoch_60.pth
    python linEval.py --mode semi --semi_rate 0.1 --model_path runs/sbu-.../ckpt_epoch_60.pth
    python linEval.py --mode supervise --dataset sbu
    python linEval.py --mode knn --model_path runs/sbu-.../ckpt_epoch_60.pth --knn_k 1
    python linEval.py --mode raw --dataset ucla --test_view 3 --recipe strong

eval / semi / knn take the data, its split and the encoder from the checkpoint; supervise and raw
take them from the recipe. The defaults below are the official values; options.py says how the
preset, recipe, mode, checkpoint and --config layers sit beneath the command line.
"""
import argparse

import options
from data import DataError
from dataset import PRESETS, load_splits
from evaluation import evaluate_frozen, frozen_features, knn_top1, raw_features, run_semi, run_supervise, score_head
from options import epoch_list, fraction, positive_float, positive_int
from pretraining import load_encoder
from probes import as_numpy, honest_probes
from runs import cli, finish_run, load_checkpoint, resolve_device, set_seed, set_threads, start_run

CHECKPOINT_MODES = ('eval', 'semi', 'knn')


def parse_option_lin_eval(argv=None):
    """The evaluation options, resolved through options.resolve."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--mode', choices=['eval', 'semi', 'supervise', 'knn', 'raw'], default='eval',
                        help='eval: linear (+ KNN, probes); semi: fine-tune on a labelled fraction, then linear; '
                             'supervise: train from scratch; knn: cosine k-nearest neighbours only; raw: the '
                             'validation-selected probes on the encoder input itself (the no-learning floor)')
    parser.add_argument('--model_path', default=None, help='pretraining checkpoint (eval, semi, knn)')
    parser.add_argument('--head_path', default=None, help="eval: test this saved linear_head.pth on the "
                        "checkpoint's frozen features instead of training a classifier")
    options.common(parser)
    options.encoder_options(parser.add_argument_group(
        'encoder and its input (eval / semi / knn: from the checkpoint; supervise / raw: the recipe\'s)'))
    group = parser.add_argument_group('training: supervise, semi stage 1 (unset: the official value for the mode, '
                                      'docs/official.md §5; eval / knn: old names of --lin_*)')
    group.add_argument('--epochs', type=positive_int, help='supervise 200 (NTU 60); semi 35 / 15 / 10 for rate '
                       '<= 0.01 / <= 0.1 / above')
    group.add_argument('--learning_rate', type=positive_float, help='0.01')
    group.add_argument('--lr_decay_epochs', type=epoch_list, help='decay rate 0.5; supervise 30,80 (NTU 30,40)')
    group.add_argument('--batch_size', type=positive_int, help='32')
    group.add_argument('--optimizer', choices=['sgd', 'adam'], help='sgd (momentum 0.9, Nesterov)')
    group.add_argument('--train_aug', default='None', type=options.augmentation_chain,
                       help='supervise: augmentation chain of the training batches')
    group = parser.add_argument_group('evaluation')
    options.evaluation_options(group)
    group.add_argument('--semi_rate', type=fraction, default=0.01, help='labelled fraction in (0, 1]')
    group.add_argument('--semi_sampling', choices=['first', 'random'], default='first',
                       help='first k per class in file order (official) or random stratified by --seed')
    group.add_argument('--semi_stage2', choices=['full', 'subset'], default='full',
                       help='semi linear stage on all training labels (official) or the labelled subset')
    opts = options.resolve(parser, argv)
    if opts.mode in CHECKPOINT_MODES and not opts.model_path:
        parser.error(f"--mode {opts.mode} needs --model_path")
    return opts


def main(opts):
    device = resolve_device(opts.device)
    set_threads(opts.threads)
    encoder = load_encoder(load_checkpoint(opts.model_path), opts.model_path) if opts.mode in CHECKPOINT_MODES else None
    set_seed(opts.seed)
    splits, folds = load_splits(opts)
    batch = opts.batch_size or opts.lin_batch_size
    if batch > len(splits[0][1]):
        raise DataError(f"batch size {batch} is larger than the {len(splits[0][1])} training samples")
    run = start_run(opts, device)
    run.log(f"{opts.mode} on {opts.dataset}: {len(splits[0][1])} train / {len(splits[1][1])} {opts.eval_split} "
            f"samples, device {device}, output {run.out}")
    features = None
    if opts.mode == 'supervise':
        result = run_supervise(splits, opts, device, run.log, run.out)
    elif opts.mode == 'raw':
        raw = raw_features(splits, opts)
        result = dict(honest_probes(*as_numpy(raw), folds), knn_top1=knn_top1(raw, opts.knn_k), knn_k=opts.knn_k)
        result['top1'] = result['probe_top1']
    elif opts.head_path:
        top1, top5 = score_head(encoder.to(device), load_checkpoint(opts.head_path)['model'], splits, opts, device)
        result = dict(top1=top1, top5=top5, head_path=opts.head_path)
    elif opts.mode == 'semi':
        result = run_semi(encoder.to(device), splits, opts, device, run.log, run.out)
    elif opts.mode == 'knn':
        top1 = knn_top1(frozen_features(encoder.to(device), splits, opts, device), opts.knn_k)
        result = dict(top1=top1, knn_top1=top1, knn_k=opts.knn_k)
    else:
        result, features = evaluate_frozen(encoder.to(device), splits, folds, opts, device, run.log, run.out)
    return finish_run(run, splits, dict(result, model_path=opts.model_path) if encoder is not None else result, features,
                      class_names=PRESETS[opts.dataset].get('actions'))


if __name__ == '__main__':
    cli(main, parse_option_lin_eval)
