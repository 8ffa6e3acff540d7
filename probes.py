"""Probes of fixed features that choose nothing on the test split (README, "Honest evaluation"): numpy arrays in,
predictions and accuracies out; no torch, no training loop.

    lbfgs_probe   standardised features (training mean/std) + multinomial logistic regression, L-BFGS
    knn_probe     cosine k-nearest-neighbour vote
    honest_probes C and k chosen on validation parts of the training features that mirror the test
                  (dataset.probe_folds: each training view in turn for a cross-view test, else
                  held-out groups), refit on the whole training split, test evaluated once
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits


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


def select_settings(x, y, folds):
    """C of the L-BFGS probe and k of the KNN, each chosen by its mean accuracy over the validation
    folds [(fit indices, validation indices)] of the training features x, y; only training data are given."""
    def mean_top1(make, setting):
        return float(np.mean([top1(make(x[fit], y[fit], setting), x[held], y[held]) for fit, held in folds]))
    by_c = {c: mean_top1(lbfgs_probe, c) for c in PROBE_CS}
    by_k = {k: mean_top1(knn_probe, k) for k in KNN_KS}
    return dict(C=max(by_c, key=by_c.get), k=max(by_k, key=by_k.get), validation_lbfgs=by_c, validation_knn=by_k)


@threadpool_limits.wrap(limits=1)  # BLAS on one thread: no result may depend on the thread count
def honest_probes(train, test, folds):
    """train, test: (features (N, D), labels (N,)) numpy pairs; folds: dataset.probe_folds of the
    training split. Settings chosen on validation (`select_settings`), both probes refit on the whole training split, the test split evaluated
    once; the L-BFGS probe's test predictions are kept (`probe_predictions`, for the confusion matrix)."""
    chosen = select_settings(*train, folds)
    predicted = lbfgs_probe(*train, chosen['C'])(test[0])
    return dict(probe_top1=float(100 * (predicted == test[1]).mean()), probe_C=chosen['C'],
                probe_predictions=predicted.tolist(),
                knn_selected_top1=top1(knn_probe(*train, chosen['k']), *test), knn_selected_k=chosen['k'],
                probe_validation=dict(lbfgs=chosen['validation_lbfgs'], knn=chosen['validation_knn'],
                                      folds=[len(held) for _, held in folds]))


def as_numpy(features):
    """[(features, labels)] of tensors or arrays -> the same as numpy arrays."""
    return [(np.asarray(x), np.asarray(y)) for x, y in features]
