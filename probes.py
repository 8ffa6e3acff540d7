"""Probes of fixed features that choose nothing on the test split (README, "Honest evaluation"): numpy arrays in,
predictions and accuracies out; no torch, no training loop.

    lbfgs_probe   standardised features (training mean/std) + multinomial logistic regression, L-BFGS
    knn_probe     cosine k-nearest-neighbour vote
    honest_probes C and k chosen on a validation part of the training features (whole groups held
                  out, dataset.validation_split), refit on the whole training split, test evaluated once
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from dataset import validation_split

PROBE_CS = (0.001, 0.01, 0.1, 1.0, 10.0)
KNN_KS = (1, 3, 5, 10, 20)


def lbfgs_probe(x, y, c):
    """Features x (N, D), labels y (N,) -> predict(z) of a deterministic standardised L-BFGS probe with C = c."""
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y)
    return lambda z: model.predict(scaler.transform(z))


def knn_probe(x, y, k):
    """Features x (N, D), labels y (N,) -> predict(z) of a cosine k-nearest-neighbour vote."""
    return KNeighborsClassifier(n_neighbors=min(k, len(y)), metric='cosine', algorithm='brute').fit(x, y).predict


@threadpool_limits.wrap(limits=1)
def top1(predict, x, y):
    """Top-1 % of predict on features x (N, D), labels y (N,)."""
    return float(100 * (predict(x) == y).mean())


def select_settings(x, y, groups, seed):
    """C of the L-BFGS probe and k of the KNN, each chosen by accuracy on a validation part of the
    training features x, y (whole groups held out); only training data are given."""
    keep, held = validation_split(y, groups, seed)
    fit_part, val_part = (x[keep], y[keep]), (x[held], y[held])
    by_c = {c: top1(lbfgs_probe(*fit_part, c), *val_part) for c in PROBE_CS}
    by_k = {k: top1(knn_probe(*fit_part, k), *val_part) for k in KNN_KS}
    return dict(C=max(by_c, key=by_c.get), k=max(by_k, key=by_k.get), validation_lbfgs=by_c, validation_knn=by_k)


@threadpool_limits.wrap(limits=1)  # BLAS on one thread: no result may depend on the thread count
def honest_probes(train, test, groups, seed):
    """train, test: (features (N, D), labels (N,)) numpy pairs. Settings chosen on validation
    (`select_settings`), both probes refit on the whole training split, the test split evaluated
    once; the L-BFGS probe's test predictions are kept (`probe_predictions`, for the confusion matrix)."""
    chosen = select_settings(*train, groups, seed)
    predicted = lbfgs_probe(*train, chosen['C'])(test[0])
    return dict(probe_top1=float(100 * (predicted == test[1]).mean()), probe_C=chosen['C'],
                probe_predictions=predicted.tolist(),
                knn_selected_top1=top1(knn_probe(*train, chosen['k']), *test), knn_selected_k=chosen['k'],
                probe_validation=dict(lbfgs=chosen['validation_lbfgs'], knn=chosen['validation_knn']))


def as_numpy(features):
    """[(features, labels)] of tensors or arrays -> the same as numpy arrays."""
    return [(np.asarray(x), np.asarray(y)) for x, y in features]
