"""Where every option of every run is decided: one resolver for both scripts.

Layers, each overriding the one before (`--show_options` prints every value with its layer):

    default       the argparse defaults in parse_option() / parse_option_lin_eval() and the shared groups below
    preset        dataset.PRESETS[--dataset]: joints, frames, hidden size, queue, batch, schedule, fold/view
    recipe        recipes.RECIPES[--recipe]: faithful (none), corrected, strong
    mode          the official per-mode values (docs/official.md §5) and the recipe's own for that mode (recipes.MODE_RECIPES)
    checkpoint    eval / semi / knn: the data, split and encoder stored with --model_path
    config        --config <an earlier args.json>
    command line  always wins

Then what the encoder sees is derived once (`input_chain`), so the pretrained encoder, its probes,
the raw-input floor and the supervised network of one recipe read the same tensors.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import augment
from dataset import DATA_ROOT, PRESETS
from model import EncoderSpec
from recipes import MODE_RECIPES, RECIPES
from runs import CheckpointError, load_checkpoint
from training import milestones

# What the encoder's input, and so the raw-input floor, depends on; then the encoder itself (model.EncoderSpec).
INPUT, ENCODER = EncoderSpec.INPUT, EncoderSpec.options()


def floor_options(options, evaluation):
    """The options of a no-learning floor: 'raw' (the input alone, INPUT) or 'init' (the encoder, ENCODER)."""
    keys = INPUT if evaluation == 'raw' else ENCODER
    return {k: v for k, v in options.items() if k in keys}


# What an evaluation takes from its checkpoint: the data, how it was split, the encoder and its input.
FROM_CHECKPOINT = ('dataset', 'recipe', 'data_root', 'cache_dir', 'fold', 'test_view', 'seed', 'select', 'eval_split',
                   'val_seed', 'val_group', *ENCODER)
TRAINING = ('epochs', 'learning_rate', 'lr_decay_epochs', 'batch_size', 'optimizer')  # pretrain, semi, supervise
PRETRAIN_PRESET = ('nce_k', 'batch_size', 'lr_decay_epochs')  # pretraining's own schedule in the presets
SEMI_SCHEDULES = [(0.01, (35, '15,30')), (0.1, (15, '8')), (1.0, (10, '7'))]  # rate <= limit: (epochs, decay)


# ---------------------------------------------------------------- argparse types
def _number(kind, ok, what):
    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    parse.__name__ = what
    return parse


positive_int = _number(int, lambda v: v >= 1, 'an integer >= 1')
natural_int = _number(int, lambda v: v >= 0, 'an integer >= 0')
positive_float = _number(float, lambda v: 0 < v < float('inf'), 'a finite number > 0')
non_negative_float = _number(float, lambda v: 0 <= v < float('inf'), 'a finite number >= 0')
fraction = _number(float, lambda v: 0 < v <= 1, 'a number in (0, 1]')


def epoch_list(text):
    """argparse type: comma-separated epochs >= 1, e.g. '30,70' ('' for none)."""
    try:
        epochs = milestones(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of epochs") from None
    if any(e < 1 for e in epochs):
        raise argparse.ArgumentTypeError(f"{text!r}: epochs must be >= 1")
    return str(text)


def augmentation_chain(text):
    """argparse type: an augmentation chain that augment.parse_chain accepts."""
    try:
        augment.parse_chain(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def to_argv(options):
    """An options dict -> the command-line arguments that set it (booleans as --x / --no-x)."""
    return [a for key, value in options.items() for a in (
        [f"--{'' if value else 'no-'}{key}"] if isinstance(value, bool) else [f'--{key}', str(value)])]


def per_dataset(key):
    return 'preset: ' + ', '.join(f'{k} {v.get(key)}' for k, v in PRESETS.items())


# ---------------------------------------------------------------- option groups shared by both scripts
def common(parser):
    """Data location and split, recipe, seed, device, output, --config."""
    env_cache = os.environ.get('ASCAL_CACHE_DIR', str(Path('~/.cache/ascal').expanduser()))
    add = parser.add_argument
    add('--dataset', choices=sorted(PRESETS), default='sbu', help='dataset and benchmark')
    add('--recipe', choices=sorted(RECIPES), default='faithful',
        help='faithful: official values; corrected: every official oddity fixed; strong: corrected + the '
             'validation-chosen changes (recipes.py); the command line still wins')
    add('--data_root', default=DATA_ROOT,
        help='folder laid out like data/README.md ($ASCAL_DATA_ROOT if set, else ./data)')
    add('--cache_dir', default=env_cache, help='parsed SBU/N-UCLA cache ($ASCAL_CACHE_DIR if set, else ~/.cache/ascal)')
    add('--fold', type=natural_int, default=None, help='SBU fold 0-4 / UWA3D fold 0-5; ' + per_dataset('fold'))
    add('--test_view', type=int, default=None, help='N-UCLA test view 1-3 (official 1; the literature uses 3) / '
        'UWA3D test view; ' + per_dataset('test_view'))
    add('--allow_missing', action='store_true', help='go on when SBU / N-UCLA sequences are missing (each is named)')
    add('--num_workers', type=natural_int, default=None, help='DataLoader workers; ' + per_dataset('num_workers'))
    add('--seed', type=int, default=1, help='seeds init, data order and augmentation')
    add('--device', choices=['auto', 'cpu', 'cuda'], default='auto', help='auto: CUDA if available')
    add('--threads', type=positive_int, default=None,
        help='CPU threads (default: $OMP_NUM_THREADS if set, else the CPUs idle at the start; the choice is '
             'recorded in provenance; bench/results/threads-*.json)')
    add('--out_dir', default=None, help='run folder (default runs/<dataset>-<time> for pretraining, '
                                         'runs/<dataset>-<mode>-<time> for an evaluation)')
    add('--quiet', action='store_true', help='no progress bars, log to file only')
    add('--no_plots', action='store_true', help='write no PNG figures at the end of the run')
    add('--config', default=None, help="an earlier run's args.json: its options sit below the command line")
    add('--show_options', action='store_true', help='print every resolved option and the layer that set it, then exit')


def encoder_options(group):
    """The encoder and the input it sees (eval / semi / knn: must match the checkpoint)."""
    add = group.add_argument
    add('--hidden_units', type=positive_int, help='RNN width; ' + per_dataset('hidden_units'))
    add('--lstm_layer', type=positive_int, help='RNN depth; ' + per_dataset('lstm_layer'))
    add('--selected_frames', type=positive_int, help='frames the encoder sees; ' + per_dataset('frames'))
    add('--masked_mean', action=argparse.BooleanOptionalAction, default=False, help='corrected: average the RNN outputs over real frames only')
    add('--rnn', choices=['lstm', 'gru'], default='lstm', help='recurrent cell (official lstm)')
    add('--readout', choices=['mean', 'last'], default='mean',
        help='the feature: mean of the RNN outputs over time (official; over real frames with --masked_mean) '
             'or last: the final state of each direction over the real frames, concatenated')
    add('--bidirectional', action=argparse.BooleanOptionalAction, default=False, help='bidirectional RNN (official: one direction)')
    add('--motion', action=argparse.BooleanOptionalAction, default=False, help='append frame differences to the input (official: no)')
    add('--two_stream', action=argparse.BooleanOptionalAction, default=False,
        help='with --motion: a second RNN reads the frame differences and the two features are concatenated '
             '(late fusion; without it one RNN reads both)')
    add('--preprocess', choices=['none', 'body', 'view'], default='none',
        help='body: first-frame body-centred, view- and scale-normalised, resampled to --selected_frames; '
             'view: first-frame hip-centred and view-normalised, min-max scaled to [-1, 1], every s-th frame '
             '(at most --selected_frames, padded at the end; preprocess.py); none: the first frames, each '
             'centred on joint 1 (official)')
    add('--sbu_true_depth', action=argparse.BooleanOptionalAction, default=False, help='corrected: SBU depth from z (official: from the normalised y)')


def evaluation_options(group):
    """How frozen features are evaluated: the linear stage, KNN, the split and the reported epoch."""
    add = group.add_argument
    add('--select', choices=['best', 'last'], default='best',
        help="'top1' is the best test accuracy over epochs (official, selected on the test set) or the last epoch's")
    add('--lin_features', choices=['cache', 'recompute'], default='cache',
        help='extract frozen features once, or on every epoch (official, slow; same result)')
    add('--knn_k', type=positive_int, default=1, help='neighbours of the cosine KNN evaluation')
    add('--no_probes', action='store_true', help='skip the validation-selected L-BFGS and KNN probes (slow at NTU scale)')
    add('--eval_split', choices=['test', 'validation'], default='test',
        help='validation: hold out whole groups of the training split (dataset.validation_split) and '
             'evaluate on them; no test sequence is used')
    add('--val_seed', type=int, default=1, help='seed of the held-out validation groups')
    add('--val_group', type=natural_int, default=None,
        help='validation: hold out the N-th group (sorted view / fold / camera / setup) instead of a seeded draw')
    add('--lin_epochs', type=positive_int, default=90, help='linear classifier epochs')
    add('--lin_learning_rate', type=positive_float, default=1.0, help='linear classifier SGD lr (momentum 0.9, Nesterov)')
    add('--lin_lr_decay_epochs', type=epoch_list, default='15,35,60,75', help='linear stage decay epochs, rate 0.5')
    add('--lin_batch_size', type=positive_int, default=32, help='linear classifier batch size')


# ---------------------------------------------------------------- the layers
def preset_layer(dataset, mode):
    preset = dict(PRESETS[dataset], selected_frames=PRESETS[dataset]['frames'])
    return {k: v for k, v in preset.items() if mode == 'pretrain' or k not in PRETRAIN_PRESET}


def mode_layer(mode, recipe, dataset, semi_rate):
    """Official per-mode values (docs/official.md §5), then the recipe's own for this mode."""
    official = {}
    if mode == 'supervise':
        epochs, decay = (60, '30,40') if dataset.startswith('ntu') else (200, '30,80')
        official = dict(learning_rate=0.01, epochs=epochs, lr_decay_epochs=decay, batch_size=32, optimizer='sgd')
    elif mode == 'semi':
        epochs, decay = next(s for limit, s in SEMI_SCHEDULES if semi_rate <= limit)
        official = dict(learning_rate=0.01, epochs=epochs, lr_decay_epochs=decay, batch_size=32, optimizer='sgd')
    return {**official, **MODE_RECIPES.get((recipe, mode), {})}


