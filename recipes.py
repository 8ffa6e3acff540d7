"""The three recipes: faithful (official values, the default), corrected (each official oddity
fixed) and strong (corrected plus the validation-chosen steps below). Option dicts that the scripts
use as argparse defaults, so the command line always wins."""
CORRECTED = dict(l2norm=True, masked_mean=True, sbu_true_depth=True, select='last', eval_final=True)
# The strong recipe: the corrected one plus these steps, in this order. Each was kept because
# validation accuracy (never test) said so; `python ablation.py` -> results/ablation/README.md.
STRONG_STEPS = [
    ('body-normalised input resampled to 50 frames', dict(preprocess='body', selected_frames=50)),
    ('crop-resize + shear 0.5 views', dict(aug1='cropResize:0.5_shear:0.5', aug2='cropResize:0.5_shear:0.5')),
    ('MLP head, temperature 0.1', dict(head_dim=128, nce_t=0.1)),
    ('Adam, lr 1e-3', dict(optimizer='adam', learning_rate=1e-3)),
    ('motion input', dict(motion=True)),
]
STRONG = dict(CORRECTED, **{k: v for _, step in STRONG_STEPS for k, v in step.items()})
RECIPES = {'faithful': {}, 'corrected': CORRECTED, 'strong': STRONG}

# What supervised training from scratch (linEval.py --mode supervise) takes from a recipe: data,
# encoder, selection, optimiser; aug1 becomes the augmentation of its training batches.
SUPERVISE_KEYS = ('preprocess', 'selected_frames', 'motion', 'rnn', 'bidirectional', 'masked_mean', 'sbu_true_depth',
                  'select', 'optimizer', 'learning_rate', 'aug1')
