"""Run bookkeeping shared by the scripts: common options and --config, seeding and RNG state,
the device, the run folder, plain-text logs, metrics.csv and atomic checkpoints."""
import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dataset import PRESETS


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the requested run."""


class RunError(RuntimeError):
    """A run cannot go on (its folder is taken, its state is not finite, ...); the message says why."""


def cli(main, parse):
    """Run a script's main(parse()) and turn every expected failure into one line on stderr and exit
    status 1 (no traceback): data, checkpoint and run errors, and OS errors, named by their file."""
    from data import DataError
    try:
        return main(parse())
    except (DataError, CheckpointError, RunError) as err:
        sys.exit(f"error: {err}")
    except OSError as err:  # permission denied, disk full, a folder where a file should be, ...
        where = f"{err.filename}: " if err.filename else ''
        sys.exit(f"error: {where}{err.strerror or err}")


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _number(text, int, lambda v: v >= 1, 'an integer >= 1')


def natural_int(text):
    """argparse type: an integer >= 0."""
    return _number(text, int, lambda v: v >= 0, 'an integer >= 0')


def positive_float(text):
    """argparse type: a finite number > 0."""
    return _number(text, float, lambda v: v > 0 and v != float('inf'), 'a finite number > 0')


def non_negative_float(text):
    """argparse type: a finite number >= 0."""
    return _number(text, float, lambda v: 0 <= v < float('inf'), 'a finite number >= 0')


def fraction(text):
    """argparse type: a number in (0, 1]."""
    return _number(text, float, lambda v: 0 < v <= 1, 'a number in (0, 1]')


def epoch_list(text):
    """argparse type: comma-separated epochs >= 1, e.g. '30,70' ('' for none)."""
    try:
        epochs = [int(e) for e in str(text).split(',') if e.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of epochs") from None
    if any(e < 1 for e in epochs):
        raise argparse.ArgumentTypeError(f"{text!r}: epochs must be >= 1")
    return str(text)


def _number(text, kind, ok, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def set_seed(seed, deterministic=False):
    """Seed Python, numpy and torch (CUDA too); `deterministic` also turns on PyTorch's
    deterministic algorithms (and the cuBLAS workspace setting they need)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = False


