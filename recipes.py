"""The recipes: faithful (official values, the default), corrected (each official oddity fixed) and
strong (corrected plus the validation-chosen steps below). Each is a layer of options that
options.resolve applies above the dataset preset, so the command line always wins.
"""
CORRECTED = dict(l2norm=True, masked_mean=True, sbu_true_depth=True, select='last', eval_final=True)
# strong1, the first strong recipe (kept reproducible under its own name), was chosen in two rounds of
# an ablation whose SBU selection saw test folds and whose N-UCLA validation was cross-subject
# (git history of results/ablation, README "Recipes"): body-normalised input resampled to 50 frames,
# crop-resize + shear 0.5 views, a 2-layer MLP head with temperature 0.1, Adam lr 1e-3, the motion
# input and 120 update epochs.
STRONG1 = dict(CORRECTED, preprocess='body', selected_frames=50, aug1='cropResize:0.5_shear:0.5',
               aug2='cropResize:0.5_shear:0.5', head_dim=128, nce_t=0.1, optimizer='adam', learning_rate=1e-3,
               motion=True, epochs=120, lr_decay_epochs='60')
ROTATION = dict(aug1=STRONG1['aug1'] + '_rotate', aug2=STRONG1['aug2'] + '_rotate')
BIGRU = dict(rnn='gru', bidirectional=True)
# The levers of the second ablation (ablation.py), each added to strong1 alone, by a short stable id
# (records are named by it): validation that mirrors each protocol (N-UCLA cross-view, SBU nested)
# decides which to keep (docs/recipes.md). Round 2 (rotation-bigru): the two that helped N-UCLA,
# together; round 3 (queue, temperature): matched to the data, whose presets' queues hold about as
# many keys as a validation run has training sequences; round 4: a wider encoder.
LEVERS = {
    'strong1': {},
    'rotation': ROTATION,
    'extreme-views': dict(aug1=STRONG1['aug1'] + '_gausNoise_zeroOutJoints', aug2=STRONG1['aug2'] + '_gausNoise_zeroOutJoints'),
    'nn-positives': dict(positive='neighbour'),
    'bigru': BIGRU,
    'epochs240': dict(epochs=240, lr_decay_epochs='120'),
    'no-motion': dict(motion=False),
    'rotation-bigru': dict(ROTATION, **BIGRU),
    'queue128': dict(nce_k=128),
    'temperature02': dict(nce_t=0.2),
    'hidden512': dict(hidden_units=512),
}
# The multi-seed screening (ablation.py --stage screen): each row is options added to strong1, run on
# both N-UCLA validation views with several seeds and compared pair by pair with strong1 itself.
# First the recurrent peers' ingredients (Predict & Cluster's input pipeline and read-out, a
# zero-input reconstruction decoder beside the contrast, a consistency term), singly and together;
# then strong1's own steps, each undone or changed, so that every step rests on this validation.
VIEW_INPUT = dict(preprocess='view')
RECON = dict(recon_weight=1.0)
CONSISTENCY = dict(recon_weight=1.0, recon_consistency=1.0)
SCREEN = {
    'strong1': {},
    'view-input': VIEW_INPUT,
    'final-readout': dict(readout='last'),
    'recon': RECON,
    'recon-consistency': CONSISTENCY,
    'peers-all': dict(VIEW_INPUT, readout='last', **CONSISTENCY),
    'two-streams': dict(two_stream=True),
    'rotation': ROTATION,
    'no-body-input': dict(preprocess='none'),
    'no-crop-resize': dict(aug1='shear:0.5', aug2='shear:0.5'),
    'no-head': dict(head_dim=0),
    'temperature02': LEVERS['temperature02'],
    'sgd': dict(optimizer='sgd', learning_rate=0.01),
    'no-motion': LEVERS['no-motion'],
    'epochs60': dict(epochs=60, lr_decay_epochs='30'),
    'frames30': dict(selected_frames=30),
}
# What each row means, in the tables (a label may be reworded: records are found by id).
LABELS = {
    'faithful': 'faithful recipe', 'corrected': 'corrected recipe', 'strong1': 'strong1',
    'rotation': '+ random rotation (up to 30 degrees)', 'extreme-views': '+ extreme views (Gaussian noise, joint mask)',
    'nn-positives': '+ nearest-neighbour positives', 'bigru': '+ bidirectional GRU',
    'epochs240': '+ 240 update epochs (decay at 120)', 'no-motion': 'without motion input',
    'rotation-bigru': '+ rotation + bidirectional GRU', 'queue128': '+ queue 128', 'temperature02': '+ temperature 0.2',
    'hidden512': '+ hidden size 512',
    'view-input': '+ view input (first-frame hips and spine, min-max, every s-th frame)',
    'final-readout': '+ final-state read-out', 'recon': '+ reconstruction (zero-input decoder, L1 x 1)',
    'recon-consistency': '+ reconstruction + consistency (x 1)', 'peers-all': '+ all four ingredients',
    'two-streams': '+ two streams (positions and frame differences, an RNN each, features concatenated)',
    'no-body-input': 'without body input (first 50 frames, centred on joint 1)',
    'no-crop-resize': 'without crop-resize (shear only)', 'no-head': 'without projection head',
    'sgd': 'SGD lr 0.01 (official optimiser)', 'epochs60': '60 update epochs (decay at 30)', 'frames30': '30 frames',
}
# strong: strong1 plus the lever that N-UCLA's cross-view validation chose (ablation.py; no SBU label
# was used for this choice; SBU's nested selection is reported beside it in results/ablation).
STRONG = dict(STRONG1, **ROTATION)
# strong2: strong1 plus what the multi-seed N-UCLA cross-view screening chose (ablation.recipe_choice on
# the committed records; a test checks it; no test view and no SBU label was used): the view-normalised
# min-max input, two streams, random rotation and no projection head.
STRONG2 = dict(STRONG1, **VIEW_INPUT, two_stream=True, **ROTATION, head_dim=0)
# The scale study (ablation.py --stage scale): strong2 with only its recurrent encoder's size changed,
# by a short stable id -> (label, options added to strong2). The peers' size (Predict & Cluster's
# 3-layer bi-GRU of 1024 units) also with their final-state read-out, and with their reconstruction.
SIZES = {f'{name}{width}x{depth}': (f"{'LSTM' if name == 'lstm' else 'bi-GRU'} {width} x {depth}",
                                    dict(rnn='lstm' if name == 'lstm' else 'gru', bidirectional=name == 'bigru',
                                         hidden_units=width, lstm_layer=depth))
         for name in ('lstm', 'bigru') for width in (256, 512, 1024) for depth in (1, 2, 3)}
