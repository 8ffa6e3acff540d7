"""Run bookkeeping shared by the scripts: seeding and RNG state, the device and threads, the run
folder with its lock, provenance, plain-text logs, metrics.csv, atomic checkpoints and JSON, and
the start and end of every run (`start_run`, `finish_run`)."""
import csv
import errno
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the requested run."""


class RunError(RuntimeError):
    """A run cannot go on (its folder is taken, its state is not finite, ...); the message says why."""


class Stopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the run stops at once, keeping what it saved; `note` says what (else stop_note())."""

    def __init__(self, note=None):
        super().__init__(note)
        self.note = note


def _stop(signum, frame):
    raise Stopped()


def stop_note():
    """What a stopped run kept, and the command that continues it."""
    out = next(reversed(_LOCKS), None)
    if out is None or not (Path(out) / 'last.pth').is_file():
        return 'nothing was saved; run the same command again'
    argv, keep = sys.argv[1:], []
    while argv:  # the command as given, less its own --out_dir / --resume
        arg = argv.pop(0)
        if arg in ('--out_dir', '--resume'):
            argv = argv[1:]
        elif not arg.startswith(('--out_dir=', '--resume=')):
            keep.append(arg)
    epoch = load_checkpoint(Path(out) / 'last.pth').get('epoch')
    return (f"epoch {epoch} is saved in {Path(out) / 'last.pth'}; continue with: python {Path(sys.argv[0]).name} "
            + ' '.join(keep + ['--out_dir', os.path.relpath(out), '--resume', 'auto']))


def cli(main, parse):
    """Run a script's main(parse()) and turn every expected failure into one line on stderr and exit
    status 1 (no traceback): data, checkpoint and run errors, and OS errors, named by their file.
    Ctrl-C and SIGTERM stop it with one line saying what was kept (exit status 130)."""
    from data import DataError
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (cmd &)
    try:
        return main(parse())
    except (DataError, CheckpointError, RunError) as err:
        sys.exit(f"error: {err}")
    except OSError as err:  # permission denied, disk full, a folder where a file should be, ...
        where = f"{err.filename}: " if err.filename else ''
        sys.exit(f"error: {where}{err.strerror or err}")
    except KeyboardInterrupt as err:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not interrupt the note
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"stopped: {getattr(err, 'note', None) or stop_note()}", file=sys.stderr, flush=True)
        sys.exit(130)


