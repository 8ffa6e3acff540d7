"""Evaluation of AS-CAL encoders in one place (SPEC §5 and BEYOND §2): data splits (test or
validation), frozen features, the official SGD linear probe, the deterministic L-BFGS probe and
KNN with settings chosen on validation only, semi-supervised fine-tuning, supervised training from
scratch, the lr schedule and the training loops that pretrain_and_linEval.py and linEval.py share.
"""
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

import augment
import augment_batch
import preprocess
from dataset import PRESETS, IndexBatches, SkeletonDataset, load_split, validation_split
from model import EncoderClassifier, FrozenEncoderClassifier, LinearClassifier, LSTMEncoder, with_motion
from runs import CheckpointError, available_cpus, positive_int, save_checkpoint

# Official per-mode schedules (SPEC §5.2): (lr, epochs, decay epochs); semi's depend on the rate.
SCHEDULES = {'eval': (1.0, 90, '15,35,60,75'), 'supervise_ntu': (0.01, 60, '30,40'),
             'supervise': (0.01, 200, '30,80')}
SEMI_SCHEDULES = [(0.01, (0.01, 35, '15,30')), (0.1, (0.01, 15, '8')), (1.0, (0.01, 10, '7'))]


def milestones(text):
    return [int(e) for e in str(text).split(',') if e.strip()]


def adjust_learning_rate(optimizer, epoch, base_lr, decay_epochs, rate):
    """Step decay at 1-based epoch: lr = base_lr * rate ** #{d in decay_epochs: epoch > d}."""
    lr = base_lr * rate ** sum(epoch > d for d in decay_epochs)
    for group in optimizer.param_groups:
        group['lr'] = lr
    return lr


def accuracy(logits, target, topk=(1, 5)):
    """Number of samples whose target is among the top-k logits, for each k (k capped at classes)."""
    top = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
    hit = top == target[:, None]
    return [hit[:, :k].any(1).sum().item() for k in topk]


def build_encoder(opts):
    """LSTMEncoder for a dict of resolved options (dataset, hidden_units, lstm_layer, masked_mean,
    rnn, bidirectional, motion; the last three absent in older checkpoints = official)."""
    preset = PRESETS[opts['dataset']]
    return LSTMEncoder(3 * preset['joints'] * preset['persons'], opts['hidden_units'], opts['lstm_layer'],
                       'masked_mean' if opts.get('masked_mean') else 'mean', opts.get('rnn', 'lstm'),
                       opts.get('bidirectional', False), opts.get('motion', False))


def load_encoder(ckpt, path):
    """The query encoder of a pretraining checkpoint, loaded strictly."""
    encoder = build_encoder(ckpt['args'])
    state = {k[len('encoder_q.'):]: v for k, v in ckpt['model'].items() if k.startswith('encoder_q.')}
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: encoder weights do not fit the options stored with it: "
                              f"{str(err).splitlines()[-1].strip()}") from None
    return encoder


def protocol_options(group):
    """How the reported accuracy is chosen, on which split, and how frozen features are computed."""
    group.add_argument('--select', choices=['best', 'last'], default='best',
                       help="'top1' is the best test accuracy over epochs (official) or the last epoch's")
    group.add_argument('--lin_features', choices=['cache', 'recompute'], default='cache',
                       help='linear evaluation: extract frozen features once, or on every epoch (official, slow)')
    group.add_argument('--knn_k', type=positive_int, default=1, help='neighbours of the cosine KNN evaluation')
    group.add_argument('--eval_split', choices=['test', 'validation'], default='test',
                       help='validation: hold out whole subjects/folds of the training split and evaluate on '
                            'them instead of the test split (never read then): for choosing settings')
    group.add_argument('--val_seed', type=int, default=1, help='seed of the held-out validation groups')


def load_splits(opts):
    """[(train data, labels), (evaluation data, labels)] and the training samples' groups.

    The evaluation split is the test split, or with eval_split='validation' a held-out part of the
    training split (whole groups, `validation_split`; the test split is not read). With
    preprocess='body' both are body-normalised and resampled to selected_frames (preprocess.py).
    """
    args = (opts['dataset'], opts['data_root'], 'train', opts.get('fold'), opts.get('test_view'),
            opts.get('sbu_true_depth', False), opts['cache_dir'])
    allow = opts.get('allow_missing', False)
    train_x, train_y, groups = load_split(*args, with_groups=True, allow_missing=allow)
    if opts.get('eval_split', 'test') == 'validation':
        keep, held = validation_split(train_y, groups, opts.get('val_seed', 1))
        splits = [(train_x[keep], train_y[keep]), (train_x[held], train_y[held])]
        groups = None if groups is None else groups[keep]
    else:
        splits = [(train_x, train_y), load_split(*args[:2], 'val', *args[3:], allow_missing=allow)]
    if opts.get('preprocess', 'none') == 'body':
        body = PRESETS[opts['dataset']]['body_joints']
        splits = [(preprocess.normalise_split(x, body, opts['selected_frames']), y) for x, y in splits]
    return splits, groups


