"""The evaluation protocols of docs/official.md §5 and validation-selected probes on top of the training loop: frozen features
and the official SGD linear classifier, KNN and the validation-selected probes (probes.py),
semi-supervised fine-tuning, supervised training from scratch and the raw-input floor.

Every protocol reads its input through `input_transform`, the one place where a stored sequence
becomes what the encoder sees.
"""
import time

import numpy as np
import torch
from tqdm import tqdm

import augment
import probes
from dataset import PRESETS, IndexBatches, SkeletonDataset, loader
from model import EncoderClassifier, FrozenEncoderClassifier, LinearClassifier, with_motion
from pretraining import build_encoder
from runs import CheckpointError, RunError, save_checkpoint
from training import accuracy, fit, pick_epochs


def input_transform(opts):
    """Batches (N, C, T, V, M) -> what the encoder reads: the first selected_frames frames through
    opts.input_chain (augment.input_chain: centring on joint 1, or none for body-normalised input)."""
    return augment.build_transform(opts.input_chain, opts.selected_frames)


def eval_datasets(splits, opts):
    """Train and evaluation SkeletonDatasets of the encoder's input (deterministic, no augmentation)."""
    transform = augment.per_sample(input_transform(opts))
    return [SkeletonDataset(x, y, opts.selected_frames, transform, source=opts.dataset) for x, y in splits]


def raw_features(splits, opts):
    """The no-learning floor: each split's encoder input (`input_transform`, with frame differences
    where the encoder appends them), flattened: [(features (N, F), labels (N,))]."""
    out = []
    for x, y in splits:
        x = input_transform(opts)(torch.tensor(np.asarray(x[:, :, :opts.selected_frames], dtype=np.float32)), None)
        out.append(((with_motion(x) if opts.motion else x).reshape(len(x), -1), torch.as_tensor(y)))
    return out


class FeatureBatches:
    """(features, labels) batches of cached tensors, in the order of IndexBatches(n, batch_size, shuffle, seed)."""

    def __init__(self, features, labels, batch_size, shuffle, seed=0):
        self.features, self.labels = features, labels
        self.batches = IndexBatches(len(labels), batch_size, shuffle, seed)

    def __iter__(self):
        return ((self.features[idx], self.labels[idx]) for idx in self.batches.tensors())

    def __len__(self):
        return len(self.batches)