def set_seed(seed, deterministic=False):
    """Seed Python, numpy and torch (CUDA too); `deterministic` also turns on PyTorch's
    deterministic algorithms (and the cuBLAS workspace setting they need)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    if deterministic != torch.are_deterministic_algorithms_enabled():  # the call imports torch._inductor (1-2 s)
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


def idle_cpus(window=0.25):
    """How many of `available_cpus()` stood idle over the last `window` seconds (/proc/stat; the
    1-minute load average where there is none), and how that was read."""
    cpus = available_cpus()

    def busy_and_total():
        fields = [int(v) for v in Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4], sum(fields)  # all but idle and iowait
    try:
        busy0, total0 = busy_and_total()
        time.sleep(window)
        busy1, total1 = busy_and_total()
        busy = (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or cpus)
        how = f'/proc/stat over {window:g} s'
    except (OSError, ValueError, IndexError):
        if not hasattr(os, 'getloadavg'):
            return cpus, 'no load reading'
        busy, how = os.getloadavg()[0], '1-minute load average'
    return max(1, min(cpus, cpus - round(busy))), f'{busy:.1f} of {cpus} CPUs busy ({how})'


def choose_threads(threads=None):
    """(torch intra-op threads, why): --threads if given, else $OMP_NUM_THREADS if set (at most
    `available_cpus()`), else the CPUs that are idle now (at least 1): on an idle 2-core machine two
    threads run the default SBU run faster, on a busy one a second thread costs much
    (bench/results/threads-*.json)."""
    if threads:
        return threads, '--threads'
    env = os.environ.get('OMP_NUM_THREADS', '')
    if env.isdigit() and int(env) > 0:
        return min(int(env), available_cpus()), 'OMP_NUM_THREADS'
    idle, how = idle_cpus()
    return idle, f'idle CPUs: {how}'


THREADS_CHOSEN_BY = {}  # set_threads's reason, recorded in provenance


def set_threads(threads):
    """torch intra-op threads (`choose_threads`); returns the number in use. Also flushes
    denormal floats (|x| < 1.2e-38) to zero on CPU: LSTM gradients can decay into that range, where
    x86 arithmetic is slow, and no weight can change by so little in float32."""
    count, why = choose_threads(threads)
    torch.set_num_threads(count)
    torch.set_flush_denormal(True)
    THREADS_CHOSEN_BY['why'] = why
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
    """(commit, dirty) of the checkout this code runs from, or (None, None) outside git. Dirty: a
    tracked file changed or an untracked one added, outside the recorded outputs (results/, bench/results/)."""
    root = Path(__file__).parent
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(['git', 'status', '--porcelain', '--', '.', ':!results', ':!bench/results'], cwd=root,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    if commit.returncode != 0:
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def cpu_isa():
    """The widest vector instruction set the CPU reports (/proc/cpuinfo flags), or None where unknown."""
    try:
        flags = next(line for line in Path('/proc/cpuinfo').read_text().splitlines() if line.startswith('flags')).split()
    except (OSError, StopIteration):
        return None
    return next((name for flag, name in (('avx512_bf16', 'AVX512-BF16'), ('avx512f', 'AVX512'), ('avx2', 'AVX2'),
                                         ('sse4_2', 'SSE4.2')) if flag in flags), 'older than SSE4.2')


def provenance(device, out_dir):
    """Where and how a run ran: the process's command line, device and its name, the instruction sets
    the arithmetic used (the CPU's, ATen's kernels', a oneDNN cap if set: they decide the float
    rounding), threads, versions, git commit and whether the checkout differed from it."""
    commit, dirty = _git_commit()
    return dict(process_command=' '.join(['python', Path(sys.argv[0]).name, *sys.argv[1:]]), device=str(device),
                device_name=device_name(device), cpu_isa=cpu_isa(), aten_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                onednn_max_cpu_isa=os.environ.get('ONEDNN_MAX_CPU_ISA', os.environ.get('DNNL_MAX_CPU_ISA', 'unset')),
                threads=torch.get_num_threads(), threads_chosen_by=THREADS_CHOSEN_BY.get('why', 'torch default'),
                out_dir=str(out_dir), python=platform.python_version(),
                torch=torch.__version__, numpy=np.__version__, git_commit=commit, git_dirty=dirty,
                host=platform.node(), started=time.strftime('%Y-%m-%d %H:%M:%S'))


def provenance_line(info):
    """One log line of a provenance() dict."""
    return (f"{info['process_command']} on {info['device_name']} ({info['device']}, {info['threads']} threads), "
            f"torch {info['torch']}, commit {info['git_commit']}{' (dirty)' if info['git_dirty'] else ''}")


def atomic_write(path, write):
    """write(file) into path.partial, fsync, then rename: a killed run never leaves a half file, and
    a failed write (disk full, ...) removes the partial file, keeps the previous file and names the path."""
    path = Path(path)
    tmp = path.with_name(path.name + '.partial')
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as err:  # torch's writer reports a failed write as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:200]
        raise OSError(getattr(err, 'errno', None) or errno.EIO, f"{reason}; nothing written, the previous file is "
                      "kept", str(path)) from None
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
    if not isinstance(ckpt['args'], dict) or not isinstance(ckpt['model'], dict):
        raise CheckpointError(f"{path}: not an AS-CAL checkpoint ('args' and 'model' must be mappings)")
    return ckpt


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


class Run(NamedTuple):
    """An open run: its resolved options, folder, log, provenance and start time."""
    opts: object
    out: Path
    log: object
    provenance: dict
    start: float


def start_run(opts, device, rank=0, world=1):
    """Create (rank 0) and share the run folder, open its log, write args.json (the resolved
    options with provenance) and log the provenance and the resolver's notes."""
    start = time.time()
    name = opts.dataset if opts.mode == 'pretrain' else f'{opts.dataset}-{opts.mode}'
    out = [make_out_dir(opts.out_dir, name) if rank == 0 else None]
    if world > 1:
        torch.distributed.broadcast_object_list(out)  # the same run folder on every rank
    if rank > 0:
        return Run(opts, out[0], lambda message, always=False: None, {}, start)
    log = RunLog(out[0], opts.quiet)
    info = provenance(device, out[0])
    write_json(dict(vars(opts), provenance=info), out[0] / 'args.json')
    for line in [provenance_line(info), *opts.notes]:
        log(line)
    return Run(opts, out[0], log, info, start)


def finish_run(run, splits, result, features=None, metrics_rows=None, class_names=None):
    """Write the run's figures (unless --no_plots) and results.json (identification, sample counts,
    results, seconds, the resolved options and provenance), log the summary line, release the folder."""
    opts = run.opts
    samples = {'train': len(splits[0][1]), opts.eval_split: len(splits[1][1])}
    result = dict(mode=opts.mode, dataset=opts.dataset, recipe=opts.recipe, eval_split=opts.eval_split, seed=opts.seed,
                  samples=samples, **result, seconds=round(time.time() - run.start, 2), options=vars(opts), provenance=run.provenance)
    if not opts.no_plots:
        import plots
        plots.write_run_plots(run.out, result, features, class_names, metrics_rows, getattr(opts, 'warmup_epochs', 0))
    write_json(result, run.out / 'results.json')
    run.log(summary_line(f"{opts.dataset} {opts.mode}", result) + f" -> {run.out / 'results.json'}", always=True)
    release_run_folder(run.out)
    return result


def summary_line(name, result):
    """One line: top-1 (and best/last, top-5, KNN where there are such)."""
    line = f"{name}: top1 {result['top1']:.2f}"
    if result.get('best_epoch') is not None:
        line += (f" (best {result['top1_best']:.2f} @ epoch {result['best_epoch']}, last {result['top1_last']:.2f})"
                 f" top5 {result['top5']:.2f}")
    if result.get('knn_top1') is not None:
        line += f" knn@{result['knn_k']} {result['knn_top1']:.2f}"
    return line