# ---------------------------------------------------------------- training and evaluation loops
def loader(dataset, batch_size, shuffle, seed=0, num_workers=0, device=torch.device('cpu'), rank=0, world=1):
    """DataLoader over IndexBatches (seeded order; this rank's chunk of each batch); pinned memory for a GPU."""
    batches = IndexBatches(len(dataset), batch_size, shuffle, seed, rank, world)
    num_workers = min(num_workers, available_cpus())  # more would only oversubscribe the CPUs
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                                       pin_memory=device.type == 'cuda')


class FeatureBatches:
    """(features, labels) batches of cached tensors, in the order of IndexBatches(n, batch_size, shuffle, seed)."""

    def __init__(self, features, labels, batch_size, shuffle, seed=0):
        self.features, self.labels = features, labels
        self.batches = IndexBatches(len(labels), batch_size, shuffle, seed)

    def __iter__(self):
        return ((self.features[idx], self.labels[idx]) for idx in self.batches.tensors())

    def __len__(self):
        return len(self.batches)


def train_one_epoch(model, data, optimizer, device, desc, quiet, transform=None, generator=None):
    """One pass over data (yielding x, y, ...), each batch through `transform(x, generator)` if given
    (batch augmentation on the device): returns mean loss and top-1 % on the training batches."""
    model.train()
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    bar = tqdm(data, desc=desc, leave=False, disable=quiet)
    for step, batch in enumerate(bar):
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        if transform is not None:
            x = transform(x, generator)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)  # summed on the device: no host sync per step
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if not quiet and step % 20 == 0:
            bar.set_postfix(loss=f'{loss.item():.3f}')
    return loss_sum.item() / seen, 100 * correct.item() / seen


@torch.no_grad()
def evaluate(model, data, device, quiet=False):
    """Top-1 and top-5 % of model on data."""
    model.eval()
    hits, seen = np.zeros(2), 0
    for batch in tqdm(data, desc='test', leave=False, disable=quiet):
        x, y = batch[0].to(device), batch[1].to(device)
        hits += accuracy(model(x), y)
        seen += len(y)
    return (100 * hits / seen).tolist()


def fit(model, params, train, val, schedule, device, log, name, quiet=False, optimizer='sgd', transform=None, seed=0):
    """SGD (momentum 0.9, nesterov, no weight decay; official) or Adam with step decay 0.5 over
    `schedule`=(lr, epochs, decay); training batches through `transform` (seeded by `seed`) if given.
    Returns the per-epoch history and the state with the best *training* top-1."""
    lr, epochs, decay = schedule
    optimizer = (torch.optim.Adam(params, lr=lr) if optimizer == 'adam' else
                 torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=0))
    generator = torch.Generator(device).manual_seed(seed) if transform is not None else None
    history, best_state, best_train = [], None, -1.0
    for epoch in range(1, epochs + 1):
        current = adjust_learning_rate(optimizer, epoch, lr, milestones(decay), 0.5)
        loss, train_top1 = train_one_epoch(model, train, optimizer, device, f'{name} {epoch}/{epochs}', quiet,
                                           transform, generator)
        top1, top5 = evaluate(model, val, device, quiet) if val is not None else (float('nan'),) * 2
        history.append(dict(epoch=epoch, lr=current, loss=loss, train_top1=train_top1, top1=top1, top5=top5))
        log(f"{name} epoch {epoch}/{epochs} lr {current:g} loss {loss:.4f} train@1 {train_top1:.2f}"
            + (f" test@1 {top1:.2f} test@5 {top5:.2f}" if val is not None else ''))
        if train_top1 > best_train:
            best_train, best_state = train_top1, {k: v.clone() for k, v in model.state_dict().items()}
    return history, best_state


def summarise(history, select):
    """Best-over-epochs (official, selects on the test set) and last-epoch accuracies."""
    best = max(history, key=lambda h: h['top1'])
    last = history[-1]
    chosen = best if select == 'best' else last
    return dict(top1=chosen['top1'], top5=chosen['top5'], top1_best=best['top1'], top5_best=best['top5'],
                best_epoch=best['epoch'], top1_last=last['top1'], top5_last=last['top5'], select=select)


