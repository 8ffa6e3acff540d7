"""Pretrain AS-CAL (momentum-LSTM contrastive learning, SPEC §3-4), then evaluate it linearly.

    python pretrain_and_linEval.py                      # SBU fold 0, the official settings
    python pretrain_and_linEval.py --dataset ucla --test_view 3
    python pretrain_and_linEval.py --dataset ntu60_xsub --device cuda

Defaults are the official values; per-dataset values come from dataset.PRESETS and lose to
anything given on the command line. `--recipe corrected` (or `--corrected`) turns on every fix of
an official oddity; `--recipe strong` is the validation-chosen improved recipe (README, "Strong recipe").
"""
import argparse
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import augment
import augment_batch
import distributed
from data import DataError
from dataset import PRESETS, SkeletonDataset
from evaluation import (adjust_learning_rate, build_encoder, evaluate_frozen, load_encoder, load_splits, loader,
                        milestones, protocol_options, summary_line, write_plots)
from runs import (CheckpointError, MetricsLog, RunError, RunLog, cli, common_options, config_defaults, epoch_list,
                  fraction, load_checkpoint, make_out_dir, natural_int, non_negative_float, positive_float,
                  positive_int, provenance, provenance_line, read_config, read_metrics, release_run_folder,
                  resolve_device, rng_state, save_checkpoint, set_rng_state, set_seed, set_threads,
                  truncate_metrics, write_json)
from model import MomentumContrast
from recipes import CORRECTED, RECIPES, STRONG



class TrainingDiverged(RunError):
    """The contrastive loss became NaN or inf."""


def per_dataset(key):
    return 'per-dataset default: ' + ', '.join(f'{k} {v[key]}' for k, v in PRESETS.items())


