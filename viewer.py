"""Draw a skeleton sequence, what the encoder sees of it, and augmented views of it as a PNG strip.

    python viewer.py --dataset sbu --index 0 --aug1 subtract_randomFlip_shear --views 2 --out views.png
    python viewer.py --dataset ucla --test_view 3 --recipe strong --out views.png   # a recipe's input and views

Options resolve as in the scripts (options.py), so a recipe brings its input and its query view.
Row 1 is the stored sequence (x-y plane, a few evenly spaced frames, person m in colour Cm), row 2
the encoder's input (official: centred on joint 1 in every frame; --preprocess body: body-normalised),
each further row a view drawn with --aug1. Centring puts each person at its own origin, so from
row 2 on two persons are drawn side by side (person 2 shifted right), not on top of each other.
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import augment  # noqa: E402
import options  # noqa: E402
import preprocess  # noqa: E402
from data import DataError  # noqa: E402
from dataset import PRESETS, load_split  # noqa: E402
from options import natural_int, positive_int  # noqa: E402
from runs import cli  # noqa: E402

BONES = {  # 0-based joint pairs per layout (joints: count)
    15: [(0, 1), (1, 2), (1, 3), (3, 4), (4, 5), (1, 6), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
         (12, 13), (13, 14)],  # SBU: head, neck, torso, arms, legs
    20: [(0, 1), (1, 2), (2, 3), (2, 4), (4, 5), (5, 6), (6, 7), (2, 8), (8, 9), (9, 10), (10, 11), (0, 12),
         (12, 13), (13, 14), (14, 15), (0, 16), (16, 17), (17, 18), (18, 19)],  # Kinect v1 (N-UCLA)
    25: [(0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8), (10, 9), (11, 10),
         (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17), (19, 18), (21, 22), (22, 7),
         (23, 24), (24, 11)],  # Kinect v2 (NTU)
}


def side_by_side(x):
    """(C, T, V, M) -> the same with person m shifted right by m widths (x axis), the result centred:
    persons centred on their own joints would otherwise be drawn on top of each other."""
    x = x.copy()
    present = [m for m in range(x.shape[3]) if x[:, :, :, m].any()]
    if len(present) < 2:
        return x
    real = x.any(axis=(0, 2))  # (T, M): frames in which a person is not padding
    width = max(np.ptp(x[0, real[:, m], :, m]) for m in present) * 1.2
    for i, m in enumerate(present):
        x[0, real[:, m], :, m] += (i - (len(present) - 1) / 2) * width
    return x


def draw_strip(rows, titles, path, frames=6):
    """rows: list of (C, T, V, M) arrays -> PNG with one row per array and `frames` evenly spaced
    frames of each, taken among its non-padding frames; person m in colour Cm."""
    fig, axes = plt.subplots(len(rows), frames, figsize=(1.6 * frames, 1.9 * len(rows)), squeeze=False)
    for r, (x, title) in enumerate(zip(rows, titles)):
        real = np.flatnonzero(np.abs(x).sum(axis=(0, 2, 3)) > 0)
        picked = real[np.linspace(0, len(real) - 1, frames).astype(int)] if len(real) else np.zeros(frames, int)
        bones = BONES.get(x.shape[2], [])
        centre = x[:2, real].reshape(2, -1)
        centre = (centre.max(1) + centre.min(1)) / 2 if len(real) else np.zeros(2)
        lim = np.abs(x[:2, real] - centre[:, None, None, None]).max() * 1.05 if len(real) else 1
        for c, f in enumerate(picked):
            ax = axes[r, c]
            for m in range(x.shape[3]):
                pts = x[:2, f, :, m]
                if not pts.any():
                    continue
                for a, b in bones:
                    ax.plot(pts[0, [a, b]], pts[1, [a, b]], color=f'C{m}', lw=1.2)
                ax.scatter(pts[0], pts[1], s=4, color=f'C{m}')
            ax.set_xlim(centre[0] - (lim or 1), centre[0] + (lim or 1))
            ax.set_ylim(centre[1] - (lim or 1), centre[1] + (lim or 1))
            ax.set_aspect('equal')
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f'frame {f}', fontsize=7)
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parse_option(argv=None):
    """The viewer's options through options.resolve: the recipe decides the input and its views."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    options.common(parser)
    options.encoder_options(parser.add_argument_group('the input the encoder sees'))
    group = parser.add_argument_group('viewer')
    group.add_argument('--aug1', default='subtract_randomFlip_shear', type=options.augmentation_chain,
                       help='augmentation chain of the views (the recipe\'s query view)')
    group.add_argument('--split', choices=['train', 'val'], default='train', help='training or test split')
    group.add_argument('--index', type=natural_int, default=0, help='sample index within the split')
    group.add_argument('--views', type=positive_int, default=2, help='augmented views to draw')
    group.add_argument('--out', default='runs/views.png', help='PNG to write (its folder is created)')
    parser.set_defaults(mode='view', seed=0)
    return options.resolve(parser, argv)


def main(opts):
    data, labels = load_split(opts.dataset, opts.data_root, opts.split, opts.fold, opts.test_view, opts.sbu_true_depth,
                              opts.cache_dir, allow_missing=opts.allow_missing)
    if opts.index >= len(labels):
        raise DataError(f"--index {opts.index}: the {opts.split} split has {len(labels)} samples")
    x = np.asarray(data[opts.index:opts.index + 1], dtype=np.float32)
    stored = torch.from_numpy(x[:, :, :opts.selected_frames])
    x = preprocess.preprocess_split(x, opts.preprocess, PRESETS[opts.dataset], opts.selected_frames)
    g = torch.Generator().manual_seed(opts.seed)
    rows = [stored] + [augment.build_transform(chain, opts.selected_frames)(torch.from_numpy(x), g)
                       for chain in [opts.input_chain] + [augment.view_chain(opts.input_chain, opts.aug1)] * opts.views]
    rows = [rows[0][0].numpy()] + [side_by_side(row[0].numpy()) for row in rows[1:]]
    titles = ['input', 'encoder input'] + [f'view {i + 1}' for i in range(opts.views)]
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    print(draw_strip(rows, titles, opts.out))


if __name__ == '__main__':
    cli(main, parse_option)