@torch.no_grad()
def extract_features(encoder, dataset, device, num_workers=0, quiet=False, batch_size=256):
    """Frozen CAE features (N, D) and labels (N,) on the CPU, in dataset order."""
    encoder.eval()
    feats, labels = [], []
    data = loader(dataset, batch_size, False, 0, num_workers, device)
    for x, y, _ in tqdm(data, desc='features', leave=False, disable=quiet):
        feats.append(encoder(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def eval_datasets(splits, opts):
    """Train and val SkeletonDatasets with the deterministic evaluation transform."""
    frames, aug = opts['selected_frames'], eval_chain(opts)
    return [SkeletonDataset(d, lab, frames, augment.build_transform(aug, frames), source=opts['dataset'])
            for d, lab in splits]


def frozen_features(encoder, splits, opts, device):
    """[(train features (N, D), labels), (val features, labels)] of the frozen encoder, extracted once."""
    return [extract_features(encoder, s, device, opts.get('num_workers') or 0, opts.get('quiet', False))
            for s in eval_datasets(splits, opts)]


def linear_evaluation(encoder, splits, opts, device, log, classifier=None, features=None, save_path=None):
    """Train a linear classifier on the frozen encoder (SPEC §5.1). The evaluation transform is
    deterministic, so features are extracted once (`lin_features='cache'`, or passed in as
    `features`); 'recompute' runs the encoder on every batch of every epoch as the official code
    does, with the same result.

    splits: ((train data, labels), (val data, labels)). Returns summarise() of the history; the
    trained classifier (last epoch) goes to `save_path` if given (`linEval.py --head_path` tests it).
    """
    classifier = (classifier or LinearClassifier(encoder.out_dim, PRESETS[opts['dataset']]['classes'])).to(device)
    batch, seed, workers = opts['lin_batch_size'], opts['seed'], opts.get('num_workers') or 0
    if opts.get('lin_features', 'cache') == 'cache':
        (train_x, train_y), (val_x, val_y) = features or frozen_features(encoder, splits, opts, device)
        model = classifier
        train_batches = FeatureBatches(train_x.to(device), train_y.to(device), batch, True, seed)
        val_batches = FeatureBatches(val_x.to(device), val_y.to(device), 1024, False)
    else:
        train, val = eval_datasets(splits, opts)
        model = FrozenEncoderClassifier(encoder, classifier)
        train_batches = loader(train, batch, True, seed, workers, device)
        val_batches = loader(val, 1024, False, 0, workers, device)
    schedule = (opts['lin_learning_rate'], opts['lin_epochs'], opts['lin_lr_decay_epochs'])
    history, _ = fit(model, classifier.parameters(), train_batches, val_batches, schedule, device, log, 'linear',
                     opts.get('quiet', False))
    if save_path is not None:
        save_checkpoint(dict(args=opts, model=classifier.state_dict()), save_path)
    return dict(summarise(history, opts['select']), history=history)


@torch.no_grad()
def score_head(encoder, head, splits, opts, device):
    """Top-1 / top-5 % of a saved linear head on the frozen encoder's test features (no training)."""
    _, (test_x, test_y) = frozen_features(encoder, splits, opts, device)
    classifier = LinearClassifier(encoder.out_dim, PRESETS[opts['dataset']]['classes'])
    try:
        classifier.load_state_dict(head)
    except RuntimeError as err:
        raise CheckpointError(f"linear head does not fit this encoder: {str(err).splitlines()[-1].strip()}") from None
    logits = classifier.to(device)(test_x.to(device))
    return [100 * hits / len(test_y) for hits in accuracy(logits, test_y.to(device))]


def evaluate_frozen(encoder, splits, groups, opts, device, log, out=None):
    """The official SGD linear evaluation, cosine-KNN top-1 at --knn_k, and the validation-selected
    probes (`honest_probes`) of a frozen encoder, sharing one feature extraction; the SGD classifier
    is saved as <out>/linear_head.pth. Returns (results, features)."""
    features = frozen_features(encoder, splits, opts, device)
    result = linear_evaluation(encoder, splits, opts, device, log, features=features,
                               save_path=None if out is None else out / 'linear_head.pth')
    honest = honest_probes(features[0], features[1], groups, opts.get('val_seed', 1))
    log(f"validation-selected probes: L-BFGS top1 {honest['probe_top1']:.2f} (C {honest['probe_C']:g}), "
        f"KNN top1 {honest['knn_selected_top1']:.2f} (k {honest['knn_selected_k']})")
    return dict(result, knn_top1=knn_top1(features, opts['knn_k']), knn_k=opts['knn_k'], **honest), features


PROBE_CS = (0.001, 0.01, 0.1, 1.0, 10.0)
KNN_KS = (1, 3, 5, 10, 20)


def _numpy(pair):
    x, y = pair
    return (x.numpy() if torch.is_tensor(x) else np.asarray(x)), (y.numpy() if torch.is_tensor(y) else np.asarray(y))


def lbfgs_probe(train, c):
    """Standardised features (mean/std of `train`) + multinomial L-BFGS logistic regression, C = c:
    a deterministic linear probe. Returns predict(x) -> labels."""
    x, y = _numpy(train)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y)
    return lambda z: model.predict(scaler.transform(z))


def knn_probe(train, k):
    """Cosine k-nearest-neighbour vote: predict(x) -> labels."""
    x, y = _numpy(train)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(y)), metric='cosine', algorithm='brute').fit(x, y)
    return knn.predict