def rng_state():
    """Python, numpy and torch (CPU, CUDA) RNG states as plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(python=random.getstate(), numpy=[kind, keys.tolist(), pos, has_gauss, cached],
                torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def set_rng_state(state):
    random.setstate(state['python'])
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def resolve_device(name):
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but CUDA is not available")
    return torch.device(name)


def available_cpus():
    """The CPUs this process may run on (its affinity where the OS tells it, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def default_threads():
    """CPU threads that do not oversubscribe: $OMP_NUM_THREADS if set, else `available_cpus()`."""
    cpus = available_cpus()
    env = os.environ.get('OMP_NUM_THREADS', '')
    return min(int(env), cpus) if env.isdigit() and int(env) > 0 else cpus


def set_threads(threads):
    """torch intra-op threads (None: `default_threads()`); returns the number in use. Also flushes
    denormal floats (|x| < 1.2e-38) to zero on CPU: LSTM gradients that decay into that range made
    oneDNN's backward up to 9x slower on SBU, and no weight can change by so little in float32."""
    torch.set_num_threads(threads or default_threads())
    torch.set_flush_denormal(True)
    return torch.get_num_threads()


def device_name(device):
    """The GPU's name, or the CPU model from /proc/cpuinfo (platform's guess where there is none)."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    """(commit, dirty) of the checkout this code runs from, or (None, None) outside git."""
    root = Path(__file__).parent
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=root,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    if commit.returncode != 0:
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def provenance(device, out_dir):
    """Where and how a run ran: the process's command line, device and its name, threads, versions, git commit."""
    import numpy as np
    commit, dirty = _git_commit()
    return dict(process_command=' '.join(['python', Path(sys.argv[0]).name, *sys.argv[1:]]), device=str(device),
                device_name=device_name(device),
                threads=torch.get_num_threads(), out_dir=str(out_dir), python=platform.python_version(),
                torch=torch.__version__, numpy=np.__version__, git_commit=commit, git_dirty=dirty,
                host=platform.node(), started=time.strftime('%Y-%m-%d %H:%M:%S'))


def provenance_line(info):
    """One log line of a provenance() dict."""
    return (f"{info['process_command']} on {info['device_name']} ({info['device']}, {info['threads']} threads), "
            f"torch {info['torch']}, commit {info['git_commit']}{' (dirty)' if info['git_dirty'] else ''}")


def atomic_write(path, write):
    """write(file) into path.partial, fsync, then rename: a killed run never leaves a half file."""
    path = Path(path)
    tmp = path.with_name(path.name + '.partial')
    with open(tmp, 'wb') as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(state, path):
    atomic_write(path, lambda f: torch.save(state, f))


def write_json(obj, path):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


class RunLog:
    """Plain lines to stdout and to <out_dir>/log.txt."""

    def __init__(self, out_dir, quiet=False):
        self.path, self.quiet = Path(out_dir) / 'log.txt', quiet

    def __call__(self, message, always=False):
        if always or not self.quiet:
            tqdm.write(message)
        with open(self.path, 'a') as f:
            f.write(message + '\n')


def make_out_dir(out_dir, name):
    """Create the run folder (default runs/<name>-<time>) and take its lock: a second run writing into
    the same folder is refused (RunError) while this process lives."""
    out = Path(out_dir or Path('runs') / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out_dir {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    lock_run_folder(out)
    return out


_LOCKS = {}  # run folder -> open lock file, held until the process exits


def lock_run_folder(out):
    """Exclusive advisory lock on <out>/.lock (released when the process ends, even by SIGKILL)."""
    import fcntl
    key = str(Path(out).resolve())
    if key in _LOCKS:
        return
    handle = open(Path(out) / '.lock', 'a')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunError(f"--out_dir {out}: another run is writing into this folder; wait for it or choose another "
                       "--out_dir") from None
    _LOCKS[key] = handle


def release_run_folder(out):
    handle = _LOCKS.pop(str(Path(out).resolve()), None)
    if handle is not None:
        handle.close()


def load_checkpoint(path):
    """torch.load with weights_only=True, turning every failure into one clear CheckpointError."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not saved by AS-CAL): "
                              f"{(str(err).splitlines() or [type(err).__name__])[0]}") from None
    if not isinstance(ckpt, dict) or not {'args', 'model'} <= set(ckpt):
        raise CheckpointError(f"{path}: not an AS-CAL checkpoint (needs 'args' and 'model')")
    return ckpt


def common_options(parser):
    """Options of every script: data location and split, seed, device, output."""
    parser.add_argument('--dataset', choices=sorted(PRESETS), default=None, help='dataset and benchmark')
    parser.add_argument('--data_root', default=os.environ.get('ASCAL_DATA_ROOT', 'data'),
                        help='folder laid out like data/README.md ($ASCAL_DATA_ROOT if set, else ./data)')
    parser.add_argument('--cache_dir', default=os.environ.get('ASCAL_CACHE_DIR', str(Path('~/.cache/ascal').expanduser())),
                        help='where parsed SBU/N-UCLA text and json are cached ($ASCAL_CACHE_DIR if set, else ~/.cache/ascal)')
    parser.add_argument('--fold', type=natural_int, default=None, help='SBU fold 0-4 (preset 0); UWA3D fold 0-5 (preset 5)')
    parser.add_argument('--test_view', type=int, default=None, help='N-UCLA test view 1-3 (official default 1; '
                        'the literature uses 3); UWA3D test view (preset 2)')
    parser.add_argument('--sbu_true_depth', action='store_true',
                        help='corrected: SBU depth from z (official: from the normalised y, SPEC §6.6)')
    parser.add_argument('--allow_missing', action='store_true',
                        help='go on when SBU / N-UCLA sequences are missing (each skipped file is named); '
                             'default: refuse a dataset whose sequence count differs from the release')
    parser.add_argument('--num_workers', type=natural_int, default=None, help='DataLoader workers (per-dataset default)')
    parser.add_argument('--seed', type=int, default=1, help='seeds init, data order and augmentation')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto', help='auto: CUDA if available')
    parser.add_argument('--threads', type=positive_int, default=None,
                        help='CPU threads (default: $OMP_NUM_THREADS if set, else the CPUs this process may use)')
    parser.add_argument('--out_dir', default=None, help='run folder (default runs/<dataset>-<mode>-<time>)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars, log to file only')
    parser.add_argument('--no_plots', action='store_true', help='write no PNG figures at the end of the run')
    parser.add_argument('--config', default=None, help="an earlier run's args.json: its options become the "
                        'defaults, so the run can be repeated (the command line still wins)')


def read_config(argv):
    """The dict saved in --config FILE (an earlier args.json), or {} without --config."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--config')
    path = pre.parse_known_args(argv)[0].config
    if not path:
        return {}
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: --config {path}: not a readable args.json ({err})") from None
    if not isinstance(config, dict):
        raise SystemExit(f"error: --config {path}: expected a json object of options (an args.json), "
                         f"found {type(config).__name__}")
    if 'dataset' in config and config['dataset'] not in PRESETS:
        raise SystemExit(f"error: --config {path}: unknown dataset {config['dataset']!r}; known: {', '.join(PRESETS)}")
    return config


def config_defaults(parser, config):
    """Make a saved run's options the parser's defaults (not where the run wrote, nor what it resumed)."""
    known = {a.dest for a in parser._actions}
    parser.set_defaults(**{k: v for k, v in config.items() if k in known and k not in ('config', 'out_dir', 'resume')})


class MetricsLog:
    """One row per epoch in <out_dir>/metrics.csv, and TensorBoard scalars if tensorboard is installed."""

    FIELDS = ['epoch', 'step', 'loss', 'lr', 'pos_logit', 'contrast_top1', 'queue_fill', 'seconds']

    def __init__(self, out_dir):
        self.path = Path(out_dir) / 'metrics.csv'
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(Path(out_dir) / 'tensorboard'))
        except ImportError:
            self.writer = None

    def __call__(self, row):
        new = not self.path.exists()
        with open(self.path, 'a', newline='') as f:
            writer = csv.DictWriter(f, self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row[k] for k in self.FIELDS})
        if self.writer is not None:
            for key in self.FIELDS[2:]:
                self.writer.add_scalar(f'pretrain/{key}', row[key], row['step'])
            self.writer.flush()


def truncate_metrics(out_dir, last_epoch):
    """Drop the metrics.csv rows after `last_epoch` (a resumed run replays those epochs)."""
    path = Path(out_dir) / 'metrics.csv'
    if path.exists():
        rows = [r for r in read_metrics(out_dir) if int(r['epoch']) <= last_epoch]
        atomic_write(path, lambda f: f.write(''.join(
            [','.join(MetricsLog.FIELDS) + '\n'] + [','.join(r[k] for k in MetricsLog.FIELDS) + '\n' for r in rows]).encode()))


def read_metrics(out_dir):
    """The rows of <out_dir>/metrics.csv as dicts of strings."""
    with open(Path(out_dir) / 'metrics.csv') as f:
        return list(csv.DictReader(f))