@torch.no_grad()
def extract_features(encoder, dataset, device, num_workers=0, quiet=False, batch_size=256):
    """Frozen CAE features (N, D) and labels (N,) on the CPU, in dataset order."""
    encoder.eval()
    feats, labels = [], []
    for x, y, _ in tqdm(loader(dataset, batch_size, False, 0, num_workers, device), desc='features', leave=False,
                        disable=quiet):
        feats.append(encoder(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def frozen_features(encoder, splits, opts, device):
    """[(features (N, D), labels)] of each split (train, evaluation) for the frozen encoder, extracted once."""
    features = [extract_features(encoder, s, device, opts.num_workers or 0, opts.quiet) for s in eval_datasets(splits, opts)]
    if not all(torch.isfinite(x).all() for x, _ in features):
        raise RunError(f"{getattr(opts, 'model_path', None) or 'the encoder'}: its features are not finite")
    return features


def linear_evaluation(encoder, splits, opts, device, log, classifier=None, features=None, save_path=None):
    """Train a linear classifier on the frozen encoder (docs/official.md §5). The encoder input is
    deterministic, so features are extracted once (`lin_features` 'cache', or passed in as
    `features`); 'recompute' runs the encoder on every batch of every epoch as the official code
    does, with the same result. Returns pick_epochs() of the history; the classifier after its last
    epoch goes to `save_path` if given (`linEval.py --head_path` tests it)."""
    classifier = (classifier or LinearClassifier(encoder.out_dim, PRESETS[opts.dataset]['classes'])).to(device)
    batch, seed = opts.lin_batch_size, opts.seed
    if opts.lin_features == 'cache':
        (train_x, train_y), (val_x, val_y) = features or frozen_features(encoder, splits, opts, device)
        model = classifier
        train_batches = FeatureBatches(train_x.to(device), train_y.to(device), batch, True, seed)
        val_batches = FeatureBatches(val_x.to(device), val_y.to(device), 1024, False)
    else:
        train, val = eval_datasets(splits, opts)
        model = FrozenEncoderClassifier(encoder, classifier)
        train_batches = loader(train, batch, True, seed, opts.num_workers or 0, device)
        val_batches = loader(val, 1024, False, 0, opts.num_workers or 0, device)
    schedule = (opts.lin_learning_rate, opts.lin_epochs, opts.lin_lr_decay_epochs)
    history, _ = fit(model, classifier.parameters(), train_batches, val_batches, schedule, device, log, 'linear',
                     opts.quiet)
    if save_path is not None:
        save_checkpoint(dict(args=vars(opts), model=classifier.state_dict()), save_path)
    return dict(pick_epochs(history, opts.select), history=history)


@torch.no_grad()
def score_head(encoder, head, splits, opts, device):
    """Top-1 / top-5 % of a saved linear head on the frozen encoder's test features (no training)."""
    [(test_x, test_y)] = frozen_features(encoder, splits[1:], opts, device)
    classifier = LinearClassifier(encoder.out_dim, PRESETS[opts.dataset]['classes'])
    try:
        classifier.load_state_dict(head)
    except RuntimeError as err:
        raise CheckpointError(f"linear head does not fit this encoder: {str(err).splitlines()[-1].strip()}") from None
    logits = classifier.to(device)(test_x.to(device))
    return [100 * hits / len(test_y) for hits in accuracy(logits, test_y.to(device))]


def knn_top1(features, k):
    """Top-1 % of a cosine k-nearest-neighbour vote of evaluation features among training features."""
    (train_x, train_y), (val_x, val_y) = probes.as_numpy(features)
    return probes.top1(probes.knn_probe(train_x, train_y, k), val_x, val_y)


def evaluate_frozen(encoder, splits, folds, opts, device, log, out=None):
    """The official SGD linear evaluation, cosine-KNN top-1 at --knn_k, and the validation-selected
    probes of a frozen encoder (C and k chosen on the training split's `folds`, dataset.probe_folds),
    sharing one feature extraction; the SGD classifier is saved as
    <out>/linear_head.pth. Returns (results, features)."""
    start = time.time()
    features = frozen_features(encoder, splits, opts, device)
    feature_seconds = round(time.time() - start, 3)
    result = linear_evaluation(encoder, splits, opts, device, log, features=features,
                               save_path=None if out is None else out / 'linear_head.pth')
    honest = {} if opts.no_probes else probes.honest_probes(*probes.as_numpy(features), folds)
    if honest:
        log(f"validation-selected probes: L-BFGS top1 {honest['probe_top1']:.2f} (C {honest['probe_C']:g}), "
            f"KNN top1 {honest['knn_selected_top1']:.2f} (k {honest['knn_selected_k']})")
    return dict(result, knn_top1=knn_top1(features, opts.knn_k), knn_k=opts.knn_k, feature_seconds=feature_seconds,
                **honest), features


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
    labelled training set (official, docs/official.md §5) or on the subset only (`--semi_stage2 subset`)."""
    (train_x, train_y), val = splits
    classes = PRESETS[opts.dataset]['classes']
    subset = semi_subset(train_y, opts.semi_rate, classes, opts.semi_sampling, opts.seed)
    log(f"semi: {len(subset)} labelled samples ({opts.semi_sampling} per class) of {len(train_y)}")
    labelled_split = (train_x[subset], train_y[subset])
    labelled, _ = eval_datasets((labelled_split, val), opts)
    model = EncoderClassifier(encoder, classes).to(device)
    schedule = (opts.learning_rate, opts.epochs, opts.lr_decay_epochs)
    history, best_state = fit(model, model.parameters(), loader(labelled, opts.batch_size, True, opts.seed),
                              None, schedule, device, log, 'semi-finetune', opts.quiet, opts.optimizer)
    save_checkpoint(dict(args=vars(opts), model=best_state), out / 'semi_ft_best.pth')
    model.load_state_dict(best_state)
    classifier = LinearClassifier(encoder.out_dim, classes)
    classifier.classifier.load_state_dict(model.classifier.state_dict())
    stage2 = splits if opts.semi_stage2 == 'full' else (labelled_split, val)
    result = linear_evaluation(model.encoder, stage2, opts, device, log, classifier)
    return dict(result, labelled=len(subset), finetune_history=history)


def run_supervise(splits, opts, device, log, out=None):
    """Train encoder + classifier from scratch on all training labels (docs/official.md §5), training batches
    through `train_aug` (batch augmentation on the device) if set. The network after the last epoch
    is saved as <out>/supervised.pth."""
    train, val = eval_datasets(splits, opts)
    model = EncoderClassifier(build_encoder(opts), PRESETS[opts.dataset]['classes']).to(device)
    schedule = (opts.learning_rate, opts.epochs, opts.lr_decay_epochs)
    augmentation = augment.build_transform(opts.train_aug, opts.selected_frames) if opts.train_aug != 'None' else None
    history, _ = fit(model, model.parameters(), loader(train, opts.batch_size, True, opts.seed, opts.num_workers, device),
                     loader(val, 256, False, 0, opts.num_workers, device), schedule, device, log, 'supervise',
                     opts.quiet, opts.optimizer, augmentation, opts.seed)
    if out is not None:
        save_checkpoint(dict(args=vars(opts), model=model.state_dict()), out / 'supervised.pth')
    return dict(pick_epochs(history, opts.select), history=history)
