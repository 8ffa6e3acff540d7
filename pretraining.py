"""AS-CAL pretraining (docs/official.md §3-4): momentum-LSTM contrast on two augmented views of every
unlabelled training sequence, with exact resume from the checkpoints it writes every epoch.

`pretrain(opts, ...)` runs epochs 1..warmup_epochs+epochs (the official epoch 1 only fills the
queue); `build_encoder` / `load_encoder` turn resolved options or a checkpoint into the encoder (model.EncoderSpec).
"""
import time

import torch

import augment
import distributed
from dataset import SkeletonDataset, frame_size, loader
from model import EncoderSpec, MomentumContrast
from runs import CheckpointError, MetricsLog, RunError, load_checkpoint, rng_state, save_checkpoint, set_rng_state, truncate_metrics
from training import TrainingDiverged, adjust_learning_rate, make_optimizer, means, milestones, train_one_epoch

RESUME_FIELDS = ('epoch', 'step', 'model', 'optimizer', 'scaler', 'rng')
# Options a resumed run must share with its checkpoint (anything else may change, e.g. --quiet).
MUST_MATCH = ('dataset', 'nce_k', 'fold', 'test_view', 'seed', 'l2norm', 'head_dim', 'eval_split', 'val_seed', 'val_group',
              'recon_weight', 'recon_consistency', *EncoderSpec.options())


def non_finite(state):
    """Names of the floating-point tensors in a state dict that hold NaN or inf."""
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not v.isfinite().all()]


def build_encoder(opts):
    """The encoder of resolved options (a Namespace or a checkpoint's options dict), as initialised."""
    opts = opts if isinstance(opts, dict) else vars(opts)
    if opts['two_stream'] and not opts['motion']:
        raise RunError("--two_stream needs --motion: its second stream reads the frame differences")
    return EncoderSpec.of(opts, frame_size(opts['dataset'])).build()


def load_encoder(ckpt, path):
    """The query encoder of a pretraining checkpoint, loaded strictly; its weights must be finite."""
    missing = [k for k in ('dataset', *EncoderSpec.options()) if k not in ckpt['args']]
    if missing:
        raise CheckpointError(f"{path}: its stored options lack {', '.join(missing)}")
    encoder = build_encoder(ckpt['args'])
    state = {k[len('encoder_q.'):]: v for k, v in ckpt['model'].items() if k.startswith('encoder_q.')}
    bad = non_finite(state)
    if bad:
        raise CheckpointError(f"{path}: encoder weights are not finite ({', '.join(bad[:3])})")
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: encoder weights do not fit the options stored with it: "
                              f"{str(err).splitlines()[-1].strip()}") from None
    return encoder


class Views:
    """Batch from the DataLoader -> (query, key) views on the device. With --aug_backend sample the
    DataLoader made them per sample already; with batch they are drawn here for the whole batch
    from a generator on the device, seeded per epoch. `clean(batch)`: the encoder's input without
    augmentation (the reconstruction target; batch backend only)."""

    def __init__(self, opts, device):
        self.device, self.per_sample = device, opts.aug_backend == 'sample'
        self.views = augment.TwoViews(*(augment.build_transform(augment.view_chain(opts.input_chain, a), opts.selected_frames)
                                        for a in (opts.aug1, opts.aug2)))
        self.input = augment.build_transform(opts.input_chain, opts.selected_frames)
        self.generator = torch.Generator(device)

    def dataset_transform(self):
        """The per-sample views for the DataLoader with --aug_backend sample, else None."""
        return augment.TwoViews(*map(augment.per_sample, (self.views.query_transform, self.views.key_transform))) \
            if self.per_sample else None

    def set_epoch(self, seed):
        self.generator.manual_seed(seed)

    def __call__(self, x):
        if self.per_sample:
            return tuple(v.to(self.device, non_blocking=True) for v in x)
        return self.views(x.to(self.device, non_blocking=True), self.generator)

    def clean(self, x):
        return self.input(x.to(self.device, non_blocking=True), None)


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


