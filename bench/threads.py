"""How many CPU threads a run should use: README's default run (SBU fold 0, official settings) with
one thread against every CPU this process may use, alternating, on the machine as it is (idle, or
busy with other work: the load average before each run is recorded).

    python bench/threads.py --label busy [--repeats 2] [--data_root DIR]

Writes bench/results/threads-<label>.json: each run's wall seconds and the 1-minute load average
before it, with the provenance of the measurement.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dataset import DATA_ROOT  # noqa: E402
from runs import available_cpus, provenance, write_json  # noqa: E402


def timed_run(threads, data_root, tmp):
    """Wall seconds of one default pretraining + linear evaluation with `threads` threads."""
    start = time.time()
    done = subprocess.run([sys.executable, str(ROOT / 'pretrain_and_linEval.py'), '--data_root', data_root,
                           '--threads', str(threads), '--out_dir', tempfile.mkdtemp(dir=tmp), '--quiet', '--no_plots'],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if done.returncode != 0:
        raise SystemExit(f"error: the default run with --threads {threads} failed: {done.stderr.strip()[-300:]}")
    return round(time.time() - start, 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--label', required=True, help="the machine's state, e.g. idle or busy")
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--data_root', default=DATA_ROOT)
    parser.add_argument('--out', default=None, help='JSON path (default bench/results/threads-<label>.json)')
    args = parser.parse_args(argv)
    settings = sorted({1, available_cpus()})
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for threads in settings:
                load = os.getloadavg()[0]
                runs.append(dict(threads=threads, load_before=round(load, 2), seconds=timed_run(threads, args.data_root, tmp)))
                print(runs[-1], flush=True)
    out = Path(args.out or ROOT / 'bench' / 'results' / f'threads-{args.label}.json')
    best = {t: min(r['seconds'] for r in runs if r['threads'] == t) for t in settings}
    write_json(dict(label=args.label, cpus=available_cpus(), runs=runs, best_seconds=best,
                    provenance=provenance(torch.device('cpu'), out.parent)), out)
    print(f"best seconds by threads {best}; wrote {out}")


if __name__ == '__main__':
    main()