def _top1(predict, pair):
    x, y = _numpy(pair)
    return float(100 * (predict(x) == y).mean())


def select_probe_settings(train, groups, seed):
    """C of the L-BFGS probe and k of the KNN, each chosen by accuracy on a validation part of the
    *training* features (whole groups held out, `validation_split`); only training data are given."""
    x, y = _numpy(train)
    keep, held = validation_split(y, groups, seed)
    fit_part, val_part = (x[keep], y[keep]), (x[held], y[held])
    by_c = {c: _top1(lbfgs_probe(fit_part, c), val_part) for c in PROBE_CS}
    by_k = {k: _top1(knn_probe(fit_part, k), val_part) for k in KNN_KS}
    return dict(C=max(by_c, key=by_c.get), k=max(by_k, key=by_k.get), validation_lbfgs=by_c, validation_knn=by_k)


def honest_probes(train, test, groups, seed):
    """Settings chosen on validation (`select_probe_settings`), refit on the whole training split,
    the test split evaluated once. train/test: (features (N, D), labels (N,)). The L-BFGS probe's
    test predictions are kept (`probe_predictions`, for the confusion matrix)."""
    chosen = select_probe_settings(train, groups, seed)
    test_x, test_y = _numpy(test)
    predicted = lbfgs_probe(train, chosen['C'])(test_x)
    return dict(probe_top1=float(100 * (predicted == test_y).mean()), probe_C=chosen['C'],
                probe_predictions=predicted.tolist(),
                knn_selected_top1=_top1(knn_probe(train, chosen['k']), test), knn_selected_k=chosen['k'],
                probe_validation=dict(lbfgs=chosen['validation_lbfgs'], knn=chosen['validation_knn']))


def write_plots(out, result, features, dataset, metrics_rows=None, warmup_epochs=0):
    """PNGs in the run folder: pretraining loss (if metrics), accuracy per epoch with the reported epoch,
    t-SNE of test features and the confusion matrix of the validation-selected L-BFGS probe."""
    import plots
    names = PRESETS[dataset].get('actions')
    if metrics_rows:
        plots.plot_loss(metrics_rows, out / 'loss.png', warmup_epochs)
    if result.get('history'):
        plots.plot_accuracy(result['history'], out / 'accuracy.png', f"{dataset} {result.get('mode', 'linear')}",
                            result.get('select', 'last'))
    if features is not None:
        val_x, val_y = features[1]
        plots.plot_tsne(val_x.numpy(), val_y.numpy(), out / 'tsne.png', f'{dataset}: t-SNE of test CAE features', names)
        if result.get('probe_predictions') is not None:
            plots.plot_confusion(val_y.numpy(), np.asarray(result['probe_predictions']), out / 'confusion.png',
                                 f"{dataset}: L-BFGS probe (C {result['probe_C']:g} chosen on validation), "
                                 f"top-1 {result['probe_top1']:.1f}", names)


def knn_top1(features, k):
    """Top-1 % of a cosine k-nearest-neighbour vote (scikit-learn) of val features among train features."""
    train, val = features
    return _top1(knn_probe(train, k), val)


def eval_chain(opts):
    """Evaluation transform: centring only ('subtract1'), or 'None' if pretraining used no augmentation
    or the data are body-normalised already."""
    return 'None' if opts.get('aug1', 'subtract') == 'None' or opts.get('preprocess') == 'body' else 'subtract'