def load_resumable(path):
    """A pretraining checkpoint with everything a resume needs, else CheckpointError naming what lacks."""
    ckpt = load_checkpoint(path)
    missing = [k for k in RESUME_FIELDS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a resumable pretraining checkpoint (lacks {', '.join(missing)})")
    return ckpt


def resume_checkpoint(opts, out):
    """The checkpoint to continue from: --resume PATH, or with 'auto' the newest complete one in
    out_dir (half-written *.partial, unreadable and incomplete files are skipped); None to start fresh."""
    if not opts.resume:
        return None, None
    if opts.resume != 'auto':
        return load_resumable(opts.resume), opts.resume
    newest = (None, None)
    for path in [out / 'last.pth'] + sorted(out.glob('ckpt_epoch_*.pth')):
        try:
            ckpt = load_resumable(path)
        except CheckpointError:
            continue
        if newest[0] is None or ckpt['epoch'] > newest[0]['epoch']:
            newest = (ckpt, path)
    return newest


def restore(opts, out, model, optimizer, scaler, log):
    """Load --resume state into model/optimizer/scaler/RNGs; returns (first epoch to run, step, pretraining
    seconds the checkpoint's epochs took)."""
    ckpt, path = resume_checkpoint(opts, out)
    if ckpt is None:
        return 1, 0, 0.0
    differ = [f"{k} {ckpt['args'].get(k)!r} (checkpoint) vs {getattr(opts, k)!r} (this run)" for k in MUST_MATCH
              if ckpt['args'].get(k) != getattr(opts, k)]
    if differ:
        raise CheckpointError(f"{path}: cannot resume this run, the options differ: {'; '.join(differ)}")
    bad = non_finite(ckpt['model'])
    if bad:
        raise CheckpointError(f"{path}: cannot resume, its weights are not finite ({', '.join(bad[:3])})")
    model.load_state_dict(ckpt['model'])
    optimizer.load_state_dict(ckpt['optimizer'])
    scaler.load_state_dict(ckpt['scaler'])
    set_rng_state(ckpt['rng'])
    log(f"resumed from {path} after epoch {ckpt['epoch']} (step {ckpt['step']}); an interrupted epoch restarts")
    return ckpt['epoch'] + 1, ckpt['step'], ckpt.get('seconds', 0.0)


def pretrain(opts, train_x, train_y, device, out, log, rank=0, world=1):
    """Epochs 1..warmup_epochs+epochs with checkpoints (written by rank 0); the checkpoints are the result.
    Returns the seconds that earlier processes spent on the epochs a resume continued from (0 if none)."""
    model = MomentumContrast(build_encoder(opts), opts.nce_k, opts.nce_t, opts.alpha, opts.l2norm,
                             distributed.all_gather_keys if world > 1 else None, opts.head_dim,
                             opts.positive == 'neighbour', opts.recon_weight, opts.recon_consistency).to(device)
    decoding = model.decoder is not None
    if decoding and opts.aug_backend == 'sample':
        raise RunError("--recon_weight / --recon_consistency need --aug_backend batch (the clean sequence is the target)")
    if opts.warmup_epochs + opts.epochs == 0:
        raise RunError("--warmup_epochs 0 --epochs 0: nothing to run (--epochs 0 with a warm-up epoch evaluates "
                       "the randomly initialised encoder)")
    ddp = distributed.wrap(model) if world > 1 else model
    optimizer = make_optimizer(opts.optimizer, model.trained_parameters(), opts.learning_rate, opts.momentum,
                               opts.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=opts.amp == 'fp16')
    amp = autocast_dtype(opts.amp, device, log)
    start_epoch, step, earlier = restore(opts, out, model, optimizer, scaler, log)
    if rank == 0 and start_epoch > 1:
        truncate_metrics(out, start_epoch - 1)  # the epochs after the checkpoint are replayed, not listed twice
    log(f"pretraining on {opts.dataset}: {len(train_y)} sequences, device {device}, "
        f"{world} process{'es' if world > 1 else ''} x batch {opts.batch_size}, output {out}")
    views = Views(opts, device)
    train_set = SkeletonDataset(train_x, train_y, opts.selected_frames, views.dataset_transform(), opts.seed, opts.dataset)
    loss_scale = (lambda n: n * world / distributed.global_count(n, device)) if world > 1 else None
    metrics, start = MetricsLog(out) if rank == 0 else (lambda row: None), time.time()
    total = opts.warmup_epochs + opts.epochs
    for epoch in range(start_epoch, total + 1):
        lr = adjust_learning_rate(optimizer, epoch, opts.learning_rate, milestones(opts.lr_decay_epochs),
                                  opts.lr_decay_rate)
        epoch_seed = opts.seed * 1_000_003 + epoch
        train_set.set_epoch(epoch)
        views.set_epoch(epoch_seed * world + rank)
        data = loader(train_set, opts.batch_size * world, True, epoch_seed, opts.num_workers, device, rank, world)

        def forward(batch):
            x_q, x_k = views(batch[0])
            with torch.autocast(x_q.device.type, amp or torch.float32, enabled=amp is not None):
                return ddp(x_q, x_k, views.clean(batch[0])) if decoding else ddp(x_q, x_k)
        model.train()
        try:
            sums, step = train_one_epoch(forward, data, optimizer, f'pretrain {epoch}/{total}', opts.quiet or rank > 0,
                                         epoch > opts.warmup_epochs, scaler, model.momentum_update, step, loss_scale)
        except TrainingDiverged as err:
            last = out / 'last.pth'
            message = f"{err}; last good checkpoint: {last if last.is_file() else 'none'}"
            log(message)
            raise TrainingDiverged(message) from None
        if world > 1:
            torch.distributed.all_reduce(sums)
            distributed.check_replicas_agree(model.encoder_q, f'after epoch {epoch}')
        loss, pos_logit, contrast_top1 = means(sums)
        seconds = earlier + time.time() - start  # this run's pretraining time so far, a resume's earlier epochs included
        log(f"epoch {epoch}/{total} lr {lr:g} loss {loss:.4f} pos_logit {pos_logit:.2f} contrast@1 {contrast_top1:.2f}"
            + ('' if epoch > opts.warmup_epochs else ' (queue warm-up)'))
        metrics(dict(epoch=epoch, step=step, loss=loss, lr=lr, pos_logit=pos_logit, contrast_top1=contrast_top1,
                     queue_fill=min(1.0, epoch * len(train_y) / opts.nce_k), seconds=round(seconds, 2)))
        if rank == 0:
            bad = non_finite(model.state_dict())
            if bad:
                message = (f"non-finite weights after epoch {epoch} ({', '.join(bad[:3])}); not saved, last good "
                           f"checkpoint: {out / 'last.pth' if (out / 'last.pth').is_file() else 'none'}")
                log(message)
                raise TrainingDiverged(message)
            state = dict(args=vars(opts), epoch=epoch, step=step, lr=lr, model=model.state_dict(),
                         optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), rng=rng_state(),
                         seconds=seconds)
            if epoch % opts.save_freq == 0 or epoch in (opts.epochs, total):
                save_checkpoint(state, out / f'ckpt_epoch_{epoch}.pth')
            save_checkpoint(state, out / 'last.pth')
    return earlier
