"""PNG figures of a run: pretraining loss, evaluation accuracy per epoch, t-SNE of CAE features and
the confusion matrix of the validation-selected linear probe.

Written into the run folder at the end of every run (skip with `--no_plots`).
"""
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches='tight')  # legends sit below the axes, not over the data
    plt.close(fig)
    return path


def plot_loss(rows, path, warmup_epochs=0):
    """rows: metrics.csv rows (dicts with epoch, loss, pos_logit) -> loss curve PNG; the queue warm-up
    epochs (no update) are shaded."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [int(r['epoch']) for r in rows]
    ax.plot(epochs, [float(r['loss']) for r in rows], label='InfoNCE loss')
    if warmup_epochs:
        ax.axvspan(0.5, warmup_epochs + 0.5, color='grey', alpha=0.2, label='queue warm-up (no update)')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss')
    ax.set_title('pretraining')
    twin = ax.twinx()
    twin.plot(epochs, [float(r['pos_logit']) for r in rows], color='tab:orange', alpha=0.6, label='positive logit')
    twin.set_ylabel('positive logit', color='tab:orange')
    handles = [h for axis in (ax, twin) for h in axis.get_legend_handles_labels()[0]]
    _legend_below(ax, handles)
    return _save(fig, path)


def _legend_below(ax, handles):
    ax.legend(handles=handles, fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)


def plot_accuracy(history, path, title, select='last'):
    """history: per-epoch dicts with train_top1 and top1 -> accuracy curve PNG, the reported epoch marked
    with its selection rule (best test epoch = selected on the test set, or the last epoch)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [h['epoch'] for h in history]
    ax.plot(epochs, [h['train_top1'] for h in history], label='train top-1')
    ax.plot(epochs, [h['top1'] for h in history], label='test top-1')
    chosen = max(history, key=lambda h: h['top1']) if select == 'best' else history[-1]
    rule = 'best test epoch (test-selected)' if select == 'best' else 'last epoch'
    ax.plot([chosen['epoch']], [chosen['top1']], 'o', color='black', label=f"reported: {rule}, {chosen['top1']:.1f}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('epoch')
    ax.set_ylabel('accuracy (%)')
    ax.set_title(title)
    _legend_below(ax, ax.get_legend_handles_labels()[0])
    return _save(fig, path)


def plot_tsne(features, labels, path, title, names=None, seed=0):
    """features (N, D), labels (N,) -> 2-D t-SNE scatter coloured by class (`names`: action names)."""
    features, labels = np.asarray(features), np.asarray(labels)
    embedded = TSNE(perplexity=min(30, len(features) - 1), init='pca', random_state=seed).fit_transform(features)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = ax.scatter(embedded[:, 0], embedded[:, 1], c=labels, cmap='tab10' if labels.max() < 10 else 'tab20', s=8)
    handles, _ = points.legend_elements(num=sorted(set(labels.tolist())))
    classes = sorted(set(labels.tolist()))
    ax.legend(handles, [names[c] if names else str(c) for c in classes], title='action', fontsize=6,
              loc='center left', bbox_to_anchor=(1, 0.5), markerscale=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return _save(fig, path)


def plot_confusion(labels, predicted, path, title, names=None):
    """Row-normalised confusion matrix (true x predicted, %) PNG."""
    classes = len(names) if names else int(max(labels.max(), predicted.max())) + 1
    matrix = confusion_matrix(labels, predicted, labels=range(classes)).astype(float)
    matrix = 100 * matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = 2.5 + 0.35 * classes
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap='Blues', vmin=0, vmax=100)
    ticks = names or [str(c) for c in range(classes)]
    ax.set_xticks(range(classes), ticks, rotation=60, ha='right', fontsize=6)
    ax.set_yticks(range(classes), ticks, fontsize=6)
    if classes <= 20:
        for i in range(classes):
            for j in range(classes):
                if matrix[i, j] >= 1:
                    ax.text(j, i, f'{matrix[i, j]:.0f}', ha='center', va='center', fontsize=5,
                            color='white' if matrix[i, j] > 50 else 'black')
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label='% of the true class')
    return _save(fig, path)


def write_run_plots(out, result, features, names=None, metrics_rows=None, warmup_epochs=0):
    """PNGs in the run folder: pretraining loss (if metrics), accuracy per epoch with the reported epoch,
    t-SNE of test features and the confusion matrix of the validation-selected L-BFGS probe (classes
    labelled with `names` if given)."""
    dataset = result['dataset']
    if metrics_rows:
        plot_loss(metrics_rows, out / 'loss.png', warmup_epochs)
    if result.get('history'):
        stage = 'linear evaluation' if result['mode'] == 'pretrain' else result['mode']
        plot_accuracy(result['history'], out / 'accuracy.png', f"{dataset} {stage}", result.get('select', 'last'))
    if features is not None:
        val_x, val_y = np.asarray(features[1][0]), np.asarray(features[1][1])
        plot_tsne(val_x, val_y, out / 'tsne.png', f'{dataset}: t-SNE of test CAE features', names)
        if result.get('probe_predictions') is not None:
            plot_confusion(val_y, np.asarray(result['probe_predictions']), out / 'confusion.png',
                           f"{dataset}: L-BFGS probe (C {result['probe_C']:g} chosen on validation), "
                           f"top-1 {result['probe_top1']:.1f}", names)