def parse_option(argv=None):
    """Options: command line > --config file > per-dataset preset > built-in default."""
    config = read_config(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--dataset', choices=sorted(PRESETS), default=config.get('dataset', 'sbu'))
    pre.add_argument('--recipe', choices=sorted(RECIPES), default=config.get('recipe', 'faithful'))
    pre.add_argument('--corrected', action='store_true')
    known = pre.parse_known_args(argv)[0]
    preset, recipe = PRESETS[known.dataset], RECIPES['corrected' if known.corrected else known.recipe]
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common_options(parser)
    group = parser.add_argument_group('model')
    group.add_argument('--hidden_units', type=positive_int, help=per_dataset('hidden_units'))
    group.add_argument('--lstm_layer', type=positive_int, help=per_dataset('lstm_layer'))
    group.add_argument('--selected_frames', type=positive_int, help='first frames kept; ' + per_dataset('frames'))
    group.add_argument('--masked_mean', action='store_true', help='corrected: CAE averages real frames only')
    group.add_argument('--rnn', choices=['lstm', 'gru'], default='lstm', help='recurrent cell (official lstm)')
    group.add_argument('--bidirectional', action='store_true', help='bidirectional RNN (official: one direction)')
    group.add_argument('--motion', action='store_true', help='append frame differences to the input (official: no)')
    group.add_argument('--preprocess', choices=['none', 'body'], default='none',
                       help='body: first-frame body-centred, view- and scale-normalised, resampled to '
                            '--selected_frames (preprocess.py); none: official (per-frame centring in the chain)')
    group = parser.add_argument_group('contrast')
    group.add_argument('--nce_k', type=positive_int, help='queue size; ' + per_dataset('nce_k'))
    group.add_argument('--nce_t', type=positive_float, default=0.06, help='temperature')
    group.add_argument('--alpha', type=fraction, default=0.999, help='key-encoder momentum')
    group.add_argument('--l2norm', action='store_true', help='corrected: L2-normalise queries and keys')
    group.add_argument('--head_dim', type=natural_int, default=0, help='MLP projection head output size (0: none, official)')
    group.add_argument('--aug1', default='subtract_randomFlip_shear', help=f'query-view chain from {list(augment.AUGMENTATIONS)}')
    group.add_argument('--aug2', default='subtract_randomFlip_shear', help='key-view chain')
    group.add_argument('--aug_backend', choices=['torch', 'numpy'], default='torch',
                       help='torch: whole batches on the training device (fast); numpy: per sample in the '
                            'DataLoader (reference); same distributions')
    group = parser.add_argument_group('optimisation')
    group.add_argument('--epochs', type=positive_int, default=60, help='update epochs after the warm-up')
    group.add_argument('--warmup_epochs', type=natural_int, default=1, help='queue-only epochs, no update (official 1)')
    group.add_argument('--batch_size', type=positive_int, help=per_dataset('batch_size'))
    group.add_argument('--learning_rate', type=positive_float, default=0.01, help='SGD learning rate')
    group.add_argument('--lr_decay_epochs', type=epoch_list, help='1-based epochs after which lr *= rate; ' + per_dataset('lr_decay_epochs'))
    group.add_argument('--lr_decay_rate', type=positive_float, default=0.1, help='lr factor at each decay epoch')
    group.add_argument('--optimizer', choices=['sgd', 'adam'], default='sgd', help='pretraining optimiser')
    group.add_argument('--momentum', type=non_negative_float, default=0.9, help='SGD momentum (no Nesterov)')
    group.add_argument('--weight_decay', type=non_negative_float, default=1e-4, help='SGD weight decay')
    group.add_argument('--amp', choices=['off', 'bf16', 'fp16'], default='off',
                       help='autocast the pretraining forward pass (fp16 with gradient scaling)')
    group = parser.add_argument_group('linear evaluation (SPEC §5.1)')
    group.add_argument('--lin_epochs', type=positive_int, default=90, help='linear classifier epochs')
    group.add_argument('--lin_learning_rate', type=positive_float, default=1.0, help='SGD, momentum 0.9, Nesterov')
    group.add_argument('--lin_lr_decay_epochs', type=epoch_list, default='15,35,60,75', help='decay rate 0.5')
    group.add_argument('--lin_batch_size', type=positive_int, default=32, help='linear classifier batch size')
    protocol_options(group)
    group.add_argument('--eval_final', action='store_true',
                       help='corrected: evaluate the final checkpoint (official: the one after epoch --epochs)')
    group = parser.add_argument_group('run')
    group.add_argument('--save_freq', type=positive_int, default=10, help='keep ckpt_epoch_<e>.pth every N epochs')
    group.add_argument('--resume', default='', help="checkpoint to continue from, or 'auto' for the newest in --out_dir")
    group.add_argument('--deterministic', action='store_true', help="torch.use_deterministic_algorithms")
    group.add_argument('--recipe', choices=sorted(RECIPES), default='faithful',
                       help='faithful: official values; corrected: ' + ', '.join(CORRECTED) + '; strong: '
                            'corrected + ' + ', '.join(f'{k}={v}' for k, v in STRONG.items() if CORRECTED.get(k) != v)
                            + ' (each chosen on validation); the command line still wins')
    group.add_argument('--corrected', action='store_true', help='same as --recipe corrected')
    parser.set_defaults(dataset='sbu', selected_frames=preset['frames'],
                        **{k: v for k, v in preset.items()
                           if k not in ('source', 'joints', 'persons', 'classes', 'frames', 'body_joints', 'actions')})
    parser.set_defaults(**recipe)
    config_defaults(parser, config)
    args = parser.parse_args(argv)
    if args.corrected:
        args.recipe = 'corrected'
    for name in ('aug1', 'aug2'):
        try:
            augment.parse_chain(getattr(args, name))
        except ValueError as err:
            parser.error(f"--{name}: {err}")
    return args


class Views:
    """Batch from the DataLoader -> (query, key) views on the device. With the numpy backend the
    DataLoader already made them per sample; with torch they are drawn here for the whole batch
    from a generator on the device, seeded per epoch."""

    def __init__(self, args, device):
        self.device, self.backend = device, args.aug_backend
        self.views = augment.TwoViews(*(augment_batch.build_batch_transform(a, args.selected_frames)
                                        for a in (args.aug1, args.aug2)))
        self.generator = torch.Generator(device)

    def set_epoch(self, seed):
        self.generator.manual_seed(seed)

    def __call__(self, x):
        if self.backend == 'numpy':
            return tuple(v.to(self.device, non_blocking=True) for v in x)
        return self.views(x.to(self.device, non_blocking=True), self.generator)


def train_one_epoch(model, data, views, optimizer, scaler, amp, update, step, desc, quiet, ddp=None, world=1):
    """One contrastive epoch; with update=False (queue warm-up) only keys are enqueued. `ddp`: the
    DistributedDataParallel wrapper of `model` when `world` processes train together.
    Returns the mean loss, mean positive logit and contrastive top-1 %, and the new step count."""
    model.train()
    sums = torch.zeros(4, dtype=torch.float64)  # loss, positive logit, contrastive hits, samples
    bar = tqdm(data, desc=desc, leave=False, disable=quiet, unit='seq',
               unit_scale=data.batch_sampler.batch_size if hasattr(data, 'batch_sampler') else 1)
    for x, _, _ in bar:
        x_q, x_k = views(x)
        with torch.set_grad_enabled(update), torch.autocast(x_q.device.type, amp or torch.float32, enabled=amp is not None):
            logits, labels = (ddp or model)(x_q, x_k)
            if world == 1:
                loss = F.cross_entropy(logits.float(), labels)
                batch_loss = loss
            else:  # this rank's sum / global batch * world: DDP's gradient average is the global mean
                loss_sum = F.cross_entropy(logits.float(), labels, reduction='sum')
                batch_loss = loss_sum.detach() / len(labels)
                loss = loss_sum * world / distributed.global_count(len(labels), loss_sum.device)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at step {step}")
        if update:
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            model.momentum_update()
        step += 1
        n = len(labels)
        batch_loss = batch_loss.item()
        sums += torch.tensor([batch_loss * n, logits[:, 0].sum().item(), (logits.argmax(1) == 0).sum().item(), n],
                             dtype=torch.float64)
        bar.set_postfix(loss=f'{batch_loss:.3f}')
    if world > 1:
        torch.distributed.all_reduce(sums)
    loss_sum, pos_sum, correct, seen = sums.tolist()
    return dict(loss=loss_sum / seen, pos_logit=pos_sum / seen, contrast_top1=100 * correct / seen), step


RESUME_FIELDS = ('epoch', 'step', 'model', 'optimizer', 'scaler', 'rng')
# Options a resumed run must share with its checkpoint (anything else may change, e.g. --quiet).
MUST_MATCH = ('dataset', 'hidden_units', 'lstm_layer', 'nce_k', 'fold', 'test_view', 'selected_frames', 'seed',
              'l2norm', 'masked_mean', 'sbu_true_depth', 'preprocess', 'rnn', 'bidirectional', 'motion', 'head_dim',
              'eval_split', 'val_seed')
BEFORE_RECIPES = dict(preprocess='none', rnn='lstm', bidirectional=False, motion=False, head_dim=0, eval_split='test',
                      val_seed=1)  # what checkpoints written before these options existed used


def load_resumable(path):
    """A pretraining checkpoint with everything a resume needs, else CheckpointError naming what lacks."""
    ckpt = load_checkpoint(path)
    missing = [k for k in RESUME_FIELDS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a resumable pretraining checkpoint (lacks {', '.join(missing)})")
    return ckpt


def autocast_dtype(name, device, log):
    """The autocast dtype for --amp, or None (fp32) with a warning where this device cannot run an
    LSTM in it (e.g. bf16 on a CPU without AVX512-BF16, where oneDNN raises)."""
    dtype = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[name]
    if dtype is None:
        return None
    try:
        probe = torch.nn.LSTM(3, 4).to(device)
        with torch.autocast(device.type, dtype):
            probe(torch.randn(2, 1, 3, device=device))[0].float().sum().backward()
    except RuntimeError as err:
        log(f"warning: --amp {name} is not supported on this {device.type} ({str(err).splitlines()[0][:120]}); "
            "running in fp32", always=True)
        return None
    return dtype


def resume_checkpoint(args, out):
    """The checkpoint to continue from: --resume PATH, or with 'auto' the newest complete one in
    out_dir (half-written *.partial, unreadable and incomplete files are skipped); None to start fresh."""
    if not args.resume:
        return None, None
    if args.resume != 'auto':
        return load_resumable(args.resume), args.resume
    newest = (None, None)
    for path in [out / 'last.pth'] + sorted(out.glob('ckpt_epoch_*.pth')):
        try:
            ckpt = load_resumable(path)
        except CheckpointError:
            continue
        if newest[0] is None or ckpt['epoch'] > newest[0]['epoch']:
            newest = (ckpt, path)
    return newest


def restore(args, out, model, optimizer, scaler, log):
    """Load --resume state into model/optimizer/scaler/RNGs; returns (first epoch to run, step)."""
    ckpt, path = resume_checkpoint(args, out)
    if ckpt is None:
        return 1, 0
    saved = ckpt['args']
    differ = [f"{k} {saved.get(k)!r} (checkpoint) vs {getattr(args, k)!r} (this run)" for k in MUST_MATCH
              if saved.get(k, BEFORE_RECIPES.get(k)) != getattr(args, k)]
    if differ:
        raise CheckpointError(f"{path}: cannot resume this run, the options differ: {'; '.join(differ)}")
    model.load_state_dict(ckpt['model'])
    optimizer.load_state_dict(ckpt['optimizer'])
    scaler.load_state_dict(ckpt['scaler'])
    set_rng_state(ckpt['rng'])
    log(f"resumed from {path} after epoch {ckpt['epoch']} (step {ckpt['step']}); an interrupted epoch restarts")
    return ckpt['epoch'] + 1, ckpt['step']


def pretrain(args, train_x, train_y, device, out, log, rank=0, world=1):
    """Epochs 1..warmup_epochs+epochs with checkpoints (written by rank 0); the checkpoints are the result."""
    model = MomentumContrast(build_encoder(vars(args)), args.nce_k, args.nce_t, args.alpha, args.l2norm,
                             distributed.all_gather_keys if world > 1 else None, args.head_dim).to(device)
    ddp = distributed.wrap(model) if world > 1 else None
    if args.optimizer == 'sgd':
        optimizer = torch.optim.SGD(model.query_parameters(), lr=args.learning_rate, momentum=args.momentum,
                                    weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.query_parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == 'fp16')
    amp = autocast_dtype(args.amp, device, log)
    start_epoch, step = restore(args, out, model, optimizer, scaler, log)
    if rank == 0 and start_epoch > 1:
        truncate_metrics(out, start_epoch - 1)  # the epochs after the checkpoint are replayed, not listed twice
    log(f"pretraining on {args.dataset}: {len(train_y)} sequences, device {device}, "
        f"{world} process{'es' if world > 1 else ''} x batch {args.batch_size}, output {out}")
    per_sample = augment.TwoViews(augment.build_transform(args.aug1, args.selected_frames),
                                  augment.build_transform(args.aug2, args.selected_frames))
    train_set = SkeletonDataset(train_x, train_y, args.selected_frames,
                                per_sample if args.aug_backend == 'numpy' else None, args.seed, args.dataset)
    views = Views(args, device)
    metrics, start = MetricsLog(out) if rank == 0 else (lambda row: None), time.time()
    total = args.warmup_epochs + args.epochs
    for epoch in range(start_epoch, total + 1):
        lr = adjust_learning_rate(optimizer, epoch, args.learning_rate, milestones(args.lr_decay_epochs),
                                  args.lr_decay_rate)
        epoch_seed = args.seed * 1_000_003 + epoch
        train_set.set_epoch(epoch)
        views.set_epoch(epoch_seed * world + rank)
        data = loader(train_set, args.batch_size * world, True, epoch_seed, args.num_workers, device, rank, world)
        try:
            stats, step = train_one_epoch(model, data, views, optimizer, scaler, amp, epoch > args.warmup_epochs,
                                          step, f'pretrain {epoch}/{total}', args.quiet or rank > 0, ddp, world)
        except TrainingDiverged as err:
            last = out / 'last.pth'
            message = f"{err}; last good checkpoint: {last if last.is_file() else 'none'}"
            log(message)
            raise TrainingDiverged(message) from None
        if world > 1:
            distributed.check_replicas_agree(model.encoder_q, f'after epoch {epoch}')
        log(f"epoch {epoch}/{total} lr {lr:g} loss {stats['loss']:.4f} pos_logit {stats['pos_logit']:.2f} "
            f"contrast@1 {stats['contrast_top1']:.2f}" + ('' if epoch > args.warmup_epochs else ' (queue warm-up)'))
        metrics(dict(stats, epoch=epoch, step=step, lr=lr, queue_fill=min(1.0, epoch * len(train_y) / args.nce_k),
                     seconds=round(time.time() - start, 2)))
        if rank == 0:
            bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
            if bad:
                message = (f"non-finite weights after epoch {epoch} ({', '.join(bad[:3])}); not saved, last good "
                           f"checkpoint: {out / 'last.pth' if (out / 'last.pth').is_file() else 'none'}")
                log(message)
                raise TrainingDiverged(message)
            state = dict(args=vars(args), epoch=epoch, step=step, lr=lr, model=model.state_dict(),
                         optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), rng=rng_state())
            if epoch % args.save_freq == 0 or epoch in (args.epochs, total):
                save_checkpoint(state, out / f'ckpt_epoch_{epoch}.pth')
            save_checkpoint(state, out / 'last.pth')


def main(args):
    """Pretrain, then (rank 0 alone, under torchrun) evaluate; returns the results dict (None on other ranks)."""
    start = time.time()
    rank, world, ddp_device = distributed.setup(args.device)
    device = ddp_device or resolve_device(args.device)
    set_threads(args.threads)
    set_seed(args.seed, args.deterministic)
    opts = vars(args)
    splits, groups = load_splits(opts)
    (train_x, train_y), _ = splits
    if args.batch_size * world > len(train_y):
        times = f" x {world} processes" if world > 1 else ''
        raise DataError(f"--batch_size {args.batch_size}{times} is larger than the {len(train_y)} training samples")
    out = [make_out_dir(args.out_dir, args.dataset) if rank == 0 else None]
    if world > 1:
        torch.distributed.broadcast_object_list(out)  # the same run folder on every rank
    out = out[0]
    log = RunLog(out, args.quiet) if rank == 0 else (lambda message, always=False: None)
    run_info = provenance(device, out) if rank == 0 else None
    if rank == 0:
        write_json(dict(opts, provenance=run_info), out / 'args.json')
        log(provenance_line(run_info))
    pretrain(args, train_x, train_y, device, out, log, rank, world)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        if rank > 0:
            return None
    eval_path = out / f'ckpt_epoch_{args.warmup_epochs + args.epochs if args.eval_final else args.epochs}.pth'
    log(f"linear evaluation of {eval_path}")
    encoder = load_encoder(load_checkpoint(eval_path), eval_path).to(device)
    result, features = evaluate_frozen(encoder, splits, groups, opts, device, log, out)
    result = dict(dataset=args.dataset, mode='pretrain_and_linEval', **result, epochs=args.epochs,
                  lin_epochs=args.lin_epochs, seed=args.seed, seconds=round(time.time() - start, 2),
                  model_path=str(eval_path), recipe=args.recipe, eval_split=args.eval_split, provenance=run_info)
    if not args.no_plots:
        write_plots(out, result, features, args.dataset, read_metrics(out), args.warmup_epochs)
    write_json(result, out / 'results.json')
    log(summary_line(f"{args.dataset} linear eval", result) + f" -> {out / 'results.json'}", always=True)
    release_run_folder(out)
    return result


if __name__ == '__main__':
    cli(main, parse_option)
