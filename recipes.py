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
# The levers of the second ablation (ablation.py), each added to strong1 alone: validation that
# mirrors each protocol (N-UCLA cross-view, SBU nested) decides which to keep (README, "Recipes").
LEVERS = [
    ('strong1', {}),
    ('+ random rotation (up to 30 degrees)', dict(aug1=STRONG1['aug1'] + '_rotate', aug2=STRONG1['aug2'] + '_rotate')),
    ('+ extreme views (Gaussian noise, joint mask)', dict(aug1=STRONG1['aug1'] + '_gausNoise_zeroOutJoints',
                                                          aug2=STRONG1['aug2'] + '_gausNoise_zeroOutJoints')),
    ('+ nearest-neighbour positives', dict(positive='neighbour')),
    ('+ bidirectional GRU', dict(rnn='gru', bidirectional=True)),
    ('+ 240 update epochs (decay at 120)', dict(epochs=240, lr_decay_epochs='120')),
    ('without motion input', dict(motion=False)),
    # round 2, after the levers above were screened on N-UCLA: the two that helped, together
    ('+ rotation + bidirectional GRU', dict(aug1=STRONG1['aug1'] + '_rotate', aug2=STRONG1['aug2'] + '_rotate',
                                            rnn='gru', bidirectional=True)),
    # round 3, queue and temperature matched to the data: the presets' queues hold about as many keys
    # as a validation run has training sequences (N-UCLA 500 for ~500), so a sequence's own stale
    # keys sit among its negatives
    ('+ queue 128', dict(nce_k=128)),
    ('+ temperature 0.2', dict(nce_t=0.2)),
    # round 4: a wider encoder (N-UCLA's preset is 256 x 1, SBU's 128 x 2)
    ('+ hidden size 512', dict(hidden_units=512)),
]
# The multi-seed screening (ablation.py --stage screen): each row is options added to strong1, run on
# both N-UCLA validation views with several seeds and compared pair by pair with strong1 itself.
# First the recurrent peers' ingredients (Predict & Cluster's input pipeline and read-out, a
# zero-input reconstruction decoder beside the contrast, a consistency term), singly and together;
# then strong1's own steps, each undone or changed, so that every step rests on this validation.
VIEW_INPUT = dict(preprocess='view')
RECON = dict(recon_weight=1.0)
CONSISTENCY = dict(recon_weight=1.0, recon_consistency=1.0)
SCREEN = [
    ('strong1', {}),
    ('+ view input (first-frame hips and spine, min-max, every s-th frame)', VIEW_INPUT),
    ('+ final-state read-out', dict(readout='last')),
    ('+ reconstruction (zero-input decoder, L1 x 1)', RECON),
    ('+ reconstruction + consistency (x 1)', CONSISTENCY),
    ('+ all four ingredients', dict(VIEW_INPUT, readout='last', **CONSISTENCY)),
    ('+ two streams (positions and frame differences, an RNN each, features concatenated)', dict(two_stream=True)),
    LEVERS[1],  # random rotation
    ('without body input (first 50 frames, centred on joint 1)', dict(preprocess='none')),
    ('without crop-resize (shear only)', dict(aug1='shear:0.5', aug2='shear:0.5')),
    ('without projection head', dict(head_dim=0)),
    LEVERS[9],  # temperature 0.2
    ('SGD lr 0.01 (official optimiser)', dict(optimizer='sgd', learning_rate=0.01)),
    LEVERS[6],  # without motion input
    ('60 update epochs (decay at 30)', dict(epochs=60, lr_decay_epochs='30')),
    ('30 frames', dict(selected_frames=30)),
]
# strong: strong1 plus the lever that N-UCLA's cross-view validation chose (ablation.py; no SBU label
# was used for this choice; SBU's nested selection is reported beside it in results/ablation).
STRONG = dict(STRONG1, **LEVERS[1][1])
# strong2: strong1 plus what the multi-seed N-UCLA cross-view screening chose (ablation.recipe_choice on
# the committed records; a test checks it; no test view and no SBU label was used): the view-normalised
# min-max input, two streams, random rotation and no projection head.
STRONG2 = dict(STRONG1, **VIEW_INPUT, two_stream=True, **LEVERS[1][1], head_dim=0)
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
# SBU's nested selection (ablation.py, results/ablation/README.md): test fold -> the lever (index in
# LEVERS) that validation on that fold's own training folds chose. `reproduce.py --configs nested`
# tests it fold by fold; each test fold is read once, by its own run.
SBU_NESTED = {0: 1, 1: 7, 2: 4, 3: 4, 4: 1}

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