# ---------------------------------------------------------------- the three protocols
def semi_subset(labels, rate, classes, sampling, seed):
    """Indices of the labelled subset: int(rate * N / classes) per class but at least one (as the
    official code, so --semi_rate 0.01 works on the small datasets too), either the first ones in
    file order (official) or a random stratified draw fixed by seed."""
    per_class = max(1, int(rate * len(labels) / classes))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(classes):
        members = np.flatnonzero(labels == c)
        chosen.append(members[:per_class] if sampling == 'first' else
                      rng.choice(members, min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def run_semi(encoder, splits, opts, device, log, out):
    """Stage 1: fine-tune encoder + classifier on the labelled subset, keep the best-training-accuracy
    state. Stage 2: linear evaluation of that frozen encoder, its classifier as the start, on the full
    labelled training set (official, SPEC §5.3) or on the subset only (`--semi_stage2 subset`)."""
    (train_x, train_y), val = splits
    classes = PRESETS[opts['dataset']]['classes']
    subset = semi_subset(train_y, opts['semi_rate'], classes, opts['semi_sampling'], opts['seed'])
    log(f"semi: {len(subset)} labelled samples ({opts['semi_sampling']} per class) of {len(train_y)}")
    labelled, _ = eval_datasets(((train_x[subset], train_y[subset]), val), opts)
    model = EncoderClassifier(encoder, classes).to(device)
    schedule = (opts['learning_rate'], opts['epochs'], opts['lr_decay_epochs'])
    history, best_state = fit(model, model.parameters(), loader(labelled, opts['batch_size'], True, opts['seed']),
                              None, schedule, device, log, 'semi-finetune', opts['quiet'])
    save_checkpoint(dict(args=opts, model=best_state), out / 'semi_ft_best.pth')
    model.load_state_dict(best_state)
    classifier = LinearClassifier(encoder.out_dim, classes)
    classifier.classifier.load_state_dict(model.classifier.state_dict())
    stage2 = splits if opts['semi_stage2'] == 'full' else ((train_x[subset], train_y[subset]), val)
    lin_opts = dict(opts, lin_learning_rate=SCHEDULES['eval'][0], lin_lr_decay_epochs=SCHEDULES['eval'][2],
                    lin_batch_size=opts['batch_size'])
    result = linear_evaluation(model.encoder, stage2, lin_opts, device, log, classifier)
    return dict(result, labelled=len(subset), finetune_history=history)


def run_supervise(splits, opts, device, log, out=None):
    """Train encoder + classifier from scratch on all training labels (SPEC §5.4); with the strong
    recipe on its preprocessed data, with Adam and its augmentation (`train_aug`) on training batches.
    The network after the last epoch is saved as <out>/supervised.pth."""
    train, val = eval_datasets(splits, opts)
    model = EncoderClassifier(build_encoder(opts), PRESETS[opts['dataset']]['classes']).to(device)
    schedule = (opts['learning_rate'], opts['epochs'], opts['lr_decay_epochs'])
    workers, aug = opts['num_workers'], opts.get('train_aug', 'None')
    transform = augment_batch.build_batch_transform(aug, opts['selected_frames']) if aug != 'None' else None
    history, _ = fit(model, model.parameters(), loader(train, opts['batch_size'], True, opts['seed'], workers, device),
                     loader(val, 256, False, 0, workers, device), schedule, device, log, 'supervise', opts['quiet'],
                     opts.get('optimizer', 'sgd'), transform, opts['seed'])
    if out is not None:
        save_checkpoint(dict(args=opts, model=model.state_dict()), out / 'supervised.pth')
    return dict(summarise(history, opts['select']), history=history)


def raw_features(splits, opts):
    """The no-learning floor: each split's input as the encoder sees it (preprocessed, with frame
    differences if the recipe uses motion), flattened: [(features (N, F), labels)] for the probes."""
    out = []
    for x, y in splits:
        x = np.asarray(x[:, :, :opts['selected_frames']], dtype=np.float32)
        if eval_chain(opts) == 'subtract':
            x = augment_batch.center(x)  # the official per-frame centring, as the encoder would see it
        x = torch.tensor(x)  # a copy: the input may be a read-only memory map
        if opts.get('motion'):
            x = with_motion(x)
        out.append((x.reshape(len(x), -1), torch.as_tensor(y)))
    return out


def summary_line(name, result):
    """One line: top-1 (and best/last, top-5, KNN where there are such)."""
    line = f"{name}: top1 {result['top1']:.2f}"
    if result.get('best_epoch') is not None:
        line += (f" (best {result['top1_best']:.2f} @ epoch {result['best_epoch']}, last {result['top1_last']:.2f})"
                 f" top5 {result['top5']:.2f}")
    if result.get('knn_top1') is not None:
        line += f" knn@{result['knn_k']} {result['knn_top1']:.2f}"
    return line
