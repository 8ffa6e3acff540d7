"""PNG figures of a run: pretraining loss, evaluation accuracy per epoch, t-SNE of CAE features.

Written into the run folder at the end of every run (skip with `--no_plots`).
"""
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss(rows, path):
    """rows: metrics.csv rows (dicts with epoch, loss, pos_logit) -> loss curve PNG."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [int(r['epoch']) for r in rows]
    ax.plot(epochs, [float(r['loss']) for r in rows], label='InfoNCE loss')
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss')
    ax.set_title('pretraining')
    twin = ax.twinx()
    twin.plot(epochs, [float(r['pos_logit']) for r in rows], color='tab:orange', alpha=0.6, label='positive logit')
    twin.set_ylabel('positive logit', color='tab:orange')
    return _save(fig, path)


def plot_accuracy(history, path, title):
    """history: per-epoch dicts with train_top1 and top1 -> accuracy curve PNG."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [h['epoch'] for h in history]
    ax.plot(epochs, [h['train_top1'] for h in history], label='train top-1')
    ax.plot(epochs, [h['top1'] for h in history], label='test top-1')
    ax.set_xlabel('epoch')
    ax.set_ylabel('accuracy (%)')
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_tsne(features, labels, path, title, seed=0):
    """features (N, D), labels (N,) -> 2-D t-SNE scatter coloured by class."""
    features, labels = np.asarray(features), np.asarray(labels)
    embedded = TSNE(perplexity=min(30, len(features) - 1), init='pca', random_state=seed).fit_transform(features)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    points = ax.scatter(embedded[:, 0], embedded[:, 1], c=labels, cmap='tab10' if labels.max() < 10 else 'tab20', s=8)
    ax.legend(*points.legend_elements(), title='class', fontsize=6, loc='best', markerscale=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return _save(fig, path)