def read_config(path):
    """The options saved in --config FILE (an earlier args.json)."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: --config {path}: not a readable args.json ({err})") from None
    if not isinstance(config, dict):
        raise SystemExit(f"error: --config {path}: expected a json object of options (an args.json), "
                         f"found {type(config).__name__}")
    return config


def checked(values, actions, where):
    """Options read from a file (config, checkpoint), each checked as argparse checks the command line."""
    for key, value in values.items():
        action = actions[key]
        try:
            if action.choices is not None and value not in action.choices:
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
            if action.nargs == 0 and not isinstance(value, bool):
                raise argparse.ArgumentTypeError(f"{value!r} is not true or false")
            if action.type is not None and value is not None:
                action.type(value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
            raise SystemExit(f"error: {where}: option {key}: {err}") from None
    return values


def _given(parser, argv):
    """Only the options that the command line sets (argparse checks them). --help shows the defaults."""
    if {'-h', '--help'} & set(sys.argv[1:] if argv is None else argv):
        parser.parse_args(argv)  # prints the help with every default, and exits
    defaults = {a.dest: a.default for a in parser._actions}
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    try:
        return vars(parser.parse_args(argv))
    finally:
        for action in parser._actions:
            action.default = defaults[action.dest]


def resolve(parser, argv=None):
    """Parse argv through the layers above into one Namespace (plus `notes`: what was taken from where)."""
    given = _given(parser, argv)
    actions = {a.dest: a for a in parser._actions if a.dest != 'help'}
    default = {k: a.default for k, a in actions.items()}
    config = read_config(given['config']) if given.get('config') else {}
    config = checked({k: v for k, v in config.items() if k in actions and k not in ('config', 'out_dir', 'resume',
                                                                                   'show_options')},
                     actions, f"--config {given.get('config')}")
    mode = given.get('mode', config.get('mode', parser.get_default('mode')))
    notes, checkpoint = [], {}
    path = given.get('model_path', config.get('model_path'))
    if mode in ('eval', 'semi', 'knn') and path:
        stored = load_checkpoint(path)['args']  # options it lacks are refused by pretraining.load_encoder
        checkpoint = checked({k: stored[k] for k in FROM_CHECKPOINT if k in stored}, actions, f"{path} (stored options)")
        conflict = [k for k in ENCODER + ('dataset',) if k in given and k in checkpoint and given[k] != checkpoint[k]]
        if conflict:
            raise CheckpointError(f"{path}: checkpoint has " + ', '.join(
                f"{k}={checkpoint[k]}, but --{k} {given[k]} was asked for" for k in conflict))
        notes.append(f"from the checkpoint {path}: " + ', '.join(f'{k}={v}' for k, v in checkpoint.items()
                                                                  if k not in given))
    upper = {**checkpoint, **config, **given}
    dataset = upper.get('dataset', default['dataset'])
    recipe = upper.get('recipe', default['recipe'])
    semi_rate = upper.get('semi_rate', default.get('semi_rate'))
    trains_nothing = [k for k in TRAINING if mode in ('eval', 'knn') and k in given and f'lin_{k}' in actions]
    if trains_nothing:
        parser.error(f"--{trains_nothing[0]} trains nothing in --mode {mode}; the linear stage takes --lin_{trains_nothing[0]}")
    layers = [('default', default), (f'preset {dataset}', preset_layer(dataset, mode)),
              (f'recipe {recipe}', RECIPES[recipe]), (f'mode {mode}', mode_layer(mode, recipe, dataset, semi_rate)),
              ('checkpoint', checkpoint), ('config', config), ('command line', given)]
    opts, source = {}, {}
    for name, layer in layers:
        for key, value in layer.items():
            if key in actions:
                if name.startswith(('preset', 'mode')) and source.get(key) == 'default' and opts[key] not in (None, value):
                    notes.append(f"the default {key}={opts[key]!r} set in the script is overridden by the {name} "
                                 f"({value!r}); give --{key} on the command line to use it")
                opts[key], source[key] = value, name
    if mode in ('eval', 'knn', 'raw'):  # a recipe's training schedule is not this mode's: not recorded as if it were
        for key in (k for k in TRAINING if source.get(k, '').startswith('recipe')):
            opts[key], source[key] = default[key], 'default (the recipe sets it for training modes only)'
    for key in ('data_root', 'cache_dir'):  # stored absolute: a checkpoint evaluates from any folder
        opts[key] = os.path.abspath(os.path.expanduser(opts[key]))
    opts.update(mode=mode, recipe=recipe, input_chain=augment.input_chain(opts['preprocess']), notes=notes)
    if opts.get('show_options'):
        width = max(map(len, opts))
        print('\n'.join(f"{k:<{width}} = {v!r:<30} {source.get(k, 'derived')}" for k, v in opts.items()))
        sys.exit(0)
    return argparse.Namespace(**opts)


