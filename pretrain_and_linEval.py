"""Pretrain AS-CAL (momentum-LSTM contrastive learning, docs/official.md §3-4), then evaluate it linearly.

    python pretrain_and_linEval.py                      # SBU fold 0, the official settings
    python pretrain_and_linEval.py --dataset ucla --test_view 3
    python pretrain_and_linEval.py --dataset ntu60_xsub --device cuda
    python pretrain_and_linEval.py --recipe strong --show_options   # every option and where it was decided

The defaults below are the official values; the dataset preset, the recipe and --config layer
above them and the command line wins (options.py says how).
"""
import argparse

import torch

import distributed
import options
from data import DataError
from dataset import PRESETS, load_splits
from evaluation import evaluate_frozen
from options import epoch_list, fraction, natural_int, non_negative_float, per_dataset, positive_float, positive_int
from pretraining import load_encoder, pretrain
from runs import cli, finish_run, load_checkpoint, read_metrics, resolve_device, set_seed, set_threads, start_run


def parse_option(argv=None):
    """The pretraining and linear-evaluation options, resolved through options.resolve."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    options.common(parser)
    options.encoder_options(parser.add_argument_group('encoder and its input'))
    group = parser.add_argument_group('contrast')
    group.add_argument('--nce_k', type=positive_int, help='queue size; ' + per_dataset('nce_k'))
    group.add_argument('--nce_t', type=positive_float, default=0.06, help='temperature')
    group.add_argument('--alpha', type=fraction, default=0.999, help='key-encoder momentum')
    group.add_argument('--l2norm', action=argparse.BooleanOptionalAction, default=False, help='corrected: L2-normalise queries and keys')
    group.add_argument('--head_dim', type=natural_int, default=0, help='MLP projection head output size (0: none, official)')
    group.add_argument('--positive', choices=['key', 'neighbour'], default='key',
                       help="the positive of a query: its key (official) or the queued key nearest to it (NNCLR)")
    group.add_argument('--recon_weight', type=non_negative_float, default=0.0,
                       help='weight of the L1 error of a zero-input GRU decoder that regenerates the clean sequence '
                            'from the query feature (0: none, official)')
    group.add_argument('--recon_consistency', type=non_negative_float, default=0.0,
                       help="weight of the squared difference between the decodings of the query's and the key's "
                            'features (0: none, official)')
    group.add_argument('--aug1', default='subtract_randomFlip_shear', type=options.augmentation_chain,
                       help='query-view augmentation chain (augment.AUGMENTATIONS)')
    group.add_argument('--aug2', default='subtract_randomFlip_shear', type=options.augmentation_chain,
                       help='key-view augmentation chain')
    group.add_argument('--aug_backend', choices=['batch', 'sample'], default='batch',
                       help='batch: whole batches on the training device (fast); sample: per sample in the '
                            'DataLoader (the official way); same distributions (torch, numpy: old names)')
    group = parser.add_argument_group('optimisation')
    group.add_argument('--epochs', type=natural_int, default=60,
                       help='update epochs after the warm-up (0: evaluate the randomly initialised encoder)')
    group.add_argument('--warmup_epochs', type=natural_int, default=1, help='queue-only epochs, no update (official 1)')
    group.add_argument('--batch_size', type=positive_int, help=per_dataset('batch_size'))
    group.add_argument('--optimizer', choices=['sgd', 'adam'], default='sgd', help='pretraining optimiser')
    group.add_argument('--learning_rate', type=positive_float, default=0.01, help='learning rate')
    group.add_argument('--lr_decay_epochs', type=epoch_list, help='1-based epochs after which lr *= rate; '
                       + per_dataset('lr_decay_epochs'))
    group.add_argument('--lr_decay_rate', type=positive_float, default=0.1, help='lr factor at each decay epoch')
    group.add_argument('--momentum', type=non_negative_float, default=0.9, help='SGD momentum (no Nesterov)')
    group.add_argument('--weight_decay', type=non_negative_float, default=1e-4, help='weight decay')
    group.add_argument('--amp', choices=['off', 'bf16', 'fp16'], default='off',
                       help='autocast the pretraining forward pass (fp16 with gradient scaling)')
    group = parser.add_argument_group('linear evaluation (docs/official.md §5)')
    options.evaluation_options(group)
    group.add_argument('--eval_final', action=argparse.BooleanOptionalAction, default=False,
                       help='corrected: evaluate the final checkpoint (official: the one after epoch --epochs)')
    group = parser.add_argument_group('run')
    group.add_argument('--save_freq', type=positive_int, default=10, help='keep ckpt_epoch_<e>.pth every N epochs')
    group.add_argument('--resume', default='', help="checkpoint to continue from, or 'auto' for the newest in --out_dir")
    group.add_argument('--deterministic', action='store_true', help="torch.use_deterministic_algorithms")
    parser.set_defaults(mode='pretrain')
    return options.resolve(parser, argv)


def main(opts):
    """Pretrain, then (rank 0 alone, under torchrun) evaluate; returns the results dict (None on other ranks)."""
    rank, world, ddp_device = distributed.setup(opts.device)
    device = ddp_device or resolve_device(opts.device)
    set_threads(opts.threads)
    set_seed(opts.seed, opts.deterministic)
    splits, folds = load_splits(opts)
    (train_x, train_y), _ = splits
    if opts.batch_size * world > len(train_y):
        times = f" x {world} processes" if world > 1 else ''
        raise DataError(f"--batch_size {opts.batch_size}{times} is larger than the {len(train_y)} training samples")
    run = start_run(opts, device, rank, world)
    earlier = pretrain(opts, train_x, train_y, device, run.out, run.log, rank, world)
    run = run._replace(start=run.start - earlier)  # a resumed run's record counts its earlier epochs' time
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        if rank > 0:
            return None
    total = opts.warmup_epochs + opts.epochs
    eval_path = run.out / f'ckpt_epoch_{total if opts.eval_final or not opts.epochs else opts.epochs}.pth'
    run.log(f"linear evaluation of {eval_path}")
    encoder = load_encoder(load_checkpoint(eval_path), eval_path).to(device)
    result, features = evaluate_frozen(encoder, splits, folds, opts, device, run.log, run.out)
    return finish_run(run, splits, dict(result, model_path=str(eval_path)), features, read_metrics(run.out),
                      PRESETS[opts.dataset].get('actions'))


if __name__ == '__main__':
    cli(main, parse_option)