PEERS = SIZES['bigru1024x3'][1]
SCALE = {'lstm256x1': ('strong2 (LSTM 256 x 1)', {}), **{k: v for k, v in SIZES.items() if k != 'lstm256x1'},
         'bigru1024x3-final': ('bi-GRU 1024 x 3, final-state read-out', dict(PEERS, readout='last')),
         'bigru1024x3-final-recon': ('bi-GRU 1024 x 3, final-state read-out + reconstruction',
                                     dict(PEERS, readout='last', **RECON))}
RECIPES = {'faithful': {}, 'corrected': CORRECTED, 'strong1': STRONG1, 'strong': STRONG, 'strong2': STRONG2}
# SBU's nested selection between strong1 and strong2 (ablation.py, results/ablation/README.md): test
# fold -> the recipe that validation on that fold's own training folds chose. `reproduce.py --configs
# strong2` runs it on each SBU fold, so the SBU row of strong2 is chosen with no test fold.
STRONG2_SBU = {fold: 'strong1' for fold in range(5)}
# SBU's nested selection (ablation.py, results/ablation/README.md): test fold -> the lever (id in
# LEVERS) that validation on that fold's own training folds chose. `reproduce.py --configs nested`
# tests it fold by fold; each test fold is read once, by its own run.
SBU_NESTED = {0: 'rotation', 1: 'rotation-bigru', 2: 'bigru', 3: 'bigru', 4: 'rotation'}

# A recipe's options for one linEval.py mode only (above the official per-mode values). The
# faithful supervised network is the official one (docs/official.md §5: hidden 256, 1 layer, 150 frames for
# every dataset); the other recipes train their own encoder on their own input. A random stratified
# labelled subset and semi-supervised stage 2 on that subset only are corrected switches; the strong
# recipes train their supervised network with its optimiser and its query view as augmentation.
MODE_RECIPES = {
    ('faithful', 'supervise'): dict(hidden_units=256, lstm_layer=1, selected_frames=150),
    **{(name, 'semi'): dict(semi_stage2='subset', semi_sampling='random') for name in ('corrected', 'strong1', 'strong',
                                                                                       'strong2')},
    **{(name, 'supervise'): dict(optimizer='adam', learning_rate=1e-3, train_aug=recipe['aug1'])
       for name, recipe in (('strong1', STRONG1), ('strong', STRONG), ('strong2', STRONG2))},
}
