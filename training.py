"""The training loop that every stage shares (contrastive pretraining, the linear classifier,
semi-supervised fine-tuning, supervised training from scratch), its step learning-rate schedule,
and the fit / evaluate pair of the classification stages (docs/official.md §5)."""
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from runs import RunError


class TrainingDiverged(RunError):
    """The loss became NaN or inf."""


def milestones(text):
    """'30,70' -> [30, 70] ('' -> [])."""
    return [int(e) for e in str(text).split(',') if e.strip()]


def adjust_learning_rate(optimizer, epoch, base_lr, decay_epochs, rate):
    """Step decay at 1-based epoch: lr = base_lr * rate ** #{d in decay_epochs: epoch > d}."""
    lr = base_lr * rate ** sum(epoch > d for d in decay_epochs)
    for group in optimizer.param_groups:
        group['lr'] = lr
    return lr


def make_optimizer(name, params, lr, momentum=0.9, weight_decay=0.0, nesterov=False):
    if name == 'adam':
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def accuracy(logits, target, topk=(1, 5)):
    """Number of samples whose target is among the top-k logits, for each k (k capped at classes)."""
    top = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
    hit = top == target[:, None]
    return [hit[:, :k].any(1).sum().item() for k in topk]


def train_one_epoch(forward, batches, optimizer, desc, quiet, update=True, scaler=None, after_step=None, step=0,
                    loss_scale=None):
    """One pass: forward(batch) -> (logits (N, K), labels (N,)[, extra loss]), cross-entropy loss (plus
    the extra loss, e.g. pretraining's reconstruction, where forward returns one); with `update`
    a step of `optimizer` (through the GradScaler `scaler` if given), then after_step().
    `loss_scale(n)` multiplies the loss before backward (data-parallel runs). A non-finite loss stops
    the run (TrainingDiverged, naming the step). Returns (sums of loss, target logit, hits and
    samples as a float tensor; the new step count)."""
    sums = None
    bar = tqdm(batches, desc=desc, leave=False, disable=quiet)
    for i, batch in enumerate(bar):
        with torch.set_grad_enabled(update):
            logits, labels, *extra = forward(batch)
            loss = F.cross_entropy(logits.float(), labels)
            if extra:
                loss = loss + extra[0].float()
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at step {step}")
        if update:
            optimizer.zero_grad()
            scaled = loss if loss_scale is None else loss * loss_scale(len(labels))
            (scaled if scaler is None else scaler.scale(scaled)).backward()
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
            if after_step is not None:
                after_step()
        step += 1
        logits = logits.detach()
        batch_sums = torch.stack([loss.detach() * len(labels), logits.gather(1, labels[:, None]).sum().float(),
                                  (logits.argmax(1) == labels).sum().float(),
                                  torch.tensor(float(len(labels)), device=loss.device)])
        sums = batch_sums if sums is None else sums + batch_sums  # on the device: no extra host sync
        if not quiet and i % 20 == 0:
            bar.set_postfix(loss=f'{loss.item():.3f}')
    return sums, step


def means(sums):
    """Sums from train_one_epoch -> (mean loss, mean target logit, top-1 %)."""
    loss, target_logit, hits, seen = sums.tolist()
    return loss / seen, target_logit / seen, 100 * hits / seen


@torch.no_grad()
def evaluate(model, batches, device, quiet=False):
    """Top-1 and top-5 % of model on batches of (x, y, ...)."""
    model.eval()
    hits, seen = np.zeros(2), 0
    for batch in tqdm(batches, desc='test', leave=False, disable=quiet):
        x, y = batch[0].to(device), batch[1].to(device)
        hits += accuracy(model(x), y)
        seen += len(y)
    return (100 * hits / seen).tolist()


def fit(model, params, train, val, schedule, device, log, name, quiet=False, optimizer='sgd', transform=None, seed=0):
    """Train a classifier: SGD (momentum 0.9, Nesterov, no weight decay; official) or Adam, step
    decay 0.5 over `schedule` = (lr, epochs, decay epochs), training batches through `transform`
    (batch augmentation on the device, seeded by `seed`) if given; val evaluated after every epoch
    unless None. Returns the per-epoch history and the state with the best *training* top-1."""
    lr, epochs, decay = schedule
    optimizer = make_optimizer(optimizer, params, lr, nesterov=True)
    generator = torch.Generator(device).manual_seed(seed) if transform is not None else None

    def forward(batch):
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        return model(x if transform is None else transform(x, generator)), y
    history, best_state, best_train, start = [], None, -1.0, time.time()
    for epoch in range(1, epochs + 1):
        current = adjust_learning_rate(optimizer, epoch, lr, milestones(decay), 0.5)
        model.train()
        sums, _ = train_one_epoch(forward, train, optimizer, f'{name} {epoch}/{epochs}', quiet)
        loss, _, train_top1 = means(sums)
        top1, top5 = evaluate(model, val, device, quiet) if val is not None else (None, None)
        history.append(dict(epoch=epoch, lr=current, loss=loss, train_top1=train_top1, top1=top1, top5=top5,
                            seconds=round(time.time() - start, 3)))
        log(f"{name} epoch {epoch}/{epochs} lr {current:g} loss {loss:.4f} train@1 {train_top1:.2f}"
            + (f" test@1 {top1:.2f} test@5 {top5:.2f}" if val is not None else ''))
        if train_top1 > best_train:
            best_train, best_state = train_top1, {k: v.clone() for k, v in model.state_dict().items()}
    return history, best_state


def pick_epochs(history, select):
    """Best-over-epochs (official, selects on the test set) and last-epoch accuracies."""
    best = max(history, key=lambda h: h['top1'])
    last = history[-1]
    chosen = best if select == 'best' else last
    return dict(top1=chosen['top1'], top5=chosen['top5'], top1_best=best['top1'], top5_best=best['top5'],
                best_epoch=best['epoch'], top1_last=last['top1'], top5_last=last['top5'], select=select)
